"""Reading a recipe file into a checked `Recipe`: the only place recipe YAML is read.

Paths in a recipe are relative to the recipe file; they are resolved, and the files they name (model, data,
labels, builders) checked, before anything runs. Every failure is a RecipeError (an unreadable .npy an
InputDataError) naming the file, the field's path and what was expected. The label checks are here too: the
data loaders apply them to labels that come from a builder.
"""

from __future__ import annotations

import re
import reprlib
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ValidationError

from edgekit.errors import InputDataError, RecipeError
from edgekit.formats import Format
from edgekit.path_kind import symlink_loop
from edgekit.recipe.builders import check_findable, check_importable
from edgekit.recipe.recipe_file import check_recipe_file
from edgekit.recipe.schema import Recipe, Task
from edgekit.recipe.sources import BuilderData, ImagesData, KerasSource, NpyData, OnnxSource, TorchSource
from edgekit.schema_paths import locate, tagged
from edgekit.yamlfile import read_yaml


def load_recipe(path: str | Path, *, check_files: bool = True) -> Recipe:
    """Read and validate a recipe; relative paths in it are resolved against the recipe's folder."""
    path = Path(path)
    check_recipe_file(path)
    raw = read_yaml(path, RecipeError)  # size, encoding, nesting and alias expansion bounded
    if not isinstance(raw, dict):
        raise RecipeError("a recipe must be a YAML mapping (key: value)", where=str(path))
    _refuse_urls(raw, "", str(path))
    # `path` is the recipe file, set here: a `path:` written at the top of a recipe is an unknown key, refused
    lines = [_unknown_key(("path",), Recipe)] if "path" in raw else []
    try:
        recipe = Recipe.model_validate({k: v for k, v in raw.items() if k != "path"})
    except ValidationError as exc:
        lines += _describe(exc)
    if lines:
        raise RecipeError("invalid recipe:\n  " + "\n  ".join(lines), where=str(path))
    recipe = _resolve_paths(recipe.model_copy(update={"path": path}), path.parent)
    if check_files:
        _check_files(recipe)
    return recipe


_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def _refuse_urls(node: Any, field: str, where: str) -> None:
    """A file field (`path`, `weights`) given as a URL: said as such (it read as a missing local file named
    'https:/...'); edgekit downloads nothing when it runs."""
    if isinstance(node, dict):
        for key, value in node.items():
            here = f"{field}.{key}" if field else str(key)
            if key in ("path", "weights") and isinstance(value, str) and _URL.match(value):
                raise RecipeError(
                    f"field `{here}`: {value!r} is a URL; edgekit downloads nothing when it converts or runs",
                    where=where,
                    hint="download the file once, keep it beside the recipe, and give its path",
                )
            _refuse_urls(value, here, where)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            _refuse_urls(value, f"{field}.{i}", where)


def _kinds(loc: tuple[Any, ...]) -> str:
    """The `kind:` values the model or data section at `loc` takes, from the schema."""
    parts, holder = locate(Recipe, loc)
    field = holder.model_fields.get(parts[-1]) if holder is not None and parts else None
    return ", ".join(tagged(field.annotation)) if field is not None else "see README 'Recipes'"


def _unknown_key(parts: tuple[str, ...], section: type[BaseModel] | None) -> str:
    """An unknown key, and the keys its section takes (not the ones edgekit sets itself, such as the recipe's
    `path`)."""
    loc = ".".join(parts)
    if section is None:
        return f"field `{loc}`: unknown key (check its spelling; see README 'Recipes')"
    keys = ", ".join(name for name, field in section.model_fields.items() if not field.exclude)
    holder = f"`{'.'.join(parts[:-1])}`" if len(parts) > 1 else "a recipe"
    return f"field `{loc}`: unknown key (check its spelling); {holder} takes {keys}"


