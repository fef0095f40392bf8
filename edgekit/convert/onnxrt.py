"""ONNX -> ONNX Runtime fp32 (the model as prepared) and INT8 (static QDQ quantization by onnxruntime's own
quantization tool with the recipe's calibration data).

INT8 settings: QDQ format, uint8 activations and int8 weights (the CPU provider's fast path on x86 and ARM64),
weights per channel unless the recipe asks per-tensor; the recipe's calibration method maps to onnxruntime's
(`kl` -> Entropy, `absmax` -> MinMax). The model's inputs and outputs stay float (QDQ keeps float I/O), so
`int8.io: int8` has no effect here.

`kl`: quantize_static builds its Entropy calibrator with 128 histogram bins and 128 quantized bins, which leaves
the KL search one candidate, the whole histogram: the same ranges as MinMax, byte for byte the same model. Here it
gets 2048 bins searched down to 128 (TensorRT's and ncnn2table's numbers), and the search is onnxruntime's own
computed with numpy per candidate (`FastEntropyCollector`; onnxruntime's Python loops take ~1.5 s a tensor at 2048
bins, minutes for a MobileNet).
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.convert.base import Converter
from edgekit.errors import ConversionError, RecipeError
from edgekit.formats import Format
from edgekit.recipe import CalibrationMethod, Granularity, Recipe

QUANTIZER_SETTINGS_VERSION = 3  # 2: a saturated int32 bias is a finding; 3: kl searches 2048 bins


class OnnxRuntimeConverter(Converter):
    formats = (Format.ONNX_FP32, Format.ONNX_INT8)
    dists = ("onnxruntime", "onnx")

    @classmethod
    def tool_versions(cls) -> dict[str, str]:
        return cls.dist_versions()

    @classmethod
    def settings(cls, recipe: Recipe, fmt: Format) -> dict[str, Any]:
        return {"quant": QUANTIZER_SETTINGS_VERSION, "format": "QDQ"} if fmt is Format.ONNX_INT8 else {}

    def __init__(self) -> None:
        # onnxruntime's quantizer imports torch (~300 MiB, 2-3 s): imported here, before the pipeline samples the
        # conversion's memory (PeakRss), so "peak mem" is the quantization's whether or not this process had
        # imported torch already (a fresh torch export did; an ONNX from the cache did not)
        import onnxruntime.quantization  # noqa: F401

    def convert(self, onnx_path: Path, recipe: Recipe, fmt: Format, out_dir: Path) -> list[Path]:
        self.findings: dict[Format, list[str]] = getattr(self, "findings", {})
        out = out_dir / "model.onnx"
        if fmt is Format.ONNX_FP32:
            shutil.copyfile(onnx_path, out)
            return [out]
        quantize_qdq(onnx_path, out, recipe)
        saturated = saturated_biases(out)
        if saturated:
            self.findings.setdefault(fmt, []).append(
                f"onnx-int8: the int32 bias of {_names(saturated)} saturates (its scale, the input's x the weights', "
                "is too small for the bias: the calibrated input range is tiny), and onnxruntime's fused "
                "integer kernels can wrap around there: check that the calibration data reaches that layer "
                "as real inputs would (a random-weight model's activations vanish)"
            )
        return [out]


def quantize_qdq(
    onnx_path: Path, out: Path, recipe: Recipe, float_nodes: Sequence[str] | None = None
) -> None:
    """Static QDQ quantization of `onnx_path` into `out` with the recipe's calibration inputs; the nodes named in
    FLOAT_NODES (default: the recipe's int8.onnx_float_nodes) stay float."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization import (
        CalibrationMethod as OrtMethod,
    )

    from edgekit.convert.calibration import calibration_inputs

    keep_float = list(recipe.int8.onnx_float_nodes if float_nodes is None else float_nodes)
    _check_node_names(onnx_path, keep_float, recipe)
    calib = calibration_inputs(recipe)

    class Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self.samples = iter(calib)

        def get_next(self) -> dict[str, np.ndarray] | None:
            sample = next(self.samples, None)
            return None if sample is None else {recipe.input.name: sample[None].astype(np.float32)}

    method = recipe.calibration.method if recipe.calibration else CalibrationMethod.KL
    ort_method = OrtMethod.Entropy if method is CalibrationMethod.KL else OrtMethod.MinMax
    try:
        with _quiet(), _kl_bins(ort_method is OrtMethod.Entropy):
            quantize_static(
                str(onnx_path),
                str(out),
                Reader(),
                quant_format=QuantFormat.QDQ,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                per_channel=recipe.int8.granularity is Granularity.PER_CHANNEL,
                calibrate_method=ort_method,
                nodes_to_exclude=keep_float,
            )
    except Exception as exc:  # onnxruntime raises plain exceptions: named here with the model
        raise ConversionError(
            f"onnxruntime's quantize_static failed: {type(exc).__name__}: {exc}", where=str(onnx_path)
        ) from exc


# the KL search: a histogram of KL_BINS bins over [-absmax, absmax], thresholds of KL_QUANTIZED_BINS bins and up
KL_BINS = 2048
KL_QUANTIZED_BINS = 128
_PATCH_LOCK = threading.Lock()


