"""TFLite's ops for analyze: every op output both models have, the INT8 one dequantized, against fp32's, and the
error each op adds by difference (TFLite cannot be fed an intermediate tensor)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.analysis.tensors import LayerError, RunningError
from edgekit.convert.tflite_selective import tensor_key


def tflite_layers(
    fp32_file: Path,
    int8_file: Path,
    inputs: np.ndarray,
    layouts: tuple[dict[str, Any] | None, dict[str, Any] | None] = (None, None),
) -> list[LayerError]:
    """Propagated errors of every TFLite op output that both models have, and the error each op adds. `layouts`:
    each file's recorded layout (edgekit.convert.tflite_layout), by which the samples are fed; without one, the
    shape rule (a square input whose channels equal its sides was fed as it is). A quantized op with no fp32
    counterpart is listed, not dropped: its type says "not compared" and why, its cosine and error are NaN."""
    return tflite_compared(fp32_file, int8_file, inputs, layouts)[0]


def tflite_compared(
    fp32_file: Path,
    int8_file: Path,
    inputs: np.ndarray,
    layouts: tuple[dict[str, Any] | None, dict[str, Any] | None] = (None, None),
    delegated: bool = False,
) -> tuple[list[LayerError], dict[str, Any] | None]:
    """tflite_layers, and with `delegated` what the INT8 file loses as deployed (kernel_loss): the layers are read
    with TFLite's builtin kernels (XNNPACK hides the tensors inside what it delegates), while fidelity, deploy and
    the agent run XNNPACK, whose int8 kernels compute differently."""
    f_ops, f_vals = _tflite_tensors(fp32_file, inputs, layouts[0])
    q_ops, q_vals = _tflite_tensors(int8_file, inputs, layouts[1])
    # an INT8 model's last op writes an int8 tensor that a DEQUANTIZE turns into the named float output
    alias = {op["ins"][0]: op["out"] for op in q_ops if op["op"] == "DEQUANTIZE" and op["ins"]}
    refs, why = _pair(f_ops, f_vals, q_ops, q_vals, alias)
    loss = None
    if delegated:
        deployed = _delegated_outputs(int8_file, inputs, layouts[1])
        loss = kernel_loss(
            {
                t: (f_vals[refs[t]["out"]], q_vals[t], got)
                for t, got in deployed.items()
                if t in refs and t in q_vals
            }
        )
        if loss is not None:
            loss.update(xnnpack_op(int8_file, inputs, layouts[1], q_ops, q_vals, loss))
            loss.pop("reference")  # fp32's output values: used above, no figure for the JSON
    prop: dict[str, RunningError] = {}
    for op in q_ops:
        ref = refs.get(op["out"])
        if ref is not None:
            acc = RunningError()
            for r, g in zip(f_vals[ref["out"]], q_vals[op["out"]]):
                acc.add(r, g)
            prop[op["out"]] = acc
    out = []
    for op in q_ops:
        if op["op"] in TRANSPARENT:  # requantizations: carried through, not layers of their own
            continue
        name = alias.get(op["out"], op["out"])  # the float model's name: what selective quantization takes
        seen = prop.get(op["out"])
        if seen is None:
            if op["int8"]:  # own error 0: ranked last (--fix tries it last, when it holds weights)
                nan = float("nan")
                out.append(
                    LayerError(
                        name, f"{op['op']} (not compared: {why[op['out']]})", op["out"], True, nan, nan, 0.0
                    )
                )
            continue
        ins = [prop[i].rel for i in op["ins"] if i in prop]
        out.append(
            LayerError(
                name,
                op["op"],
                op["out"],
                op["int8"],
                seen.cosine,
                seen.rel,
                max(0.0, seen.rel - max(ins, default=0.0)),
            )
        )
    return out, loss


def kernel_loss(
    outputs: dict[str, tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]],
) -> dict[str, Any] | None:
    """{output: (fp32's values, the INT8 file's with the builtin kernels, with XNNPACK)} -> the worst output's two
    cosines against fp32 when XNNPACK loses much more than the builtin kernels (the criterion of onnx_layers'
    fused_loss), else None. A ViT here: 0.9637 with XNNPACK, 0.9995 with the builtin kernels, the same file on the
    same 8 inputs: every layer row read >= 0.9968 and --fix kept 1 to 64 layers in float for nothing."""
    worst: dict[str, Any] | None = None
    for name, (ref, builtin, deployed) in outputs.items():
        a, b = RunningError(), RunningError()
        for r, x, y in zip(ref, builtin, deployed):
            a.add(r, x)
            b.add(r, y)
        row = {"output": name, "cosine_builtin": a.cosine, "cosine_xnnpack": b.cosine, "reference": ref}
        if worst is None or b.cosine < worst["cosine_xnnpack"]:
            worst = row
    if (
        worst is None
        or (1.0 - worst["cosine_xnnpack"]) <= 2.0 * max(1.0 - worst["cosine_builtin"], 1e-6) + 1e-4
    ):
        return None
    return worst


def xnnpack_op(
    path: Path,
    inputs: np.ndarray,
    layout: dict[str, Any] | None,
    q_ops: list[dict[str, Any]],
    q_vals: dict[str, list[np.ndarray]],
    loss: dict[str, Any],
) -> dict[str, Any]:
    """The op whose XNNPACK output departs most from the builtin kernels' beyond its inputs' (the difference
    method), read from the INT8 file with every op output made a model output (XNNPACK then writes them out).
    Named only when that model's output still loses what the file as deployed does (within 0.002 cosine): else
    making them outputs changed what XNNPACK computes and {} is returned. The ViT: the int8 requantization after
    its first GELU's division (`tfl.quantize3`), whose values near +1 XNNPACK turns into -1 (2.0 apart)."""
    try:
        every = _delegated_outputs(_with_every_output(path), inputs, layout)
    except Exception:  # noqa: BLE001 - a model the rewrite or XNNPACK refuses: the op is not named, the loss is
        return {}
    out = every.get(loss["output"])
    if out is None or abs(_cosine(loss["reference"], out) - loss["cosine_xnnpack"]) > 2e-3:
        return {}
    rel: dict[str, float] = {}
    best: tuple[float, dict[str, Any]] | None = None
    for op in q_ops:
        got, want = every.get(op["out"]), q_vals.get(op["out"])
        if got is None or not want:
            continue
        acc = RunningError()
        for r, g in zip(want, got):
            acc.add(r, g)
        rel[op["out"]] = acc.rel
        own = acc.rel - max((rel.get(i, 0.0) for i in op["ins"]), default=0.0)
        if best is None or own > best[0]:  # a requantization counts: XNNPACK computes it (the ViT's wraps)
            best = (own, op)
    if best is None or best[0] < 1e-3:
        return {}
    op = best[1]
    found = {"op": op["out"], "op_type": op["op"], "op_rel_error_vs_builtin": best[0]}
    if op["op"] in TRANSPARENT and op["ins"]:  # tfl.quantize3 says nothing: the tensor it requantizes does
        found["op_input"] = op["ins"][0]
    return found


