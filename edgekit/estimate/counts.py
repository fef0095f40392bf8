"""Instruction counts of artifacts, counted once per (artifact bytes, core, threads, inputs) and kept.

Counting a real model under the counting qemu takes seconds to minutes; one count serves every board with that
core and every estimate made from it (1 and 4 threads both use the one-thread count; a 4-thread count is only
taken when a cost model needs the split between threads). The cache key covers everything that changes a count:
the artifact's files, the emulated CPU, the thread count, the input fill, the ncnn options, the runtime wheels of
the emulated devices and the counting plugin's source. Entries are small JSON files under the data dir.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from edgekit.emu import layout
from edgekit.emu.plugin import build as plugin_build
from edgekit.emu.plugin.counting import CountJob, CountResult, count_artifacts
from edgekit.emu.specs import device_spec
from edgekit.paths import data_dir


class NotCounted(LookupError):
    """A count not in the cache while new counts are not to be made (cached_only)."""


_CACHED_ONLY: contextvars.ContextVar[str | None] = contextvars.ContextVar("edgekit_cached_only", default=None)


@contextlib.contextmanager
def cached_only(why: str) -> Iterator[None]:
    """Within it (this thread), count_cached serves the cache and counts nothing new: NotCounted says WHY (a
    deploy interrupted after measuring gets its estimates from what is counted, not minutes more under qemu)."""
    token = _CACHED_ONLY.set(why)
    try:
        yield
    finally:
        _CACHED_ONLY.reset(token)


def cache_folder() -> Path:
    path = data_dir() / "counts"
    path.mkdir(parents=True, exist_ok=True)
    return path


def count_cached(
    job: CountJob, device: str, say: Callable[[str], None] | None = None, timeout_s: float = 3600.0
) -> tuple[CountResult, bool]:
    """(the count, whether it came from the cache); a counting run longer than `timeout_s` is stopped."""
    key = cache_key(job, device)
    entry = cache_folder() / f"{key}.json"
    if entry.exists():
        try:
            found = CountResult(**json.loads(entry.read_text()))
            _touch(entry)  # a use: `edgekit cache prune` keeps what was used lately
            return found, True
        except (ValueError, TypeError):
            entry.unlink(missing_ok=True)  # a torn or old entry: count again
    why = _CACHED_ONLY.get()
    if why is not None:
        raise NotCounted(f"not in the count cache, and {why}")
    if say is not None:
        say(
            f"counting instructions of {Path(job.artifact).name} on {device} ({device_spec(device).cpu}), "
            f"{job.threads} thread(s), under qemu"
        )
    start = time.monotonic()
    (result,) = count_artifacts([job], device, timeout_s)
    if say is not None:
        say(
            f"counted {result.instructions:,} instructions in {time.monotonic() - start:.0f} s (kept in the count cache)"
        )
    data = {
        k: v
        for k, v in result.to_dict().items()
        if k not in ("instructions", "busiest_thread", "spread", "label")
    }
    _write_whole(entry, json.dumps(data))
    return result, False


def _touch(path: Path) -> None:
    try:
        os.utime(path)
    except OSError:  # a read-only data dir keeps the old time
        pass


def _write_whole(path: Path, text: str) -> None:
    """`text` into `path`, whole or not at all, however many processes write it at once: each writes its own
    temporary file beside it and renames it into place (a fixed `digests.tmp` shared by 4 concurrent estimates
    was renamed away by one under another: FileNotFoundError). A write that fails leaves what was there."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o644)  # as a plain write leaves it (mkstemp's file is the owner's alone)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def cache_key(job: CountJob, device: str) -> str:
    req = job.request()
    digest = hashlib.sha256()
    for path in _files_of(Path(req["artifact"])):
        digest.update(path.name.encode())
        digest.update(_file_digest(path).encode())
    spec = {k: v for k, v in req.items() if k != "artifact"}
    spec["input_shape"] = _run_shape(req)
    digest.update(json.dumps(spec, sort_keys=True).encode())
    digest.update(device_spec(device).cpu.encode())
    digest.update(_runtime_versions().encode())
    digest.update(plugin_build.SOURCE.read_bytes())
    return digest.hexdigest()[:32]


def _run_shape(req: dict) -> list[int] | None:
    """The request's input shape as the counting runner (edgekit.emu.plugin.runner) runs it, so one run is one key
    however the shape was written: None where it runs what the file states (a .tflite of fixed input, which it does
    not resize; an ncnn shape equal to its model.io.json's); a .tflite with free dimensions at the shape it is
    resized to (NHWC, the given shape or its NCHW read as NHWC, as _resize_tflite picks). Other shapes as given."""
    given = req.get("input_shape")
    if not given:
        return None
    artifact = Path(req["artifact"])
    if req["runtime"] == "ncnn":
        try:
            stated = json.loads(artifact.with_suffix(".io.json").read_text()).get("input_shapes") or [None]
        except (OSError, ValueError, AttributeError):
            return list(given)
        return None if stated[0] == list(given) else list(given)
    if req["runtime"] not in ("ai_edge_litert", "tflite_runtime"):
        return list(given)
    from edgekit.errors import EdgekitError
    from edgekit.runtimes.tflite import load_tflite

    try:
        detail = load_tflite(artifact).get_input_details()[0]
    except (EdgekitError, ImportError, IndexError):  # the runner names what it cannot load
        return list(given)
    signature = [int(d) for d in detail.get("shape_signature", detail["shape"])]
    if all(d >= 0 for d in signature[1:]):
        return None
    nhwc = [given[0], *given[2:], given[1]] if len(given) == 4 else list(given)
    for shape in (list(given), nhwc):
        if len(shape) == len(signature) and all(
            d < 0 or n == d for n, d in zip(shape, signature, strict=True)
        ):
            return shape
    return list(given)


def _files_of(artifact: Path) -> list[Path]:
    files = [artifact]
    if artifact.suffix == ".param":
        files += [p for p in (artifact.with_suffix(".bin"), artifact.with_suffix(".io.json")) if p.exists()]
    return files


def _file_digest(path: Path) -> str:
    """sha256 of a file, remembered by (path, size, mtime): a 550 MB zero .bin is hashed once."""
    stat = path.stat()
    memo = cache_folder() / "digests.json"
    try:
        known = json.loads(memo.read_text())
    except (OSError, ValueError):
        known = {}
    tag = f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    if tag not in known:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 22), b""):
                digest.update(block)
        known[tag] = digest.hexdigest()
        try:  # concurrent runs each write the memo whole; one may drop another's new entry: it is hashed again
            _write_whole(memo, json.dumps(known))
        except OSError:
            pass  # only a memo: the digest stands without it
    return str(known[tag])


def _runtime_versions() -> str:
    """The dist-info names (name-version) of the emulated devices' runtime wheels."""
    root = layout.shared().root / "site"
    return ",".join(sorted(p.name for p in root.glob("*/*.dist-info"))) if root.exists() else ""
