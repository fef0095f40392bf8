"""The error a convert run with failed artifacts ends in (convert.pipeline): one line per failed format (its message,
not its hint; a tool's log of several lines said once), each hint once, its type and exit code the failure's own
(a converter's error when one tool run failed, FidelityError when only gates were missed); and a failed
conversion's error as its artifact keeps it."""

from __future__ import annotations

import copy
from pathlib import Path

from edgekit import paths
from edgekit.convert.base import Artifact
from edgekit.errors import ConversionError, EdgekitError, FidelityError
from edgekit.formats import Format, Precision
from edgekit.gate_advice import gate_advice
from edgekit.recipe import Recipe
from edgekit.results import GATE_MISSED, VANISHED

CONVERSION_FAILED = "conversion failed: "  # how a failed conversion's artifact error begins
HINT = "\n  hint: "  # how an error's hint follows its message (EdgekitError.__str__)


def run_failure(failed: list[Artifact], errors: list[EdgekitError], recipe: Recipe) -> EdgekitError:
    """The error a run with failed artifacts ends in (see the module docstring): located at the recipe and the
    failed format(s), one line per failed format (its message, not its hint; a tool's log of several lines once, the
    next format with the same one says so), each hint once."""
    lines: list[str] = []
    first: dict[str, str] = {}  # a tool's log tail several formats share (pnnx for each ncnn-*): said once
    for a in failed:
        text = (a.error or "failed").split(HINT, 1)[0]
        if text in first:
            lines.append(f"{a.format.value}: the same failure as {first[text]}")
            continue
        if "\n" in text:
            first[text] = a.format.value
        lines.append(f"{a.format.value}: {text}")
    summary = lines[0] if len(lines) == 1 else f"{len(lines)} formats failed:\n  " + "\n  ".join(lines)
    missed = any((a.error or "").startswith(GATE_MISSED) for a in failed)
    # a float artifact that misses its gate is a conversion that differs from the model: no quantization to tune
    float_missed = [
        a.format
        for a in failed
        if (a.error or "").startswith(GATE_MISSED) and a.format.precision is Precision.FP32
    ]
    missed_fmts = [
        a.format for a in failed if (a.error or "").startswith(GATE_MISSED)
    ]  # not a failed conversion
    gate_hint = gate_advice(str(recipe.path), missed_fmts, float_missed)
    vanished = [a.format.value for a in failed if VANISHED in (a.error or "")]
    if vanished and len(vanished) == sum((a.error or "").startswith(GATE_MISSED) for a in failed):
        gate_hint = (
            f"{', '.join(vanished)}: the model's outputs are too small for the arithmetic (see above), so no layer "
            "choice or gate mends them: convert a trained model (its weights in the recipe's `weights:`, or your "
            "own trained file); to time an untrained one, --keep-going keeps the formats that passed"
        )
    if not errors:
        return FidelityError(summary, where=str(recipe.path), hint=gate_hint if missed else None)
    own = [e for e in errors if type(e) is not ConversionError]  # bad input (a RecipeError: exit 2) says so
    if own:
        return own[0]
    if len(errors) == 1 and all((a.error or "").startswith(CONVERSION_FAILED) for a in failed):
        return located(errors[0], recipe, [a.format for a in failed])  # one tool run: its message and hint
    hints = [*(e.hint for e in errors if e.hint), *([gate_hint] if missed else [])]
    return ConversionError(
        summary,
        where=str(recipe.path),
        hint="; ".join(dict.fromkeys(hints)) or "use --keep-going to keep the formats that converted",
    )


def located(err: EdgekitError, recipe: Recipe, fmts: list[Format]) -> EdgekitError:
    """ERR (its type and exit code kept) located at the recipe and the format(s) its tool run made; a place it
    named that is no scratch file goes into the message."""
    out = copy.copy(err)
    out.where = f"{recipe.path}: {', '.join(f.value for f in fmts)}"
    out.message = f"{err.where}: {err.message}" if err.where and not scratch(err.where) else err.message
    out.args = (str(out),)
    out.__cause__ = err
    return out


def scratch(where: str | None) -> bool:
    """Whether an error's place is a converter's scratch file (cache/work/...): no place the user looks."""
    return bool(where) and Path(str(where)).is_relative_to(paths.cache_dir() / "work")


def told(err: EdgekitError) -> str:
    """A failed conversion's error for its artifact: the message and hint, without a scratch file's place."""
    if not scratch(err.where):
        return str(err)
    return err.message + (f"{HINT}{err.hint}" if err.hint else "")
