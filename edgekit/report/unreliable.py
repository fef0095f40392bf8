"""Why a run's timings can't be trusted: throttling or heat, other processes busy on the CPUs, an interrupted run.

A target that was throttling or hot during the run is flagged `unreliable`, and its latencies are neither
judged nor used as baseline for later runs; so is a measurement timed while other processes used a tenth or
more of the device's CPUs (Measurement.timed_while_busy; emulated targets are judged on counts, not affected).
An unreliable measurement still says how far it moved from its baseline, marked as not judged. A core's clock
more than CLOCK_DROP lower after the run than before it is throttling under the performance governor, and a caution
only (clock_caution) under governors that lower an idle core's clock. An emulated target's temperature, clocks and
throttling are the machine running the emulator's, not the device's, and are said as the emulator host's
("emulator host at 98 °C"): they make no measurement judged on its instruction count unreliable (counts do not
depend on heat: baseline.on_counts), but qemu's wall time, what an emulated run that counted no instructions is
judged on, does depend on the host's heat and clocks, so such a measurement is unreliable on them as a device's is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from edgekit.agent.contract import ErrorCode
from edgekit.report.flags import Flag, FlagKind, Settings, threads_text
from edgekit.results import DeviceFacts, Measurement, TargetRun

if TYPE_CHECKING:
    from edgekit.report.baseline import Walk

# A core whose clock after the run is this much below its clock before it has slowed down while timed. Only under a
# governor that holds the top clock (performance) is that a cap (thermal or power): ondemand, schedutil and the like
# lower an idle core's clock, and the agent reads the clocks after its last run ended, so there it is a caution
CLOCK_DROP = 0.10
_HOLDING_GOVERNORS = frozenset({"performance"})
_THROTTLED_NOW = 0xF  # under-voltage, frequency capped, throttled, soft temperature limit (now)
_THROTTLED_SINCE_BOOT = 0xF0000  # the same, sticky since boot


def throttle_reason(
    target_run: TargetRun, max_temperature_c: float = Settings.max_temperature_c, m: Measurement | None = None
) -> str | None:
    """Why this target's timings (of measurement `m`, when given) can't be trusted (throttling or heat during the
    run), or None. An emulated target's temperature and clocks are the emulator host's and said so ("emulator host
    at 98 °C"); they bear on qemu's wall time, not on an instruction count: None for a measurement judged on its
    count (`m` given) or, without `m`, for a run whose every measurement that ran was (an 86 °C laptop made every
    emulated run of the night unreliable, its count regressions unjudged; a hot host's slower wall time was flagged
    a regression when none was judged)."""
    agent = target_run.agent
    if agent is None:
        return None
    if target_run.emulated:
        ran = [m] if m is not None else [x for x in agent.measurements if x.status == "ok"]
        if all(_counted(x) for x in ran):
            return None
    host = "emulator host" if target_run.emulated else "SoC"
    before, after = agent.facts_before, agent.facts_after
    reasons = [
        f"{host} at {f.temperature_c:.0f} °C (limit {max_temperature_c:.0f} °C)"
        for f in (before, after)
        if f and f.temperature_c is not None and f.temperature_c >= max_temperature_c
    ][:1]
    bits_before, bits_after = _bits(before), _bits(after)
    which = "emulator host " if target_run.emulated else ""
    if (bits_before | bits_after) & _THROTTLED_NOW:
        reasons.append(f"{which}throttled={_hex(before)} before, {_hex(after)} after the run")
    elif (bits_after & ~bits_before) & _THROTTLED_SINCE_BOOT:
        reasons.append(
            f"{which}throttling occurred during the run (throttled {_hex(before)} -> {_hex(after)})"
        )
    elif after is None and bits_before & _THROTTLED_SINCE_BOOT:
        reasons.append(f"{which}throttled={_hex(before)} and no facts after the run to tell when")
    held = [d for d in _clock_drops(target_run) if d[3] in _HOLDING_GOVERNORS]
    if held:
        reasons.append(
            _clock_text(held, target_run.emulated)
            + " under the performance governor, which holds the top clock: capped"
        )
    return "; ".join(reasons) or None


def _counted(m: Measurement) -> bool:
    """An emulated measurement judged on its instruction count (baseline.on_counts, which imports this module)."""
    return bool(m.instructions_per_invoke)


def clock_caution(target_run: TargetRun) -> str | None:
    """A clock that fell during the run under a governor that lowers an idle core's clock (ondemand, schedutil):
    said as a caution, not judged (the agent reads the clock after the run, when the core may be idle). None for
    an emulated run whose every measurement counted (the emulator host's clock moves no count)."""
    agent = target_run.agent
    if (
        target_run.emulated
        and agent is not None
        and all(_counted(x) for x in agent.measurements if x.status == "ok")
    ):
        return None
    loose = [d for d in _clock_drops(target_run) if d[3] not in _HOLDING_GOVERNORS]
    if not loose:
        return None
    governors = ", ".join(sorted({d[3] or "unknown" for d in loose}))
    return (
        _clock_text(loose, target_run.emulated)
        + f" under the {governors} governor, which lowers an idle core's clock: "
        "maybe throttled, maybe idle after the run (not judged)"
    )


def _clock_drops(target_run: TargetRun) -> list[tuple[int, int, int, str | None]]:
    """(cpu, kHz before, kHz after, governor) of each core whose clock after the run is more than CLOCK_DROP below
    its clock before, under the same governor before and after (a changed governor says nothing of heat)."""
    agent = target_run.agent
    before = agent.facts_before if agent is not None else None  # None: a stored run without its facts
    if agent is None or before is None or agent.facts_after is None:
        return []
    after = {f.cpu: f for f in agent.facts_after.freqs}
    drops = []
    for f in before.freqs:
        g = after.get(f.cpu)
        if g is None or not f.cur_khz or not g.cur_khz or f.governor != g.governor:
            continue
        if g.cur_khz < f.cur_khz * (1.0 - CLOCK_DROP):
            drops.append((f.cpu, f.cur_khz, g.cur_khz, f.governor))
    return drops


def _clock_text(drops: list[tuple[int, int, int, str | None]], emulated: bool = False) -> str:
    """'clock fell on cpu0-3: 2400 -> 1000 MHz (-58%)', the range of each when cores differ ("emulator host's
    clock fell on ..." for an emulated target)."""
    cpus = [d[0] for d in drops]
    named = (
        f"cpu{cpus[0]}-{cpus[-1]}"
        if cpus == list(range(cpus[0], cpus[-1] + 1)) and len(cpus) > 1
        else (",".join(f"cpu{c}" for c in cpus))
    )
    before, after = _mhz([d[1] for d in drops]), _mhz([d[2] for d in drops])
    fall = max(1.0 - d[2] / d[1] for d in drops)
    whose = "emulator host's clock" if emulated else "clock"
    return f"{whose} fell on {named}: {before} -> {after} MHz (up to -{fall:.0%})"


def _mhz(khz: list[int]) -> str:
    lo, hi = min(khz) / 1000, max(khz) / 1000
    return f"{lo:.0f}" if round(lo) == round(hi) else f"{lo:.0f}-{hi:.0f}"


def busy_flag(
    recipe: str, run_id: int, target_run: TargetRun, m: Measurement, walk: Walk, settings: Settings
) -> Flag:
    """Timed while other processes used the CPUs: not judged, yet how far it moved from the baseline is said
    (a 14-fold slowdown read 'unreliable' and nothing more)."""
    share = f"other processes used {m.others_cpu_share:.0%} of {target_run.target}'s CPUs while it was timed"
    past = [e for e in walk.baseline(settings) if e.m.samples_ms]
    old = float(np.median(np.concatenate([e.m.samples_ms for e in past]))) if past else None
    new = float(np.median(m.samples_ms)) if m.samples_ms else m.p50_ms
    change = new / old - 1.0 if old and new is not None else None
    label = "emulated wall time p50" if target_run.emulated else "p50"
    figures = (
        f": {label} {old:.4g} -> {new:.4g} ms ({change:+.1%} vs its history), not judged"
        if old and new is not None and change is not None
        else ", not judged"
    )
    return Flag(
        FlagKind.UNRELIABLE,
        recipe,
        run_id,
        target_run.target,
        m.artifact,
        m.threads,
        old,
        new,
        change,
        emulated=target_run.emulated,
        message=f"{m.artifact} at {threads_text(m.threads)}: timings unreliable ({share}){figures}",
        baseline_runs=tuple(e.run.id for e in past),
    )


def stopped(m: Measurement) -> bool:
    """Not measured because the run was interrupted (runs recorded before INTERRUPTED was set: NOT_RUN, saying
    so)."""
    return m.error_code is ErrorCode.INTERRUPTED or (
        m.error_code is ErrorCode.NOT_RUN and "interrupted" in (m.error or "")
    )


def _bits(facts: DeviceFacts | None) -> int:
    if facts is None or not facts.throttled:
        return 0
    try:
        return int(facts.throttled, 0)
    except ValueError:
        return 0


def _hex(facts: DeviceFacts | None) -> str:
    return (facts.throttled or "?") if facts else "?"
