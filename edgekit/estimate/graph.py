"""What one inference of a model asks of the hardware: MACs, parameters, and bytes moved, read from the graph.

One reader per artifact kind, all giving the same ModelCost (analyze picks it by the file's suffix):
- ONNX (onnx_graph.py): the graph prepared as the converters prepare it; Conv / ConvTranspose / Gemm / MatMul MACs.
- TFLite (tflite_graph.py): tensor shapes from the interpreter; CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED /
  BATCH_MATMUL / TRANSPOSE_CONV MACs.
- ncnn (ncnn_graph.py): the .param text plus blob shapes from running the net once on this host;
  Convolution(DepthWise) / Deconvolution / InnerProduct MACs.
"Bytes moved" is the no-reuse traffic: every weight read once plus every layer's activation inputs read and
outputs written once. Caches make the real traffic smaller, so roofline.py also uses the compulsory part
(weights + model input and output) for its lower bound.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgekit.errors import InputDataError


@dataclass
class ModelCost:
    source: str  # the file read
    kind: str  # onnx | tflite | ncnn
    macs: int  # multiply-accumulates per inference
    params: int  # weight elements
    weight_bytes: int  # bytes of weights as stored (fp32 / fp16 / int8)
    activation_bytes: int  # every layer's activations in + out, once (no reuse)
    io_bytes: int  # the model's own inputs and outputs
    macs_by_op: dict[str, int] = field(default_factory=dict)
    winograd_macs: int = 0  # MACs of 3x3 stride-1 dense convolutions (ncnn may run them as Winograd F(6,3))
    layer_types: tuple[str, ...] = ()  # ncnn: the graph's layer types (what kernels run), sorted
    notes: list[str] = field(default_factory=list)  # what the figures leave out or assume (said with them)

    @property
    def bytes_moved(self) -> int:
        return self.weight_bytes + self.activation_bytes

    @property
    def compulsory_bytes(self) -> int:
        return self.weight_bytes + self.io_bytes


def analyze(path: Path, input_shape: list[int] | None = None) -> ModelCost:
    """The cost of one inference of the model at PATH (.onnx, .tflite or ncnn .param)."""
    # the readers import ModelCost from here: imported when a graph is read
    from edgekit.estimate.ncnn_graph import ncnn_cost
    from edgekit.estimate.onnx_graph import onnx_cost
    from edgekit.estimate.tflite_graph import tflite_cost

    path = Path(path)
    if not path.exists():
        raise InputDataError("no such model file", where=str(path))
    readers = {".onnx": onnx_cost, ".tflite": tflite_cost, ".param": ncnn_cost}
    reader = readers.get(path.suffix)
    if reader is None:
        raise InputDataError(
            f"a {path.suffix or 'suffix-less'} file's graph is not read here: estimate and roofline read an .onnx, "
            "a .tflite or an ncnn .param (with its .bin beside it)",
            where=str(path),
            hint="another runtime's file (.mnn, .xml, .pte) is estimated from its instruction count: "
            "`edgekit bench FILE --target pi4-emu` (or pi5-emu) counts it and prints the estimate",
        )
    return reader(path, input_shape)


def nbytes(shape_and_size: tuple[list[int], int] | None) -> int:
    """The bytes of a tensor given as (dims, itemsize); 0 for an unknown one (None)."""
    if shape_and_size is None:
        return 0
    dims, itemsize = shape_and_size
    return int(np.prod(dims)) * itemsize if dims else itemsize


def tally(names: Iterable[str]) -> list[str]:
    """Each name with how often it occurs, sorted ("Erf x1", "TOPK_V2 x2"): the readers' ops left out of the MACs."""
    return [f"{name} x{n}" for name, n in sorted(Counter(names).items())]


def op_names(text: str) -> list[str]:
    """The op names in a space-separated list (the readers' sets of ops left out of the MACs by design)."""
    return text.split()
