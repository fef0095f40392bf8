"""Files a command writes (`--json`, `--html`, `--markdown`): checked when the command line is read, before any
work starts, so a typo (a directory, a path under a file, a folder it may not write) costs a usage error (exit 2)
instead of an internal error after minutes of conversion or measurement. Writers create missing parent
folders and write atomically (edgekit.paths.write_atomic)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import typer

from edgekit.errors import UsageError
from edgekit.path_kind import symlink_loop

EXAMPLE_NAMES = {"html": "report.html", "markdown": "summary.md"}  # anything else (--json): out.json
# an existing file is written over only when it is of the kind the option writes: a typo (--json recipe.yaml,
# --html pyproject.toml) must not destroy a recipe, a model or the results store
KINDS = {".json": (".json",), ".html": (".html", ".htm"), ".md": (".md", ".markdown")}


def check_output_file(param: typer.CallbackParam, value: Path | None) -> Path | None:
    """typer callback for an option naming a file to write."""
    if value is None:
        return None
    if str(value) == "-":  # not stdout: it made a file named '-' in the current folder
        raise typer.BadParameter(
            f"'-' is not standard output here: this option names a file to write, e.g. {_example(param)} "
            "(the terminal output goes to stdout as it is)"
        )
    if symlink_loop(value):  # Path.exists() said False: the writer failed with ELOOP after the work
        raise typer.BadParameter(
            f"symlink loop at {value}: a symbolic link on this path leads back to itself; give another file "
            f"name, e.g. {Path.cwd() / _example(param)}"
        )
    if value.is_dir():
        example = value / _example(param)
        raise typer.BadParameter(f"{value} is a folder; give a file name, e.g. {example}")
    suffix = Path(_example(param)).suffix
    if value.exists() and not value.is_file():  # a device, a FIFO, a socket: never replaced by a report
        raise typer.BadParameter(
            f"{value} exists and is not a regular file (a device, pipe or socket); give a file name, e.g. "
            f"{Path.cwd() / _example(param)}"
        )
    if value.is_file() and value.suffix.lower() not in KINDS[suffix]:
        raise typer.BadParameter(
            f"{value} is an existing file that is not {suffix}: edgekit writes over an earlier {suffix} output "
            f"only; give another name, e.g. {value.with_suffix(suffix)}"
        )
    ancestor = value.absolute().parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise typer.BadParameter(f"cannot create {value}: {ancestor} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK) or not _can_create_in(ancestor):
        raise typer.BadParameter(f"cannot write in {ancestor}")
    return value


def check_distinct(options: dict[str, Path | None]) -> None:
    """Output options naming one file (`--html out --markdown out`): the second write replaced the first, and
    both were said written. A UsageError (exit 2) naming both options, before any work starts."""
    seen: dict[Path, str] = {}
    for option, path in options.items():
        if path is None:
            continue
        try:
            key = path.expanduser().resolve()
        except (RuntimeError, OSError):  # ELOOP: Python 3.11 says RuntimeError('Symlink loop from ...')
            raise UsageError(
                f"{option}: symlink loop at {path}",
                hint="a symbolic link on this path leads back to itself: give another file name",
            ) from None
        if key in seen:
            raise UsageError(
                f"{seen[key]} and {option} name the same file ({path}): one would replace the other",
                hint=f"give each its own file, e.g. {seen[key]} report.html {option} summary.md",
            )
        seen[key] = option


def _can_create_in(folder: Path) -> bool:
    """A file made and removed there now (root passes os.access everywhere, and /proc or a read-only mount refuse
    writes only when tried: a nightly found out after the whole night)."""
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".edgekit-probe-"):
            return True
    except OSError:
        return False


def _example(param: typer.CallbackParam) -> str:
    return EXAMPLE_NAMES.get(param.name or "", "out.json")
