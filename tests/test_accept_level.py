"""After `edgekit runs accept`, the baseline follows the key's newest stable level: a return to the accepted
(slow) level after the key got fast again is a regression, not noise."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import numpy as np
import procs
import pytest

from edgekit.formats import Format
from edgekit.report.regression import detect_latest
from edgekit.report.synthetic import synthetic_result
from edgekit.results import DeployResult
from edgekit.store import StoredRun

T0 = datetime(2026, 10, 1, 2, 0, tzinfo=UTC)


def _night(day: int, level: float, rng: np.random.Generator, night_sd: float = 0.01) -> DeployResult:
    return synthetic_result(
        T0 + timedelta(days=day),
        rng=rng,
        formats=(Format.TFLITE_FP32,),
        targets=("pi4",),
        threads=(1,),
        slowdown={("tflite-fp32", "pi4"): level},
        night_sd=night_sd,
    )


def _nights(levels: list[float], seed: int = 0, night_sd: float = 0.01) -> list[StoredRun]:
    rng = np.random.default_rng(seed)
    return [
        StoredRun(d + 1, (T0 + timedelta(days=d)).timestamp(), _night(d, level, rng, night_sd))
        for d, level in enumerate(levels)
    ]


def _accept(run: StoredRun) -> None:
    """What Store.accept leaves in a run (its extra JSON, read back as DeployResult's extra field `accepted`)."""
    run.result.accepted = [{"target": "pi4", "artifact": None, "keys": [["pi4", "tflite-fp32", 1]]}]  # type: ignore[attr-defined]


def _flagged_nights(runs: list[StoredRun], first: int) -> str:
    return "".join(
        "X" if any(f.is_regression for f in detect_latest(runs[:n])) else "."
        for n in range(first, len(runs) + 1)
    )


_edgekit = partial(procs.run, columns=300)


def test_a_return_to_the_accepted_level_after_the_key_got_fast_again_is_flagged(tmp_path: Path) -> None:
    """Review: 20 nights at 1.0, five at 1.5 accepted on the fifth (`runs accept`), six back at 1.0, then 1.5
    again: the report said 'No regressions'. The accepted slow nights and the fast ones after them were one
    baseline whose night-to-night spread covered both levels, for the whole 42-run lookback. Built through the
    real `runs import`, `runs accept` and `report` on a SQLite store."""
    url = f"sqlite:///{tmp_path / 'results.sqlite'}"
    home = tmp_path / "home"
    rng = np.random.default_rng(7)
    levels = [1.0] * 20 + [1.5] * 5 + [1.0] * 6 + [1.5]
    files = []
    for day, level in enumerate(levels):
        path = tmp_path / f"night{day:02d}.json"
        path.write_text(_night(day, level, rng).model_dump_json())
        files.append(str(path))

    def report() -> str:
        shown = _edgekit("report", "--since", "all", "--store", url, home=home)
        assert shown.returncode == 0, shown.stdout + shown.stderr
        return " ".join(shown.stdout.split())

    imported = _edgekit("runs", "import", *files[:25], "--store", url, home=home)
    assert imported.returncode == 0, imported.stdout + imported.stderr
    ids = [int(i) for i in re.findall(r"recorded as run (\d+)", imported.stdout)]
    assert len(ids) == 25
    assert "still slower since run" in report()  # the held step, before it is accepted
    accepted = _edgekit("runs", "accept", str(ids[-1]), "--target", "pi4", "--store", url, home=home)
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    assert "no regressions" in report()

    fast = _edgekit("runs", "import", *files[25:31], "--store", url, home=home)
    assert fast.returncode == 0, fast.stdout + fast.stderr
    assert "no regressions" in report()  # faster than the accepted level: no regression either

    again = _edgekit("runs", "import", files[31], "--store", url, home=home)
    assert again.returncode == 0, again.stdout + again.stderr
    shown = report()
    assert "No regressions against recent history" not in shown
    (line,) = re.findall(r"tflite-fp32 at 1 thread on pi4: ([\d.]+) → ([\d.]+) ms \(\+([\d.]+)%", shown)
    old, new, change = map(float, line)
    assert 40 < change < 60 and new / old - 1 > 0.4  # judged against the fast nights, not the accepted level


@pytest.mark.parametrize("slow", [5, 1])
def test_the_fast_nights_after_an_accepted_level_become_the_baseline_once_they_hold(slow: int) -> None:
    """The accepted level is the baseline until the key departs from it for `min_runs` nights in a row (a level
    of its own, here an improvement): then those nights are, and a return to the accepted level is flagged on
    every night it holds, while a further night at the fast level is not. Also when the step was accepted on its
    first night (as the nightly's 'if this level is expected: edgekit runs accept N' invites): one accepted run,
    too few for a night-to-night bound, the fast nights joined it and the bound of the mix hid the return."""
    runs = _nights([1.0] * 20 + [1.5] * slow + [1.0] * 6 + [1.5] * 3 + [1.0] * 2)
    accepted = 20 + slow - 1
    _accept(runs[accepted])
    assert _flagged_nights(runs, 21) == "X" * (slow - 1) + "." + "......" + "XXX" + ".."
    (flag,) = [f for f in detect_latest(runs[: accepted + 8]) if f.is_regression]
    fast = {r.id for r in runs[accepted + 1 : accepted + 7]}
    before = {r.id for r in runs[:20]}  # the fast nights are the level before the regression: one baseline
    assert fast <= set(flag.baseline_runs) <= fast | before
    assert not set(flag.baseline_runs) & {r.id for r in runs[20 : accepted + 1]}  # not the accepted level


def test_a_fast_spell_shorter_than_min_runs_does_not_move_the_accepted_level() -> None:
    """Two fast nights, then the accepted level again: the level was accepted, and two nights are no level of
    their own (as a regression needs `min_runs` nights of history to be judged), so nothing is flagged."""
    runs = _nights([1.0] * 20 + [1.5] * 5 + [1.0] * 2 + [1.5] * 4)
    _accept(runs[24])
    assert _flagged_nights(runs, 25) == "." * 7


def test_an_accepted_level_that_holds_stays_unflagged_and_a_further_step_is_caught() -> None:
    """Noise at the accepted level moves nothing (no night of it is a departure), and a step above it is still
    flagged against the accepted nights."""
    runs = _nights([1.0] * 20 + [1.5] * 5 + [1.5] * 15 + [1.9] * 2, seed=3)
    _accept(runs[24])
    assert _flagged_nights(runs, 25) == "." * 16 + "XX"


@pytest.mark.parametrize("night_sd", [0.01, 0.02, 0.03])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_a_return_to_the_accepted_level_soon_after_the_fix_is_flagged(seed: int, night_sd: float) -> None:
    """Review: 20 nights at 1.0, 20 at 1.25 accepted on the third, three back at 1.0, then 1.25 again: never
    flagged, that night or later. The three fast nights alone were the baseline, their night-to-night bound (t
    at 2 degrees of freedom) over 100 % at 2 % drift, so the return passed, joined them and widened the bound for
    good. The fast nights are the level of the 20 nights before the regression: they are one baseline again."""
    runs = _nights([1.0] * 20 + [1.25] * 20 + [1.0] * 3 + [1.25] * 5, seed=seed, night_sd=night_sd)
    _accept(runs[22])
    assert _flagged_nights(runs, 41) == "..." + "XXXXX"
    (flag,) = [f for f in detect_latest(runs[:44]) if f.is_regression]
    assert {r.id for r in runs[40:43]} <= set(flag.baseline_runs)  # the fast nights after the fix
    assert {r.id for r in runs[5:20]} <= set(flag.baseline_runs)  # and the same level before the regression
    assert 0.18 < (flag.change or 0) < 0.32


@pytest.mark.parametrize("night_sd", [0.01, 0.02, 0.03])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_a_return_soon_after_a_fix_to_a_new_level_is_flagged(seed: int, night_sd: float) -> None:
    """The fix made the key faster than it ever was (0.8): no earlier level to join, so the three fast nights
    alone are the baseline; their drift bound is the one of the key's earlier levels (pooled), not the one three
    nights give (over 100 % at 2 % drift), so a return to the accepted level is flagged on its first night."""
    runs = _nights([1.0] * 20 + [1.25] * 20 + [0.8] * 3 + [1.0] * 3, seed=seed, night_sd=night_sd)
    _accept(runs[22])
    assert _flagged_nights(runs, 41) == "..." + "XXX"
    (flag,) = [f for f in detect_latest(runs[:44]) if f.is_regression]
    assert set(flag.baseline_runs) == {r.id for r in runs[40:43]}  # the fast nights alone: no level like them


@pytest.mark.parametrize("night_sd", [0.01, 0.02, 0.03])
@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4, 5])
def test_noise_after_an_accepted_level_and_after_a_return_to_the_old_level_is_not_flagged(
    seed: int, night_sd: float
) -> None:
    """False alarms: an accepted level held for 15 nights, then fixed back to the level before it (or to a new
    one, 0.8) for 15."""
    for fixed in (1.0, 0.8):
        runs = _nights([1.0] * 20 + [1.25] * 18 + [fixed] * 15, seed=seed, night_sd=night_sd)
        _accept(runs[22])
        assert _flagged_nights(runs, 24) == "." * 30
