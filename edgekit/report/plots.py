"""The report's plots, drawn with matplotlib (Agg) and returned as inline SVG text (no files, no network).

Every plot of an emulated target says so in its title and axis label: wall time under qemu is not a device
latency. Where guest instruction counts exist they get their own panel, labelled as counts.
"""

from __future__ import annotations

import io
import re
from collections import defaultdict
from typing import Any, cast

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from edgekit.formats import Format, Precision
from edgekit.report.view import RecipeView
from edgekit.results import Measurement

EMULATED_NOTE = "EMULATED: qemu wall time, not device latency"
_PALETTE: tuple[tuple[float, float, float], ...] = cast(Any, plt.get_cmap("tab10")).colors  # a ListedColormap
_COLOURS = {f.value: _PALETTE[i] for i, f in enumerate(Format)}
_PRECISION_COLOURS = dict(zip(Precision, ("#4c72b0", "#55a868", "#c44e52", "#dd8452")))
plt.rcParams.update(
    {
        "svg.fonttype": "none",
        "svg.hashsalt": "edgekit",
        "font.size": 9,
        "axes.spines.top": False,
        "axes.spines.right": False,
    }
)


def colour(artifact: str) -> tuple[float, float, float]:
    return _COLOURS.get(artifact, _PALETTE[(hash(artifact) % 3) + 7])


def trend(view: RecipeView, target: str) -> str:
    """p50 per artifact over time, one panel per thread count (+ instruction counts when present)."""
    emulated = view.emulated(target)
    series: dict[tuple[str, int], list[tuple[float, Measurement, bool]]] = defaultdict(list)
    for run in view.runs:
        for t in run.result.runs:
            if t.target == target and t.agent:
                for m in t.agent.measurements:
                    if m.status == "ok" and m.p50_ms is not None:
                        series[(m.artifact, m.threads)].append((run.started_ts, m, t.emulated))
    threads = sorted({k[1] for k in series}) or [1]
    all_x = [mdates.date2num(np.datetime64(int(run.started_ts), "s")) for run in view.runs]
    counted = any(m.instructions_per_invoke for pts in series.values() for _, m, _ in pts)
    rows = 2 if counted else 1
    fig = _figure(rows, len(threads), height=2.9 * rows + 0.4, legend=True)
    flagged = {(f.artifact, f.threads) for f in view.flags if f.target == target and f.is_regression}
    for col, n in enumerate(threads):
        ax = fig.axes[col]
        for (artifact, th), pts in sorted(series.items(), key=lambda kv: _order(kv[0][0])):
            if th != n:
                continue
            xs = [mdates.date2num(np.datetime64(int(ts), "s")) for ts, _, _ in pts]
            ax.plot(
                xs, np.array([m.p50_ms for _, m, _ in pts], dtype=float), "-o", ms=3, lw=1.4, color=colour(artifact), label=artifact
            )
            if (artifact, th) in flagged:
                ax.plot(xs[-1:], np.array([pts[-1][1].p50_ms], dtype=float), "o", ms=11, mfc="none", mec="red", mew=2)
            if counted and rows == 2:
                counts = [
                    (x, m.instructions_per_invoke)
                    for x, (_, m, _) in zip(xs, pts)
                    if m.instructions_per_invoke
                ]
                if counts:
                    fig.axes[len(threads) + col].plot(
                        *zip(*counts), "-s", ms=3, lw=1.2, color=colour(artifact)
                    )
        _title(ax, f"{target}, {n} thread{'s' if n > 1 else ''}" + (" [emulated]" if emulated else ""))
        ax.set_ylabel("p50, emulated wall time (ms)" if emulated else "p50 latency (ms)")
        if counted:
            cax = fig.axes[len(threads) + col]
            cax.set_ylabel("instructions / invoke (count)")
            _title(cax, "guest instruction count (not time)")
            _dates(cax, all_x)
        _dates(ax, all_x)
    _legend(fig)
    return _svg(fig, f"Latency trend on {target}" + (f" ({EMULATED_NOTE})" if emulated else ""))


