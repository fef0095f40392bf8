"""The report's trend panels: each artifact's p50 over the runs shown, one panel per thread count, the runs a bad
flag names circled in red and the runs accepted as a new level marked; an unreliable point (timed while busy, a
board that throttled) drawn hollow and kept from flattening the axis; then the guest instruction counts over time.
On an emulated board that counted, the estimate's trend (estimate_plots.py) replaces the wall time's."""

from __future__ import annotations

from collections import defaultdict

from matplotlib.axes import Axes

from edgekit.report.baseline import on_counts
from edgekit.report.estimate_plots import (
    circle_flagged,
    estimate_series,
    estimate_trend,
    mark_accepted,
    not_run_in,
)
from edgekit.report.flags import FlagKind
from edgekit.report.panels import (
    EMULATED_NOTE,
    Panel,
    colour,
    date_num,
    finish,
    new_panel,
    order,
    threads_text,
    time_axis,
)
from edgekit.report.plots import MEASURED_NOTE, no_data
from edgekit.report.regression import throttle_reason
from edgekit.report.view import RecipeView
from edgekit.results import Measurement


def trend(view: RecipeView, target: str, name: str = "") -> list[Panel]:
    """p50 per artifact over time, one panel per thread count, then instruction counts per thread count; `name`:
    what the captions call the target (a host machine: plots.machine_views)."""
    name = name or target
    emulated = view.emulated(target)
    series, times = _trend_series(view, target)
    if not series:
        return [no_data(target, "latency over time", emulated, view, name)]
    flagged = _flagged(view, target)
    counted = _flagged(view, target, FlagKind.INSTRUCTIONS)
    accepted = _accepted(view, target)
    unreliable = _unreliable(view, target)
    ordered = sorted(series.items(), key=lambda kv: order(kv[0][0]))
    estimated = estimate_series(view, target) if emulated else {}
    unrun = not_run_in(view, target) if estimated else {}
    panels = estimate_trend(estimated, times, target, flagged, accepted, unrun) if estimated else []
    for n in sorted({k[1] for k in series} if not estimated else ()):
        fig, ax = new_panel()
        for (artifact, th), pts in ordered:
            if th == n:
                xs, p50s = [x for x, _, _ in pts], [p50 for _, p50, _ in pts]
                ax.plot(xs, p50s, "-", lw=1.4, color=colour(artifact))
                judged = [(x, y) for (x, y, m) in pts if id(m) not in unreliable]
                if judged:
                    ax.plot(*zip(*judged), "o", ms=3, color=colour(artifact))
                odd = [(x, y) for (x, y, m) in pts if id(m) in unreliable]
                if odd:  # timed while busy or throttled: drawn, but hollow and grey (not judged)
                    ax.plot(*zip(*odd), "o", ms=5, mfc="white", mec="#888888", mew=1.4)
                circle_flagged(ax, list(zip(xs, p50s)), flagged.get((artifact, th), set()))
                mark_accepted(ax, list(zip(xs, p50s)), accepted.get((artifact, th), set()))
        mine = [(y, id(m) not in unreliable) for (_, th), pts in ordered if th == n for _, y, m in pts]
        beyond = _clip_unreliable(ax, mine)
        ax.set_ylabel("p50, emulated wall time (ms)" if emulated else "p50 latency (ms)")
        time_axis(ax, times)
        said = f"{beyond} unreliable point{'s' if beyond > 1 else ''} beyond the axis" if beyond else ""
        note = "; ".join(x for x in ((EMULATED_NOTE if emulated else MEASURED_NOTE), said) if x)
        panels.append(finish(fig, f"{name}, {threads_text(n)}: p50 over time", emulated, note))
    for n in sorted({k[1] for k in series}):
        counts = [
            (a, [(x, float(m.instructions_per_invoke)) for x, _, m in pts if m.instructions_per_invoke])
            for (a, th), pts in ordered
            if th == n
        ]
        if not any(c for _, c in counts):
            continue
        fig, ax = new_panel()
        for artifact, pts_c in counts:
            if pts_c:
                ax.plot(*zip(*pts_c), "-s", ms=3, lw=1.2, color=colour(artifact))
                circle_flagged(ax, pts_c, counted.get((artifact, n), set()))
                mark_accepted(ax, pts_c, accepted.get((artifact, n), set()))
        ax.set_ylabel("instructions / invoke")
        time_axis(ax, times)
        panels.append(
            finish(
                fig,
                f"{name}, {threads_text(n)}: guest instruction count over time",
                emulated,
                "guest instruction count on the emulated core (not time)",
            )
        )
    return panels


