"""An agent SIGKILLed while it starts (what the kernel's OOM killer does), against the real pi4-emu through the real
`edgekit deploy`: it is said as a kill (out of memory? dmesg), without the shell's echo of the whole remote command,
and only its runtime group is lost: the next runtime's agent (another process) still measures."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.integration
EDGEKIT = str(Path(sys.executable).parent / "edgekit")
TINY = Path(__file__).resolve().parents[2] / "recipes" / "tiny.yaml"


def _agents(work: Path) -> list[psutil.Process]:
    """The agent's processes (the emulated python under qemu), by their work dir."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            argv = proc.info["cmdline"] or []
            shell = bool(argv) and Path(argv[0]).name in (
                "bash",
                "sh",
                "dash",
            )  # the agent's, not sshd's shell
            if not shell and "agent.py" in " ".join(argv) and proc.cwd() == str(work):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def _measuring(work: Path) -> bool:
    """An agent under WORK has written its start (its facts) and is measuring (its result file's in_progress)."""
    for result in work.rglob("result*.json"):
        try:
            if json.loads(result.read_text()).get("in_progress"):
                return True
        except (OSError, ValueError):
            continue  # being replaced
    return False


def _deploy_killing_the_first_agent(
    formats: list[str], tmp_path: Path, *extra: str, measuring: bool = False
) -> tuple[list[int], int, str, Path]:
    """`edgekit deploy` of tiny's FORMATS to pi4-emu, its first agent SIGKILLed as soon as it is seen (MEASURING:
    once it measures): the pids killed, the exit code, what it printed and its --json file."""
    work, out_json = tmp_path / "work", tmp_path / "r.json"
    cmd = [
        EDGEKIT,
        "deploy",
        str(TINY),
        "--target",
        "pi4-emu",
        *(a for f in formats for a in ("-f", f)),
        *extra,
    ]
    cmd += ["--no-host", "--no-store", "--set", f"work_dir={work}", "--json", str(out_json)]
    env = {**os.environ, "COLUMNS": "200", "EDGEKIT_HOME": str(tmp_path.parent / "shared-home")}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    killed: list[int] = []

    def kill_the_first_agent() -> None:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            for agent in _agents(work) if not measuring or _measuring(work) else []:
                agent.send_signal(signal.SIGKILL)
                killed.append(agent.pid)
            if killed:
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_the_first_agent)
    killer.start()
    try:
        out, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        killer.join()
    return killed, proc.returncode, out, out_json


def test_an_agent_killed_while_starting_is_said_as_a_kill_and_the_next_runtime_runs(
    pi4_emu, tmp_path: Path
) -> None:
    killed, code, out, out_json = _deploy_killing_the_first_agent(["tflite-fp32", "ncnn-fp32"], tmp_path)
    assert killed and code == 1, out[-4000:]
    assert "killed by SIGKILL (out of memory? see dmesg on the device)" in out, out[-4000:]
    assert "bash: line" not in out and "EDGEKIT_QEMU_PLUGIN" not in out, out[-4000:]
    assert "import numpy" not in out, out[-4000:]  # no python hint: a kill is no broken runtime
    (run,) = json.loads(out_json.read_text())["runs"]
    status = {m["artifact"]: (m["status"], m.get("error_code")) for m in run["agent"]["measurements"]}
    assert status == {"tflite-fp32": ("failed", "crash"), "ncnn-fp32": ("ok", None)}, (status, out[-4000:])


def test_a_route_where_the_only_agent_was_killed_says_nothing_ran(pi4_emu, tmp_path: Path) -> None:
    """pi4-emu counts, and its one agent was killed while measuring (after it told its facts): the route said "the
    instruction counts it was counted for were lost (...)" and "run it again once that is mended", as if counting
    had failed; nothing ran, and the kill is the error above it. (Killed before its facts, it said so already.)"""
    killed, code, out, out_json = _deploy_killing_the_first_agent(
        ["tflite-fp32"], tmp_path, "--repeat", "100000", measuring=True
    )
    assert killed and code == 1, out[-4000:]
    assert "crashed while measuring (tflite-fp32 threads=1)" in out, out[-4000:]
    assert "pi4-emu: no route: nothing ran on this target (its error is above)" in out, out[-4000:]
    assert "were lost" not in out and "emulated.counting" not in out, out[-4000:]
    assert "bash: line" not in out and "EDGEKIT_QEMU_PLUGIN" not in out, out[
        -4000:
    ]  # no shell echo of the command
    (run,) = json.loads(out_json.read_text())["runs"]
    assert run["agent"]["facts_before"]["emulated"], run["agent"]  # the facts were known: the case that erred
