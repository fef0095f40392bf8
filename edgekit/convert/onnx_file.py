"""Reading an ONNX file a user gives: a named error for a bad one, its external data only from its own folder, and
the IR version onnxruntime reads. Every reader of a user's ONNX file goes through here (convert, estimate, the
onnxruntime runner, bench's inputs), so a bad file gets the same error wherever it is read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgekit.errors import InputDataError

# The highest ONNX IR version the pinned onnxruntime (1.23, edgekit/runtimes/ort.py; the device's the same) reads.
# onnx 1.19 writes IR 12 (any model built with onnx.helper), which onnxruntime refuses to load whatever its ops: the
# fidelity reference itself could not run. The IR version is the file format's; the operators are the opset's.
ORT_MAX_IR_VERSION = 11


def fit_ir_version(path: Path) -> int | None:
    """Lower the model's IR version to ORT_MAX_IR_VERSION in place when it is higher (its external data files
    untouched); returns the version it had, or None when it already fitted."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    if model.ir_version <= ORT_MAX_IR_VERSION:
        return None
    had = int(model.ir_version)
    model.ir_version = ORT_MAX_IR_VERSION
    tmp = path.with_name(path.name + ".ir.tmp")
    onnx.save(model, str(tmp))
    tmp.replace(path)
    return had


def read_onnx(path: Path, where: str) -> Any:
    """The parsed ONNX model, or InputDataError for a truncated or non-ONNX file."""
    import onnx

    if Path(path).is_dir():  # a SavedModel or export folder given as `kind: onnx`
        raise InputDataError(
            f"{path} is a folder, not an .onnx file",
            where=where,
            hint="give the .onnx file inside it; a TensorFlow SavedModel folder is `kind: keras`",
        )
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - onnx raises many kinds for a bad file; the user gets a named error
        raise InputDataError(
            f"not a readable ONNX model: {path} ({type(exc).__name__}: {str(exc)[:200]})",
            where=where,
            hint="is the file complete? re-export it from the framework",
        ) from None
    if not model.graph.node:
        raise InputDataError(
            f"not a readable ONNX model: {path} (no graph nodes; truncated or another format?)",
            where=where,
            hint="is the file complete? re-export it from the framework",
        )
    return model


def external_data_files(model: Any, path: Path, where: str) -> list[Path]:
    """The files holding a model's external tensors (`save_as_external_data`), each a file inside the model's
    folder: InputDataError for a location outside it (a model file must not read the rest of the disk) or a
    missing file, and for weights over 2 GB (more than one ONNX file holds, and than edge boards run)."""
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    folder = path.parent.resolve()
    files: set[Path] = set()
    for tensor in _get_all_tensors(model):
        if not uses_external_data(tensor):
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        given = Path(location)
        try:
            data = (
                None
                if not location or given.is_absolute() or ".." in given.parts
                else (folder / location).resolve()
            )
        except (RuntimeError, OSError):  # ELOOP: Python 3.11 says RuntimeError('Symlink loop from ...')
            raise InputDataError(
                f"tensor {tensor.name!r} keeps its data in {location!r}: symlink loop at {folder / location}",
                where=where,
                hint="a symbolic link on this path leads back to itself (`ls -l` shows where each link points): "
                "copy the model's external data file(s) beside it",
            ) from None
        if data is None or not data.is_relative_to(folder):
            raise InputDataError(
                f"tensor {tensor.name!r} keeps its data at {location!r}, outside the model's folder {folder}; "
                "refused",
                where=where,
                hint="keep the external data file beside the model (onnx.save(..., save_as_external_data=True,"
                " location='model.onnx.data'))",
            )
        if not data.is_file():
            raise InputDataError(
                f"tensor {tensor.name!r} keeps its data in {data}, which "
                + (
                    "is missing"
                    if not data.exists()
                    else "is a folder, not a file"
                    if data.is_dir()
                    else "is not a regular file (a device, a pipe or a socket)"
                ),
                where=where,
                hint="copy the model's external data file(s) beside it",
            )
        files.add(data)
    if sum(f.stat().st_size for f in files) >= 2 << 30:
        raise InputDataError(
            f"{path}'s external weights are over 2 GB: more than edgekit converts for an edge board",
            where=where,
        )
    return sorted(files)