def _describe(exc: ValidationError) -> list[str]:
    lines = []
    for err in exc.errors():
        parts, section = locate(Recipe, tuple(err["loc"]))
        loc = ".".join(parts)
        if err["type"] == "extra_forbidden":
            lines.append(_unknown_key(tuple(parts), section))
        elif err["type"] == "enum" and "formats" in loc:
            allowed = ", ".join(f.value for f in Format)
            lines.append(
                f"field `{loc}`: unknown format {_brief(err.get('input'))}; expected one of {allowed}"
            )
        elif err["type"] in (
            "union_tag_not_found",
            "union_tag_invalid",
        ):  # `kind:` picks a model or data source
            kinds = _kinds(tuple(err["loc"]))
            got = (err.get("ctx") or {}).get("tag")
            said = f"unknown kind {got!r}" if got is not None else "no `kind:`"
            lines.append(f"field `{loc}`: {said}; say which with `kind:` ({kinds}; see README 'Recipes')")
        elif not loc:  # a check across fields: its message names them, and the input is the whole recipe
            lines.append(f"recipe: {err['msg'].removeprefix('Value error, ')}")
        elif err["type"] == "missing":  # its input is the enclosing section, not a value the user wrote here
            lines.append(f"field `{loc}`: required, and missing (see README 'Recipes')")
        elif err["type"] == "value_error" and isinstance(
            err.get("input"), dict
        ):  # a check across a section's
            lines.append(f"field `{loc}`: {err['msg'].removeprefix('Value error, ')}")  # fields: no dict dump
        else:
            lines.append(f"field `{loc}`: {err['msg']} (got {_brief(err.get('input'))})")
    return lines


def _brief(value: Any, limit: int = 120) -> str:
    """A value as the user wrote it, cut short: an error message never prints a whole (hostile) document."""
    text = reprlib.repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _resolve_paths(recipe: Recipe, base: Path) -> Recipe:
    """Relative paths read from BASE (the recipe's folder); a path holding a NUL byte (which no file system
    allows, and the OS calls refuse) is a RecipeError naming its field."""

    def fix(obj: BaseModel, at: str) -> BaseModel:
        updates: dict[str, Any] = {}
        for name in type(obj).model_fields:
            value = getattr(obj, name)
            if name == "path" and isinstance(obj, Recipe):
                continue
            if isinstance(value, Path) and "\0" in str(value):
                raise RecipeError(
                    f"field `{at}{name}`: the path holds a NUL byte (\\0): {_brief(str(value))}",
                    where=str(recipe.path),
                    hint="no file name can hold one: write the path without it",
                )
            if isinstance(value, Path) and str(value).startswith("~"):  # as a target file's `key: ~/...` is
                value = updates[name] = _expand_home(value, f"{at}{name}", str(recipe.path))
            if isinstance(value, Path) and not value.is_absolute():
                try:
                    updates[name] = (base / value).resolve()
                except (
                    RuntimeError,
                    OSError,
                ):  # ELOOP: Python 3.11 says RuntimeError('Symlink loop from ...')
                    raise _loop_error(f"{at}{name}", base / value, str(recipe.path)) from None
            elif isinstance(value, BaseModel):
                updates[name] = fix(value, f"{at}{name}.")
        return obj.model_copy(update=updates) if updates else obj

    return fix(recipe, "")  # type: ignore[return-value]


def _loop_error(field: str, path: Path, where: str) -> RecipeError:
    return RecipeError(
        f"field `{field}`: symlink loop at {path}",
        where=where,
        hint="a symbolic link on this path leads back to itself (`ls -l` shows where each link points): point it "
        "at the file",
    )


def _expand_home(value: Path, field: str, where: str) -> Path:
    """`~/data/calib` or `~user/...` in a recipe path: the home folder, as a shell and a target file read it (it
    was taken as a folder named '~' beside the recipe)."""
    try:
        return value.expanduser()
    except RuntimeError as exc:  # no such user, or no home folder to read `~` from
        raise RecipeError(
            f"field `{field}`: cannot expand {str(value)!r}: {exc}",
            where=where,
            hint="give the path without `~` (absolute, or relative to the recipe's folder)",
        ) from None


