"""Model sources -> one ONNX file, the common start of every converter and the fidelity reference.

- a user's ONNX file is copied as is (so a later edit of it cannot change cached artifacts silently) and kept as
  the fidelity reference (`OnnxModel.reference`); the file the converters get is that model with the recipe's
  input shape fixed (a dynamic batch becomes 1), simplified (onnxsim, onnxslim if onnxsim fails) and
  shape-inferred: runtime Shape/Gather arithmetic (torchvision's channel shuffle) folds into constants, which
  onnx2tf otherwise mistranslates;
- a PyTorch builder (+ weights) is built with torch seeded (random weights are reproducible), exported
  with the TorchScript exporter (`dynamo=False`, opset 17: faster than the dynamo exporter and it honours
  the opset) and simplified with onnxsim (onnxslim if onnxsim fails): edgekit.convert.torch_export, which
  also makes its cache key (imported only for a builder, so this module never imports torch);
- a Keras file (.keras, .h5) or SavedModel folder is exported by tf2onnx (pinned) with the recipe's input fixed,
  keeping the model's own (NHWC) input, and checked against the model's outputs (edgekit.convert.keras); the
  tf2onnx file is the fidelity reference.

Results live under cache_dir()/onnx/KEY/model.onnx. For a builder the key covers the builder name and args,
the builder's code, the weights' bytes, the input spec, the output names, the inputs it is traced and checked on
and the tool versions, so a second run neither imports torch nor exports anything.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from edgekit import paths
from edgekit.convert.housekeeping import claim, touch
from edgekit.convert.onnx_export import EXPORT_VERSION, file_sha256, simplify, tool_versions
from edgekit.convert.onnx_file import ORT_MAX_IR_VERSION, external_data_files, fit_ir_version, read_onnx
from edgekit.convert.onnx_io import check_graph, check_io
from edgekit.errors import RecipeError
from edgekit.recipe import KerasSource, OnnxSource, Recipe, TorchSource

log = logging.getLogger(__name__)
ORIGINAL = "original.onnx"  # a user's model as given, beside the prepared model.onnx: the fidelity reference
T = TypeVar("T")


@dataclass(frozen=True)
class OnnxModel:
    """The ONNX file every format is converted from, and how it was obtained."""

    path: Path
    sha256: str
    cached: bool
    seconds: float
    simplifier: str | None = None
    reference: Path | None = None  # the model as the user gave it, when `path` was rewritten (simplified)
    note: str | None = (
        None  # how a Keras or PyTorch source became this ONNX (exporter, check), for progress lines
    )
    reference_sha256: str | None = None  # the reference's files (checked by _intact), when it is not `path`

    @property
    def reference_path(self) -> Path:
        """The model the artifacts are judged against: the user's own file, or `path` for an exported one."""
        return self.reference or self.path


def prepare_onnx(recipe: Recipe) -> OnnxModel:
    """The recipe's model as ONNX in the cache (exported and simplified if needed), checked against input."""
    start = time.perf_counter()
    src = recipe.model
    reference = None
    note = None
    if isinstance(src, OnnxSource):
        where = f"{recipe.path}: field `model.path`"
        # a corrupt file never enters the cache; external weights are keyed and copied with the model
        given = read_onnx(src.path, where)
        data_files = external_data_files(given, src.path, where)
        check_graph(
            given.graph, recipe
        )  # the model as given: its static dims against input.shape (fixed below)
        spec = [
            file_sha256(src.path),
            list(recipe.input.shape),
            recipe.input.name,
            EXPORT_VERSION,
            tool_versions(),
            f"ir<={ORT_MAX_IR_VERSION}",  # entries made before the IR fit held an IR onnxruntime cannot read
        ] + ([[file_sha256(f) for f in data_files]] if data_files else [])
        key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()
        target = claim() / "onnx" / key / "model.onnx"
        reference = target.with_name(ORIGINAL)
        cached = _intact(target, ORIGINAL)
        if not cached:
            had = _make(
                target, lambda made: _user_onnx(src.path, bool(data_files), made, recipe, where), ORIGINAL
            )
            if had is not None:
                note = (
                    f"its IR version {had} written as {ORT_MAX_IR_VERSION}, the newest onnxruntime "
                    f"{_ort_version()} reads (the file format's version; the operators are unchanged)"
                )
        simplifier = _read_meta(target).get("simplifier")
        reference_sha = _reference_digest(_read_meta(target))
    elif isinstance(src, TorchSource):
        from edgekit.convert.torch_export import describe as describe_torch
        from edgekit.convert.torch_export import export_torch, torch_key

        target = claim() / "onnx" / torch_key(recipe, src) / "model.onnx"
        cached = _intact(target)
        if not cached:
            _make(target, lambda made: export_torch(recipe, src, made))
        simplifier = _read_meta(target).get("simplifier")
        note = describe_torch(_read_meta(target))  # how it matched the module, said on a cache hit too
    elif isinstance(src, KerasSource):
        from edgekit.convert.keras import describe, export_keras, keras_key

        target = claim() / "onnx" / keras_key(recipe, src) / "model.onnx"
        cached = _intact(target)
        if not cached:
            _make(target, lambda made: export_keras(recipe, src, made))
        simplifier = None

        note = describe(_read_meta(target), recipe.input.shape)
    else:  # pragma: no cover - the schema admits no other kind
        raise RecipeError(f"unknown model kind {src!r}", where=str(recipe.path))
    check_io(target, recipe)
    sha = file_sha256(target)
    return OnnxModel(
        target,
        sha,
        cached,
        time.perf_counter() - start,
        simplifier,
        reference,
        note,
        reference_sha if reference is not None else None,
    )


