"""What every route to the reference ONNX shares (a user's file, a PyTorch builder, a Keras model): the opset and
the export version that enter every cache key, file and folder digests, the tool versions, the simplifier, and how
an export is checked against the model it came from (a PyTorch module's, a Keras model's).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from edgekit.convert.base import dist_version

OPSET = 17
EXPORT_VERSION = 1  # bump when the export procedure changes, so old cached ONNX files are not reused


EXPORT_DISTS = ("torch", "onnx", "onnxsim", "onnxslim")  # what writes and simplifies the reference ONNX


def tool_versions() -> dict[str, str]:
    return {name: dist_version(name) for name in EXPORT_DISTS}


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def tree_sha256(path: Path) -> str:
    """sha256 of a file, or of a folder's files and their relative paths (a SavedModel). Symlinked folders are
    followed, as TensorFlow follows them: a SavedModel whose `variables/` is a link to other weights is other
    weights (Path.rglob did not enter it, and the weights were not in the key). A link back up the tree is
    entered once."""
    if path.is_file():
        return file_sha256(path)
    h = hashlib.sha256()
    files: list[Path] = []
    entered: set[str] = set()
    for folder, dirs, names in os.walk(path, followlinks=True):
        real = os.path.realpath(folder)
        if real in entered:  # a cycle of links: its files are hashed once
            dirs[:] = []
            continue
        entered.add(real)
        files += [Path(folder, n) for n in names if Path(folder, n).is_file()]
    for f in sorted(files):
        h.update(str(f.relative_to(path)).encode() + file_sha256(f).encode())
    return h.hexdigest()


def simplify(path: Path, input_shapes: dict[str, list[int]] | None = None) -> str | None:
    """onnxsim, then onnxslim as a fallback; the unsimplified model is kept if both fail."""
    import onnx

    model = onnx.load(str(path))
    try:
        import onnxsim

        simplified, ok = onnxsim.simplify(model, overwrite_input_shapes=input_shapes)
        if ok:
            onnx.save(simplified, str(path))
            return f"onnxsim {dist_version('onnxsim')}"
    except Exception:  # noqa: BLE001 - a failed simplification is not fatal
        pass
    try:
        import onnxslim

        shapes = [f"{n}:{','.join(map(str, v))}" for n, v in (input_shapes or {}).items()] or None
        onnx.save(onnxslim.slim(model, input_shapes=shapes), str(path))
        return f"onnxslim {dist_version('onnxslim')}"
    except Exception:  # noqa: BLE001
        return None


# An export (torch.onnx.export's, tf2onnx's) is checked against its model on EXPORT_CHECK_INPUTS inputs: outputs
# within EXPORT_CHECK_MAX_ABS of the model's, relative to their magnitude (max(1, max |output|)): float rounding
# is far below it, a branch traced the other way far above.
EXPORT_CHECK_INPUTS = 4
EXPORT_CHECK_MAX_ABS = 1e-3


def export_difference(want: Any, got: Any) -> float:
    """max |got - want| relative to max(1, max |want|), the figure checked against EXPORT_CHECK_MAX_ABS; inf when
    the shapes differ."""
    import numpy as np

    w, g = np.asarray(want, dtype=np.float64), np.asarray(got, dtype=np.float64)
    if w.shape != g.shape:
        return float("inf")
    return float(np.abs(g - w).max(initial=0.0)) / max(1.0, float(np.abs(w).max(initial=0.0)))
