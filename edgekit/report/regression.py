"""Regression detection: is the newest run of a recipe worse than its recent history, beyond the noise?

For every artifact x target x thread count of the newest run, compared with the same key in the previous
runs (the baseline):
- wall time: a one-sided Mann-Whitney U test of the newest samples against the pooled baseline samples AND a
  relative rise of the median of at least max(min_change, the upper prediction bound of one more night given
  the baseline's per-night medians). Samples make the test see the noise inside a run; the prediction bound
  (Student t, so three nights of history ask for far more than fourteen) keeps nights that merely drift
  (clocks, room temperature) from being called regressions.
- emulated targets with guest instruction counts: the count is deterministic, so a rise of
  `instruction_change` (0.5%) is a regression; emulated wall time is not judged there.
- fidelity: an artifact that missed its recipe's gate.
- failures: an artifact or target that failed where it used to work.
A target that was throttling or hot during the run is flagged `unreliable`, and its latencies are neither
judged nor used as baseline for later runs; so is a measurement timed while other processes used a tenth or
more of the device's CPUs (Measurement.timed_while_busy; emulated targets are judged on counts, not affected). Flags are plain data; the report and `edgekit nightly` read them.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

import numpy as np
from scipy.special import stdtrit  # scipy.special: a second faster to import than scipy.stats

from edgekit.agent.contract import ErrorCode
from edgekit.report.figures import gate_failures
from edgekit.results import DeviceFacts, Measurement, TargetRun
from edgekit.samples import slower_p_value
from edgekit.store import StoredRun

HOST = "host"  # the machine edgekit ran on, as results store it
_THROTTLED_NOW = 0xF  # under-voltage, frequency capped, throttled, soft temperature limit (now)
_THROTTLED_SINCE_BOOT = 0xF0000  # the same, sticky since boot


class FlagKind(str, Enum):
    LATENCY = "latency"
    INSTRUCTIONS = "instructions"
    FIDELITY = "fidelity"
    FAILED = "failed"
    UNRELIABLE = "unreliable"


@dataclass(frozen=True)
class Settings:
    history: int = (
        21  # baseline: this many previous runs (three weeks of nights; see bench/regression_noise.py)
    )
    min_runs: int = 3  # judge latency only with at least this many baseline runs
    min_change: float = 0.05  # relative rise of the median that can count as a regression
    alpha: float = 0.01  # Mann-Whitney U significance (samples of the newest run vs the baseline's)
    night_alpha: float = 0.001  # one-sided level of the prediction bound on night-to-night drift
    instruction_change: float = 0.005  # relative rise of instruction counts (emulated targets)
    max_temperature_c: float = 80.0  # a Pi starts soft-throttling here


@dataclass(frozen=True)
class Flag:
    kind: FlagKind
    recipe: str
    run_id: int
    target: str | None
    artifact: str | None = None
    threads: int | None = None
    old: float | None = None
    new: float | None = None
    change: float | None = None  # relative: 0.2 = 20% worse
    p_value: float | None = None
    emulated: bool = False
    message: str = ""

    @property
    def is_regression(self) -> bool:
        """Unreliable runs are worth a look but are not regressions."""
        return self.kind is not FlagKind.UNRELIABLE


def detect(history: Sequence[StoredRun], settings: Settings = Settings()) -> list[Flag]:
    """Flags for the newest run of every recipe in `history` (oldest first, as Store.history returns)."""
    by_recipe: dict[str, list[StoredRun]] = {}
    for run in history:
        by_recipe.setdefault(run.result.recipe, []).append(run)
    flags: list[Flag] = []
    for runs in by_recipe.values():
        flags += detect_latest(runs, settings)
    return flags


def detect_latest(runs: Sequence[StoredRun], settings: Settings = Settings()) -> list[Flag]:
    """Flags for runs[-1] against up to `settings.history` runs before it (all of one recipe)."""
    if not runs:
        return []
    latest, baseline = runs[-1], list(runs[-1 - settings.history : -1])
    flags = _fidelity_flags(latest, baseline)
    for target_run in latest.result.runs:
        flags += _target_flags(latest, target_run, baseline, settings)
    return flags


def throttle_reason(
    target_run: TargetRun, max_temperature_c: float = Settings.max_temperature_c
) -> str | None:
    """Why this target's timings can't be trusted (throttling or heat during the run), or None."""
    agent = target_run.agent
    if agent is None:
        return None
    before, after = agent.facts_before, agent.facts_after
    reasons = [
        f"SoC at {f.temperature_c:.0f} °C (limit {max_temperature_c:.0f} °C)"
        for f in (before, after)
        if f and f.temperature_c is not None and f.temperature_c >= max_temperature_c
    ][:1]
    bits_before, bits_after = _bits(before), _bits(after)
    if (bits_before | bits_after) & _THROTTLED_NOW:
        reasons.append(f"throttled={_hex(before)} before, {_hex(after)} after the run")
    elif (bits_after & ~bits_before) & _THROTTLED_SINCE_BOOT:
        reasons.append(f"throttling occurred during the run (throttled {_hex(before)} -> {_hex(after)})")
    elif after is None and bits_before & _THROTTLED_SINCE_BOOT:
        reasons.append(f"throttled={_hex(before)} and no facts after the run to tell when")
    return "; ".join(reasons) or None


# --- per target ---------------------------------------------------------------------------------------------
def _target_flags(
    latest: StoredRun, target_run: TargetRun, baseline: list[StoredRun], settings: Settings
) -> list[Flag]:
    recipe, target = latest.result.recipe, target_run.target
    base_targets = [t for b in baseline for t in b.result.runs if t.target == target]

    def flag(kind: FlagKind, message: str, m: Measurement | None = None) -> Flag:
        artifact, threads = (m.artifact, m.threads) if m is not None else (None, None)
        return Flag(
            kind, recipe, latest.id, target, artifact, threads, emulated=target_run.emulated, message=message
        )

    flags: list[Flag] = []
    if target_run.interrupted:  # stopped by Ctrl-C or SIGTERM: what it did not measure is no regression
        skipped = sum(1 for m in _measurements(target_run) if m.status != "ok" and _stopped(m))
        said = f"{skipped} measurement(s) not taken" if skipped else "stopped before the end"
        flags.append(flag(FlagKind.UNRELIABLE, f"{target}: run interrupted (Ctrl-C or SIGTERM): {said}"))
        if target_run.agent is None:
            return flags
    if target_run.status == "failed" and target_run.agent is None:
        if base_targets and all(t.status == "failed" for t in base_targets):
            return []
        if _host_left_out(latest, target_run):
            return []
        return [flag(FlagKind.FAILED, f"{target}: {target_run.error or 'target failed'}")]
    flags += _target_fidelity_flags(latest, target_run)
    reason = throttle_reason(target_run, settings.max_temperature_c)
    if reason:
        flags.append(flag(FlagKind.UNRELIABLE, f"{target}: timings unreliable: {reason}"))
    trusted = [t for t in base_targets if throttle_reason(t, settings.max_temperature_c) is None]
    for m in _measurements(target_run):
        past = [
            pm
            for t in trusted
            for pm in _measurements(t)
            if (pm.artifact, pm.threads) == (m.artifact, m.threads)
        ]
        if m.status != "ok":
            if target_run.interrupted and _stopped(m):
                continue
            if not (past and all(pm.status != "ok" for pm in past)):  # a known-broken one is not news
                flags.append(flag(FlagKind.FAILED, f"{m.artifact} failed: {m.error}", m))
            continue
        if reason:
            continue
        if m.timed_while_busy and not target_run.emulated:  # counts are exact whatever the load; times not
            flags.append(
                flag(
                    FlagKind.UNRELIABLE,
                    f"{m.artifact} x{m.threads}: timings unreliable: other processes used "
                    f"{m.others_cpu_share:.0%} of {target}'s CPUs while it was timed",
                    m,
                )
            )
            continue
        ok_past = [
            pm for pm in past if pm.status == "ok" and (target_run.emulated or not pm.timed_while_busy)
        ]
        speed = _speed_flag(recipe, latest.id, target_run, m, ok_past, settings)
        if speed:
            flags.append(speed)
    return flags


def _host_left_out(latest: StoredRun, target_run: TargetRun) -> bool:
    """The host, not measured because every device of the deploy failed before measuring (its figures are only
    their reference): the devices' failures are the news, flagged each; the host's is no failure of its own."""
    others = [t for t in latest.result.runs if t.target != target_run.target]
    return (
        target_run.target == HOST
        and bool(others)
        and all(t.status == "failed" and t.agent is None for t in others)
    )


def _speed_flag(
    recipe: str,
    run_id: int,
    target_run: TargetRun,
    m: Measurement,
    past: list[Measurement],
    settings: Settings,
) -> Flag | None:
    counts = [pm.instructions_per_invoke for pm in past if pm.instructions_per_invoke]
    if target_run.emulated and m.instructions_per_invoke and counts:
        old = float(statistics.median(counts))
        change = m.instructions_per_invoke / old - 1.0
        if change < settings.instruction_change:
            return None
        return Flag(
            FlagKind.INSTRUCTIONS,
            recipe,
            run_id,
            target_run.target,
            m.artifact,
            m.threads,
            old,
            float(m.instructions_per_invoke),
            change,
            emulated=True,
            message=f"{m.artifact} x{m.threads} on {target_run.target}: guest instructions per invoke "
            f"+{change:.2%} (instruction count, not time)",
        )
    past = [pm for pm in past if pm.samples_ms]
    if len(past) < settings.min_runs or not m.samples_ms:
        return None
    return _latency_flag(recipe, run_id, target_run, m, past, settings)


def _latency_flag(
    recipe: str,
    run_id: int,
    target_run: TargetRun,
    m: Measurement,
    past: list[Measurement],
    settings: Settings,
) -> Flag | None:
    pooled = np.concatenate([pm.samples_ms for pm in past])
    old, new = float(np.median(pooled)), float(np.median(m.samples_ms))
    change = new / old - 1.0
    threshold = max(settings.min_change, night_bound([pm.samples_ms for pm in past], settings.night_alpha))
    if change < threshold:
        return None
    p_value = slower_p_value(m.samples_ms, pooled)
    if p_value >= settings.alpha:
        return None
    label = "emulated wall time" if target_run.emulated else "latency"
    return Flag(
        FlagKind.LATENCY,
        recipe,
        run_id,
        target_run.target,
        m.artifact,
        m.threads,
        old,
        new,
        change,
        p_value,
        emulated=target_run.emulated,
        message=f"{m.artifact} x{m.threads} on {target_run.target}: {label} p50 {old:.3g} -> {new:.3g} ms "
        f"(+{change:.1%}, p={p_value:.2g}, threshold {threshold:.1%})",
    )


def night_bound(nights: Sequence[Sequence[float]], alpha: float = Settings.night_alpha) -> float:
    """Relative rise of one more night's median that drift alone exceeds with probability `alpha`.

    A normal prediction interval on the log of the per-night medians: t(1-alpha, n-1) * s * sqrt(1 + 1/n),
    with s the larger of the standard deviation and the MAD-based one (robust to one odd night, yet not
    fooled by a lucky run of similar nights).
    """
    logs = np.log([float(np.median(s)) for s in nights])
    n = len(logs)
    if n < 2:
        return float("inf")
    s = max(float(np.std(logs, ddof=1)), 1.4826 * float(np.median(np.abs(logs - np.median(logs)))))
    return float(np.expm1(stdtrit(n - 1, 1.0 - alpha) * s * np.sqrt(1.0 + 1.0 / n)))


# --- fidelity -----------------------------------------------------------------------------------------------
def _fidelity_flags(latest: StoredRun, baseline: list[StoredRun]) -> list[Flag]:
    """An artifact that missed its gate at conversion: one `fidelity` flag (its status is `failed` for that alone,
    ArtifactInfo.missed_gate), naming the targets whose own outputs missed it too; a conversion that failed: `failed`
    where it used to work."""
    flags = []
    for art in latest.result.artifacts:
        past = [a for b in baseline for a in b.result.artifacts if a.id == art.id]
        if art.status == "failed" and not art.missed_gate:
            if not (past and all(a.status == "failed" and not a.missed_gate for a in past)):
                flags.append(
                    Flag(
                        FlagKind.FAILED,
                        latest.result.recipe,
                        latest.id,
                        None,
                        art.id,
                        message=f"{art.id}: {art.error}",  # its error says what failed (conversion failed: ...)
                    )
                )
            continue
        if not art.missed_gate:
            continue
        new = _cosine(art.fidelity)
        olds = [c for c in (_cosine(a.fidelity) for a in past if not a.missed_gate) if c is not None]
        old = float(statistics.median(olds)) if olds else None
        change = (new - old) / old if new is not None and old else None
        gates = art.fidelity.get("gates")
        why = gate_failures(gates) if isinstance(gates, dict) and gates.get("checks") else None
        also = [t.target for t in latest.result.runs if _target_missed(t, art.id)]
        flags.append(
            Flag(
                FlagKind.FIDELITY,
                latest.result.recipe,
                latest.id,
                None,
                art.id,
                old=old,
                new=new,
                change=change,
                message=f"{art.id}: below its fidelity gate at conversion ({why or _describe(art.fidelity)})"
                + (f"; on {', '.join(also)}'s own outputs too" if also else ""),
            )
        )
    return flags


def _target_missed(target_run: TargetRun, artifact: str) -> bool:
    return any(
        c.artifact == artifact and c.reference == "onnx" and getattr(c, "gates_passed", None) is False
        for c in target_run.comparisons
    )


def _target_fidelity_flags(latest: StoredRun, target_run: TargetRun) -> list[Flag]:
    """The recipe's gates checked on this target's own outputs (ARM numerics can drift from the host's); an
    artifact that missed them at conversion already has its one flag (_fidelity_flags), naming this target."""
    missed = {a.id for a in latest.result.artifacts if a.missed_gate}
    flags = []
    for c in target_run.comparisons:
        if c.reference == "onnx" and getattr(c, "gates_passed", None) is False and c.artifact not in missed:
            failures = "; ".join(getattr(c, "gate_failures", None) or []) or f"cosine {c.cosine:.6f}"
            flags.append(
                Flag(
                    FlagKind.FIDELITY,
                    latest.result.recipe,
                    latest.id,
                    target_run.target,
                    c.artifact,
                    new=c.cosine,
                    emulated=target_run.emulated,
                    message=f"{c.artifact} on {target_run.target}: below its fidelity gate ({failures})",
                )
            )
    return flags


def _cosine(fidelity: dict[str, object]) -> float | None:
    value = fidelity.get("cosine")
    return float(value) if isinstance(value, (int, float)) else None


def _describe(fidelity: dict[str, object]) -> str:
    return (
        ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in fidelity.items()) or "-"
    )


def _stopped(m: Measurement) -> bool:
    """Not measured because the run was interrupted (runs recorded before INTERRUPTED was set: NOT_RUN, saying
    so)."""
    return m.error_code is ErrorCode.INTERRUPTED or (
        m.error_code is ErrorCode.NOT_RUN and "interrupted" in (m.error or "")
    )


def _measurements(target_run: TargetRun) -> list[Measurement]:
    return target_run.agent.measurements if target_run.agent else []


def _bits(facts: DeviceFacts | None) -> int:
    if facts is None or not facts.throttled:
        return 0
    try:
        return int(facts.throttled, 0)
    except ValueError:
        return 0


def _hex(facts: DeviceFacts | None) -> str:
    return (facts.throttled or "?") if facts else "?"
