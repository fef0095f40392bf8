"""The cost model's fits kept between runs (edgekit/estimate/fit_cache.py): an estimate fitted 216 forms at one
thread and 644 at four, the same ones every run. Served from the file they must be the very rates a fit gives, and
anything a fit depends on (the figures, the terms) must miss."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgekit.estimate import fit_cache
from edgekit.estimate.forms import BY_NAME, calibration_data, fit


@pytest.fixture
def fresh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A data dir of its own and no fits in this process; the fits file's path."""
    monkeypatch.setenv("EDGEKIT_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(fit_cache, "_known", {})
    monkeypatch.setattr(fit_cache, "_new", {})
    monkeypatch.setattr(fit_cache, "_read_once", [])
    yield tmp_path / "home" / fit_cache.FILE


def _forget(monkeypatch: pytest.MonkeyPatch) -> None:
    """As a new process: nothing in memory, the file read again at the next fit."""
    monkeypatch.setattr(fit_cache, "_known", {})
    monkeypatch.setattr(fit_cache, "_read_once", [])


def _no_fitting(monkeypatch: pytest.MonkeyPatch) -> None:
    import scipy.optimize

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("fitted, not served from the file")

    monkeypatch.setattr(scipy.optimize, "least_squares", refuse)


def test_a_fit_is_served_from_the_file_as_it_was_fitted_and_other_figures_miss(
    fresh: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = [(f, ms) for _, f, ms in calibration_data("pi4", 1)]
    form = BY_NAME["ratio+params"]
    made = fit(form, "pi4", 1, data)
    assert not fresh.exists()  # written at exit (flush), not at every fit
    fit_cache.flush()
    assert len(json.loads(fresh.read_text())) == 1
    _forget(monkeypatch)
    with monkeypatch.context() as m:
        _no_fitting(m)
        served = fit(form, "pi4", 1, data)
        assert served.rates == made.rates  # to the bit: JSON keeps a float's repr
        assert fit(form, "pi5", 1, data).rates == made.rates  # the board names it; the rates are the data's
        with pytest.raises(AssertionError, match="fitted, not served"):
            fit(form, "pi4", 1, [(f, ms * 1.01) for f, ms in data])  # other figures: fitted again
        with pytest.raises(AssertionError, match="fitted, not served"):
            fit(BY_NAME["ratio"], "pi4", 1, data)  # another form's terms
        with pytest.raises(AssertionError, match="fitted, not served"):
            fit(form, "pi4", 1, data[1:])  # a model left out
    other = fit(form, "pi4", 1, [(f, ms * 1.01) for f, ms in data])
    assert other.rates != made.rates


def test_a_damaged_file_is_fitted_around_and_written_again(fresh: Path) -> None:
    fresh.parent.mkdir(parents=True)
    fresh.write_text('{"half": [1.0, ')
    data = [(f, ms) for _, f, ms in calibration_data("pi5", 1)]
    made = fit(BY_NAME["ratio"], "pi5", 1, data)
    fit_cache.flush()
    (rates,) = json.loads(fresh.read_text()).values()
    assert rates == made.rates


def test_a_second_process_makes_no_fit(tmp_path: Path) -> None:
    """The weights of the one-thread cost model (204 leave-one-out fits and 12 more) made in one process, served
    whole to the next: there least_squares raises, and the same model comes out."""
    env = {**os.environ, "EDGEKIT_HOME": str(tmp_path / "home")}
    code = (
        "import json, sys, scipy.optimize\n"
        "if sys.argv[1] == 'served':\n"
        "    def refuse(*a, **k): raise SystemExit('fitted')\n"
        "    scipy.optimize.least_squares = refuse\n"
        "from edgekit.estimate.crossval import ensemble\n"
        "model = ensemble('pi4', 1, ('instructions', 'params', 'mix', 'activation_bytes'))\n"
        "print(json.dumps([(m.candidate, m.rates, w) for m, w in model.fits]))\n"
    )
    first = subprocess.run([sys.executable, "-c", code, "fit"], env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    stored = json.loads((tmp_path / "home" / fit_cache.FILE).read_text())
    assert len(stored) > 100, len(stored)
    second = subprocess.run([sys.executable, "-c", code, "served"], env=env, capture_output=True, text=True)
    assert second.returncode == 0, second.stderr
    assert second.stdout == first.stdout
