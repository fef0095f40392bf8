"""Progress and log lines were hard-wrapped at the console's width when the output was not a terminal (a log file,
CI): a path split across lines in make setup's log, a deploy's progress line broken mid-sentence. Every CLI
console (edgekit.terminal.Console) now soft-wraps when it does not write to a terminal: a line stays one line,
tables still render at their width."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

from rich.table import Table

from edgekit.terminal import Console

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "tiny.yaml"
PROGRESS = re.compile(r"^\s*\d+\.\d s  \S")


def test_a_deploy_progress_line_longer_than_the_console_stays_one_line_in_a_pipe() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    done = subprocess.run(
        [sys.executable, "-m", "edgekit", "deploy", str(RECIPE), "-f", "tflite-fp32", "--no-store"]
        + ["--threads", "1", "--repeat", "1", "--samples", "1"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    first = next(i for i, line in enumerate(lines) if PROGRESS.match(line))
    table = next(i for i, line in enumerate(lines) if line.startswith("tiny: artifacts"))
    progress = lines[first:table]
    assert max(len(line) for line in progress) > 160  # the console's width here (a pipe: deploy's 160)
    broken = [line for line in progress if not PROGRESS.match(line)]
    assert not broken, "\n".join(progress)  # every line of the progress is a whole message


def test_a_console_on_a_pipe_keeps_lines_whole_and_tables_at_its_width() -> None:
    out = io.StringIO()  # not a terminal
    console = Console(file=out, width=80, color_system=None)
    path = "/root/.local/share/edgekit/emu/site/tflite-runtime" + "/x" * 40
    console.print(f"wheels: installing into {path} (offline, from /root/.cache/wheels/a864ed56e5)")
    table = Table("a", "b", title="a title longer than the table " * 4, caption="and its caption " * 8)
    table.add_row("x" * 60, "y" * 60)
    console.print(table)
    lines = out.getvalue().splitlines()
    assert lines[0].endswith("a864ed56e5)") and path in lines[0]
    assert all(len(line) <= 80 for line in lines[1:])  # the table, its title and caption fit its width
    wrapped = io.StringIO()
    Console(file=wrapped, width=80, color_system=None, soft_wrap=False).print("word " * 40)
    assert len(wrapped.getvalue().splitlines()) > 1  # asked for explicitly: wrapped as before
