"""The report's plots, drawn with matplotlib (Agg) as inline SVG text (no files, no network).

One small panel per figure, all the same width, so the page can lay them out in a grid that reflows from a
1400 px screen down to a 390 px phone. Titles and legends are HTML around the panel (html.py), never drawn
inside it: text in a figure of fixed margins is what got clipped or drawn over. A panel of an emulated
target says so in its caption and axis label (wall time under qemu is not a device latency); guest
instruction counts get their own panels, labelled as counts. A panel without data is a note, not empty axes.
The panel primitives are in panels.py; the trend over the runs shown in trend_plots.py; an emulated board's
estimate panels, which replace its wall time where it counted, in estimate_plots.py.
"""

from __future__ import annotations

from dataclasses import replace
from typing import cast

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from edgekit.formats import Format, Precision
from edgekit.report.baseline import on_counts
from edgekit.report.estimate_plots import (
    estimate_intervals,
)
from edgekit.report.older_rows import host_machines, machine_name
from edgekit.report.panels import (
    EMULATED_NOTE,
    PRECISION_COLOURS,
    Panel,
    colour,
    compact,
    finish,
    new_panel,
    order,
    threads_text,
)
from edgekit.report.series import HOST, same_series, series_key
from edgekit.report.unreliable import throttle_reason
from edgekit.report.view import RecipeView
from edgekit.results import Measurement, TargetRun
from edgekit.same_model import same_models

# what a panel of timings measured on the target says, as the others say ESTIMATE, EMULATED or count
MEASURED_NOTE = "MEASURED: latency timed on the target"


def machine_views(view: RecipeView, target: str) -> list[tuple[str, RecipeView]]:
    """(name, view) for each set of `target`'s panels: the target and the view itself; on the host with runs of
    more than one machine shown (a colleague's laptop imported beside the runner: older_rows.host_machines, as
    the latest table groups them), one per machine, named as the table names it ('host (AMD EPYC, 2 cores)'),
    its view holding only the runs whose host is that machine (series.same_series, as judging does). The trend
    drew the laptop's run as the runner's next point, every line jumping 2x, and the distribution showed the
    laptop's run alone with no CPU named."""
    machines = host_machines(view.runs) if target == HOST else {}
    if len(machines) < 2:
        return [(target, view)]
    return [
        (
            machine_name(key),
            replace(
                view,
                runs=[
                    r
                    for r in view.runs
                    if all(t.target != HOST or same_series(series_key(t), key) for t in r.result.runs)
                ],
            ),
        )
        for key in machines
    ]


def distribution(view: RecipeView, target: str, name: str = "") -> list[Panel]:
    """Every sample of the target's newest run as horizontal box plots, one panel per thread count; `name`: what
    the captions call the target (a host machine: machine_views)."""
    name = name or target
    emulated = view.emulated(target)
    if emulated and (intervals := estimate_intervals(view, target)):
        return intervals
    run_id, measured = _latest_ok(view, target)
    found = [m for m in measured if m.samples_ms]
    if not found:
        return [no_data(target, "latency distribution", emulated, view, name)]
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
        note = "; ".join(s for s in (_basis(emulated), unreliable_note(view, target, mine), beyond) if s)
        panels.append(
            finish(fig, f"{name}, {threads_text(n)}: latency distribution, run #{run_id}", emulated, note)
        )
    return panels


