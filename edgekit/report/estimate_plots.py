"""An emulated board's figures in the report when it counted: the real board's estimated latency over time and
its newest estimates with their intervals, in place of qemu's wall time (which is no device latency)."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Collection, Sequence
from typing import Any

from matplotlib.axes import Axes
from matplotlib.ticker import FuncFormatter, LogLocator

from edgekit.report.panels import (
    Panel,
    colour,
    compact,
    date_num,
    finish,
    new_panel,
    order,
    threads_text,
    time_axis,
)
from edgekit.report.table_caption import interval_words
from edgekit.report.view import RecipeView
from edgekit.results import TargetRun


def estimate_series(view: RecipeView, target: str) -> dict[tuple[str, int], list[tuple[float, float, bool]]]:
    """An emulated target's board estimates per (artifact, threads): (time, estimate ms, interval validated) of
    every shown run that has them (a counted deploy's; the thread counts estimated but not run included)."""
    series: dict[tuple[str, int], list[tuple[float, float, bool]]] = defaultdict(list)
    for run in view.runs:
        for t in run.result.runs:
            if t.target != target:
                continue
            for artifact, n, est in _estimates(t):
                point = (
                    date_num(run.started_ts),
                    float(est["estimate_ms"]),
                    est.get("interval_calibrated", True),
                )
                series[(artifact, n)].append(point)
    return series


def _estimates(t: TargetRun) -> list[tuple[str, int, dict[str, Any]]]:
    """(artifact, threads, estimate) of a target run's board estimates that are figures (status ok, with an
    interval), thread counts estimated but not run included."""
    found = []
    for key, est in t.estimates.items():
        artifact, _, count = key.rpartition(" x")
        figures = isinstance(est, dict) and all(est.get(k) for k in ("estimate_ms", "low_ms", "high_ms"))
        if figures and est.get("status") == "ok" and count.isdigit():
            found.append((artifact, int(count), est))
    return found


def not_run(t: TargetRun) -> dict[int, str]:
    """Per thread count a capped emulated target was estimated at but did not run (the plan ran pi4-emu at 1
    thread and estimated 2 threads from its counts), what its panels say of it, in `runs show`'s words: 'not run
    at 2 threads: estimated from the 1-thread run's instruction counts'. The estimate panels said nothing and
    read as runs at 2 threads."""
    ran = sorted({m.threads for m in (t.agent.measurements if t.agent else [])})
    if not ran:
        return {}
    said = ", ".join(map(str, ran))
    return {
        n: f"not run at {threads_text(n)}: estimated from the {said}-thread run's instruction counts"
        for n in sorted({n for _, n, _ in _estimates(t)} - set(ran))
    }


def not_run_in(view: RecipeView, target: str) -> dict[int, str]:
    """not_run over the runs shown: per thread count, what the trend's panel says where some or all of the runs
    it draws did not run it ('runs #3, #4 not run at 2 threads: ...' where only some)."""
    said: dict[int, list[tuple[int, str]]] = defaultdict(list)
    estimated: dict[int, int] = defaultdict(int)
    for run in view.runs:
        for t in run.result.runs:
            if t.target != target:
                continue
            for n in {n for _, n, _ in _estimates(t)}:
                estimated[n] += 1
            for n, words in not_run(t).items():
                said[n].append((run.id, words))
    found = {}
    for n, runs in said.items():
        words = runs[-1][1]
        if len(runs) < estimated[n]:
            words = f"run{'s' if len(runs) > 1 else ''} {', '.join(f'#{i}' for i, _ in runs)} " + words
        found[n] = words
    return found


def circle_flagged(ax: Axes, points: Sequence[tuple[float, float]], at: Collection[float]) -> None:
    """The red circle around each of a line's `points` (time, value) whose time is a flagged run's (`at`):
    the legend's "○ flagged regression"."""
    ringed = [(x, y) for x, y in points if x in at]
    if ringed:
        ax.plot(*zip(*ringed), "o", ms=11, mfc="none", mec="red", mew=2)


ACCEPTED_COLOUR = "#006d2c"  # dark green, in no format's colour (tab20)


def mark_accepted(ax: Axes, points: Sequence[tuple[float, float]], at: Collection[float]) -> None:
    """A green diamond around each of a line's `points` whose time is a run accepted as the new level (`edgekit
    runs accept`, view.Accepted): the step it ended is not flagged, and would otherwise show nothing."""
    marked = [(x, y) for x, y in points if x in at]
    if marked:
        ax.plot(*zip(*marked), "D", ms=10, mfc="none", mec=ACCEPTED_COLOUR, mew=1.8)


def estimate_trend(
    series: dict[tuple[str, int], list[tuple[float, float, bool]]],
    times: list[float],
    target: str,
    flagged: dict[tuple[str, int], set[float]] | None = None,
    accepted: dict[tuple[str, int], set[float]] | None = None,
    unrun: dict[int, str] | None = None,
) -> list[Panel]:
    """On an emulated target that counted: the real board's estimated latency over time, one panel per thread
    count, in place of qemu's wall time (which is no device latency); dashed where the interval is not
    validated (a runtime without a calibration figure); a flagged run's estimate circled (`flagged`: the times
    of the flagged runs per (artifact, threads)), an accepted run's marked (`accepted`, the same way); a thread
    count estimated but not run says so (`unrun`: not_run_in)."""
    panels = []
    ordered = sorted(series.items(), key=lambda kv: order(kv[0][0]))
    for n in sorted({k[1] for k in series}):
        fig, ax = new_panel()
        for (artifact, th), pts in ordered:
            if th == n:
                calibrated = all(ok for _, _, ok in pts)
                ax.plot(
                    [x for x, _, _ in pts],
                    [ms for _, ms, _ in pts],
                    "-o" if calibrated else "--o",
                    ms=3,
                    lw=1.4,
                    color=colour(artifact),
                )
                points = [(x, ms) for x, ms, _ in pts]
                circle_flagged(ax, points, (flagged or {}).get((artifact, th), set()))
                mark_accepted(ax, points, (accepted or {}).get((artifact, th), set()))
        ax.set_ylabel("board ESTIMATE (ms)")
        time_axis(ax, times)
        panels.append(
            finish(
                fig,
                f"{target}, {threads_text(n)}: estimated board latency over time",
                True,
                "ESTIMATE of the real board from the guest instruction count on the emulated core, not a "
                "measurement; dashed: interval not validated"
                + (f"; {unrun[n]}" if unrun and n in unrun else ""),
            )
        )
    return panels


def estimate_intervals(view: RecipeView, target: str) -> list[Panel]:
    """An emulated target that counted: its newest run's board estimates with their intervals, one row per
    artifact and a panel per thread count (what qemu's sample spread would stand for on a board is the
    interval): two rows whose intervals hold each other's estimate are not ranked by them. Log scale, as the
    intervals of runtimes without a calibration figure are several times wider. Empty when it has none."""
    found = view.latest_on(target)
    if found is None:
        return []
    run, t = found
    rows: dict[int, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
    for artifact, n, est in _estimates(t):
        rows[n].append((artifact, est))
    panels, unrun = [], not_run(t)
    for n in sorted(rows):
        mine = sorted(rows[n], key=lambda r: order(r[0]), reverse=True)
        fig, ax = new_panel(rows=len(mine), labels=[a for a, _ in mine])
        for i, (artifact, est) in enumerate(mine, 1):
            ms, low, high = (float(est[k]) for k in ("estimate_ms", "low_ms", "high_ms"))
            validated = est.get("interval_calibrated", True)
            ax.plot([low, high], [i, i], "-" if validated else "--", lw=2, color=colour(artifact))
            ax.plot([ms], [i], "o", ms=6, color=colour(artifact), mfc=None if validated else "white", mew=1.6)
        log_axis(ax, [float(est[k]) for _, est in mine for k in ("low_ms", "high_ms")])
        ax.set_yticks(range(1, len(mine) + 1), [a for a, _ in mine])
        ax.set_ylim(0.4, len(mine) + 0.6)
        words = interval_words(est for _, est in mine)  # '80% interval' only where every row's is validated
        ax.set_xlabel(f"board ESTIMATE (ms), {words}")
        panels.append(
            finish(
                fig,
                f"{target}, {threads_text(n)}: estimated board latency and its {words}, run #{run.id}",
                True,
                "ESTIMATE of the real board from the guest instruction count on the emulated core, not a "
                "measurement; dashed, hollow: interval not validated; rows whose intervals hold each other's "
                "estimate are not ranked by them" + (f"; {unrun[n]}" if n in unrun else ""),
            )
        )
    return panels


def log_axis(ax: Any, values: list[float]) -> None:
    """A log x-axis whose labels always name values: intervals inside one decade (58-92 ms) fell between the
    decade ticks and the axis had no number at all. Under a decade every 1-9 x 10^k is a labelled tick and the
    limits are widened to the ticks either side; under two, 1, 2 and 5 x 10^k; wider, the decades."""
    lo, hi = min(values), max(values)
    ax.set_xscale("log")
    decades = math.log10(hi / lo) if lo > 0 and hi > lo else 0.0
    subs: tuple[float, ...] = (
        (1.0,) if decades >= 2 else (1.0, 2.0, 5.0) if decades >= 1 else tuple(range(1, 10))
    )
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=subs))
    ax.xaxis.set_major_formatter(FuncFormatter(compact))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda _v, _p: ""))
    if (
        decades < 1 and lo > 0
    ):  # from the grid point at or below the lowest value to the one at or above the highest
        below = 10 ** math.floor(math.log10(lo))
        above = 10 ** math.floor(math.log10(hi))
        ax.set_xlim(math.floor(lo / below) * below, math.ceil(hi / above) * above)
