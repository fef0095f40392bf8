"""ONNX -> TFLite fp32 / fp16 / dynamic-range / full INT8 through onnx2tf and TensorFlow.

onnx2tf runs in a child process (`python -m edgekit.convert.tflite JOB.json`): TensorFlow's memory and threads
stay out of the caller, and the child reports its own peak RSS. One run yields several formats, so formats are
grouped (`plan_runs`): a quantizing run (`-oiqt`) writes fp32, fp16, dynamic-range and INT8 files at once; a
float run writes fp32 and fp16 (and dynamic-range with `-odrqt`, no calibration needed).

Choices, with the reasons measured in docs/notes/conversion.md:
- INT8 calibration uses the recipe's data (already preprocessed, so onnx2tf's mean/std are identity: 0 and 1);
- onnx2tf downloads a sample calibration file for any image model; the child writes a local file of that name
  first and points HTTP(S) proxies at a dead local port, so nothing can be downloaded at run time;
- per-channel is the default (per-tensor dynamic-range gave NaN); per-tensor applies to INT8 only, and
  then the dynamic-range file comes from a float run;
- int8 input/output (`io: int8`) picks onnx2tf's `full_integer_quant` file (`-iqd int8 -oqd int8`), float io
  its `integer_quant` file;
- the int16-activation variants that `-oiqt` also writes are skipped inside the child (they run on reference
  kernels, about 30x slower, and calibrating them roughly doubles the INT8 run's time);
- the recipe's `tflite:` options (edgekit.recipe.TfliteOptions) reach onnx2tf typed: operators rewritten as
  builtin ones (by default those the model has that would become Flex ops, e.g. Erf from GELU), grouped
  convolutions as separable ones, BatchMatMul unfolded;
- every written .tflite is read back in the child for Select TF (Flex) operators: a conversion error naming them,
  or a finding on the artifact when the recipe sets `tflite.allow_select_tf_ops`;
- a failed run's first line is onnx2tf's own error (the exception it died of, and the ONNX node), not a log tail;
- onnx2tf's layout check runs the ONNX model on one calibration sample (`_validate_on_one_sample`): given all of
  them it skipped the check, and a token model came out of INT8 runs wrong (fp32 and int8 alike).
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgekit import paths
from edgekit.convert.base import Converter
from edgekit.convert.tool_process import child_figures, plain_output
from edgekit.errors import ConversionError, exit_text
from edgekit.formats import Format
from edgekit.recipe import FLEX_PRONE_OPS, Granularity, IOType, Layout, Recipe

WORKER_VERSION = 4  # bump when the child's procedure changes what it writes
TIMEOUT_S = float(os.environ.get("EDGEKIT_CONVERT_TIMEOUT", "3600"))
SAMPLE_FILE = "calibration_image_sample_data_20x128x128x3_float32.npy"  # what onnx2tf would download
_FILES = {
    Format.TFLITE_FP32: "model_float32.tflite",
    Format.TFLITE_FP16: "model_float16.tflite",
    Format.TFLITE_DYNAMIC: "model_dynamic_range_quant.tflite",
}


@dataclass(frozen=True)
class Run:
    """One onnx2tf invocation and the formats it serves."""

    formats: tuple[Format, ...]
    int8: bool
    dynamic: bool


def plan_runs(formats: Sequence[Format], recipe: Recipe) -> list[Run]:
    """Fewest onnx2tf runs for `formats`: an INT8 run serves the float formats too (and dynamic-range when
    per-channel); whatever is left goes to one float run."""
    wanted = [f for f in Format if f in formats]  # canonical order
    runs = []
    if Format.TFLITE_INT8 in wanted:
        per_channel = recipe.int8.granularity is Granularity.PER_CHANNEL
        served = tuple(f for f in wanted if f is not Format.TFLITE_DYNAMIC or per_channel)
        runs.append(Run(served, int8=True, dynamic=False))
        wanted = [f for f in wanted if f not in served]
    if wanted:
        runs.append(Run(tuple(wanted), int8=False, dynamic=Format.TFLITE_DYNAMIC in wanted))
    return runs


class TfliteConverter(Converter):
    """onnx2tf in a child process; one run serves several formats (see `plan_runs`)."""

    formats = (Format.TFLITE_FP32, Format.TFLITE_FP16, Format.TFLITE_DYNAMIC, Format.TFLITE_INT8)
    dists = ("onnx2tf", "tensorflow", "tf-keras", "onnx", "onnxsim", "onnx_graphsurgeon", "sng4onnx")
    tool_cpu_s: float | None = None  # CPU seconds of the onnx2tf children of the last convert

    @classmethod
    def tool_versions(cls) -> dict[str, str]:
        return {**cls.dist_versions(), "edgekit-tflite-worker": str(WORKER_VERSION)}

    @classmethod
    def settings(cls, recipe: Recipe, fmt: Format) -> dict[str, Any]:
        options = recipe.tflite.model_dump(mode="json")
        # channels-last input: onnx2tf is told to keep it (_nhwc_onnx_input); keys of NCHW recipes unchanged
        nhwc = {"input_layout": "NHWC-kept"} if recipe.input.layout is Layout.NHWC else {}
        if fmt is Format.TFLITE_DYNAMIC:
            return {"granularity": Granularity.PER_CHANNEL.value, "tflite": options, **nhwc}
        return {"tflite": options, **nhwc}

    def convert(self, onnx_path: Path, recipe: Recipe, fmt: Format, out_dir: Path) -> list[Path]:
        return self.convert_many(onnx_path, recipe, [fmt], out_dir)[fmt]

    def convert_many(
        self, onnx_path: Path, recipe: Recipe, formats: Sequence[Format], out_dir: Path
    ) -> dict[Format, list[Path]]:
        result: dict[Format, list[Path]] = {}
        peaks: list[float | None] = []
        self.tool_cpu_s = 0.0
        self.findings: dict[Format, list[str]] = {}
        keeps_float = bool(recipe.int8.tflite_float_ops or recipe.int8.tflite_float_tail)
        done: list[Path] = []  # work folders of runs that succeeded (a failed run's is kept, for its log)
        saved: Path | None = None  # the INT8 run's SavedModel: selective quantization starts from it
        try:
            for run in plan_runs(formats, recipe):
                work, files, peak = self._run(onnx_path, recipe, run)
                done.append(work)
                peaks.append(peak)
                if run.int8:
                    saved = work / "out"
                for fmt in run.formats:
                    if fmt in formats:
                        dest = out_dir / fmt.value / "model.tflite"
                        dest.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copyfile(files[fmt], dest)
                        result[fmt] = [dest]
                if not (keeps_float and run.int8):
                    shutil.rmtree(work, ignore_errors=True)
            if keeps_float and Format.TFLITE_INT8 in result:
                from edgekit.convert.tflite_selective import keep_float

                found = keep_float(onnx_path, recipe, result[Format.TFLITE_INT8][0], self.progress, saved)
                self.findings.setdefault(Format.TFLITE_INT8, []).append(found)
        finally:
            for work in done:
                shutil.rmtree(work, ignore_errors=True)
        known = [p for p in peaks if p is not None]  # unknown if any run's is
        self.peak_rss_mb = max(known) if known and len(known) == len(peaks) else None
        return result

    def _run(
        self, onnx_path: Path, recipe: Recipe, run: Run
    ) -> tuple[Path, dict[Format, Path], float | None]:
        work = paths.work_dir("onnx2tf")
        work.mkdir(parents=True)
        shutil.copyfile(onnx_path, work / "model.onnx")
        job: dict[str, Any] = {"onnx": "model.onnx", "out": "out", **onnx2tf_job(onnx_path, recipe, run)}
        if run.int8:
            job["calibration"] = _write_calibration(recipe, work / "calibration.npy")
        (work / "job.json").write_text(json.dumps(job))
        log = work / "onnx2tf.log"
        with open(log, "w") as out:
            try:
                cmd = [sys.executable, "-m", "edgekit.convert.tflite", str(work / "job.json")]
                proc = subprocess.run(
                    cmd, cwd=work, stdout=out, stderr=subprocess.STDOUT, env=_child_env(), timeout=TIMEOUT_S
                )
            except KeyboardInterrupt:  # subprocess.run has killed onnx2tf; its half-written folder goes too
                shutil.rmtree(work, ignore_errors=True)
                raise
            except subprocess.TimeoutExpired:
                raise ConversionError(
                    f"onnx2tf ran longer than {TIMEOUT_S:.0f} s and was stopped",
                    where=str(log),
                    hint="raise EDGEKIT_CONVERT_TIMEOUT for a big model",
                ) from None
        if proc.returncode != 0 and paths.disk_full(work, log):  # its log would only keep the disk full
            shutil.rmtree(work, ignore_errors=True)
            raise OSError(
                errno.ENOSPC, "onnx2tf ran out of disk space (its work folder is removed)", str(work.parent)
            )
        if proc.returncode != 0:
            cause = onnx2tf_cause(log)
            detail = (
                f"onnx2tf: {cause}"
                if cause
                else f"onnx2tf failed ({exit_text(proc.returncode)}):\n{_tail(log)}"
            )
            raise ConversionError(
                detail,
                hint=f"whole log: {log}; the onnx2tf options a recipe can set are under "
                "`tflite:` (README 'Converter options')",
            )
        report = json.loads((work / "result.json").read_text())
        int8_name = (
            "model_full_integer_quant.tflite"
            if recipe.int8.io is IOType.INT8
            else "model_integer_quant.tflite"
        )
        files = {fmt: work / "out" / (_FILES.get(fmt) or int8_name) for fmt in run.formats}
        missing = [f"{fmt.value} ({p.name})" for fmt, p in files.items() if not p.is_file()]
        if missing:
            cause = (
                onnx2tf_cause(log) or "no error in its log: TensorFlow's converter gave up on that variant"
            )
            raise ConversionError(
                f"onnx2tf wrote no file for {', '.join(missing)} ({cause})", hint=f"whole log: {log}"
            )
        self._flex_findings(recipe, files, report.get("flex_ops", {}))
        self.tool_cpu_s = (self.tool_cpu_s or 0.0) + float(report["cpu_s"])
        return work, files, report["peak_rss_mb"]  # None: unknown (no VmHWM on this system)

    def _flex_findings(self, recipe: Recipe, files: dict[Format, Path], flex: dict[str, list[str]]) -> None:
        """Select TF ops in a written file: a ConversionError naming them, or a finding the recipe accepted."""
        needs = {fmt: flex.get(path.name, []) for fmt, path in files.items() if flex.get(path.name)}
        if not needs:
            return
        ops = sorted({op for found in needs.values() for op in found})
        fmts = ", ".join(f.value for f in needs)
        if not recipe.tflite.allow_select_tf_ops:
            raise ConversionError(
                f"needs Select TF ops {', '.join(ops)} ({fmts}): the TFLite builtin runtime cannot run it",
                hint="list the ONNX op under tflite.replace_ops if onnx2tf can replace it, or set "
                "tflite.allow_select_tf_ops: true (the device's runtime must link the Flex delegate)",
            )
        for fmt, found in needs.items():
            self.findings.setdefault(fmt, []).append(
                f"needs Select TF ops {', '.join(found)} (accepted by tflite.allow_select_tf_ops)"
            )


def onnx2tf_job(onnx_path: Path, recipe: Recipe, run: Run) -> dict[str, Any]:
    """What a child needs to run onnx2tf as the recipe asks (onnx2tf_kwargs turns it into onnx2tf's arguments):
    the converter's run and the selective quantization's own run (edgekit.convert.tflite_selective) share it,
    so both quantize the same SavedModel."""
    return {
        "int8": run.int8,
        "dynamic": run.dynamic,
        "quant_type": recipe.int8.granularity.value,
        "calibration": None,
        "input_name": recipe.input.name,
        "replace_ops": replace_ops(onnx_path, recipe),
        "disable_group_convolution": recipe.tflite.disable_group_convolution,
        "batchmatmul_unfold": recipe.tflite.batchmatmul_unfold,
        "keep_nhwc": _nhwc_onnx_input(onnx_path, recipe),
    }


def replace_ops(onnx_path: Path, recipe: Recipe) -> list[str]:
    """onnx2tf's `replace_to_pseudo_operators`: the recipe's list, or the Flex-prone ops the graph contains."""
    if recipe.tflite.replace_ops is not None:
        return [op.value for op in recipe.tflite.replace_ops]
    import onnx

    present = {
        node.op_type.lower() for node in onnx.load(str(onnx_path), load_external_data=False).graph.node
    }
    return [op.value for op in FLEX_PRONE_OPS if op.value.lower() in present]


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_EXCEPTION = re.compile(r"^([A-Za-z_][\w.]*(Error|Exception)): (.+)")


def onnx2tf_cause(log: Path) -> str | None:
    """onnx2tf's own error: the exception it died of (and the ONNX node it was converting), one line."""
    lines = [_ANSI.sub("", ln).strip() for ln in log.read_text(errors="replace").splitlines()]
    node = next((ln.split(":", 2)[-1].strip() for ln in reversed(lines) if "onnx_op_name:" in ln), None)
    for ln in reversed(lines):
        m = _EXCEPTION.match(ln)
        if m and "edgekit: int16" not in ln:
            text = f"{m.group(1).rpartition('.')[2]}: {m.group(3)}"[:300]
            return text + (f" (at ONNX node {node})" if node else "")
    return None


def _nhwc_onnx_input(onnx_path: Path, recipe: Recipe) -> bool:
    """Whether the ONNX takes the recipe's NHWC image as it is (a user's channels-last ONNX): onnx2tf takes every
    4-D input for NCHW and moves axis 1 last ([1,24,32,3] became (1,32,3,24): int8 calibrated on data of another
    shape, a non-square image failed), unless told to keep it. A Keras source's twin for onnx2tf takes NCHW."""
    if recipe.input.layout is not Layout.NHWC or len(recipe.input.shape) != 4:
        return False
    from edgekit.convert.onnx import read_onnx

    graph = read_onnx(onnx_path, str(onnx_path)).graph
    given = next((i for i in graph.input if i.name == recipe.input.name), None)
    dims = [d.dim_value for d in given.type.tensor_type.shape.dim] if given is not None else []
    return dims == list(recipe.input.shape)


def _write_calibration(recipe: Recipe, path: Path) -> str:
    """The recipe's calibration inputs in the layout onnx2tf's TensorFlow model takes (channels last)."""
    from edgekit.convert.calibration import calibration_inputs

    x = calibration_inputs(recipe)
    if recipe.input.layout is Layout.NCHW and x.ndim == 4:
        x = x.transpose(0, 2, 3, 1)
    elif recipe.input.layout is Layout.NCHW and x.ndim == 3:
        x = x.transpose(0, 2, 1)
    np.save(path, np.ascontiguousarray(x, dtype=np.float32))
    return path.name


def _child_env() -> dict[str, str]:
    threads = os.environ.get("EDGEKIT_CONVERT_THREADS", "1")
    dead = "http://127.0.0.1:9"  # nothing listens there: a download attempt fails at once instead of hanging
    return {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "CUDA_VISIBLE_DEVICES": "",
        "TF_NUM_INTRAOP_THREADS": threads,
        "TF_NUM_INTEROP_THREADS": "1",
        "OMP_NUM_THREADS": threads,
        "HTTP_PROXY": dead,
        "HTTPS_PROXY": dead,
        "http_proxy": dead,
        "https_proxy": dead,
        "NO_PROXY": "",
        "no_proxy": "",
    }


def _tail(log: Path, lines: int = 25) -> str:
    text = plain_output(log.read_text(errors="replace")).splitlines()
    keep = [ln for ln in text if not ln.startswith(("W0000", "I0000"))]
    return "\n".join(keep[-lines:])


# --- the child process --------------------------------------------------------------------------------------
def _skip_int16_variants() -> None:
    """Make TFLite conversions that target int16 activations fail fast; onnx2tf logs and moves on."""
    import tensorflow as tf

    int16 = tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
    original = tf.lite.TFLiteConverter.from_saved_model

    def from_saved_model(*args: Any, **kwargs: Any) -> Any:
        converter = original(*args, **kwargs)
        real_convert = converter.convert

        def convert() -> Any:
            if int16 in converter.target_spec.supported_ops:
                raise RuntimeError("edgekit: int16-activation variant skipped on purpose")
            return real_convert()

        converter.convert = convert
        return converter

    tf.lite.TFLiteConverter.from_saved_model = from_saved_model


def _validate_on_one_sample(job: dict[str, Any]) -> None:
    """onnx2tf checks its layout choices by running the ONNX model on the first sample of the -cind data, but it
    turns that data from NHWC to NCHW only when the whole file has the model's batch: with the recipe's N
    calibration samples the ONNX run got NHWC data, failed, and the check was skipped, so a model with a Reshape
    or Transpose after a convolution (tokens, attention) came out wrong from every INT8 run: tflite-fp32 cosine
    0.797 where a float run (no -cind) gave 1.000, tflite-int8 0.798 (0.99998 with the check). Its ONNX runs get
    a file of the first sample alone; the calibration still reads every sample."""
    if not job.get("calibration"):
        return
    import importlib

    import onnx2tf.onnx2tf as main
    import onnx2tf.utils.common_functions as common

    one = "validation_sample.npy"
    np.save(one, np.load(job["calibration"], mmap_mode="r")[:1])
    original = common.dummy_onnx_inference

    def one_sample(*args: Any, **kwargs: Any) -> Any:
        given = kwargs.get("custom_input_op_name_np_data_path")
        if given:
            kwargs["custom_input_op_name_np_data_path"] = [[p[0], one, *p[2:]] for p in given]
        return original(*args, **kwargs)

    for module in (main, importlib.import_module("onnx2tf.ops.ConvTranspose")):  # the callers, by their names
        if getattr(module, "dummy_onnx_inference", None) is original:
            setattr(module, "dummy_onnx_inference", one_sample)  # noqa: B010 - a module mypy sees as a union


def _child(job_path: Path) -> None:
    job = json.loads(job_path.read_text())
    rng = np.random.default_rng(0)
    np.save(SAMPLE_FILE, rng.uniform(0, 1, (20, 128, 128, 3)).astype(np.float32))  # cwd is the work dir
    start = time.perf_counter()
    import onnx2tf

    _skip_int16_variants()
    _validate_on_one_sample(job)
    onnx2tf.convert(input_onnx_file_path=job["onnx"], output_folder_path=job["out"], **onnx2tf_kwargs(job))
    flex = {p.name: _flex_ops(p) for p in Path(job["out"]).glob("*.tflite")}
    Path("result.json").write_text(json.dumps({**child_figures(start), "flex_ops": flex}))


def onnx2tf_kwargs(job: dict[str, Any]) -> dict[str, Any]:
    """onnx2tf.convert's arguments for a job of onnx2tf_job (in the child: the calibration file is in its cwd)."""
    kwargs: dict[str, Any] = {}
    if job["calibration"]:
        calib = np.load(job["calibration"], mmap_mode="r")
        ident = (1,) * (calib.ndim - 1) + (calib.shape[-1],) if calib.ndim == 4 else (1,)
        kwargs["custom_input_op_name_np_data_path"] = [
            [job["input_name"], job["calibration"], np.zeros(ident, np.float32), np.ones(ident, np.float32)]
        ]
    # output_signaturedefs: without it a float run fails on op names like "/s5/s5.0/Conv" (an -oiqt run sets it
    # itself), and the signature keeps the ONNX output names
    return dict(
        copy_onnx_input_output_names_to_tflite=True,
        output_signaturedefs=True,
        output_integer_quantized_tflite=job["int8"],
        output_dynamic_range_quantized_tflite=job["dynamic"],
        quant_type=job["quant_type"],
        input_quant_dtype="int8",
        output_quant_dtype="int8",
        replace_to_pseudo_operators=[op.lower() for op in job["replace_ops"]],  # its ops compare lower case
        disable_group_convolution=job["disable_group_convolution"],
        enable_batchmatmul_unfold=job["batchmatmul_unfold"],
        keep_nwc_or_nhwc_or_ndhwc_input_names=[job["input_name"]] if job.get("keep_nhwc") else None,
        non_verbose=True,
        **kwargs,
    )


def _flex_ops(path: Path) -> list[str]:
    """The Select TF (Flex) operators a .tflite needs: custom operator codes named Flex*."""
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(path.read_bytes(), 0)
    codes = [
        c.customCode.decode() if isinstance(c.customCode, bytes) else c.customCode
        for c in model.operatorCodes or []
    ]
    return sorted({c for c in codes if c and c.startswith("Flex")})


if __name__ == "__main__":
    _child(Path(sys.argv[1]))