def precisions(view: RecipeView, target: str, name: str = "") -> list[Panel]:
    """Per runtime: each precision's p50 (its speed-up over fp32 written on the bar), one panel per thread
    count; on an emulated target, the instruction counts of what counted (what did not is left out, said), and
    with no count at all qemu's wall time without ratios on the bars (they are distorted under emulation: a
    "1.44x" there read as a win the route on the same page refused to rank). `name`: as distribution's."""
    name = name or target
    emulated = view.emulated(target)
    run_id, measured = _latest_ok(view, target)
    found = [m for m in measured if m.p50_ms]
    if not found:
        return [no_data(target, "precisions vs fp32", emulated, view, name)]
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
        mine = [m for m in found if m.threads == n]
        fig, ax = new_panel()
        _precision_bars(
            ax,
            mine,
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
        note = "; ".join(s for s in (basis, unreliable_note(view, target, mine)) if s)
        panels.append(
            finish(fig, f"{name}, {threads_text(n)}: precisions vs fp32, run #{run_id}", emulated, note)
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


def unreliable_note(view: RecipeView, target: str, drawn: list[Measurement]) -> str:
    """Why the timings a panel of the target's newest run draws are unreliable (the trend draws them hollow,
    the flags say so, and the panels said nothing): the board (an emulated target's host) throttled, or other processes used the CPUs
    while they were timed; '' when they are not. Counts are exact whatever the load (baseline.on_counts)."""
    found = view.latest_on(target)
    if found is None:
        return ""
    run: TargetRun = found[1]
    timed = [m for m in drawn if not on_counts(m, run.emulated)]
    if not timed:
        return ""
    if reason := throttle_reason(run):  # an emulated run's: its host's heat, where a drawn one counted none
        return f"timings unreliable, not judged: {reason}"
    busy = [m for m in timed if m.timed_while_busy]
    if not busy:
        return ""
    shares = sorted({f"{m.others_cpu_share or 0.0:.0%}" for m in busy}, key=lambda s: float(s[:-1]))
    share = shares[0] if len(shares) == 1 else f"{shares[0]} to {shares[-1]}"
    which = "" if len(busy) == len(timed) else " of " + ", ".join(dict.fromkeys(m.artifact for m in busy))
    return (
        f"timings{which} unreliable, not judged: timed while busy (other processes used {share} of "
        f"{target}'s CPUs)"
    )


def no_data(target: str, what: str, emulated: bool, view: RecipeView, name: str = "") -> Panel:
    found = view.latest_on(target)
    why = "no successful measurement in the runs shown"
    if found is not None and found[1].status != "ok":
        why += f" (run #{found[0].id}: {found[1].error or found[1].status})"
    return Panel(f"{name or target}: {what}", None, f"no data: {why}", emulated)


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
    box, (fig_w, fig_h) = ax.get_position(), cast(Figure, ax.figure).get_size_inches()
    slot_in = width * box.width * fig_w / max(len(routes), 1)  # one bar's room, inches
    height_in = box.height * fig_h
    room = 0.0  # the y-axis top that leaves every label its room above its bar
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
                label = "same model" if same else f"{base / value:.2f}x"
                # upright where it is wider than its bar's room: 'same model' ran into the next bar's '1.04x'
                # at two routes ('1.04xsame model')
                length_in = len(label) * LABEL_CHAR_IN
                upright = length_in > slot_in
                ax.text(x, value, label, ha="center", va="bottom", fontsize=7, rotation=90 if upright else 0)
                above_in = (length_in if upright else LABEL_CHAR_IN * 2) + 0.08
                room = max(room, value / max(1.0 - above_in / height_in, 0.3))
    ax.set_ylim(0, max(top * 1.08, room) or 1.0)  # room for the labels on the bars
    ax.set_xticks(range(len(routes)), [_route_label(r) for r in routes])
    ax.set_xlim(-0.5, len(routes) - 0.5)  # a group's room either side: not the first bar's edge at the y-axis
    ax.yaxis.set_major_locator(MaxNLocator(nbins=5))
    ax.yaxis.set_major_formatter(FuncFormatter(compact))


LABEL_CHAR_IN = 0.06  # the width of one 7 pt character of a bar's label, inches (a little over: never short)


def _precision_colour(fmt: str) -> str:
    precision = Format(fmt).precision if fmt in Format._value2member_map_ else None
    return PRECISION_COLOURS[precision] if precision is not None else "grey"


def _value(m: Measurement | None, use_counts: bool) -> float | None:
    if m is None:
        return None
    return float(m.instructions_per_invoke) if use_counts and m.instructions_per_invoke else m.p50_ms


def _basis(emulated: bool) -> str:
    return EMULATED_NOTE if emulated else MEASURED_NOTE
