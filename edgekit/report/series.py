"""Whose history a target's figures join: the target's; on the host, the target and its machine (CPU model and
cores), as every machine that records into a store stores itself as `host`; and a host flag of another machine
than the newest run's, named as that machine's."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace

from edgekit.report.cpu import cpu_name, same_cpu
from edgekit.report.flags import Flag
from edgekit.results import TargetRun
from edgekit.store import StoredRun

HOST = "host"  # the machine edgekit ran on, as results store it


def name_other_host(flag: Flag, runs: Sequence[StoredRun], newest: StoredRun) -> Flag:
    """A host flag of another machine than the newest run's host (a colleague's imported run in a shared store)
    names the machine and its run ('host (AMD EPYC, 2 cores) run #12'): it read 'host failed' under the latest
    run, as if the runner's own host had failed."""
    if flag.target != HOST or flag.run_id == newest.id:
        return flag
    run = next((r for r in runs if r.id == flag.run_id), None)
    mine = next((t for t in run.result.runs if t.target == HOST), None) if run else None
    if mine is None:
        return flag
    key = series_key(mine)
    theirs = [series_key(t) for t in newest.result.runs if t.target == HOST]
    if theirs and (theirs[0] == key or (None not in key[1:] and same_series(theirs[0], key))):
        return flag
    machine = f"{key[1]}, {key[2]} cores" if key[1] is not None else "CPU not recorded"
    return replace(flag, host_label=f"{HOST} ({machine}) run #{flag.run_id}")


def series_key(target_run: TargetRun) -> tuple[str, str | None, int | None]:
    """Whose history a target's figures join: the target's; on the host, the target and its CPU (model and
    cores), as every machine that records into a store (a runner, a colleague's laptop) stores itself as `host`.
    A run that did not record the CPU (it failed before measuring) is unknown, not another machine."""
    facts = target_run.agent.facts_before if target_run.agent is not None else None
    if target_run.target != HOST or facts is None:
        return (target_run.target, None, None)
    return (target_run.target, cpu_name(facts), facts.cores)


def same_series(a: tuple, b: tuple) -> bool:
    """Two series keys name one history: the same target, and no part known in both that differs (the CPU
    compared by cpu.same_cpu: a big.LITTLE host's older run named by cpu0's part is the same machine)."""
    return (
        a[0] == b[0]
        and (a[1] is None or b[1] is None or same_cpu(a[1], b[1]))
        and all(x is None or y is None or x == y for x, y in zip(a[2:], b[2:], strict=True))
    )


def machines(keys: Iterable[tuple]) -> list[tuple]:
    """The distinct histories among series keys, each named by its first key (pass the newest first): a
    big.LITTLE host's runs before and after its CPU was named by every part are one machine, not two."""
    found: list[tuple] = []
    for key in keys:
        if not any(same_series(k, key) for k in found):
            found.append(key)
    return found


def stands_in(judged: tuple, key: tuple) -> bool:
    """A series already judged (`judged`, newer) covers `key`: the same series, and nothing of `judged` unknown
    that `key` knows. A host run that did not record its CPU (a colleague's failed deploy) is judged on its own
    and does not stand in for every host history (the runner's regression judged before it went unreported)."""
    return same_series(judged, key) and all(
        x is not None or y is None for x, y in zip(judged[1:], key[1:], strict=True)
    )
