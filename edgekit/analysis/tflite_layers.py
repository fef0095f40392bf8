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
    shape rule (a square input whose channels equal its sides was fed as it is)."""
    f_ops, f_vals = _tflite_tensors(fp32_file, inputs, layouts[0])
    q_ops, q_vals = _tflite_tensors(int8_file, inputs, layouts[1])
    f_by_key = {tensor_key(op["out"]): op for op in f_ops}
    # an INT8 model's last op writes an int8 tensor that a DEQUANTIZE turns into the named float output
    alias = {op["ins"][0]: op["out"] for op in q_ops if op["op"] == "DEQUANTIZE" and op["ins"]}
    prop: dict[str, RunningError] = {}
    pairs = []
    for op in q_ops:
        ref = f_by_key.get(tensor_key(alias.get(op["out"], op["out"])))
        if ref is None:
            continue
        acc = RunningError()
        for r, g in zip(f_vals[ref["out"]], q_vals[op["out"]]):
            if r.shape != g.shape:
                break
            acc.add(r, g)
        else:
            prop[op["out"]] = acc
            pairs.append(op)
    out = []
    for op in pairs:
        if op["op"] in (
            "QUANTIZE",
            "DEQUANTIZE",
        ):  # requantizations: carried through, not layers of their own
            continue
        acc = prop[op["out"]]
        ins = [prop[i].rel for i in op["ins"] if i in prop]
        name = alias.get(op["out"], op["out"])  # the float model's name: what selective quantization takes
        out.append(
            LayerError(
                name,
                op["op"],
                op["out"],
                op["int8"],
                acc.cosine,
                acc.rel,
                max(0.0, acc.rel - max(ins, default=0.0)),
            )
        )
    return out


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
