"""The plain lines printed under deploy's and bench's tables: every failure in one line, timing caveats (a busy
machine, more threads than usable cores), and the route each target should ship. Tables are report/table.py.
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import TYPE_CHECKING, Any

from edgekit.results import DeployResult, Measurement, TargetRun
from edgekit.route_rejections import NOT_COMPARABLE, not_comparable

if TYPE_CHECKING:
    from edgekit.route import Route


def failures(result: DeployResult) -> list[str]:
    """Every failure in one line each: conversions, gates, targets, measurements."""
    lines = [f"{a.id}: {a.error}" for a in result.artifacts if a.error]
    for run in result.runs:
        if run.error:
            lines.append(f"{run.target}: {run.error}")
        for m in run.agent.measurements if run.agent else []:
            # a skipped one (its runtime not installed) is in the target's error, with the fix, when it has one
            if m.status != "ok" and not (m.status == "skipped" and run.error):
                lines.append(f"{run.target} {m.artifact} threads={m.threads}: {m.error}")
        lines += comparison_failures(run)
    return lines


def comparison_failures(run: TargetRun) -> list[str]:
    """One line per artifact whose outputs on `run` missed a gate against the ONNX model, or could not be compared
    with it at all (and why: a refused outputs file, shapes that do not pair): deploy's lines under the tables and
    `runs show`'s (whose route said 'why is above' of a reason it never printed)."""
    lines = []
    for c in run.comparisons:
        if c.reference != "onnx" or c.gates_passed is not False:
            continue
        said = "; ".join(c.gate_failures)
        if not_comparable(c.gate_failures):  # no gate judged, so none missed: why they cannot be paired
            why = said.removeprefix(NOT_COMPARABLE).removeprefix(":").strip()
            lines.append(f"{run.target} {c.artifact}: outputs not comparable with the ONNX model's: {why}")
        else:
            lines.append(f"{run.target} {c.artifact}: missed its gate on this target: {said}")
    return lines


def busy_lines(result: DeployResult) -> list[str]:
    """Per measured target (emulated wall times are not judged anyway), the measurements timed while other
    processes used a share of its CPUs (Measurement.timed_while_busy), and those run with more threads than the
    cores the agent could use (the demo's 4 threads on a 2-core host): the figures say so, they are not hidden."""
    return [line for run in result.runs for line in timing_caveats(run)]


def timing_caveats(run: TargetRun) -> list[str]:
    """busy_lines for one target run (deploy and bench), and what the facts say of its pinning and memory
    (fact_caveats)."""
    if run.agent is None:
        return []
    lines = fact_caveats(run)
    if run.emulated:
        return lines
    busy = [m for m in run.agent.measurements if m.timed_while_busy]
    if busy:
        lines.append(busy_line(run.target, busy))
    facts = run.agent.facts_before
    usable = facts.usable_cores()
    over = sorted({m.threads for m in run.agent.measurements if m.status == "ok" and m.threads > usable})
    if over:
        lines.append(
            f"{run.target}: {' and '.join(map(str, over))} threads on {usable} usable core"
            f"{'s' if usable != 1 else ''}: the threads take turns on the cores, so these times do not show "
            "what that many cores would do"
        )
    return lines


def fact_caveats(run: TargetRun) -> list[str]:
    """What the agent recorded that qualifies the figures and no column shows: an affinity it could not apply as
    asked ('not pinned: [Errno 22] ...', big = all cores where no core reports a max frequency, other cores than
    the cpu list asked), and memory figures read without freed memory handed back to the OS (memory_released
    false: bionic, musl, macOS) or a peak since the agent started (peak_rss_scope process). deploy, bench and runs
    show print them under the table (exit 0 said nothing of an affinity that was not applied)."""
    if run.agent is None:
        return []
    lines = []
    pinned = affinity_caveat(run.agent.facts_before.affinity)
    if pinned:
        lines.append(f"{run.target}: {pinned}")
    if run.emulated:  # its memory figures are the qemu process's, said as such
        return lines
    ok = [m for m in run.agent.measurements if m.status == "ok" and m.peak_rss_mb is not None]
    kept = [m for m in ok if m.memory_released is False]
    if kept:
        lines.append(
            f"{run.target}: memory of {_which(kept)}: freed memory could not be handed back to the OS "
            "(memory_released false: the C library has no malloc_trim), so model RSS + may read low and the "
            "process peak high after another model ran in the same agent"
        )
    whole = [m for m in ok if m.peak_rss_scope == "process"]
    if whole:
        lines.append(
            f"{run.target}: process peak RSS of {_which(whole)} is the agent's peak since it started "
            "(peak_rss_scope process: the device could not reset it per measurement), maybe an earlier "
            "measurement's"
        )
    return lines


