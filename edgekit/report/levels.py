"""A key's levels after `edgekit runs accept` (split out of baseline.py, whose docstring tells the why): a run
departing from the accepted level or back at an earlier one (departs, returns), the earlier level the departed
runs are back at (rejoined, same_level), the night-to-night drift bound of a baseline, measured on the
key's earlier levels too (night_bound, pooled_bound), and the least change of an instruction count that judging
and these rules see (count_change: the same floor for both)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from scipy.special import stdtrit  # scipy.special: a second faster to import than scipy.stats

from edgekit.report.flags import Settings
from edgekit.results import Measurement
from edgekit.samples import slower_p_value

if TYPE_CHECKING:
    from edgekit.report.baseline import Entry, Walk


# Instructions per invoke a count may move by on identical code. A count is exact for one process history, not
# across histories, by as much as the runtime's own memory management does in the counted window. ncnn mallocs
# about 24 times per layer and inference, and glibc's work for them depends on the heap the agent's process left
# (the runtime's start at the deploy's largest thread count, the artifacts before it, the frees of an earlier
# multi-thread run's pool threads, in no fixed order). Counted at 1 thread on pi4-emu in fresh guests after 7
# histories (nothing; itself at 2, 3, 4, or 2 then 4 threads; another model at 1 or 4), the largest shift: tiny's
# ncnn-fp32 3,157 and ncnn-int8 4,456 (1.8 %), chains of 8-64 small convolutions 3,691-41,841 (0.6-2.7 %), ncnn's
# benchmark models 20,161 (blazeface, 0.14 %) to 50,895 (FastestDet, 0.10 %), regnety_400m 709,367 (0.51 %; 0.10 %
# between its deploys at threads [1], [1, 2] and [1, 4]). Only the inference thread ran in each window (one share
# in the count line). COUNT_NOISE, ncnn's: above every shift but regnety's, and over twice the largest of the
# models it decides for (below 20 M instructions per invoke it is larger than 0.5 %: 41,841).
COUNT_NOISE = 100_000
# Every other runtime's. Measured the same way on pi4-emu (2026-12-06/07): TFLite runs from its planned arena (tiny's
# tflite-fp32 135,609 in every deploy, its tflite-int8 538 at most); onnxruntime moved by 3,673 (tiny's onnx-int8:
# 373,012 after onnx-fp32 in the same agent, 376,685 alone; review r8); OpenCV by 330 and MNN by 611 at most (tiny
# and digits, deploys at [1] against each format alone in its agent). Over twice the largest. ncnn's floor on them
# let tiny's tflite-fp32 rise by 70 % unflagged (135,609 -> 230,000). OpenVINO and ExecuTorch run on no emulated
# device here, so none of their counts was measured: they take this floor.
COUNT_NOISE_OTHERS = 10_000


def count_floor(m: Measurement) -> tuple[int, str]:
    """The instructions per invoke `m`'s count may move by on identical code (by its runtime: the measurement's,
    or its artifact's format), and why, in the words of a flag."""
    if m.runtime == "ncnn" or m.format.startswith("ncnn-"):
        return COUNT_NOISE, (
            "ncnn's count moves with what ran before it in the agent's process, its allocator work: "
            "up to 41,841 instructions on small models"
        )
    measured = m.runtime in (
        "ai_edge_litert",
        "tflite_runtime",
        "onnxruntime",
        "cv2",
        "MNN",
    ) or m.format.startswith(("tflite-", "onnx-", "opencv-", "mnn-"))
    why = (
        "over twice the most TFLite's, onnxruntime's, OpenCV's and MNN's counts moved by on identical code: "
        "538, 3,673, 330 and 611"
    )
    return COUNT_NOISE_OTHERS, why if measured else f"{why}; not measured for {m.runtime or m.format}"


def count_change(m: Measurement, level: float, settings: Settings) -> float:
    """The least relative change of `m`'s count from `level` (instructions per invoke) that is judged a change:
    `instruction_change`, and the runtime's count_floor. judge_key flags a rise past it; departs, returns and
    same_level take the same floor, so a run is not back at a level, or away from one, by less than what a
    regression must show."""
    return max(settings.instruction_change, count_floor(m)[0] / level)


