"""The cost of one inference read from a TFLite flatbuffer (graph.analyze's .tflite reader).

Tensor shapes from the interpreter (host; an input with free dimensions resized to --input-shape, which it then
needs); CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED / BATCH_MATMUL (its adj_x read from the flatbuffer) /
TRANSPOSE_CONV MACs; constants are tensors no op produces (or DEQUANTIZE of one). Any op neither counted nor left
out by design is named in the notes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgekit.errors import InputDataError
from edgekit.estimate.model_cost import ModelCost, nbytes, op_names, tally
from edgekit.runtimes.tflite import load_tflite


def tflite_cost(path: Path, input_shape: list[int] | None) -> ModelCost:
    interp = load_tflite(path)
    tensors = {
        t["index"]: (list(t["shape"]), np.dtype(t["dtype"]).itemsize) for t in interp.get_tensor_details()
    }
    shape = run_shape(path, interp, input_shape)
    if shape is not None:  # free height and width: every tensor as the interpreter resizes it
        resized = resized_shapes(path, shape)
        tensors = {i: (resized[i], size) for i, (_, size) in tensors.items()}
    ops = interp._get_ops_details()  # no public API lists ops with their tensors
    graph_io = {d["index"] for d in [*interp.get_input_details(), *interp.get_output_details()]}
    produced = {int(o) for op in ops for o in op["outputs"]}
    const = {i for i in tensors if i not in produced and i not in graph_io}
    for op in ops:  # fp16 weights: DEQUANTIZE of a constant is a constant too
        if op["op_name"] == "DEQUANTIZE" and all(int(i) in const for i in op["inputs"]):
            const.update(int(o) for o in op["outputs"])
    macs_by: dict[str, int] = {}
    act = 0
    adjoints = _tflite_adjoints(path)
    for op in ops:
        ins = [int(i) for i in op["inputs"] if i >= 0]
        outs = [int(o) for o in op["outputs"]]
        if op["op_name"] == "DEQUANTIZE" and all(i in const for i in ins):
            continue
        macs = _tflite_op_macs(
            op["op_name"], ins, outs, tensors, adjoints.get(int(op["index"]), (False, False))
        )
        if macs:
            macs_by[op["op_name"]] = macs_by.get(op["op_name"], 0) + macs
        act += sum(nbytes(tensors[i]) for i in ins + outs if i not in const)
    left_out = _uncounted_tflite_ops(op["op_name"] for op in ops)
    notes = (
        [
            f"not in the MAC count (0 MACs each): {', '.join(left_out)}; the count covers CONV_2D, "
            "DEPTHWISE_CONV_2D, FULLY_CONNECTED, BATCH_MATMUL and TRANSPOSE_CONV (elementwise, data movement, "
            "pooling and normalization are left out by design); these ops' own work is not in the bound"
        ]
        if left_out
        else []
    )
    stored = {i for i in const if i not in produced}  # the bytes in the file (fp16, int8, fp32)
    params = sum(int(np.prod(tensors[i][0])) for i in stored)
    weight_bytes = sum(nbytes(tensors[i]) for i in stored)
    io = sum(nbytes(tensors[i]) for i in graph_io)
    return ModelCost(
        str(path), "tflite", sum(macs_by.values()), params, weight_bytes, act, io, macs_by, notes=notes
    )


def run_shape(path: Path, interp: Any, input_shape: list[int] | None) -> list[int] | None:
    """The input shape a .tflite with free dimensions (shape_signature -1, but the batch, which runs as 1) is
    measured at: `input_shape`, NHWC as the file or NCHW; None for a file whose shape is fixed (a given shape
    must be the one it states). Its free dimensions were measured at the converter's placeholder, a 1x1 image."""
    detail = interp.get_input_details()[0]
    stated = [int(d) for d in detail["shape"]]
    signature = [int(d) for d in detail.get("shape_signature", detail["shape"])]
    if len(signature) != len(stated):
        signature = stated
    nhwc = (
        [*input_shape[:1], *input_shape[2:], *input_shape[1:2]]
        if input_shape and len(input_shape) == 4
        else None
    )
    free = [axis for axis, d in enumerate(signature) if axis > 0 and d < 0]
    if not free:
        if (
            input_shape and list(input_shape) != stated and nhwc != stated
        ):  # a TFLite graph's shapes are fixed
            raise InputDataError(
                f"input shape {list(input_shape)} does not fit the model's input {stated} (a .tflite states its "
                "shape)",
                where=str(path),
                hint=f"leave --input-shape out, or give {','.join(map(str, stated))}",
            )
        return None
    shown = ",".join("?" if d < 0 else str(d) for d in signature)
    example = ",".join("1" if a == 0 else ("224" if d < 0 else str(d)) for a, d in enumerate(signature))
    names = {1: "height", 2: "width", 3: "channels"} if len(signature) == 4 else {}
    which = ", ".join(str(a) for a in free)
    if any(a in names for a in free):
        which += ": " + ", ".join(names.get(a, "?") for a in free)
    if input_shape is None:
        raise InputDataError(
            f"input {detail['name']!r} [{shown}] has free dimensions (axis {which}) that the MACs and the count "
            f"depend on: the file's placeholder {stated} is no size the model is meant to run at",
            where=str(path),
            hint=f"pass --input-shape {example}, with each free dimension a number (NHWC as the .tflite; NCHW is "
            "taken too)",
        )
    for shape in (list(input_shape), nhwc):
        if shape is not None and _fits(shape, signature):
            return shape
    raise InputDataError(
        f"--input-shape {','.join(map(str, input_shape))} does not fit its input {detail['name']!r} [{shown}]: "
        "batch 1, the fixed dimensions as they are",
        where=str(path),
        hint=f"give a shape like {example} (NHWC as the .tflite, or NCHW)",
    )


