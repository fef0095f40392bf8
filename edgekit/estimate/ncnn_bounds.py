"""How much memory an ncnn graph may take on this host before ncnn is let run it (ncnn_graph.py's shape run).

A .param is a few lines of text that can ask for any size: `Convolution ... 0=100000 6=2700000` on a 224x224
input makes a 20 GB blob, and the shape run (every blob kept) was OOM-killed without a word. Weights are read from
each layer's params before the net is loaded; each layer's output is bounded from its inputs' real shapes (the
blobs ncnn computed before it) before ncnn computes it. Over a cap: ModelTooLargeError, naming the layer.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

from edgekit.errors import InputDataError
from edgekit.recipe.schema import MAX_INPUT_ELEMENTS

MAX_TENSOR_ELEMENTS = 4 * MAX_INPUT_ELEMENTS  # one blob or one layer's weights: 1 GB of float32
MAX_HOST_BYTES = 4 << 30  # weights and every blob the shape run keeps, all at once, as float32
_ARRAY_BASE = -23300  # ncnn writes array param N as id -23300-N: "count,v1,v2.."

Shape = list[int]  # [c, h, w] as ncnn_graph keeps it (a 2-D blob [1, h, w], depth folded into h)


class ModelTooLargeError(InputDataError):
    """A layer whose weights or output would take more memory than edgekit lets a model take on this host."""


def layer_names(path: Path) -> list[str]:
    """Each layer's name, in the order parse_param gives the layers (the same lines: 4 fields or more)."""
    lines = path.read_text(encoding="utf-8").split("\n")[2:]
    return [parts[1] for parts in map(str.split, lines) if len(parts) >= 4]


def _int(p: dict[str, str], key: int, default: int = 0) -> int:
    try:
        return int(float(p.get(str(key), default)))
    except (ValueError, OverflowError):
        return default  # not a number: ncnn's own load refuses the file


def _array(p: dict[str, str], key: int) -> list[int]:
    try:
        return [int(float(v)) for v in p.get(str(_ARRAY_BASE - key), "").split(",")[1:]]
    except (ValueError, OverflowError):
        return []


def _weights(kind: str, p: dict[str, str]) -> int:
    """The weight values ncnn allocates for a layer, from its params (0 for a layer not listed)."""
    if kind.startswith(("Convolution", "Deconvolution")):
        return _int(p, 6) + _int(p, 0)  # weight_data_size (6=) and a bias per output
    if kind == "InnerProduct":
        return _int(p, 2) + _int(p, 0)
    if kind == "Embed":
        return _int(p, 3) + _int(p, 0)
    if kind == "MultiHeadAttention":  # q weights (2=), k and v (embed_dim x kdim / vdim), the output's
        e = _int(p, 0)
        return 2 * _int(p, 2) + e * (_int(p, 3, e) + _int(p, 4, e))
    if kind == "MemoryData":
        return math.prod(max(1, _int(p, k)) for k in (0, 1, 11, 2))
    if kind == "Gemm":
        m, n, k = _int(p, 7), _int(p, 8), _int(p, 9)
        return (m * k if _int(p, 4) else 0) + (k * n if _int(p, 5) else 0) + (m * n if _int(p, 6) else 0)
    if kind in ("LSTM", "GRU", "RNN"):
        return _int(p, 1) * (2 if _int(p, 2) == 2 else 1)  # weight_data_size, twice when bidirectional
    return 0


def _pads(p: dict[str, str], keys: tuple[int, ...]) -> int:
    """The most any pad param adds on one side (ncnn's -233 / -234, "same", add nothing beyond the input)."""
    return max([0, *(_int(p, k) for k in keys)])


def _conv(p: dict[str, str], ins: list[Shape], kind: str) -> int:
    """Outputs x (input spatial size + pads): stride, kernel and dilation can only make it smaller."""
    pad = _pads(p, (4, 14, 15, 16, 24, 25))  # left, top, right, bottom, front, behind
    _, h, w = ins[0]
    spatial = w + 2 * pad if kind.endswith("1D") else (h + 2 * pad) * (w + 2 * pad)
    return _int(p, 0) * spatial


def _deconv(p: dict[str, str], ins: list[Shape], kind: str) -> int:
    """Outputs x each spatial size grown by its stride and kernel (or the output size 20= / 21= it states)."""
    _, h, w = ins[0]
    kw, dw, sw = max(1, _int(p, 1)), max(1, _int(p, 2, 1)), max(1, _int(p, 3, 1))
    kh, dh, sh = max(1, _int(p, 11, kw)), max(1, _int(p, 12, dw)), max(1, _int(p, 13, sw))
    grow = _pads(p, (18, 19))
    ow = max(w * sw + dw * kw + grow, _int(p, 20))
    oh = max(h * sh + dh * kh + grow, _int(p, 21))
    return _int(p, 0) * (ow if kind.endswith("1D") else oh * ow)


def _padding(p: dict[str, str], ins: list[Shape], kind: str) -> int:
    c, h, w = ins[0]
    return (
        (c + _pads(p, (7,)) + _pads(p, (8,)))
        * (h + _pads(p, (0,)) + _pads(p, (1,)))
        * (w + _pads(p, (2,)) + _pads(p, (3,)))
    )


