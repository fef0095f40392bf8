"""What an INT8 artifact holds that its name does not say: the layers left in float, and how much of the file
they are. A conversion finding, shown in the convert table and kept in the artifact's provenance.

Read from the written files, whatever produced them: a .tflite's constant buffers by tensor type (float32 weights
are float layers; int8 weights and int32 biases are quantized ones), an ncnn .bin's per-layer byte ranges (a
layer whose weights do not start with ncnn's int8 tag runs in float).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from edgekit.convert.base import model_bytes
from edgekit.formats import Format, Precision, Runtime
from edgekit.report.figures import megabytes, percent

MIN_WEIGHT_BYTES = 64  # a float scalar or tiny vector (GELU's sqrt 2) is a constant, not a layer's weights
NOT_QUANTIZABLE = {"MemoryData"}  # ncnn layers with float data that ncnn's int8 has no kernel for


def speed_plan_finding(fmt: Format, files: list[Path]) -> str | None:
    """What the ncnn-int8 speed plan kept, per core, from the artifact's sidecar, as deploy's 'x fp32 by insn'
    (fp32's count over the artifact's): 'speed plan, x fp32 by insn (...; above 1: fewer): pi4-emu 1.00x (no
    fewer instructions than ncnn-fp32 there), pi5-emu 1.95x; 9 of 12 quantizable layers float (their int8
    kernels count more)'. None without a plan (not ncnn-int8, no emulated cores at conversion)."""
    if fmt is not Format.NCNN_INT8:
        return None
    import json

    io = next((f for f in files if f.name.endswith(".io.json")), None)
    try:
        plan = json.loads(io.read_text())["int8"]["speed_plan"] if io is not None else None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(plan, dict) or not plan.get("totals"):
        return None
    from edgekit.convert.ncnn.plan import BY_INSN, KEPT_KEYS, by_insn

    kept = plan.get("kept", "planned")
    key = KEPT_KEYS.get(kept, "planned")
    cores = []
    for device, totals in plan["totals"].items():
        fp32, count = totals.get("fp32", 0), totals.get(key, totals.get("all_int8", 0))
        said = f"{device} {by_insn(fp32, count):.2f}x"
        if count >= fp32 and kept != "fp32":  # a count, not a time: fewer or not, never faster
            said += " (no fewer instructions than ncnn-fp32 there)"
        cores.append(said)
    layers = plan.get("layers") or []
    # an all-int8 artifact has no float layer whatever a sidecar of before 2026-12-07 listed (the plan's wish)
    floats = 0 if kept == "all-int8" else len(plan.get("float_layers") or [])
    if kept == "fp32":
        tail = f"no layer of {len(layers)} int8 (the plan kept none): the artifact is the ncnn-fp32 model"
    elif floats:
        tail = f"{floats} of {len(layers)} quantizable layers float (their int8 kernels count more)"
    else:
        tail = f"all {len(layers)} quantizable layers int8"
    return f"speed plan, {BY_INSN}: " + ", ".join(cores) + f"; {tail}"


def float_leftovers(fmt: Format, files: list[Path]) -> str | None:
    """'float leftovers: 59 layers (36 Gemm, 23 LayerNorm) hold 101.5 of 109.1 MB (93.0 %)', or None when the
    artifact is not INT8 or nothing with weights stayed float."""
    if fmt.precision is not Precision.INT8:
        return None
    if fmt.runtime is Runtime.TFLITE:
        kinds, float_bytes = _tflite(files[0])
    elif fmt.runtime is Runtime.NCNN:
        param = next(f for f in files if f.suffix == ".param")
        kinds, float_bytes = _ncnn(param, next(f for f in files if f.suffix == ".bin"))
    else:
        return None
    if not kinds:
        return None
    total = model_bytes(files)
    share = float_bytes / total if total else 0.0
    layers = ", ".join(f"{n} {kind}" for kind, n in kinds.most_common())
    count = sum(kinds.values())
    return (
        f"float leftovers: {count} layer{'s' if count > 1 else ''} ({layers}) hold {megabytes(float_bytes)} of "
        f"{megabytes(total)} ({percent(share)})"
    )


