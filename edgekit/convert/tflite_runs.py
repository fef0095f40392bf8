"""onnx2tf's INT8 runs, kept in the conversion cache: `edgekit analyze --format tflite-int8 --fix` converted the
plain tflite-int8 (one onnx2tf run), ran onnx2tf again for the SavedModel its selective quantization starts from,
and the convert that ships what it found (`int8.tflite_float_ops`: a new tflite-int8 key) ran it a third time.
An INT8 run's output folder (its SavedModel and every .tflite it wrote, with the child's result.json) is kept as
cache_dir()/onnx2tf/KEY/ and served to all three.

What the folder depends on, all in KEY: the ONNX model's sha256; onnx2tf's arguments as the recipe makes them
(onnx2tf_run.onnx2tf_job: INT8 and dynamic-range flags, quantization granularity, input name, replaced ops, group
convolution, BatchMatMul unfolding, kept NHWC input); the calibration data's bytes, which reach the SavedModel
itself and not only TensorFlow's quantizer: onnx2tf checks its layout choices by running the ONNX model on the first
calibration sample (onnx2tf_run.validate_on_one_sample: a token model's fp32 cosine went 0.797 -> 1.000 on
that sample alone), and the INT8 .tflite files are calibrated on all of them; and the converter's tool
versions (onnx2tf, TensorFlow, ..., and the worker's own version, which covers the patches the child applies).
meta.json records every file's size and sha256, checked at each lookup as cache.py does for artifacts: a damaged
run is set aside as KEY.damaged and made again. A lookup touches meta.json, so `edgekit cache prune` removes runs
no conversion used within its window (housekeeping.py, kind "onnx2tf").
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from edgekit import paths
from edgekit.convert.housekeeping import claim, touch
from edgekit.convert.onnx_export import file_sha256

RUNS_VERSION = 1
META = "meta.json"
log = logging.getLogger(__name__)


def runs_dir() -> Path:
    return paths.cache_dir() / "onnx2tf"


def run_key(onnx_path: Path, job: dict[str, Any], calibration: Path | None) -> str:
    """The key of one onnx2tf run: the model, the job's onnx2tf arguments (its file names left out), the
    calibration data's bytes and the tool versions (module docstring)."""
    from edgekit.convert.tflite import TfliteConverter

    args = {k: v for k, v in job.items() if k not in ("onnx", "out", "calibration")}
    spec = {
        "runs": RUNS_VERSION,
        "onnx": file_sha256(onnx_path),
        "job": args,
        "calibration": file_sha256(calibration) if calibration is not None else None,
        "tools": TfliteConverter.tool_versions(),
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.name != META)


def lookup(key: str) -> Path | None:
    """The cached run's folder (its `out/` and result.json), or None when absent or damaged (set aside)."""
    folder = runs_dir() / key
    if not folder.is_dir():
        return None
    try:
        checks = json.loads((folder / META).read_text())["checks"]
        if not isinstance(checks, dict) or set(checks) != set(_files(folder)):
            raise ValueError("files")
        for name, want in checks.items():
            path = folder / name
            if path.stat().st_size != int(want["size"]) or file_sha256(path) != want["sha256"]:
                raise ValueError(name)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        aside = folder.with_name(f"{key}.damaged")
        shutil.rmtree(aside, ignore_errors=True)
        try:
            folder.rename(aside)
        except OSError:
            return None
        log.warning("cache: the cached onnx2tf run %s was damaged (%s): running onnx2tf again", key[:12], exc)
        return None
    touch(folder / META)  # its last use, for `edgekit cache prune`
    return folder


def store(key: str, out: Path, result: Path) -> None:
    """Keep a finished run's output folder `out` and its result.json under `key` (copies: the work folder goes).
    Written under a temporary name and renamed into place; a concurrent writer's equal entry is kept."""
    claim()
    final = runs_dir() / key
    if final.is_dir():
        return
    tmp = final.with_name(f"{key}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        tmp.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(out, tmp / "out", symlinks=False)
        shutil.copyfile(result, tmp / "result.json")
        checks = {
            name: {"size": (tmp / name).stat().st_size, "sha256": file_sha256(tmp / name)}
            for name in _files(tmp)
        }
        (tmp / META).write_text(json.dumps({"checks": checks}, indent=1))
        os.rename(tmp, final)
    except BaseException:  # a full disk, Ctrl-C, another writer first: no half entry left behind
        shutil.rmtree(tmp, ignore_errors=True)
        if not final.is_dir():
            raise
