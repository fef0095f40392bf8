"""`edgekit deploy RECIPE` with no --target measured the host only and never said so (the README writes
`deploy RECIPE --target T`): a new user took the host's table for the board's. It says so at the start now."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "tiny.yaml"
SAID = "no --target: measuring this machine only (host)"


def _deploy(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgekit", "deploy", str(RECIPE), "-f", "tflite-fp32", "--no-store", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        timeout=600,
    )


def test_a_deploy_with_no_target_says_it_measures_the_host_only() -> None:
    done = _deploy("--threads", "1", "--repeat", "1", "--samples", "1")
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    lines = [line for line in out.splitlines() if SAID in line]
    assert len(lines) == 1, out
    assert "--target pi4-emu" in lines[0] and "edgekit targets" in lines[0]
    assert out.index(SAID) < out.index("convert:")  # at the start, before the work
    named = _deploy("--target", "no-such-target")  # a target named: not said (refused at once here)
    assert named.returncode == 2 and SAID not in named.stdout + named.stderr, named.stdout + named.stderr
