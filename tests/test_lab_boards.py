"""The night report's lab lines read from a real results store (sqlite): which runs and measurements join a
board's figures for the SLOW BOARD verdict (docs/lab.md: failed, place_lost and unreliable figures never do), and
how a board's runs make one figure per key (the median over its runs). No device, no coordinator."""

from __future__ import annotations

import statistics
from pathlib import Path

from edgekit.lab.boards import board_lines, board_spread
from edgekit.lab.spread import SpreadOutcome
from edgekit.results import AgentResult, CpuFreq, DeployResult, DeviceFacts, Measurement, TargetRun
from edgekit.store import open_store

KIND = "lab:board=pi4"
KEY = ("tinya", "tflite-fp32", 1)


def _board(
    board: str,
    ms: float,
    temp: float,
    *,
    status: str = "ok",
    place_lost: str | None = None,
    busy: float | None = None,
) -> TargetRun:
    facts = DeviceFacts(
        machine="aarch64",
        cpu_model="Cortex-A72",
        cores=4,
        python="3.11",
        temperature_c=temp,
        freqs=[CpuFreq(cpu=0, governor="ondemand", cur_khz=600000, max_khz=1800000)],
    )
    m = Measurement(
        artifact=KEY[1],
        format="tflite-fp32",
        runtime="ai_edge_litert",
        threads=KEY[2],
        status="ok",
        samples_ms=[ms * 0.99, ms, ms * 1.01],
        others_cpu_share=busy,
    )
    return TargetRun(
        target=board,
        kind="ssh",
        emulated=False,
        status=status,  # type: ignore[arg-type]
        error=f"lab: {board} was taken from this run before it ended" if place_lost else None,
        place_lost=place_lost,
        agent=AgentResult(started_at="2026-12-01T00:00:00", facts_before=facts, measurements=[m]),
    )


def _night(day: int, *runs: TargetRun, recipe: str = KEY[0]) -> DeployResult:
    return DeployResult(
        recipe=recipe,
        recipe_path=f"{recipe}.yaml",
        recipe_sha256="0",
        started_at=f"2026-12-{day:02d}T01:00:00",
        runs=list(runs),
    )


def test_slow_board_counts_ok_trusted_runs_only_and_takes_the_median_over_them(tmp_path: Path) -> None:
    """pi4-b's run taken from it mid-run (failed, place_lost) and its measurement timed while other processes used
    84 % of its CPUs made `SLOW BOARD pi4-b ... 85 % slower`, and each key's figure was the last run's, not the
    median over the runs (pi4-a's 14 ms of its last run, not the 11 ms median of 10, 11 and 14). Now only ok runs,
    not place_lost, not timed while busy, count; per key the median over them; pi4-c, slow on every run, still is
    flagged, with the facts of its newest run that counted."""
    a = [10.0, 11.0, 14.0]  # newest last
    b_ok = [10.2, 10.4]
    c = [15.0, 15.3, 15.1]
    nights = [
        _night(1, _board("pi4-a", a[0], 50), _board("pi4-b", b_ok[0], 50), _board("pi4-c", c[0], 70)),
        _night(2, _board("pi4-a", a[1], 50), _board("pi4-b", b_ok[1], 50), _board("pi4-c", c[1], 75)),
        _night(
            3,
            _board("pi4-a", a[2], 50),
            _board("pi4-b", 19.0, 60, status="failed", place_lost="bob/other"),
            _board("pi4-c", c[2], 79),
        ),
        _night(4, _board("pi4-b", 25.0, 60, busy=0.84), _board("pi4-c", 40.0, 90, status="failed")),
    ]
    url = f"sqlite:///{tmp_path / 'night.sqlite'}"
    types = dict.fromkeys(("pi4-a", "pi4-b", "pi4-c"), KIND)
    with open_store(url) as store:
        for night in nights:
            store.record(night)
        done = SpreadOutcome(board_type=types, jobs={b: ["tinya.yaml"] for b in types}, deploy_s=1.0)
        lines = board_lines(store, done)
        found = board_spread(store.load_many(r.id for r in store.runs(limit=None)).values(), types)

    def median_over_runs(values: list[float]) -> float:
        return statistics.median(statistics.median([v * 0.99, v, v * 1.01]) for v in values)

    assert found.medians["pi4-a"][KEY] == median_over_runs(a)
    assert found.medians["pi4-b"][KEY] == median_over_runs(b_ok)
    assert found.medians["pi4-c"][KEY] == median_over_runs(c)
    slow = [line for line in lines if "SLOW BOARD" in line]
    assert len(slow) == 1 and "SLOW BOARD pi4-c (lab:board=pi4)" in slow[0], lines
    expected = median_over_runs(c) / statistics.median([median_over_runs(a), median_over_runs(b_ok)])
    assert f"{100 * (expected - 1):.0f} % slower than its siblings over 1 measurement(s)" in slow[0], slow
    assert "79 °C" in slow[0], slow  # pi4-c's newest counted run (night 3), not its failed night 4 at 90 °C
    # the board type's line says the same figures
    per_type = [line for line in lines if "tinya tflite-fp32 x1" in line]
    assert (
        per_type and f"{statistics.median([median_over_runs(x) for x in (a, b_ok, c)]):.2f} ms" in per_type[0]
    )


