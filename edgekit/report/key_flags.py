"""One measured key of a target run (artifact x thread count) judged against its series (baseline.py's walk):
a latency or instruction-count flag with its message, a key not judged for want of history (Unjudged), a busy
timing said but not judged, and a regression that aged out of the lookback unaccepted. regression.py judges a
run's targets and calls judge_measurement for each measurement that was taken."""

from __future__ import annotations

import statistics
from dataclasses import replace

from edgekit.report.baseline import (
    Entry,
    Walk,
    accepted,
    key_series,
    lost_speedup,
    on_counts,
    walk_key,
)
from edgekit.report.fingerprint import differs, fingerprint
from edgekit.report.flags import (
    Flag,
    FlagKind,
    Judgement,
    Settings,
    Unjudged,
    baseline_words,
    speedup_lost_words,
    threads_text,
)
from edgekit.report.series import HOST, series_key
from edgekit.report.unreliable import busy_flag
from edgekit.report.verdict import TooFewRuns, Verdict, judge_key
from edgekit.results import Measurement, TargetRun
from edgekit.store import StoredRun


def judge_measurement(
    latest: StoredRun,
    target_run: TargetRun,
    m: Measurement,
    earlier: list[StoredRun],
    settings: Settings,
    tally: Judgement,
    older: list[StoredRun] | None,
    *,
    unreliable: str | None,
) -> Flag | None:
    """One measured key against its series (baseline.py): its speed or count flag, or None; `tally` counts it as
    judged, unjudged (too few runs), unreliable (`unreliable`: why the target's timings are not trusted, or busy)
    or aged out."""
    recipe, target = latest.result.recipe, target_run.target
    if unreliable and not on_counts(m, target_run.emulated):  # an emulated host's heat moves no count
        tally.unreliable += 1
        return None
    series = key_series(earlier, target, m, target_run.emulated, settings)
    walk = walk_key(series, target_run.emulated, settings)
    if m.timed_while_busy and not on_counts(m, target_run.emulated):  # counts are exact whatever the load
        tally.unreliable += 1
        return busy_flag(recipe, latest.id, target_run, m, walk, settings)
    entry = Entry(latest, target, m, fingerprint(latest, target_run, m))
    verdict = judge_key(entry, walk, target_run.emulated, settings)
    if isinstance(verdict, TooFewRuns):
        needed = verdict.needed or settings.min_runs
        tally.unjudged.append(
            Unjudged(
                target,
                m.artifact,
                m.threads,
                verdict.earlier,
                needed,
                walk.restarted,
                verdict.what,
                _machine(target_run),
            )
        )
        return None
    tally.judged += 1
    if accepted(latest, target, m):  # accepted: the new level
        return None
    if verdict is None:
        aged = _aged_out(entry, series, older, target_run, settings) if older else None
        if aged:
            tally.aged_out.append(aged)
        return None
    made = _speed_flag(
        recipe,
        latest.id,
        target_run,
        m,
        verdict,
        walk,
        settings.min_change,
        lost_speedup(entry, walk, target_run.emulated, settings),
    )
    base = walk.baseline(settings)  # walk_key's own test of a change that restarts the baseline
    if walk.streak is None and base and differs(entry.fingerprint, base[-1].fingerprint):
        made = replace(made, explained=True)
    return made


def _speed_flag(
    recipe: str,
    run_id: int,
    target_run: TargetRun,
    m: Measurement,
    v: Verdict,
    walk: Walk,
    min_change: float,
    lost: tuple[int, ...] = (),
) -> Flag:
    where = f"{m.artifact} at {threads_text(m.threads)} on {target_run.target}"
    ids = tuple(e.run.id for e in v.against)
    against = baseline_words(v.kind, ids)
    if v.kind is FlagKind.INSTRUCTIONS:
        message = (
            f"{where}: guest instructions per invoke {v.change:+.2%} (instruction count, not time) {against}"
            f"; threshold {v.threshold:.1%}: {v.basis}"
        )
    else:
        label = "emulated wall time" if target_run.emulated else "latency"
        message = (
            f"{where}: {label} p50 {v.old:.4g} -> {v.new:.4g} ms ({v.change:+.1%}, p={v.p_value:.2g}, "
            f"threshold {v.threshold:.1%}) {against}"
        )
        if target_run.emulated:  # no count to judge: qemu's time on this machine stands in, and says so
            message += "; qemu's wall time on this machine, not the board's latency (this run counted no instructions)"
        if v.creep:
            message += (
                "; against the older half of its history: a gradual rise the night-to-night bound of the whole "
                "history no longer sees"
            )
    if lost:
        message += f"; {speedup_lost_words(lost, ids)}"
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
        min_change=min_change,
        lost_speedup=lost,
    )


def _aged_out(
    entry: Entry, series: list[Entry], older: list[StoredRun], target_run: TargetRun, settings: Settings
) -> str:
    """A regression nobody accepted that is no longer flagged because the runs before it left the lookback
    (its level became the baseline): 8 nights at 1.0x then 52 at 1.3x were flagged to night 44, then the report
    said 'No regressions' and --fail-on-regression passed without a word (review r13). Judged as walk_key judges
    the window, over the lookback before it too; '' when the newest run is not slower than that older window's
    lowest level by what a flag needs (most keys: no second walk), or the wider walk holds no regression going
    on."""
    m, emulated = entry.m, target_run.emulated
    before = key_series(older, target_run.target, m, emulated, settings)
    if on_counts(m, emulated):
        counted = [float(e.m.instructions_per_invoke or 0) for e in before if e.m.instructions_per_invoke]
        value = float(m.instructions_per_invoke or 0)
        if not counted or value / _low(counted, settings) - 1.0 < settings.instruction_change:
            return ""
    else:
        timed = [statistics.median(e.m.samples_ms) for e in before if e.m.samples_ms]
        if not timed or not m.samples_ms:
            return ""
        if statistics.median(m.samples_ms) / _low(timed, settings) - 1.0 < settings.min_change:
            return ""
    wide = walk_key(before + series, emulated, settings)
    verdict = judge_key(entry, wide, emulated, settings)
    if not isinstance(verdict, Verdict) or wide.streak is None:
        return ""
    since = wide.streak.run
    unit = " instr." if verdict.kind is FlagKind.INSTRUCTIONS else " ms"
    return (
        f"{m.artifact} at {threads_text(m.threads)} on {target_run.target}: the regression since run #{since.id} "
        f"({verdict.old:.4g} → {verdict.new:.4g}{unit}, {verdict.change:+.1%}) aged out unaccepted: the runs "
        f"before it left the {settings.lookback}-run lookback, so its level is the baseline now and it is no "
        "longer flagged; if it is not expected, it is still there to fix"
    )


def _low(values: list[float], settings: Settings) -> float:
    """The older window's lowest level: the median of its `min_runs` lowest nights (the regression's own nights
    may be most of that window)."""
    return float(statistics.median(sorted(values)[: settings.min_runs]))


def _machine(target_run: TargetRun) -> str:
    """The host's CPU and cores as the report names a host machine ('AMD EPYC, 2 cores'); '' elsewhere."""
    key = series_key(target_run)
    return f"{key[1]}, {key[2]} cores" if target_run.target == HOST and key[1] is not None else ""
