"""What the agent's facts say of a run's figures, said where the figures are (review r14 #3, #5): an affinity it could
not apply (`affinity: 3` on a 2-core phone: 'not pinned: [Errno 22] Invalid argument', exit 0 and nothing printed),
and memory figures read where freed memory cannot go back to the OS (`memory_released` false: bionic, musl, macOS)
or a peak since the agent started (`peak_rss_scope` process), which no table, note or report read. Built through
the real `runs import`, `runs show` and `report --html` on a SQLite store; bench prints the same lines (test_bench)."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import numpy as np
import procs

from edgekit.formats import Format
from edgekit.report.synthetic import synthetic_result

_edgekit = partial(procs.run, columns=300)


def test_a_phone_runs_affinity_and_memory_caveats_are_shown(tmp_path: Path) -> None:
    """r14's tphone run as a bionic phone records it: pinned to cpu 3 of two (not applied), memory not released,
    the peak the process's."""
    night = synthetic_result(
        datetime(2026, 10, 1, 2, 0, tzinfo=UTC),
        rng=np.random.default_rng(1),
        formats=(Format.TFLITE_FP32,),
        targets=("pi4",),
        threads=(1,),
    )
    agent = night.runs[0].agent
    assert agent is not None
    agent.facts_before.affinity = {
        "requested": "3",
        "cpus": [0, 1],
        "note": "not pinned: [Errno 22] Invalid argument",
    }
    for m in agent.measurements:
        m.peak_rss_mb, m.rss_delta_mb, m.memory_released, m.peak_rss_scope = 80.0, 6.0, False, "process"
    path = tmp_path / "phone.json"
    path.write_text(night.model_dump_json())
    url, home = f"sqlite:///{tmp_path / 'results.sqlite'}", tmp_path / "home"
    imported = _edgekit("runs", "import", str(path), "--store", url, home=home)
    assert imported.returncode == 0, imported.stdout + imported.stderr
    show = _edgekit("runs", "show", "1", "--verbose", "--store", url, home=home)
    assert show.returncode == 0, show.stdout + show.stderr
    text = " ".join(show.stdout.split())
    assert (
        "pi4: affinity 3 not applied as asked: not pinned: [Errno 22] Invalid argument (ran on cpus 0,1)"
        in text
    )
    assert "memory_released false" in text and "model RSS + may read low" in text, text
    assert "peak_rss_scope process" in text, text
    html = tmp_path / "r.html"
    made = _edgekit("report", "--since", "all", "--html", str(html), "--store", url, home=home)
    assert made.returncode == 0, made.stdout + made.stderr
    page = html.read_text()
    assert "affinity 3 not applied as asked" in page and "memory_released false" in page


def test_an_affinity_caveat_is_said_only_where_the_cores_differ_from_the_ask() -> None:
    from edgekit.report.lines import affinity_caveat

    assert affinity_caveat({"requested": "0,2-3", "cpus": [0, 2, 3], "note": None}) is None
    assert affinity_caveat({"requested": "big", "cpus": [4, 5, 6, 7], "note": None}) is None
    assert affinity_caveat(None) is None
    assert affinity_caveat({"requested": "2-3", "cpus": [2], "note": None}) == (
        "affinity 2-3 not applied as asked (ran on cpus 2)"
    )
    assert (
        affinity_caveat(
            {
                "requested": "big",
                "cpus": [0, 1],
                "note": "no per-core max frequency readable: big = all cores",
            }
        )
        == "affinity big not applied as asked: no per-core max frequency readable: big = all cores (ran on cpus 0,1)"
    )
