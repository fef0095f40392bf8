"""What one inference of a model asks of the hardware: MACs, parameters, and bytes moved, read from the graph.

One reader per artifact kind, all giving the same ModelCost:
- ONNX: shapes from onnx.shape_inference; Conv / ConvTranspose / Gemm / MatMul MACs.
- TFLite: tensor shapes from the interpreter (host); CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED /
  BATCH_MATMUL (its adj_x read from the flatbuffer) / TRANSPOSE_CONV MACs; constants are tensors no op produces (or DEQUANTIZE of one).
- ncnn: the .param text plus blob shapes from running the net once on this host; Convolution(DepthWise) /
  Deconvolution / InnerProduct MACs from each layer's weight_data_size.
"Bytes moved" is the no-reuse traffic: every weight read once plus every layer's activation inputs read and
outputs written once. Caches make the real traffic smaller, so roofline.py also uses the compulsory part
(weights + model input and output) for its lower bound.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.convert.ncnn.runtime import input_mat
from edgekit.errors import InputDataError
from edgekit.estimate.ncnn_model import check_batch_first, check_input_shape
from edgekit.runtimes.ncnn import load_ncnn, parse_param
from edgekit.runtimes.tflite import load_tflite


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


def analyze(path: Path, input_shape: list[int] | None = None) -> ModelCost:
    """The cost of one inference of the model at PATH (.onnx, .tflite or ncnn .param)."""
    path = Path(path)
    if not path.exists():
        raise InputDataError("no such model file", where=str(path))
    readers = {".onnx": _onnx, ".tflite": _tflite, ".param": _ncnn}
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


# --- ONNX ----------------------------------------------------------------------------------------------------------
def _onnx(path: Path, input_shape: list[int] | None) -> ModelCost:
    """An ONNX graph prepared as the converters prepare it (edgekit.convert.onnx): input shape fixed, simplified
    (onnxsim, onnxslim if it fails; in a child process, at most ONNX_PREPARE_TIMEOUT_S), shapes inferred with
    data propagation. Read as given, a graph that computes shapes at run time (Shape -> Slice -> Reshape) left
    its MatMuls without shapes: 0.111 M MACs where the simplified graph has 2.27 M. Weights are the file's own
    initializers (a QDQ model's int8 ones; folding would turn them into fp32)."""
    import onnx
    from onnx import numpy_helper
    from onnx.external_data_helper import load_external_data_for_model

    from edgekit.convert.onnx import external_data_files, read_onnx

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
        act += sum(_nbytes(shapes.get(n)) for n in [*node.input, *node.output] if n and n not in inits)
    io = sum(_nbytes(shapes.get(v.name)) for v in [*graph.input, *graph.output] if v.name not in inits)
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


def _names(text: str) -> list[str]:
    return text.split()


_ONNX_MAC_OPS = {"Conv", "ConvTranspose", "Gemm", "MatMul", "QLinearConv"}
# Ops whose work the MAC count leaves out by design (as ncnn's benchmark models' MACs do): data movement and
# shape arithmetic, elementwise arithmetic and the usual activations, pooling, reductions, normalization,
# softmax, quantize/dequantize. Any other op (Erf, TopK, CumSum, Einsum, LSTM, a custom-domain op) is named.
_ONNX_BY_DESIGN = {
    *_names(
        "Reshape Transpose Concat Slice Split Gather GatherElements Squeeze Unsqueeze Flatten Shape Size "
        "Constant ConstantOfShape Identity Cast CastLike Pad Expand Tile Resize Upsample DepthToSpace "
        "SpaceToDepth Range Dropout"
    ),
    *_names(
        "Add Sub Mul Div Neg Abs Max Min Sum Mean Sqrt Reciprocal Pow Exp Log Floor Ceil Round Sign Not "
        "And Or Xor Equal Less LessOrEqual Greater GreaterOrEqual Where Clip Relu LeakyRelu PRelu Sigmoid "
        "HardSigmoid HardSwish Tanh Softplus Elu Selu Gelu Mish"
    ),
    *_names(
        "MaxPool AveragePool GlobalAveragePool GlobalMaxPool ReduceMean ReduceSum ReduceMax ReduceMin "
        "ReduceProd ReduceL2 ArgMax ArgMin BatchNormalization LayerNormalization InstanceNormalization "
        "GroupNormalization Softmax LogSoftmax QuantizeLinear DequantizeLinear DynamicQuantizeLinear"
    ),
}


def _uncounted_onnx_ops(graph: Any) -> list[str]:
    """Op types neither counted as MACs nor left out by design, with their count ("Erf x1", "com.me:Op x2")."""
    found: dict[str, int] = {}
    for node in graph.node:
        standard = node.domain in ("", "ai.onnx")
        if standard and (node.op_type in _ONNX_MAC_OPS or node.op_type in _ONNX_BY_DESIGN):
            continue
        name = node.op_type if standard else f"{node.domain}:{node.op_type}"
        found[name] = found.get(name, 0) + 1
    return [f"{name} x{n}" for name, n in sorted(found.items())]


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


# --- TFLite --------------------------------------------------------------------------------------------------------
def _tflite(path: Path, input_shape: list[int] | None) -> ModelCost:
    interp = load_tflite(path)
    stated = [int(d) for d in interp.get_input_details()[0]["shape"]]
    nhwc = (
        [*input_shape[:1], *input_shape[2:], *input_shape[1:2]]
        if input_shape and len(input_shape) == 4
        else None
    )
    if input_shape and list(input_shape) != stated and nhwc != stated:  # a TFLite graph's shapes are fixed
        raise InputDataError(
            f"input shape {list(input_shape)} does not fit the model's input {stated} (a .tflite states its shape)",
            where=str(path),
            hint=f"leave --input-shape out, or give {','.join(map(str, stated))}",
        )
    tensors = {
        t["index"]: (list(t["shape"]), np.dtype(t["dtype"]).itemsize) for t in interp.get_tensor_details()
    }
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
        act += sum(_nbytes(tensors[i]) for i in ins + outs if i not in const)
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
    weight_bytes = sum(_nbytes(tensors[i]) for i in stored)
    io = sum(_nbytes(tensors[i]) for i in graph_io)
    return ModelCost(
        str(path), "tflite", sum(macs_by.values()), params, weight_bytes, act, io, macs_by, notes=notes
    )


_TFLITE_MAC_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "BATCH_MATMUL", "TRANSPOSE_CONV"}
_TFLITE_BY_DESIGN = {  # as _ONNX_BY_DESIGN: data movement, elementwise, pooling, reductions, normalization
    *_names(
        "RESHAPE TRANSPOSE CONCATENATION SLICE STRIDED_SLICE SPLIT SPLIT_V GATHER GATHER_ND SQUEEZE "
        "EXPAND_DIMS PACK UNPACK PAD PADV2 MIRROR_PAD TILE BROADCAST_TO RESIZE_BILINEAR "
        "RESIZE_NEAREST_NEIGHBOR DEPTH_TO_SPACE SPACE_TO_DEPTH SHAPE CAST DEQUANTIZE QUANTIZE FILL "
        "ZEROS_LIKE ONES_LIKE RANGE"
    ),
    *_names(
        "ADD SUB MUL DIV NEG ABS MAXIMUM MINIMUM SQRT RSQRT POW EXP LOG FLOOR CEIL ROUND SIGN SQUARE "
        "SQUARED_DIFFERENCE LOGICAL_AND LOGICAL_OR LOGICAL_NOT EQUAL NOT_EQUAL LESS LESS_EQUAL GREATER "
        "GREATER_EQUAL SELECT SELECT_V2 RELU RELU6 RELU_N1_TO_1 RELU_0_TO_1 LEAKY_RELU PRELU LOGISTIC "
        "HARD_SWISH TANH ELU GELU"
    ),
    *_names(
        "MAX_POOL_2D AVERAGE_POOL_2D L2_POOL_2D MEAN SUM REDUCE_MAX REDUCE_MIN REDUCE_PROD ARG_MAX "
        "ARG_MIN L2_NORMALIZATION LOCAL_RESPONSE_NORMALIZATION SOFTMAX LOG_SOFTMAX"
    ),
}


