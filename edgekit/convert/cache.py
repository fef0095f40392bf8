"""Content-addressed artifact cache: converting an unchanged recipe again does no conversion work.

An artifact's key is the sha256 of: the ONNX model's bytes (its sha256), the format, the settings that change
that format's files (input name/shape/layout; for INT8 the calibration data's digest, the calibration method
and the int8 options; whatever the converter adds in `settings()`), and the converter's tool versions.
Each key is a folder cache_dir()/KEY/ holding the artifact's files and artifact.json (how it was made: time,
peak memory, tool run). Fidelity results are cached beside it as fidelity-DIGEST.json, DIGEST covering the
evaluation data and the fidelity procedure, so a second run also skips the host inference.
Folders are written under a temporary name and renamed into place, so a crash never leaves half an entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from edgekit import paths
from edgekit.convert.base import Artifact, Converter
from edgekit.formats import Format, Precision
from edgekit.recipe import Recipe

CACHE_VERSION = 1
META = "artifact.json"


def artifact_key(
    onnx_sha256: str,
    recipe: Recipe,
    fmt: Format,
    converter: type[Converter],
    calibration_digest: str | None = None,
) -> str:
    """The cache key of one artifact (see the module docstring for what it covers)."""
    spec: dict[str, Any] = {
        "cache": CACHE_VERSION,
        "onnx": onnx_sha256,
        "format": fmt.value,
        "input": {
            "name": recipe.input.name,
            "shape": list(recipe.input.shape),
            "layout": recipe.input.layout.value,
        },
        "tools": converter.tool_versions(),
        "converter": converter.settings(recipe, fmt),
    }
    if fmt.precision is Precision.INT8:
        if calibration_digest is None:
            raise ValueError("an INT8 artifact's key needs the calibration data digest")
        spec["int8"] = {
            "calibration": calibration_digest,
            "method": recipe.calibration.method.value if recipe.calibration else None,
            **recipe.int8.model_dump(mode="json"),
        }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def entry_dir(key: str) -> Path:
    return paths.cache_dir() / key


def lookup(key: str) -> Artifact | None:
    """The cached artifact for `key` (marked cached), or None if absent or incomplete."""
    folder = entry_dir(key)
    try:
        meta = json.loads((folder / META).read_text())
    except (OSError, ValueError):
        return None
    files = [folder / name for name in meta["files"]]
    if not all(f.is_file() for f in files):
        return None
    return Artifact(
        format=Format(meta["format"]),
        files=files,
        key=key,
        size_bytes=_size(files),
        convert_s=meta.get("convert_s", 0.0),
        peak_rss_mb=meta.get("peak_rss_mb"),
        cached=True,
        provenance=meta.get("provenance", {}),
    )


def store(
    key: str,
    fmt: Format,
    files: list[Path],
    convert_s: float,
    peak_rss_mb: float | None,
    provenance: dict[str, Any],
) -> Artifact:
    """Move freshly converted files into the cache under `key`; returns the (not cached) artifact."""
    final = entry_dir(key)
    tmp = final.with_name(f"{key}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir(parents=True)
    names = [f.name for f in files]
    meta = {
        "format": fmt.value,
        "files": names,
        "convert_s": convert_s,
        "peak_rss_mb": peak_rss_mb,
        "provenance": provenance,
    }
    try:
        for f in files:
            _link_or_copy(f, tmp / f.name)
        (tmp / META).write_text(json.dumps(meta, indent=1))
    except BaseException:  # a full disk, Ctrl-C: no half-written entry is left to fill the disk further
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if lookup(key) is not None:  # a concurrent writer finished first: its entry is equivalent, keep it
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        if final.exists():  # an incomplete earlier entry
            shutil.rmtree(final, ignore_errors=True)
        try:
            tmp.rename(final)
        except OSError:  # lost a race after all; the winner's entry is equivalent
            shutil.rmtree(tmp, ignore_errors=True)
    out = [final / n for n in names]
    return Artifact(
        format=fmt,
        files=out,
        key=key,
        size_bytes=_size(out),
        convert_s=convert_s,
        peak_rss_mb=peak_rss_mb,
        cached=False,
        provenance=provenance,
    )


def load_fidelity(key: str, digest: str) -> dict[str, Any] | None:
    try:
        return json.loads((entry_dir(key) / f"fidelity-{digest[:32]}.json").read_text())
    except (OSError, ValueError):
        return None


def save_fidelity(key: str, digest: str, numbers: dict[str, Any]) -> None:
    folder = entry_dir(key)
    if folder.is_dir():
        tmp = folder / f".fidelity-{uuid.uuid4().hex[:8]}"
        tmp.write_text(json.dumps(numbers, indent=1))
        tmp.replace(folder / f"fidelity-{digest[:32]}.json")


def _size(files: list[Path]) -> int:
    """Bytes a device must hold: the model files (an ncnn sidecar JSON counts too, it is tiny)."""
    return sum(f.stat().st_size for f in files)


def _link_or_copy(src: Path, dst: Path) -> None:
    """A hard link for a converter's output in its work folder (removed after: no second copy of a large model on
    the disk) where the file system allows, else a copy. Cache files are only ever replaced, never
    written in place, so a linked file cannot change under the entry."""
    work = paths.cache_dir() / "work"
    if Path(os.path.realpath(src)).is_relative_to(
        os.path.realpath(work)
    ):  # never a file the user may rewrite
        try:
            os.link(src, dst)
            return
        except OSError:
            pass
    shutil.copyfile(src, dst)
