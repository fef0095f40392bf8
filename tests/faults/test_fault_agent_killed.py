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


def test_an_agent_killed_while_starting_is_said_as_a_kill_and_the_next_runtime_runs(
    pi4_emu, tmp_path: Path
) -> None:
    work, out_json = tmp_path / "work", tmp_path / "r.json"
    cmd = [EDGEKIT, "deploy", str(TINY), "--target", "pi4-emu", "-f", "tflite-fp32", "-f", "ncnn-fp32"]
    cmd += ["--no-host", "--no-store", "--set", f"work_dir={work}", "--json", str(out_json)]
    env = {**os.environ, "COLUMNS": "200", "EDGEKIT_HOME": str(tmp_path.parent / "shared-home")}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    killed: list[int] = []

    def kill_the_first_agent() -> None:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            for agent in _agents(work):
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
    assert killed and proc.returncode == 1, out[-4000:]
    assert "killed by SIGKILL (out of memory? see dmesg on the device)" in out, out[-4000:]
    assert "bash: line" not in out and "EDGEKIT_QEMU_PLUGIN" not in out, out[-4000:]
    assert "import numpy" not in out, out[-4000:]  # no python hint: a kill is no broken runtime
    (run,) = json.loads(out_json.read_text())["runs"]
    status = {m["artifact"]: (m["status"], m.get("error_code")) for m in run["agent"]["measurements"]}
    assert status == {"tflite-fp32": ("failed", "crash"), "ncnn-fp32": ("ok", None)}, (status, out[-4000:])
