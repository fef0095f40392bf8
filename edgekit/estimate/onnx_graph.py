"""The cost of one inference read from an ONNX graph (graph.analyze's .onnx reader).

The graph is prepared as the converters prepare it (input shape fixed, simplified, shapes inferred with data
propagation: onnx.shape_inference); Conv / ConvTranspose / Gemm / MatMul (and QLinearConv) MACs per node; any op
neither counted nor left out by design (elementwise, data movement, pooling, normalization) is named in the notes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgekit.errors import InputDataError
from edgekit.estimate.model_cost import ModelCost, nbytes, op_names, tally


def onnx_cost(path: Path, input_shape: list[int] | None) -> ModelCost:
    """An ONNX graph prepared as the converters prepare it (edgekit.convert.onnx): input shape fixed, simplified
    (onnxsim, onnxslim if it fails; in a child process, at most ONNX_PREPARE_TIMEOUT_S), shapes inferred with
    data propagation. Read as given, a graph that computes shapes at run time (Shape -> Slice -> Reshape) left
    its MatMuls without shapes: 0.111 M MACs where the simplified graph has 2.27 M. Weights are the file's own
    initializers (a QDQ model's int8 ones; folding would turn them into fp32)."""
    import onnx
    from onnx import numpy_helper
    from onnx.external_data_helper import load_external_data_for_model

    from edgekit.convert.onnx_file import external_data_files, read_onnx

    model = read_onnx(path, str(path))  # a bad or empty file: the same named error as convert's
    if external_data_files(model, path, str(path)):  # only inside the model's folder, as convert reads them
        load_external_data_for_model(model, str(path.parent))
    notes: list[str] = []
    try:
        stored = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
        _fix_onnx_inputs(model, input_shape, path, notes)
        model = _prepared_onnx(model, notes)
    except InputDataError:
        raise
    except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError and onnx's own: the file is not a model
        raise InputDataError(
            f"not a readable ONNX model: {type(exc).__name__}: {exc}",
            where=str(path),
            hint="give the .onnx an exporter wrote (onnx.checker.check_model should accept it)",
        ) from None
    graph = model.graph
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    shapes: dict[str, tuple[list[int], int]] = {}
    for vi in [*graph.input, *graph.value_info, *graph.output]:
        tt = vi.type.tensor_type
        if not tt.HasField("shape") or any(d.dim_value <= 0 for d in tt.shape.dim):
            continue  # a shape still unknown: its MACs are said to be missing, not counted at 1 per free axis
        shapes[vi.name] = (
            [d.dim_value for d in tt.shape.dim],
            onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type).itemsize if tt.elem_type else 4,
        )
    for name, arr in inits.items():
        shapes.setdefault(name, (list(arr.shape), arr.itemsize))
    macs_by: dict[str, int] = {}
    act = wino = 0
    weights = {**inits, **_dequantized_constants(graph, inits)}  # a QDQ model's weights reach Conv through DQ
    unshaped: list[str] = []
    for node in graph.node:
        standard_mac_op = node.op_type in _ONNX_MAC_OPS and node.domain in ("", "ai.onnx")
        if standard_mac_op and node.output and node.output[0] not in shapes:
            unshaped.append(node.op_type)
        macs = _onnx_node_macs(node, shapes, weights)
        if macs:
            macs_by[node.op_type] = macs_by.get(node.op_type, 0) + macs
            wino += macs if _onnx_3x3_s1_dense(node, weights) else 0
        act += sum(nbytes(shapes.get(n)) for n in [*node.input, *node.output] if n and n not in inits)
    io = sum(nbytes(shapes.get(v.name)) for v in [*graph.input, *graph.output] if v.name not in inits)
    if unshaped:
        kinds = ", ".join(f"{k} x{unshaped.count(k)}" for k in sorted(set(unshaped)))
        notes.append(
            f"{len(unshaped)} MAC op(s) with shapes unknown even after simplification ({kinds}): their MACs are "
            "not counted, so the MACs, the bound and the estimate are too low"
        )
    left_out = _uncounted_onnx_ops(graph)
    if left_out:
        notes.append(
            f"not in the MAC count (0 MACs each): {', '.join(left_out)}; the count covers Conv, ConvTranspose, "
            "Gemm and MatMul (elementwise, data movement, pooling and normalization are left out by design); "
            "these ops' own work is in neither the bound nor the MAC-based estimate"
        )
    return ModelCost(
        str(path),
        "onnx",
        sum(macs_by.values()),
        int(sum(a.size for a in stored.values())),
        int(sum(a.nbytes for a in stored.values())),
        act,
        io,
        macs_by,
        wino,
        notes=notes,
    )


# onnxsim on a large graph can run for minutes; past this the graph is read as is (and said)
ONNX_PREPARE_TIMEOUT_S = 120


