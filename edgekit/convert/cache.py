"""Content-addressed artifact cache: converting an unchanged recipe again does no conversion work.

An artifact's key is the sha256 of: the ONNX model's bytes (its sha256), the format, the settings that change
that format's files (input name/shape/layout; for INT8 the calibration data's digest and the int8 options, the
calibration method and int8.io only for the formats that read them; whatever the converter adds in `settings()`),
and the converter's tool versions for that format (`format_tools`).
Each key is a folder cache_dir()/KEY/ holding the artifact's files and artifact.json (how it was made: time,
peak memory, tool run). Fidelity results are cached beside it as fidelity-DIGEST.json, DIGEST covering the
evaluation data and labels, the fidelity procedure, the recipe's `outputs:` and the versions of the host runtimes
that compute the numbers (fidelity_stage.fidelity_digest), so a second run also skips the host inference.
Folders are written under a temporary name and renamed into place, so a crash never leaves half an entry.

artifact.json records each file's size and sha256, and a lookup checks both before serving the entry: a file
truncated, rewritten or removed since (a full disk, a user's tool, a disk error) is a damaged entry, never a
"cached" artifact with the old fidelity numbers. The hash is read every time: hashing runs at over 1 GB/s, so
even a few hundred MB of artifacts cost a fraction of a second, against minutes of conversion it saves and the
wrong figures it prevents (a size check alone misses a same-size rewrite). A damaged entry is a miss: its folder
is moved aside to KEY.damaged (one per key, the previous one replaced), a warning says so on stderr, and the
format is converted again. An entry written before the sizes were recorded cannot be verified: it is a miss,
converted again once and replaced by a verified entry.
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
from edgekit.convert.base import Artifact, Converter, model_bytes
from edgekit.convert.housekeeping import claim, touch
from edgekit.convert.onnx_export import file_sha256
from edgekit.formats import INT8_IO_FORMATS, Format, Precision
from edgekit.recipe import Recipe

CACHE_VERSION = 1
META = "artifact.json"
# the INT8 formats whose converter reads calibration.method (ncnn's thresholds, onnxruntime's Entropy or MinMax,
# MNN's KL or EMA) and int8.io (TensorFlow's int8 input and output tensors): only their keys hold it
METHOD_FORMATS = frozenset({Format.NCNN_INT8, Format.MNN_INT8})  # onnx-int8 is min/max whatever the method
IO_FORMATS = INT8_IO_FORMATS
log = logging.getLogger(__name__)


def artifact_key(
    onnx_sha256: str,
    recipe: Recipe,
    fmt: Format,
    converter: type[Converter],
    calibration_digest: str | None = None,
    tools: dict[str, str] | None = None,
) -> str:
    """The cache key of one artifact (see the module docstring for what it covers). `tools` replaces some of the
    converter's tool versions: the key of an artifact made otherwise (an ncnn-int8 whose speed plan could not be
    counted: "failed", never the "counted" key a later run looks up)."""
    spec: dict[str, Any] = {
        "cache": CACHE_VERSION,
        "onnx": onnx_sha256,
        "format": fmt.value,
        "input": {
            "name": recipe.input.name,
            "shape": list(recipe.input.shape),
            "layout": recipe.input.layout.value,
        },
        "tools": {**converter.format_tools(fmt), **(tools or {})},
        "converter": converter.settings(recipe, fmt),
    }
    if fmt.precision is Precision.INT8:
        if calibration_digest is None:
            raise ValueError("an INT8 artifact's key needs the calibration data digest")
        spec["int8"] = {
            "calibration": calibration_digest,
            **recipe.int8.model_dump(
                mode="json",
                exclude={
                    "io",
                    "ncnn_float_layers",
                    "tflite_float_ops",
                    "tflite_float_tail",
                    "onnx_float_nodes",
                },
            ),
        }
        # the calibration method and int8.io only where the converter reads them: a change elsewhere
        # converted again into the same files
        if fmt in METHOD_FORMATS:
            spec["int8"]["method"] = recipe.calibration.method.value if recipe.calibration else None
        if fmt in IO_FORMATS:
            spec["int8"]["io"] = recipe.int8.io.value
        # each format's float list, absent when unset: keys made before hold
        if fmt is Format.NCNN_INT8 and recipe.int8.ncnn_float_layers:
            spec["int8"]["ncnn_float_layers"] = sorted(set(recipe.int8.ncnn_float_layers))
        if fmt is Format.TFLITE_INT8 and recipe.int8.tflite_float_ops:
            spec["int8"]["tflite_float_ops"] = sorted(set(recipe.int8.tflite_float_ops))
        if fmt is Format.TFLITE_INT8 and recipe.int8.tflite_float_tail:
            spec["int8"]["tflite_float_tail"] = True
        if fmt is Format.ONNX_INT8 and recipe.int8.onnx_float_nodes:
            spec["int8"]["onnx_float_nodes"] = sorted(set(recipe.int8.onnx_float_nodes))
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def entry_dir(key: str) -> Path:
    return paths.cache_dir() / key


def lookup(key: str, then: str = "converting it again") -> Artifact | None:
    """The cached artifact for `key` (marked cached), or None if absent, damaged or not verifiable (an entry
    from before sizes and hashes were recorded). A damaged entry is moved aside, with a warning saying what happens
    instead (`then`: a caller that only borrows the entry's files, as ncnn-int8 borrows ncnn-fp32's, says what it
    does without them)."""
    folder = entry_dir(key)
    if not folder.is_dir():
        return None
    try:
        meta = json.loads((folder / META).read_text())
        names = [str(n) for n in meta["files"]]
        fmt = Format(meta["format"])
        checks = meta.get("checks")
    except (OSError, ValueError, KeyError, TypeError):
        _set_aside(key, "its artifact.json is missing or unreadable", None, then)
        return None
    if not isinstance(checks, dict):  # written by an older edgekit: nothing to verify the files against
        log.info("cache: %s entry %s has no recorded file sizes; converting again", fmt.value, key[:12])
        return None
    problem = _damage(folder, names, checks)
    if problem:
        _set_aside(key, problem, fmt, then)
        return None
    files = [folder / name for name in names]
    touch(folder / META)  # its last use, for `edgekit cache prune`
    return Artifact(
        format=fmt,
        files=files,
        key=key,
        size_bytes=model_bytes(files),
        convert_s=meta.get("convert_s", 0.0),
        peak_rss_mb=meta.get("peak_rss_mb"),
        cached=True,
        provenance=meta.get("provenance", {}),
    )


def mark_used(path: Path) -> None:
    """A model file given by path (bench, estimate, profile: convert prints the cache paths for them) that lies in a
    cache entry (an artifact, a prepared ONNX, an onnx2tf run) marks that entry used now, as a lookup does: a file
    benched every night was pruned as unused after 30 days. A file elsewhere is left alone."""
    from edgekit.convert.housekeeping import KEY

    try:
        root = Path(os.path.realpath(paths.data_path() / "cache"))
        parts = Path(os.path.realpath(path)).relative_to(root).parts
    except (OSError, ValueError):  # outside the cache
        return
    if len(parts) >= 2 and KEY.fullmatch(parts[0]):
        touch(root / parts[0] / META)
    elif len(parts) >= 3 and parts[0] in ("onnx", "onnx2tf") and KEY.fullmatch(parts[1]):
        touch(root / parts[0] / parts[1] / "meta.json")


def _checks(folder: Path, names: list[str]) -> dict[str, dict[str, Any]]:
    """What artifact.json records of each file, for lookup to verify."""
    return {n: {"size": (folder / n).stat().st_size, "sha256": file_sha256(folder / n)} for n in names}


def _damage(folder: Path, names: list[str], checks: dict[str, Any]) -> str | None:
    """What is wrong with an entry's files against their recorded sizes and hashes, or None if they are whole.
    Sizes first (no file is read when one is short), then the hashes."""
    if not names or set(names) != set(checks):
        return "its artifact.json does not record every file"
    for name in names:
        path = folder / name
        try:
            size = path.stat().st_size
        except OSError:
            return f"{name} is missing"
        try:
            if size != int(checks[name]["size"]):
                return f"{name} has {size} bytes, {checks[name]['size']} were stored"
        except (KeyError, TypeError, ValueError):
            return "its artifact.json does not record every file"
    for name in names:
        try:
            if file_sha256(folder / name) != checks[name].get("sha256"):
                return f"{name}'s content changed since it was stored (sha256)"
        except OSError as exc:
            return f"{name} cannot be read ({exc.strerror or exc})"
    return None


def _set_aside(key: str, problem: str, fmt: Format | None, then: str) -> None:
    """Move a damaged entry out of the way (to KEY.damaged, replacing an earlier one) and say so once."""
    folder = entry_dir(key)
    aside = folder.with_name(f"{key}.damaged")
    shutil.rmtree(aside, ignore_errors=True)
    try:
        folder.rename(aside)
    except OSError:  # another run moved or replaced it first: that run says so
        return
    log.warning(
        "cache: the cached %s was damaged (%s): %s; the damaged files are in %s",
        f"{fmt.value} artifact" if fmt else "entry",
        problem,
        then,
        aside,
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
    claim()  # the running command holds the cache before its first entry is there (a prune leaves it alone)
    final = entry_dir(key)
    tmp = final.with_name(f"{key}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir(parents=True)
    names = [f.name for f in files]
    meta: dict[str, Any] = {
        "format": fmt.value,
        "files": names,
        "convert_s": convert_s,
        "peak_rss_mb": peak_rss_mb,
        "provenance": provenance,
    }
    try:
        for f in files:
            _link_or_copy(f, tmp / f.name)
        meta["checks"] = _checks(tmp, names)
        (tmp / META).write_text(json.dumps(meta, indent=1))
    except BaseException:  # a full disk, Ctrl-C: no half-written entry is left to fill the disk further
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _place(tmp, final, key)
    out = [final / n for n in names]
    return Artifact(
        format=fmt,
        files=out,
        key=key,
        size_bytes=model_bytes(out),
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
        try:
            tmp.write_text(json.dumps(numbers, indent=1))
            tmp.replace(folder / f"fidelity-{digest[:32]}.json")
        except BaseException:  # a full disk, Ctrl-C: no half-written temporary left in the entry
            tmp.unlink(missing_ok=True)
            raise


def _place(tmp: Path, final: Path, key: str) -> None:
    """The finished entry `tmp` renamed to `final`, never over an entry another run may be serving: a rename onto
    a folder that holds files fails (ENOTEMPTY), so the first writer's entry stays and this one is dropped (it is
    equivalent). Checking first and then removing (as before) removed an entry a concurrent writer had just put
    there and was returning. Only an entry lookup cannot serve (an older edgekit's, without recorded sizes; a
    damaged one lookup has not set aside) is replaced, by renaming it away first."""
    try:
        tmp.rename(final)
        return
    except OSError:
        pass
    if lookup(key) is not None:  # a concurrent writer finished first: its entry is equivalent, keep it
        shutil.rmtree(tmp, ignore_errors=True)
        return
    stale = final.with_name(f"{key}.tmp-{uuid.uuid4().hex[:8]}")  # `edgekit cache` lists it if left behind
    try:
        final.rename(stale)
    except OSError:
        pass
    try:
        tmp.rename(final)
    except OSError:  # yet another writer placed its entry in between: equivalent
        shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(stale, ignore_errors=True)


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
