"""A deploy of host-only formats (OpenVINO: a reference no board runs) to a device is refused before converting: the
device's run ended 'no route: nothing ran on this target (its error is above)' with no error above, FAILED, exit 1."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "tiny.yaml"


def _deploy(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgekit", "deploy", str(RECIPE), "-f", "openvino-fp32", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_host_only_formats_to_a_device_are_refused_before_converting() -> None:
    done = _deploy("--target", "pi4-emu")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "openvino-fp32 run on the host only: nothing would run on pi4-emu" in done.stderr
    assert "convert:" not in done.stdout + done.stderr  # said before any conversion
    without_host = _deploy("--target", "pi4-emu", "--no-host")
    assert without_host.returncode == 2 and "--no-host leaves the host out" in without_host.stderr