def _cosine(ref: list[np.ndarray], got: list[np.ndarray]) -> float:
    acc = RunningError()
    for r, g in zip(ref, got):
        acc.add(r, g)
    return acc.cosine


def _with_every_output(path: Path) -> bytes:
    """The TFLite file with every op output a model output too (appended after its own outputs)."""
    import flatbuffers  # type: ignore[import-untyped]
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(path.read_bytes(), 0)
    graph = model.subgraphs[0]
    outs = [int(i) for i in graph.outputs]
    for op in graph.operators:
        outs += [int(o) for o in op.outputs if o >= 0 and int(o) not in outs]
    graph.outputs = outs
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _delegated_outputs(
    path: Path | bytes, inputs: np.ndarray, layout: dict[str, Any] | None
) -> dict[str, list[np.ndarray]]:
    """The model's outputs, dequantized, per sample, as deployed: TFLite's default resolver (XNNPACK delegated).
    `path`: the file, or a model's bytes."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=path) if isinstance(path, bytes) else Interpreter(model_path=str(path))
    interp.allocate_tensors()
    return {d["name"]: vals for d, vals in zip(interp.get_output_details(), _run(interp, inputs, layout))}


def _run(interp: Any, inputs: np.ndarray, layout: dict[str, Any] | None) -> list[list[np.ndarray]]:
    """Each output's values (dequantized) per sample."""
    from edgekit.runtimes import _fit_layout, _quantize
    from edgekit.runtimes.host import layout_axes

    (inp,) = interp.get_input_details()
    outs = interp.get_output_details()
    axes, _ = layout_axes(layout, 0)
    values: list[list[np.ndarray]] = [[] for _ in outs]
    for sample in inputs:
        x = _fit_layout(sample[None].astype(np.float32), tuple(inp["shape"]), axes)
        interp.set_tensor(inp["index"], _quantize(x, inp))
        interp.invoke()
        for d, vals in zip(outs, values):
            vals.append(_dequantized(interp, d))
    return values


