"""Model files a command reads (`estimate`, `roofline`, `profile`, `bench` ARTIFACT): checked when the command line
is read. A path that is not a regular file (a folder, /dev/zero, a FIFO, a symlink to either) is a usage error
(exit 2): reading /dev/zero as an ncnn .param ran until killed, a FIFO blocked forever."""

from __future__ import annotations

from pathlib import Path

import typer


def check_model_file(value: Path) -> Path:
    """typer callback for an argument naming a model file to read."""
    if not value.exists():
        raise typer.BadParameter(f"{value}: no such file")
    if not value.is_file():
        kind = "a folder" if value.is_dir() else "not a regular file (a device, a pipe or a socket)"
        raise typer.BadParameter(f"{value} is {kind}; give the model file itself")
    return value