def _user_onnx(given: Path, external: bool, target: Path, recipe: Recipe, where: str) -> int | None:
    """A user's ONNX file into `target`'s folder: copied as ORIGINAL (the fidelity reference), checked to load,
    and prepared for the converters as `target`; returns the IR version fitted down (None: it was not)."""
    reference = target.with_name(ORIGINAL)
    _copy_with_weights(given, reference, external)
    had = fit_ir_version(reference)  # both copies: onnxruntime runs the reference and the onnx-* artifacts
    check_loads(reference, where, given)  # before any converter: every artifact is judged against it
    _prepare_user_onnx(reference, target, recipe)
    fit_ir_version(target)
    return had


def _make(target: Path, make: Callable[[Path], T], *needs: str) -> T:
    """make(model.onnx in a fresh work folder of this process); then meta.json there records the model's sha256
    and the folder is renamed into place as `target`'s. Two runs of one model (two terminals, a deploy beside a
    convert) each make their own and the first in place is kept: they shared `target`'s folder before, and one
    moved the other's half-written file away, or left a meta.json without the hash, which turned the integrity
    check off. A failure or a crash leaves no entry (a killed run's work folder is pruned after a day)."""
    work = paths.work_dir("onnx-prepare")
    work.mkdir(parents=True)
    try:
        made = make(work / target.name)
        meta = {**_read_meta(work / target.name), "sha256": file_sha256(work / target.name)}
        if needs:  # the reference and its weights file, hashed as the model is: _intact checks them too
            meta["files"] = {
                p.name: file_sha256(p)
                for p in sorted(work.iterdir())
                if p.is_file() and p.name.startswith(needs) and p.name != target.name
            }
        _write_meta(work / target.name, meta)
        _put_in_place(work, target, needs)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # gone when renamed into place; else what is left of it
    return made


def _put_in_place(work: Path, target: Path, needs: tuple[str, ...]) -> None:
    """Rename the folder `work` to `target`'s (atomic): where a concurrent run put a whole entry first, that one
    is kept (the same key: the same model); an entry that is not whole (an older edgekit's) is removed first."""
    final = target.parent
    final.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(5):
        try:
            work.rename(final)
            return
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
        if _intact(target, *needs):
            return
        _remove(final)
    raise OSError(errno.EEXIST, "another run keeps replacing the prepared ONNX", str(final))


def _write_meta(target: Path, meta: dict[str, Any]) -> None:
    """meta.json beside `target`, written whole or not at all (a temporary file renamed over it)."""
    tmp = target.with_name(f".meta-{uuid.uuid4().hex[:8]}.json")
    try:
        tmp.write_text(json.dumps(meta))
        tmp.replace(target.with_name("meta.json"))
    finally:
        tmp.unlink(missing_ok=True)


def check_loads(path: Path, where: str, shown: Path | None = None) -> None:
    """InputDataError naming the file and onnxruntime's reason when onnxruntime cannot load the model (an op of a
    custom domain, an opset newer than it knows): the fidelity reference itself could not run."""
    from edgekit.runtimes.host import onnx_session

    onnx_session(path, where=where, shown=shown)


