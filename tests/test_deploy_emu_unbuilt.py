"""A deploy to an emulated device that is not built (set-up skipped or half done, EDGEKIT_EMU_HOME pointing at
an empty folder) converted every format first (23 s for tiny, ~11 min for the demo recipe), then refused in the
device's ensure stage, exit 1, and stored a failed run. It is refused now before any conversion, and nothing is
recorded."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "tiny.yaml"


def test_a_deploy_to_an_unbuilt_emulated_device_is_refused_before_converting(tmp_path: Path) -> None:
    home, emu = tmp_path / "home", tmp_path / "emu-fresh"
    emu.mkdir()
    env = {**os.environ, "EDGEKIT_HOME": str(home), "EDGEKIT_EMU_HOME": str(emu), "COLUMNS": "200"}
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "edgekit", "deploy", str(RECIPE), "-f", "tflite-fp32", "--target", "pi4-emu"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    took = time.monotonic() - start
    said = " ".join(done.stderr.split())
    assert done.returncode == 1, done.stdout + done.stderr  # EmulatorError's own exit code
    assert "pi4-emu is not built on this machine" in said, done.stdout + done.stderr
    assert "edgekit emu build pi4-emu" in said  # the set-up command that builds it
    assert "convert:" not in done.stdout + done.stderr  # refused before any conversion
    assert not (home / "cache").exists() or not any((home / "cache").rglob("*.tflite"))
    assert "recorded as run" not in done.stdout
    store = home / "results.sqlite"  # opened (made) before the deploy to check it: no run in it
    if store.exists():
        with contextlib.closing(sqlite3.connect(store)) as db:
            assert db.execute("SELECT COUNT(*) FROM runs").fetchone() == (0,)
    assert not any((emu / "devices").glob("pi4-emu/built.done"))  # nothing built either
    assert took < 60, took
