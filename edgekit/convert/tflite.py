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
  then the dynamic-range file comes from a float run, which quantizes it per-channel (onnx2tf_job);
- int8 input/output (`io: int8`) picks onnx2tf's `full_integer_quant` file (`-iqd int8 -oqd int8`), float io
  its `integer_quant` file;
- the int16-activation variants that `-oiqt` also writes are skipped inside the child (they run on reference
  kernels, about 30x slower, and calibrating them roughly doubles the INT8 run's time), and so are the INT8
  file of the other io (`full_integer_quant` for io: float: a second calibration pass) and the dynamic-range
  file when tflite-dynamic is not asked (onnx2tf_run.skip_variants; the run's cache key says which it kept);
- the recipe's `tflite:` options (edgekit.recipe.TfliteOptions) reach onnx2tf typed: operators rewritten as
  builtin ones (by default those the model has that would become Flex ops, e.g. Erf from GELU), grouped
  convolutions as separable ones, BatchMatMul unfolded;
- every written .tflite is read back in the child for Select TF (Flex) operators: a conversion error naming them,
  or a finding on the artifact when the recipe sets `tflite.allow_select_tf_ops`;
- a failed run's first line is onnx2tf's own error (the exception it died of, and the ONNX node), not a log tail;
- an INT8 run's output folder (SavedModel and files) is kept in the conversion cache (edgekit.convert.tflite_runs,
  keyed on the ONNX, onnx2tf's arguments, the calibration data and the tool versions): `analyze --fix` and the
  convert of its `int8.tflite_float_ops` quantize that SavedModel again instead of running onnx2tf each;
- onnx2tf's layout check runs the ONNX model on one calibration sample (`validate_on_one_sample`): given all of
  them it skipped the check, and a token model came out of INT8 runs wrong (fp32 and int8 alike).
"""

from __future__ import annotations

import errno
import json
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
from edgekit.convert.onnx2tf_run import (
    SAMPLE_FILE,
    convert_timeout,
    flex_ops,
    log_tail,
    nhwc_onnx_input,
    onnx2tf_cause,
    onnx2tf_job,
    onnx2tf_kwargs,
    run_child,
    skip_variants,
    validate_on_one_sample,
    write_calibration,
)
from edgekit.convert.tool_process import child_figures
from edgekit.errors import ConversionError, exit_text
from edgekit.formats import Format
from edgekit.recipe import Granularity, IOType, Layout, Recipe

# bump when the child's procedure changes what it writes, or what is recorded beside it. 5: each file's layout
# record (edgekit.convert.tflite_layout): an entry without it would keep the shape rule, wrong when C == H == W.
# 6: the record tries every permutation of an output (an Einsum's [0, 2, 1, 3] was left to reshaping)
WORKER_VERSION = 6
DYNAMIC_VERSION = 2  # tflite-dynamic's own key: bump when only the dynamic-range file changes
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
        # channels-last input: onnx2tf is told to keep it (nhwc_onnx_input); keys of NCHW recipes unchanged
        nhwc = {"input_layout": "NHWC-kept"} if recipe.input.layout is Layout.NHWC else {}
        if fmt is Format.TFLITE_DYNAMIC:  # per-channel, always (onnx2tf_job): it followed int8.granularity
            # in a float run before DYNAMIC_VERSION 2, so an entry keyed per-channel could hold per-tensor weights
            return {
                "granularity": Granularity.PER_CHANNEL.value,
                "tflite": options,
                "dynamic_version": DYNAMIC_VERSION,
                **nhwc,
            }
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
        self.layouts: dict[Format, dict[str, Any]] = {}  # each file's layout record (provenance `layout`)
        keeps_float = bool(recipe.int8.tflite_float_ops or recipe.int8.tflite_float_tail)
        done: list[Path] = []  # work folders of runs that succeeded (a failed run's is kept, for its log)
        saved: Path | None = None  # the INT8 run's SavedModel: selective quantization starts from it
        try:
            for run in plan_runs(formats, recipe):
                work, out, files, peak = self._run(onnx_path, recipe, run)
                done.append(work)
                peaks.append(peak)
                if run.int8:
                    saved = out  # the work folder's, or the cached run's (tflite_runs)
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
            self._record_layouts(onnx_path, recipe, result)
        finally:
            for work in done:
                shutil.rmtree(work, ignore_errors=True)
        known = [p for p in peaks if p is not None]  # unknown if any run's is
        self.peak_rss_mb = max(known) if known and len(known) == len(peaks) else None
        return result

    def _record_layouts(self, onnx_path: Path, recipe: Recipe, result: dict[Format, list[Path]]) -> None:
        """How each file's input and outputs relate to the ONNX model's, run once to tell (tflite_layout)."""
        from edgekit.convert.tflite_layout import layout_record

        kept = nhwc_onnx_input(onnx_path, recipe)
        for fmt, files in result.items():
            try:
                self.layouts[fmt] = layout_record(onnx_path, files[0], tuple(recipe.input.shape), kept)
            except Exception:  # noqa: BLE001 - a file this host cannot read here: no record, the shape rule
                continue

    def _run(
        self, onnx_path: Path, recipe: Recipe, run: Run
    ) -> tuple[Path, Path, dict[Format, Path], float | None]:
        """One onnx2tf run (an INT8 one served from the cache when it was made before: tflite_runs): its work
        folder, the folder its files are in, the files of `run.formats` and the child's peak memory."""
        from edgekit.convert import tflite_runs

        timeout = convert_timeout()  # a malformed setting is said before any work (UsageError, exit 2)
        work = paths.work_dir("onnx2tf")
        try:
            work.mkdir(parents=True)
            shutil.copyfile(onnx_path, work / "model.onnx")
            job: dict[str, Any] = {
                "onnx": "model.onnx",
                "out": "out",
                # an INT8 run that serves tflite-dynamic says so: without it the child skips that file
                **onnx2tf_job(
                    onnx_path, recipe, run.int8, run.dynamic or Format.TFLITE_DYNAMIC in run.formats
                ),
            }
            if run.int8:
                job["calibration"] = write_calibration(recipe, work / "calibration.npy")
            (work / "job.json").write_text(json.dumps(job))
        except BaseException as exc:  # onnx2tf never ran: no log to keep, and the files may fill the disk
            shutil.rmtree(work, ignore_errors=True)
            if isinstance(exc, OSError) and (
                exc.errno in (errno.ENOSPC, errno.EDQUOT)
                or (exc.errno is None and paths.disk_full(work.parent))  # numpy's short write has no errno
            ):
                raise OSError(
                    errno.ENOSPC,
                    f"onnx2tf's input files did not fit: {exc} (its work folder is removed)",
                    str(work.parent),
                ) from exc
            raise
        key = tflite_runs.run_key(onnx_path, job, work / job["calibration"]) if run.int8 else None
        cached = tflite_runs.lookup(key) if key is not None else None
        if cached is not None:
            if self.progress is not None:
                self.progress(f"onnx2tf's INT8 run from the cache ({str(key)[:12]}): onnx2tf not run again")
            report = json.loads((cached / "result.json").read_text())
            files = self._files(recipe, run, cached / "out", work / "onnx2tf.log")
            self._flex_findings(recipe, files, report.get("flex_ops", {}))
            return work, cached / "out", files, None  # no tool ran: its memory is this process's
        log = work / "onnx2tf.log"
        with open(log, "w") as out:
            try:
                cmd = [sys.executable, "-m", "edgekit.convert.tflite", str(work / "job.json")]
                returncode = run_child(cmd, work, out, timeout, self.progress, "onnx2tf")
            except KeyboardInterrupt:  # run_child has killed onnx2tf; its half-written folder goes too
                shutil.rmtree(work, ignore_errors=True)
                raise
            except subprocess.TimeoutExpired:
                raise ConversionError(
                    f"onnx2tf ran longer than {timeout:.0f} s and was stopped",
                    where=str(log),
                    hint="raise EDGEKIT_CONVERT_TIMEOUT for a big model",
                ) from None
        if returncode != 0 and paths.disk_full(work, log):  # its log would only keep the disk full
            shutil.rmtree(work, ignore_errors=True)
            raise OSError(
                errno.ENOSPC, "onnx2tf ran out of disk space (its work folder is removed)", str(work.parent)
            )
        if returncode != 0:
            cause = onnx2tf_cause(log)
            detail = (
                f"onnx2tf: {cause}"
                if cause
                else f"onnx2tf failed ({exit_text(returncode)}):\n{log_tail(log)}"
            )
            raise ConversionError(
                detail,
                hint=f"whole log: {log}; the onnx2tf options a recipe can set are under "
                "`tflite:` (README 'Converter options')",
            )
        report = json.loads((work / "result.json").read_text())
        files = self._files(recipe, run, work / "out", log)
        self._flex_findings(recipe, files, report.get("flex_ops", {}))
        self.tool_cpu_s = (self.tool_cpu_s or 0.0) + float(report["cpu_s"])
        if key is not None:
            tflite_runs.store(key, work / "out", work / "result.json")
        return work, work / "out", files, report["peak_rss_mb"]  # None: unknown (no VmHWM on this system)

    @staticmethod
    def _files(recipe: Recipe, run: Run, out: Path, log: Path) -> dict[Format, Path]:
        """The file of each of `run.formats` in onnx2tf's output folder; a ConversionError names any missing."""
        int8_name = (
            "model_full_integer_quant.tflite"
            if recipe.int8.io is IOType.INT8
            else "model_integer_quant.tflite"
        )
        files = {fmt: out / (_FILES.get(fmt) or int8_name) for fmt in run.formats}
        missing = [f"{fmt.value} ({p.name})" for fmt, p in files.items() if not p.is_file()]
        if missing:
            cause = (
                onnx2tf_cause(log) if log.is_file() else None
            ) or "no error in its log: TensorFlow's converter gave up on that variant"
            raise ConversionError(
                f"onnx2tf wrote no file for {', '.join(missing)} ({cause})", hint=f"whole log: {log}"
            )
        return files

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


def _child(job_path: Path) -> None:
    job = json.loads(job_path.read_text())
    rng = np.random.default_rng(0)
    np.save(SAMPLE_FILE, rng.uniform(0, 1, (20, 128, 128, 3)).astype(np.float32))  # cwd is the work dir
    start = time.perf_counter()
    import onnx2tf

    skip_variants(job)
    validate_on_one_sample(job)
    onnx2tf.convert(input_onnx_file_path=job["onnx"], output_folder_path=job["out"], **onnx2tf_kwargs(job))
    flex = {p.name: flex_ops(p) for p in Path(job["out"]).glob("*.tflite")}
    Path("result.json").write_text(json.dumps({**child_figures(start), "flex_ops": flex}))


if __name__ == "__main__":
    from edgekit.convert.tool_process import die_with_parent

    die_with_parent()
    _child(Path(sys.argv[1]))