def _uncounted_tflite_ops(names: Any) -> list[str]:
    """TFLite op names neither counted as MACs nor left out by design, with their count ("CUMSUM x1")."""
    found: dict[str, int] = {}
    for name in names:
        if name not in _TFLITE_MAC_OPS and name not in _TFLITE_BY_DESIGN:
            found[name] = found.get(name, 0) + 1
    return [f"{name} x{n}" for name, n in sorted(found.items())]


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


# --- ncnn ----------------------------------------------------------------------------------------------------------
_NCNN_CONV = {"Convolution", "ConvolutionDepthWise", "Convolution1D", "ConvolutionDepthWise1D"}
_NCNN_DECONV = {"Deconvolution", "DeconvolutionDepthWise"}


def _ncnn(path: Path, input_shape: list[int] | None) -> ModelCost:
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
            macs = wsize * int(np.prod(shapes[tops[0]][1:]))  # weight_data_size x output spatial size
            if kind == "Convolution" and _is_3x3_s1(p):
                wino += macs
        elif kind in _NCNN_DECONV and bottoms[0] in shapes:
            macs = wsize * int(np.prod(shapes[bottoms[0]][1:]))
        elif kind == "InnerProduct" and bottoms[0] in shapes and nout:
            macs = wsize * max(1, int(np.prod(shapes[bottoms[0]])) // max(1, wsize // nout))
        if macs:
            macs_by[kind] = macs_by.get(kind, 0) + macs
    outs = io.get("outputs") or [tops[0] for _, _, tops, _ in layers[-1:]]
    ins = io.get("inputs") or [t for kind, _, tops, _ in layers if kind == "Input" for t in tops]
    io_bytes = sum(int(np.prod(shapes[b])) * 4 for b in [*ins, *outs] if b in shapes)
    weight_bytes = path.with_suffix(".bin").stat().st_size
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
    )


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
        raise InputDataError(
            "an ncnn model without its model.io.json sidecar needs its input shape",
            where=str(path),
            hint="pass --input-shape 1,3,224,224 (NCHW)",
        )
    if not io.get("input_shapes") and input_shape:
        check_input_shape(path, input_shape)
    net = load_ncnn(path, io.get("options") or {})
    out: dict[str, list[int]] = {}
    blobs = [t for _, _, tops, _ in layers for t in tops]
    ex = net.create_extractor()
    ex.set_light_mode(False)  # keep intermediate blobs, or each is freed once its consumer ran
    try:
        for name, shape in zip(inputs, shapes):
            ex.input(name, input_mat(np.zeros(shape[1:], dtype=np.float32)))
        for blob in blobs:
            ret, mat = ex.extract(blob)
            if ret != 0:  # a layer failed (out of memory, an input it cannot take): MACs would be missing
                raise InputDataError(
                    f"ncnn could not compute blob {blob!r} (error {ret}) with input shape(s) {shapes}: the model "
                    "cannot take that input (its MACs, sizes and counts would be a model's that does not run)",
                    where=str(path),
                    hint="check the input shape against the model (--input-shape, NCHW)",
                )
            # extract() unpacks and converts to fp32, so c/d/h/w are the logical shape
            out[blob] = (
                [int(mat.c), int(mat.d) * int(mat.h), int(mat.w)]
                if mat.dims >= 3
                else [1, int(mat.h), int(mat.w)]
            )
    finally:
        ex.clear()  # the extractor's blobs live in the net's pool allocator: free them first
        del ex
        net.clear()
    return out


def _nbytes(shape_and_size: tuple[list[int], int] | None) -> int:
    if shape_and_size is None:
        return 0
    dims, itemsize = shape_and_size
    return int(np.prod(dims)) * itemsize if dims else itemsize