_ONNX_MAC_OPS = {"Conv", "ConvTranspose", "Gemm", "MatMul", "QLinearConv"}
# Ops whose work the MAC count leaves out by design (as ncnn's benchmark models' MACs do): data movement and
# shape arithmetic, elementwise arithmetic and the usual activations, pooling, reductions, normalization,
# softmax, quantize/dequantize. Any other op (Erf, TopK, CumSum, Einsum, LSTM, a custom-domain op) is named.
_ONNX_BY_DESIGN = {
    *op_names(
        "Reshape Transpose Concat Slice Split Gather GatherElements Squeeze Unsqueeze Flatten Shape Size "
        "Constant ConstantOfShape Identity Cast CastLike Pad Expand Tile Resize Upsample DepthToSpace "
        "SpaceToDepth Range Dropout"
    ),
    *op_names(
        "Add Sub Mul Div Neg Abs Max Min Sum Mean Sqrt Reciprocal Pow Exp Log Floor Ceil Round Sign Not "
        "And Or Xor Equal Less LessOrEqual Greater GreaterOrEqual Where Clip Relu LeakyRelu PRelu Sigmoid "
        "HardSigmoid HardSwish Tanh Softplus Elu Selu Gelu Mish"
    ),
    *op_names(
        "MaxPool AveragePool GlobalAveragePool GlobalMaxPool ReduceMean ReduceSum ReduceMax ReduceMin "
        "ReduceProd ReduceL2 ArgMax ArgMin BatchNormalization LayerNormalization InstanceNormalization "
        "GroupNormalization Softmax LogSoftmax QuantizeLinear DequantizeLinear DynamicQuantizeLinear"
    ),
}


def _uncounted_onnx_ops(graph: Any) -> list[str]:
    """Op types neither counted as MACs nor left out by design, with their count ("Erf x1", "com.me:Op x2")."""
    left = []
    for node in graph.node:
        standard = node.domain in ("", "ai.onnx")
        if not (standard and (node.op_type in _ONNX_MAC_OPS or node.op_type in _ONNX_BY_DESIGN)):
            left.append(node.op_type if standard else f"{node.domain}:{node.op_type}")
    return tally(left)


def _fix_onnx_inputs(model: Any, input_shape: list[int] | None, path: Path, notes: list[str]) -> None:
    """Every graph input with fixed dimensions, batch 1: the given shape on the first input; a free batch (the
    first dimension) taken as 1, and said; any other free dimension is bad input (its MACs would be counted at
    1 per free axis: "MACs 0.0 M", "estimate 0.002 ms" for a model with free H and W). A batch other than 1 is
    refused as the recipe refuses it: edgekit converts and times one sample per invocation, and ncnn has no
    batch axis."""
    inits = {t.name for t in model.graph.initializer}
    inputs = [v for v in model.graph.input if v.name not in inits]
    if input_shape and inputs:
        _set_onnx_input_shape(model, input_shape, path)
        if input_shape[0] != 1:
            raise InputDataError(
                f"input shape {list(input_shape)}: batch {input_shape[0]}; estimates are of one inference of one "
                "sample (batch 1), as edgekit converts and times models (ncnn has no batch axis)",
                where=str(path),
                hint=f"give batch 1: --input-shape {','.join(map(str, [1, *input_shape[1:]]))} (N samples cost N "
                "inferences)",
            )
    for i, vi in enumerate(inputs):
        dims = vi.type.tensor_type.shape.dim
        free = [j for j, d in enumerate(dims) if d.dim_value <= 0]
        if free and free[0] == 0 and len(dims) > 1:
            label = dims[0].dim_param or "?"
            dims[0].Clear()
            dims[0].dim_value = 1
            notes.append(
                f"input {vi.name!r}: its free batch dimension ({label!r}) is taken as 1: the figures are for one "
                "sample, as the converters fix it"
            )
            free = free[1:]
        if free:
            shown = ",".join(d.dim_param or "?" if d.dim_value <= 0 else str(d.dim_value) for d in dims)
            raise InputDataError(
                f"input {vi.name!r} [{shown}] has free dimensions ({', '.join(dims[j].dim_param or '?' for j in free)}) "
                "that the MACs depend on: they are only known at run time",
                where=str(path),
                hint=f"pass --input-shape {shown.replace('?', 'N')}, with each free dimension a number (NCHW)"
                if i == 0
                else "only the first input's shape can be given (--input-shape): fix this input's dimensions in "
                "the model",
            )