def _latest_ok(view: RecipeView, target: str) -> list[Measurement]:
    """The successful measurements of the latest run on one target."""
    return [
        m
        for t in view.latest.result.runs
        if t.target == target and t.agent
        for m in t.agent.measurements
        if m.status == "ok"
    ]


def distribution(view: RecipeView, target: str) -> str:
    """Box plots of every sample of the latest run, one panel per thread count."""
    emulated = view.emulated(target)
    found = [m for m in _latest_ok(view, target) if m.samples_ms]
    threads = sorted({m.threads for m in found}) or [1]
    fig = _figure(1, len(threads), height=3.6)
    for ax, n in zip(fig.axes, threads):
        mine = [m for m in found if m.threads == n]
        boxes = ax.boxplot(
            [m.samples_ms for m in mine],
            patch_artist=True,
            widths=0.6,
            medianprops={"color": "black"},
            flierprops={"markersize": 2.5, "alpha": 0.6},
        )
        for patch, m in zip(boxes["boxes"], mine):
            patch.set_facecolor(colour(m.artifact))
            patch.set_alpha(0.75)
        ax.set_xticks(range(1, len(mine) + 1), [m.artifact for m in mine], rotation=30, ha="right")
        _clip_outliers(ax, [m.samples_ms for m in mine])
        _title(ax, f"{target}, {n} thread{'s' if n > 1 else ''}" + (" [emulated]" if emulated else ""))
        ax.set_ylabel("emulated wall time per invoke (ms)" if emulated else "latency per invoke (ms)")
    return _svg(
        fig, f"Latency distribution, latest run on {target}" + (f" ({EMULATED_NOTE})" if emulated else "")
    )


def int8_vs_fp32(view: RecipeView, target: str) -> str:
    """Per runtime: p50 of each precision (speed-up over fp32 written on the bar), and fidelity loss."""
    emulated = view.emulated(target)
    found = [m for m in _latest_ok(view, target) if m.p50_ms]
    use_counts = emulated and bool(found) and all(m.instructions_per_invoke for m in found)
    threads = sorted({m.threads for m in found}) or [1]
    fig = _figure(1, len(threads) + 1, height=3.8, legend=True)
    for ax, n in zip(fig.axes, threads):
        _precision_bars(ax, [m for m in found if m.threads == n], use_counts)
        _title(ax, f"{target}, {n} thread{'s' if n > 1 else ''}" + (" [emulated]" if emulated else ""))
        ax.set_ylabel(
            "instructions / invoke (count)"
            if use_counts
            else "p50, emulated wall time (ms)"
            if emulated
            else "p50 latency (ms)"
        )
    _fidelity_bars(fig.axes[-1], view)
    handles = [matplotlib.patches.Patch(color=c, label=p.value) for p, c in _PRECISION_COLOURS.items()]
    fig.legend(handles=handles, loc="upper right", frameon=False, fontsize=8, title="precision")
    basis = " (instruction counts)" if use_counts else f" ({EMULATED_NOTE})" if emulated else ""
    return _svg(fig, f"INT8 and other precisions vs fp32 on {target}{basis}")


def _clip_outliers(ax: Axes, samples: list[list[float]]) -> None:
    """Keep a few far outliers from flattening every box: clip the axis at 3 IQR above the upper quartiles."""
    if not samples:
        return
    fences = []
    for s in samples:
        q1, q3 = np.percentile(s, [25, 75])
        fences.append(min(float(np.max(s)), float(q3 + 3.0 * max(q3 - q1, 0.01 * q3))))
    top, low = max(fences), min(min(s) for s in samples)
    above = sum(int((np.asarray(s) > top * 1.08).sum()) for s in samples)
    if above:
        ax.set_ylim(max(0.0, low - 0.1 * (top - low)), top * 1.08)
        ax.text(
            0.99,
            0.98,
            f"{above} sample{'s' if above > 1 else ''} above the axis",
            transform=ax.transAxes,
            ha="right",
            va="top",
            fontsize=7,
            color="#6b7785",
        )


