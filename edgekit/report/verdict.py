"""The verdict of one run of a key against the baseline its walk kept (baseline.py): a Verdict (a latency or
instruction-count regression, with what set its threshold), TooFewRuns (not judged: too little history), or None
(within the noise). A count is judged on `instruction_change`, the runtime's floor (count_floor) and, from
`min_runs` earlier counts, their drift bound; a latency on `min_change`, the night-to-night prediction bound
(pooled_bound) and the one-sided Mann-Whitney test of its samples (regression.py's docstring says why both).

A creep moves each night by less than the bound and widens the bound as it goes, so the newest run is also
compared, with the same two tests, with the older half of its baseline alone (at least `min_runs` runs):
the bound of that half was computed from nights before the creep. Under no change both comparisons are
predictions of one more night from independent earlier nights, each at `night_alpha`, so on flat noise the
false-alarm rate stays at most twice the single test's; the older half must hold `creep_runs` (7) runs, as
three close nights made a bound narrow enough for noise to cross. bench/regression_noise.py, 5 seeds x 30
nights: 0 false alarms in 7560 checks (135 judged nights) at each drift of 1, 2, 3 %, before the walk and
after; 2 seeds x 60 nights: 0, 1, 1 in 6384 checks (one night of 114: seed 1's night 42, +7.0 % against a
6.5 % bound at 2 % drift, the same draw +10.0 % against 9.7 % at 3 %; its baseline was the 21 nights before,
none left out). That is the design rate, not a fault: the synthetic drift is one factor shared by every key
of a night, so the nights are the independent trials, and each is two 0.1 % predictions. A one-night 10 %
slowdown caught 100/59/1 % before, 100/60/14 % after; of a held 10 % slowdown's keys flagged on its first
night, 100/100/57 % still flagged on each later night.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from edgekit.report.flags import FlagKind, Settings
from edgekit.report.levels import _counts, _nights, _timed, count_change, count_floor, med, pooled_bound
from edgekit.results import Measurement
from edgekit.samples import slower_p_value

if TYPE_CHECKING:
    from edgekit.report.baseline import Entry, Walk


@dataclass(frozen=True)
class Verdict:
    kind: FlagKind
    old: float
    new: float
    change: float
    p_value: float | None
    threshold: float
    against: list[Entry]
    creep: bool = False
    basis: str = ""  # a count's: what set `threshold`, in the words of its flag


@dataclass(frozen=True)
class TooFewRuns:
    """Not judged: only `earlier` baseline runs (fewer than Settings.min_runs) of its latency, or of its
    instruction count at several threads (`what`)."""

    earlier: int
    what: str = "latency"  # "instructions" (a count at several threads), "count" (no earlier run counted)
    needed: int | None = None  # None: Settings.min_runs


def judge_key(entry: Entry, walk: Walk, emulated: bool, settings: Settings) -> Verdict | TooFewRuns | None:
    """A regression verdict for `entry` against the walk's baseline, TooFewRuns with too little history, or None."""
    past = walk.baseline(settings)
    m = entry.m
    counted = [e for e in past if e.m.instructions_per_invoke]
    # a regression going on has returned once below the drift bound at held_alpha, not night_alpha: a step near
    # the bound was otherwise flagged on some of its nights only, and each night it passed joined the baseline
    alpha = settings.held_alpha if walk.streak is not None else settings.night_alpha
    if emulated and m.instructions_per_invoke and not counted:
        # the first counted run: no count to compare with, and its wall time is not comparable either (counting
        # makes qemu slower; emulated wall time is not judged where counts are): counting on is a new series
        return TooFewRuns(0, "count", needed=1)
    if emulated and m.instructions_per_invoke:
        counts = [float(e.m.instructions_per_invoke or 0) for e in counted]
        old = float(statistics.median(counts))
        change = m.instructions_per_invoke / old - 1.0
        threshold, basis = settings.instruction_change, "the least rise a count is judged on"
        if (
            count_change(m, old, settings) > threshold
        ):  # the runtime's floor: its count moves with the process
            floor, why = count_floor(m)
            threshold, basis = floor / old, f"at least {floor:,} instructions ({why})"
        # several threads' count holds their waiting, which varies run to run (README): not judged before
        # `min_runs` earlier counts. At any thread count a count is judged like a night's median against the
        # drift bound of the earlier counts once there are that many
        if m.threads > 1 and len(counted) < settings.min_runs:
            return TooFewRuns(len(counted), "instructions")
        if len(counted) >= settings.min_runs:
            earlier = [_counts(lv) for lv in walk.earlier(settings)]
            bound = pooled_bound(_counts(counted), earlier, alpha)
            if bound > threshold:
                threshold, basis = bound, _spread_words(m, counted, earlier)
        if change < threshold:
            return None
        return Verdict(
            FlagKind.INSTRUCTIONS,
            old,
            float(m.instructions_per_invoke),
            change,
            None,
            threshold,
            counted,
            basis=basis,
        )
    # an emulated wall time is compared with wall times taken the same way: without counting (which slows qemu)
    timed = _timed(past, emulated)
    if not m.samples_ms:
        return None
    if len(timed) < settings.min_runs:
        return TooFewRuns(len(timed))
    earlier = [_nights(_timed(lv, emulated)) for lv in walk.earlier(settings)]
    verdict = _latency_verdict(m, timed, settings, alpha, earlier=earlier)
    if verdict is None and len(timed) >= 2 * max(settings.min_runs, settings.creep_runs):  # a creep
        older = timed[: len(timed) // 2]
        verdict = _latency_verdict(m, older, settings, alpha, creep=True)
    return verdict


def _spread_words(m: Measurement, counted: list[Entry], earlier: list[list[Sequence[float]]]) -> str:
    """What a count's threshold is when the drift bound of its earlier counts set it, in a flag's words."""
    levels = sum(len(lv) >= 2 for lv in earlier)
    runs = f"{len(counted)} runs" + (f", and the key's {levels} earlier levels" if levels > 1 else "")
    runs += ", and the key's earlier level" if levels == 1 else ""
    why = "; several threads' counts hold their waiting, which varies run to run" if m.threads > 1 else ""
    return f"past the spread of its earlier counts ({runs}{why})"


def _latency_verdict(
    m: Measurement,
    past: list[Entry],
    settings: Settings,
    night_alpha: float,
    *,
    creep: bool = False,
    earlier: Sequence[Sequence[Sequence[float]]] = (),
) -> Verdict | None:
    pooled = np.concatenate([e.m.samples_ms for e in past])
    old, new = med(pooled.tolist()), med(m.samples_ms)
    change = new / old - 1.0
    if change < settings.min_change:
        return None
    threshold = max(settings.min_change, pooled_bound(_nights(past), earlier, night_alpha))
    if change < threshold:
        return None
    p_value = slower_p_value(m.samples_ms, pooled)
    if p_value >= settings.alpha:
        return None
    return Verdict(FlagKind.LATENCY, old, new, change, p_value, threshold, past, creep)
