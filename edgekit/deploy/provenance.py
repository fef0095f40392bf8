"""Where a DeployResult came from: the tool versions, the recipe's git revision, the time (UTC)."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

CORE = ("edgekit", "numpy")


def tool_dists() -> tuple[str, ...]:
    """The distributions whose versions a deploy records: edgekit and numpy, what writes the reference ONNX (a
    PyTorch or Keras source's exporter and the simplifiers), every converter's `dists` and every runtime's
    packages (the host runs them for fidelity and as a target). All come from the converters and the runtime
    registry, so a new runtime's tools are recorded without an edit here. One entry per distribution (MNN and
    mnn are one)."""
    from edgekit.convert.base import all_dists
    from edgekit.convert.keras import KERAS_EXPORT_DISTS
    from edgekit.convert.onnx_export import EXPORT_DISTS
    from edgekit.runtimes import all_specs

    runtimes = [d for spec in all_specs() for p in spec.packages for d in p.version_dists]
    names: dict[str, str] = {}
    for dist in (*CORE, *EXPORT_DISTS, *KERAS_EXPORT_DISTS, *all_dists(), *runtimes):
        names.setdefault(re.sub(r"[-_.]+", "-", dist).lower(), dist)
    return tuple(names.values())


def tool_versions() -> dict[str, str]:
    """python's version and that of every installed one of `tool_dists()`."""
    found = {"python": sys.version.split()[0]}
    for dist in tool_dists():
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return found


def git_revision(path: Path) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(Path(path).resolve().parent), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
