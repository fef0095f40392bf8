"""The report's 'level accepted at run #N' note (and the trend's mark) stands only while that accepted level is
still the key's baseline: a later change (a fix back below it, a further level accepted) moves the key on
(host-only: a synthetic SQLite store, no device)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from edgekit.formats import Format
from edgekit.report import build
from edgekit.report.markdown import render
from edgekit.report.synthetic import synthetic_result
from edgekit.store import Store, open_store

T0 = datetime(2026, 6, 1, 2, 0, tzinfo=UTC)


def _record(store: Store, levels: list[float], rng: np.random.Generator, start: int) -> None:
    for day, level in enumerate(levels, start):
        store.record(
            synthetic_result(
                T0 + timedelta(days=day),
                rng=rng,
                targets=("pi4",),
                formats=(Format.TFLITE_FP32,),
                threads=(1,),
                slowdown={("tflite-fp32", "pi4"): level},
            )
        )


def _notes(store: Store) -> list[str]:
    report = build(store)
    (view,) = report.recipes
    md = render(report)
    lines = [a.line() for a in view.accepted()]
    assert all(line in md for line in lines), md
    assert sum("level accepted at run #" in row for row in md.splitlines()) == len(lines), md
    return [line.split(" on ")[0] for line in lines]


def test_the_note_goes_once_the_key_is_back_below_the_accepted_level(tmp_path: Path) -> None:
    """Review: +30 % accepted at run #11, then four nights back at the earlier level (a fix; the baseline left
    the accepted level for them): the report still said 'level accepted at run #11'."""
    rng = np.random.default_rng(7)
    with open_store(f"sqlite:///{tmp_path / 'fix.sqlite'}") as store:
        _record(store, [1.0] * 10 + [1.3], rng, 0)
        store.accept(11, target="pi4", keys=[("pi4", "tflite-fp32", 1)])
        _record(store, [1.3] * 3, rng, 11)
        assert _notes(store) == ["level accepted at run #11"]  # still the key's level
        _record(store, [1.0] * 4, rng, 14)
        assert build(store).regressions == []
        assert _notes(store) == []


def test_a_later_accepted_level_replaces_the_earlier_note(tmp_path: Path) -> None:
    """+30 % accepted at run #11, then a further +25 % accepted at run #16: one note, run #16's."""
    rng = np.random.default_rng(3)
    with open_store(f"sqlite:///{tmp_path / 'later.sqlite'}") as store:
        _record(store, [1.0] * 10 + [1.3], rng, 0)
        store.accept(11, target="pi4", keys=[("pi4", "tflite-fp32", 1)])
        _record(store, [1.3] * 4 + [1.625], rng, 11)
        assert build(store).regressions  # the further step is flagged against the accepted level
        store.accept(16, target="pi4", keys=[("pi4", "tflite-fp32", 1)])
        _record(store, [1.625] * 2, rng, 16)
        assert _notes(store) == ["level accepted at run #16"]


def test_accepting_a_run_again_says_it_is_already_accepted_and_when(tmp_path: Path) -> None:
    """A second `runs accept 11 --target pi4` said 'run 11 has no latency or instruction-count regression on pi4
    to accept', exit 2, as of a run that never regressed: a script accepting twice failed, and nobody was told
    the level was accepted already. It says so, with when and by whom, records nothing and exits 0; an artifact
    the run never measured is still refused."""
    import os
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'twice.sqlite'}"
    with open_store(url) as store:
        _record(store, [1.0] * 10 + [1.3], np.random.default_rng(7), 0)

    def accept(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "edgekit", "runs", "accept", "11", "--store", url, *args]
        env = {**os.environ, "COLUMNS": "300"}
        return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)

    first = accept("--target", "pi4")
    assert (
        first.returncode == 0
        and "accepted as the new level of tflite-fp32 at 1 thread on pi4" in first.stdout
    )
    with open_store(url) as store:
        (mark,) = (store.load(11).model_extra or {})["accepted"]
    again = accept("--target", "pi4")
    said = " ".join(again.stdout.split())
    assert again.returncode == 0, again.stdout + again.stderr
    assert said == (
        f"run 11 (yolov5-lite): its level on pi4 is already accepted (on {mark['at']} by {mark['by']}: "
        "tflite-fp32 at 1 thread on pi4); nothing recorded"
    ), said
    assert (
        accept().returncode == 0 and "is already accepted" in accept().stdout
    )  # every target: the same mark
    with open_store(url) as store:
        assert len((store.load(11).model_extra or {})["accepted"]) == 1  # nothing recorded again
    other = accept("--target", "pi4", "--artifact", "nosuch")
    assert other.returncode == 2 and "measured no artifact 'nosuch'" in " ".join(other.stderr.split())


def test_a_plain_accept_after_an_older_whole_target_mark_says_already_accepted(tmp_path: Path) -> None:
    """Review of c19b37b: a mark without keys (an older edgekit's `runs accept 11 --target pi4`, or one of an
    artifact) was skipped when `runs accept 11` asked of every target: 'no regression to accept', exit 2, though
    the run's one flagged key was accepted. Marks of any target (artifact) within the asked scope now count."""
    import os
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'older.sqlite'}"
    with open_store(url) as store:
        _record(store, [1.0] * 10 + [1.3], np.random.default_rng(7), 0)
        store.accept(11, target="pi4")  # no keys: every key of pi4

    def accept(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "edgekit", "runs", "accept", "11", "--store", url, *args]
        env = {**os.environ, "COLUMNS": "300"}
        return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)

    for args in ((), ("--artifact", "tflite-fp32"), ("--target", "pi4")):
        again = accept(*args)
        said = " ".join(again.stdout.split())
        assert again.returncode == 0 and "is already accepted" in said, (args, said, again.stderr)
        assert "every artifact on pi4); nothing recorded" in said, said
    with open_store(url) as store:
        assert len((store.load(11).model_extra or {})["accepted"]) == 1  # nothing recorded again
        store.accept(11, artifact="tflite-fp32")  # an artifact's mark, every target
    said = " ".join(accept("--target", "pi4", "--artifact", "tflite-fp32").stdout.split())
    assert "tflite-fp32 on every target" in said, said