def _interp(p: dict[str, str], ins: list[Shape], kind: str) -> int:
    c, h, w = ins[0]
    ref = ins[1] if len(ins) > 1 else [0, 0, 0]  # a second bottom: resized to its size
    try:
        hs, ws = float(p.get("1", 1)), float(p.get("2", 1))
    except ValueError:
        hs = ws = 1.0
    hs, ws = (s if math.isfinite(s) else 1.0 for s in (hs, ws))
    return c * max(math.ceil(h * hs), _int(p, 3), ref[1]) * max(math.ceil(w * ws), _int(p, 4), ref[2])


def _tile(p: dict[str, str], ins: list[Shape], kind: str) -> int:
    return math.prod(ins[0]) * max(1, _int(p, 1, 1)) * math.prod(max(1, r) for r in _array(p, 2))


def _inner_product(p: dict[str, str], ins: list[Shape], kind: str) -> int:
    c, h, _ = ins[0]
    return _int(p, 0) * (h if c == 1 else 1)  # a 2-D input: one output row per input row


def _matmul(p: dict[str, str], ins: list[Shape], kind: str) -> int:
    """Gemm / MatMul: at most rows of A x columns of B (either orientation) per broadcast batch."""
    a = ins[0]
    b = ins[1] if len(ins) > 1 else [1, _int(p, 9), _int(p, 8)]
    m = _int(p, 7) if kind == "Gemm" and _int(p, 4) else max(a[1], a[2])
    n = _int(p, 8) if kind == "Gemm" and _int(p, 5) else max(b[1], b[2])
    return max(a[0], b[0]) * m * n


def _attention(p: dict[str, str], ins: list[Shape], kind: str) -> int:
    """MultiHeadAttention / SDPA: the score matrix, query positions x key positions per head, is the largest."""
    q, k = ins[0], ins[1] if len(ins) > 1 else ins[0]
    heads = max(1, _int(p, 1, 1)) if kind == "MultiHeadAttention" else q[0]
    return heads * q[0] * q[1] * k[0] * k[1] if kind == "MultiHeadAttention" else heads * q[1] * k[1]


def _embed(p: dict[str, str], ins: list[Shape], kind: str) -> int:
    return math.prod(ins[0]) * _int(p, 0)


_OUTPUT: dict[str, Callable[[dict[str, str], list[Shape], str], int]] = {
    "Padding": _padding,
    "Interp": _interp,
    "Tile": _tile,
    "InnerProduct": _inner_product,
    "Gemm": _matmul,
    "MatMul": _matmul,
    "MultiHeadAttention": _attention,
    "SDPA": _attention,
    "Embed": _embed,
    "MemoryData": lambda p, ins, kind: _weights(kind, p),
}


def _output_bound(kind: str, p: dict[str, str], ins: list[Shape]) -> int | None:
    """At most how many values the layer's largest output (or working matrix) holds; None where not known."""
    if kind.startswith("Convolution"):
        return _conv(p, ins, kind) if ins else None
    if kind.startswith("Deconvolution"):
        return _deconv(p, ins, kind) if ins else None
    reader = _OUTPUT.get(kind)
    if reader is None or (not ins and kind != "MemoryData"):
        return None
    return reader(p, ins, kind)


class HostBudget:
    """What the shape run has allocated so far, and the check before each layer ncnn is let compute."""

    def __init__(self, path: Path, layers: list) -> None:
        self.path = path
        self.names = layer_names(path)
        self.kept = 0  # bytes: the weights, then every blob computed (light mode off keeps them all)
        for (kind, _, _, p), name in zip(layers, self.names):
            self._admit(kind, name, "weights", _weights(kind, p))

    def before(self, index: int, layer: tuple, shapes: dict[str, Shape]) -> None:
        """Refuse layer `index` if its output, bounded from its inputs' computed shapes, is over a cap."""
        kind, bottoms, _, p = layer
        ins = [shapes[b] for b in bottoms if b in shapes]
        bound = _output_bound(kind, p, ins) if len(ins) == len(bottoms) else None
        if bound is not None:
            self._admit(kind, self.names[index], "output", bound, count=False)

    def computed(self, shape: Shape) -> None:
        self.kept += math.prod(shape) * 4

    def _admit(self, kind: str, name: str, what: str, values: int, count: bool = True) -> None:
        over_one = values > MAX_TENSOR_ELEMENTS
        if over_one or self.kept + values * 4 > MAX_HOST_BYTES:
            cap = (
                f"more than the {MAX_TENSOR_ELEMENTS:,} values ({MAX_TENSOR_ELEMENTS * 4 >> 20} MB of float32) "
                "edgekit lets one blob or one layer's weights take"
                if over_one
                else f"with the {self.kept >> 20} MB before it, more than the {MAX_HOST_BYTES >> 30} GB edgekit "
                "lets one model take on this host"
            )
            raise ModelTooLargeError(
                f"layer {name!r} ({kind}): its {what} would hold up to {values:,} values "
                f"({values * 4 / (1 << 30):.1f} GB of float32), {cap}; refused before ncnn allocates them",
                where=str(self.path),
                hint="check that layer's params in the .param (its output count 0= and weight_data_size, e.g. "
                "a Convolution's 6=, against its kernel and input channels); a real model this large is "
                "estimated at a smaller input shape (--input-shape, or the recipe's)",
            )
        if count:
            self.kept += values * 4