def med(values: Sequence[float]) -> float:
    """The median of a night's samples or of a few nights' medians, as np.median gives it (the mean of the two
    middle values of an even count): statistics.median sorts a short list in C, where np.median's set-up cost
    50 times more per call, and judging a key calls it hundreds of thousands of times in a long history."""
    return float(statistics.median(values))


def departs(entry: Entry, walk: Walk, emulated: bool, settings: Settings) -> bool:
    """`entry` is below the walk's baseline by what would flag it above: judge_key's tests mirrored (the
    baseline's median over the run's at least max(min_change, the night-to-night bound) and the Mann-Whitney
    test the other way; a count below by count_change, judge_key's floor). An accepted level of fewer than `min_runs` runs
    (a step accepted on its first night, as the nightly invites) has no night-to-night bound: min_change alone,
    with the Mann-Whitney test; the `min_runs` runs in a row that walk_key asks for stand in for the bound. With
    earlier levels of the key in the window, their drift gives the bound of any accepted level (pooled_bound)."""
    past, m = walk.baseline(settings), entry.m
    earlier = walk.earlier(settings)
    counted = [e for e in past if e.m.instructions_per_invoke]
    if emulated and m.instructions_per_invoke:
        if not counted:
            return False
        counts = [float(e.m.instructions_per_invoke or 0) for e in counted]
        threshold = count_change(m, m.instructions_per_invoke, settings)  # the rise from the run to the level
        if m.threads > 1 and len(counted) >= settings.min_runs:
            bound = pooled_bound(_counts(counted), [_counts(lv) for lv in earlier], settings.night_alpha)
            threshold = max(threshold, bound)
        return float(statistics.median(counts)) / m.instructions_per_invoke - 1.0 >= threshold
    timed = _timed(past, emulated)
    if not m.samples_ms or not timed:
        return False
    pooled = np.concatenate([e.m.samples_ms for e in timed])
    # the fall, as the rise from the run's median to the baseline's (what judge_key would see the other way)
    fall = med(pooled.tolist()) / med(m.samples_ms) - 1.0
    threshold = settings.min_change
    levels = [_nights(_timed(lv, emulated)) for lv in earlier if len(_timed(lv, emulated)) >= 2]
    if len(timed) >= settings.min_runs or levels:  # a short accepted level: the drift of the earlier levels
        threshold = max(threshold, pooled_bound(_nights(timed), levels, settings.night_alpha))
    return fall >= threshold and slower_p_value(pooled, m.samples_ms) < settings.alpha


def returns(entry: Entry, walk: Walk, emulated: bool, settings: Settings) -> str:
    """Whether `entry` is back at one of the key's earlier levels (the one before an accepted regression: the
    slowdown fixed), judged on that level's own nights rather than on the short accepted level alone: "back"
    when nearer that level than the accepted one (in log), no slower than it by its night-to-night bound at
    `held_alpha` (the bound a held regression must fall under to have returned) nor faster by the one at
    `night_alpha`, and below the accepted level by at least min_change (count_change for counts, judge_key's) with
    the Mann-Whitney test; "nearer" when only nearer it (at neither level clearly: it joins no baseline); ""
    otherwise. A fix smaller than the accepted level's bound (-13 % after +15 % at 3 % drift) seldom departed
    three nights in a row, and a fast night that did not joined the accepted level, whose spread then hid every
    later one."""
    past, m = walk.baseline(settings), entry.m
    on_count = emulated and bool(m.instructions_per_invoke)
    if on_count:
        value = float(m.instructions_per_invoke or 0)
        ours, floor = (
            _counts([e for e in past if e.m.instructions_per_invoke]),
            count_change(m, value, settings),
        )
        levels = [_counts(lv) for lv in walk.earlier(settings)]
    else:
        timed = _timed(past, emulated)
        if not m.samples_ms or not timed:
            return ""
        ours, floor, value = _nights(timed), settings.min_change, med(m.samples_ms)
        levels = [_nights(_timed(lv, emulated)) for lv in walk.earlier(settings)]
    if not ours:
        return ""
    here = med([med(n) for n in ours])
    found = ""
    for i, level in enumerate(levels):
        if len(level) < settings.min_runs:
            continue
        there = med([med(n) for n in level])
        off = float(np.log(value / there))
        if there >= here or abs(off) >= abs(np.log(value / here)):
            continue
        others = [lv for j, lv in enumerate(levels) if j != i] + [ours]
        up = np.log1p(pooled_bound(level, others, settings.held_alpha))
        down = np.log1p(max(floor, pooled_bound(level, others, settings.night_alpha)))
        found = "nearer"
        if np.log(here / there) < down:  # the two levels are not told apart by the drift: no return to judge
            continue
        faster = on_count or slower_p_value(np.concatenate(_nights(timed)), m.samples_ms) < settings.alpha
        if -down <= off <= up and here / value - 1.0 >= floor and faster:
            return "back"
    return found


