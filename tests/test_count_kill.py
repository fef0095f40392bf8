"""edgekit killed with SIGKILL (a CI job's timeout, the OOM killer) while a child of its runs: the counting qemu of
`edgekit estimate` ran on at 100 % CPU, reparented to PID 1, with no time limit, its folder /tmp/edgekit-count-*
left where nothing finds it; the agent on `--target local` (a session of its own) ran on to its own time limit.
Both now die with edgekit (edgekit.child_death), and the count's folder is a leftover `edgekit cache prune`
removes. A real count of one of ncnn's benchmark models under the counting qemu-user (not the emulated devices'
sshd), a real bench on this host."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "edgekit" / "estimate" / "data" / "ncnn-benchmark" / "yolov4-tiny.param"


def survivors_of_a_kill_9(
    args: list[str], env: dict[str, str], child: Callable[[psutil.Process], bool]
) -> str:
    """`edgekit ARGS` started, killed with SIGKILL once a process below it that `child` picks has run a second:
    '' when those processes died with it, else what outlived it (killed here)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgekit", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    found: list[psutil.Process] = []
    deadline = time.monotonic() + 120
    try:
        while not found and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
            try:
                found = [p for p in psutil.Process(proc.pid).children(recursive=True) if child(p)]
            except psutil.Error:
                break
        assert found, f"no such process seen below edgekit {args[0]}"
        time.sleep(1.0)  # at work
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        _gone, alive = psutil.wait_procs(found, timeout=5)
        return str(alive) if alive else ""
    finally:
        if proc.poll() is None:
            proc.kill()
        for p in found:
            if p.is_running():
                p.kill()


def test_a_kill_9_of_estimate_takes_its_counting_qemu_along(tmp_path: Path) -> None:
    from edgekit.convert import housekeeping
    from edgekit.emu import layout
    from edgekit.emu.plugin import build as plugin_build

    if not (plugin_build.is_built() and layout.device_dir("pi4-emu").python.exists()):
        pytest.fail("the counting plugin or pi4-emu is not built: make setup builds them")
    home, tmpdir = tmp_path / "home", tmp_path / "tmpdir"
    tmpdir.mkdir()
    env = {**os.environ, "EDGEKIT_HOME": str(home), "TMPDIR": str(tmpdir)}
    args = ["estimate", str(MODEL), "--board", "pi4", "--input-shape", "1,3,416,416"]
    alive = survivors_of_a_kill_9(args, env, lambda p: "qemu-aarch64" in p.name())
    assert not alive, f"the counting qemu outlived a kill -9 of edgekit: {alive}"
    assert not list(tmpdir.iterdir()), list(tmpdir.iterdir())  # nothing left where nothing finds it
    left = [e for e in housekeeping.scan(home / "cache") if e.kind == "leftover"]
    assert any("count-" in e.path.name for e in left), left  # listed: `edgekit cache prune` removes it later


def test_a_kill_9_of_edgekit_takes_the_host_agent_along(tmp_path: Path) -> None:
    from onnx_graphs import gelu_classifier

    model = gelu_classifier(tmp_path / "m.onnx", size=64)
    env = {**os.environ, "EDGEKIT_HOME": str(tmp_path / "home")}
    args = [
        "bench",
        str(model),
        "--target",
        "local",
        "--shape",
        "1,3,64,64",
        "--repeat",
        "100000",
        "--number",
        "50",
    ]
    alive = survivors_of_a_kill_9(args, env, lambda p: any(a.endswith("agent.py") for a in p.cmdline()))
    assert not alive, f"the host agent outlived a kill -9 of edgekit: {alive}"
