"""How a TFLite artifact's input and outputs relate to the ONNX model's: the layout record.

onnx2tf makes a rank-3/4/5 input channels-last (NCL -> NLC, NCHW -> NHWC) unless told to keep it
(`keep_nwc_or_nhwc_or_ndhwc_input_names`, a user's channels-last ONNX), and gives most such outputs back
channels-last too. Shapes alone cannot say which: a [1, 8, 8, 8] output or a [1, 16, 16] input reads the same in
both layouts, and a correct artifact was fed and compared in the wrong one (cosine 0.05 on a stride-4 Conv whose
output is [1, 8, 8, 8], 0.89 on a Conv1d with C == L). So each written file is run once, next to the ONNX model,
on one seeded random input, for every layout its shapes allow, and the layouts whose outputs agree best are
recorded (in the artifact's provenance, `layout`):

- `input`: the axes that turn the ONNX model's input (batch included) into the TFLite input: [0, 2, 3, 1] when
  channels-last, [0, 1, 2, 3] when kept;
- `outputs`: per TFLite output, in the interpreter's order, the axes that turn it back into the ONNX model's
  layout ([0, 3, 1, 2] from channels-last), None for an output no transpose gives the ONNX shape of (it is
  reshaped, as before). onnx2tf's own rule (back from channels-last, or as it is) is tried first; an op it lays
  out its own way (an Einsum bchw,wk->bchk came back [0, 2, 1, 3], a Hardmax too) is found by trying every other
  permutation that gives the ONNX shape, in a fixed order (at most 5! = 120, for rank 5; a higher rank keeps the
  rule). Another permutation is taken over the rule only when it agrees clearly better (_clearly_better), so an
  output that reads the same under several permutations keeps onnx2tf's;
- `verified`: True when the runs chose it; False when only onnx2tf's rule did (an input that is not float, a run
  that failed), where ties also go to the rule: channels-last unless the input was kept, and False when an output
  is left to reshaping (no permutation of it gives the ONNX shape, so the run could not check it).

Everything that feeds or compares the artifact applies it: fidelity and the host runtime
(edgekit.runtimes.host.run_tflite), and the agent on a device through the request's `layout`
(edgekit.agent.contract.TensorLayout). An artifact without it (cached before it, a user's .tflite) keeps the
shape rule.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np

# NC... -> N...C (the input onnx2tf makes), N...C -> NC... (back from such an output)
_LAST = {3: [0, 2, 1], 4: [0, 2, 3, 1], 5: [0, 2, 3, 4, 1]}
_FIRST = {3: [0, 2, 1], 4: [0, 3, 1, 2], 5: [0, 4, 1, 2, 3]}
_SEARCH_MAX_RANK = 5  # every permutation of an output is tried up to this rank: 5! = 120 transposes at most
# another permutation than onnx2tf's rule is taken only when it leaves at most this share of the rule's
# disagreement (1 - cosine), and by more than float noise
_BETTER_SHARE = 0.5
_NOISE = 1e-6


def _identity(rank: int) -> list[int]:
    return list(range(rank))


def input_candidates(
    onnx_shape: tuple[int, ...], tflite_shape: tuple[int, ...], kept: bool
) -> list[list[int]]:
    """The axes that turn the ONNX input into one of the TFLite input's shape, onnx2tf's own choice first."""
    rank = len(onnx_shape)
    order = [_identity(rank)] + ([_LAST[rank]] if rank in _LAST else [])
    if not kept:
        order.reverse()
    found: list[list[int]] = []
    for axes in order:
        if tuple(onnx_shape[a] for a in axes) == tuple(tflite_shape) and axes not in found:
            found.append(axes)
    return found


def output_candidates(
    tflite_shape: tuple[int, ...], onnx_shape: tuple[int, ...]
) -> tuple[list[list[int]], list[list[int]]]:
    """The axes that turn a TFLite output back into the ONNX output's shape: onnx2tf's rule (channels-last first,
    then as it is), and every other permutation that does, in itertools' order (none above rank 5)."""
    rank = len(tflite_shape)

    def fits(axes: list[int]) -> bool:
        return tuple(tflite_shape[a] for a in axes) == tuple(onnx_shape)

    rule: list[list[int]] = []
    for axes in ([_FIRST[rank]] if rank in _FIRST else []) + [_identity(rank)]:
        if fits(axes) and axes not in rule:
            rule.append(axes)
    if rank > _SEARCH_MAX_RANK or len(onnx_shape) != rank:
        return rule, []
    others = [list(p) for p in itertools.permutations(range(rank))]
    return rule, [a for a in others if fits(a) and a not in rule]


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    x, y = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    nx, ny = np.linalg.norm(x), np.linalg.norm(y)
    if nx == 0 and ny == 0:
        return 1.0
    return float(np.dot(x, y) / max(nx * ny, 1e-30))


