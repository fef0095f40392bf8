"""ONNX -> MNN fp32 / fp16 / int8 through MNN's own converter and post-training quantization tool, both from
the MNN Python package (its compiled `_tools` module: `mnnconvert`, and `mnnquant` = MNN's quantized.out).

mnn-fp32 is the converter's output; mnn-fp16 the same with `--fp16` (weights stored in fp16); mnn-int8 is
mnn-fp32 quantized by `mnnquant` with the recipe's calibration inputs, written as MNN's "sequence" input (one
folder per sample: <input>.txt and input.json), so any preprocessed float data calibrates it. Feature
thresholds: the recipe's `kl` is MNN's KL, `absmax` MNN's EMA of the min/max (MNN itself switches to EMA
for a graph that keeps BatchNorm); weights MAX_ABS, per output channel (MNN has no per-tensor weights).

Both tools run in a child process: they print to the C stdout, and a bad config aborts the process (MNN 3.6.1's
`mnnquant` console script passes three strings where its C function wants an argv list, and dies in
std::length_error; edgekit calls `_tools.mnnquant` with the list). The package's console-script wrappers are
never used either: after a conversion they import MNN.tools.utils.log, which pip-installs a logging SDK and
sends usage data to a remote endpoint.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from edgekit import paths
from edgekit.convert.base import Converter
from edgekit.convert.reductions import split_reductions_file
from edgekit.convert.tool_process import PEAK_TAG, peak_mb_from_log, plain_output
from edgekit.errors import ConversionError, RecipeError, exit_text
from edgekit.formats import Format
from edgekit.recipe import CalibrationMethod, Granularity, Recipe

MNN_TIMEOUT_S = 900
QUANT_SETTINGS_VERSION = 2  # 2: multi-axis reductions split before calibration (edgekit.convert.reductions)
FEATURE_METHOD = {CalibrationMethod.KL: "KL", CalibrationMethod.ABSMAX: "EMA"}

# The child: `python -c CHILD convert|quant ARGS..`; prints its own peak RSS (kB) last, after the tool's output
# (edgekit.convert.tool_process: VmHWM, not ru_maxrss, which holds edgekit's own peak).
CHILD = r"""
import sys
import _tools
from edgekit.convert.tool_process import peak_line
what, args = sys.argv[1], sys.argv[2:]
if what == "convert":
    _tools.mnnconvert(["mnnconvert", *args])
else:
    _tools.mnnquant(["quantized.out", *args])
