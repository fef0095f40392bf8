"""The `edgekit bench` table: every measurement of one agent run on one target with its full timing statistics
(load ms, p50 to min, samples x number, peak RSS, guest instructions), emulated wall times labelled as such.
Its load-ms note is also what `edgekit runs show` prints under a stored run's measurements.
"""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from edgekit.report.table import EMULATED_NOTE, _ms
from edgekit.results import AgentResult, Measurement
from edgekit.terminal import plain

LOAD_NOTE = (
    "load ms = opening the model with its runtime already started (comparable across formats); each runtime's "
    "start-up, its first load in the agent run, is apart"
)


def load_note(measurements: list[Measurement]) -> str | None:
    """What load ms is, with each runtime's start-up figure ('ncnn 8.1 ms'): said where a table shows load ms."""
    started = {
        m.runtime or m.format: m.runtime_init_ms for m in measurements if m.runtime_init_ms is not None
    }
    if not started:
        return None
    return LOAD_NOTE + " (runtime_init_ms: " + ", ".join(f"{k} {_ms(v)} ms" for k, v in started.items()) + ")"


def bench_table(agent: AgentResult, target: str) -> Table:
    emulated = agent.facts_before.emulated
    unit = "emulated wall ms" if emulated else "ms"
    facts = agent.facts_before
    title = plain(  # the device's own words (its CPU model): printed as they are
        f"{target}: {facts.machine} {facts.cpu_model or ''}, {facts.cores} cores, python {facts.python}"
        + (f" ({facts.emulator})" if emulated else "")
    )
    notes = [n for n in (EMULATED_NOTE if emulated else None, load_note(agent.measurements)) if n]
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
            "load ms",
            f"p50 {unit}",
            "p90",
            "p99",
            "mean",
            "std",
            "min",
            "samples x number",
            "peak RSS MiB (qemu)" if emulated else "peak RSS MiB",
        ]
        + (["guest insn / invoke"] if counted else [])
        + ["status"]
    )
    for name in names:
        table.add_column(name, justify="left" if name in ("artifact", "runtime", "status") else "right")
    for m in agent.measurements:
        ok = m.status == "ok"
        insn = [f"{m.instructions_per_invoke:,}" if m.instructions_per_invoke else "-"] if counted else []
        table.add_row(
            plain(m.artifact),  # a file bench ran under its own name (`m[1].mnn`)
            plain(m.runtime),
            str(m.threads),
            _ms(m.load_ms),
            _ms(m.p50_ms, emulated),
            _ms(m.p90_ms),
            _ms(m.p99_ms),
            _ms(m.mean_ms),
            _ms(m.std_ms),
            _ms(m.min_ms),
            f"{len(m.samples_ms)} x {m.number}",
            _num(m.peak_rss_mb, 1),
            *insn,
            Text("ok", style="green") if ok else Text(f"failed: {m.error}", style="red"),
        )
    return table


def _num(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"
