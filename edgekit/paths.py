"""Where edgekit keeps its per-user state: the artifact cache, emulated devices, the results store.

`EDGEKIT_HOME` overrides the default per-user data directory (tests point it at a temporary folder).
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

REPO_ROOT = Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    root = os.environ.get("EDGEKIT_HOME")
    path = Path(root) if root else Path(platformdirs.user_data_dir("edgekit"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_dir() -> Path:
    """Content-addressed conversion artifacts."""
    return _sub("cache")


def emu_dir() -> Path:
    """Emulated device assets (sysroot, wheels) and running device state."""
    root = os.environ.get("EDGEKIT_EMU_HOME")
    path = Path(root) if root else data_dir() / "emu"
    path.mkdir(parents=True, exist_ok=True)
    return path


def models_dir() -> Path:
    """Models built or trained here (zoo), cached by builder and seed."""
    return _sub("models")


def runs_dir() -> Path:
    """Deploy working folders and pulled-back outputs."""
    return _sub("runs")


def _sub(name: str) -> Path:
    path = data_dir() / name
    path.mkdir(parents=True, exist_ok=True)
    return path