def _prepared_onnx(model: Any, notes: list[str]) -> Any:
    """The model simplified as the converters do (onnx_export.simplify, in a child killed after
    ONNX_PREPARE_TIMEOUT_S), then shape-inferred with data propagation; as given when that fails, and said."""
    import subprocess
    import sys
    import tempfile

    import onnx

    why = "onnxsim and onnxslim could not simplify this graph"
    if model.ByteSize() >= 2**31 - 2**20:  # protobuf's limit: a larger model cannot be written whole
        why = "a graph over 2 GB is not simplified"
    else:
        with tempfile.TemporaryDirectory(prefix="edgekit-estimate-") as tmp:
            src = Path(tmp) / "model.onnx"
            onnx.save(model, str(src))
            try:
                done = subprocess.run(
                    [sys.executable, "-c", _SIMPLIFY, str(src)],
                    capture_output=True,
                    text=True,
                    timeout=ONNX_PREPARE_TIMEOUT_S,
                )
                if done.returncode == 0 and done.stdout.strip().endswith(_SIMPLIFIED):
                    model, why = onnx.load(str(src)), ""
            except subprocess.TimeoutExpired:
                why = f"simplification did not end within {ONNX_PREPARE_TIMEOUT_S} s"
    if why:
        notes.append(
            f"{why}: the graph is read as given (shape inference only); shapes computed at run time may leave "
            "MACs uncounted"
        )
    try:
        return onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception:  # noqa: BLE001 - a custom op may stop data propagation: plain inference then
        return onnx.shape_inference.infer_shapes(model)


_SIMPLIFIED = "EDGEKIT_SIMPLIFIED"
_SIMPLIFY = f"""
import sys
from pathlib import Path
from edgekit.convert.onnx_export import simplify
if simplify(Path(sys.argv[1])):
    print("{_SIMPLIFIED}")
"""


def _onnx_3x3_s1_dense(node: Any, inits: dict) -> bool:
    if node.op_type != "Conv" or node.input[1] not in inits or inits[node.input[1]].shape[2:] != (3, 3):
        return False
    attrs = {a.name: list(a.ints) if a.ints else a.i for a in node.attribute}
    return (
        all(v == 1 for v in attrs.get("strides", [1, 1]))
        and all(v == 1 for v in attrs.get("dilations", [1, 1]))
        and attrs.get("group", 1) == 1
    )


def _set_onnx_input_shape(model: Any, input_shape: list[int], path: Path) -> None:
    """The given shape on the graph's first input: its free dimensions take the given values (shapes then follow
    from them); a fixed dimension that differs is bad input, as the model cannot take it."""
    inits = {t.name for t in model.graph.initializer}
    inputs = [v for v in model.graph.input if v.name not in inits]
    if not inputs:
        return
    dims = inputs[0].type.tensor_type.shape.dim
    stated = [d.dim_value if d.dim_value > 0 else None for d in dims]
    if len(stated) != len(input_shape) or any(s is not None and s != g for s, g in zip(stated, input_shape)):
        shown = ",".join(str(s) if s else "?" for s in stated)
        raise InputDataError(
            f"input shape {list(input_shape)} does not fit the model's input {inputs[0].name!r} [{shown}]",
            where=str(path),
            hint=f"give its own shape (? dimensions free), e.g. --input-shape {shown.replace('?', '1')}",
        )
    for d, g in zip(dims, input_shape):
        d.dim_value = int(g)


def _dequantized_constants(graph: Any, inits: dict) -> dict:
    """DequantizeLinear outputs of a constant (a QDQ model's weights, int8 initializers): name -> the constant,
    whose shape the MAC counts read."""
    return {
        node.output[0]: inits[node.input[0]]
        for node in graph.node
        if node.op_type == "DequantizeLinear" and node.input and node.input[0] in inits
    }


def _onnx_node_macs(node: Any, shapes: dict, inits: dict) -> int:
    out = shapes.get(node.output[0]) if node.output else None
    if out is None:
        return 0
    out_elems = int(np.prod(out[0]))
    if (
        node.op_type == "QLinearConv" and len(node.input) > 3 and node.input[3] in inits
    ):  # x, scale, zp, w, ...
        return out_elems * int(np.prod(inits[node.input[3]].shape[1:]))
    if node.op_type == "Conv" and node.input[1] in inits:
        w = inits[node.input[1]].shape  # [M, C/group, kh, kw]
        return out_elems * int(np.prod(w[1:]))
    if node.op_type == "ConvTranspose" and node.input[1] in inits and node.input[0] in shapes:
        w = inits[node.input[1]].shape  # [C, M/group, kh, kw]
        return int(np.prod(shapes[node.input[0]][0])) * int(np.prod(w[1:]))
    if node.op_type in ("Gemm", "MatMul") and node.input[0] in shapes:
        a = shapes[node.input[0]][0]
        trans_a = any(att.name == "transA" and att.i for att in node.attribute)
        k = a[-2] if trans_a and len(a) >= 2 else a[-1]
        return out_elems * int(k)
    return 0
