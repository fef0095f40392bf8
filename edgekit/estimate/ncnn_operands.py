"""Whether an ncnn graph's wiring and each layer's inputs fit together, checked on this host before ncnn runs them.

ncnn trusts its inputs: a Concat whose inputs disagree off its axis writes past its output buffer (a detector at an
input size its strides do not divide, a 40x40 upsampled branch beside a 39x39 skip, aborted the whole edgekit with
"malloc_consolidate(): invalid chunk size"; in the other order it was silently counted), an Eltwise reads past
its smaller input, and a blob read by two layers without a Split, or a second Input, fails only in the guest's
light mode, after a whole count under qemu. Each is an InputDataError naming the layer and the shapes.
"""

from __future__ import annotations

import math
from pathlib import Path

from edgekit.errors import InputDataError

NcnnShape = list[
    int
]  # a blob's logical shape in ncnn's order, outermost first: [w], [h, w], [c, h, w], [c, d, h, w]


def check_wiring(path: Path, layers: list, names: list[str], fed: int) -> None:
    """No more Input layers than the `fed` input shapes (one, --input-shape, unless an artifact's sidecar states
    more: the rest were left unfed, 0 MACs), and each blob read by at most one layer (ncnn's Split makes the copies
    a second reader needs; without one the guest's light-mode run fails with -100 once the first reader freed it)."""
    inputs = [name for (kind, _, _, _), name in zip(layers, names) if kind == "Input"]
    if len(inputs) > max(fed, 1):
        raise InputDataError(
            f"the model has {len(inputs)} inputs (Input layers {', '.join(map(repr, inputs))}); edgekit handles "
            "single-input models",
            where=str(path),
            hint="give a model with one Input layer (fold the others in as constants, e.g. a MemoryData layer)",
        )
    readers: dict[str, list[str]] = {}
    for (_, bottoms, _, _), name in zip(layers, names):
        for blob in dict.fromkeys(bottoms):  # a layer reading one blob twice (x * x) is one reader
            readers.setdefault(blob, []).append(name)
    for blob, who in readers.items():
        if len(who) > 1:
            raise InputDataError(
                f"blob {blob!r} is read by {len(who)} layers ({', '.join(map(repr, who))}) without a Split: "
                "ncnn frees a blob once its one reader has run, so the others fail (error -100)",
                where=str(path),
                hint=f"add a Split layer after the layer that makes {blob!r} with one output per reader "
                "(`Split name 1 N blob blob_1 .. blob_N`; ncnn's converters and ncnnoptimize write them)",
            )


def check_operands(
    path: Path, name: str, layer: tuple, shapes: dict[str, NcnnShape], input_shape: list[int]
) -> None:
    """Refuse a Concat whose inputs differ off its axis, an Eltwise with unequal inputs or a BinaryOp whose
    inputs cannot broadcast, from the shapes ncnn computed for them, before ncnn runs the layer."""
    kind, bottoms, _, p = layer
    if len(bottoms) < 2 or any(b not in shapes for b in bottoms):
        return
    ins = [shapes[b] for b in bottoms]
    if kind == "Concat":
        axis = _int(p.get("0", "0"))
        bad = not _concatenable(ins, axis)
        what = f"Concat, axis {axis}: its inputs must agree on every other dimension"
    elif kind == "Eltwise":
        bad = any(s != ins[0] for s in ins[1:])
        what = "Eltwise: its inputs must have one shape"
    elif kind == "BinaryOp" and _int(p.get("1", "0")) == 0:  # 1=1: with a scalar, one input
        bad = not _broadcastable(ins[0], ins[1])
        what = (
            "BinaryOp: its inputs must be equal or 1 in each dimension, a lower-rank one matching the other's "
            "outermost dimensions"
        )
    else:
        return
    if not bad:
        return
    listed = ", ".join(f"{b} {_text(s)}" for b, s in zip(bottoms, ins))
    spatial = {tuple(s[-2:]) for s in ins if len(s) >= 2}
    raise InputDataError(
        f"layer {name!r} ({what}), but they are {listed} at input shape {','.join(map(str, input_shape))}: ncnn "
        "would compute past its buffers (a model that does not run at this size)",
        where=str(path),
        hint=_hint(input_shape) if len(spatial) > 1 else _CHECK_PARAMS,
    )


def _concatenable(ins: list[NcnnShape], axis: int) -> bool:
    dims = len(ins[0])
    axis = axis + dims if axis < 0 else axis
    if any(len(s) != dims for s in ins) or not 0 <= axis < dims:
        return False
    off = [s[:axis] + s[axis + 1 :] for s in ins]
    return all(o == off[0] for o in off[1:])


def _broadcastable(a: NcnnShape, b: NcnnShape) -> bool:
    """ncnn's BinaryOp broadcasting (its operation table's "broadcasting rule"), outermost dimension first: the
    same rank, each dimension equal or 1 in one of them; a lower rank, all ones (scalar-like), or its dimensions the
    other's outermost ones, each equal or 1 (ncnn broadcasts it over the inner axes, the opposite of numpy: [8]
    beside [8, 16, 16] is a per-channel operand), or one dimension the size of the other's innermost (kept for
    compatibility). Anything else ncnn still computes, reading past the smaller operand: [5] beside [16, 8], or
    [16, 16] beside [8, 16, 16], which ncnn makes a [16, 16, 16] output from 8 channels."""
    if len(a) == len(b):
        return all(x == y or 1 in (x, y) for x, y in zip(a, b))
    lo, hi = (a, b) if len(a) < len(b) else (b, a)
    if all(x == 1 for x in lo) or all(x == y or 1 in (x, y) for x, y in zip(lo, hi)):
        return True
    return len(lo) == 1 and lo[0] == hi[-1]


_CHECK_PARAMS = "check the params of the layers making those inputs (their output counts, strides, pads)"


def _hint(input_shape: list[int]) -> str:
    """An input size the model's strides divide: H and W rounded up to a multiple of 32."""
    if len(input_shape) != 4:
        return "give an input size the model's strides divide (H and W a multiple of 32 for most detectors)"
    n, c, h, w = input_shape
    up = [max(32, math.ceil(x / 32) * 32) for x in (h, w)]
    if up == [h, w]:  # 32 divides it already: the graph itself joins unequal sizes
        return _CHECK_PARAMS
    return (
        "give an input size the model's strides divide: H and W a multiple of 32 for most detectors (their "
        f"branches meet at 1/32 of the input), e.g. --input-shape {n},{c},{up[0]},{up[1]}"
    )


def _text(shape: NcnnShape) -> str:
    return "[" + ", ".join(map(str, shape)) + "]"


def _int(value: str) -> int:
    try:
        return int(float(value))
    except (ValueError, OverflowError):
        return 0  # not a number: ncnn's own load refuses the file