WEIGHTED = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "CONV_3D", "BATCH_MATMUL")


def dynamic_kept_float(fmt: Format, files: list[Path]) -> str | None:
    """'dynamic range kept float: 5 of 6 weighted layers (4.1 of 10.2 kB of their weights)', said when a
    tflite-dynamic artifact's weighted layers kept float weights (TFLiteConverter leaves a weight tensor under 1024
    elements float); when all did, it is the fp32 model's arithmetic, and nothing said so. None otherwise."""
    if fmt is not Format.TFLITE_DYNAMIC:
        return None
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(files[0].read_bytes(), 0)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    weighted = floats = float_bytes = all_bytes = 0
    for graph in model.subgraphs or []:
        for op in graph.operators or []:
            code = model.operatorCodes[op.opcodeIndex]
            inputs = list(op.inputs) if op.inputs is not None else []
            if (
                names.get(max(code.builtinCode, code.deprecatedBuiltinCode)) not in WEIGHTED
                or len(inputs) < 2
            ):
                continue
            weight = graph.tensors[inputs[1]] if inputs[1] >= 0 else None
            size = _buffer_size(model, weight.buffer) if weight is not None else 0
            if weight is None or size == 0:  # an activation (a MatMul of two tensors), not a weight
                continue
            weighted += 1
            all_bytes += size
            if weight.type == schema.TensorType.FLOAT32:
                floats += 1
                float_bytes += size
    if not floats:
        return None
    which = (
        f"all {weighted} weighted layers" if floats == weighted else f"{floats} of {weighted} weighted layers"
    )
    return (
        f"dynamic range kept float: {which} ({megabytes(float_bytes)} of {megabytes(all_bytes)} of their weights; "
        "TFLite leaves a weight tensor under 1024 elements float)"
        + (": this artifact computes as tflite-fp32 does" if floats == weighted else "")
    )


def _tflite(path: Path) -> tuple[Counter[str], int]:
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(path.read_bytes(), 0)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    kinds: Counter[str] = Counter()
    seen: set[int] = set()
    float_bytes = 0
    for graph in model.subgraphs or []:
        for op in graph.operators or []:
            code = model.operatorCodes[op.opcodeIndex]
            name = names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "CUSTOM")
            weights = [
                t
                for t in (op.inputs if op.inputs is not None else [])
                if t >= 0
                and graph.tensors[t].type == schema.TensorType.FLOAT32
                and _buffer_size(model, graph.tensors[t].buffer) >= MIN_WEIGHT_BYTES
            ]
            if weights:
                kinds[name] += 1
            for t in weights:
                if graph.tensors[t].buffer not in seen:
                    seen.add(graph.tensors[t].buffer)
                    float_bytes += _buffer_size(model, graph.tensors[t].buffer)
    return kinds, float_bytes


def _buffer_size(model: object, index: int) -> int:
    buf = model.buffers[index]  # type: ignore[attr-defined]
    if buf.data is not None:
        return len(buf.data)
    return int(buf.size or 0)  # large models keep buffers after the flatbuffer (offset + size)


def _ncnn(param: Path, bin_path: Path) -> tuple[Counter[str], int]:
    from edgekit.convert.ncnn import weights as ncnn_bin
    from edgekit.convert.ncnn.param import read_param

    data = bin_path.read_bytes()
    graph = read_param(param)
    kinds: Counter[str] = Counter()
    float_bytes = 0
    for layer, (start, end) in zip(graph.layers, ncnn_bin.layer_spans(param, data)):
        if end <= start:
            continue
        if int.from_bytes(data[start : start + 4], "little") == ncnn_bin.TAG_INT8:
            continue
        if layer.type in NOT_QUANTIZABLE:  # a constant blob (a detector's grid): no int8 form to leave out
            continue
        kinds[layer.type] += 1
        float_bytes += end - start
    return kinds, float_bytes
