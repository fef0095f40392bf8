"""What a plot panel says under its caption about the run it draws.

The trend draws a run timed while other processes used the CPUs (or on a board that throttled) hollow, and the
flags call it unreliable; the distribution and precision panels of that same newest run said only "host, 1
thread: latency distribution, run #405", as if its timings were as good as any.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from edgekit.formats import Format
from edgekit.report import build, plots
from edgekit.report.flags import FlagKind
from edgekit.report.synthetic import synthetic_result
from edgekit.report.view import RecipeView
from edgekit.results import BUSY_SHARE, DeployResult
from edgekit.store import open_store

T0 = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)
FORMATS = (Format.TFLITE_FP32, Format.TFLITE_INT8)


def _view(tmp_path: Path, newest: DeployResult) -> RecipeView:
    rng = np.random.default_rng(11)
    url = f"sqlite:///{tmp_path / 'notes.sqlite'}"
    with open_store(url) as store:
        for night in range(5):
            store.record(
                synthetic_result(
                    T0 + timedelta(days=night),
                    rng=rng,
                    targets=("pi4", "host"),
                    formats=FORMATS,
                    threads=(1, 2),
                )
            )
        store.record(newest)
        report = build(store)
    (view,) = report.recipes
    return view


def _busy(share: float, threads: int | None = None) -> DeployResult:
    """The newest night, with other processes using `share` of the host's CPUs (at `threads` only, or all)."""
    result = synthetic_result(
        T0 + timedelta(days=5),
        rng=np.random.default_rng(12),
        targets=("pi4", "host"),
        formats=FORMATS,
        threads=(1, 2),
    )
    host = next(t for t in result.runs if t.target == "host")
    assert host.agent is not None
    for m in host.agent.measurements:
        if threads is None or m.threads == threads:
            m.others_cpu_share = share
    return result


def _notes(view: RecipeView, target: str) -> dict[str, str]:
    panels = [*plots.distribution(view, target), *plots.precisions(view, target)]
    assert len(panels) == 4 and all(p.svg for p in panels), [p.caption for p in panels]
    return {p.caption: p.note for p in panels}


def test_the_newest_runs_panels_say_its_timings_were_taken_while_busy(tmp_path: Path) -> None:
    view = _view(tmp_path, _busy(0.6))
    flagged = [f for f in view.flags if f.kind is FlagKind.UNRELIABLE and f.where == "host"]
    assert flagged, view.flags  # the flags call it unreliable
    for caption, note in _notes(view, "host").items():
        assert "unreliable" in note and "60%" in note and "busy" in note, (caption, note)
    for caption, note in _notes(view, "pi4").items():  # the board beside it was not busy
        assert "unreliable" not in note, (caption, note)


def test_only_the_busy_thread_counts_panels_say_so(tmp_path: Path) -> None:
    view = _view(tmp_path, _busy(0.45, threads=2))
    notes = _notes(view, "host")
    assert len(notes) == 4
    for caption, note in notes.items():
        assert ("unreliable" in note) is ("2 threads" in caption), (caption, note)
        assert "45%" in note or "2 threads" not in caption, (caption, note)


@pytest.mark.parametrize("share", [BUSY_SHARE / 2, None])
def test_a_run_that_was_not_busy_says_nothing_of_it(tmp_path: Path, share: float | None) -> None:
    """Others' share below BUSY_SHARE, or not recorded at all (an older agent): nothing said."""
    result = _busy(share) if share is not None else _busy(0.0, threads=99)
    view = _view(tmp_path, result)
    for caption, note in _notes(view, "host").items():
        assert "unreliable" not in note, (caption, note)


def test_a_board_that_throttled_says_so_in_its_panels(tmp_path: Path) -> None:
    newest = synthetic_result(
        T0 + timedelta(days=5),
        rng=np.random.default_rng(13),
        targets=("pi4", "host"),
        formats=FORMATS,
        threads=(1, 2),
        throttled={"pi4": "0x50005"},
    )
    view = _view(tmp_path, newest)
    for caption, note in _notes(view, "pi4").items():
        assert "unreliable" in note and "throttled" in note, (caption, note)
    for caption, note in _notes(view, "host").items():
        assert "unreliable" not in note, (caption, note)
