"""What a saved PyTorch file is, a recipe's `model: {kind: torch, path: ...}`, read from the archive's entry names
alone (no torch import: the recipe's check runs before any converter). Two kinds are models: a TorchScript archive
(torch.jit.save: its TorchScript code and constants) and an ExportedProgram (torch.export.save, `.pt2`: an
`archive_format` entry). A torch.save file (a state dict, or a module pickled whole) is no model here: a state dict
goes in `weights:` beside its builder, and a pickled module is not read (unpickling it runs code no one named).
Loading the file is the converter's (edgekit.convert.torch_file).
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Literal

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
