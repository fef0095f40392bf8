"""The lab helper's bounds ($EDGEKIT_LAB_CALL_S, _CONNECT_S, _LAST_TRY_S, _RETRY_GRACE_S) set to what is no usable
number of seconds: edgekit refuses them at its start (exit 2, the variable, its value and what is accepted), before
any helper runs, and the helper, started without edgekit, never crashes on one. Needs labgrid's .venv-lab, no
coordinator and no device."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgekit.lab.client import HELPER, lab_python

BAD = ["inf", "1e10", "5s", "0", "-3", "nan", "3601"]


@pytest.mark.parametrize(
    ("variable", "value"),
    [("EDGEKIT_LAB_CALL_S", v) for v in BAD]
    + [
        ("EDGEKIT_LAB_CONNECT_S", "inf"),
        ("EDGEKIT_LAB_LAST_TRY_S", "0"),
        ("EDGEKIT_LAB_RETRY_GRACE_S", "10m"),
    ],
)
def test_an_unusable_lab_bound_is_a_usage_error_naming_it(variable: str, value: str, tmp_path: Path) -> None:
    """`inf` and `1e10` were taken (and crashed the helper's retries: signal.alarm's OverflowError), `5s`, `0`, `-3`
    and `nan` silently became the default."""
    env = {**os.environ, "EDGEKIT_HOME": str(tmp_path / "home"), variable: value}
    # a port nothing listens on: were the value taken, the helper would run and say the coordinator is down
    proc = _lab_at_a_closed_port(env)
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert f"{variable}={value!r}" in proc.stderr, proc.stderr
    assert "3600" in proc.stderr, proc.stderr  # what is accepted
    assert "Traceback" not in proc.stderr and "coordinator" not in proc.stderr.lower(), proc.stderr


def _lab_at_a_closed_port(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`edgekit lab -x 127.0.0.1:1` (a port nothing listens on) with `env`."""
    return subprocess.run(
        [sys.executable, "-m", "edgekit", "lab", "-x", "127.0.0.1:1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_usable_lab_bound_is_taken(tmp_path: Path) -> None:
    """The check refuses only what is unusable: a bound with a fraction, and one of a whole hour, run."""
    env = {
        **os.environ,
        "EDGEKIT_HOME": str(tmp_path / "home"),
        "EDGEKIT_LAB_CALL_S": "0.5",
        "EDGEKIT_LAB_CONNECT_S": "3600",
    }
    proc = _lab_at_a_closed_port(env)
    assert proc.returncode == 1 and "cannot reach the labgrid coordinator" in proc.stderr, proc.stderr


@pytest.mark.parametrize("value", ["inf", "1e10", "nan", "-3", "5s"])
def test_the_helper_alone_takes_the_default_for_an_unusable_bound(value: str) -> None:
    """The helper run without edgekit's check (by hand, an older edgekit): an unusable bound is its default, so its
    hard bound on the retries (signal.alarm(RETRY_S + 4 * CALL_S)) is a number of seconds alarm takes."""
    env = {
        **os.environ,
        **dict.fromkeys(("EDGEKIT_LAB_CALL_S", "EDGEKIT_LAB_CONNECT_S", "EDGEKIT_LAB_LAST_TRY_S"), value),
    }
    code = (
        "import json, signal, sys; sys.path.insert(0, sys.argv[1]); import helper; "
        "signal.alarm(int(helper.RETRY_S + 4 * helper.CALL_S)); signal.alarm(0); "
        "print(json.dumps([helper.CALL_S, helper.CONNECT_S, helper.LAST_TRY_S]))"
    )
    proc = subprocess.run(
        [str(lab_python()), "-c", code, str(HELPER.parent)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [20.0, 10.0, 4.0], proc.stdout
