"""One target of a stored run as `edgekit runs show` prints it: the device's facts; its figures in deploy's layout
(report/table.py target_table: it reads from 80 columns up, a name never cut, a figure folded, never elided) with
deploy's 'x fp32' and 'drift vs host'; stacked under them its load and memory; then the lines deploy printed under
its table. A column that no row has a figure for is left out (the host's instruction count, a p99 of 10 samples).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text

from edgekit.report.bench_table import MEMORY_NOTE, MODEL_GROWTH, PROCESS_PEAK, load_note
from edgekit.report.figures import estimated_thread_counts
from edgekit.report.lines import comparison_failures, timing_caveats
from edgekit.report.percentiles import few_samples_note, percentile, too_few
from edgekit.report.table import (
    DRIFT_NOTE,
    compared_with_host,
    comparison,
    count_ratio,
    drift_cell,
    estimate_cell,
    speedup,
    target_table,
)
from edgekit.report.table_caption import interval_words, not_validated_note, split_not_counted_notes
from edgekit.route_rejections import not_comparable
from edgekit.terminal import Console, plain

if TYPE_CHECKING:
    from edgekit.results import DeviceFacts, Measurement, TargetRun

EMU = "[black on yellow] emulated [/]"
Cell = Text | str
Columns = dict[str, list[Cell]]  # header -> one cell per row, in the rows' order
# what the ratio columns are, in deploy's words (table_caption.caption, COUNT_NOTE)
SPEEDUP_NOTE = "x fp32 = p50 of the same runtime's fp32 / p50 (same target and threads)"
COUNT_RATIO_NOTE = "x fp32 by insn = instruction-count ratio (instructions are not cycles)"
STATUS = "status"


def print_target(
    console: Console,
    t: TargetRun,
    verbose: bool,
    missed: set[str],
    *,
    left_out: bool = False,
    not_ratios: dict[str, Text] | None = None,
) -> None:
    """LEFT_OUT: the host skipped because every device failed before measuring: 'not measured', as `runs` says,
    not 'failed' (its status field is failed: it has no figures). `not_ratios`: artifact -> what its 'x fp32'
    says instead of a ratio (run_view.not_ratios: 'same model', 'no int8 layer'). MISSED: the artifacts that
    missed a gate at conversion, where this target judged none."""
    _print_heading(console, t, left_out)
    if t.agent is None:
        return
    ms = t.agent.measurements
    counted = t.emulated and any(m.instructions_per_invoke for m in ms)
    board = next(
        (e.get("board") for e in t.estimates.values() if isinstance(e, dict) and e.get("board")), None
    )
    cols = _figures(t, missed, not_ratios or {}, counted, board)
    rows = [(m.artifact, m.threads) for m in ms]
    for artifact, threads, est in estimated_only(t) if board else []:  # deploy's rows of a capped plan
        ran = ", ".join(str(m.threads) for m in ms if m.artifact == artifact)
        for header, cells in cols.items():
            cells.append(estimate_cell(est) if "ESTIMATE" in header else "-")
        cols[STATUS][-1] = f"[dim]not run: estimated from the {ran}-thread run's instruction counts[/]"
        rows.append((artifact, threads))
    figures = _shown(cols)
    table = target_table(None, [a for a, _ in rows], list(figures), left=(STATUS,))
    for k, (artifact, threads) in enumerate(rows):
        table.add_row(plain(artifact), str(threads), *(cells[k] for cells in figures.values()))
    console.print(table)
    memory = _shown(_load_and_memory(t, counted, verbose))
    if memory:  # stacked under the figures, in the same layout
        title = ("emulated wall times, " if counted else "") + "samples, load and memory"
        stacked = target_table(title, [m.artifact for m in ms], list(memory))
        for k, m in enumerate(ms):
            stacked.add_row(plain(m.artifact), str(m.threads), *(cells[k] for cells in memory.values()))
        console.print(stacked)
    _print_notes(console, t, [*figures, *memory], board, counted)


def _print_heading(console: Console, t: TargetRun, left_out: bool) -> None:
    """The target's name, kind and status, then the device's own words (its CPU model, runtime versions)."""
    label = f"{plain(t.target)} {EMU}" if t.emulated else plain(t.target)
    status, colour = ("not measured", "yellow") if left_out else (plain(t.status), "red")
    console.print(
        f"\n[bold]{label}[/] ({plain(t.kind)}) status {status}"
        + (" [yellow](interrupted)[/]" if t.interrupted else "")
        + (f": [{colour}]{plain(t.error)}[/]" if t.error else ""),
        highlight=False,  # rich's repr highlighter is quadratic on a long word: 50,000 characters took 28 s
    )
    if t.agent is None:
        return
    f = t.agent.facts_before
    after = t.agent.facts_after
    console.print(  # printed as the device wrote them
        plain(
            f"  {f.machine} {f.cpu_model or ''} x{f.cores}"
            # qemu-user's guest sees the machine's cores, not the board's (a Pi 4 has 4)
            + (" (the emulator host's cores)" if t.emulated else "")
            + (f" via {f.emulator}" if f.emulator else "")
            + _heat(f, after, t.emulated)
            + ", runtimes "
            + ", ".join(f"{k} {v}" for k, v in f.runtimes.items())
        ),
        highlight=False,
    )


def _heat(f: DeviceFacts, after: DeviceFacts | None, emulated: bool) -> str:
    """', temperature 41.2 -> 43.0 C, throttled 0x0 -> 0x0'. An emulated target's, where a stored run has them
    (older agents read the host's /sys under qemu-user), are the machine running the emulator's: said so, or left
    out when there are none ('a Cortex-A72 at 86 °C' was an x86 laptop's)."""
    temps = (f.temperature_c, after.temperature_c if after else None)
    flags = (f.throttled, after.throttled if after else None)
    shown = tuple("-" if v is None else str(v) for v in temps)
    said = f"{shown[0]} -> {shown[1]} C"
    if not emulated:
        return f", temperature {said}, throttled {flags[0] or '-'} -> {flags[1] or '-'}"
    if all(v is None for v in temps):
        return ""
    return f", emulator host's temperature {said} (not the device's)"


def _figures(
    t: TargetRun, missed: set[str], not_ratios: dict[str, Text], counted: bool, board: str | None
) -> Columns:
    """What deploy's table showed of each measurement: a counted emulated target's board estimate, count ratio and
    count; another target's p50 / p90 / p99 (emulated: qemu's, labelled) and speed-up over fp32; the drift from the
    host's outputs; and its status (a missed gate, a busy machine)."""
    ms = t.agent.measurements if t.agent else []
    cols: Columns = {}
    if board:  # an emulated target leads with the real board's estimate
        cols[f"{board} ESTIMATE ms ({interval_words(t.estimates.values())})"] = [_estimate(t, m) for m in ms]
    if not counted:  # qemu's wall time is no device latency: a counted target's is with --verbose, below
        cols |= _percentiles(ms, t.emulated)
    ratio = "x fp32 by insn" if counted else "x fp32 emulated" if t.emulated else "x fp32"
    cols[ratio] = [_ratio(t, m, counted, not_ratios.get(m.artifact)) for m in ms]
    if counted:
        cols["insn / invoke (count)"] = [
            f"{m.instructions_per_invoke:,}" if m.instructions_per_invoke else "-" for m in ms
        ]
    if compared_with_host(t):
        cols["drift vs host max|d| / cos"] = [drift_cell(comparison(t, m.artifact, "host")) for m in ms]
    # the gates judged on this target's outputs (deploy's MISS), else the artifact's at conversion
    judged = {c.artifact: c.gates_passed for c in t.comparisons if c.reference == "onnx"}
    uncompared = {
        c.artifact for c in t.comparisons if c.reference == "onnx" and not_comparable(c.gate_failures)
    }
    cols[STATUS] = [
        _status(
            m,
            _gate_missed(judged.get(m.artifact), m.artifact in missed),
            t.emulated,
            m.artifact in uncompared,
        )
        for m in ms
    ]
    return cols


def _gate_missed(verdict: bool | None, missed_at_conversion: bool) -> bool:
    """Missed on this target's outputs, or, where this target judged no gate, at conversion."""
    return verdict is False or (verdict is None and missed_at_conversion)


def _load_and_memory(t: TargetRun, counted: bool, verbose: bool) -> Columns:
    """Each measurement's samples, load time and memory (a counted emulated target's with its emulated wall times,
    and only with `verbose`: they are qemu's, not the device's)."""
    ms = t.agent.measurements if t.agent else []
    if counted and not verbose:
        return {}
    cols: Columns = _percentiles(ms, emulated=True) if counted else {}
    cols["samples"] = [str(len(m.samples_ms)) for m in ms]
    cols["load ms (emulated)" if t.emulated else "load ms"] = [_n(m.load_ms) for m in ms]
    if t.emulated:  # the qemu process's peak, said below; its growth is the emulator's, no column
        cols["peak RSS MiB (qemu)"] = [_n(m.peak_rss_mb) for m in ms]
    else:
        cols[PROCESS_PEAK] = [_n(m.peak_rss_mb) for m in ms]
        cols[MODEL_GROWTH] = [_n(m.rss_delta_mb) for m in ms]
    return cols


def _percentiles(ms: list[Measurement], emulated: bool) -> Columns:
    unit = "ms, emulated wall time" if emulated else "ms"
    return {
        f"p50 ({unit})": [_n(m.p50_ms) for m in ms],
        f"p90 ({unit})": [_n(percentile(m, "p90")) for m in ms],
        "p99 (emulated)" if emulated else "p99": [_n(percentile(m, "p99")) for m in ms],
    }


def _shown(cols: Columns) -> Columns:
    """The columns with a figure in some row: one that is '-' all down (the host's instruction count, a p99 of
    fewer than 100 samples) says nothing and took the room the figures needed at 80 columns."""
    return {h: cells for h, cells in cols.items() if h == STATUS or any(_said(c) for c in cells)}


def _said(cell: Cell) -> bool:
    return str(cell).strip() not in ("", "-")


def _print_notes(console: Console, t: TargetRun, shown: list[str], board: str | None, counted: bool) -> None:
    """The lines under the tables, each where its column is shown: what '*', a ratio, the drift and load ms are,
    why a percentile is '-' or has no column, the timing caveats and the run's own."""
    ms = t.agent.measurements if t.agent else []
    starred = (
        not_validated_note(e for e in t.estimates.values() if isinstance(e, dict) and e.get("status") == "ok")
        if board
        else None
    )
    said = [
        starred,  # what the '*' of an estimate means, as under deploy's table
        COUNT_RATIO_NOTE if "x fp32 by insn" in shown else None,
        SPEEDUP_NOTE + ("; under qemu, ratios distorted" if t.emulated else "")
        if {"x fp32", "x fp32 emulated"} & set(shown)
        else None,
        DRIFT_NOTE if any(h.startswith("drift vs host") for h in shown) else None,
        load_note(ms, emulated=t.emulated) if any(h.startswith("load ms") for h in shown) else None,
        None if t.emulated else MEMORY_NOTE,
        _percentile_note(ms, shown),
        # an estimate made without its thread split, as deploy says it
        *(split_not_counted_notes([t]) if board else []),
    ]
    for line in filter(None, said):
        console.print(f"  [dim]{plain(line)}[/]", highlight=False)
    for line in comparison_failures(t):  # a missed gate, outputs not comparable and why: deploy's lines
        console.print(f"  [red]x {plain(line)}[/]", highlight=False)
    for line in timing_caveats(t):  # a busy machine, more threads than cores: deploy's lines
        console.print(f"  [yellow]! {plain(line)}[/]", highlight=False)
    for caveat in t.caveats:  # the run's own (a device that is not the expected_cpu): deploy printed them
        console.print(f"  [yellow]! {plain(caveat)}[/]", highlight=False)
    if t.emulated:
        console.print(
            "  [dim]"
            + (
                "emulated wall and load times and the emulator's peak RSS (not device figures): --verbose or --json"
                if counted and not any(h.startswith("load ms") for h in shown)
                else "peak RSS (qemu) = the emulator process: the guest and its translated code, not the device's"
            )
            + "[/]",
            highlight=False,
        )


def _percentile_note(ms: list[Measurement], shown: list[str]) -> str | None:
    """Why a shown percentile is '-' (few_samples_note), or why a timed table has no p90 / p99 column at all."""
    timed = any(h.startswith("p50") for h in shown)
    kept = tuple(p for p in ("p90", "p99") if any(h.startswith(p) for h in shown))
    gone = [p for p in ("p90", "p99") if timed and p not in kept]
    note = few_samples_note(ms, kept) if kept else None
    found = too_few(ms, gone)
    if found is None:
        return note
    short, why = found
    gone_note = (
        f"no {' or '.join(short)} column: too few samples to tell it {why}; --json has numpy's figure)"
    )
    return f"{note}; {gone_note}" if note else gone_note


def _ratio(t: TargetRun, m: Measurement, counted: bool, instead: Text | None) -> Cell:
    """fp32's count / this one's (counted), else fp32's p50 / this one's, as deploy's table; or `instead`
    ('same model', 'no int8 layer') for a measurement that ran."""
    if instead is not None and m.status == "ok":
        return instead
    if counted:
        return count_ratio(t, m.artifact, m.threads, m) or "-"
    return speedup(t, m.artifact, m.threads, m) or "-"


def estimated_only(t: TargetRun) -> list[tuple[str, int, dict]]:
    """(artifact, threads, estimate) for the thread counts a capped emulated target was estimated at but did not
    run (deploy's 4-thread ESTIMATE rows from a 1-thread run's counts), in the order measured."""
    ran = {(m.artifact, m.threads) for m in (t.agent.measurements if t.agent else [])}
    order = list(dict.fromkeys(m.artifact for m in (t.agent.measurements if t.agent else [])))
    rows = [r for r in estimated_thread_counts(t.estimates) if r[0] in order and r[:2] not in ran]
    return sorted(rows, key=lambda r: (order.index(r[0]), r[1]))


def _status(m: Measurement, gate_missed: bool, emulated: bool, uncompared: bool = False) -> str:
    """'ok', or what makes the row no candidate (a failure, a missed gate: `runs` says 'no (x: gate)'; outputs not
    comparable with the ONNX model's, so no gate judged) and what makes its time doubtful (other processes busy
    while it was timed; emulated wall times are not judged)."""
    if m.status == "skipped":  # its error says so: 'skipped: runtime MNN not installed on ... (the fix)'
        return f"[yellow]{plain(m.error or m.status)}[/]"
    if m.status != "ok":
        return f"[red]{plain(m.status)}: {plain(m.error)}[/]"
    said = (
        "[yellow]outputs not comparable[/] (timed ok)"
        if uncompared
        else "[red]gate missed[/] (timed ok)"
        if gate_missed
        else "ok"
    )
    if m.timed_while_busy and not emulated:
        said += f"; [yellow]unreliable: other processes used {m.others_cpu_share:.0%} of CPUs[/]"
    return said


def _estimate(t: TargetRun, m: Measurement) -> Cell:
    """The board estimate of this measurement's artifact and threads, as deploy's table words it."""
    est = t.estimates.get(f"{m.artifact} x{m.threads}")
    if m.status == "skipped":  # never run: no estimate to speak of ('n/a' read as one that failed)
        return "-"
    return estimate_cell(est) if isinstance(est, dict) else "-"


def _n(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"
