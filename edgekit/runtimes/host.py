"""Host-side runner helpers shared by the runtime modules: TFLite through ai_edge_litert, ncnn through its
Python package, the ONNX reference through onnxruntime.

Host side only (fidelity checks, tests); the on-device agent has its own copy of this logic because it must
not import edgekit. The runners take a batch (N, ...) in the original model's layout, run it sample by sample
(our artifacts have a fixed batch of 1) and return `Outputs`: (name, array (N, ...)) pairs in the runtime's
order.
The names are what the runtime calls the outputs; `edgekit.fidelity.alignment.align_outputs` maps them back to
the ONNX outputs (a known trap: onnx2tf's INT8 files call them output_0.., dynamic-range files Identity_1..,
and may order them differently; ncnn calls them out0..).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.errors import InputDataError
from edgekit.runtimes.base import output_array

Outputs = list[tuple[str, np.ndarray]]


def run_tflite(
    path: Path, inputs: np.ndarray, threads: int = 1, layout: dict[str, Any] | None = None
) -> Outputs:
    """Every sample of `inputs` through a .tflite model; int8/uint8 inputs and outputs are (de)quantized here.

    `layout` is the artifact's recorded layout (edgekit.convert.tflite_layout): `input`, the axes that turn the
    ONNX model's input into the TFLite input, and `outputs`, per TFLite output (in the interpreter's order) the
    axes that turn it back into the ONNX model's layout (None: left as it is). Without a record (a user's .tflite,
    an artifact cached before the record) inputs in NCHW are transposed to NHWC when the model's input has the
    transposed shape and outputs come back exactly as the model gives them: shapes cannot tell when C == H == W.
    """
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path), num_threads=threads)
    interp.allocate_tensors()
    (inp,) = interp.get_input_details()
    outs = interp.get_output_details()
    names = _tflite_output_names(interp, outs)
    in_axes, out_axes = layout_axes(layout, len(outs))
    results: list[list[np.ndarray]] = [[] for _ in outs]
    for sample in inputs:
        x = _fit_layout(sample[None].astype(np.float32), tuple(inp["shape"]), in_axes)
        interp.set_tensor(inp["index"], _quantize(x, inp))
        interp.invoke()
        for k, out in enumerate(outs):
            y = _dequantize(interp.get_tensor(out["index"]), out)
            axes = out_axes[k]
            results[k].append(np.ascontiguousarray(y.transpose(axes)) if axes is not None else y)
    return [(name, joined(name, r, path)) for name, r in zip(names, results)]


def run_onnx(path: Path, inputs: np.ndarray, threads: int = 1, shown: Path | None = None) -> Outputs:
    """The reference: every sample through onnxruntime (CPU), outputs named as in the ONNX graph. SHOWN: the file
    an error names, the user's own when PATH is a copy of it."""
    sess = onnx_session(path, threads, shown=shown)
    (inp,) = sess.get_inputs()
    names = [o.name for o in sess.get_outputs()]
    results: list[list[np.ndarray]] = [[] for _ in names]
    for sample in inputs:
        for k, y in enumerate(sess.run(names, {inp.name: sample[None].astype(np.float32)})):
            results[k].append(output_array(y))
    return [(name, joined(name, r, shown or path)) for name, r in zip(names, results)]


def joined(name: str, arrays: list[np.ndarray], path: Path) -> np.ndarray:
    """One output's arrays over the inputs joined on the first axis (as every comparison takes them). An output
    whose size depends on the input on another axis (an ONNX NonZero's indices are (rank, count)) cannot be: an
    InputDataError naming it and its shapes, not numpy's concatenate error."""
    arrays = [np.atleast_1d(a) for a in arrays]  # a scalar output (a count): one value per input
    try:
        return np.concatenate(arrays)
    except ValueError:
        shapes = [a.shape for a in arrays]
        first = next((j for j, s in enumerate(shapes) if s[1:] != shapes[0][1:]), 0)
        raise InputDataError(
            f"the model's output {name!r} has shape {shapes[0]} on input 1 and {shapes[first]} on input "
            f"{first + 1}: its size depends on the input on an axis other than the first, so its values on the "
            f"{len(arrays)} evaluation inputs cannot be joined and compared",
            where=str(path),
            hint="edgekit compares an output whose size depends on the input when that axis comes first (a "
            "NonZero's indices transposed to (count, rank), a detector's boxes as (count, 6)): add that Transpose "
            "at the end of the model, or export it with that step (NonZero, NMS) left out and run it on the "
            "outputs yourself",
        ) from None


