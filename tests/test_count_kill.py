"""`edgekit estimate` killed with SIGKILL (a CI job's timeout, the OOM killer) while it counts: the counting qemu
ran on at 100 % CPU, reparented to PID 1, with no time limit, and its folder /tmp/edgekit-count-* stayed where
nothing finds it. The guest now dies with edgekit, and its folder is a leftover `edgekit cache prune` removes.
A real count of one of ncnn's benchmark models under the counting qemu-user (not the emulated devices' sshd)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "edgekit" / "estimate" / "data" / "ncnn-benchmark" / "yolov4-tiny.param"


def test_a_kill_9_of_estimate_takes_its_counting_qemu_along(tmp_path: Path) -> None:
    from edgekit.convert import housekeeping
    from edgekit.emu import layout
    from edgekit.emu.plugin import build as plugin_build

    if not (plugin_build.is_built() and layout.device_dir("pi4-emu").python.exists()):
        pytest.fail("the counting plugin or pi4-emu is not built: make setup builds them")
    home, tmpdir = tmp_path / "home", tmp_path / "tmpdir"
    tmpdir.mkdir()
    env = {**os.environ, "EDGEKIT_HOME": str(home), "TMPDIR": str(tmpdir)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edgekit",
            "estimate",
            str(MODEL),
            "--board",
            "pi4",
            "--input-shape",
            "1,3,416,416",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    guests: list[psutil.Process] = []
    deadline = time.monotonic() + 120
    try:
        while not guests and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
            try:
                below = psutil.Process(proc.pid).children(recursive=True)
            except psutil.Error:
                break
            guests = [p for p in below if "qemu-aarch64" in p.name()]
        assert guests, "no counting qemu seen below edgekit estimate"
        time.sleep(1.0)  # counting
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        _gone, alive = psutil.wait_procs(guests, timeout=5)
        assert not alive, f"the counting qemu outlived a kill -9 of edgekit: {alive}"
    finally:
        if proc.poll() is None:
            proc.kill()
        for guest in guests:
            if guest.is_running():
                guest.kill()
    assert not list(tmpdir.iterdir()), list(tmpdir.iterdir())  # nothing left where nothing finds it
    left = [e for e in housekeeping.scan(home / "cache") if e.kind == "leftover"]
    assert any("count-" in e.path.name for e in left), left  # listed: `edgekit cache prune` removes it later


def test_a_kill_9_of_edgekit_takes_the_host_agent_along(tmp_path: Path) -> None:
    """The agent on `--target local` runs in a session of its own (so a timeout can kill its group): a kill -9 of
    edgekit left it running to its own time limit. It now dies with edgekit."""
    from onnx_graphs import gelu_classifier

    model = gelu_classifier(tmp_path / "m.onnx", size=64)
    env = {**os.environ, "EDGEKIT_HOME": str(tmp_path / "home")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgekit", "bench", str(model), "--target", "local", "--shape", "1,3,64,64"]
        + ["--repeat", "100000", "--number", "50"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    agents: list[psutil.Process] = []
    deadline = time.monotonic() + 120
    try:
        while not agents and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
            try:
                below = psutil.Process(proc.pid).children(recursive=True)
            except psutil.Error:
                break
            agents = [p for p in below if any(a.endswith("agent.py") for a in p.cmdline())]
        assert agents, "no agent seen below edgekit bench"
        time.sleep(1.0)  # measuring
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        _gone, alive = psutil.wait_procs(agents, timeout=5)
        assert not alive, f"the host agent outlived a kill -9 of edgekit: {alive}"
    finally:
        if proc.poll() is None:
            proc.kill()
        for agent in agents:
            if agent.is_running():
                agent.kill()
