"""The report's plots, drawn with matplotlib (Agg) as inline SVG text (no files, no network).

One small panel per figure, all the same width, so the page can lay them out in a grid that reflows from a
1400 px screen down to a 390 px phone. Titles and legends are HTML around the panel (html.py), never drawn
inside it: text in a figure of fixed margins is what got clipped or drawn over. A panel of an emulated
target says so in its caption and axis label (wall time under qemu is not a device latency); guest
instruction counts get their own panels, labelled as counts. A panel without data is a note, not empty axes.
The panel primitives are in panels.py; an emulated board's estimate panels, which replace its wall time where it
counted, in estimate_plots.py.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from matplotlib.axes import Axes
from matplotlib.ticker import FuncFormatter, MaxNLocator

from edgekit.formats import Format, Precision
from edgekit.report.baseline import on_counts
from edgekit.report.estimate_plots import (
    circle_flagged,
    estimate_intervals,
    estimate_series,
    estimate_trend,
    mark_accepted,
)
from edgekit.report.flags import FlagKind
from edgekit.report.panels import (
    EMULATED_NOTE,
    PRECISION_COLOURS,
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
from edgekit.report.regression import throttle_reason
from edgekit.report.view import RecipeView
from edgekit.results import Measurement
from edgekit.same_model import same_models


def trend(view: RecipeView, target: str) -> list[Panel]:
    """p50 per artifact over time, one panel per thread count, then instruction counts per thread count."""
    emulated = view.emulated(target)
    series, times = _trend_series(view, target)
    if not series:
        return [_no_data(target, "latency over time", emulated, view)]
    flagged = _flagged(view, target)
    counted = _flagged(view, target, FlagKind.INSTRUCTIONS)
    accepted = _accepted(view, target)
    unreliable = _unreliable(view, target)
    ordered = sorted(series.items(), key=lambda kv: order(kv[0][0]))
    estimated = estimate_series(view, target) if emulated else {}
    panels = estimate_trend(estimated, times, target, flagged, accepted) if estimated else []
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
        note = "; ".join(x for x in (_basis(emulated), said) if x)
        panels.append(finish(fig, f"{target}, {threads_text(n)}: p50 over time", emulated, note))
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
                f"{target}, {threads_text(n)}: guest instruction count over time",
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
    CPUs, or on a board that throttled (unreliable.py); emulated counts are exact whatever the load, emulated
    wall times are not (baseline.on_counts)."""
    found = set()
    for run in view.runs:
        for t in run.result.runs:
            if t.target != target or t.agent is None:
                continue
            hot = not t.emulated and throttle_reason(t) is not None
            found |= {
                id(m)
                for m in t.agent.measurements
                if hot or (m.timed_while_busy and not on_counts(m, t.emulated))
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


def distribution(view: RecipeView, target: str) -> list[Panel]:
    """Every sample of the target's newest run as horizontal box plots, one panel per thread count."""
    emulated = view.emulated(target)
    if emulated and (intervals := estimate_intervals(view, target)):
        return intervals
    run_id, measured = _latest_ok(view, target)
    found = [m for m in measured if m.samples_ms]
    if not found:
        return [_no_data(target, "latency distribution", emulated, view)]
    panels = []
    for n in sorted({m.threads for m in found}):
        mine = sorted((m for m in found if m.threads == n), key=lambda m: order(m.artifact), reverse=True)
        fig, ax = new_panel(rows=len(mine), labels=[m.artifact for m in mine])
        boxes = ax.boxplot(
            [m.samples_ms for m in mine],
            orientation="horizontal",
            patch_artist=True,
            widths=0.6,
            medianprops={"color": "black"},
            flierprops={"markersize": 2.5, "alpha": 0.6},
        )
        for patch, m in zip(boxes["boxes"], mine):
            patch.set_facecolor(colour(m.artifact))
            patch.set_alpha(0.75)
        ax.set_yticks(range(1, len(mine) + 1), [m.artifact for m in mine])
        ax.xaxis.set_major_locator(MaxNLocator(nbins=5))
        ax.xaxis.set_major_formatter(FuncFormatter(compact))
        above = _clip_outliers(ax, [m.samples_ms for m in mine])
        ax.set_xlabel("emulated wall time per invoke (ms)" if emulated else "latency per invoke (ms)")
        beyond = f"{above} sample{'s' if above > 1 else ''} beyond the axis" if above else ""
        note = "; ".join(s for s in (_basis(emulated), beyond) if s)
        panels.append(
            finish(fig, f"{target}, {threads_text(n)}: latency distribution, run #{run_id}", emulated, note)
        )
    return panels


def precisions(view: RecipeView, target: str) -> list[Panel]:
    """Per runtime: each precision's p50 (its speed-up over fp32 written on the bar), one panel per thread
    count; on an emulated target, the instruction counts of what counted (what did not is left out, said), and
    with no count at all qemu's wall time without ratios on the bars (they are distorted under emulation: a
    "1.44x" there read as a win the route on the same page refused to rank)."""
    emulated = view.emulated(target)
    run_id, measured = _latest_ok(view, target)
    found = [m for m in measured if m.p50_ms]
    if not found:
        return [_no_data(target, "precisions vs fp32", emulated, view)]
    latest = view.latest_on(target)
    twins = {a: same for a, (same, _) in same_models(latest[0].result.artifacts).items()} if latest else {}
    counted = [m for m in found if m.instructions_per_invoke]
    use_counts = emulated and bool(counted)
    if use_counts:
        left = len(found) - len(counted)
        found = counted
        basis = "guest instruction counts on the emulated core (not time)" + (
            f"; {left} measurement{'s' if left != 1 else ''} without a count left out" if left else ""
        )
    else:
        basis = _basis(emulated) + ("; no ratios: emulated wall time distorts them" if emulated else "")
    panels = []
    for n in sorted({m.threads for m in found}):
        fig, ax = new_panel()
        _precision_bars(
            ax,
            [m for m in found if m.threads == n],
            use_counts,
            ratios=use_counts or not emulated,
            twins=twins,
        )
        ax.set_ylabel(
            "instructions / invoke"
            if use_counts
            else "p50, emulated wall time (ms)"
            if emulated
            else "p50 latency (ms)"
        )
        panels.append(
            finish(fig, f"{target}, {threads_text(n)}: precisions vs fp32, run #{run_id}", emulated, basis)
        )
    return panels


def fidelity(view: RecipeView) -> Panel:
    """Fidelity of each artifact against the original model at conversion: one chart for the recipe (the
    conversion is shared by every target). Cosine 'nines' on a linear axis read like a log axis of 1 - cosine."""
    arts = [a for a in view.latest.result.artifacts if isinstance(a.fidelity.get("cosine"), (int, float))]
    caption = f"fidelity vs the original model (conversion of run #{view.latest.id}, every target)"
    if not arts:
        return Panel(caption, None, "no data: the latest run recorded no cosine for any artifact")
    arts = list(reversed(arts))  # first artifact at the top
    fig, ax = new_panel(rows=len(arts), labels=[a.id for a in arts])
    nines = [float(-np.log10(max(1.0 - float(a.fidelity["cosine"]), 1e-9))) for a in arts]
    ax.barh(
        range(len(arts)),
        nines,
        color=[_precision_colour(a.format) for a in arts],
        edgecolor=["red" if not a.gates_passed else "none" for a in arts],
        linewidth=2,
    )
    ax.set_yticks(range(len(arts)), [a.id for a in arts])
    ax.set_xlabel("cosine nines: -log10(1 - cosine)")
    failed = sum(1 for a in arts if not a.gates_passed)
    return finish(fig, caption, False, f"red outline: below its gate ({failed})" if failed else "")


def _latest_ok(view: RecipeView, target: str) -> tuple[int, list[Measurement]]:
    """The newest run that includes `target` (its store id) and its successful measurements there."""
    found = view.latest_on(target)
    if found is None or found[1].agent is None:
        return 0, []
    return found[0].id, [m for m in found[1].agent.measurements if m.status == "ok"]


def _no_data(target: str, what: str, emulated: bool, view: RecipeView) -> Panel:
    found = view.latest_on(target)
    why = "no successful measurement in the runs shown"
    if found is not None and found[1].status != "ok":
        why += f" (run #{found[0].id}: {found[1].error or found[1].status})"
    return Panel(f"{target}: {what}", None, f"no data: {why}", emulated)


def _clip_outliers(ax: Axes, samples: list[list[float]]) -> int:
    """Keep a few far outliers from flattening every box: clip the axis at 3 IQR beyond the upper quartiles.
    Returns how many samples fall beyond the axis (said in the caption)."""
    fences = []
    for s in samples:
        q1, q3 = np.percentile(s, [25, 75])
        fences.append(min(float(np.max(s)), float(q3 + 3.0 * max(q3 - q1, 0.01 * q3))))
    top, low = max(fences), min(min(s) for s in samples)
    above = sum(int((np.asarray(s) > top * 1.08).sum()) for s in samples)
    if above:
        ax.set_xlim(max(0.0, low - 0.1 * (top - low)), top * 1.08)
    return above


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


def _route_label(route: str) -> str:
    """The runtime's name for its main route (onnx -> onnxruntime), the route's own name for another
    (tflite-onnx2tf)."""
    runtime = next(f for f in Format if f.value.rsplit("-", 1)[0] == route).runtime.value
    return route if route.startswith(runtime) else runtime


def _precision_bars(
    ax: Axes,
    found: list[Measurement],
    use_counts: bool,
    ratios: bool = True,
    twins: dict[str, str] | None = None,
) -> None:
    """Per route a bar per precision, its speed-up over the route's fp32 written on it; 'same model' instead on an
    artifact that is its fp32 model (`twins`, same_models: an ncnn-int8 whose speed plan kept every layer float
    read as a 1.11x int8 speed-up the route and the latest table do not rank)."""
    twins = twins or {}
    by_format = {m.format: m for m in found}
    # one group per route: a format's name without its precision (onnx-int8 -> onnx, whose runtime is named
    # onnxruntime: grouping by runtime name left ONNX Runtime's bars out; tflite-onnx2tf is a route of its own)
    routes = sorted(
        {f.rsplit("-", 1)[0] for f in by_format if f in Format._value2member_map_}, key=_route_label
    )
    width = 0.8 / len(Precision)
    top = 0.0
    for i, route in enumerate(routes):
        fp32 = by_format.get(f"{route}-fp32")
        base = _value(fp32, use_counts) if fp32 else None
        # only the precisions the route has, centred on its tick (fixed slots put ncnn's lone int8 bar beside
        # the next route's fp32, off its own tick)
        bars = [
            (p, v)
            for p in Precision
            if (v := _value(by_format.get(f"{route}-{p.value}"), use_counts)) is not None
        ]
        for j, (precision, value) in enumerate(bars):
            x = i + (j - (len(bars) - 1) / 2) * width
            ax.bar(x, value, width * 0.9, color=PRECISION_COLOURS[precision])
            top = max(top, value)
            mine = by_format[f"{route}-{precision.value}"]
            same = fp32 is not None and twins.get(mine.artifact) == fp32.artifact
            if ratios and base and precision is not Precision.FP32:
                ax.text(
                    x,
                    value,
                    "same model" if same else f"{base / value:.2f}x",
                    ha="center",
                    va="bottom",
                    fontsize=7,
                    rotation=90 if len(routes) > 2 else 0,
                )
    ax.set_ylim(0, top * (1.3 if len(routes) > 2 else 1.15) or 1.0)  # room for the labels on the bars
    ax.set_xticks(range(len(routes)), [_route_label(r) for r in routes])
    ax.set_xlim(-0.5, len(routes) - 0.5)  # a group's room either side: not the first bar's edge at the y-axis
    ax.yaxis.set_major_locator(MaxNLocator(nbins=5))
    ax.yaxis.set_major_formatter(FuncFormatter(compact))


def _precision_colour(fmt: str) -> str:
    precision = Format(fmt).precision if fmt in Format._value2member_map_ else None
    return PRECISION_COLOURS[precision] if precision is not None else "grey"


def _value(m: Measurement | None, use_counts: bool) -> float | None:
    if m is None:
        return None
    return float(m.instructions_per_invoke) if use_counts and m.instructions_per_invoke else m.p50_ms


def _basis(emulated: bool) -> str:
    return EMULATED_NOTE if emulated else ""
