"""Keras (.keras, .h5) and SavedModel sources: TFLite through TensorFlow's own TFLiteConverter, ONNX through tf2onnx.

A TensorFlow user's model goes the way TFLite users know: `tflite-fp32/fp16/dynamic/int8` of a `kind: keras`
recipe are written by `tf.lite.TFLiteConverter` from the model itself (fp16 weights; dynamic-range; full INT8
calibrated on the recipe's calibration data, float or int8 input/output as `int8.io` says, per-channel unless
`int8.granularity: per-tensor`). No ONNX and no layout round trip is involved.

Every other format starts from an ONNX file that tf2onnx (pinned) writes from the same function
(`export_onnx`); it is checked against the Keras model's own outputs when written, and it is the fidelity
reference of every artifact. **Layout**: the recipe's input is the model's own (Keras is channels-last:
`layout: NHWC, shape: [1, H, W, C]`); the ONNX keeps that input and tf2onnx puts the transposes to ONNX's NCHW
inside the graph, so onnxruntime, OpenCV and ncnn take the same NHWC array the Keras model takes.

The same TFLite formats through ONNX and onnx2tf, to compare the two routes side by side, are the formats
`tflite-onnx2tf-fp32/fp16/dynamic/int8` (a Keras source only: for an ONNX or PyTorch source `tflite-*` is that
route already). onnx2tf gets a second tf2onnx export whose input is NCHW (`inputs_as_nchw`), so its TFLite file
takes NHWC again with the transposes folded away: the Keras -> ONNX -> TFLite round trip at its best.

TensorFlow runs in a child process (`python -m edgekit.convert.keras_child JOB.json`), as onnx2tf does in
edgekit.convert.tflite: its memory and threads stay out of the caller, and it reports its own peak RSS.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgekit import paths
from edgekit.convert.base import Converter, dist_version
from edgekit.convert.code_digest import builder_code_digest
from edgekit.convert.onnx2tf_run import onnx2tf_cause
from edgekit.convert.onnx_export import EXPORT_VERSION, OPSET, tree_sha256
from edgekit.convert.tflite import TfliteConverter
from edgekit.errors import ConversionError, InputDataError, RecipeError, exit_text
from edgekit.formats import Format
from edgekit.recipe import Granularity, KerasSource, Layout, Recipe

# bump when the child's procedure (keras_child.py) changes what it writes; it keys the ONNX export and TFLite files
# 2: a Keras model's outputs taken by their own names (1 named them by position, swapping a [aux, logits] model's)
# 3: a SavedModel holding ops that touch files, processes or Python is refused before loading (savedmodel_ops)
# 4: tf2onnx exports the frozen function: a captured tensor (Keras's Normalization, every EfficientNet's) was
#    an ONNX input the export check could not feed
WORKER_VERSION = 4
NCHW_ONNX = "model-nchw.onnx"  # beside model.onnx in the ONNX cache: what onnx2tf converts for a Keras source
BAD_INPUT_EXIT = 3  # keras_child: the model file is not one edgekit takes (ModelInputError): exit 2

DIRECT = (Format.TFLITE_FP32, Format.TFLITE_FP16, Format.TFLITE_DYNAMIC, Format.TFLITE_INT8)
ROUTE = {
    Format.TFLITE_ONNX2TF_FP32: Format.TFLITE_FP32,
    Format.TFLITE_ONNX2TF_FP16: Format.TFLITE_FP16,
    Format.TFLITE_ONNX2TF_DYNAMIC: Format.TFLITE_DYNAMIC,
    Format.TFLITE_ONNX2TF_INT8: Format.TFLITE_INT8,
}


def converter_for(fmt: Format) -> type[Converter] | None:
    """The converter of `fmt` for a Keras source where it differs from the registry's (TFLite: TensorFlow's)."""
    return KerasTfliteConverter if fmt in DIRECT else None


class KerasTfliteConverter(Converter):
    """tf.lite.TFLiteConverter on the Keras/SavedModel source itself; one child run for all requested formats.

    `formats` is empty on purpose: the registry keeps onnx2tf for tflite-* of ONNX and PyTorch sources; the
    pipeline picks this class for a Keras source (`converter_for`)."""

    dists = ("tensorflow", "keras", "tf-keras")
    tool_cpu_s: float | None = None

    @classmethod
    def tool_versions(cls) -> dict[str, str]:
        return {**cls.dist_versions(), "edgekit-keras-worker": str(WORKER_VERSION)}

    @classmethod
    def settings(cls, recipe: Recipe, fmt: Format) -> dict[str, Any]:
        src = recipe.model
        source = tree_sha256(src.path) if isinstance(src, KerasSource) else None
        settings: dict[str, Any] = {
            "route": "tflite-converter",
            "source": source,
            "outputs": list(recipe.outputs),
            "select_tf_ops": recipe.tflite.allow_select_tf_ops,
        }
        if isinstance(src, KerasSource) and src.custom_objects:  # their code is the model's too (keras_key)
            settings["custom_objects"] = {d: builder_code_digest(d) for d in src.custom_objects}
        return settings

    def convert(self, onnx_path: Path, recipe: Recipe, fmt: Format, out_dir: Path) -> list[Path]:
        return self.convert_many(onnx_path, recipe, [fmt], out_dir)[fmt]

    def convert_many(
        self, onnx_path: Path, recipe: Recipe, formats: Sequence[Format], out_dir: Path
    ) -> dict[Format, list[Path]]:
        src = recipe.model
        if not isinstance(src, KerasSource):
            raise ConversionError(
                "TensorFlow's TFLiteConverter converts a Keras or SavedModel source only",
                where=str(recipe.path),
            )
        job: dict[str, Any] = {
            "mode": "tflite",
            **_source_job(recipe, src),
            "formats": {f.value: f.precision.value for f in formats},
            "io": recipe.int8.io.value,
            "per_tensor": recipe.int8.granularity is Granularity.PER_TENSOR,
            "select_tf_ops": recipe.tflite.allow_select_tf_ops,
            "calibration": None,
        }
        work = _work_dir("keras-tflite")
        try:  # the work folder goes on every path out, Ctrl-C too: an error says what its log held
            if any(f is Format.TFLITE_INT8 for f in formats):
                from edgekit.convert.calibration import calibration_inputs

                calib = np.ascontiguousarray(calibration_inputs(recipe), np.float32)
                np.save(work / "calibration.npy", calib)
                job["calibration"] = "calibration.npy"
            report = _run_child(job, work, "TFLiteConverter", str(recipe.path), self.progress)
            self.peak_rss_mb = report["peak_rss_mb"]  # None: unknown (no VmHWM on this system)
            self.tool_cpu_s = float(report["cpu_s"])
            self.findings: dict[Format, list[str]] = {}
            result = {}
            for fmt in formats:
                dest = out_dir / fmt.value / "model.tflite"
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(work / "out" / f"{fmt.value}.tflite", dest)
                result[fmt] = [dest]
                flex = report["flex_ops"].get(fmt.value)
                if flex:
                    self.findings[fmt] = [
                        f"needs Select TF ops {', '.join(flex)} (accepted by tflite.allow_select_tf_ops)"
                    ]
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return result


class Onnx2tfRouteConverter(TfliteConverter):
    """`tflite-onnx2tf-*`: edgekit's onnx2tf converter run on the NCHW-input ONNX of a Keras source."""

    formats = (
        Format.TFLITE_ONNX2TF_FP32,
        Format.TFLITE_ONNX2TF_FP16,
        Format.TFLITE_ONNX2TF_DYNAMIC,
        Format.TFLITE_ONNX2TF_INT8,
    )

    @classmethod
    def settings(cls, recipe: Recipe, fmt: Format) -> dict[str, Any]:
        return {**super().settings(recipe, ROUTE.get(fmt, fmt)), "route": "onnx2tf", "onnx": "nchw-input"}

    def convert(self, onnx_path: Path, recipe: Recipe, fmt: Format, out_dir: Path) -> list[Path]:
        return self.convert_many(onnx_path, recipe, [fmt], out_dir)[fmt]

    def convert_many(
        self, onnx_path: Path, recipe: Recipe, formats: Sequence[Format], out_dir: Path
    ) -> dict[Format, list[Path]]:
        nchw = onnx_path.with_name(NCHW_ONNX)
        base = {ROUTE[f]: f for f in formats}
        files = super().convert_many(nchw if nchw.is_file() else onnx_path, recipe, list(base), out_dir)
        self.findings = {base[f]: found for f, found in self.findings.items() if f in base}
        return {base[f]: paths_ for f, paths_ in files.items()}


