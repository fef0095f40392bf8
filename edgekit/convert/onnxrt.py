"""ONNX -> ONNX Runtime fp32 (the model as prepared) and INT8 (static QDQ quantization by onnxruntime's own
quantization tool with the recipe's calibration data).

INT8 settings: QDQ format, uint8 activations and int8 weights (the CPU provider's fast path on x86 and ARM64),
weights per channel unless the recipe asks per-tensor. The model's inputs and outputs stay float (QDQ keeps float
I/O), so `int8.io: int8` has no effect here.

Activation ranges are min/max (onnxruntime's MinMax) whatever `calibration.method` says: `kl` is for ncnn-int8
and mnn-int8, and convert says so for onnx-int8. quantize_static's Entropy calibrator, with the bin counts it
builds it with (128 searched down to 128), has one candidate, the whole range: byte for byte MinMax's model.
With 2048 bins searched down to 128 (ncnn2table's numbers; tried 2026-12-06) it clipped what uint8 asymmetric
activations hold well: digits cosine 0.996115 against 0.999873 with min/max (max abs error 1.4 against 0.35),
MobileNetV2 with random weights 0.907 against 0.967 (0.896 searched down to 256).
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.convert.base import Converter
from edgekit.errors import ConversionError, RecipeError
from edgekit.formats import Format
from edgekit.recipe import Granularity, Recipe

QUANTIZER_SETTINGS_VERSION = 4  # 2: a saturated int32 bias is a finding; 3: kl searched 2048 bins; 4: min/max


class OnnxRuntimeConverter(Converter):
    formats = (Format.ONNX_FP32, Format.ONNX_INT8)
    dists = ("onnxruntime", "onnx")

    @classmethod
    def tool_versions(cls) -> dict[str, str]:
        return cls.dist_versions()

    @classmethod
    def settings(cls, recipe: Recipe, fmt: Format) -> dict[str, Any]:
        return {"quant": QUANTIZER_SETTINGS_VERSION, "format": "QDQ"} if fmt is Format.ONNX_INT8 else {}

    def prepare(self, formats: Sequence[Format]) -> None:
        """onnxruntime's quantizer imports torch (~300 MiB, 2-3 s): imported before the pipeline samples the
        conversion's memory (PeakRss), so onnx-int8's "peak mem" is the quantization's whether or not this process
        had imported torch already (a fresh torch export did; an ONNX from the cache did not). Only for
        onnx-int8: onnx-fp32 is a copy of the prepared ONNX, and every `convert` of it imported torch for nothing
        (2 s of CPU per command)."""
        if Format.ONNX_INT8 in formats:
            import onnxruntime.quantization  # noqa: F401

    def convert(self, onnx_path: Path, recipe: Recipe, fmt: Format, out_dir: Path) -> list[Path]:
        self.findings: dict[Format, list[str]] = getattr(self, "findings", {})
        out = out_dir / "model.onnx"
        if fmt is Format.ONNX_FP32:
            shutil.copyfile(onnx_path, out)
            return [out]
        quantize_qdq(onnx_path, out, recipe)
        self.findings.setdefault(
            fmt, []
        ).append(  # true of every onnx-int8, whatever the recipe's method: the
            # cache shares one entry between kl and absmax recipes
            "onnx-int8: activation ranges by min/max whatever calibration.method says (kl is for ncnn-int8 "
            "and mnn-int8; with onnxruntime's uint8 QDQ activations it measured worse: digits cosine 0.996 "
            "against 0.9999)"
        )
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

    try:
        with _quiet():
            quantize_static(
                str(onnx_path),
                str(out),
                Reader(),
                quant_format=QuantFormat.QDQ,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                per_channel=recipe.int8.granularity is Granularity.PER_CHANNEL,
                calibrate_method=OrtMethod.MinMax,  # the module's docstring: kl measured worse
                nodes_to_exclude=keep_float,
            )
    except Exception as exc:  # onnxruntime raises plain exceptions: named here with the model
        raise ConversionError(
            f"onnxruntime's quantize_static failed: {type(exc).__name__}: {exc}", where=str(onnx_path)
        ) from exc


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
