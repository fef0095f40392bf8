"""A PyTorch model saved as a file, a recipe's `model: {kind: torch, path: ...}`: which kind of file it is, read
from the archive's entries without importing torch (the recipe's check), and loading it (the conversion).

Two kinds are models: a TorchScript archive (torch.jit.save: the model's TorchScript code and constants) and an
ExportedProgram (torch.export.save, `.pt2`: an `archive_format` entry and the graph as JSON). Both are programs:
PyTorch's security policy asks that TorchScript be treated as code from its author, and torch.export.load
unpickles parts of a .pt2; a recipe naming one is code to read before running, as a builder is. A torch.save file
(a state dict, or a whole module pickled) is no model here: a state dict goes in `weights:` beside its builder,
and a pickled module is not read (unpickling it runs code no one named).
"""

from __future__ import annotations

import logging
import warnings
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from edgekit.errors import RecipeError

TorchFileKind = Literal["torchscript", "exported-program", "torch-save"]

SAVE_HINT = (
    "save the trained model as TorchScript, torch.jit.save(torch.jit.trace(model, example), 'model.pt'), or as an "
    "ExportedProgram, torch.export.save(torch.export.export(model, (example,)), 'model.pt2')"
)


def torch_file_kind(path: Path) -> TorchFileKind | None:
    """'torchscript', 'exported-program', 'torch-save' (a torch.save zip: data.pkl and tensors only) or None (not
    a zip archive PyTorch writes), from the archive's entry names alone."""
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except Exception:  # noqa: BLE001 - a damaged zip raises many kinds (BadZipFile, UnicodeDecodeError, ...)
        return None
    if any(n.rsplit("/", 1)[-1] == "archive_format" for n in names):
        return "exported-program"
    if any("/code/" in n for n in names) and any(n.endswith("constants.pkl") for n in names):
        return "torchscript"
    if any(n.endswith("data.pkl") for n in names):
        return "torch-save"
    return None


def check_torch_file(path: Path, where: str) -> TorchFileKind:
    """The recipe's check of `model.path` for a torch source: a TorchScript archive or an ExportedProgram, or a
    RecipeError saying what the file is instead (exit 2, before torch starts)."""
    kind = torch_file_kind(path)
    if kind == "torch-save":
        raise RecipeError(
            f"field `model.path`: {path.name} is a torch.save file (a state dict, or a whole module pickled), not "
            "a saved model: a state dict goes in `weights:` beside the `builder:` that builds its module, and "
            "edgekit does not unpickle a module (that runs code from the file)",
            where=where,
            hint=SAVE_HINT,
        )
    if kind is None:
        raise RecipeError(
            f"field `model.path`: {path.name} is not a PyTorch model archive (torch.jit.save and torch.export.save "
            "write zip archives; this is none, or a damaged one)",
            where=where,
            hint=f"{SAVE_HINT}; for an ONNX file use model: {{kind: onnx, path: ...}}",
        )
    return kind


@contextmanager
def _torch_export_log() -> Iterator[list[str]]:
    """torch.export's log records while loading, kept (each one's exception, or its message) instead of printed."""
    said: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            exc = record.exc_info[1] if record.exc_info else None
            said.append(f"{type(exc).__name__}: {exc}" if exc is not None else record.getMessage())

    logger = logging.getLogger("torch.export")  # torch's logging setup gives it a stderr handler of its own
    handlers, propagate = logger.handlers[:], logger.propagate
    logger.handlers, logger.propagate = [Keep()], False
    try:
        yield said
    finally:
        logger.handlers, logger.propagate = handlers, propagate


def load_torch_file(path: Path, where: str) -> tuple[Any, Any | None]:
    """(the module to call, the ExportedProgram or None for TorchScript), loaded on the CPU. A file this torch
    cannot load (a newer torch's, a damaged one) is a RecipeError naming torch's reason."""
    import torch

    kind = check_torch_file(path, where)
    loader = "torch.jit.load" if kind == "torchscript" else "torch.export.load"
    try:
        if kind == "torchscript":
            module = torch.jit.load(str(path), map_location="cpu")  # type: ignore[no-untyped-call]
            return module.eval(), None
        with warnings.catch_warnings(), _torch_export_log() as said:
            warnings.simplefilter(
                "ignore", FutureWarning
            )  # torch's own deprecations: not the user's to change
            program = torch.export.load(str(path))
        return program.module(), program
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds; the user needs its reason, named
        # torch.export.load logs the archive's own error and raises "check the warnings above": the logged one
        cause = said[-1] if kind == "exported-program" and said else str(exc)
        first = next((line for line in cause.splitlines() if line.strip()), type(exc).__name__)
        raise RecipeError(
            f"field `model.path`: {loader} could not read {path.name}: {first.strip()[:400]}",
            where=where,
            hint=f"save it again with this torch ({torch.__version__}); a file from another release or a partly "
            f"copied one reads like this; or {SAVE_HINT}",
        ) from None
