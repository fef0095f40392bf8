"""Is the path given as a recipe a recipe file: not a folder, a missing file (with the recipes beside it and the
likeliest one), a pipe or a device, or a model file (a likely first try with one's own model)? Each is a
RecipeError saying what to pass instead, before anything is read."""

from __future__ import annotations

import difflib
from pathlib import Path

from edgekit.errors import RecipeError
from edgekit.path_kind import symlink_loop


def check_recipe_file(path: Path) -> None:
    """Refuse a path that is no recipe file, saying what it is and what to pass."""
    if symlink_loop(path):  # exists() said False: it was "recipe file not found" though the link is there
        raise RecipeError(
            "a symlink loop (a symbolic link leading back to itself), not a recipe file",
            where=str(path),
            hint="`ls -l` shows where each link points: point it at the recipe, or pass the recipe's own path",
        )
    if path.is_dir():
        yamls = sorted(p.name for p in path.glob("*.y*ml"))[:3]
        raise RecipeError(
            "a folder, not a recipe file",
            where=str(path),
            hint="pass one recipe, e.g. "
            + (str(path / yamls[0]) if yamls else "recipes/tiny.yaml")
            + ("; `edgekit nightly --recipes FOLDER` takes a folder" if yamls else ""),
        )
    if not path.exists():
        raise RecipeError("recipe file not found", where=str(path), hint=_missing_hint(path))
    if not path.is_file():  # a FIFO, a device, a socket: reading it could block or never end
        raise RecipeError(
            "not a regular file (a pipe, a device or a socket): edgekit reads a recipe from a file",
            where=str(path),
            hint="write the recipe to a .yaml file and pass its path",
        )
    _refuse_model_file(path)


# a model where a recipe is expected (a likely first try with one's own model): its kind in a recipe, if it has one
_MODEL_FILES = {
    ".onnx": "onnx",
    ".pt": "torch",
    ".pth": "torch",
    ".pt2": "torch",
    ".keras": "keras",
    ".h5": "keras",
    ".tflite": None,
    ".param": None,
    ".bin": None,
    ".mnn": None,
    ".pte": None,
}


def _refuse_model_file(path: Path) -> None:
    """A model file given where a recipe goes read as 'not UTF-8 text ... save the file as UTF-8'. Say what it is,
    the recipe line that takes it, and `bench` for timing a converted file as it is."""
    suffix = path.suffix.lower()
    if suffix not in _MODEL_FILES:
        return
    kind = _MODEL_FILES[suffix]
    if kind:
        hint = (
            f"write a recipe whose model is `model: {{kind: {kind}, path: {path.name}}}` (recipes/tiny.yaml shows "
            "the rest: input, formats, calibration, evaluation) and pass that"
        )
    else:
        hint = (
            f"time a converted model as it is with `edgekit bench {path} --target NAME`; to convert, a recipe "
            "names the original model (ONNX, PyTorch or Keras)"
        )
    raise RecipeError(
        f"a model file ({suffix}), not a recipe: this command takes a recipe (YAML) naming the model",
        where=str(path),
        hint=hint,
    )


def _missing_hint(path: Path) -> str:
    """What to check for a recipe path that names no file: where a relative path is read from, and the recipes
    beside it (not the repository's recipes/ folder: a user's recipe lives in their own)."""
    folder = path.parent if path.parent != Path() else Path.cwd()
    read_from = (
        "" if path.is_absolute() else f" (a relative path is read from the current folder, {Path.cwd()})"
    )
    if not folder.is_dir():
        return f"check the path{read_from}: the folder {folder} does not exist"
    found = sorted(p.name for p in folder.glob("*.y*ml"))
    close = difflib.get_close_matches(path.name, found, n=1, cutoff=0.6)
    near = list(dict.fromkeys(close + found))[:8]  # the likeliest first, then the rest, with how many more
    more = f" and {len(found) - len(near)} more" if len(found) > len(near) else ""
    meant = f"; did you mean {folder / close[0]}?" if close else ""
    return f"check the path{read_from}{meant}" + (f"; {folder} holds {', '.join(near)}{more}" if near else "")
