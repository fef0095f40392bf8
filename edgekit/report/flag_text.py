"""A regression flag in one line of plain text: the wording the Markdown summary lists and the nightly's verdict
line names (the HTML lays the same figures out in its own table)."""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from datetime import UTC, datetime

from edgekit.report.figures import apart, same_precision, signed_percent
from edgekit.report.regression import Flag, FlagKind, Settings, threads_text
from edgekit.store.location import command_url


def flag_line(f: Flag) -> str:
    """A flag in one line of plain text, the one wording the Markdown summary lists and the nightly's verdict
    names: where and its figures and what the old one is ('tflite-int8 at 1 thread on pi4: 95 → 114 ms (+20.0%,
    p=1e-05) vs runs #3-#9 (pooled median)'; 'x1' read like a speed-up factor; an emulated target's wall time
    says so, '3793 → 5403 ms emulated wall time'); a regression that persists says since when ('still slower since run #15, 2026-11-14'); an unreliable timing
    says how far it moved and that it was not judged. A fidelity flag says its gate in the words of its message,
    which the HTML shows ('tflite-int8: below its fidelity gate at conversion (min_cosine: 0.99999 vs limit
    1)'), then the cosine against the run it was judged against, both at one precision (never printed equal to
    1 below 1, equal figures equal); a flag without figures is its message. A host flag of another machine than
    the latest run's names it and its run ('host (AMD EPYC, 2 cores) run #12: ...', Flag.host_label)."""
    text = _line(f)
    if f.host_label and f.host_label not in text:
        return f"{f.host_label}: {text}"
    return text


def _line(f: Flag) -> str:
    if f.kind is FlagKind.FIDELITY:
        if f.new is None:
            return f.message
        if f.old is None:
            return f"{f.message}; cosine {apart(f.new, 1.0, digits=5)}"
        old, new = same_precision([f.old, f.new], [1.0], digits=5, down=True)
        return f"{f.message}; cosine {old} → {new}" + (" (unchanged)" if f.old == f.new else "")
    where = " ".join(
        x
        for x in (
            f.artifact or "",
            f"at {threads_text(f.threads)}" if f.threads else "",
            f"on {f.where}" if f.target else "",
        )
        if x
    )
    if f.old is None or f.new is None or not where:
        return f.message
    unit = {FlagKind.LATENCY: " ms", FlagKind.INSTRUCTIONS: " instr.", FlagKind.UNRELIABLE: " ms"}.get(
        f.kind, ""
    )
    if f.emulated and f.kind in (FlagKind.LATENCY, FlagKind.UNRELIABLE):  # the nightly's verdict has no badge
        unit = " ms emulated wall time"
    old, new = same_precision([f.old, f.new])
    if f.kind is FlagKind.UNRELIABLE:  # timed while busy: how far it moved, and why it was not judged
        found = re.search(r"timings unreliable \((.*?)\)[:,]", f.message)
        why = found.group(1) if found else ""
        change = f" ({signed_percent(f.change)})" if f.change is not None else ""
        return f"{where}: {old} → {new}{unit}{change}, not judged" + (f": {why}" if why else "")
    text = f"{where}: {old} → {new}{unit}"
    if f.change is not None:
        text += f" ({signed_percent(f.change)}{f', p={f.p_value:.2g}' if f.p_value is not None else ''})"
    if f.against:  # what the old figure is: 'vs runs #1-#5 (pooled median)'
        text += f" {f.against}"
    if f.lost_speedup:
        text += f"; {f.speedup_lost}"
    if f.since_run is not None:
        text += f"; still slower since run #{f.since_run}" + (f", {_day(f.since_ts)}" if f.since_ts else "")
    if "older half of its history" in f.message:
        text += "; a gradual rise, against the older half of its history"
    return text


def _day(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


ACCEPT_WHY = "If this is expected (a kernel or firmware update, a board swapped for the same model)"
# an emulated target's: no kernel, firmware or board of its own; its wall time (without counts) is qemu's on this
# machine, which a qemu or edgekit upgrade, or another machine, moves
# a return to the level before a held speed-up: whatever made it faster is gone, nothing new came
ACCEPT_WHY_SPEEDUP_LOST = "If losing the speed-up is expected (what made it faster was undone on purpose)"
ACCEPT_WHY_EMULATED = (
    "If this is expected (a qemu, guest image or edgekit upgrade, the emulated devices moved to another machine; "
    "emulated wall time is not device latency: instruction counts, with counting on, are judged instead)"
)


def accept_why(flags: Sequence[Flag]) -> str:
    """The reason an accept command is offered, in the words of the targets it names: a board's (ACCEPT_WHY),
    an emulated target's (ACCEPT_WHY_EMULATED), or both joined when both are named."""
    judged = [f for f in flags if f.kind in (FlagKind.LATENCY, FlagKind.INSTRUCTIONS) and not f.explained]
    if judged and all(f.lost_speedup for f in judged):  # back at the level before a speed-up: no new cause
        return ACCEPT_WHY_SPEEDUP_LOST
    judged = [f for f in judged if not f.lost_speedup] or judged
    emulated, boards = any(f.emulated for f in judged), any(not f.emulated for f in judged)
    if emulated and not boards:
        return ACCEPT_WHY_EMULATED
    if emulated:
        return (
            "If this is expected (a board: a kernel or firmware update, a board swapped for the same model; "
            "an emulated target: a qemu, guest image or edgekit upgrade)"
        )
    return ACCEPT_WHY


def accept_commands(flags: Sequence[Flag], store_url: str | None = None) -> list[str]:
    """Per run and target with a latency or instruction-count regression, the command that accepts its level as
    the new one ('edgekit runs accept 27 --target pi4 --store URL'): a regression edgekit's fingerprint cannot
    explain stays flagged for the six weeks of its lookback otherwise, the night failing each time. With
    `store_url` (the store the flags were judged in) the command names it, without its password: without
    --store, a command pasted from a team store's report accepted nothing (no such run in the default file).
    A latency regression judged with another --min-change than the default names it ('--min-change 0.02'):
    `runs accept` judges the run again to find what to accept, and at 5 % it found nothing flagged at 3 %."""
    judged = (FlagKind.LATENCY, FlagKind.INSTRUCTIONS)
    found: dict[tuple[int, str], str] = {}
    for f in flags:
        if f.kind in judged and f.target and not f.explained:  # explained: the baseline restarts on its own
            other = f.kind is FlagKind.LATENCY and f.min_change != Settings.min_change
            given = f" --min-change {f.min_change:g}" if other else ""
            found[(f.run_id, f.target)] = found.get((f.run_id, f.target)) or given
    store = f" --store {shlex.quote(command_url(store_url))}" if store_url else ""
    return [
        f"edgekit runs accept {run} --target {shlex.quote(target)}{given}{store}"
        for (run, target), given in found.items()
    ]