@contextlib.contextmanager
def _kl_bins(entropy: bool) -> Iterator[None]:
    """quantize_static passes its Entropy calibrator no bin counts (onnxruntime 1.23 forwards only the Calib*
    extra_options): while it runs, the calibrator it creates gets KL_BINS / KL_QUANTIZED_BINS and the numpy
    search. The module's name is swapped back after, under a lock."""
    if not entropy:
        yield
        return
    import importlib

    # the module, not the package's `quantize` function that shadows its name as an attribute
    ort_quantize = importlib.import_module("onnxruntime.quantization.quantize")

    with _PATCH_LOCK:
        original = ort_quantize.create_calibrator

        def create(*args: Any, **kwargs: Any) -> Any:
            # another thread's quantize_static of another method, while this one runs: onnxruntime's own
            method = kwargs.get("calibrate_method", args[3] if len(args) > 3 else None)
            if getattr(method, "name", None) != "Entropy":
                return original(*args, **kwargs)
            kwargs["extra_options"] = {
                **(kwargs.get("extra_options") or {}),
                "num_bins": KL_BINS,
                "num_quantized_bins": KL_QUANTIZED_BINS,
            }
            calibrator = original(*args, **kwargs)
            calibrator.collector = fast_entropy_collector(
                symmetric=calibrator.symmetric,
                num_bins=calibrator.num_bins,
                num_quantized_bins=calibrator.num_quantized_bins,
            )
            return calibrator

        setattr(ort_quantize, "create_calibrator", create)  # noqa: B010 - a module mypy types as lacking it
        try:
            yield
        finally:
            setattr(ort_quantize, "create_calibrator", original)  # noqa: B010


def fast_entropy_collector(symmetric: bool, num_bins: int, num_quantized_bins: int) -> Any:
    """onnxruntime's HistogramCollector for the entropy method (its histograms, its merging), its threshold
    search in numpy: the same candidates, the same p and q, the same smoothing and KL divergence."""
    from onnxruntime.quantization.calibrate import HistogramCollector

    class FastEntropyCollector(HistogramCollector):  # type: ignore[misc]
        def get_entropy_threshold(self, histogram: Any, num_quantized_bins: int) -> Any:
            return entropy_threshold(histogram, num_quantized_bins)

    return FastEntropyCollector("entropy", symmetric, num_bins, num_quantized_bins, None, None)


def entropy_threshold(histogram: Any, num_quantized_bins: int) -> tuple[Any, Any]:
    """onnxruntime's HistogramCollector.get_entropy_threshold (1.23) with its Python loops over bins made numpy
    operations: for each symmetric window of the histogram (num_quantized_bins wide and up), p = the window with
    the outliers added to its end bins, q = the window merged into num_quantized_bins bins and spread back over
    p's non-empty bins; the window of the least KL(p || q) is the range, clipped to the data's min and max."""
    from onnxruntime.quantization.calibrate import entropy
    from onnxruntime.quantization.quant_utils import smooth_distribution

    hist, edges = histogram[0], histogram[1]
    num_bins = hist.size
    zero = num_bins // 2
    half = num_quantized_bins // 2
    total = hist.sum()
    cumulative = np.concatenate([[0], np.cumsum(hist)])
    divergences = np.zeros(zero - half + 1)
    thresholds = []
    for i in range(half, zero + 1):
        start, end = zero - i, min(zero + i + 1, num_bins)
        thresholds.append((edges[start], edges[end]))
        window = hist[start:end]
        p = window.copy()
        p[0] += cumulative[start]
        p[-1] += total - cumulative[end]
        nonzeros = (p != 0).astype(np.int64)
        merged = window.size // num_quantized_bins
        body = num_quantized_bins * merged
        quantized = window[:body].reshape(num_quantized_bins, merged).sum(axis=1)
        quantized[-1] += window[body:].sum()
        norm = nonzeros[:body].reshape(num_quantized_bins, merged).sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            spread = np.where(norm != 0, quantized / np.maximum(norm, 1), 0)
        q = np.zeros(p.size, dtype=np.int64)
        q[:body] = np.repeat(spread, merged).astype(np.int64)  # onnxruntime's q is int64: truncated as there
        ps, qs = smooth_distribution(p), smooth_distribution(q)
        divergences[i - half] = np.inf if ps is None or qs is None else entropy(ps, qs)
    low, high = thresholds[int(np.argmin(divergences))]
    if low < histogram[2]:
        low = histogram[2]
    if high > histogram[3]:
        high = histogram[3]
    return low, high


# the ops onnxruntime's QDQ quantizer can quantize, by their weights or activations: what a float list names
QUANTIZABLE = ("Conv", "ConvTranspose", "Gemm", "MatMul", "Add", "Mul", "Concat", "AveragePool", "MaxPool")


def _check_node_names(onnx_path: Path, names: Sequence[str], recipe: Recipe) -> None:
    """A name the graph has no node for would be ignored by onnxruntime (nodes_to_exclude): said instead."""
    if not names:
        return
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    unknown = sorted(set(names) - {node.name for node in graph.node})
    if unknown:
        candidates = [node.name for node in graph.node if node.op_type in QUANTIZABLE][:40]
        raise RecipeError(
            f"field `int8.onnx_float_nodes`: nodes the model does not have: {unknown}",
            where=str(recipe.path),
            hint=f"its quantizable nodes include: {', '.join(candidates)} (`edgekit analyze RECIPE --format "
            "onnx-int8` names them by their damage)",
        )


# a bias within 2^20 of int32's ends was clamped there by the quantizer (its float value did not fit)
_INT32_EDGE = 2**31 - 2**20


def saturated_biases(path: Path) -> list[str]:
    """The int32 initializers of a quantized model (its biases) holding values clamped at int32's limits."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    return [
        init.name
        for init in model.graph.initializer
        if init.data_type == onnx.TensorProto.INT32
        and np.abs(numpy_helper.to_array(init).astype(np.int64)).max(initial=0) >= _INT32_EDGE
    ]


def _names(names: list[str], most: int = 3) -> str:
    shown = ", ".join(n.removesuffix("_quantized") for n in names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """onnxruntime's quantizer prints its progress and logs a pre-processing advice on the root logger."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)
