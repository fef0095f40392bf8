"""The run folder on the device (runs/<run>-pi4-emu in its work dir) is removed whenever the link is whole, against
the real pi4-emu through the real `edgekit deploy`: after a Ctrl-C that came before the agent wrote its result
file (no file is nothing to read, not a reason to leave the folder) and after a Ctrl-C at the end of the push,
before any agent started (the push made the folder)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
EDGEKIT = str(Path(sys.executable).parent / "edgekit")
TINY = Path(__file__).resolve().parents[2] / "recipes" / "tiny.yaml"


def _interrupted_at(tmp_path: Path, work: Path, pattern: str) -> str:
    """`edgekit deploy` of tiny's tflite-fp32 to pi4-emu (work dir `work`), Ctrl-C once `pattern` is printed."""
    cmd = [
        EDGEKIT,
        "deploy",
        str(TINY),
        "--target",
        "pi4-emu",
        "-f",
        "tflite-fp32",
        "--no-host",
        "--no-store",
    ]
    cmd += ["--set", f"work_dir={work}"]
    env = {**os.environ, "COLUMNS": "200", "EDGEKIT_HOME": str(tmp_path.parent / "shared-home")}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines, fired = [], False
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if not fired and pattern in line:
                proc.send_signal(signal.SIGINT)
                fired = True
        proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    out = "".join(lines)
    assert fired and proc.returncode == 130, out[-3000:]
    return out


@pytest.mark.parametrize(
    "pattern",
    ["pi4-emu: agent measuring tflite-fp32", "pi4-emu: pushed"],
    ids=["before-result", "after-push"],
)
def test_an_interrupted_run_leaves_no_run_folder_on_the_device(pi4_emu, tmp_path: Path, pattern: str) -> None:
    work = tmp_path / "work"
    out = _interrupted_at(tmp_path, work, pattern)
    assert "left on the device" not in out, out[-3000:]
    assert not list((work / "runs").glob("*-pi4-emu")), (list((work / "runs").iterdir()), out[-3000:])