def rejoined(walk: Walk, emulated: bool, settings: Settings) -> list[Entry]:
    """The runs of the newest earlier level of the key that the departed runs are back at (same_level), taken
    out of the walk's earlier levels (they are the baseline again); none if they are at no earlier level. The
    drift is measured on every level of the walk (the accepted one too)."""
    for i in reversed(range(len(walk.levels))):
        others = [lv for j, lv in enumerate(walk.levels) if j != i] + [walk.kept]
        near = same_level(walk.departed, walk.levels[i], others, emulated, settings)
        if near:
            del walk.levels[i]
            return near
    return []


def same_level(
    new: list[Entry], old: list[Entry], others: list[list[Entry]], emulated: bool, settings: Settings
) -> list[Entry]:
    """The runs of `old` at the level of the runs `new`: each within the night-to-night bound of the median of
    `new`, either way (pooled_bound of `new`, `old` and the key's `others` levels; counts where the key is
    judged on counts); none unless at least `min_runs` are. Run by run: a lookback window that starts just before
    a regression leaves its first nights unflagged, in the baseline before the accepted level, and they are not
    the level the fix went back to."""
    if emulated and all(e.m.instructions_per_invoke for e in new):
        olds = [e for e in old if e.m.instructions_per_invoke]
        theirs, ours = _counts(new), _counts(olds)
        floor = count_change(new[0].m, med([med(n) for n in theirs]), settings) if theirs else 0.0
        rest = [_counts(lv) for lv in others]
    else:
        olds = _timed(old, emulated)
        theirs, ours, floor = _nights(_timed(new, emulated)), _nights(olds), settings.min_change
        rest = [_nights(_timed(lv, emulated)) for lv in others]
    if len(ours) < settings.min_runs or not theirs:
        return []
    level = med([med(n) for n in theirs])
    bound = np.log1p(max(floor, pooled_bound(theirs, [ours, *rest], settings.night_alpha)))
    # nearer another level of the key (the accepted one) than this one: a regression's first nights that were
    # not flagged (a +15 % step at 3 % drift) are in the baseline before it, and within a bound that wide
    elsewhere = [med([med(n) for n in lv]) for lv in rest if lv]
    near = [
        e
        for e, n in zip(olds, ours, strict=True)
        if (off := abs(np.log(med(n) / level))) <= bound
        and all(off <= abs(np.log(med(n) / x)) for x in elsewhere)
    ]
    return near if len(near) >= settings.min_runs else []


def _timed(entries: Sequence[Entry], emulated: bool) -> list[Entry]:
    """The runs judged on wall time: an emulated target's counted runs are judged on their counts."""
    return [e for e in entries if e.m.samples_ms and not (emulated and e.m.instructions_per_invoke)]


def _nights(entries: Sequence[Entry]) -> list[Sequence[float]]:
    return [e.m.samples_ms for e in entries]