def _fits(shape: list[int], signature: list[int]) -> bool:
    """SHAPE sets the free dimensions of SIGNATURE (the batch to 1) and keeps its fixed ones."""
    if len(shape) != len(signature) or min(shape) < 1:
        return False
    return all(n == d or (d < 0 and (a > 0 or n == 1)) for a, (n, d) in enumerate(zip(shape, signature)))


def resized_shapes(path: Path, shape: list[int]) -> dict[int, list[int]]:
    """Every tensor's shape with the input resized to SHAPE (resize_tensor_input + allocate_tensors). Without
    the default XNNPACK delegate: the tensors inside a delegated partition keep the shapes the file states."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interp = Interpreter(
        model_content=Path(path).read_bytes(),
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    interp.resize_tensor_input(interp.get_input_details()[0]["index"], shape)
    try:
        interp.allocate_tensors()
    except (RuntimeError, ValueError) as exc:
        raise InputDataError(
            f"input shape {shape}: the model cannot run at it ({exc})",
            where=str(path),
            hint="give another --input-shape (a size its layers take)",
        ) from None
    return {t["index"]: [int(d) for d in t["shape"]] for t in interp.get_tensor_details()}


_TFLITE_MAC_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "BATCH_MATMUL", "TRANSPOSE_CONV"}
_TFLITE_BY_DESIGN = {  # as onnx_graph._ONNX_BY_DESIGN: data movement, elementwise, pooling, reductions, normalization
    *op_names(
        "RESHAPE TRANSPOSE CONCATENATION SLICE STRIDED_SLICE SPLIT SPLIT_V GATHER GATHER_ND SQUEEZE "
        "EXPAND_DIMS PACK UNPACK PAD PADV2 MIRROR_PAD TILE BROADCAST_TO RESIZE_BILINEAR "
        "RESIZE_NEAREST_NEIGHBOR DEPTH_TO_SPACE SPACE_TO_DEPTH SHAPE CAST DEQUANTIZE QUANTIZE FILL "
        "ZEROS_LIKE ONES_LIKE RANGE"
    ),
    *op_names(
        "ADD SUB MUL DIV NEG ABS MAXIMUM MINIMUM SQRT RSQRT POW EXP LOG FLOOR CEIL ROUND SIGN SQUARE "
        "SQUARED_DIFFERENCE LOGICAL_AND LOGICAL_OR LOGICAL_NOT EQUAL NOT_EQUAL LESS LESS_EQUAL GREATER "
        "GREATER_EQUAL SELECT SELECT_V2 RELU RELU6 RELU_N1_TO_1 RELU_0_TO_1 LEAKY_RELU PRELU LOGISTIC "
        "HARD_SWISH TANH ELU GELU"
    ),
    *op_names(
        "MAX_POOL_2D AVERAGE_POOL_2D L2_POOL_2D MEAN SUM REDUCE_MAX REDUCE_MIN REDUCE_PROD ARG_MAX "
        "ARG_MIN L2_NORMALIZATION LOCAL_RESPONSE_NORMALIZATION SOFTMAX LOG_SOFTMAX"
    ),
}


def _uncounted_tflite_ops(names: Any) -> list[str]:
    """TFLite op names neither counted as MACs nor left out by design, with their count ("CUMSUM x1")."""
    return tally(n for n in names if n not in _TFLITE_MAC_OPS and n not in _TFLITE_BY_DESIGN)


def _tflite_adjoints(path: Path) -> dict[int, tuple[bool, bool]]:
    """{operator index: (adj_x, adj_y)} of the main subgraph's BATCH_MATMULs, from the flatbuffer (the
    interpreter's op details leave options out). An adjoint lhs [.., K, M] contracts over its second-last
    dimension: counting its last (M) made a 256x16x256 attention product 16x its MACs."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(path.read_bytes(), 0)
    if not model.SubgraphsLength():
        return {}
    graph = model.Subgraphs(0)
    out = {}
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        if op.BuiltinOptionsType() != schema.BuiltinOptions.BatchMatMulOptions:
            continue
        table = op.BuiltinOptions()
        options = schema.BatchMatMulOptions()
        options.Init(table.Bytes, table.Pos)
        out[i] = (bool(options.AdjX()), bool(options.AdjY()))
    return out


def _tflite_op_macs(
    name: str, ins: list[int], outs: list[int], tensors: dict, adjoint: tuple[bool, bool] = (False, False)
) -> int:
    if not outs or len(ins) < 2:
        return 0
    out_elems = int(np.prod(tensors[outs[0]][0]))
    w = tensors[ins[1]][0]
    if name == "CONV_2D":  # filter [O, kh, kw, I]
        return out_elems * int(np.prod(w[1:]))
    if name == "DEPTHWISE_CONV_2D":  # filter [1, kh, kw, C*m]
        return out_elems * int(w[1] * w[2])
    if name == "FULLY_CONNECTED":  # weights [O, I]
        return out_elems * int(w[-1])
    if name == "BATCH_MATMUL":  # lhs [.., M, K], or [.., K, M] with adj_x: K is what each output sums over
        lhs = tensors[ins[0]][0]
        return out_elems * int(lhs[-2] if adjoint[0] and len(lhs) >= 2 else lhs[-1])
    if name == "TRANSPOSE_CONV" and len(ins) >= 3:  # (output_shape, weights [O, kh, kw, I], input)
        return int(np.prod(tensors[ins[2]][0])) * int(np.prod(w[:3]))
    return 0
