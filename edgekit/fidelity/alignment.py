"""Which output of an artifact stands for which output of the ONNX model, and in what shape.

Output names differ between runtimes (a known trap), so `align_outputs` maps them to the ONNX outputs: by
equal name first, then by the index at the end of the name (onnx2tf's output_0 / Identity_1 /
PartitionedCall:1, pnnx's out0 keep the ONNX order), then by unique shape, and only then by position; it
records which rule won.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from edgekit.runtimes import Outputs


def align_outputs(ref: Outputs, got: Outputs) -> tuple[list[np.ndarray], str]:
    """`got` arrays in the order and shapes of `ref`, and the rule that matched them (module docstring)."""
    order, rule = output_order(ref, got)
    return [_fit(got[order[k]][1], ref[k][1]) for k in range(len(ref))], rule


def output_order(ref: Outputs, got: Outputs) -> tuple[list[int], str]:
    """For each output of `ref`, the index of the output of `got` that stands for it, and the rule that matched
    them (module docstring)."""
    ref_names = [n for n, _ in ref]
    if len(got) != len(ref):
        raise ValueError(f"the artifact has {len(got)} outputs, the reference {len(ref)}")
    order = _by_name(ref_names, got)
    rule = "name"
    if order is None:
        order, rule = _by_index(ref_names, got), "index"
    if order is None:
        order, rule = _by_shape(ref, got), "shape"
    if order is None:
        order, rule = list(range(len(ref))), "position"
    return order, rule


def _by_name(ref_names: Sequence[str], got: Outputs) -> list[int] | None:
    names = [n for n, _ in got]
    if all(n in names for n in ref_names):
        return [names.index(n) for n in ref_names]
    return None


def _by_index(ref_names: Sequence[str], got: Outputs) -> list[int] | None:
    idx = []
    for name, _ in got:
        m = re.search(r"(\d+)$", name)
        idx.append(int(m.group(1)) if m else 0)
    if sorted(idx) != list(range(len(ref_names))):
        return None
    return [idx.index(k) for k in range(len(ref_names))]


def _by_shape(ref: Outputs, got: Outputs) -> list[int] | None:
    shapes = [tuple(a.shape) for _, a in got]
    ref_shapes = [tuple(a.shape) for _, a in ref]
    if len(set(shapes)) != len(shapes) or sorted(shapes) != sorted(ref_shapes):
        return None
    return [shapes.index(s) for s in ref_shapes]


def _fit(got: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """`got` in the reference's shape. An output already in the ONNX layout (a TFLite artifact's recorded layout
    applied, every other runtime) is taken as it is; only an output of another shape is guessed at: a
    channels-last one transposed back, else reshaped."""
    if got.shape == ref.shape:
        return got
    if got.ndim == 4 and got.transpose(0, 3, 1, 2).shape == ref.shape:  # channels-last output of onnx2tf
        return got.transpose(0, 3, 1, 2)
    if got.size == ref.size:
        return got.reshape(ref.shape)
    raise ValueError(f"an output of shape {got.shape} cannot stand for the reference's {ref.shape}")