def _counts(entries: Sequence[Entry]) -> list[Sequence[float]]:
    return [[float(e.m.instructions_per_invoke)] for e in entries if e.m.instructions_per_invoke]


# a baseline of at least this many nights leaves out of its standard deviation the nights beyond ODD_SPREADS
# MAD-based spreads of its median (at most a quarter of them): fewer nights give too rough a MAD
ODD_FROM = 8
ODD_SPREADS = 8.0


def _trimmed(logs: np.ndarray) -> np.ndarray:
    """`logs` without its odd nights: with ODD_FROM or more, those beyond ODD_SPREADS MAD-based spreads of the
    median, at most a quarter of them (more is two levels, not odd nights). walk_key keeps flagged nights and
    clearly faster ones out of a baseline; a night that joined before the key was judged (its first `min_runs`)
    is not, and one 0.7x night among eight at 1 % drift made the bound 73 % (review r13)."""
    n = len(logs)
    if n < ODD_FROM:
        return logs
    off = np.abs(logs - med(logs.tolist()))
    cut = ODD_SPREADS * 1.4826 * med(off.tolist())
    odd = off > cut
    if not odd.any() or odd.sum() > n // 4:
        return logs
    return logs[~odd]


def night_bound(nights: Sequence[Sequence[float]], alpha: float = Settings.night_alpha) -> float:
    """Relative rise of one more night's median that drift alone exceeds with probability `alpha`.

    A normal prediction interval on the log of the per-night medians: t(1-alpha, n-1) * s * sqrt(1 + 1/n),
    with s the larger of the standard deviation of the nights (without odd ones: _trimmed) and the MAD-based
    one (not fooled by a lucky run of similar nights).
    """
    logs = _trimmed(np.log([med(s) for s in nights]))
    n = len(logs)
    if n < 2:
        return float("inf")
    s = max(float(np.std(logs, ddof=1)), 1.4826 * med(np.abs(logs - med(logs.tolist())).tolist()))
    return float(np.expm1(stdtrit(n - 1, 1.0 - alpha) * s * np.sqrt(1.0 + 1.0 / n)))


def pooled_bound(
    nights: Sequence[Sequence[float]],
    earlier: Sequence[Sequence[Sequence[float]]],
    alpha: float = Settings.night_alpha,
) -> float:
    """night_bound of `nights`, with the night-to-night drift measured on them and on the key's `earlier` levels
    (each a list of nights, about its own level): a level shift moves a key's level, not how much its nights
    drift, and three nights alone gave a bound of t(0.999, 2) = 22 spreads (126 % at 2 % drift), which a +25 %
    step passed and then, joining them, widened for good. The spread is pooled over the levels with their degrees
    of freedom, sum(n_i - 1): `nights` by their standard deviation, the earlier levels by the MAD-based one of
    their nights about each level's median (robust to the few nights of another level an earlier baseline may
    hold: a regression's first nights that were not flagged in a lookback window starting just before it), and
    never below the MAD-based spread of every night. Without earlier nights, night_bound of `nights`."""
    logs = _trimmed(np.log([med(s) for s in nights]))
    older = [np.log([med(s) for s in level]) for level in earlier if len(level) >= 2]
    df_own, df_older = max(len(logs) - 1, 0), sum(len(g) - 1 for g in older)
    if not older or not len(logs):
        return night_bound(nights, alpha)
    spread = np.concatenate([np.abs(g - med(g.tolist())) for g in older])
    s_older = 1.4826 * med(spread.tolist())
    s_own = float(np.std(logs, ddof=1)) if df_own else 0.0
    s = float(np.sqrt((df_own * s_own**2 + df_older * s_older**2) / (df_own + df_older)))
    if df_own:
        s = max(s, 1.4826 * med(np.concatenate([spread, np.abs(logs - med(logs.tolist()))]).tolist()))
    n = len(logs)
    return float(np.expm1(stdtrit(df_own + df_older, 1.0 - alpha) * s * np.sqrt(1.0 + 1.0 / n)))
