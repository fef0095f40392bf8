"""The `edgekit bench` table: every measurement of one agent run on one target with its full timing statistics
(load ms, p50 to min, samples x number, the process's peak RSS and the model's growth, guest instructions), emulated wall times labelled as such.
Its load-ms note is also what `edgekit runs show` prints under a stored run's measurements.
"""

from __future__ import annotations

from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement as Measured
from rich.table import Table
from rich.text import Text

from edgekit.report.percentiles import few_samples_note, percentile
from edgekit.report.table import _ms
from edgekit.report.table_caption import EMULATED_NOTE
from edgekit.results import AgentResult, Measurement
from edgekit.terminal import plain

EMULATED_WALL = "emulated wall"  # what a time under qemu is, in every column and note that shows one
# the columns whose cells are never wrapped nor cut: the artifact's name and the headline figure (a board's p50,
# an emulated target's instruction count)
WHOLE = ("artifact", "p50 ms", "guest insn / invoke")
TIMES = ("p90", "p99", "mean", "std", "min")  # in ms, as the p50 column says on the host
LOAD_NOTE = (
    "load ms = opening the model with its runtime already started (comparable across formats); each runtime's "
    "start-up, its first load in the agent run, is apart"
)


# peak_rss_mb is the agent process's (the interpreter, numpy and the runtime: 53 MiB for a 25 KB model);
# rss_delta_mb, the growth from before the load, is the figure nearest the model's own memory
PROCESS_PEAK, MODEL_GROWTH = "process peak RSS MiB", "model RSS + MiB"
MEMORY_NOTE = (
    "process peak RSS = the agent process's peak (python, numpy and the runtime with the model); model RSS + = "
    "its resident set's growth from before loading the model to the end of the timed runs"
)
STD_NOTE = "'-' as std: one sample has no spread"


def load_note(measurements: list[Measurement], emulated: bool = False) -> str | None:
    """What load ms is, with each runtime's start-up figure ('ncnn 8.1 ms'): said where a table shows load ms. On
    an emulated target both are qemu's wall times, and said so ('load emulated wall ms', 'ncnn 812 emulated wall
    ms'), as the table's columns."""
    started = {
        m.runtime or m.format: m.runtime_init_ms for m in measurements if m.runtime_init_ms is not None
    }
    if not started:
        return None
    unit = f"{EMULATED_WALL} ms" if emulated else "ms"
    note = LOAD_NOTE.replace("load ms", f"load {unit}", 1) if emulated else LOAD_NOTE
    return note + " (runtime_init_ms: " + ", ".join(f"{k} {_ms(v)} {unit}" for k, v in started.items()) + ")"


def bench_table(agent: AgentResult, target: str) -> Table:
    emulated = agent.facts_before.emulated
    unit = f"{EMULATED_WALL} ms" if emulated else "ms"
    facts = agent.facts_before
    title = plain(  # the device's own words (its CPU model): printed as they are
        f"{target}: {facts.machine} {facts.cpu_model or ''}, {facts.cores} cores"
        # qemu-user's guest reads the cores of the machine running it, not the board's (a Pi 4 has 4)
        + (" (the emulator host's)" if emulated else "")
        + f", python {facts.python}"
        + (f" ({facts.emulator})" if emulated else "")
    )
    notes = [
        n
        for n in (
            EMULATED_NOTE if emulated else None,
            load_note(agent.measurements, emulated),
            None if emulated else MEMORY_NOTE,
            few_samples_note(agent.measurements),
            STD_NOTE if any(m.status == "ok" and m.std_ms is None for m in agent.measurements) else None,
        )
        if n
    ]
    table = Table(
        title=title,
        title_justify="left",
        caption="\n".join(notes) or None,
        caption_justify="left",
        header_style="bold",
    )
    counted = any(m.instructions_per_invoke for m in agent.measurements)
    names = (
        [
            "artifact",
            "runtime",
            "thr",
            # every wall time says what it is: on an emulated target each is qemu's, not the device's
            f"load {unit}",
            f"p50 {unit}",
            *((f"{name} {unit}" for name in TIMES) if emulated else TIMES),
            "samples x number",
            # emulated: the qemu process's; its growth is the emulator's, no column
            *(["peak RSS MiB (qemu)"] if emulated else [PROCESS_PEAK, MODEL_GROWTH]),
        ]
        + (["guest insn / invoke"] if counted else [])
        + ["status"]
    )
    rows = [_row(m, emulated, counted) for m in agent.measurements]
    # each column's natural width: its header on one line, its widest cell
    natural = [
        max([len(name)] + [Text.from_markup(str(r[k])).cell_len for r in rows])
        for k, name in enumerate(names)
    ]
    # the room a header is measured in when the console holds them all: less the borders and its padding
    roomy = sum(natural) + 2 * len(names) - 2
    for k, name in enumerate(
        names
    ):  # the headline figures are never cut ('90,804,…'); their headers wrap instead
        whole = name in WHOLE
        widest = max([Text(str(r[k])).cell_len for r in rows] + [max(map(len, name.split()))])
        table.add_column(
            _Header(name, widest, roomy) if whole else name,
            justify="left" if name in ("artifact", "runtime", "status") else "right",
            no_wrap=whole,
        )
    for row in rows:
        table.add_row(*row)
    return table


def _row(m: Measurement, emulated: bool, counted: bool) -> list[str | Text]:
    insn = [f"{m.instructions_per_invoke:,}" if m.instructions_per_invoke else "-"] if counted else []
    return [
        plain(m.artifact),  # a file bench ran under its own name (`m[1].mnn`)
        plain(m.runtime),
        str(m.threads),
        _ms(m.load_ms),
        _ms(m.p50_ms),
        _ms(percentile(m, "p90")),
        _ms(percentile(m, "p99")),
        _ms(m.mean_ms),
        _ms(m.std_ms),
        _ms(m.min_ms),
        f"{len(m.samples_ms)} x {m.number}",
        _num(m.peak_rss_mb, 1),
        *([] if emulated else [_num(m.rss_delta_mb, 1)]),
        *insn,
        Text("ok", style="green") if m.status == "ok" else _not_ok(m),
    ]


def _not_ok(m: Measurement) -> Text:
    """'skipped' (its runtime is not installed on the device: the target's error under the table names it and the
    fix), else 'failed: <why>'."""
    return (
        Text("skipped", style="yellow") if m.status == "skipped" else Text(f"failed: {m.error}", style="red")
    )


class _Header:
    """The header of a column whose cells never wrap: on one line where the console holds every header so (a
    header is measured in `roomy` columns then), else as narrow as the column's widest cell ('guest insn /
    invoke' on two lines), so the column takes no more room than its figures."""

    def __init__(self, text: str, narrow: int, roomy: int) -> None:
        self.text, self.narrow, self.roomy = text, narrow, roomy

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measured:
        width = len(self.text) if options.max_width >= self.roomy else min(self.narrow, len(self.text))
        return Measured(width, width)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield Text(self.text, no_wrap=False)  # wraps at the column's width, though its cells do not


def _num(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"
