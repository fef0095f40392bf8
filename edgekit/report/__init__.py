"""Reports from the results store: an HTML file with plots, a Markdown summary, and regression flags.

    from edgekit.report import build, write
    report = build(store, since=ts, recipes=["yolov5-lite"], targets=["pi4"])
    write(report, html="report.html", markdown="summary.md")

The names below load lazily (PEP 562), so importing `edgekit.report.table` (the terminal tables that
`edgekit deploy` prints) does not pull in the store, SQLAlchemy and SciPy.
"""

from __future__ import annotations

import importlib
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekit.errors import UsageError
from edgekit.paths import write_atomic

if TYPE_CHECKING:
    from edgekit.report.regression import Flag, FlagKind, Settings
    from edgekit.report.view import Report, build

__all__ = ["Flag", "FlagKind", "Report", "Settings", "build", "parse_since", "write"]
_LAZY = {
    "Flag": "regression",
    "FlagKind": "regression",
    "Settings": "regression",
    "Report": "view",
    "build": "view",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"edgekit.report.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'edgekit.report' has no attribute {name!r}")


def write(
    report: Report, *, html: str | Path | None = None, markdown: str | Path | None = None
) -> list[Path]:
    """Write the Markdown summary and/or the HTML report; return the paths written. One that cannot be written
    does not cost the other (the first error is raised after both were tried)."""
    written: dict[str, Path] = {}
    failed: Exception | None = None
    if markdown:  # first: the verdict, cheap
        from edgekit.report import markdown as md_mod

        try:
            written["md"] = write_atomic(Path(markdown), md_mod.render(report))
        except Exception as exc:  # noqa: BLE001 - raised below, after the HTML was tried
            failed = exc
    if html:
        from edgekit.report import html as html_mod  # matplotlib: only when an HTML report is asked for

        try:
            written["html"] = write_atomic(Path(html), html_mod.render(report))
        except Exception as exc:  # noqa: BLE001
            failed = failed or exc
    if failed is not None:
        raise failed
    return [written[k] for k in ("html", "md") if k in written]


def parse_since(text: str | None, *, now: float | None = None, option: str = "--since") -> float | None:
    """`30d`, `12h`, `2w`, `90m` (ago) or an ISO date/time, as epoch seconds; None/'all' for all history.
    `option` names the option in the error (`edgekit cache prune --older-than` reads the same forms)."""
    if text is None or text.strip().lower() in ("", "all"):
        return None
    now = time.time() if now is None else now
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([mhdw])\s*", text.lower())
    if match:
        seconds = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}[match.group(2)]
        return max(0.0, now - float(match.group(1)) * seconds)  # longer ago than 1970: all history
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(
            f"{option}: cannot read {text!r}",
            hint="use a duration like 30d, 12h, 2w or a date like 2026-01-31",
        ) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
