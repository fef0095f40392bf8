"""The report's plots, reviewed on a nightly store: the precision bars gave an int8 speed-up to an ncnn-int8
that is its fp32 model (its speed plan kept every layer float), and one busy-machine run flattened a whole
latency trend."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from edgekit.formats import Format
from edgekit.report import build, plots, trend_plots
from edgekit.report.synthetic import synthetic_result
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
