"""Where target files are: the shipped targets/ and a user's own folder (EDGEKIT_TARGETS_DIR), the file a name or
a path stands for (or what is there instead: a folder, nothing, a misspelt name), and every target name, in order."""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Any

from edgekit.errors import TargetError
from edgekit.path_kind import PathKind, path_kind
from edgekit.paths import SHIPPED_TARGETS

TARGETS_DIR = SHIPPED_TARGETS  # package data: also there in a non-editable install


def target_path(name_or_path: str | Path) -> Path:
    text = str(name_or_path)
    if text.endswith((".yaml", ".yml")) or "/" in text:
        path = Path(text).expanduser()
        if path.is_dir():
            raise TargetError(
                "this is a folder, not a target file",
                where=str(path),
                hint="give one target's YAML file, or its name (`edgekit targets` lists them)",
            )
        if not path.is_file():
            raise TargetError(_not_a_file(path), where=str(path))
        return path
    for folder in target_dirs():
        candidate = folder / f"{text}.yaml"
        if candidate.is_file():
            return folder.resolve() / candidate.name  # messages name targets/, not the package's link to it
    if text == "host" and "local" in list_target_names():
        raise TargetError(
            "unknown target 'host': the host is measured by every deploy (its 'host' column; --no-host leaves it "
            "out); as a target of its own, this machine is 'local'",
            hint="deploy: no --target needed for the host; targets check, formats --target: use local",
        )
    threads = (  # `-t 4`: `-t` is --threads in `estimate`, --target in deploy, bench, profile and formats
        f"`-t {text}` names a target here; for {text} threads give --threads {text}; "
        if text.isdigit()
        else ""
    )
    close = difflib.get_close_matches(text, list_target_names(), n=1, cutoff=0.6)  # `pi4emu`: pi4-emu
    raise TargetError(
        f"unknown target {text!r}" + (f"; did you mean {close[0]}?" if close else ""),
        where=", ".join(str(d.resolve()) for d in target_dirs()),  # the repository's targets/, not the link
        hint=f"{threads}known targets: {', '.join(list_target_names()) or 'none'}; a new board: a {text}.yaml in "
        "one of these folders (EDGEKIT_TARGETS_DIR names a folder of your own), or a path to a target file",
    )


def _not_a_file(path: Path) -> str:
    """What a target path that is no regular file (nor a folder) is: missing, a symlink loop, or a device, pipe or
    socket (each was said "not found", though it is there)."""
    kind = path_kind(path)
    if kind is PathKind.MISSING:
        return "target file not found"
    return (
        f"{kind.value}, not a target file"
        if kind is PathKind.LOOP
        else f"{kind.value}: a target is a YAML file"
    )


def target_dirs() -> list[Path]:
    """The repo's targets/ plus EDGEKIT_TARGETS_DIR (a user's own folder of target files), if set."""
    extra = os.environ.get("EDGEKIT_TARGETS_DIR")
    if extra and not Path(extra).expanduser().is_dir():  # a typo searched nowhere, said nowhere
        raise TargetError(
            f"EDGEKIT_TARGETS_DIR={extra}: "
            + ("is a file, not a folder" if Path(extra).expanduser().exists() else "no such folder"),
            hint="point it at a folder of your own target files (NAME.yaml), or unset it",
        )
    return ([Path(extra).expanduser()] if extra else []) + [TARGETS_DIR]


def list_target_names() -> list[str]:
    """Every target name, once (a file in EDGEKIT_TARGETS_DIR shadows the shipped one of the same name: see
    target_path), in name order: a base before its variants (pi4, pi4-emu, pi5, pi5-emu), numbers by value
    (pi5 before pi10). Sorting file names put pi4-emu.yaml before pi4.yaml ('-' sorts before '.'), and the
    user's own folder's names all before the shipped ones."""
    names: set[str] = set()
    for folder in target_dirs():
        if folder.is_dir():
            names.update(f.stem for f in folder.glob("*.yaml"))
    return sorted(names, key=name_order)


def name_order(name: str) -> tuple[Any, ...]:
    """A sort key: `-`, `_` and `.` separate parts, compared part by part (so a name sorts before the names
    extending it), each part naturally (digit runs by value, letters without case); the name itself breaks
    ties."""
    parts = tuple(
        tuple(
            (0, int(run), "") if run.isdigit() else (1, 0, run.lower())
            for run in re.findall(r"\d+|\D+", part)
        )
        for part in re.split(r"[-_.]", name)
    )
    return (parts, name)
