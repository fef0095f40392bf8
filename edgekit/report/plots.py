"""The report's plots, drawn with matplotlib (Agg) as inline SVG text (no files, no network).

One small panel per figure, all the same width, so the page can lay them out in a grid that reflows from a
1400 px screen down to a 390 px phone. Titles and legends are HTML around the panel (html.py), never drawn
inside it: text in a figure of fixed margins is what got clipped or drawn over. A panel of an emulated
target says so in its caption and axis label (wall time under qemu is not a device latency); guest
instruction counts get their own panels, labelled as counts. A panel without data is a note, not empty axes.
"""

from __future__ import annotations

import io
import re
import zlib
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, cast

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from edgekit.formats import Format, Precision
from edgekit.report.regression import throttle_reason
from edgekit.report.view import RecipeView
from edgekit.results import Measurement, TargetRun

EMULATED_NOTE = "EMULATED: qemu wall time, not device latency"
# tab10 first, then its lighter partners: 20 colours, a format's colour fixed by its place in Format
_TAB20: tuple[tuple[float, float, float], ...] = cast(Any, plt.get_cmap("tab20")).colors  # a ListedColormap
_PALETTE = _TAB20[::2] + _TAB20[1::2]
_COLOURS = {f.value: _PALETTE[i % len(_PALETTE)] for i, f in enumerate(Format)}
PRECISION_COLOURS = dict(zip(Precision, ("#4c72b0", "#55a868", "#c44e52", "#dd8452")))
WIDTH_IN = 4.4  # every panel: ~420 px at 100 %, three to a row at 1400 px, one (scaled to ~0.85) at 390 px
HEIGHT_IN = 2.8
_CHAR_IN = 0.075  # width of one 9 pt character, for margins sized to their labels without measuring text
plt.rcParams.update(
    {
        "svg.fonttype": "none",
        "svg.hashsalt": "edgekit",
        "font.size": 9,
        "axes.spines.top": False,
        "axes.spines.right": False,
    }
)


@dataclass(frozen=True)
class Panel:
    """One figure of the report: its caption (plain text), the SVG, or why there is none."""

    caption: str
    svg: str | None
    note: str = ""  # under the caption: a basis ("EMULATED: ...") or, without an SVG, why there is no data
    emulated: bool = False


def colour(artifact: str) -> tuple[float, float, float]:
    """A format's own colour; any other artifact id (a float-fallback variant, say) a stable pick of all."""
    return _COLOURS.get(artifact) or _PALETTE[zlib.crc32(artifact.encode()) % len(_PALETTE)]


def colour_hex(artifact: str) -> str:
    return to_hex(colour(artifact))


def trend(view: RecipeView, target: str) -> list[Panel]:
    """p50 per artifact over time, one panel per thread count, then instruction counts per thread count."""
    emulated = view.emulated(target)
    series, times = _trend_series(view, target)
    if not series:
        return [_no_data(target, "latency over time", emulated, view)]
    flagged = {(f.artifact, f.threads) for f in view.flags if f.target == target and f.is_bad}
    unreliable = _unreliable(view, target)
    ordered = sorted(series.items(), key=lambda kv: _order(kv[0][0]))
    estimated = _estimate_series(view, target) if emulated else {}
    panels = _estimate_trend(estimated, times, target) if estimated else []
    for n in sorted({k[1] for k in series} if not estimated else ()):
        fig, ax = _panel()
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
                if (artifact, th) in flagged:
                    ax.plot(xs[-1:], p50s[-1:], "o", ms=11, mfc="none", mec="red", mew=2)
        ax.set_ylabel("p50, emulated wall time (ms)" if emulated else "p50 latency (ms)")
        _time_axis(ax, times)
        panels.append(_done(fig, f"{target}, {_threads(n)}: p50 over time", emulated, _basis(emulated)))
    for n in sorted({k[1] for k in series}):
        counts = [
            (a, [(x, m.instructions_per_invoke) for x, _, m in pts if m.instructions_per_invoke])
            for (a, th), pts in ordered
            if th == n
        ]
        if not any(c for _, c in counts):
            continue
        fig, ax = _panel()
        for artifact, pts_c in counts:
            if pts_c:
                ax.plot(*zip(*pts_c), "-s", ms=3, lw=1.2, color=colour(artifact))
        ax.set_ylabel("instructions / invoke")
        _time_axis(ax, times)
        panels.append(
            _done(
                fig,
                f"{target}, {_threads(n)}: guest instruction count over time",
                emulated,
                "guest instruction count on the emulated core (not time)",
            )
        )
    return panels


