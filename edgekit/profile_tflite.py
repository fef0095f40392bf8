"""Where a TFLite artifact's instructions go: guest instructions per op on an emulated core, by prefix models.

The TFLite interpreter runs a whole graph per `invoke()` from Python: there is no per-op hook to mark. So the
host writes one prefix model per op, the graph cut after op k in execution order returning every tensor still
live there (op k's outputs, and those of earlier ops that a later op reads or the model returns; weights of ops
past the cut dropped), and counts one invoke of each on the emulated core in one guest process. Op k's own
instructions are the prefix-k count minus the prefix-(k-1) count; the interpreter's fixed per-invoke work is
counted apart (a graph with no op). Each prefix is prepared by the same interpreter (with its default XNNPACK
delegate), so an op fused or delegated differently at a cut shows as a negative or positive difference, not
always small (tiny's int8 convolution after a PAD: -36 k, the PAD +107 k): a negative is reported as 0 with its
difference kept (`clamped_from`, a row the table marks), and the sum of the ops is compared with the whole model
(`coverage`). Instruction counts, not cycles. Control flow (more than one subgraph) is refused with a named error.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgekit.emu.specs import device_spec
from edgekit.errors import InputDataError, UsageError
from edgekit.profile import Profile, count_prefix_models

TYPE_NAMES = {
    1: "uint8",
    0: "float32",
    9: "int8",
    10: "float16",
    2: "int32",
    7: "int16",
    4: "int64",
    6: "bool",
}
PRECISION = {"int8": "int8", "uint8": "int8", "int16": "int16", "float16": "fp16", "float32": "fp32"}


def _schema() -> Any:
    from ai_edge_litert import schema_py_generated  # flatbuffers only: no interpreter, no TensorFlow

    return schema_py_generated


def _op_names(schema: Any) -> dict[int, str]:
    return {
        v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_") and isinstance(v, int)
    }


def read_model(path: Path) -> Any:
    """The model's object tree (ModelT), refusing what prefix models cannot express."""
    schema = _schema()
    data = Path(path).read_bytes()
    if data[4:8] != b"TFL3":
        raise InputDataError(
            "not a readable .tflite model: no TFL3 file identifier",
            where=str(path),
            hint="re-create it with `edgekit convert`",
        )
    try:
        model = schema.ModelT.InitFromPackedBuf(data, 0)
    except Exception as exc:  # noqa: BLE001 (a flatbuffer that does not parse raises anything)
        raise InputDataError(
            f"not a readable .tflite model: {type(exc).__name__}",
            where=str(path),
            hint="re-create it with `edgekit convert`",
        ) from None
    if len(model.subgraphs or []) != 1:
        raise InputDataError(
            f"{len(model.subgraphs or [])} subgraphs (control flow): per-op counts need one graph",
            where=str(path),
            hint="count the whole model with `edgekit estimate`",
        )
    return model


def op_rows(model: Any) -> list[dict[str, Any]]:
    """(type, name, shape, dtype) of every op in execution order, named after the TF op that produced its first
    output (op_name): the same layer has the same name in an fp32 and an int8 profile; unique within the graph."""
    names = _op_names(_schema())
    graph = model.subgraphs[0]
    rows = []
    of_kind: dict[str, int] = {}
    seen: dict[str, int] = {}
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        builtin = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
        kind = (
            names.get(builtin, f"op{builtin}") if builtin != 32 else (code.customCode or b"CUSTOM").decode()
        )
        out = graph.tensors[op.outputs[0]]
        of_kind[kind] = of_kind.get(kind, 0) + 1
        name = op_name((out.name or b"").decode(errors="replace"), kind, of_kind[kind])
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:  # two ops one TF op made (a converter's split): told apart, in execution order
            name = f"{name}#{seen[name]}"
        rows.append(
            {
                "type": kind,
                "name": name,
                "shape": [int(d) for d in (out.shape if out.shape is not None else [])],
                "dtype": TYPE_NAMES.get(int(out.type), str(out.type)),
            }
        )
    return rows


