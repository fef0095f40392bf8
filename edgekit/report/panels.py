"""The report's plot primitives: one panel per figure, all the same width, drawn with matplotlib (Agg) as
inline SVG text; a format's fixed colour; dates, compact tick labels and the fixed margins every panel shares.
edgekit/report/plots.py draws the measured figures with them, estimate_plots.py an emulated board's estimates."""

from __future__ import annotations

import io
import re
import zlib
from dataclasses import dataclass
from typing import Any, cast

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from edgekit.formats import Format, Precision

EMULATED_NOTE = "EMULATED: qemu wall time, not device latency"
# tab10 first, then its lighter partners: 20 colours, a format's colour fixed by its place in Format
_TAB20: tuple[tuple[float, float, float], ...] = cast(Any, plt.get_cmap("tab20")).colors  # a ListedColormap
_PALETTE = _TAB20[::2] + _TAB20[1::2]
_COLOURS = {f.value: _PALETTE[i % len(_PALETTE)] for i, f in enumerate(Format)}
PRECISION_COLOURS = dict(zip(Precision, ("#4c72b0", "#55a868", "#c44e52", "#dd8452")))
WIDTH_IN = 4.4  # every panel: ~420 px at 100 %, three to a row at 1400 px, one (scaled to ~0.85) at 390 px
HEIGHT_IN = 2.8
CHAR_IN = 0.075  # width of one 9 pt character, for margins sized to their labels without measuring text
MAX_LEFT_IN = (
    0.45 * WIDTH_IN
)  # the widest label margin: 23 characters; the plot keeps more than half the width
plt.rcParams.update(
    {
        "svg.fonttype": "none",
        "svg.hashsalt": "edgekit",
        "font.size": 9,
        "axes.spines.top": False,
        "axes.spines.right": False,
        # ids are text: `$...$` in one (runs import takes a foreign file's ids as they are) was parsed as math,
        # and an unknown macro in it crashed the whole report
        "text.parse_math": False,
    }
)


@dataclass(frozen=True)
class Panel:
    """One figure of the report: its caption (plain text), the SVG, or why there is none."""

    caption: str
    svg: str | None
    note: str = ""  # under the caption: a basis ("EMULATED: ...") or, without an SVG, why there is no data
    emulated: bool = False


def colour(artifact: str) -> tuple[float, float, float]:
    """A format's own colour; any other artifact id (a float-fallback variant, say) a stable pick of all."""
    return _COLOURS.get(artifact) or _PALETTE[zlib.crc32(artifact.encode()) % len(_PALETTE)]


def colour_hex(artifact: str) -> str:
    return to_hex(colour(artifact))


def order(artifact: str) -> tuple[int, str]:
    known = [f.value for f in Format]
    return (known.index(artifact) if artifact in known else len(known), artifact)


def threads_text(n: int) -> str:
    return f"{n} thread{'s' if n != 1 else ''}"


def date_num(ts: float) -> float:
    return float(mdates.date2num(np.datetime64(int(ts), "s")))


def compact(value: float, _pos: object = None) -> str:
    """Tick labels of at most 5 characters (180M, 12.5k, 0.25), so the fixed left margin always holds them."""
    magnitude = abs(value)
    # (from, unit, suffix): from 10,000 in thousands; a value that rounds to 1000 of a unit takes the next one
    for start, unit, suffix in ((999.5e6, 1e9, "G"), (999.5e3, 1e6, "M"), (1e4, 1e3, "k")):
        if magnitude >= start:
            return f"{value / unit:.3g}{suffix}"
    return f"{value:.4g}"


def new_panel(*, rows: int = 0, labels: list[str] | None = None) -> tuple[Figure, Axes]:
    """One axes in a figure of fixed width. Margins are fixed in inches rather than measured (constrained
    layout measured every label and made a report several times slower); a panel of horizontal categories
    (`rows`) grows with them and gets a left margin sized to its longest label, up to MAX_LEFT_IN: a label of 53
    characters (an imported artifact id) made the margin wider than the figure, and matplotlib's `left cannot be
    >= right` crashed the whole report. A longer label is cut at the figure's edge; the bars keep their room."""
    left = 0.75 if not labels else min(MAX_LEFT_IN, 0.25 + CHAR_IN * max(len(s) for s in labels))
    height = HEIGHT_IN if not rows else max(HEIGHT_IN * 0.75, 0.9 + 0.3 * rows)
    bottom = 0.55
    fig = plt.figure(figsize=(WIDTH_IN, height))
    ax = fig.add_subplot()
    fig.subplots_adjust(
        left=left / WIDTH_IN, right=1 - 0.2 / WIDTH_IN, top=1 - 0.15 / height, bottom=bottom / height
    )
    if not rows:
        ax.yaxis.set_major_locator(MaxNLocator(nbins=5))
        ax.yaxis.set_major_formatter(FuncFormatter(compact))
    return fig, ax


def time_axis(ax: Axes, xs: list[float]) -> None:
    """Dates readable whether runs are minutes or months apart: the span of the runs with a margin (an hour
    either side of a single run, a minute at least), ticks chosen for that span and labelled concisely."""
    lo, hi = min(xs), max(xs)
    pad = 1 / 24 if hi == lo else max((hi - lo) * 0.06, 1 / 1440)
    ax.set_xlim(lo - pad, hi + pad)
    locator = mdates.AutoDateLocator(minticks=2, maxticks=4)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))


def finish(fig: Figure, caption: str, emulated: bool, note: str) -> Panel:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg")
    plt.close(fig)
    svg = re.sub(r"^.*?(<svg\b)", r"\1", buffer.getvalue(), count=1, flags=re.S)  # no XML prolog, DOCTYPE
    return Panel(caption, svg, note, emulated)
