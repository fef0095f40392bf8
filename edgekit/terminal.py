"""The console edgekit prints with: rich's, except that a line whose text only looks like markup prints as text.

edgekit's lines carry text from outside (a device's error, a converter's message, a path): rich reads `[...]` in
it as markup, and a stray closing tag (`[/x]` in a path or an error) raised MarkupError, so the error message of
a failed run became an internal error with a traceback. Where edgekit prints such text it escapes it (`plain`);
`Console.print` is the net under the rest: on MarkupError it prints the same objects with markup off.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console as RichConsole
from rich.errors import MarkupError
from rich.markup import escape


class Console(RichConsole):
    def print(self, *objects: Any, **kwargs: Any) -> None:
        try:
            super().print(*objects, **kwargs)
        except MarkupError:
            super().print(*objects, **{**kwargs, "markup": False})


def plain(text: object) -> str:
    """Text from outside, for a line printed with markup: shown as it is, never read as markup."""
    return escape(str(text))
