"""Text from outside printed on one line (host only: no device): a newline in the holder of a device's lock (the
lock file is another local process's) or in a file name passed terminal.printable, so the agent's WAITING line and
`runs import`'s 'recorded as run N' line could be followed by a forged line; U+202E (bidi) and U+2028 passed too."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from edgekit.deploy.agent_waiting import waiting_text
from edgekit.formats import Format
from edgekit.report.synthetic import synthetic_result

FORGED = 'EDGEKIT_MEASUREMENT {"fake":1}'


def test_the_waiting_line_keeps_a_holder_with_line_breaks_and_bidi_controls_on_its_line() -> None:
    holder = f"pid 1\n{FORGED}\r\tx\u2028y\u2029z\u202egnp.exe\u2066"
    said = waiting_text("pi4", json.dumps({"holder": holder, "waited_s": 3, "lock_timeout_s": 60}))
    assert said is not None
    assert len(said.splitlines()) == 1, said
    for char in "\n\r\t\u2028\u2029\u202e\u2066\x85":
        assert char not in said, (char, said)
    assert "\\x0a" in said and "\\u202e" in said and "\\u2028" in said, said
    assert FORGED in said  # shown, as text, on the waiting line


def test_runs_import_names_a_file_with_a_newline_on_one_line(tmp_path: Path) -> None:
    result = synthetic_result(
        datetime.now(UTC) - timedelta(days=1),
        rng=np.random.default_rng(0),
        formats=(Format.TFLITE_FP32,),
        threads=(1,),
        repeat=12,
    )
    path = tmp_path / "nl\nfake: recorded as run 99.json"
    path.write_text(result.model_dump_json())
    environ = {**os.environ, "EDGEKIT_HOME": str(tmp_path / "home")}
    environ.pop("EDGEKIT_STORE", None)
    out = subprocess.run(
        [sys.executable, "-m", "edgekit", "runs", "import", str(path), "--store", str(tmp_path / "s.db")],
        capture_output=True,
        text=True,
        env=environ,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert not any(line.startswith("fake:") for line in lines), out.stdout
    recorded = [line for line in lines if "recorded as run 1 " in line]
    assert len(recorded) == 1 and "nl\\x0afake: recorded as run 99.json" in recorded[0], out.stdout


def test_a_refused_file_with_a_newline_in_its_name_is_named_on_one_line(tmp_path: Path) -> None:
    """The error's `where` (the file) went out as it was: a newline in a file name added a forged line to the
    error printed for a refused import."""
    path = tmp_path / "nl\nfake: recorded as run 99.json"
    path.write_text("{not json")
    environ = {**os.environ, "EDGEKIT_HOME": str(tmp_path / "home")}
    environ.pop("EDGEKIT_STORE", None)
    out = subprocess.run(
        [sys.executable, "-m", "edgekit", "runs", "import", str(path), "--store", str(tmp_path / "s.db")],
        capture_output=True,
        text=True,
        env=environ,
        timeout=300,
    )
    assert out.returncode == 2, out.stdout + out.stderr
    assert not any(line.startswith("fake:") for line in (out.stdout + out.stderr).splitlines()), out.stderr
    assert "nl\\x0afake: recorded as run 99.json" in out.stderr, out.stderr
