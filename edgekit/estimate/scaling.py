"""How a model's time scales from one thread to N on a board: the ratio t(N) / t(1), from counts alone.

The busiest thread bounds the time (its share of the one-thread instructions, `busiest`, is 0.25 when four
threads split the work evenly), and memory does not scale with threads: a model that misses the caches more per
instruction gains less from more cores. A scaling form is a sum of positive rates times such terms, fitted by
least squares on the log of the published ratio t(N) / t(1) of the calibration models (forms.fit, the ratio in
place of milliseconds); which form is used is chosen by leave-one-model-out on the models at hand (scaling()),
so inside crossval.procedure_errors the choice is made without the held-out model too.

An N-thread estimate with these terms at hand is the geometric mean of two: the forms fitted directly on the
N-thread figures, and the one-thread estimate times this ratio (crossval.Blend). With the simulated cache misses
the second is the better of the two on both boards (bench/estimate_cv.py), without them its only term is the
busiest thread's share, which the direct forms already have, so it is used only where the misses were counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import numpy as np

from edgekit.estimate.forms import INS, L1, LLC, B, Candidate, Features, _share, calibration_data, fit


def _per_instruction(f: Features, misses: int) -> float:
    return misses / f.instructions


RATIO_FORMS: tuple[Candidate, ...] = (
    Candidate("share", (INS, B), lambda f, n: [_share(f, n)]),
    Candidate("share+fixed", (INS, B), lambda f, n: [_share(f, n), 1.0]),
    Candidate("share+llc", (INS, B, LLC), lambda f, n: [_share(f, n), _per_instruction(f, f.llc_misses)]),
    Candidate(
        "share+llc+fixed",
        (INS, B, LLC),
        lambda f, n: [_share(f, n), _per_instruction(f, f.llc_misses), 1.0],
    ),
    Candidate(
        "share+l1+llc",
        (INS, B, L1, LLC),
        lambda f, n: [_share(f, n), _per_instruction(f, f.l1_misses), _per_instruction(f, f.llc_misses)],
    ),
)
NEEDS = (B, L1, LLC)  # where the blend is used: the thread split and both simulated miss counts


def applies(threads: int, available: tuple[str, ...]) -> bool:
    return threads > 1 and set(NEEDS) <= set(available)


def scaling_data(board: str, threads: int, without: str | None = None) -> list[tuple[str, Features, float]]:
    """(model, features, published t(threads) / t(1)) of the calibration models with both figures, minus
    `without`."""
    one = {name: ms for name, _, ms in calibration_data(board, 1)}
    return [
        (name, f, ms / one[name])
        for name, f, ms in calibration_data(board, threads)
        if name != without and name in one and all(f.has(k, threads) for k in NEEDS)
    ]


@dataclass(frozen=True)
class Scaling:
    """A fitted scaling form: ratio(f) = t(threads) / t(1) for a model with features f."""

    form: Candidate
    threads: int
    rates: tuple[float, ...]

    def ratio(self, f: Features) -> float:
        return float(sum(r * t for r, t in zip(self.rates, self.form.terms(f, self.threads))))


def _fitted(form: Candidate, board: str, threads: int, data: list[tuple[Features, float]]) -> Scaling:
    return Scaling(form, threads, tuple(fit(form, board, threads, data).rates))


def _loo_mse(form: Candidate, board: str, threads: int, without: str | None) -> float:
    data = scaling_data(board, threads, without)
    errs = []
    for i, (_, f, ratio) in enumerate(data):
        rest = [(g, r) for j, (_, g, r) in enumerate(data) if j != i]
        errs.append(math.log(max(_fitted(form, board, threads, rest).ratio(f), 1e-30) / ratio))
    return float(np.mean(np.square(errs))) if errs else math.inf


@cache
def scaling(board: str, threads: int, available: tuple[str, ...], without: str | None = None) -> Scaling:
    """The scaling form with the lowest leave-one-out error on the calibration models (minus `without`) among
    those the features allow, fitted on them."""
    forms = [c for c in RATIO_FORMS if set(c.needs) <= set(available)]
    best = min(forms, key=lambda c: _loo_mse(c, board, threads, without))
    return _fitted(best, board, threads, [(f, r) for _, f, r in scaling_data(board, threads, without)])


def held_out_ratios(board: str, threads: int, available: tuple[str, ...]) -> dict[str, float]:
    """Each calibration model's t(threads)/t(1) by the scaling form chosen and fitted without it (its leave-one-out
    prediction; bench/estimate_cv.py sets it beside the published 1-thread time)."""
    return {
        name: scaling(board, threads, available, name).ratio(f) for name, f, _ in scaling_data(board, threads)
    }
