"""Regression detection: is the newest run of a recipe worse than its recent history, beyond the noise?

For every artifact x target x thread count of the newest run, compared with the same key in earlier runs (the
baseline):
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
more of the device's CPUs (Measurement.timed_while_busy; emulated targets are judged on counts, not affected).
An unreliable measurement still says how far it moved from its baseline, marked as not judged. Flags are plain
data; the report and `edgekit nightly` read them.

Which runs are the baseline (a regression that persists stays flagged). Judging each night only against the
runs before it let a regression flag once: the next night's baseline held the slow night, whose odd median
widened the night-to-night bound (t * s) past the step, and a +30 % step passed from its second night on; a
creep of +4 % a night did the same. So each key's earlier runs, up to `lookback` runs back, are judged in turn
as they were on their own night, and a run that was flagged does not join the baseline of the runs after it:
- a level shift stays flagged ('still slower since run #15, 2026-11-14') until a run is back within the noise
  of the baseline (it then joins it again; "within" is the drift bound at `held_alpha`, 5 %, rather than the
  0.1 % a regression must pass to start: a step near the bound was otherwise flagged on some of its nights only,
  each night it passed joining the baseline; a false start, rare at 0.1 %, lasts a night more with 5 %);
- a regression whose first night came with a change of configuration against the last good run (the recipe's
  settings, the artifact's converted file, the version of the runtime module that ran it, the target's CPU,
  Python or emulator) is explained: flagged on that night with what changed, then the baseline starts again
  from that run, so the new level is judged on its own history once `min_runs` runs of it exist. A change on
  a later night of a regression explains nothing (it began before), another runtime's upgrade is no change of
  this artifact's, and a run whose device facts were not recorded is unknown, not a change;
- a shift nobody explains is remembered while a run from before it is in the lookback window (`lookback`, 42
  runs: six weeks of nights), then its level is the history; a held 10 % step at 1 % drift kept every key
  flagged for 36 nights and failed the nightly to night ~41, so a change the fingerprint cannot see (a kernel,
  a board swapped for the same model, edgekit's agent) is accepted by hand: `edgekit runs accept RUN
  [--target T] [--artifact A]` marks the run with the keys flagged in it (Store.accept, regressed_keys); a
  run so marked is not flagged for them, and the regression's runs up to it (its first slow night to the
  accepted one) are the baseline of the runs after it, so they are judged on the new level at once and a
  further step is still caught; other keys keep their history;
- a creep moves each night by less than the bound and widens the bound as it goes, so the newest run is also
  compared, with the same two tests, with the older half of its baseline alone (at least `min_runs` runs):
  the bound of that half was computed from nights before the creep. Under no change both comparisons are
  predictions of one more night from independent earlier nights, each at `night_alpha`, so on flat noise the
  false-alarm rate stays at most twice the single test's; the older half must hold `creep_runs` (7) runs, as
  three close nights made a bound narrow enough for noise to cross. bench/regression_noise.py, 5 seeds x 30
  nights: 0 false alarms in 7560 checks (135 judged nights) at each drift of 1, 2, 3 %, before the walk and
  after; 2 seeds x 60 nights: 0, 1, 1 in 6384 checks (one night of 114: seed 1's night 42, +7.0 % against a
  6.5 % bound at 2 % drift, the same draw +10.0 % against 9.7 % at 3 %; its baseline was the 21 nights before,
  none left out). That is the design rate, not a fault: the synthetic drift is one factor shared by every key
  of a night, so the nights are the independent trials, and each is two 0.1 % predictions. A one-night 10 %
  slowdown caught 100/59/1 % before, 100/60/14 % after; of a held 10 % slowdown's keys flagged on its first
  night, 100/100/57 % still flagged on each later night. Throttled and busy runs are neither judged in the
  walk nor baseline.
With fewer than `min_runs` baseline runs of a key, its latency is not judged, and the report says so
(`Judgement.unjudged`) rather than calling it within the noise.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
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
    lookback: int = 42  # runs read before the newest: how long an unexplained regression stays remembered
    creep_runs: int = 7  # the older half of the baseline is a second reference from this many runs (a creep)
    held_alpha: float = (
        0.05  # a flagged regression's later nights: the bound it must fall under to have returned
    )


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
    since_run: int | None = None  # a regression that persists: the run it began with (None: tonight)
    since_ts: float | None = None
    baseline_runs: tuple[int, ...] = ()  # the runs (ids) the figure was judged against

    @property
    def is_regression(self) -> bool:
        """Unreliable runs are worth a look but are not regressions."""
        return self.kind is not FlagKind.UNRELIABLE


@dataclass(frozen=True)
class Unjudged:
    """A key whose latency could not be judged: fewer than `needed` baseline runs (`since_change`: the run
    whose configuration change restarted its baseline)."""

    target: str
    artifact: str
    threads: int
    earlier: int
    needed: int
    since_change: int | None = None


@dataclass
class Judgement:
    flags: list[Flag]
    unjudged: list[Unjudged]


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
    """Flags for runs[-1] against the runs before it (all of one recipe; see judge)."""
    return judge(runs, settings).flags


def judge(runs: Sequence[StoredRun], settings: Settings = Settings()) -> Judgement:
    """Flags for runs[-1] against up to `settings.lookback` runs before it (all of one recipe), and the keys
    whose latency it could not judge for want of history."""
    if not runs:
        return Judgement([], [])
    latest, earlier = runs[-1], list(runs[-1 - settings.lookback : -1])
    baseline = earlier[-settings.history :]
    flags = _fidelity_flags(latest, baseline)
    unjudged: list[Unjudged] = []
    for target_run in latest.result.runs:
        flags += _target_flags(latest, target_run, earlier, settings, unjudged)
    return Judgement(flags, unjudged)


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


def threads_text(n: int) -> str:
    """'1 thread', '4 threads' ('x1' read like a speed-up factor)."""
    return f"{n} thread{'s' if n != 1 else ''}"


# --- per target ---------------------------------------------------------------------------------------------
def _target_flags(
    latest: StoredRun,
    target_run: TargetRun,
    earlier: list[StoredRun],
    settings: Settings,
    unjudged: list[Unjudged],
) -> list[Flag]:
    recipe, target = latest.result.recipe, target_run.target
    baseline = earlier[-settings.history :]
    base_targets = [t for b in baseline for t in b.result.runs if t.target == target]
    # a failure or a note is news against the target's last run (a latency flag names the runs it was judged on)
    base_ids = tuple(b.id for b in baseline if any(t.target == target for t in b.result.runs))[-1:]

    def flag(kind: FlagKind, message: str, m: Measurement | None = None) -> Flag:
        artifact, threads = (m.artifact, m.threads) if m is not None else (None, None)
        return Flag(
            kind,
            recipe,
            latest.id,
            target,
            artifact,
            threads,
            emulated=target_run.emulated,
            message=message,
            baseline_runs=base_ids,
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
    failures: dict[
        tuple[str, str], list[Measurement]
    ] = {}  # one flag per distinct failure, not per thread count
    for m in _measurements(target_run):
        if m.status != "ok":
            if target_run.interrupted and _stopped(m):
                continue
            past = [
                pm
                for t in trusted
                for pm in _measurements(t)
                if (pm.artifact, pm.threads) == (m.artifact, m.threads)
            ]
            if not (past and all(pm.status != "ok" for pm in past)):  # a known-broken one is not news
                failures.setdefault((m.artifact, m.error or "failed"), []).append(m)
            continue
        if reason:
            continue
        series = _series(earlier, target, m, target_run.emulated, settings)
        walk = _walk(series, target_run.emulated, settings)
        if m.timed_while_busy and not target_run.emulated:  # counts are exact whatever the load; times not
            flags.append(_busy_flag(recipe, latest.id, target_run, m, walk, settings))
            continue
        verdict = _judge(
            _Entry(latest, target, m, _fingerprint(latest, target_run, m)),
            walk,
            target_run.emulated,
            settings,
        )
        if isinstance(verdict, _Unjudged):
            unjudged.append(
                Unjudged(target, m.artifact, m.threads, verdict.earlier, settings.min_runs, walk.restarted)
            )
        elif verdict is not None and not _accepted(latest, target, m):  # accepted: the new level
            flags.append(_speed_flag(recipe, latest.id, target_run, m, verdict, walk))
    for (artifact, error), failed in failures.items():  # 'at 1 and 2 threads': one flag, threads None
        counts = sorted({fm.threads for fm in failed})
        at = " and ".join(map(str, counts)) + (" thread" if counts == [1] else " threads")
        one = flag(FlagKind.FAILED, f"{artifact} on {target} failed at {at}: {error}", failed[0])
        flags.append(one if len(counts) == 1 else replace(one, threads=None))
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


# --- one key over time: which earlier runs are its baseline -------------------------------------------------
@dataclass(frozen=True)
class _Entry:
    run: StoredRun
    target: str
    m: Measurement
    fingerprint: tuple


@dataclass
class _Walk:
    """A key's earlier runs judged in turn: the ones that form the baseline of the next run (`kept`, oldest
    first), the first run of a regression still going on (`streak`) and its flagged runs so far (`held`), the
    run whose configuration change restarted the baseline (`restarted`)."""

    kept: list[_Entry]
    streak: _Entry | None = None
    held: list[_Entry] = field(default_factory=list)
    restarted: int | None = None

    def baseline(self, settings: Settings) -> list[_Entry]:
        return self.kept[-settings.history :]


@dataclass(frozen=True)
class _Verdict:
    kind: FlagKind
    old: float
    new: float
    change: float
    p_value: float | None
    threshold: float
    against: list[_Entry]
    creep: bool = False


@dataclass(frozen=True)
class _Unjudged:
    earlier: int


def _series(
    earlier: list[StoredRun], target: str, m: Measurement, emulated: bool, settings: Settings
) -> list[_Entry]:
    """The key's trusted earlier measurements, oldest first: ok, not throttled, not timed while busy (a busy
    timing is not the model's alone; counts are, so on emulated targets busy runs count)."""
    found = []
    for run in earlier:
        for t in run.result.runs:
            if t.target != target or t.agent is None or throttle_reason(t, settings.max_temperature_c):
                continue
            for pm in t.agent.measurements:
                if (pm.artifact, pm.threads) != (m.artifact, m.threads) or pm.status != "ok":
                    continue
                if pm.timed_while_busy and not emulated:
                    continue
                found.append(_Entry(run, target, pm, _fingerprint(run, t, pm)))
    return found


