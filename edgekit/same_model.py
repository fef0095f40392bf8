"""Which artifacts of a deploy are the very same model (an ncnn-int8 whose speed plan kept no layer int8 is
ncnn-fp32's .param and .bin): decided by deploy while it has the files and stored with the artifacts, so that no
table, route or report ranks two timings of one model against each other.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

from edgekit.formats import Format
from edgekit.results import ArtifactInfo

IO_SUFFIX = ".io.json"  # an ncnn artifact's sidecar (edgekit.convert.ncnn.runtime.IO_SUFFIX; that loads ncnn)
KEPT_NO_INT8 = "the speed plan kept no layer int8"  # why an ncnn-int8 is the fp32 model (its sidecar's plan)


def same_models(artifacts: list[ArtifactInfo]) -> dict[str, tuple[str, str]]:
    """Artifact -> (the artifact it is the very same model as, why), as deploy recorded it (record_same_models):
    a stored run's files may be gone (a pruned cache, `runs import` elsewhere) or rewritten, and read now they
    made ncnn-int8 1.52x ncnn-fp32 again. Only a result with no record (stored before) is judged by its files,
    and then only while they are on disk (same_files)."""
    if any(a.same_model_checked for a in artifacts):
        return {a.id: (a.same_model_as, a.same_model_why) for a in artifacts if a.same_model_as is not None}
    return same_files(artifacts)


def record_same_models(artifacts: list[ArtifactInfo]) -> None:
    """Record on each artifact which other it is the very same model as (same_files), while deploy has the files."""
    twins = same_files(artifacts)
    for art in artifacts:
        art.same_model_as, art.same_model_why = twins.get(art.id, (None, ""))
        art.same_model_checked = True
        art.kept_fp32 = _kept_fp32(art) if art.files else None


def same_files(artifacts: list[ArtifactInfo]) -> dict[str, tuple[str, str]]:
    """same_models read from disk: artifacts of one runtime whose model files are byte-identical and whose
    runtime options agree (an ncnn sidecar's `options`; the rest of a sidecar is notes): an ncnn-int8 whose speed
    plan kept no layer int8 is ncnn-fp32's .param and .bin. The one kept is the fp32 one (else the first by
    name). Files no longer on disk claim nothing. Whatever an artifact's status: one that missed a gate (status
    `failed`) was still timed, and its byte-identical ncnn-int8 showed '1.08x' over it in the x fp32 column."""
    by_size: dict[tuple[str, ...], list[ArtifactInfo]] = {}  # files are read only where the sizes match
    for art in artifacts:
        sizes = _sizes(art) if art.files else None
        if sizes is not None:
            by_size.setdefault(sizes, []).append(art)
    keys: dict[tuple[str, ...], list[ArtifactInfo]] = {}
    for group in (g for g in by_size.values() if len(g) > 1):
        for art in group:
            key = _model_key(art)
            if key is not None:
                keys.setdefault(key, []).append(art)
    twins = {}
    for group in keys.values():
        if len(group) < 2:
            continue
        keep = min(group, key=lambda a: (not a.id.endswith("-fp32"), a.id))
        for art in group:
            if art is not keep:
                why = (
                    f"{KEPT_NO_INT8}: the same files and options"
                    if _kept_fp32(art)
                    else "byte-identical model files, the same options"
                )
                twins[art.id] = (keep.id, why)
    return twins


def _sizes(art: ArtifactInfo) -> tuple[str, ...] | None:
    """The runtime and the sizes of the model files (not a sidecar), None when a file is gone."""
    try:
        sizes = [str(Path(f).stat().st_size) for f in art.files if not f.endswith(IO_SUFFIX)]
    except OSError:
        return None
    return (art.format.split("-")[0], *sizes)


def _model_key(art: ArtifactInfo) -> tuple[str, ...] | None:
    """The runtime and each model file's digest (for a sidecar, its runtime options), None when unreadable."""
    parts = [art.format.split("-")[0]]
    for path in map(Path, art.files):
        try:
            if path.name.endswith(IO_SUFFIX):
                options = json.loads(path.read_text()).get("options")
                parts.append("options " + json.dumps(options, sort_keys=True))
            else:
                parts.append(_digest(path))
        except (OSError, ValueError, AttributeError):
            return None
    return tuple(parts)


@functools.lru_cache(maxsize=256)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _digest(path: Path) -> str:
    st = path.stat()
    return _file_digest(str(path), st.st_size, st.st_mtime_ns)


def holds_no_int8(artifacts: list[ArtifactInfo]) -> set[str]:
    """The artifacts whose sidecar records that the speed plan kept the fp32 model (int8.speed_plan.kept) and
    whose deploy has no fp32 of their runtime: an ncnn-int8 that holds no int8 layer with no ncnn-fp32 to be
    the same model as (same_models finds twins only among the deploy's artifacts, and where the fp32 is there its
    files decide). As deploy recorded it (record_same_models: `kept_fp32`, read while the files existed; a cached
    conversion prints no speed-plan finding); a result without the record is read from its files, and files no
    longer on disk claim nothing. An artifact that missed a gate (status `failed`, its files there) counts as one
    of the deploy's, as same_files compares it."""
    ids = {a.id for a in artifacts if a.status == "ok" or a.files}
    return {
        a.id
        for a in artifacts
        if a.id in ids
        and _fp32_of(a) not in ids
        and (a.kept_fp32 if a.kept_fp32 is not None else bool(a.files) and _kept_fp32(a))
    }


def no_int8_note(artifact: str) -> str:
    """What the deploy table and the route say of an artifact holds_no_int8 names."""
    return f"{artifact} holds no int8 layer: the fp32 model ({KEPT_NO_INT8})"


def _fp32_of(art: ArtifactInfo) -> str:
    try:
        return Format(art.format).fp32_reference.value
    except ValueError:  # a user's file named as it is
        return art.format.split("-")[0] + "-fp32"


def _kept_fp32(art: ArtifactInfo) -> bool:
    """An ncnn-int8 whose sidecar records that its speed plan kept the fp32 model (int8.speed_plan.kept)."""
    io = next((Path(f) for f in art.files if f.endswith(IO_SUFFIX)), None)
    try:
        plan = json.loads(io.read_text())["int8"]["speed_plan"] if io is not None else None
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return isinstance(plan, dict) and plan.get("kept") == "fp32"
