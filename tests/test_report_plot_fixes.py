"""The report's plots, reviewed on a nightly store: the precision bars gave an int8 speed-up to an ncnn-int8
that is its fp32 model (its speed plan kept every layer float), and one busy-machine run flattened a whole
latency trend."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from edgekit.formats import Format
from edgekit.report import build, plots, trend_plots
from edgekit.report.synthetic import add_estimates, synthetic_result
from edgekit.store import open_store

T0 = datetime(2026, 6, 1, 2, 0, tzinfo=UTC)


def test_an_int8_that_is_its_fp32_model_has_no_speed_up_on_its_bar(tmp_path: Path) -> None:
    """The route and the latest table say 'same model ... not ranked' for it (same_models); the bars said
    1.11x. Its bar now says 'same model'; tflite-int8's ratio is still written."""
    formats = (Format.TFLITE_FP32, Format.TFLITE_INT8, Format.NCNN_FP32, Format.NCNN_INT8)
    result = synthetic_result(
        T0, rng=np.random.default_rng(0), targets=("pi4",), formats=formats, threads=(1,)
    )
    for art in result.artifacts:  # as deploy records it (record_same_models)
        art.same_model_checked = True
        if art.id == "ncnn-int8":
            art.same_model_as, art.same_model_why = "ncnn-fp32", "the speed plan kept every layer float"
    with open_store(f"sqlite:///{tmp_path / 'same.sqlite'}") as store:
        store.record(result)
        (view,) = build(store).recipes
    (panel,) = plots.precisions(view, "pi4")
    svg = panel.svg or ""
    assert len(re.findall(r">(\d+\.\d\d)x<", svg)) == 1  # tflite-int8 over tflite-fp32 only
    assert ">same model<" in svg


def test_one_unreliable_run_does_not_flatten_the_latency_trend(tmp_path: Path) -> None:
    """A busy-machine run (timed while busy, not judged) at thousands of times the usual p50 set the trend's
    axis to 0-220 ms around points of a few ms. The axis now spans the judged points and the caption counts the
    point beyond it."""
    rng = np.random.default_rng(0)
    results = [
        synthetic_result(
            T0 + timedelta(days=d), rng=rng, targets=("pi4",), formats=(Format.TFLITE_FP32,), threads=(1,)
        )
        for d in range(6)
    ]
    busy = results[3].runs[0].agent.measurements[0]  # type: ignore[union-attr]
    usual = busy.p50_ms or 0.0
    busy.p50_ms, busy.others_cpu_share = usual * 5000, 0.9  # timed while busy
    with open_store(f"sqlite:///{tmp_path / 'busy.sqlite'}") as store:
        for result in results:
            store.record(result)
        (view,) = build(store).recipes
    (panel,) = trend_plots.trend(view, "pi4")
    assert "1 unreliable point beyond the axis" in panel.note, panel.note
    ticks = [float(t) for t in re.findall(r">(\d+(?:\.\d+)?)</text>", panel.svg or "")]
    assert ticks and max(ticks) < usual * 3, (ticks, usual)


def _host_runs(tmp_path: Path) -> Path:
    """Five nights of the runner's host (AMD EPYC, 2 cores), then a colleague's laptop run imported into the same
    store (Intel i7, 4 cores, every artifact 2x slower), the newest run: each machine stores itself as `host`."""
    rng = np.random.default_rng(3)
    formats = (Format.TFLITE_FP32, Format.TFLITE_INT8)
    url = f"sqlite:///{tmp_path / 'hosts.sqlite'}"
    with open_store(url) as store:
        for night in range(6):
            laptop = night == 5
            result = synthetic_result(
                T0 + timedelta(days=night), rng=rng, targets=("host",), formats=formats, threads=(1,),
                slowdown={(f.value, "host"): 2.0 for f in formats} if laptop else None,
            )  # fmt: skip
            facts = result.runs[0].agent.facts_before  # type: ignore[union-attr]
            facts.cpu_model, facts.cores = ("Intel i7", 4) if laptop else ("AMD EPYC", 2)
            store.record(result)
    return tmp_path / "hosts.sqlite"


