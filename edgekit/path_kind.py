"""What a path a user gave is, when edgekit expected a regular file: missing, a symlink loop, a folder, or a device,
pipe or socket. `Path.exists()` says False for a symbolic link leading back to itself, so a loop was said "not
found" though the link is there, and `Path.resolve()` raises RuntimeError on it; `is_file()` is False for a folder
and a FIFO alike. One stat, read here, so every caller (recipe, target file, --input, --json/--html, --store) says
the same thing in its own words."""

from __future__ import annotations

import errno
import stat
from enum import Enum
from pathlib import Path


class PathKind(Enum):
    FILE = "a regular file"
    MISSING = "missing"
    LOOP = "a symlink loop (a symbolic link leading back to itself)"
    FOLDER = "a folder"
    SPECIAL = "not a regular file (a device, a pipe or a socket)"


def path_kind(path: Path) -> PathKind:
    """What `path` is (following links)."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        return PathKind.LOOP if exc.errno == errno.ELOOP else PathKind.MISSING
    if stat.S_ISREG(mode):
        return PathKind.FILE
    return PathKind.FOLDER if stat.S_ISDIR(mode) else PathKind.SPECIAL


def symlink_loop(path: Path) -> bool:
    """The path, or a folder on the way to it, is a symbolic link leading back to itself (stat fails with ELOOP;
    Path.exists() says False, as for a missing file)."""
    return path_kind(path) is PathKind.LOOP


def not_a_file(path: Path, noun: str) -> str | None:
    """Why `path` is no `noun` edgekit can read ('no such model file', 'a folder, not a model file', 'a symlink
    loop (...), not a model file'), or None when it is a regular file."""
    kind = path_kind(path)
    if kind is PathKind.FILE:
        return None
    return f"no such {noun}" if kind is PathKind.MISSING else f"{kind.value}, not a {noun}"