# parts of a tensor name no TF op of the graph gave: a bias constant, a signature output, a converter's own op
_NOT_AN_OP = re.compile(r"^(Const(_\d+)?|(Stateful)?PartitionedCall(_\d+)?:\d+|tfl\..*)$")
# the last part of a TF op's name for a TFLite op type whose own name does not start it (CONV_2D: convolution)
_TF_WORDS = {
    "FULLY_CONNECTED": ("matmul", "dense", "tensordot", "biasadd"),
    "BATCH_MATMUL": ("matmul", "einsum"),
    "TRANSPOSE_CONV": ("conv2d_transpose", "conv_transpose", "conv2dbackpropinput"),
}


def op_name(tensor: str, kind: str, nth: int) -> str:
    """An op's name from its output tensor's: a fused op's tensor lists every TF op folded into it and, last, the
    constant its bias came from (`.../Relu;.../convolution;Const_10`: the constant's number differs between the
    fp32 and int8 models), so the TF op of the op's own type (`.../convolution`), else the first one named. A
    tensor no TF op names (a signature output `PartitionedCall:0`, which the int8 model gives its DEQUANTIZE and
    its FULLY_CONNECTED `PartitionedCall:01`; `tfl.quantize`) names the op by its type and ordinal instead."""
    parts = [p for p in tensor.split(";") if p and not _NOT_AN_OP.match(p.rsplit("/", 1)[-1])]
    if not parts:
        return f"{kind}_{nth}"
    words = _TF_WORDS.get(kind, (re.sub(r"[^a-z]", "", kind.lower())[:4],))
    own = [p for p in parts if p.rsplit("/", 1)[-1].lower().startswith(words)]
    return (own or parts)[0]


def live_outputs(graph: Any, k: int) -> list[int]:
    """The tensors prefix k returns: op k's outputs, and every tensor ops 0..k produced that an op after k reads
    or the model returns. With op k's outputs alone, XNNPACK dropped the ops whose results no prefix output
    needed: a convolution on a side branch of a two-output model counted 0 and its main branch's ops moved."""
    later = {t for op in graph.operators[k + 1 :] for t in op.inputs if t >= 0}
    later.update(graph.outputs)
    mine = [t for t in graph.operators[k].outputs if t >= 0]
    earlier = [t for op in graph.operators[:k] for t in op.outputs if t >= 0 and t in later]
    return [*mine, *(t for t in dict.fromkeys(earlier) if t not in mine)]


def write_prefixes(path: Path, folder: Path) -> list[Path]:
    """One model per op: the graph up to and including op k, returning every tensor still live after op k (so
    no op in it is dead code to the interpreter's delegate)."""
    import flatbuffers  # type: ignore[import-untyped]

    schema = _schema()
    source = Path(path).read_bytes()
    n_ops = len(read_model(path).subgraphs[0].operators)
    out = []
    for k in range(n_ops):
        model = schema.ModelT.InitFromPackedBuf(source, 0)  # a fresh tree: Pack() shares nothing between cuts
        graph = model.subgraphs[0]
        graph.outputs = live_outputs(graph, k)
        graph.operators = graph.operators[: k + 1]
        model.signatureDefs = []  # the signature names the full model's outputs
        used = {
            t
            for op in graph.operators
            for t in [*op.inputs, *op.outputs, *(op.intermediates or [])]
            if t >= 0
        }
        used.update(graph.inputs)
        keep = {graph.tensors[t].buffer for t in used}
        for index, buffer in enumerate(model.buffers or []):
            if index not in keep and buffer.data is not None:
                buffer.data = None  # weights of ops past the cut: not read, not worth the bytes
        builder = flatbuffers.Builder(1024)
        builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
        target = folder / f"prefix_{k:04d}.tflite"
        target.write_bytes(bytes(builder.Output()))
        out.append(target)
    return out