def test_a_board_with_no_trusted_run_is_not_compared() -> None:
    """A board whose every run failed or was timed while busy has no figure: it is neither slow nor a sibling."""
    types = dict.fromkeys(("pi4-a", "pi4-b"), KIND)
    found = board_spread(
        [
            _night(1, _board("pi4-a", 10.0, 50), _board("pi4-b", 30.0, 50, busy=0.5)),
            _night(2, _board("pi4-a", 10.0, 50), _board("pi4-b", 30.0, 50, status="failed")),
        ],
        types,
    )
    assert "pi4-b" not in found.medians and not found.slow


def _lines(tmp_path: Path, *nights: DeployResult) -> list[str]:
    types = dict.fromkeys(("pi4-a", "pi4-b"), KIND)
    with open_store(f"sqlite:///{tmp_path / 'night.sqlite'}") as store:
        for night in nights:
            store.record(night)
        return board_lines(
            store, SpreadOutcome(board_type=types, jobs={b: ["x.yaml"] for b in types}, deploy_s=1.0)
        )


def test_the_lab_lines_say_what_was_left_out_and_give_no_all_clear_when_nothing_was_compared(
    tmp_path: Path,
) -> None:
    """After lab nights on a busy machine the night said `lab:board=pi4: 2 board(s), 0 (recipe, artifact,
    threads) measured` and `no board is 20 % slower than its siblings on what both measured`, while each board's
    measurements had been left out as timed while busy and the two boards had run different recipes: nothing was
    compared. Now the type's line says what was counted and what was left out, and the verdict says no
    comparison was possible."""
    busy = _lines(
        tmp_path,
        _night(1, _board("pi4-a", 10.0, 50, busy=0.8), recipe="tinya"),
        _night(1, _board("pi4-b", 10.0, 50, busy=0.7), recipe="tinyb"),
    )
    assert (
        f"  {KIND}: 2 board(s), 0 (recipe, artifact, threads) counted (2 timed while busy left out)" in busy
    ), busy
    assert (
        "  no comparison possible: no (recipe, artifact, threads) counted on two boards of one type" in busy
    )
    assert not any("no board is" in line for line in busy), busy


def test_different_recipes_on_each_board_are_no_comparison_and_shared_ones_are(tmp_path: Path) -> None:
    """Counted figures, but each board ran another recipe: still no comparison; the same recipe on both: the
    all-clear stands on it."""
    apart = _lines(
        tmp_path / "apart",
        _night(1, _board("pi4-a", 10.0, 50), recipe="tinya"),
        _night(1, _board("pi4-b", 10.0, 50), recipe="tinyb"),
    )
    assert f"  {KIND}: 2 board(s), 2 (recipe, artifact, threads) counted" in apart, apart
    assert any(line.startswith("  no comparison possible") for line in apart), apart
    shared = _lines(
        tmp_path / "shared",
        _night(1, _board("pi4-a", 10.0, 50), _board("pi4-b", 10.3, 50, busy=0.9)),
        _night(2, _board("pi4-a", 10.1, 50), _board("pi4-b", 10.2, 50)),
    )
    assert f"  {KIND}: 2 board(s), 1 (recipe, artifact, threads) counted" in shared, (
        shared
    )  # busy run: counted too
    assert "  no board is 20 % slower than its siblings on what both measured" in shared, shared