def _estimate_series(view: RecipeView, target: str) -> dict[tuple[str, int], list[tuple[float, float, bool]]]:
    """An emulated target's board estimates per (artifact, threads): (time, estimate ms, interval validated) of
    every shown run that has them (a counted deploy's; the thread counts estimated but not run included)."""
    series: dict[tuple[str, int], list[tuple[float, float, bool]]] = defaultdict(list)
    for run in view.runs:
        for t in run.result.runs:
            if t.target != target:
                continue
            for artifact, n, est in _estimates(t):
                point = (
                    _date(run.started_ts),
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


def _estimate_trend(
    series: dict[tuple[str, int], list[tuple[float, float, bool]]], times: list[float], target: str
) -> list[Panel]:
    """On an emulated target that counted: the real board's estimated latency over time, one panel per thread
    count, in place of qemu's wall time (which is no device latency); dashed where the interval is not
    validated (a runtime without a calibration figure)."""
    panels = []
    ordered = sorted(series.items(), key=lambda kv: _order(kv[0][0]))
    for n in sorted({k[1] for k in series}):
        fig, ax = _panel()
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
        ax.set_ylabel("board ESTIMATE (ms)")
        _time_axis(ax, times)
        panels.append(
            _done(
                fig,
                f"{target}, {_threads(n)}: estimated board latency over time",
                True,
                "ESTIMATE of the real board from the guest instruction count on the emulated core, not a "
                "measurement; dashed: interval not validated",
            )
        )
    return panels


def _unreliable(view: RecipeView, target: str) -> set[int]:
    """The measurements (ids) of `target` whose timings were not judged: timed while other processes used the
    CPUs, or on a board that throttled (unreliable.py); emulated counts are exact whatever the load."""
    found = set()
    for run in view.runs:
        for t in run.result.runs:
            if t.target != target or t.agent is None or t.emulated:
                continue
            hot = throttle_reason(t) is not None
            found |= {id(m) for m in t.agent.measurements if hot or m.timed_while_busy}
    return found


def trend_artifacts(view: RecipeView) -> list[str]:
    """Every artifact `trend` draws a line for, on any target, in any run it shows (the legend names them all:
    a recipe's formats may change between runs)."""
    drawn = {artifact for target in view.targets for artifact, _ in _trend_series(view, target)[0]}
    return sorted(drawn, key=_order)


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
                times.append(_date(run.started_ts))
                for m in t.agent.measurements:
                    if m.status == "ok" and m.p50_ms is not None:
                        series[(m.artifact, m.threads)].append((_date(run.started_ts), m.p50_ms, m))
    return series, times


def distribution(view: RecipeView, target: str) -> list[Panel]:
    """Every sample of the target's newest run as horizontal box plots, one panel per thread count."""
    emulated = view.emulated(target)
    if emulated and (intervals := _estimate_intervals(view, target)):
        return intervals
    run_id, measured = _latest_ok(view, target)
    found = [m for m in measured if m.samples_ms]
    if not found:
        return [_no_data(target, "latency distribution", emulated, view)]
    panels = []
    for n in sorted({m.threads for m in found}):
        mine = sorted((m for m in found if m.threads == n), key=lambda m: _order(m.artifact), reverse=True)
        fig, ax = _panel(rows=len(mine), labels=[m.artifact for m in mine])
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
        ax.xaxis.set_major_formatter(FuncFormatter(_compact))
        above = _clip_outliers(ax, [m.samples_ms for m in mine])
        ax.set_xlabel("emulated wall time per invoke (ms)" if emulated else "latency per invoke (ms)")
        beyond = f"{above} sample{'s' if above > 1 else ''} beyond the axis" if above else ""
        note = "; ".join(s for s in (_basis(emulated), beyond) if s)
        panels.append(
            _done(fig, f"{target}, {_threads(n)}: latency distribution, run #{run_id}", emulated, note)
        )
    return panels


def _estimate_intervals(view: RecipeView, target: str) -> list[Panel]:
    """An emulated target that counted: its newest run's board estimates with their 80 % intervals, one row per
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
    panels = []
    for n in sorted(rows):
        mine = sorted(rows[n], key=lambda r: _order(r[0]), reverse=True)
        fig, ax = _panel(rows=len(mine), labels=[a for a, _ in mine])
        for i, (artifact, est) in enumerate(mine, 1):
            ms, low, high = (float(est[k]) for k in ("estimate_ms", "low_ms", "high_ms"))
            validated = est.get("interval_calibrated", True)
            ax.plot([low, high], [i, i], "-" if validated else "--", lw=2, color=colour(artifact))
            ax.plot([ms], [i], "o", ms=6, color=colour(artifact), mfc=None if validated else "white", mew=1.6)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(_compact))
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda _v, _p: ""))
        ax.set_yticks(range(1, len(mine) + 1), [a for a, _ in mine])
        ax.set_ylim(0.4, len(mine) + 0.6)
        ax.set_xlabel("board ESTIMATE (ms), 80% interval")
        panels.append(
            _done(
                fig,
                f"{target}, {_threads(n)}: estimated board latency and its 80% interval, run #{run.id}",
                True,
                "ESTIMATE of the real board from the guest instruction count on the emulated core, not a "
                "measurement; dashed, hollow: interval not validated; rows whose intervals hold each other's "
                "estimate are not ranked by them",
            )
        )
    return panels


def precisions(view: RecipeView, target: str) -> list[Panel]:
    """Per runtime: each precision's p50 (its speed-up over fp32 written on the bar), one panel per thread
    count; on an emulated target that counts instructions, instruction counts instead of wall time."""
    emulated = view.emulated(target)
    run_id, measured = _latest_ok(view, target)
    found = [m for m in measured if m.p50_ms]
    if not found:
        return [_no_data(target, "precisions vs fp32", emulated, view)]
    use_counts = emulated and all(m.instructions_per_invoke for m in found)
    basis = "guest instruction counts on the emulated core (not time)" if use_counts else _basis(emulated)
    panels = []
    for n in sorted({m.threads for m in found}):
        fig, ax = _panel()
        _precision_bars(ax, [m for m in found if m.threads == n], use_counts)
        ax.set_ylabel(
            "instructions / invoke"
            if use_counts
            else "p50, emulated wall time (ms)"
            if emulated
            else "p50 latency (ms)"
        )
        panels.append(
            _done(fig, f"{target}, {_threads(n)}: precisions vs fp32, run #{run_id}", emulated, basis)
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
    fig, ax = _panel(rows=len(arts), labels=[a.id for a in arts])
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
    return _done(fig, caption, False, f"red outline: below its gate ({failed})" if failed else "")


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


def _precision_bars(ax: Axes, found: list[Measurement], use_counts: bool) -> None:
    by_format = {m.format: m for m in found}
    runtimes = sorted(
        {Format(f).runtime for f in by_format if f in Format._value2member_map_}, key=lambda r: r.value
    )
    width = 0.8 / len(Precision)
    top = 0.0
    for i, runtime in enumerate(runtimes):
        fp32 = by_format.get(f"{runtime.value}-fp32")
        base = _value(fp32, use_counts) if fp32 else None
        for j, precision in enumerate(Precision):
            m = by_format.get(f"{runtime.value}-{precision.value}")
            value = _value(m, use_counts) if m else None
            if value is None:
                continue
            x = i + (j - (len(Precision) - 1) / 2) * width
            ax.bar(x, value, width * 0.9, color=PRECISION_COLOURS[precision])
            top = max(top, value)
            if base and precision is not Precision.FP32:
                ax.text(
                    x,
                    value,
                    f"{base / value:.2f}x",
                    ha="center",
                    va="bottom",
                    fontsize=7,
                    rotation=90 if len(runtimes) > 2 else 0,
                )
    ax.set_ylim(0, top * (1.3 if len(runtimes) > 2 else 1.15) or 1.0)  # room for the labels on the bars
    ax.set_xticks(range(len(runtimes)), [r.value for r in runtimes])
    ax.yaxis.set_major_locator(MaxNLocator(nbins=5))
    ax.yaxis.set_major_formatter(FuncFormatter(_compact))


def _order(artifact: str) -> tuple[int, str]:
    known = [f.value for f in Format]
    return (known.index(artifact) if artifact in known else len(known), artifact)


def _precision_colour(fmt: str) -> str:
    precision = Format(fmt).precision if fmt in Format._value2member_map_ else None
    return PRECISION_COLOURS[precision] if precision is not None else "grey"


def _value(m: Measurement | None, use_counts: bool) -> float | None:
    if m is None:
        return None
    return float(m.instructions_per_invoke) if use_counts and m.instructions_per_invoke else m.p50_ms


def _threads(n: int) -> str:
    return f"{n} thread{'s' if n != 1 else ''}"


def _basis(emulated: bool) -> str:
    return EMULATED_NOTE if emulated else ""


def _date(ts: float) -> float:
    return float(mdates.date2num(np.datetime64(int(ts), "s")))


def _compact(value: float, _pos: object = None) -> str:
    """Tick labels of at most 5 characters (180M, 12.5k, 0.25), so the fixed left margin always holds them."""
    magnitude = abs(value)
    # (from, unit, suffix): from 10,000 in thousands; a value that rounds to 1000 of a unit takes the next one
    for start, unit, suffix in ((999.5e6, 1e9, "G"), (999.5e3, 1e6, "M"), (1e4, 1e3, "k")):
        if magnitude >= start:
            return f"{value / unit:.3g}{suffix}"
    return f"{value:.4g}"


def _panel(*, rows: int = 0, labels: list[str] | None = None) -> tuple[Figure, Axes]:
    """One axes in a figure of fixed width. Margins are fixed in inches rather than measured (constrained
    layout measured every label and made a report several times slower); a panel of horizontal categories
    (`rows`) grows with them and gets a left margin sized to its longest label."""
    left = 0.75 if not labels else 0.25 + _CHAR_IN * max(len(s) for s in labels)
    height = HEIGHT_IN if not rows else max(HEIGHT_IN * 0.75, 0.9 + 0.3 * rows)
    bottom = 0.55
    fig = plt.figure(figsize=(WIDTH_IN, height))
    ax = fig.add_subplot()
    fig.subplots_adjust(
        left=left / WIDTH_IN, right=1 - 0.2 / WIDTH_IN, top=1 - 0.15 / height, bottom=bottom / height
    )
    if not rows:
        ax.yaxis.set_major_locator(MaxNLocator(nbins=5))
        ax.yaxis.set_major_formatter(FuncFormatter(_compact))
    return fig, ax


def _time_axis(ax: Axes, xs: list[float]) -> None:
    """Dates readable whether runs are minutes or months apart: the span of the runs with a margin (an hour
    either side of a single run, a minute at least), ticks chosen for that span and labelled concisely."""
    lo, hi = min(xs), max(xs)
    pad = 1 / 24 if hi == lo else max((hi - lo) * 0.06, 1 / 1440)
    ax.set_xlim(lo - pad, hi + pad)
    locator = mdates.AutoDateLocator(minticks=2, maxticks=4)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))


def _done(fig: Figure, caption: str, emulated: bool, note: str) -> Panel:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg")
    plt.close(fig)
    svg = re.sub(r"^.*?(<svg\b)", r"\1", buffer.getvalue(), count=1, flags=re.S)  # no XML prolog, DOCTYPE
    return Panel(caption, svg, note, emulated)