def _check_files(recipe: Recipe) -> None:
    where = str(recipe.path)
    checks: list[tuple[str, Path | None]] = []
    model = recipe.model
    if isinstance(model, (OnnxSource, KerasSource)):
        checks.append(("model.path", model.path))
    if isinstance(model, KerasSource):
        for (
            dotted
        ) in model.custom_objects:  # found, not imported: the module imports Keras, TensorFlow with it,
            check_findable(
                dotted, "model.custom_objects", where
            )  # which stays in the converter's child process
    elif isinstance(model, TorchSource):
        checks.append(("model.weights", model.weights))
        checks.append(("model.path", model.path))
        if model.builder is not None:
            check_importable(model.builder, "model.builder", where)
    for section, data in (
        ("calibration.data", recipe.calibration and recipe.calibration.data),
        ("evaluation.data", recipe.evaluation.data),
    ):
        if isinstance(data, (ImagesData, NpyData)):
            checks.append((f"{section}.path", data.path))
        if isinstance(data, NpyData):
            checks.append((f"{section}.labels", data.labels))
        if isinstance(data, BuilderData):
            check_importable(data.builder, f"{section}.builder", where)
    for field, p in checks:
        if p is not None and symlink_loop(p):  # an absolute path (a relative one was resolved above)
            raise _loop_error(field, p, where)
        if p is not None and not p.exists():
            raise RecipeError(
                f"field `{field}`: file not found: {p}",
                where=where,
                hint=f"a relative path is read from the recipe's own folder ({recipe.path.parent.resolve()}): a recipe copied "
                "elsewhere needs its paths changed, or absolute ones",
            )
        if p is not None and not (p.is_file() or p.is_dir()):  # /dev/zero, a FIFO: read forever or block
            raise RecipeError(
                f"field `{field}`: {p} is not a regular file or folder (a device, a pipe or a socket)",
                where=where,
                hint="name the model or data file itself",
            )
    if isinstance(model, KerasSource):
        _check_keras_path(model.path, where)
    if isinstance(model, TorchSource) and model.weights is not None and model.weights.is_dir():
        _refuse_weights_folder(model.weights, where)
    if isinstance(model, TorchSource) and model.path is not None:
        from edgekit.recipe.torch_files import check_torch_file

        check_torch_file(model.path, where)  # what the file is, from its entries: torch is not imported here
    for section, data in (
        ("calibration.data", recipe.calibration and recipe.calibration.data),
        ("evaluation.data", recipe.evaluation.data),
    ):
        if isinstance(data, NpyData):
            _check_npy_data(data, recipe, section)


def _refuse_weights_folder(folder: Path, where: str) -> None:
    """`weights:` naming a checkpoint folder: the state dict is one file in it (reading the folder was an internal
    IsADirectoryError)."""
    try:
        found = sorted(
            p.name for p in folder.iterdir() if p.suffix.lower() in (".pt", ".pth", ".bin", ".ckpt")
        )
    except OSError:  # an unreadable folder: the message stands without the list
        found = []
    raise RecipeError(
        f"field `model.weights`: {folder} is a folder, not a state dict file",
        where=where,
        hint="give the file saved with torch.save(model.state_dict(), path)"
        + (f"; {folder.name} holds {', '.join(found[:5])}" if found else ""),
    )


def _check_keras_path(path: Path, where: str) -> None:
    """A Keras model is a .keras/.h5 file or a SavedModel folder: anything else is named here, before TensorFlow
    starts (it took 12 s and ended in tf2onnx's OSError)."""
    if path.is_dir():
        if not any((path / name).is_file() for name in ("saved_model.pb", "saved_model.pbtxt")):
            raise RecipeError(
                f"field `model.path`: {path} is a folder without saved_model.pb: not a SavedModel",
                where=where,
                hint="give a SavedModel folder (tf.saved_model.save / model.export) or a .keras / .h5 file",
            )
    elif path.suffix.lower() not in (".keras", ".h5", ".hdf5"):
        raise RecipeError(
            f"field `model.path`: {path.name} is neither a .keras / .h5 file nor a SavedModel folder",
            where=where,
            hint="for an ONNX file use model: {kind: onnx, path: ...}",
        )
    else:  # a damaged or mislabelled file: Keras said "File not found" for it, after TensorFlow started
        with open(path, "rb") as handle:
            head = handle.read(8)
        keras_zip = path.suffix.lower() == ".keras"
        if (keras_zip and not zipfile.is_zipfile(path)) or (not keras_zip and head != b"\x89HDF\r\n\x1a\n"):
            raise RecipeError(
                f"field `model.path`: {path.name} is not a readable "
                + ("Keras v3 archive (.keras files are zip archives)" if keras_zip else "HDF5 file (.h5)"),
                where=where,
                hint="save the model again (model.save('m.keras')); a damaged or partly copied file reads like this",
            )