def _flagged(
    view: RecipeView, target: str, kind: FlagKind | None = None
) -> dict[tuple[str, int], set[float]]:
    """Per (artifact, threads) of `target`, the times of the runs a bad flag (of `kind`, or any) names: where the
    trend draws the red circle. Any flag on the wall-time panel or the estimate panel that replaces it (an
    emulated board's estimate is its count's), a count's flag on the count panel too."""
    at = {run.id: date_num(run.started_ts) for run in view.runs}
    found: dict[tuple[str, int], set[float]] = defaultdict(set)
    for f in view.flags:
        if f.target != target or not f.is_bad or not f.artifact or not f.threads or f.run_id not in at:
            continue
        if kind is None or f.kind is kind:
            found[(f.artifact, f.threads)].add(at[f.run_id])
    return found


def _accepted(view: RecipeView, target: str) -> dict[tuple[str, int], set[float]]:
    """Per (artifact, threads) of `target`, the times of the runs accepted as its new level (`runs accept`)."""
    found: dict[tuple[str, int], set[float]] = defaultdict(set)
    for a in view.accepted():
        if a.target == target:
            for key in a.keys:
                found[key].add(date_num(a.started_ts))
    return found


def _unreliable(view: RecipeView, target: str) -> set[int]:
    """The measurements (ids) of `target` whose timings were not judged: timed while other processes used the
    CPUs, or on a board (an emulated target's host) that throttled (unreliable.py); emulated counts are exact whatever the load, emulated
    wall times are not (baseline.on_counts)."""
    found = set()
    for run in view.runs:
        for t in run.result.runs:
            if t.target != target or t.agent is None:
                continue
            hot = throttle_reason(t) is not None  # an emulated run's host's heat: its wall times only
            found |= {
                id(m)
                for m in t.agent.measurements
                if not on_counts(m, t.emulated) and (hot or m.timed_while_busy)
            }
    return found


def trend_artifacts(view: RecipeView) -> list[str]:
    """Every artifact `trend` draws a line for, on any target, in any run it shows (the legend names them all:
    a recipe's formats may change between runs)."""
    drawn = {artifact for target in view.targets for artifact, _ in _trend_series(view, target)[0]}
    return sorted(drawn, key=order)


def _trend_series(
    view: RecipeView, target: str
) -> tuple[dict[tuple[str, int], list[tuple[float, float, Measurement]]], list[float]]:
    """Per (artifact, threads) the (time, p50, measurement) points of every shown run on `target`, and the
    times of those runs."""
    series: dict[tuple[str, int], list[tuple[float, float, Measurement]]] = defaultdict(list)
    times = []
    for run in view.runs:
        for t in run.result.runs:
            if t.target == target and t.agent:
                times.append(date_num(run.started_ts))
                for m in t.agent.measurements:
                    if m.status == "ok" and m.p50_ms is not None:
                        series[(m.artifact, m.threads)].append((date_num(run.started_ts), m.p50_ms, m))
    return series, times


def _clip_unreliable(ax: Axes, points: list[tuple[float, bool]]) -> int:
    """Keep an unreliable run (timed while busy, throttled: not judged) from flattening a trend: one busy night
    at 219 ms among points of 0.01-0.05 ms set the axis to 0-220. The axis spans the judged points and what lies
    near them; the unreliable points far beyond are counted (said in the caption)."""
    judged = [y for y, ok in points if ok]
    if not judged:
        return 0
    low, high = min(judged), max(judged)
    fence = 0.3 * max(high - low, 0.05 * high)
    kept = [y for y, _ in points if low - fence <= y <= high + fence]
    beyond = len(points) - len(kept)
    if beyond:
        pad = 0.1 * max(max(kept) - min(kept), 0.05 * max(kept))
        ax.set_ylim(max(0.0, min(kept) - pad), max(kept) + pad)
    return beyond
