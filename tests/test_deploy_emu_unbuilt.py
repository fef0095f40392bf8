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


def test_bench_and_profile_on_an_unbuilt_emulated_device_are_refused_before_anything_runs(
    tmp_path: Path,
) -> None:
    """bench and profile checked a key file and the stated core before any work, not whether the device was
    built: they failed later, in the device's start. They share deploy's check now."""
    import onnx
    from onnx import TensorProto, helper

    model = tmp_path / "relu.onnx"
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), model)
    home, emu = tmp_path / "home", tmp_path / "emu-fresh"
    emu.mkdir()
    env = {**os.environ, "EDGEKIT_HOME": str(home), "EDGEKIT_EMU_HOME": str(emu), "COLUMNS": "200"}
    for command in (
        ["bench", str(model), "--target", "pi5-emu"],
        ["profile", str(model), "--target", "pi5-emu"],
    ):
        done = subprocess.run(
            [sys.executable, "-m", "edgekit", *command], capture_output=True, text=True, env=env, timeout=300
        )
        said = " ".join((done.stdout + done.stderr).split())
        assert done.returncode == 1, (command, said)
        assert "EmulatorError" in said and "pi5-emu is not built on this machine" in said, (command, said)
        assert not any((emu / "devices").glob("pi5-emu/built.done"))