def _check_npy_data(data: NpyData, recipe: Recipe, section: str) -> None:
    """`samples` within the file, and labels that are class ids, one per input (read memory-mapped)."""
    where = str(recipe.path)
    count = len(_npy_header(data.path, f"{section}.path", where))
    if data.samples is not None and data.samples > count:
        raise RecipeError(
            f"field `{section}.samples`: {data.samples} asked for, {data.path.name} holds {count}",
            where=where,
            hint="lower samples, or leave it out to use every input in the file",
        )
    if data.labels is None:
        return
    if recipe.task is not Task.CLASSIFY:
        raise RecipeError(
            f"field `{section}.labels`: a labels .npy holds class ids, which only `task: classify` "
            f"uses (this recipe's task is {recipe.task.value})",
            where=where,
            hint="detector labels come from a builder (see README 'Data')",
        )
    class_labels(_npy_header(data.labels, f"{section}.labels", where), count, f"{section}.labels", where)


def _npy_header(path: Path, field: str, where: str) -> np.ndarray:
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise InputDataError(
            f"field `{field}`: cannot read {path} as a .npy array: {exc}",
            where=where,
            hint="save it with numpy.save (no pickled objects)",
        ) from None
    if arr.ndim == 0:
        raise RecipeError(
            f"field `{field}`: {path.name} holds a single value, not one row per sample", where=where
        )
    return arr


def class_labels(labels: Any, count: int | None, field: str, where: str) -> np.ndarray:
    """Class ids (N,) int64 from what a user gives: integer ids, floats holding whole numbers, or one-hot rows
    (converted to ids). Soft or multi-hot rows, fractions, negative ids, other dtypes and a length other than the
    inputs' are a RecipeError naming the field: a wrong label array must never turn into a plausible accuracy."""
    arr = np.asarray(labels)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim == 2:
        if not (np.isin(arr, (0, 1)).all() and (arr.sum(axis=1) == 1).all()):
            raise RecipeError(
                f"field `{field}`: labels of shape {arr.shape} are not one-hot rows (one 1 per row)",
                where=where,
                hint="give class ids, shape (N,), e.g. y.argmax(1) of one-hot rows",
            )
        arr = arr.argmax(axis=1)
    if arr.ndim != 1:
        raise RecipeError(
            f"field `{field}`: labels must be class ids of shape (N,) or one-hot (N, classes); got "
            f"shape {arr.shape}",
            where=where,
        )
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all() or (arr != np.round(arr)).any():
            raise RecipeError(
                f"field `{field}`: float labels that are not whole numbers (class ids are integers)",
                where=where,
                hint="save class ids as integers: np.save(path, y.astype('int64'))",
            )
    elif arr.dtype.kind not in "iu":
        raise RecipeError(
            f"field `{field}`: labels of dtype {arr.dtype} (class ids are integers)", where=where
        )
    ids = arr.astype(np.int64)
    if count is not None and len(ids) != count:
        raise RecipeError(
            f"field `{field}`: {len(ids)} labels for {count} inputs (one label per input)", where=where
        )
    if len(ids) and ids.min() < 0:
        raise RecipeError(f"field `{field}`: negative class id {int(ids.min())}", where=where)
    return ids


def check_class_range(labels: np.ndarray, classes: int, field: str, where: str) -> None:
    """Every class id names one of the model's `classes` outputs."""
    if len(labels) and int(labels.max()) >= classes:
        raise RecipeError(
            f"field `{field}`: class id {int(labels.max())}, but the model has {classes} classes "
            f"(ids 0..{classes - 1})",
            where=where,
            hint="are the labels for this model?",
        )
