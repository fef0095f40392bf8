"""A regression explained by a converted-file change is flagged on its night only and the baseline starts again
on its own (docs/nightly.md): the report offered `runs accept` for it all the same (report review). Not any more;
an unexplained step still gets the command."""

from __future__ import annotations

from test_short_baseline import _nights

from edgekit.report.flag_text import accept_commands
from edgekit.report.regression import detect_latest


def test_an_explained_regression_gets_no_accept_command() -> None:
    runs = _nights([1.0] * 30 + [1.3], 30, seed=0, night_sd=0.01)
    flags = [f for f in detect_latest(runs) if f.is_regression]
    assert flags and all(f.explained for f in flags), flags  # flagged on its night, explained
    assert accept_commands(flags) == []
    unexplained = _nights([1.0] * 31 + [1.3], 99, seed=0, night_sd=0.01)  # no change: the command is offered
    steps = [f for f in detect_latest(unexplained) if f.is_regression]
    assert steps and not any(f.explained for f in steps)
    assert accept_commands(steps)