def affinity_caveat(affinity: dict[str, Any] | None) -> str | None:
    """'affinity 3 not applied: not pinned: [Errno 22] Invalid argument (ran on cpus 0,1)', or None where the
    cores asked were the cores got."""
    if not affinity or not affinity.get("requested"):
        return None
    asked, got, note = str(affinity["requested"]), affinity.get("cpus"), affinity.get("note")
    on = f" (ran on cpus {','.join(map(str, got))})" if got else ""
    if note:
        return f"affinity {asked} not applied as asked: {note}{on}"
    wanted = _cpu_list(asked)
    if wanted is not None and got is not None and sorted(got) != wanted:
        return f"affinity {asked} not applied as asked{on}"
    return None


def _cpu_list(spec: str) -> list[int] | None:
    """'4-7,0' as [0, 4, 5, 6, 7]; None for big, little, all (or text that is no cpu list)."""
    cpus: set[int] = set()
    for part in spec.split(","):
        lo, _, hi = part.strip().partition("-")
        if not lo.isdigit() or (hi and not hi.isdigit()):
            return None
        cpus.update(range(int(lo), int(hi or lo) + 1))
    return sorted(cpus)


def _which(ms: list[Measurement]) -> str:
    """'tflite-fp32 and ncnn-int8', or '5 artifacts'."""
    names = list(dict.fromkeys(m.artifact for m in ms))
    return " and ".join(names) if len(names) <= 3 else f"{len(names)} artifacts"


def busy_line(target: str, busy: list[Measurement]) -> str:
    worst = max(m.others_cpu_share or 0.0 for m in busy)
    which = ", ".join(  # '1 thread', not 'x1' (read like a speed-up factor)
        f"{m.artifact} at {m.threads} thread{'s' if m.threads != 1 else ''} {m.others_cpu_share:.0%}"
        for m in busy[:6]
    )
    more = f" and {len(busy) - 6} more" if len(busy) > 6 else ""
    return (
        f"{target}: other processes used up to {worst:.0%} of its CPUs while these were timed ({which}{more}): "
        "their times are not the model's alone; measure again when the machine is quiet"
    )


def route_lines(result: DeployResult) -> list[str]:
    """'route pi4-emu: ship ncnn-int8 (12.3 ms ESTIMATE, ...)': the fastest artifact meeting every gate, per
    target, with what its figure is (measured p50, board estimate, or instruction count)."""
    lines = [f"route {route_line(data)}" for data in result.routes]
    from edgekit.runtimes.ranking import rank_runtimes
    from edgekit.runtimes.ranking_table import verdicts

    return lines + [f"runtimes: {v}" for v in verdicts(rank_runtimes(result))]


def route_line(data: dict[str, Any]) -> str:
    """One stored route (DeployResult.routes[i]) in one line, the wording of deploy's lines and the report's
    summary: 'pi4-emu: ship ncnn-int8 (12.3 ms ESTIMATE, threads=1; 1.45x vs ncnn-fp32; ...); basis: what the
    figure is; note: each caveat (a busy machine, an uncalibrated estimate, a tie)'. No brackets: the summary
    escapes none (Markdown would show `\\[`)."""
    route = stored_route(data)
    notes = "".join(f"; note: {c}" for c in route.caveats)
    return f"{replace(route, caveats=[]).summary()}; basis: {route.basis.label}{notes}"


def stored_route(data: dict[str, Any]) -> Route:
    """A stored route back as a Route (keys it does not know, such as `basis_label`, left out)."""
    from edgekit.route import Basis, Route

    known = {f.name for f in fields(Route)}
    kept = {k: v for k, v in data.items() if k in known}
    kept["basis"] = Basis(kept["basis"])
    return Route(**kept)
