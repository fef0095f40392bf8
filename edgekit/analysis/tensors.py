"""What analyze compares, tensor by tensor: one layer's errors against fp32 (LayerError), and the running sums
they are made from over the evaluation inputs (RunningError). Every runtime's layer reader (ncnn_layers,
onnx_layers, tflite_layers) builds its rows from these."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class LayerError:
    name: str  # ncnn layer name, or the TFLite op's output tensor name
    type: str  # ncnn layer type / TFLite op
    output: str  # the blob or tensor compared
    quantized: bool  # does this layer compute in int8
    cosine: float  # propagated
    rel_error: float  # propagated
    own_rel_error: float  # this layer's own contribution (edgekit.analysis.analyze says how)
    own_cosine: float | None = None  # NCNN only: the layer alone

    @property
    def short_name(self) -> str:
        """TFLite names fuse several TF op names with `;`: the first is the one a user recognises."""
        return self.name.split(";")[0]


class RunningError:
    """Running sums for relative error and mean cosine of one tensor over samples."""

    def __init__(self) -> None:
        self.err2 = self.ref2 = self.cos = 0.0
        self.n = 0

    def add(self, ref: np.ndarray, got: np.ndarray) -> None:
        r, g = ref.astype(np.float64).ravel(), got.astype(np.float64).ravel()
        if r.shape != g.shape:
            raise ValueError(f"shapes differ: {ref.shape} vs {got.shape}")
        self.err2 += float(np.sum((r - g) ** 2))
        self.ref2 += float(np.sum(r * r))
        nr, ng = np.linalg.norm(r), np.linalg.norm(g)
        self.cos += 1.0 if nr == 0 and ng == 0 else float(r @ g / max(nr * ng, 1e-30))
        self.n += 1

    @property
    def rel(self) -> float:
        return float(np.sqrt(self.err2 / self.ref2)) if self.ref2 > 0 else float(np.sqrt(self.err2) > 0)

    @property
    def cosine(self) -> float:
        return self.cos / max(self.n, 1)