def layout_record(
    onnx_path: Path, tflite_path: Path, input_shape: tuple[int, ...], kept: bool
) -> dict[str, Any]:
    """The layout record of one TFLite file converted from `onnx_path` (module docstring). `kept`: onnx2tf was
    told to keep the input as it is."""
    from ai_edge_litert.interpreter import Interpreter

    from edgekit.fidelity.alignment import output_order
    from edgekit.runtimes.host import run_onnx, run_tflite

    interp = Interpreter(model_path=str(tflite_path))
    (inp,) = interp.get_input_details()
    outs = interp.get_output_details()
    tfl_in = tuple(int(d) for d in inp["shape"])
    ins = input_candidates(tuple(input_shape), tfl_in, kept)
    rule = {"input": ins[0] if ins else None, "outputs": [None] * len(outs), "verified": False}
    if not ins:
        return rule
    x = np.random.default_rng(0).uniform(0.0, 1.0, tuple(input_shape)).astype(np.float32)
    try:
        ref = run_onnx(onnx_path, x)
        if not np.issubdtype(inp["dtype"], np.floating) and not inp["quantization"][0]:
            raise TypeError("an integer input that is not quantized: random floats mean nothing to it")
    except Exception:  # noqa: BLE001 - no verification possible: onnx2tf's rule, said unverified
        return _by_rule(rule, outs)
    best: tuple[float, dict[str, Any]] | None = None
    for in_axes in ins:
        try:
            got = run_tflite(tflite_path, x, layout={"input": in_axes})
            order, _ = output_order(ref, got)
        except Exception:  # noqa: BLE001 - this input layout does not run: the other may
            continue
        axes_of: list[list[int] | None] = [None] * len(got)
        score = 0.0
        for k, (_, r) in enumerate(ref):
            j = order[k]
            g = got[j][1]
            chosen = _output_axes(g, r)
            if chosen is not None:
                axes_of[j], top = chosen
                score += top
        if best is None or score > best[0]:
            verified = all(a is not None for a in axes_of)  # a reshaped output was not checked by the run
            best = (score, {"input": in_axes, "outputs": axes_of, "verified": verified})
    if best is None:
        return _by_rule(rule, outs)
    return best[1]


def _output_axes(got: np.ndarray, ref: np.ndarray) -> tuple[list[int], float] | None:
    """The axes that turn one TFLite output back into the ONNX one and their cosine: the best of onnx2tf's rule
    (a tie: its first), unless another permutation agrees clearly better (the best of those, a tie: the first).
    None when no permutation gives the ONNX shape, or when none of onnx2tf's does and the others agree no better
    than reshaping."""
    rule, others = output_candidates(got.shape, ref.shape)

    def top_of(cands: list[list[int]]) -> tuple[list[int], float] | None:
        top: tuple[list[int], float] | None = None
        for axes in cands:
            c = _cosine(np.ascontiguousarray(got.transpose(axes)), ref)
            c = c if np.isfinite(c) else -1.0  # a NaN output agrees with nothing
            if top is None or c > top[1]:
                top = (axes, c)
        return top

    base, other = top_of(rule), top_of(others)
    if other is None:
        return base
    if base is not None:
        return other if _clearly_better(other[1], base[1]) else base
    # no rule fits: the permutation against reshaping, which the run cannot check; one that reads the same (it
    # moves only axes of size 1) is recorded, checked
    reshaped = _reshaped_cosine(got, ref)
    return other if _clearly_better(other[1], reshaped) or abs(other[1] - reshaped) <= _NOISE else None


def _reshaped_cosine(got: np.ndarray, ref: np.ndarray) -> float:
    """How well an output left to reshaping (the shape rule) agrees: what another permutation must beat."""
    c = _cosine(got.reshape(ref.shape), ref) if got.size == ref.size else -1.0
    return c if np.isfinite(c) else -1.0


def _clearly_better(c: float, base: float) -> bool:
    """Cosine C leaves at most _BETTER_SHARE of BASE's disagreement, and improves on it by more than noise."""
    return (1.0 - c) <= _BETTER_SHARE * (1.0 - base) and c - base > _NOISE


def _by_rule(rule: dict[str, Any], outs: list[dict[str, Any]]) -> dict[str, Any]:
    """Without a run: the input by onnx2tf's rule, each output left to the shape rule (None)."""
    return {**rule, "outputs": [None] * len(outs), "verified": False}