def _intact(target: Path, *needs: str) -> bool:
    """Whether the cached ONNX is there and whole: the sha256 its meta.json records matches, and the files
    `needs` names are beside it (a user's model: ORIGINAL). An entry without a recorded hash (an older
    edgekit's, or a meta.json that cannot be read) cannot be checked: it is a miss, made again once. A damaged
    one is removed, said once, and made again: every artifact's key derives from its hash, so a truncated or
    rewritten file would otherwise send every conversion after it astray, and be every artifact's fidelity
    reference."""
    if not target.is_file():
        return False
    meta = _read_meta(target)
    recorded = meta.get("sha256")
    if not isinstance(recorded, str):
        log.info("cache: the prepared ONNX %s records no sha256: making it again", target)
        return False
    if file_sha256(target) != recorded:
        log.warning("cache: the prepared ONNX %s was damaged (its sha256 changed): making it again", target)
        _remove(target.parent)
        return False
    if not all(target.with_name(name).is_file() for name in needs):
        return False
    if needs:  # the user's own model beside it (ORIGINAL, its .data): every artifact's fidelity reference
        files = meta.get("files")
        if not isinstance(files, dict) or not files:
            log.info("cache: the prepared ONNX %s records no hash of its reference: making it again", target)
            return False
        for name, digest in files.items():
            path = target.with_name(str(name))
            if not path.is_file() or file_sha256(path) != digest:
                log.warning(
                    "cache: %s, the fidelity reference beside the prepared ONNX, was damaged (its sha256 "
                    "changed): making it again",
                    path,
                )
                _remove(target.parent)
                return False
    touch(target.parent / "meta.json")  # its last use, for `edgekit cache prune`
    return True


def _reference_digest(meta: dict[str, Any]) -> str | None:
    """One digest of the reference's files as meta.json records them (checked by _intact)."""
    files = meta.get("files")
    if not isinstance(files, dict) or not files:
        return None
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()


def _remove(folder: Path) -> None:
    """Remove a cache folder, first renamed into the work folder: a run looking it up meanwhile sees nothing,
    never half of it (and a concurrent run that removed it first is no error)."""
    aside = paths.work_dir("onnx-removed")
    aside.parent.mkdir(parents=True, exist_ok=True)
    try:
        folder.rename(aside)
    except FileNotFoundError:
        return
    shutil.rmtree(aside, ignore_errors=True)


def _prepare_user_onnx(original: Path, target: Path, recipe: Recipe) -> str | None:
    """original -> target: the recipe's input shape fixed, simplified, shapes inferred (module docstring)."""
    import onnx

    tmp = target.with_name("prepare.onnx")
    model = onnx.load(str(original))
    _fix_input_shape(model, recipe)
    onnx.save(model, str(tmp))
    simplifier = simplify(tmp, {recipe.input.name: list(recipe.input.shape)})
    model = onnx.load(str(tmp))
    try:
        model = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception:  # noqa: BLE001 - shape inference is a help for onnx2tf, not a requirement
        pass
    onnx.save(model, str(tmp))
    _write_meta(target, {"simplifier": simplifier, "source": original.name})
    tmp.replace(target)
    return simplifier


def _fix_input_shape(model: Any, recipe: Recipe) -> None:
    """The recipe's input shape written into the graph input (dynamic dims such as a batch "N" become fixed)."""
    for inp in model.graph.input:
        if inp.name == recipe.input.name:
            dims = inp.type.tensor_type.shape.dim
            if len(dims) == len(recipe.input.shape):
                for dim, value in zip(dims, recipe.input.shape):
                    dim.Clear()
                    dim.dim_value = value


def _copy_with_weights(src: Path, target: Path, external: bool) -> None:
    """The user's model into the cache, atomically; with external weights, they go into one file beside it
    (target.name + '.data'), so the cached model never reads the user's folder again."""
    if not external:
        _atomic_copy(src, target)
        return
    import onnx

    target.parent.mkdir(parents=True, exist_ok=True)
    model = onnx.load(str(src))  # with its external data (onnx checks each location too)
    tmp = target.with_suffix(".tmp")
    data = target.name + ".data"
    (target.parent / data).unlink(missing_ok=True)  # onnx appends to an existing data file
    onnx.save(model, str(tmp), save_as_external_data=True, all_tensors_to_one_file=True, location=data)
    tmp.replace(target)


# --- helpers ------------------------------------------------------------------------------------------------
def _atomic_copy(src: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    shutil.copyfile(src, tmp)
    tmp.replace(target)


def _read_meta(target: Path) -> dict[str, Any]:
    try:
        return json.loads((target.parent / "meta.json").read_text())
    except (OSError, ValueError):
        return {}


def _ort_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("onnxruntime")
    except PackageNotFoundError:
        return "(not installed)"
