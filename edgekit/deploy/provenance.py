"""Where a DeployResult came from: the tool versions, the recipe's git revision, the time (UTC)."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

TOOLS = (
    "edgekit",
    "numpy",
    "onnx",
    "onnxruntime",
    "onnx2tf",
    "tensorflow",
    "ai-edge-litert",
    "ncnn",
    "pnnx",
    "torch",
)


def tool_versions() -> dict[str, str]:
    found = {"python": sys.version.split()[0]}
    for dist in TOOLS:
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
