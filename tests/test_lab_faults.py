"""Lab faults found in review, against a real labgrid coordinator (edgekit/lab/rig.py's bare rig, as
tests/test_lab_night.py's; nothing is deployed on a board unless a test says so): an address read as an option,
the `lab` defaults file without a `lab:` block, a signal to a deploy waiting for a place, a tag target and a name
target racing for one place, a nightly board kicked mid-run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgekit.errors import TargetError
from edgekit.lab.client import LabClient
from edgekit.lab.errors import LabError

REPO = Path(__file__).resolve().parent.parent
TINY = REPO / "recipes" / "tiny.yaml"


def edgekit(
    *argv: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgekit", *argv],
        capture_output=True,
        text=True,
        env=env if env is not None else dict(os.environ),
        timeout=timeout,
    )


def test_a_coordinator_address_starting_with_a_dash_is_bad_input_never_an_option(tmp_path: Path) -> None:
    """`lab: {coordinator: '-h'}` and `LG_COORDINATOR=--version` passed the check and reached labgrid's helper as
    options: "the labgrid helper said nothing (exit 2): usage: ...", exit 1. A host never starts with '-': bad
    input naming the field or variable, exit 2; and the helper gets the address as one word."""
    from edgekit.target import load_target

    for bad in ("-h", "--version", "-x:20408"):
        path = tmp_path / "lab-dash.yaml"
        path.write_text(f"lab: {{coordinator: '{bad}'}}\n")
        with pytest.raises(TargetError, match=r"lab\.coordinator: .*expected HOST\[:PORT\]"):
            load_target(path)
    env = {k: v for k, v in os.environ.items() if k != "LG_COORDINATOR"}
    out = edgekit("lab", env={**env, "LG_COORDINATOR": "--version"})
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert "$LG_COORDINATOR: '--version'" in out.stderr and "expected HOST[:PORT]" in out.stderr, out.stderr
    # the helper reads `--coordinator=VALUE` as one word: never "usage: ..." whatever the value
    with pytest.raises(LabError) as raised:
        LabClient("-h:20408", timeout_s=20).places()
    assert "said nothing" not in str(raised.value) and "usage" not in str(raised.value), raised.value
