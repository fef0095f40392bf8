"""Whose Python file is it: the standard library's or an installed package's, or someone's own code. The builder
guard (edgekit.recipe.builders) and the PyTorch export's code digest (edgekit.convert.code_digest) both ask."""

from __future__ import annotations

import functools
import os
import sysconfig
from pathlib import Path


@functools.cache
def _stdlib() -> tuple[Path, ...]:
    return tuple(
        Path(os.path.realpath(p)) for p in {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib")}
    )


def installed(path: Path) -> bool:
    """In the standard library or a site-packages / dist-packages folder (the link or its target)."""
    real = Path(os.path.realpath(path))
    if {"site-packages", "dist-packages"} & {*Path(path).parts, *real.parts}:
        return True
    return any(real.is_relative_to(p) for p in _stdlib())
