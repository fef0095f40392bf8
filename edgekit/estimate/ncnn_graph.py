"""The cost of one inference read from an ncnn .param (graph.analyze's .param reader).

The .param text plus blob shapes from running the net once on this host; Convolution(DepthWise) / Deconvolution /
InnerProduct MACs from each layer's weight_data_size, Gemm / MatMul / MultiHeadAttention / SDPA MACs from their
operands' shapes (a transformer's arithmetic: without them a ViT's MACs were its patch embedding's alone).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.convert.ncnn.param import NcnnLayer
from edgekit.convert.ncnn.runtime import input_mat
from edgekit.errors import InputDataError
from edgekit.estimate.model_cost import ModelCost
from edgekit.estimate.ncnn_bounds import HostBudget
from edgekit.estimate.ncnn_model import check_batch_first, check_input_shape
from edgekit.estimate.ncnn_operands import NcnnShape, check_operands, check_wiring
from edgekit.runtimes.ncnn import load_ncnn, parse_param

_NCNN_CONV = {
    "Convolution",
    "ConvolutionDepthWise",
    "Convolution1D",
    "ConvolutionDepthWise1D",
    "Convolution3D",
    "ConvolutionDepthWise3D",
}
_NCNN_DECONV = {
    "Deconvolution",
    "DeconvolutionDepthWise",
    "Deconvolution1D",
    "DeconvolutionDepthWise1D",
    "Deconvolution3D",
    "DeconvolutionDepthWise3D",
}
# layers that multiply-accumulate but whose MACs this reader does not count: named in the cost's notes
_NCNN_UNCOUNTED = {"LSTM", "GRU", "RNN", "Einsum", "DeformableConv2D"}
_NCNN_MATMUL = {"Gemm", "MatMul", "MultiHeadAttention", "SDPA"}


def ncnn_cost(path: Path, input_shape: list[int] | None) -> ModelCost:
    layers = parse_param(path)
    io_file = path.with_suffix(".io.json")
    io = json.loads(io_file.read_text()) if io_file.exists() else {}
    shapes = _ncnn_blob_shapes(path, layers, io, input_shape)
    elem = (
        4  # activations counted at fp32 whatever the runtime stores: one scale for every artifact (the cost
    )
    # model's feature is calibrated that way; ncnn's fp16 storage halves the real bytes where the core has it)
    macs_by: dict[str, int] = {}
    params = act = wino = 0
    for kind, bottoms, tops, p in layers:
        if kind in ("Input", "Split"):
            continue
        act += sum(int(np.prod(shapes[b])) * elem for b in [*bottoms, *tops] if b in shapes)
        if kind in _NCNN_MATMUL:
            macs, weights = _matmul_macs(NcnnLayer(kind, "", bottoms, tops, p), shapes)
            params += weights
            if macs:
                macs_by[kind] = macs_by.get(kind, 0) + macs
            continue
        if kind not in _NCNN_CONV | _NCNN_DECONV | {"InnerProduct"}:
            continue  # weightless here; param ids mean other things elsewhere (HardSwish's 0 is a float)
        wsize = int(p.get("6", p.get("2", 0)))
        nout = int(p.get("0", 0))
        bias = (
            nout
            if (kind == "InnerProduct" and p.get("1") == "1")
            or (kind != "InnerProduct" and p.get("5") == "1")
            else 0
        )
        params += wsize + (bias if wsize else 0)
        macs = 0
        if kind in _NCNN_CONV and tops[0] in shapes:
            macs = wsize * _spatial(kind, shapes[tops[0]])  # weight_data_size x output spatial size
            if kind == "Convolution" and _is_3x3_s1(p):
                wino += macs
        elif kind in _NCNN_DECONV and bottoms[0] in shapes:
            macs = wsize * _spatial(kind, shapes[bottoms[0]])
        elif kind == "InnerProduct" and bottoms[0] in shapes and nout:
            macs = wsize * max(1, int(np.prod(shapes[bottoms[0]])) // max(1, wsize // nout))
        if macs:
            macs_by[kind] = macs_by.get(kind, 0) + macs
    outs = io.get("outputs") or [tops[0] for _, _, tops, _ in layers[-1:]]
    ins = io.get("inputs") or [t for kind, _, tops, _ in layers if kind == "Input" for t in tops]
    io_bytes = sum(int(np.prod(shapes[b])) * 4 for b in [*ins, *outs] if b in shapes)
    weight_bytes = path.with_suffix(".bin").stat().st_size
    notes = []
    left_out = sorted({kind for kind, _, _, _ in layers} & _NCNN_UNCOUNTED)
    if left_out:
        notes.append(
            f"not in the MAC count (0 MACs each): {', '.join(left_out)}; the count covers convolutions, "
            "deconvolutions, InnerProduct, Gemm, MatMul and attention; these layers' own work is in neither the "
            "bound nor the MAC-based estimate"
        )
    return ModelCost(
        str(path),
        "ncnn",
        sum(macs_by.values()),
        params,
        weight_bytes,
        act,
        io_bytes,
        macs_by,
        wino,
        tuple(sorted({kind for kind, _, _, _ in layers})),
        notes,
    )


def _spatial(kind: str, shape: list[int]) -> int:
    """The positions a (de)convolution's kernel visits: a 1-D one's blob is 2-D, [1, channels, length]."""
    return shape[2] if kind.endswith("1D") else int(np.prod(shape[1:]))


def _matmul_macs(layer: NcnnLayer, shapes: dict[str, list[int]]) -> tuple[int, int]:
    """(MACs, weight elements) of a Gemm, MatMul, MultiHeadAttention or SDPA layer from its operands' shapes
    ([c, h, w]: a 2-D blob is [1, rows, cols]); (0, 0) where a shape is unknown. Param ids are ncnn's own:
    Gemm 2/3 transA/B, 4/5/6 constant A/B/C, 7/8/9 constant M/N/K, 10 C's broadcast type; MultiHeadAttention
    0 embed_dim, 2 weight_data_size (embed_dim x qdim), 3 kdim, 4 vdim, 5 attn_mask (a last bottom)."""
    get = layer.get_int
    operands = [shapes.get(b) for b in layer.bottoms]
    out = shapes.get(layer.tops[0]) if layer.tops else None
    if out is None or not operands or operands[0] is None:
        return 0, 0
    a = operands[0]
    if layer.type == "Gemm":
        const_a, const_b, const_c = get(4), get(5), get(6)
        m, n, k = get(7), get(8), get(9)
        if not k or not (const_a or const_b):  # K from A, the first bottom: M x K, or K x M transposed
            k = a[1] if get(2) else a[2]
        c_size = {1: m, 2: m, 3: m * n, 4: n}.get(get(10), 1) if const_c else 0
        return int(np.prod(out)) * k, (m * k if const_a else 0) + (k * n if const_b else 0) + c_size
    if layer.type == "MatMul":
        return int(np.prod(out)) * a[2], 0
    if (
        layer.type == "SDPA"
    ):  # q [heads, Lq, d], k [heads, Lk, d], v [heads, Lk, dv]: Q K^T, then that times V
        key = operands[1] if len(operands) > 1 else None
        return (key[1] * (int(np.prod(a)) + int(np.prod(out))), 0) if key else (0, 0)
    # MultiHeadAttention: q [Lq, qdim]; k and v [Lk, kdim / vdim] (self-attention: one bottom for all three)
    e = get(0)
    ins = operands[:-1] if get(5) and len(operands) > 1 else operands
    key = ins[1] if len(ins) > 1 else a
    if not e or key is None:
        return 0, 0
    qdim, kdim, vdim = get(2) // e, get(3, e), get(4, e)
    lq, lk = a[0] * a[1], key[0] * key[1]
    weights = e * (qdim + kdim + vdim) + qdim * e
    return lq * qdim * e + lk * (kdim + vdim) * e + 2 * lq * lk * e + lq * e * qdim, weights + 3 * e + qdim


def _is_3x3_s1(p: dict[str, str]) -> bool:
    """ncnn Convolution params: 1 kernel_w, 11 kernel_h (default kernel_w), 2/12 dilation, 3/13 stride."""
    kw = p.get("1", "0")
    kh = p.get("11", kw)
    dw, sw = p.get("2", "1"), p.get("3", "1")
    return (kw, kh, dw, p.get("12", dw), sw, p.get("13", sw)) == ("3", "3", "1", "1", "1", "1")


def _ncnn_blob_shapes(
    path: Path, layers: list, io: dict, input_shape: list[int] | None
) -> dict[str, list[int]]:
    """Every blob's (c, h, w) shape, from one run of the net on this host with zero inputs."""

    inputs = io.get("inputs") or [t for kind, _, tops, _ in layers if kind == "Input" for t in tops]
    stated = io.get("input_shapes")
    if input_shape:
        check_batch_first(path, input_shape, layers)
    if stated and input_shape and [list(input_shape)] != [list(s) for s in stated[:1]]:
        raise InputDataError(  # the artifact was converted and checked at its sidecar's shape: that is the model
            f"input shape {list(input_shape)} is not the one this artifact states: "
            f"{','.join(map(str, stated[0]))} (in {path.with_suffix('.io.json').name})",
            where=str(path),
            hint="leave --input-shape out (it is for a .param without a model.io.json); to cost another input "
            "size, convert the model at that size (the recipe's input shape)",
        )
    shapes = stated or ([input_shape] if input_shape else None)
    if not shapes:
        declared: dict[str, str] = next((p for kind, _, _, p in layers if kind == "Input"), {})
        chw = [declared.get(k, "") for k in ("2", "1", "0")]  # ncnn's Input: 0=w 1=h 2=c
        raise InputDataError(
            f"an ncnn model without its {path.with_suffix('.io.json').name} sidecar needs its input shape",
            where=str(path),
            hint=f"pass --input-shape 1,{','.join(chw)} (NCHW, as its Input layer declares)"
            if all(d.isdigit() and int(d) > 0 for d in chw)
            else "pass --input-shape N,C,H,W, e.g. 1,3,224,224 (its Input layer declares no C,H,W)",
        )
    if not io.get("input_shapes") and input_shape:
        check_input_shape(path, input_shape)
    budget = HostBudget(path, layers)  # weights over the caps are refused before ncnn loads them
    check_wiring(path, layers, budget.names, len(shapes))  # an unfed Input, a blob read twice without a Split
    net = load_ncnn(path, io.get("options") or {})
    out: dict[str, list[int]] = {}
    logical: dict[str, NcnnShape] = {}  # ncnn's own order and rank, for check_operands
    ex = net.create_extractor()
    ex.set_light_mode(False)  # keep intermediate blobs, or each is freed once its consumer ran
    try:
        for name, shape in zip(inputs, shapes):
            ex.input(name, input_mat(np.zeros(shape[1:], dtype=np.float32)))
        for index, layer in enumerate(layers):  # file order: a layer's inputs are computed before it
            budget.before(index, layer, out)  # its output bounded from theirs, refused before ncnn makes it
            check_operands(path, budget.names[index], layer, logical, shapes[0])  # inputs that do not fit
            for blob in layer[2]:
                logical[blob] = _extract(ex, blob, path, shapes)
                out[blob] = _chw(logical[blob])
                budget.computed(out[blob])
    finally:
        ex.clear()  # the extractor's blobs live in the net's pool allocator: free them first
        del ex
        net.clear()
    return out


