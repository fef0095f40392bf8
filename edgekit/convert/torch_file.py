"""Loading a PyTorch model saved as a file, a recipe's `model: {kind: torch, path: ...}` (what kind of file it is,
from its entries, is the recipe's check: edgekit.recipe.torch_files). Both kinds are programs: PyTorch's security
policy asks that TorchScript be treated as code from its author, and torch.export.load unpickles parts of a .pt2;
a recipe naming one is code to read before running, as a builder is."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from edgekit.errors import RecipeError
from edgekit.recipe.torch_files import SAVE_HINT, check_torch_file


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
