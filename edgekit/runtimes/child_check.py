"""A model file loaded by its runtime in a child process (never in edgekit's own: a runtime may crash on it, or
fold it into gigabytes), and what the child said: the runtime's own words on a tagged stderr line, or else the
signal that killed it, or its exit status and last stderr line."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence

from edgekit.errors import exit_text


def check_in_child(
    code: str, tag: str, args: Sequence[str], timeout_s: float, doing: str
) -> tuple[str, str] | None:
    """None when CODE (run as `python -I -c CODE ARGS`) exits 0; else ('said', the runtime's words after TAG) or
    ('other', why: 'it crashed DOING it: ...' / 'its check ended with ...'). Raises subprocess.TimeoutExpired."""
    proc = subprocess.run(
        [sys.executable, "-I", "-c", code, *args],
        capture_output=True,
        text=True,
        errors="replace",
        timeout=timeout_s,
    )
    if proc.returncode == 0:
        return None
    said = [ln for ln in proc.stderr.splitlines() if ln.startswith(f"{tag}: ")]
    if said:
        return "said", said[-1].split(": ", 1)[1]
    if proc.returncode < 0:
        return "other", f"it crashed {doing} it: {exit_text(proc.returncode)}"
    last = next((ln.strip() for ln in reversed(proc.stderr.splitlines()) if ln.strip()), "")
    return "other", f"its check ended with {exit_text(proc.returncode)}" + (f": {last}" if last else "")