# ops that only change a tensor's encoding (int8 <-> float): the same tensor on either side of them
TRANSPARENT = ("QUANTIZE", "DEQUANTIZE")


def _pair(
    f_ops: list[dict[str, Any]],
    f_vals: dict[str, list[np.ndarray]],
    q_ops: list[dict[str, Any]],
    q_vals: dict[str, list[np.ndarray]],
    alias: dict[str, str],
) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Each INT8 op's fp32 counterpart, by the graph: the fp32 op of the same type and output shape computing on
    the counterparts of its inputs (QUANTIZE / DEQUANTIZE seen through, constants and the model's input left out),
    several such told apart by their outputs on the first sample (the closest). Tensor names do not pair them:
    onnx2tf's two files number a multi-output model's outputs in different orders (`PartitionedCall:0` is one
    output in fp32, the other in INT8). Where the graph gives nothing, the name (tensor_key) as before, shapes
    agreeing. Returns {INT8 output: fp32 op} and, for those left unpaired, {INT8 output: why}."""
    f_made = {op["out"]: op for op in f_ops}
    q_made = {op["out"]: op for op in q_ops}
    f_by_key = {tensor_key(op["out"]): op for op in f_ops if op["op"] not in TRANSPARENT}
    pair: dict[str, str] = {}  # INT8 tensor (seen through requantizations) -> fp32 tensor
    taken: set[str] = set()
    refs: dict[str, dict[str, Any]] = {}
    why: dict[str, str] = {}
    for op in q_ops:
        if op["op"] in TRANSPARENT:
            continue
        shape = q_vals[op["out"]][0].shape if q_vals[op["out"]] else None
        wanted = [pair.get(t, "?") for t in _computed(op["ins"], q_made)]
        candidates = [
            f
            for f in f_ops
            if f["op"] == op["op"]
            and f["out"] not in taken
            and _computed(f["ins"], f_made) == wanted
            and _same_shapes(f_vals[f["out"]], q_vals[op["out"]])
        ]
        ref = _closest(candidates, f_vals, q_vals[op["out"]]) if "?" not in wanted else None
        if ref is None:  # the graph gives nothing: the name, if the tensor there has this one's shape
            named = f_by_key.get(tensor_key(alias.get(op["out"], op["out"])))
            if (
                named is not None
                and named["out"] not in taken
                and _same_shapes(f_vals[named["out"]], q_vals[op["out"]])
            ):
                ref = named
        if ref is None:
            why[op["out"]] = (
                "an input of it has no fp32 counterpart"
                if "?" in wanted
                else f"no {op['op']} of output shape {list(shape or ())} on the same inputs in the fp32 model"
            )
            continue
        taken.add(ref["out"])
        pair[op["out"]] = ref["out"]
        refs[op["out"]] = ref
    for op in q_ops:  # a requantization's output is its input's tensor: compared with the same fp32 one
        if op["op"] in TRANSPARENT:
            source = _seen_through(op["out"], q_made)
            if source in pair:
                refs[op["out"]] = f_made[pair[source]]
    return refs, why


def _seen_through(tensor: str, made: dict[str, dict[str, Any]]) -> str:
    """The tensor a chain of QUANTIZE / DEQUANTIZE ops ending in `tensor` starts from (itself if none)."""
    seen = {tensor}
    while tensor in made and made[tensor]["op"] in TRANSPARENT and made[tensor]["ins"]:
        tensor = made[tensor]["ins"][0]
        if tensor in seen:
            break
        seen.add(tensor)
    return tensor


def _computed(ins: list[str], made: dict[str, dict[str, Any]]) -> list[str]:
    """An op's inputs that other ops compute (requantizations seen through), in order: not its constants (weights
    are float in one file and int8 in the other) nor the model's input."""
    return [t for t in (_seen_through(i, made) for i in ins) if t in made]


