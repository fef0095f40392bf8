"""What runs when an artifact runs, for the estimate and the roofline: its format (from edgekit's metadata or
--format), checked against the file itself. An ncnn artifact runs with its model.io.json's Option flags; a bare
.param with those of the format it is labelled (--format ncnn-fp32: fp16 off, as edgekit writes ncnn-fp32; the
label changed the words but not the count, 24.0 M instructions instead of the 45.4 M of the same bytes as
edgekit's ncnn-fp32 on the A76), else ncnn's defaults; int8 where its layers say so whatever its label (the speed
plan may keep every layer of an ncnn-int8 artifact float); a .tflite without metadata is read from its
tensors, and a --format given for it that they contradict is refused."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from edgekit.convert.ncnn.param import has_int8_layers
from edgekit.errors import UsageError
from edgekit.estimate.roofline import (
    artifact_format,
    compute_precision,
    ncnn_options,
    weight_storage_bytes,
)
from edgekit.formats import Format, Precision, Runtime


@dataclass(frozen=True)
class RunsAs:
    """What runs: the artifact's format (None: a bare ncnn .param, run with ncnn's defaults, or an ONNX file),
    in words, whether int8 kernels run, and the precision the roofline's peak is taken at."""

    fmt: Format | None
    how: str
    int8: bool
    precision: Precision
    count_options: dict[str, bool] = field(
        default_factory=dict
    )  # ncnn flags the count sets (a bare .param's)
    storage_bytes: int | None = None  # bytes per float weight in memory (roofline.weight_storage_bytes)
    options: dict[str, bool] | None = (
        None  # the ncnn Option flags it runs with (None: ncnn's defaults / not ncnn)
    )

    @property
    def fp16_off(self) -> str:
        """The fp16 flags an ncnn float model runs with switched off, in words ("fp16 storage and arithmetic
        off", edgekit's ncnn-fp32); empty for ncnn's defaults, int8 kernels and other runtimes. The estimate
        says what that means on the board's core (cost_model.estimate: calibrated on the Cortex-A72, which has
        no fp16 arithmetic; fp32 kernels no calibration model ran on the Cortex-A76)."""
        off = _words(self.options or {})
        return "" if self.int8 or off == "ncnn's defaults" else off


def runs_as(artifact: Path, known: Format | None) -> RunsAs:
    """How the runtime runs the artifact, from its metadata (or --format) and from the file itself: an ncnn
    artifact with its sidecar's Option flags; a bare .param with its label's (ncnn-fp32: fp16 off; the count
    sets them, so its cache entry is theirs) or, unlabelled, ncnn's defaults (fp16 storage; fp16 arithmetic
    where the core has it); int8 where its layers say so, whatever its label; a .tflite without metadata is read
    from its tensors."""
    if artifact.suffix == ".tflite" and known is not None and artifact_format(artifact) is None:
        read = tflite_format(artifact)  # --format on a file without metadata: checked against its tensors
        if read is not known:  # tflite-fp32 on a dynamic-range file put the bound at the fp32 peak
            raise UsageError(
                f"the file's tensors say {read.value}; --format {known.value} contradicts them",
                where="--format",
                hint=f"leave --format out (it is read from the tensors), or give --format {read.value}",
            )
    if artifact.suffix == ".tflite" and known is None:
        read = tflite_format(artifact)
        return RunsAs(
            read,
            f"{read.value} (read from its tensors: no artifact.json beside it)",
            read.precision is Precision.INT8,
            compute_precision(read),
        )
    if artifact.suffix != ".param":
        how = known.value if known is not None else artifact.suffix.lstrip(".")
        int8 = known is not None and known.precision is Precision.INT8
        return RunsAs(known, how, int8, compute_precision(known))
    int8 = has_int8_layers(artifact)
    sidecar = _sidecar_options(artifact)
    if known is None:
        if int8:
            return RunsAs(
                Format.NCNN_INT8,
                "ncnn int8 layers (int8_scale_term in the .param), ncnn's default options",
                True,
                Precision.INT8,
            )
        return RunsAs(
            None,
            "ncnn, default options (fp16 storage; fp16 arithmetic where the core has it), as benchncnn",
            False,
            compute_precision(None, sidecar),
            storage_bytes=weight_storage_bytes(None, sidecar),
        )
    bare = sidecar is None
    # a bare .param labelled ncnn-fp32 runs as edgekit runs ncnn-fp32 (fp16 off); fp16 and int8 labels keep
    # ncnn's defaults, which is what edgekit writes for them: no flag set, so their counts stay the defaults' ones
    count_options = ncnn_options(known) if bare and known.precision is Precision.FP32 else {}
    options = sidecar if sidecar is not None else (count_options or None)
    suffix = (
        f" (no model.io.json: run with {known.value}'s options, {_words(count_options)})"
        if bare and count_options
        else ""
    )
    if known.precision is Precision.INT8 and not int8:
        return RunsAs(
            known,
            f"{known.value} with no quantized layer (every layer runs in float)",
            False,
            compute_precision(None, options),
            count_options,
            weight_storage_bytes(None, options),
            options,
        )
    return RunsAs(
        known,
        known.value + suffix,
        int8,
        compute_precision(known, options),
        count_options,
        weight_storage_bytes(known, options),
        options,
    )


def format_fp16_off(fmt: Format | None) -> str:
    """The fp16 flags edgekit's artifact of this format runs with off, in words (ncnn-fp32: "fp16 storage and
    arithmetic off"), for an artifact whose files are not here to read; empty for the others."""
    if fmt is None or fmt.runtime is not Runtime.NCNN or fmt.precision is not Precision.FP32:
        return ""
    return _words(ncnn_options(fmt)).removesuffix("ncnn's defaults")


def _sidecar_options(param: Path) -> dict[str, bool] | None:
    """The Option flags in an ncnn artifact's model.io.json ({} when it sets none); None without a sidecar."""
    try:
        return dict(json.loads(param.with_suffix(".io.json").read_text()).get("options") or {})
    except (OSError, ValueError, AttributeError):
        return None


def _words(options: dict[str, bool]) -> str:
    off = [name for name in ("storage", "arithmetic") if options.get(f"use_fp16_{name}") is False]
    return f"fp16 {' and '.join(off)} off" if off else "ncnn's defaults"


_WEIGHTED_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "BATCH_MATMUL"}


def tflite_format(path: Path) -> Format:
    """A .tflite's precision read from its tensors, for a file without edgekit's metadata: weighted ops on int8
    activations are full-integer (tflite-int8), int8 weights under float activations are dynamic-range, fp16
    constants dequantized at load are tflite-fp16, anything else fp32."""
    import numpy as np

    from edgekit.runtimes.tflite import load_tflite

    interp = load_tflite(path)
    dtypes = {t["index"]: np.dtype(t["dtype"]) for t in interp.get_tensor_details()}
    ops = interp._get_ops_details()  # no public API lists ops with their tensors
    weighted = [op for op in ops if op["op_name"] in _WEIGHTED_OPS and len(op["inputs"]) >= 2]
    small = (np.dtype(np.int8), np.dtype(np.uint8), np.dtype(np.int16))
    if any(dtypes.get(int(op["inputs"][0])) in small for op in weighted):
        return Format.TFLITE_INT8
    if any(dtypes.get(int(op["inputs"][1])) in small for op in weighted):
        return Format.TFLITE_DYNAMIC
    dequantized = (
        dtypes.get(int(i)) for op in ops if op["op_name"] == "DEQUANTIZE" for i in op["inputs"] if i >= 0
    )
    return Format.TFLITE_FP16 if np.dtype(np.float16) in dequantized else Format.TFLITE_FP32
