"""What one inference of a model asks of the hardware: MACs, parameters, and bytes moved, read from the graph.

One reader per artifact kind, all giving the same ModelCost (analyze picks it by the file's suffix):
- ONNX (onnx_graph.py): the graph prepared as the converters prepare it; Conv / ConvTranspose / Gemm / MatMul MACs.
- TFLite (tflite_graph.py): tensor shapes from the interpreter; CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED /
  BATCH_MATMUL / TRANSPOSE_CONV MACs.
- ncnn (ncnn_graph.py): the .param text plus blob shapes from running the net once on this host;
  (de)convolution (1-, 2- and 3-D, depthwise), InnerProduct, Gemm / MatMul and attention MACs.
The cost itself (ModelCost, "bytes moved") is model_cost.py's.
"""

from __future__ import annotations

from pathlib import Path

from edgekit.errors import InputDataError
from edgekit.estimate.model_cost import ModelCost
from edgekit.estimate.ncnn_graph import ncnn_cost
from edgekit.estimate.onnx_graph import onnx_cost
from edgekit.estimate.tflite_graph import tflite_cost
from edgekit.path_kind import not_a_file


def analyze(path: Path, input_shape: list[int] | None = None) -> ModelCost:
    """The cost of one inference of the model at PATH (.onnx, .tflite or ncnn .param)."""
    path = Path(path)
    why = not_a_file(path, "model file")
    if why:
        raise InputDataError(why, where=str(path))
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