def _fingerprint(run: StoredRun, t: TargetRun, m: Measurement) -> tuple:
    """What this key's figure depends on besides edgekit's code: the recipe's settings, the artifact's converted
    file, the version of the runtime module that ran it, and the target's CPU, Python and emulator; None where a
    run does not say (compared by _differs as unknown, not as a change). Only the artifact's own runtime: every
    entry of facts.runtimes made an MNN upgrade explain a TFLite regression."""
    art = next((a.sha256 for a in run.result.artifacts if a.id == m.artifact), None)
    facts = t.agent.facts_before if t.agent else None
    if facts is None:
        return (run.result.recipe_sha256, art, None, None, None, None)
    return (
        run.result.recipe_sha256,
        art,
        facts.runtimes.get(m.runtime) if m.runtime else None,
        facts.cpu_model,
        facts.python,
        facts.emulator,
    )


def _differs(a: tuple, b: tuple) -> bool:
    """Two fingerprints name a change: some part known in both and different (a run whose facts were not
    recorded is unknown, not a change)."""
    return any(x is not None and y is not None and x != y for x, y in zip(a, b, strict=True))


def _accepted(run: StoredRun, target: str, m: Measurement) -> bool:
    """`edgekit runs accept` recorded this run as the new level of this key (the run's `accepted` list, kept in
    its extra JSON by Store.accept: each mark names the target, artifact and thread counts that were flagged in
    the run when it was accepted, `keys`; a mark without `keys` covers every key its target and artifact, None
    for all, match)."""
    marks = (run.result.model_extra or {}).get("accepted") or []
    for mark in marks:
        if not isinstance(mark, dict):
            continue
        keys = mark.get("keys")
        if keys is not None:
            if [target, m.artifact, m.threads] in [list(k) for k in keys]:
                return True
        elif mark.get("target") in (None, target) and mark.get("artifact") in (None, m.artifact):
            return True
    return False