def _precision_bars(ax: Axes, found: list[Measurement], use_counts: bool) -> None:
    by_format = {m.format: m for m in found}
    runtimes = sorted(
        {Format(f).runtime for f in by_format if f in Format._value2member_map_}, key=lambda r: r.value
    )
    width = 0.2
    for i, runtime in enumerate(runtimes):
        fp32 = by_format.get(f"{runtime.value}-fp32")
        base = _value(fp32, use_counts) if fp32 else None
        for j, precision in enumerate(Precision):
            m = by_format.get(f"{runtime.value}-{precision.value}")
            value = _value(m, use_counts) if m else None
            if value is None:
                continue
            x = i + (j - 1.5) * width
            ax.bar(x, value, width * 0.9, color=_PRECISION_COLOURS[precision])
            if base and precision is not Precision.FP32:
                ax.text(x, value, f"{base / value:.2f}x", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(runtimes)), [r.value for r in runtimes])


def _fidelity_bars(ax: Axes, view: RecipeView) -> None:
    # "nines" of the cosine on a linear axis: as readable as a log axis of 1 - cosine, much cheaper to draw
    arts = [a for a in view.latest.result.artifacts if isinstance(a.fidelity.get("cosine"), (int, float))]
    nines = [float(-np.log10(max(1.0 - float(a.fidelity["cosine"]), 1e-9))) for a in arts]
    colours = [_precision_colour(a.format) for a in arts]
    ax.bar(
        range(len(arts)),
        nines,
        color=colours,
        edgecolor=["red" if not a.gates_passed else "none" for a in arts],
        linewidth=2,
    )
    ax.set_xticks(range(len(arts)), [a.id for a in arts], rotation=30, ha="right")
    _title(ax, "fidelity vs original model")
    ax.set_ylabel("cosine nines: -log10(1 - cosine)")


def _order(artifact: str) -> tuple[int, str]:
    known = [f.value for f in Format]
    return (known.index(artifact) if artifact in known else len(known), artifact)


def _precision(fmt: str) -> Precision | None:
    return Format(fmt).precision if fmt in Format._value2member_map_ else None


def _precision_colour(fmt: str) -> str:
    precision = _precision(fmt)
    return _PRECISION_COLOURS.get(precision, "grey") if precision is not None else "grey"


def _value(m: Measurement | None, use_counts: bool) -> float | None:
    if m is None:
        return None
    return float(m.instructions_per_invoke) if use_counts and m.instructions_per_invoke else m.p50_ms


def _figure(rows: int, cols: int, *, height: float, legend: bool = False) -> Figure:
    # Fixed margins rather than constrained layout: measuring every label made a report several times slower.
    width = min(4.2 * cols, 13.0) + (1.6 if legend else 0.0)
    fig = plt.figure(figsize=(width, height))
    fig.subplots(rows, cols, squeeze=False)
    right = 1.0 - ((1.6 if legend else 0.15) / width)
    fig.subplots_adjust(
        left=0.75 / width, right=right, top=1.0 - 0.75 / height, bottom=0.9 / height, wspace=0.35, hspace=0.55
    )
    return fig


def _title(ax: Axes, text: str) -> None:
    # An explicit y skips matplotlib's search for a title position clear of the tick labels: that search
    # measured a fifth of the report's time, and these axes have no ticks on top.
    ax.set_title(text, y=1.0, pad=6)
    ax.yaxis.set_major_locator(MaxNLocator(nbins=6))


def _dates(ax: Axes, xs: list[float]) -> None:
    if xs and max(xs) - min(xs) < 0.5:  # one night only: a day either side, not matplotlib's years
        ax.set_xlim(min(xs) - 1.0, max(xs) + 1.0)
    locator = mdates.AutoDateLocator(maxticks=6)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))


def _legend(fig: Figure) -> None:
    handles, labels = fig.axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="upper right", frameon=False, fontsize=8)


def _svg(fig: Figure, title: str) -> str:
    fig.suptitle(title, fontsize=10, fontweight="bold")
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg")
    plt.close(fig)
    text = buffer.getvalue()
    return re.sub(r"^.*?(<svg\b)", r"\1", text, count=1, flags=re.S)  # drop the XML prolog and DOCTYPE
