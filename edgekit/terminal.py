"""The console edgekit prints with: rich's, except that a line whose text only looks like markup prints as text.

edgekit's lines carry text from outside (a device's error, a converter's message, a path): rich reads `[...]` in
it as markup, and a stray closing tag (`[/x]` in a path or an error) raised MarkupError, so the error message of
a failed run became an internal error with a traceback. Where edgekit prints such text it escapes it (`plain`);
`Console.print` is the net under the rest: on MarkupError it prints the same objects with markup off.

`plain` also shows a control character as its escape (`\\x1b`): text from a device (a streamed artifact name, its
CPU model, an agent's stderr) carried terminal sequences that cleared the screen, set the window title or wrote
the clipboard (OSC 52) of the user's terminal, live and when a stored run was shown again.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console as RichConsole
from rich.errors import MarkupError
from rich.markup import escape
from rich.text import Text


class Console(RichConsole):
    """Not writing to a terminal (a log file, CI, a pipe), a line of text is printed whole (soft_wrap) unless the
    caller chooses: a path or a progress message hard-wrapped at the width was split across lines, no longer
    greppable. Tables (any renderable but text) still render at the console's width, titles and captions too."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lines_whole = "soft_wrap" not in kwargs and not self.is_terminal

    def on_broken_pipe(self) -> None:
        """The reader has gone (`edgekit formats | head -1`): end quietly, exit 0. rich's default exits 1, and a
        script's `set -o pipefail` then failed on a command that had said all it was asked."""
        self.quiet = True
        stdout_to_devnull()
        raise SystemExit(0)

    def print(self, *objects: Any, **kwargs: Any) -> None:
        if (
            self.lines_whole
            and kwargs.get("soft_wrap") is None
            and all(isinstance(o, (str, Text)) for o in objects)
        ):
            kwargs["soft_wrap"] = True
        try:
            super().print(*objects, **kwargs)
        except MarkupError:
            super().print(*objects, **{**kwargs, "markup": False})


def stdout_to_devnull() -> None:
    """Python's own note on SIGPIPE: point stdout at /dev/null, or its flush at exit raises again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


# C0 controls but tab and newline, DEL and the C1 controls (U+0080-U+009F: a terminal may read U+009B as CSI)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """`text` with every control character but tab and newline as its escape (`\\x1b`): what a terminal shows, never
    a sequence it obeys."""
    return _CONTROL.sub(lambda found: f"\\x{ord(found.group()):02x}", text)


# what breaks or reorders a line besides the controls: tab, newline, U+2028/U+2029 (line and paragraph separators)
# and the bidi controls (U+202E showed `gnp.exe` for `exe.png`)
_LINE_BREAKING = re.compile(r"[\t\n\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def one_line(text: str) -> str:
    """`printable(text)` kept on one line, as it reads: tab, newline, the Unicode line and paragraph separators and
    the bidi controls as their escapes too (`\\x0a`, `\\u202e`). For a one-line field (a file name, a lock's
    holder): a newline in it printed a line of its own, forging one of edgekit's."""
    return _LINE_BREAKING.sub(
        lambda found: (
            f"\\x{ord(found.group()):02x}" if ord(found.group()) < 0x100 else f"\\u{ord(found.group()):04x}"
        ),
        printable(text),
    )


def plain_line(text: object) -> str:
    """`plain` on one line (`one_line`), for a line printed with markup."""
    return escape(one_line(str(text)))


def plain(text: object) -> str:
    """Text from outside, for a line printed with markup: shown as it is, never read as markup nor obeyed as a
    terminal sequence."""
    return escape(printable(str(text)))


@contextmanager
def ticking_status(console: RichConsole, text: str) -> Iterator[None]:
    """console.status(text) with the seconds gone by, updated every second: a count under qemu can take minutes
    on a big model, and a spinner alone does not say whether it is still getting anywhere."""
    start = time.monotonic()
    stop = threading.Event()
    with console.status(text) as status:

        def tick() -> None:
            while not stop.wait(1.0):
                status.update(f"{text} ({time.monotonic() - start:.0f} s)")

        ticker = threading.Thread(target=tick, name="edgekit-status", daemon=True)
        ticker.start()
        try:
            yield
        finally:
            stop.set()
            ticker.join()
