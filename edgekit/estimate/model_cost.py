"""What one inference of a model asks of the hardware, as the graph readers give it: MACs, parameters, and bytes
moved (ModelCost), and the small helpers the readers share.

"Bytes moved" is the no-reuse traffic: every weight read once plus every layer's activation inputs read and
outputs written once. Caches make the real traffic smaller, so roofline.py also uses the compulsory part
(weights + model input and output) for its lower bound.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np


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