def regressed_keys(runs: Sequence[StoredRun], settings: Settings = Settings()) -> list[tuple[str, str, int]]:
    """(target, artifact, threads) of every latency or instruction-count regression flagged in runs[-1] against
    the runs before it (one recipe): what `edgekit runs accept` records as accepted."""
    judged = (FlagKind.LATENCY, FlagKind.INSTRUCTIONS)
    return [
        (f.target, f.artifact, f.threads)
        for f in judge(runs, settings).flags
        if f.kind in judged and f.target and f.artifact and f.threads
    ]


def _walk(series: list[_Entry], emulated: bool, settings: Settings) -> _Walk:
    """Judge each earlier run of the key against the baseline of its own night, oldest first: a flagged run stays
    out of the baseline, unless
    - it was accepted (`edgekit runs accept`): the new level is the regression's nights up to it, the baseline
      of the runs after it. Whatever its verdict in this walk: the walk starts at the lookback window's oldest
      run, so a night flagged on its own night may pass once fewer runs before the regression are in the window
      (one slow night joining the baseline, the mix then flagged against its older half: a held step accepted
      on its fifth night came back for three nights five weeks later);
    - its configuration differs from the last good run's and it is the regression's first night (a change on
      a later night of it explains nothing: the regression began before it): the baseline starts again from it.
    """
    walk = _Walk([])
    for entry in series:
        verdict = _judge(entry, walk, emulated, settings)
        if _accepted(entry.run, entry.target, entry.m):
            walk.kept, walk.streak, walk.held = [*walk.held, entry], None, []
            continue
        if verdict is None or isinstance(verdict, _Unjudged):
            walk.kept.append(entry)
            walk.streak, walk.held = None, []
            continue
        base = walk.baseline(settings)
        if walk.streak is None and base and _differs(entry.fingerprint, base[-1].fingerprint):
            walk.kept, walk.streak, walk.held, walk.restarted = [entry], None, [], entry.run.id
        else:
            walk.streak = walk.streak or entry
            walk.held.append(entry)
    return walk