def write_empty(path: Path, folder: Path) -> Path:
    """The model with no op (its input is its output): what one invoke costs the interpreter itself."""
    import flatbuffers

    schema = _schema()
    model = schema.ModelT.InitFromPackedBuf(Path(path).read_bytes(), 0)
    graph = model.subgraphs[0]
    graph.operators = []
    graph.outputs = list(graph.inputs)
    model.signatureDefs = []
    for buffer in model.buffers or []:
        buffer.data = None
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    target = folder / "empty.tflite"
    target.write_bytes(bytes(builder.Output()))
    return target


def write_resized(path: Path, shapes: dict[int, list[int]], folder: Path) -> Path:
    """A copy of the model with every tensor's shape as the interpreter resizes it (tflite_graph.resized_shapes):
    the prefix models cut from it, and the whole inference, run at that size (from the file, its free height and
    width ran at the converter's 1x1 placeholder)."""
    import flatbuffers

    model = _schema().ModelT.InitFromPackedBuf(Path(path).read_bytes(), 0)
    for index, tensor in enumerate(model.subgraphs[0].tensors):
        if index in shapes:
            tensor.shape = list(shapes[index])
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    target = folder / "full.tflite"
    target.write_bytes(bytes(builder.Output()))
    return target


def check_threads(threads: int) -> None:
    """Per-op counts at one thread only: at more, XNNPACK's pool threads wait for work, and how long varies run to
    run, so the difference of two prefixes is not an op's work (as onnxruntime's, profile_onnx)."""
    if threads > 1:
        raise UsageError(
            f"--threads {threads}: TFLite's per-op counts are made at one thread only (at 4 threads two runs of "
            "one model counted its DEQUANTIZE 45.66 k then 6.19 k instructions and an op at 255 % of the whole: "
            "XNNPACK's thread pool waiting, so the difference of two prefixes is not an op's work)",
            where="--threads",
            hint="profile at --threads 1 (where one op's count is its work); for how layers split over threads, "
            "profile the model's ncnn artifact (`edgekit profile model.param --target pi4-emu --threads 4`, "
            "its busiest-thread column); `edgekit bench FILE --target pi4-emu --threads 4` counts a whole "
            "inference",
        )


def profile_tflite(
    artifact: Path,
    device: str,
    threads: int = 1,
    timeout_s: float = 3600,
    say: Callable[[str], None] | None = None,
    input_shape: list[int] | None = None,
) -> Profile:
    """Per-op guest instruction counts of one TFLite artifact on an emulated DEVICE (ai_edge_litert); SAY (if
    given) hears how many models are counted before the guest runs. A model whose input has free dimensions
    other than the batch (shape_signature -1) is counted at `input_shape`, which it then needs."""
    from edgekit.estimate.tflite_graph import resized_shapes, run_shape
    from edgekit.runtimes.tflite import load_tflite

    artifact = Path(artifact)
    check_threads(threads)
    device_spec(device)  # an unknown device is named before any model is written
    shape = run_shape(artifact, load_tflite(artifact), input_shape)
    shapes = resized_shapes(artifact, shape) if shape is not None else None
    with tempfile.TemporaryDirectory(prefix="edgekit-tflite-profile-") as tmp:
        whole = artifact if shapes is None else write_resized(artifact, shapes, Path(tmp))
        rows = [
            {**row, "precision": PRECISION.get(row["dtype"], row["dtype"])}
            for row in op_rows(read_model(whole))
        ]
        result = count_prefix_models(
            whole,
            write_empty(whole, Path(tmp)),
            write_prefixes(whole, Path(tmp)),
            rows,
            device,
            label="guest instructions per op on the emulated core, 1 inference at 1 thread, by prefix models "
            "(exact counts, differenced; not cycles)",
            threads=threads,
            timeout_s=timeout_s,
            say=say,
        )
        result.artifact = str(artifact)
        return result
