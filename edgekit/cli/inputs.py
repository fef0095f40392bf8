"""Model files a command reads (`estimate`, `roofline`, `profile`, `bench` ARTIFACT): checked when the command line
is read. A path that exists but is not a regular file (a folder, /dev/zero, a FIFO, a symlink to either) is a
usage error (exit 2): reading /dev/zero as an ncnn .param ran until killed, a FIFO blocked forever. A missing
file is left to the command, which names it with what it expected."""

from __future__ import annotations

from pathlib import Path

from edgekit.errors import UsageError


def check_model_file(value: Path) -> Path:
    """typer callback for an argument naming a model file to read."""
    if value.exists() and not value.is_file():
        kind = "a folder" if value.is_dir() else "not a regular file (a device, a pipe or a socket)"
        raise UsageError(f"{value} is {kind}", where="ARTIFACT", hint="give the model file itself")
    return value
