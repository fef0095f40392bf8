"""A deploy interrupted before its agent measured anything (Ctrl-C during the push, or before the agent printed
its start) stores its target with no measurement rows at all. The report's latest table then said `_no
measurements_` under `run #2 ... interrupted` while an older complete run existed. A measurement the interrupted
run did not take shows the newest older run's, its cell naming that run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from edgekit.formats import Format
from edgekit.report import build
from edgekit.report.synthetic import synthetic_result
from edgekit.store import open_store

T0 = datetime(2026, 6, 1, 2, 0, tzinfo=UTC)
FORMATS = (Format.TFLITE_FP32, Format.NCNN_FP32)


def _nights(stop_second: bool) -> list:
    rng = np.random.default_rng(11)
    nights = [
        synthetic_result(T0 + timedelta(days=d), rng=rng, targets=("pi4",), formats=FORMATS, threads=(1,))
        for d in range(2)
    ]
    if stop_second:
        (pi4,) = nights[1].runs
        pi4.agent, pi4.interrupted, pi4.status = None, True, "failed"
        pi4.comparisons = []
        pi4.error = "run: interrupted (Ctrl-C or SIGTERM); not run: tflite-fp32, ncnn-fp32"
        nights[1].routes = []
    return nights


def _report(path: Path, nights: list) -> str:
    from edgekit.report.markdown import render

    with open_store(f"sqlite:///{path}") as store:
        for result in nights:
            store.record(result)
        report = build(store)
    return render(report)


def test_a_run_interrupted_before_any_row_shows_the_older_runs_figures_naming_it(tmp_path: Path) -> None:
    nights = _nights(stop_second=True)
    older = {m.artifact: m.p50_ms for m in nights[0].runs[0].agent.measurements}  # type: ignore[union-attr]
    md = _report(tmp_path / "s.sqlite", nights)
    assert "_no measurements_" not in md, md
    table = md.split("| artifact")[1].split("\n\n")[0]
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ") for line in table.splitlines()[2:]}
    assert set(rows) == set(older), table
    for artifact, p50 in older.items():
        cell = rows[artifact][1]
        assert cell.endswith(" (run #1)"), table  # the cell names the run its figure is from
        assert abs(float(cell.split()[0]) - p50) <= 1e-3 * p50, (cell, p50)  # run #1's p50, as shown
    assert "not run (interrupted)" not in table


def test_a_complete_latest_run_names_no_older_run(tmp_path: Path) -> None:
    md = _report(tmp_path / "s.sqlite", _nights(stop_second=False))
    table = md.split("| artifact")[1].split("\n\n")[0]
    assert "run #1" not in table, table