sys.stdout.flush()
print(peak_line(), flush=True)
"""


class MnnConverter(Converter):
    formats = (Format.MNN_FP32, Format.MNN_FP16, Format.MNN_INT8)
    dists = ("MNN",)

    @classmethod
    def tool_versions(cls) -> dict[str, str]:
        return cls.dist_versions()

    @classmethod
    def settings(cls, recipe: Recipe, fmt: Format) -> dict[str, Any]:
        if fmt is not Format.MNN_INT8:
            return {"fp16_weights": fmt is Format.MNN_FP16}
        method = recipe.calibration.method if recipe.calibration else CalibrationMethod.KL
        return {"quant": QUANT_SETTINGS_VERSION, "feature": FEATURE_METHOD[method], "weight": "MAX_ABS"}

    def convert(self, onnx_path: Path, recipe: Recipe, fmt: Format, out_dir: Path) -> list[Path]:
        self.findings: dict[Format, list[str]] = getattr(self, "findings", {})
        if fmt is Format.MNN_INT8:
            _check_file_name(recipe)
        work = paths.work_dir("mnn")
        work.mkdir(parents=True)
        try:
            out = out_dir / "model.mnn"
            float_model = work / "float.mnn" if fmt is Format.MNN_INT8 else out
            source = onnx_path
            if fmt is Format.MNN_INT8 and split_reductions_file(onnx_path, work / "split.onnx"):
                source = work / "split.onnx"  # what MNN's KL calibration crashes on, one axis at a time
            peaks = [_convert(source, float_model, fp16=fmt is Format.MNN_FP16, work=work, logs=out_dir)]
            if fmt is Format.MNN_INT8:
                peaks.append(_quantize(float_model, out, recipe, work, logs=out_dir))
                if recipe.int8.granularity is Granularity.PER_TENSOR:
                    self.findings.setdefault(fmt, []).append(
                        "mnn-int8: weights quantized per channel (MNN's quantizer has no per-tensor weights)"
                    )
            # unknown if either tool's is (the pipeline then samples the process tree)
            self.peak_rss_mb = None if None in peaks else max(p for p in peaks if p is not None)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return [out]


def _convert(onnx_path: Path, out: Path, *, fp16: bool, work: Path, logs: Path) -> float | None:
    args = ["-f", "ONNX", "--modelFile", str(onnx_path), "--MNNModel", str(out), "--bizCode", "edgekit"]
    log = _run_child("convert", [*args, *(["--fp16"] if fp16 else [])], work, logs)
    if not out.exists() or "Converted Success" not in log:
        raise ConversionError(
            f"MNN's converter wrote no model; {_last_line(log)}",
            where=str(onnx_path),
            hint=f"whole log: {_keep_log(log, logs, 'convert')}"
            + (f"; {UNSUPPORTED_HINT}" if _unsupported(log) else ""),
        )
    return peak_mb_from_log(log)


def _check_file_name(recipe: Recipe) -> None:
    """mnnquant reads each calibration sample from a file named after the model's input (`NAME.txt`): a name that
    is no plain file name (`../../x`, `a/b`) would have it, and edgekit writing for it, leave the work folder."""
    name = recipe.input.name
    if name in ("", ".", "..") or any(c in name for c in "/\\\0") or any(ord(c) < 32 for c in name):
        raise RecipeError(
            f"field `input.name`: {name!r} is not a plain file name, and mnn-int8's calibration files are named "
            "after the model's input (MNN's quantization tool reads NAME.txt)",
            where=str(recipe.path),
            hint="rename the model's input (no /, \\, control characters; not . or ..) or leave mnn-int8 out",
        )


def _quantize(
    float_model: Path, out: Path, recipe: Recipe, work: Path, logs: Path | None = None
) -> float | None:
    """mnnquant with the recipe's calibration inputs in MNN's sequence layout; a failed run's whole log goes to
    LOGS (default: beside `out`)."""
    logs = logs or out.parent
    from edgekit.convert.calibration import calibration_inputs

    calib = calibration_inputs(recipe)
    folder = work / "calibration"
    shape = [1, *calib.shape[1:]]
    for k, sample in enumerate(calib):
        sub = folder / f"{k:05d}"
        sub.mkdir(parents=True)
        (sub / "input.json").write_text(json.dumps({"inputs": [{"name": recipe.input.name, "shape": shape}]}))
        # numpy's C writer: 3x faster than savetxt (100 samples of 3x224x224 were minutes of formatting)
        np.asarray(sample, np.float32).tofile(sub / f"{recipe.input.name}.txt", sep=" ", format="%.7g")
    method = recipe.calibration.method if recipe.calibration else CalibrationMethod.KL
    config = {
        "path": f"{folder}/",
        "used_sample_num": len(calib),
        "input_type": "sequence",
        "inputs": [{"name": recipe.input.name, "shape": shape}],
        "batch_size": 1,
        "quant_bits": 8,
        "feature_quantize_method": FEATURE_METHOD[method],
        "weight_quantize_method": "MAX_ABS",
    }
    (work / "quant.json").write_text(json.dumps(config))
    hint = (
        "calibration.method: absmax (MNN's EMA calibration; it sets ncnn-int8's thresholds too) calibrates graphs "
        "MNN's KL crashes on; or leave mnn-int8 out of the recipe's formats"
        if method is CalibrationMethod.KL
        else "leave mnn-int8 out of the recipe's formats"
    )
    log = _run_child("quant", [str(float_model), str(out), str(work / "quant.json")], work, logs, hint)
    if not out.exists() or "Quantize model done" not in log:
        raise ConversionError(
            f"MNN's quantization tool wrote no model; {_last_line(log)}",
            where=str(float_model),
            hint=f"whole log: {_keep_log(log, logs, 'quant')}",
        )
    return peak_mb_from_log(log)


def _run_child(
    what: str, args: list[str], work: Path, logs: Path | None = None, hint: str | None = None
) -> str:
    """The tool's output; a failed run is a ConversionError of one line (how it ended, its last line), the whole
    log kept in LOGS (default: WORK) (13 lines of MNN's progress, repeated in every list of failures, buried the
    cause)."""
    threads = os.environ.get("EDGEKIT_CONVERT_THREADS", "1")
    env = {**os.environ, "OMP_NUM_THREADS": threads}
    try:
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, what, *args],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=MNN_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        raise ConversionError(
            f"MNN's {what} tool did not finish in {MNN_TIMEOUT_S} s", where=str(work)
        ) from None
    log = proc.stdout + proc.stderr
    if proc.returncode != 0:
        kept = _keep_log(log, logs or work, what)
        raise ConversionError(
            f"MNN's {what} tool failed ({exit_text(proc.returncode)}); {_last_line(log)}",
            where=str(kept),
            hint=f"whole log: {kept}" + (f"; {hint}" if hint else ""),
        )
    return log


def _keep_log(log: str, logs: Path, what: str) -> Path:
    """The tool's whole output in LOGS/mnn-WHAT.log (the converter's folder, kept when a conversion fails)."""
    logs.mkdir(parents=True, exist_ok=True)
    path = logs / f"mnn-{what}.log"
    path.write_text(log, errors="replace")
    return path


# MNN's `[14:35:15] @ 1107: ` or `[14:35:15] :220: ` before each line
_STAMP = re.compile(r"^\[\d\d:\d\d:\d\d\] (?:@ |:)?\d+: ")
# how MNN names what it cannot convert: `These Op Not Support: ONNX::DFT`, `Don't support ...`
_UNSUPPORTED = re.compile(r"not support|unsupported|don't support", re.IGNORECASE)
UNSUPPORTED_HINT = (
    "rewrite those operations in the model, or leave the mnn formats out of the recipe's formats"
)


def _lines(log: str) -> list[str]:
    """The tool's lines without MNN's time stamps and edgekit's peak-memory tag."""
    text = plain_output(log).replace("\r", "\n")
    return [_STAMP.sub("", ln.strip()) for ln in text.splitlines() if ln.strip() and PEAK_TAG not in ln]


def _unsupported(log: str) -> str | None:
    """MNN's line naming the operators it has no support for (its last such line), or None."""
    said = [ln for ln in _lines(log) if _UNSUPPORTED.search(ln)]
    return said[-1][:200] if said else None


def _last_line(log: str) -> str:
    """Why the tool stopped: its line naming the operators it does not support (buried above its last line,
    `Converted Failed!`), else its last line (where it got to), or that it said nothing."""
    keep = _lines(log)
    if not keep:
        return "it printed nothing"
    cause = _unsupported(log)
    if cause and cause != keep[-1]:
        return f"it says: {cause} (its last line: {keep[-1][:200]})"
    return f"its last line: {keep[-1][:200]}"
