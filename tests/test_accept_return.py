"""After `edgekit runs accept`, a fix back to the level the key had before the regression is recognised as a
return to that level, judged on that level's own nights, even when the fix is small against the night-to-night
drift (host-only: synthetic runs, no device)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from edgekit.report.baseline import Walk, key_series, walk_key
from edgekit.report.flags import Settings
from edgekit.report.regression import detect_latest
from edgekit.store import StoredRun

sys.path.insert(0, str(Path(__file__).parent))
from test_accept_level import _accept, _nights

KEYS = range(8)  # eight keys, each its own seed: independent nights


def _walk(runs: list[StoredRun]) -> Walk:
    m = runs[-1].result.runs[0].agent.measurements[0]  # type: ignore[union-attr]
    return walk_key(key_series(runs, "pi4", m, False, Settings()), False, Settings())


@pytest.mark.parametrize("slow", [3, 5])
def test_a_small_fix_back_to_the_earlier_level_is_a_return_on_every_key(slow: int) -> None:
    """Review: 8 keys at 3 % night drift, +15 % accepted, then -13 % (back to the earlier level) for six
    nights: most keys stayed on the accepted level. A fast night that did not pass the accepted level's
    drift bound (15 % against a bound of 11-12 %) joined it, and the mixed spread hid every later one. The
    fix nights are now judged against the earlier, long-established level they are back at."""
    returned = []
    for seed in KEYS:
        runs = _nights([1.0] * 20 + [1.15] * slow + [1.15 * 0.87] * 6, seed=seed, night_sd=0.03)
        accepted = runs[20 + slow - 1]
        _accept(accepted)
        walk = _walk(runs)
        base = {e.run.id for e in walk.baseline(Settings())}
        fix = {r.id for r in runs[-6:]}
        returned.append(
            not walk.accepted
            and len(fix & base) >= 4  # the fix nights are the baseline (one nearer neither may be left out),
            and accepted.id not in base  # not the accepted level,
            and len(base & {r.id for r in runs[:20]}) >= 10  # with the earlier level's nights
        )
    # 3 and 6 of 8 before; a level accepted on its first night (one run, itself as noisy as a night) is not
    # told from a -13 % fix at 3 % drift on every key (5 of 8, 4 before)
    assert sum(returned) >= len(KEYS) - 1, returned


def test_after_the_return_a_relapse_to_the_accepted_level_is_flagged() -> None:
    """What the return is for: the slow level again after the fix is a regression (at 2 % drift the +15 %
    relapse stands well clear of the earlier level's bound; before, the fix nights joined the accepted level
    and the relapse passed on most keys)."""
    flagged = 0
    for seed in KEYS:
        runs = _nights([1.0] * 20 + [1.15] * 3 + [1.15 * 0.87] * 6 + [1.15], seed=seed, night_sd=0.02)
        _accept(runs[22])
        flagged += any(f.is_regression for f in detect_latest(runs))
    assert flagged == len(KEYS)


@pytest.mark.parametrize("night_sd", [0.01, 0.02, 0.03])
def test_an_accepted_level_that_holds_is_not_taken_for_a_return(night_sd: float) -> None:
    """False returns: the accepted level held for 30 nights (+15 % and +8 %, the smallest step that leaves a
    night of noise near the earlier level), 8 keys: no night is flagged and the accepted level stays the
    baseline."""
    for step in (1.15, 1.08):
        for seed in KEYS:
            runs = _nights([1.0] * 20 + [step] * 33, seed=seed, night_sd=night_sd)
            _accept(runs[22])
            for n in range(24, len(runs) + 1):
                assert not any(f.is_regression for f in detect_latest(runs[:n])), (step, seed, n)
            assert _walk(runs).accepted, (step, seed)
