"""Terminal escapes in stored text (an imported run's error, a device's CPU model) reached the Markdown and HTML
reports raw (host only: SQLite files, no device): `cat report.md` set the terminal's title and cleared its
screen. Both reports show a control character as its escape (`\\x1b`), as the terminal output does."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import numpy as np
import procs

from edgekit.formats import Format
from edgekit.report.synthetic import synthetic_result

T0 = datetime.now(UTC) - timedelta(days=1)
HOSTILE = "\x1b]0;PWNED-TITLE\x07\x1b[2J\x9b31m"
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


_edgekit = partial(procs.run, timeout=300)


def test_markdown_and_html_reports_show_terminal_escapes_as_text(tmp_path: Path) -> None:
    result = synthetic_result(
        T0, rng=np.random.default_rng(0), formats=(Format.TFLITE_FP32,), threads=(1,), repeat=12
    )
    data = json.loads(result.model_dump_json())
    data["ok"] = False
    data["runs"][0]["status"] = "failed"
    data["runs"][0]["error"] = f"device said {HOSTILE} and stopped"
    data["runs"][0]["agent"]["facts_before"]["cpu_model"] = f"Cortex {HOSTILE}"
    data["artifacts"][0]["error"] = f"artifact {HOSTILE}"
    path = tmp_path / "r.json"
    path.write_text(json.dumps(data))
    store, home = tmp_path / "s.db", tmp_path / "home"
    out = _edgekit("runs", "import", str(path), "--store", str(store), home=home)
    assert out.returncode == 0, out.stdout + out.stderr
    md, page = tmp_path / "r.md", tmp_path / "r.html"
    out = _edgekit("report", "--store", str(store), "--markdown", str(md), "--html", str(page), home=home)
    assert out.returncode in (0, 1), out.stdout + out.stderr
    for written in (md, page):
        text = written.read_text(encoding="utf-8")
        assert not CONTROL.findall(text), (written.name, sorted(set(CONTROL.findall(text))))
    page_text = page.read_text(encoding="utf-8")
    assert "\\x1b]0;PWNED-TITLE\\x07\\x1b[2J\\x9b31m" in page_text  # shown, as text


def test_markdown_text_of_a_failure_shows_terminal_escapes_as_text() -> None:
    from edgekit.report.markdown import _text

    shown = _text(f"agent died: {HOSTILE}")
    assert not CONTROL.findall(shown), shown
    assert "PWNED-TITLE" in shown and "\\x1b" in shown and "\\x07" in shown, shown
