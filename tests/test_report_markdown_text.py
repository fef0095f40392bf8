"""Stored text in the Markdown summary reads as it was stored, rendered or raw.

`_text` escaped `\\<>&|\\`[]` and nothing else, so `File ".../numpy/__init__.py"` in an error rendered as
`numpy/<strong>init</strong>.py`, and two masked secrets on one line (`'***' ... '***'`) could turn what lay
between them bold. Escaping every `*` instead made a masked secret read `\\*\\*\\*` in the raw file: only a
`*`, `_` or `~` that Markdown could take for emphasis (or strikethrough) is escaped.
"""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from markdown_it import MarkdownIt

from edgekit.formats import Format
from edgekit.report import build
from edgekit.report.markdown import _text, render
from edgekit.report.synthetic import synthetic_result
from edgekit.store import open_store

STORED = [
    'File "/usr/lib/python3/dist-packages/numpy/__init__.py", line 3, in <module>',
    "tunnel: password '***' rejected by bastion; token '***' refused",
    "connect: ProxyCommand sshpass -p *** ssh -W %h:%p jump@bastion",
    "TOKEN=*** and KEY=***",
    "a *b* c, 2*3*4, **bold**, *** alone",
    "_private_ and __dunder__ and snake_case_name and _x",
    "~~struck~~ ~one~ a~b",
    "mixed *_~ chars_*~ -> arrow",
    "model_int8.tflite: load failed (__call__ of _Interpreter)",
    "key /home/alice/.ssh/id_lab_ed25519",
]


def _shown(markdown: str, bold: int = 0) -> str:
    """What a reader of the rendered Markdown sees (GitHub's flavour: tables and ~strikethrough~ on); no
    emphasis but the `bold` the summary itself writes (a flag's kind)."""
    rendered = MarkdownIt("commonmark").enable(["table", "strikethrough"]).render(markdown)
    assert len(re.findall(r"<(?:em|strong|s|del)>", rendered)) == bold == rendered.count("<strong>"), rendered
    return html.unescape(re.sub(r"<[^>]+>", "", rendered)).strip()


@pytest.mark.parametrize("stored", STORED)
def test_stored_text_renders_as_it_was_stored(stored: str) -> None:
    assert _shown("- " + _text(stored)) == stored.replace("->", "→")


@pytest.mark.parametrize(
    "stored", ["sshpass -p *** ssh", "key /home/alice/.ssh/id_lab_ed25519", "snake_case_name", "2 * 3"]
)
def test_what_markdown_leaves_alone_is_not_escaped_in_the_raw_file(stored: str) -> None:
    """A reader of the raw .md (a log, a chat without Markdown) sees a masked secret as `***`, not `\\*\\*\\*`."""
    assert _text(stored) == stored


def test_a_failed_targets_traceback_in_the_whole_summary(tmp_path: Path) -> None:
    """Through `render`: the flag quoting a stored error shows `__init__.py` and both masked secrets."""
    error = "import failed: numpy/__init__.py; password '***' rejected, token '***' refused"
    url = f"sqlite:///{tmp_path / 'md.sqlite'}"
    rng = np.random.default_rng(2)
    with open_store(url) as store:
        for night in range(4):
            result = synthetic_result(
                datetime(2026, 2, 1, 2, tzinfo=UTC) + timedelta(days=night),
                rng=rng,
                targets=("pi4",),
                formats=(Format.TFLITE_FP32,),
                threads=(1,),
            )
            if night == 3:
                result.runs[0] = result.runs[0].model_copy(
                    update={"status": "failed", "agent": None, "error": error}
                )
            store.record(result)
        md = render(build(store))
    line = next(x for x in md.splitlines() if "import failed" in x)
    shown = _shown(line, bold=1)  # **failed**
    assert "numpy/__init__.py; password '***' rejected, token '***' refused" in shown, (line, shown)