def export_onnx(recipe: Recipe, src: KerasSource, target: Path) -> dict[str, Any]:
    """tf2onnx's ONNX of the source (input as the model takes it) at `target`, and an NCHW-input twin beside it
    for onnx2tf when the input is a 4-D NHWC image; both checked against the model's own outputs. Returns
    what meta.json records (tool, layout, the check)."""
    work = _work_dir("keras-onnx")
    nchw = len(recipe.input.shape) == 4 and recipe.input.layout is Layout.NHWC
    job = {"mode": "onnx", **_source_job(recipe, src), "nchw": nchw}
    try:  # the work folder goes on every path out, Ctrl-C too: an error says what its log held
        report = _run_child(job, work, "tf2onnx", str(recipe.path))
        target.parent.mkdir(parents=True, exist_ok=True)
        if nchw:
            shutil.copyfile(work / "out" / NCHW_ONNX, target.with_name(NCHW_ONNX))
        (work / "out" / "model.onnx").replace(target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {
        "source": str(src.path),
        "exporter": f"tf2onnx {dist_version('tf2onnx')}",
        "opset": report["opset"],
        "layout": recipe.input.layout.value,
        "nchw_twin": nchw,
        "outputs": report["outputs"],
        "check": report["check"],
    }


def describe(meta: dict[str, Any], shape: Sequence[int]) -> str:
    """One progress line: what the ONNX of a Keras source is, its layout, and how it matched the model."""
    check = meta.get("check", {})
    twin = (
        "; tflite-onnx2tf-* from a twin with NCHW input (transposes folded)" if meta.get("nchw_twin") else ""
    )
    return (
        f"model: Keras source exported to ONNX by {meta.get('exporter', 'tf2onnx')} (opset {meta.get('opset')}),"
        f" input {list(shape)} {meta.get('layout', '')} as the model takes it (transposes to NCHW inside);"
        f" matches the model within {check.get('max_abs', float('nan')):.1e} on {check.get('inputs', 0)} inputs"
        f"{twin}; tflite-* by TensorFlow's TFLiteConverter from the model itself"
    )


# --- parent helpers -------------------------------------------------------------------------------------------
def _source_job(recipe: Recipe, src: KerasSource) -> dict[str, Any]:
    return {
        "source": str(src.path),
        "input_name": recipe.input.name,
        "shape": list(recipe.input.shape),
        "outputs": list(recipe.outputs),
        "opset": OPSET,
        "custom_objects": list(src.custom_objects),
    }


def _work_dir(kind: str) -> Path:
    work = paths.work_dir(kind)
    work.mkdir(parents=True)
    return work


def _run_child(
    job: dict[str, Any],
    work: Path,
    tool: str,
    recipe_file: str,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The child in `work`; its result.json, or an error whose message carries what the user needs from the
    child's log (the caller removes `work`, log and all)."""
    from edgekit.convert.onnx2tf_run import convert_timeout, run_child

    timeout = convert_timeout()
    (work / "job.json").write_text(json.dumps(job))
    log = work / "child.log"
    with open(log, "w") as out:
        try:
            returncode = run_child(
                [sys.executable, "-m", "edgekit.convert.keras_child", str(work / "job.json")],
                work,
                out,
                timeout,
                progress,
                tool,
            )
        except subprocess.TimeoutExpired:
            raise ConversionError(
                f"{tool} ran longer than {timeout:.0f} s and was stopped",
                hint="raise EDGEKIT_CONVERT_TIMEOUT for a big model",
            ) from None
    if returncode != 0:
        raise _child_failure(job, work, tool, recipe_file, returncode)
    return dict(json.loads((work / "result.json").read_text()))


def _child_failure(job: dict[str, Any], work: Path, tool: str, recipe_file: str, code: int) -> Exception:
    """The error of a failed child: what it said of the model (error.json), Keras's safe-mode refusal, an op
    tf2onnx has no ONNX for, an input shape the model does not take, or the tool's own last error."""
    log = work / "child.log"
    said = json.loads((work / "error.json").read_text()) if (work / "error.json").is_file() else {}
    cause = said.get("message") or onnx2tf_cause(log)
    if (
        cause and "deserialization of a `Lambda` layer" in cause
    ):  # Keras's safe mode: the model file holds code
        return InputDataError(
            f"{job['source']}: a Lambda layer holds Python code (bytecode in the model file), which Keras "
            "refuses to load in its safe mode, as edgekit loads every model",
            hint="replace the Lambda with built-in layers (or a registered custom layer class), or export the "
            "model to ONNX yourself and give that file (model: {kind: onnx, path: ...})",
        )
    if code == BAD_INPUT_EXIT:  # the child named the model file as not one edgekit takes
        return InputDataError(
            cause or "not a model edgekit can take",
            where=str(job["source"]),
            hint=said.get("hint")
            or "give a Keras .keras/.h5 file or a SavedModel folder with one input and a serving signature, "
            "or export the model to ONNX yourself (model: {kind: onnx, path: ...})",
        )
    unsupported = _unsupported_ops(log)
    if unsupported:
        return ConversionError(
            f"{tool}: no ONNX for the TensorFlow op(s) {unsupported}",
            hint="replace the layer that uses it (GELU's exact form computes Erfc; its approximate=True form "
            "converts), or export the model to ONNX yourself",
        )
    if cause and "is incompatible with the layer" in cause and "shape" in cause:  # Keras's own input check
        return RecipeError(
            f"field `input.shape`: the model does not take an input of shape {job.get('shape')} "
            f"({tool}: {cause})",
            where=recipe_file,
            hint="input.shape is the tensor the model takes, batch first (NHWC for a Keras model)",
        )
    if cause:
        return ConversionError(f"{tool}: {cause}")
    return ConversionError(
        f"{tool}: failed ({exit_text(code)}); the last lines it wrote:\n  " + "\n  ".join(_log_tail(log))
    )


def _log_tail(log: Path, count: int = 8) -> list[str]:
    """The child's last lines, without TensorFlow's start-up noise (CUDA, absl, XLA registrations)."""
    noise = re.compile(r"^(?:[WIE]\d{4} |\d{4}-\d\d-\d\d |WARNING:|To enable the following|WARNING: All log)")
    lines = [ln.rstrip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    kept = [ln[:300] for ln in lines if not noise.match(ln)]
    return kept[-count:] or ["(nothing)"]


def _unsupported_ops(log: Path) -> str | None:
    """tf2onnx's 'Unsupported ops: Counter({'Erfc': 1})', as 'Erfc' (its failure comes later, as an onnxruntime
    InvalidGraph on the file it wrote)."""
    for line in log.read_text(errors="replace").splitlines():
        m = re.search(r"Unsupported ops: Counter\(\{(.+)\}\)", line)
        if m:
            return ", ".join(re.findall(r"'([^']+)'", m.group(1))) or m.group(1)
    return None


KERAS_EXPORT_DISTS = ("tf2onnx", "tensorflow", "keras", "onnx", "onnxruntime")  # a Keras source's ONNX export


def keras_key(recipe: Recipe, src: KerasSource) -> str:
    """The cache key of a Keras source's ONNX export: the model's bytes, the input and outputs, the tools, and the
    child's procedure (WORKER_VERSION: an export written by an older child is not reused)."""
    spec = {
        "source": tree_sha256(src.path),
        "input": [recipe.input.name, list(recipe.input.shape), recipe.input.layout.value],
        "outputs": list(recipe.outputs),
        "opset": OPSET,
        "export_version": EXPORT_VERSION,
        "worker": WORKER_VERSION,
        "tools": {n: dist_version(n) for n in KERAS_EXPORT_DISTS},
    }
    if (
        src.custom_objects
    ):  # their code (modules and the user's modules they import): an edited layer exports again
        spec["custom_objects"] = {d: builder_code_digest(d) for d in src.custom_objects}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def export_keras(recipe: Recipe, src: KerasSource, target: Path) -> None:
    """export_onnx into the cache folder of `target`, with its meta.json; a failure leaves no folder."""
    if importlib.util.find_spec("tf2onnx") is None:
        raise ConversionError(
            "a Keras/SavedModel source needs tf2onnx, which is not installed",
            where=f"{recipe.path}: model.path",
            hint="make setup installs it (extra `convert`)",
        )
    try:
        meta = export_onnx(recipe, src, target)
    finally:
        if not target.is_file():  # a failed export leaves no half-filled cache folder
            shutil.rmtree(target.parent, ignore_errors=True)
    (target.parent / "meta.json").write_text(json.dumps(meta))