def _judge(entry: _Entry, walk: _Walk, emulated: bool, settings: Settings) -> _Verdict | _Unjudged | None:
    """A regression verdict for `entry` against the walk's baseline, _Unjudged with too little history, or None."""
    past = walk.baseline(settings)
    m = entry.m
    counted = [e for e in past if e.m.instructions_per_invoke]
    if emulated and m.instructions_per_invoke and counted:
        old = float(statistics.median(e.m.instructions_per_invoke or 0 for e in counted))
        change = m.instructions_per_invoke / old - 1.0
        if change < settings.instruction_change:
            return None
        return _Verdict(
            FlagKind.INSTRUCTIONS, old, float(m.instructions_per_invoke), change, None, 0.0, counted
        )
    timed = [e for e in past if e.m.samples_ms]
    if not m.samples_ms:
        return None
    if len(timed) < settings.min_runs:
        return _Unjudged(len(timed))
    # a regression going on has returned once below the drift bound at held_alpha, not night_alpha: a step near
    # the bound was otherwise flagged on some of its nights only, and each night it passed joined the baseline
    alpha = settings.held_alpha if walk.streak is not None else settings.night_alpha
    verdict = _latency_verdict(m, timed, settings, alpha)
    if verdict is None and len(timed) >= 2 * max(settings.min_runs, settings.creep_runs):  # a creep
        older = timed[: len(timed) // 2]
        verdict = _latency_verdict(m, older, settings, alpha, creep=True)
    return verdict


def _latency_verdict(
    m: Measurement, past: list[_Entry], settings: Settings, night_alpha: float, *, creep: bool = False
) -> _Verdict | None:
    pooled = np.concatenate([e.m.samples_ms for e in past])
    old, new = float(np.median(pooled)), float(np.median(m.samples_ms))
    change = new / old - 1.0
    if change < settings.min_change:
        return None
    threshold = max(settings.min_change, night_bound([e.m.samples_ms for e in past], night_alpha))
    if change < threshold:
        return None
    p_value = slower_p_value(m.samples_ms, pooled)
    if p_value >= settings.alpha:
        return None
    return _Verdict(FlagKind.LATENCY, old, new, change, p_value, threshold, past, creep)


def _speed_flag(
    recipe: str, run_id: int, target_run: TargetRun, m: Measurement, v: _Verdict, walk: _Walk
) -> Flag:
    where = f"{m.artifact} at {threads_text(m.threads)} on {target_run.target}"
    ids = tuple(e.run.id for e in v.against)
    if v.kind is FlagKind.INSTRUCTIONS:
        message = f"{where}: guest instructions per invoke {v.change:+.2%} (instruction count, not time)"
    else:
        label = "emulated wall time" if target_run.emulated else "latency"
        message = (
            f"{where}: {label} p50 {v.old:.4g} -> {v.new:.4g} ms ({v.change:+.1%}, p={v.p_value:.2g}, "
            f"threshold {v.threshold:.1%})"
        )
        if v.creep:
            message += (
                f"; against the older half of its history (runs #{ids[0]}-#{ids[-1]}): a gradual rise the "
                "night-to-night bound of the whole history no longer sees"
            )
    since = walk.streak
    if since is not None:
        message += f"; still slower since run #{since.run.id}"
    return Flag(
        v.kind,
        recipe,
        run_id,
        target_run.target,
        m.artifact,
        m.threads,
        v.old,
        v.new,
        v.change,
        v.p_value,
        emulated=target_run.emulated,
        message=message,
        since_run=since.run.id if since else None,
        since_ts=since.run.started_ts if since else None,
        baseline_runs=ids,
    )


def _busy_flag(
    recipe: str, run_id: int, target_run: TargetRun, m: Measurement, walk: _Walk, settings: Settings
) -> Flag:
    """Timed while other processes used the CPUs: not judged, yet how far it moved from the baseline is said
    (a 14-fold slowdown read 'unreliable' and nothing more)."""
    share = f"other processes used {m.others_cpu_share:.0%} of {target_run.target}'s CPUs while it was timed"
    past = [e for e in walk.baseline(settings) if e.m.samples_ms]
    old = float(np.median(np.concatenate([e.m.samples_ms for e in past]))) if past else None
    new = float(np.median(m.samples_ms)) if m.samples_ms else m.p50_ms
    change = new / old - 1.0 if old and new is not None else None
    figures = (
        f": p50 {old:.4g} -> {new:.4g} ms ({change:+.1%} vs its history), not judged"
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
        # against the run before (its last baseline run with this artifact): a median over older runs mixed in an
        # earlier model's cosine ('0.99999 -> 0.9999' when both nights were 0.99994)
        olds = [c for c in (_cosine(a.fidelity) for a in past) if c is not None]
        old = olds[-1] if olds else None
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
                baseline_runs=tuple(
                    b.id for b in baseline if any(a.id == art.id for a in b.result.artifacts)
                )[-1:],
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