def test_each_host_machine_gets_its_own_plots_named_with_its_cpu(tmp_path: Path) -> None:
    """r13 #2: a colleague's laptop run imported into the runner's store was drawn as the next point of the
    runner's host trend (every line jumping 2x), and the distribution and precisions showed the laptop's run
    alone under `host`, no CPU named, beside flags about the runner's. Each machine now has its own panels,
    named as the latest table names it."""
    from edgekit.report import html
    from edgekit.report.plots import machine_views

    with open_store(f"sqlite:///{_host_runs(tmp_path)}") as store:
        report = build(store)
    (view,) = report.recipes
    assert {row.target for row in view.rows} == {"host (Intel i7, 4 cores)", "host (AMD EPYC, 2 cores)"}
    views = dict(machine_views(view, "host"))
    assert list(views) == ["host (Intel i7, 4 cores)", "host (AMD EPYC, 2 cores)"]
    runner = views["host (AMD EPYC, 2 cores)"]
    series, times = trend_plots._trend_series(runner, "host")
    assert len(times) == 5  # the runner's nights only
    for pts in series.values():
        p50s = [p for _, p, _ in pts]
        assert max(p50s) / min(p50s) < 1.2, p50s  # no 2x jump: the laptop's run is not on its lines
    assert len(trend_plots._trend_series(views["host (Intel i7, 4 cores)"], "host")[1]) == 1
    page = html.render(report)
    captions = re.findall(r"<figcaption>(.*?)<", page)
    for machine, run in (("host (AMD EPYC, 2 cores)", 5), ("host (Intel i7, 4 cores)", 6)):
        assert f"{machine}, 1 thread: p50 over time" in captions, captions
        assert f"{machine}, 1 thread: latency distribution, run #{run}" in captions, captions
        assert f"{machine}, 1 thread: precisions vs fp32, run #{run}" in captions, captions
    assert not any(c.startswith("host,") for c in captions), captions
    # one machine: the panels stay `host`'s
    assert [name for name, _ in machine_views(replace(view, runs=view.runs[:5]), "host")] == ["host"]


def test_measured_panels_say_measured(tmp_path: Path) -> None:
    """r13 #5: every other kind of panel says ESTIMATE, EMULATED or count; the measured ones said nothing."""
    with open_store(f"sqlite:///{_host_runs(tmp_path)}") as store:
        (view,) = build(store).recipes
    for _, mine in plots.machine_views(view, "host"):
        panels = (
            trend_plots.trend(mine, "host")
            + plots.distribution(mine, "host")
            + plots.precisions(mine, "host")
        )
        assert len(panels) == 3 and all(p.note.startswith("MEASURED") for p in panels), [
            p.note for p in panels
        ]


def test_estimate_panels_of_a_thread_count_not_run_say_so(tmp_path: Path) -> None:
    """r13 #5: a capped plan ran pi5-emu at 1 thread only and estimated 2 threads from its counts; the '2
    threads' estimate panels read as runs at 2 threads (`runs show` says 'not run: estimated from the 1-thread
    run's instruction counts'). They now say so, naming the runs where only some were not run."""
    rng = np.random.default_rng(4)
    formats = (Format.TFLITE_FP32, Format.NCNN_FP32)
    with open_store(f"sqlite:///{tmp_path / 'capped.sqlite'}") as store:
        for night in range(4):
            capped = night >= 2
            result = synthetic_result(
                T0 + timedelta(days=night), rng=rng, targets=("pi5-emu",), formats=formats,
                threads=(1,) if capped else (1, 2),
            )  # fmt: skip
            add_estimates(result)
            estimates = result.runs[0].estimates
            if capped:  # deploy's 2-thread ESTIMATE rows from the 1-thread counts
                estimates.update({k.replace(" x1", " x2"): dict(v) for k, v in list(estimates.items())})
            store.record(result)
        (view,) = build(store).recipes
    words = "not run at 2 threads: estimated from the 1-thread run's instruction counts"
    trends = {p.caption: p.note for p in trend_plots.trend(view, "pi5-emu") if "estimated board" in p.caption}
    assert trends["pi5-emu, 2 threads: estimated board latency over time"].endswith(f"; runs #3, #4 {words}")
    assert "not run" not in trends["pi5-emu, 1 thread: estimated board latency over time"]
    intervals = {p.caption.split(":")[0]: p.note for p in plots.distribution(view, "pi5-emu")}
    assert intervals["pi5-emu, 2 threads"].endswith(f"; {words}"), intervals
    assert "not run" not in intervals["pi5-emu, 1 thread"], intervals