def _closest(
    candidates: list[dict[str, Any]], f_vals: dict[str, list[np.ndarray]], got: list[np.ndarray]
) -> Any:
    """The candidate whose outputs are closest to `got` (relative error over the samples), or the one there is."""
    if len(candidates) <= 1 or not got:
        return candidates[0] if candidates else None

    def error(f: dict[str, Any]) -> float:
        acc = RunningError()
        for r, g in zip(f_vals[f["out"]], got):
            acc.add(r, g)
        return acc.rel

    return min(candidates, key=error)


def _same_shapes(ref: list[np.ndarray], got: list[np.ndarray]) -> bool:
    return len(ref) == len(got) and all(r.shape == g.shape for r, g in zip(ref, got))


def _tflite_tensors(
    path: Path, inputs: np.ndarray, layout: dict[str, Any] | None = None
) -> tuple[list[dict[str, Any]], dict[str, list[np.ndarray]]]:
    """Each op (type, input and output tensor names, int8 or not) and every op output, dequantized, per sample."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "preserve_all_tensors is for debugging": it is
        interp = Interpreter(
            model_path=str(path),
            experimental_preserve_all_tensors=True,
            experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        )
    interp.allocate_tensors()
    details = {t["index"]: t for t in interp.get_tensor_details()}
    ops = []
    for op in interp._get_ops_details():
        if op["op_name"] == "DELEGATE" or not len(op["outputs"]):
            continue
        out = details[op["outputs"][0]]
        ops.append(
            {
                "op": op["op_name"],
                "out": out["name"],
                "index": out["index"],
                "ins": [details[i]["name"] for i in op["inputs"] if i >= 0 and i in details],
                "int8": out["dtype"] in (np.int8, np.uint8, np.int16),
            }
        )
    (inp,) = interp.get_input_details()
    values: dict[str, list[np.ndarray]] = {op["out"]: [] for op in ops}
    from edgekit.runtimes import _fit_layout, _quantize
    from edgekit.runtimes.host import layout_axes

    axes, _ = layout_axes(layout, 0)
    for sample in inputs:
        x = _fit_layout(sample[None].astype(np.float32), tuple(inp["shape"]), axes)
        interp.set_tensor(inp["index"], _quantize(x, inp))
        interp.invoke()
        for op in ops:
            values[op["out"]].append(_dequantized(interp, details[op["index"]]))
    return ops, values


def _dequantized(interp: Any, detail: dict[str, Any]) -> np.ndarray:
    raw = interp.get_tensor(detail["index"])
    if raw.dtype in (np.float32, np.float16):
        return raw.astype(np.float32)
    q = detail.get("quantization_parameters") or {}
    scales, zeros = np.asarray(q.get("scales", [])), np.asarray(q.get("zero_points", []))
    if scales.size == 0:
        scale, zero = detail["quantization"]
        return (raw.astype(np.float32) - zero) * scale
    axis = q.get("quantized_dimension", 0)
    shape = [1] * raw.ndim
    if scales.size > 1:
        shape[axis] = scales.size
    return (raw.astype(np.float32) - zeros.reshape(shape)) * scales.reshape(shape).astype(np.float32)