def onnx_session(path: Path, threads: int = 1, where: str | None = None, shown: Path | None = None) -> Any:
    """An onnxruntime CPU session for PATH; a model it cannot load (an op of a custom domain such as
    `com.me:MyOp`, an opset newer than onnxruntime knows, a broken graph) is an InputDataError naming the file
    (SHOWN: the user's own, when PATH is a copy of it) and onnxruntime's reason, not an internal error."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own kinds (Fail, InvalidGraph, ...)
        raise InputDataError(
            f"onnxruntime {_ort_version()} cannot load {shown or path}: {ort_reason(exc)}",
            where=where or str(shown or path),
            hint="onnxruntime runs the fidelity reference and the onnx-* formats: re-export the model with "
            "standard ONNX ops (no custom domain) and an opset onnxruntime supports (e.g. opset 17)",
        ) from None


def ort_reason(exc: BaseException) -> str:
    """onnxruntime's message without its status prefix, the path it loaded and its C++ source location:
    'Fatal error: com.me:MyOp(-1) is not a registered function/op'."""
    text = " ".join(str(exc).split())
    text = re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ", "", text)
    text = re.sub(r"^Load model from .*? failed:", "", text)
    text = re.sub(r"^/\S+:\d+ .*?\) ", "", text)  # /onnxruntime_src/...:46 void f(...) <the reason>
    return text[:400] or type(exc).__name__


def _ort_version() -> str:
    from importlib.metadata import version

    return version("onnxruntime")


def _tflite_output_names(interp: object, outs: list[dict]) -> list[str]:
    """Signature names when the model has one signature mapping to these tensors, else the tensor names."""
    by_index = {o["index"]: o["name"] for o in outs}
    sigs = interp.get_signature_list()  # type: ignore[attr-defined]
    if len(sigs) == 1:
        runner = interp.get_signature_runner()  # type: ignore[attr-defined]
        for sig_name, detail in runner.get_output_details().items():
            if detail["index"] in by_index:
                by_index[detail["index"]] = sig_name
    return [by_index[o["index"]] for o in outs]


def layout_axes(
    layout: dict[str, Any] | None, outputs: int
) -> tuple[list[int] | None, list[list[int] | None]]:
    """A layout record's input axes and one entry per output (None where it says nothing): no record, or one
    for another number of outputs, leaves every output as the model gives it."""
    if not layout:
        return None, [None] * outputs
    given = layout.get("outputs") or []
    out_axes = list(given) if len(given) == outputs else [None] * outputs
    return layout.get("input"), out_axes


def _fit_layout(x: np.ndarray, shape: tuple[int, ...], axes: list[int] | None = None) -> np.ndarray:
    """The batch `x` (ONNX layout) in the TFLite input's layout: by the recorded `axes` when the artifact has
    them, else by shape (as it is, or channels last when that is the model's shape)."""
    if axes is not None:
        moved = x.transpose(axes)
        if moved.shape != shape:
            raise ValueError(
                f"input of shape {x.shape} transposed {list(axes)} as recorded does not fit the model's "
                f"input {shape}"
            )
        return np.ascontiguousarray(moved)
    if x.shape == shape:
        return x
    if x.ndim == 4 and x.transpose(0, 2, 3, 1).shape == shape:
        return np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    if x.ndim == 3 and x.transpose(0, 2, 1).shape == shape:
        return np.ascontiguousarray(x.transpose(0, 2, 1))
    raise ValueError(f"input of shape {x.shape} does not fit the model's input {shape}")


def _quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    dtype = detail["dtype"]
    if dtype == np.float32:
        return x
    scale, zero = detail["quantization"]
    if not scale:  # an integer input that is not quantized (ids, indices): taken as it is
        return x.astype(dtype)
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)


def _dequantize(y: np.ndarray, detail: dict) -> np.ndarray:
    if y.dtype == np.float32:
        return y.copy()
    scale, zero = detail["quantization"]
    if (
        not scale
    ):  # an integer output that is not quantized (a class index from ArgMax): its values as they are
        return y.copy()
    return ((y.astype(np.float32) - zero) * scale).astype(np.float32)
