"""What the report says of its latest run and of other machines' runs in a shared store: an imported run of a
killed deploy (no finished_at; `edgekit runs` says "no (not finished)") was shown as the latest with no word of
it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from edgekit.formats import Format
from edgekit.report import build
from edgekit.report.html import render as render_html
from edgekit.report.markdown import render as render_md
from edgekit.report.synthetic import synthetic_result
from edgekit.store import open_store

T0 = datetime(2026, 6, 1, 2, 0, tzinfo=UTC)


def test_a_latest_run_that_did_not_finish_says_so(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    results = [
        synthetic_result(T0 + timedelta(days=d), rng=rng, targets=("pi4",), formats=(Format.TFLITE_FP32,))
        for d in range(2)
    ]
    for result in results:
        result.ok = True
    results[1].finished_at, results[1].ok = None, False  # imported from a deploy that was killed
    with open_store(f"sqlite:///{tmp_path / 'killed.sqlite'}") as store:
        for result in results:
            store.record(result)
        (summary, _) = store.runs()
        report = build(store)
    assert summary.finished_at is None and not summary.ok
    md = render_md(report)
    heading = next(line for line in md.splitlines() if line.startswith("### ") and "run #2" in line)
    assert heading.endswith("UTC, not ok (not finished)") and "✅" not in heading, heading
    html = render_html(report)
    assert 'UTC, <span class="bad">not ok (not finished)</span>' in html
    with open_store(f"sqlite:///{tmp_path / 'ok.sqlite'}") as store:  # a run that is ok: no word of it
        store.record(results[0])
        ok = build(store)
    assert "not ok" not in render_md(ok) and "not ok" not in render_html(ok)


def test_another_machines_host_failure_names_the_machine_and_run(tmp_path: Path) -> None:
    """A store shared by two machines: a colleague's imported run whose host (another CPU) failed read 'host
    failed' under the runner's latest run, as if the runner's host had. The flag names the machine and the run,
    as the latest table does; a flag of the latest run's own host does not."""
    rng = np.random.default_rng(0)
    results = [
        synthetic_result(
            T0 + timedelta(days=d), rng=rng, targets=("host",), formats=(Format.TFLITE_FP32,), threads=(1,)
        )
        for d in range(4)
    ]
    laptop = results[2].runs[0]  # another machine, stored as `host` too; its measurement failed
    assert laptop.agent is not None
    laptop.agent.facts_before.cpu_model, laptop.agent.facts_before.cores = "Apple M2", 8
    laptop.status = "failed"
    for m in laptop.agent.measurements:
        m.status, m.error, m.p50_ms, m.samples_ms = "failed", "AgentError: model file unreadable", None, []
    with open_store(f"sqlite:///{tmp_path / 'shared.sqlite'}") as store:
        for result in results:
            store.record(result)
        report = build(store)
    (view,) = report.recipes
    (failed,) = [f for f in view.flags if f.is_bad]
    assert failed.run_id == 3 and failed.host_label == "host (Apple M2, 8 cores) run #3"
    md = render_md(report)
    line = next(x for x in md.splitlines() if x.startswith("- **failed**"))
    assert "host (Apple M2, 8 cores) run #3" in line, line
    assert "<td class=l data-label=target>host (Apple M2, 8 cores) run #3</td>" in render_html(report)