def _extract(ex: Any, blob: str, path: Path, shapes: list) -> NcnnShape:
    """A blob's logical shape from ncnn (outermost first: [w], [h, w], [c, h, w], [c, d, h, w]): computes the
    layer that makes it, its inputs being computed already."""
    ret, mat = ex.extract(blob)
    if ret != 0:  # a layer failed (out of memory, an input it cannot take): MACs would be missing
        raise InputDataError(
            f"ncnn could not compute blob {blob!r} (error {ret}) with input shape(s) {shapes}: the model "
            "cannot take that input (its MACs, sizes and counts would be a model's that does not run)",
            where=str(path),
            hint="check the input shape against the model (--input-shape, NCHW)",
        )
    # extract() unpacks and converts to fp32, so c/d/h/w are the logical shape
    c, d, h, w = int(mat.c), int(mat.d), int(mat.h), int(mat.w)
    return {1: [w], 2: [h, w], 3: [c, h, w], 4: [c, d, h, w]}.get(int(mat.dims), [0, 0])


def _chw(shape: NcnnShape) -> list[int]:
    """(c, h, w) as the cost reads it: a 2-D blob [1, h, w], depth folded into h."""
    if len(shape) == 4:
        return [shape[0], shape[1] * shape[2], shape[3]]
    return [1, *shape] if len(shape) == 2 else shape if len(shape) == 3 else [1, 1, shape[-1]]
