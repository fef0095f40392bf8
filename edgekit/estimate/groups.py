"""The procedure's held-out errors split by kind of model: those with a layer type no other calibration model has,
and the int8 ones. Both kinds are held less often by the ordinary interval, so their estimates state the wide one
(crossval.WIDE_RANK_LEVEL); these summaries are the figures behind that choice (bench/estimate_cv.py, README)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

from edgekit.estimate import calibration
from edgekit.estimate.crossval import WIDE_RANK_LEVEL, held_each


def novel_layer_models() -> list[str]:
    """Calibration models with a layer type none of the other 16 has: in leave-one-out, each stands for a user's
    model with a kernel the calibration never ran (the estimate's "layer types no calibration model has")."""
    types = {name: set(calibration.model_layer_types(name)) for name in calibration.models()}
    return sorted(
        name for name, own in types.items() if own - set().union(*(t for n, t in types.items() if n != name))
    )


def novel_layer_summary(errors: Sequence[tuple[str, str, float]]) -> dict[str, dict[str, Any]]:
    """The procedure's held-out errors of the models with a novel layer type ("novel") and of the rest."""
    return _split(errors, set(novel_layer_models()), ("novel", "rest"))


def kernel_class_summary(errors: Sequence[tuple[str, str, float]]) -> dict[str, dict[str, Any]]:
    """The procedure's held-out errors of the int8 calibration models ("int8") and of the float ones."""
    return _split(errors, {n for n, m in calibration.models().items() if m.int8}, ("int8", "float"))


def _split(
    errors: Sequence[tuple[str, str, float]], members: set[str], names: tuple[str, str]
) -> dict[str, dict[str, Any]]:
    """Median |error| of the members and of the rest, and how many the interval held (each interval built from
    the other models' errors, as procedure_summary): the members by the interval they are given
    (WIDE_RANK_LEVEL) and, in `held_plain`, by the ordinary one."""
    logs = [abs(e) for _, _, e in errors]
    plain, wide = held_each(logs), held_each(logs, WIDE_RANK_LEVEL)
    out = {}
    for group, keep in zip(names, (True, False)):
        at = [i for i, (m, _, _) in enumerate(errors) if (m in members) is keep]
        out[group] = {
            "n": len(at),
            "median": statistics.median(abs(math.exp(errors[i][2]) - 1) for i in at) if at else math.nan,
            "held": sum((wide if keep else plain)[i] for i in at),
            "held_plain": sum(plain[i] for i in at),
        }
    return out


def extreme_models(board: str) -> list[str]:
    """The calibration models with the least and the most work on this board's core (instructions at one
    thread): held out, leave-one-out predicts them beyond the other models' range, as an estimate of a model
    outside the calibration range is (reach.validated_range)."""
    from edgekit.estimate.forms import calibration_data

    work = sorted((f.instructions, name) for name, f, _ in calibration_data(board, 1))
    return [work[0][1], work[-1][1]]


def extreme_summary(errors: Sequence[tuple[str, str, float]], board: str) -> dict[str, dict[str, Any]]:
    """The procedure's held-out errors of the smallest and largest calibration models ("extreme") and the rest."""
    return _split(errors, set(extreme_models(board)), ("extreme", "rest"))
