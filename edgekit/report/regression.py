"""Regression detection: is the newest run of a recipe worse than its recent history, beyond the noise?

For every artifact x target x thread count of the newest run, compared with the same key in earlier runs (the
baseline):
- wall time: a one-sided Mann-Whitney U test of the newest samples against the pooled baseline samples AND a
  relative rise of the median of at least max(min_change, the upper prediction bound of one more night given
  the baseline's per-night medians). Samples make the test see the noise inside a run; the prediction bound
  (Student t, so three nights of history ask for far more than fourteen) keeps nights that merely drift
  (clocks, room temperature) from being called regressions.
- emulated targets with guest instruction counts: a rise of `instruction_change` (0.5%) and of the runtime's
  floor, baseline.COUNT_NOISE instructions for ncnn (a count is exact for one process history only: ncnn's
  allocator work moves with what ran before it in the agent's process), COUNT_NOISE_OTHERS for the others, past
  the drift bound of the earlier counts once `min_runs` exist (at several threads only from then on); the flag
  says which set the threshold. Emulated wall time is not judged there.
- fidelity: an artifact that missed its recipe's gate.
- failures: an artifact or target that failed where it used to work.
A target that was throttling or hot during the run, or a measurement timed while other processes used the
device's CPUs, is flagged `unreliable` and neither judged nor baseline (unreliable.py). Flags are plain data
(flags.py); the report and `edgekit nightly` read them.

Which runs are the baseline (a regression that persists stays flagged, until it returns, is explained or is
accepted): baseline.py; one measured key's flag and its words: key_flags.py; what explains a change of level:
fingerprint.py; fidelity flags: fidelity_flags.py. This module judges a run's targets and is where callers import
from (the names in __all__).
With fewer than `min_runs` baseline runs of a key, its latency is not judged, and the report says so
(`Judgement.unjudged`) rather than calling it within the noise.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import replace

from edgekit.report.baseline import night_bound
from edgekit.report.fidelity_flags import fidelity_flags, target_fidelity_flags
from edgekit.report.flags import Flag, FlagKind, Judgement, Settings, Unjudged, threads_text
from edgekit.report.key_flags import judge_measurement
from edgekit.report.series import HOST, name_other_host, same_series, series_key, stands_in
from edgekit.report.unreliable import stopped, throttle_reason
from edgekit.results import Measurement, TargetRun
from edgekit.samples import slower_p_value
from edgekit.store import StoredRun

__all__ = [
    "HOST",
    "Flag",
    "FlagKind",
    "Judgement",
    "Settings",
    "Unjudged",
    "detect",
    "detect_latest",
    "judge",
    "judge_current",
    "night_bound",
    "regressed_keys",
    "same_series",
    "series_key",
    "slower_p_value",
    "threads_text",
    "throttle_reason",
]

_DEFAULT_SETTINGS = Settings()  # frozen: one instance serves every default (Settings is in flags.py)


def detect(history: Sequence[StoredRun], settings: Settings = _DEFAULT_SETTINGS) -> list[Flag]:
    """Flags for the newest run of every target of every recipe in `history` (oldest first, as Store.history
    returns; see judge_current)."""
    by_recipe: dict[str, list[StoredRun]] = {}
    for run in history:
        by_recipe.setdefault(run.result.recipe, []).append(run)
    flags: list[Flag] = []
    for runs in by_recipe.values():
        flags += judge_current(runs, settings).flags
    return flags


def detect_latest(runs: Sequence[StoredRun], settings: Settings = _DEFAULT_SETTINGS) -> list[Flag]:
    """Flags for runs[-1] against the runs before it (all of one recipe; see judge)."""
    return judge(runs, settings).flags


def judge(
    runs: Sequence[StoredRun], settings: Settings = _DEFAULT_SETTINGS, *, run_id: int | None = None
) -> Judgement:
    """Flags for one run of a recipe (`run_id`, by default the newest of `runs`: all of one recipe, oldest
    first), and the keys whose latency it could not judge for want of history. Each of its targets is judged
    against the runs before it that measured that target (series_key: on the host, the same CPU), up to
    `settings.lookback` of them: another target's runs in between (a host-only deploy, another board's night)
    neither push the target's history out of the window nor stand in for it."""
    if not runs:
        return Judgement([], [])
    at = len(runs) - 1 if run_id is None else next(i for i, r in enumerate(runs) if r.id == run_id)
    latest, before = runs[at], list(runs[:at])
    tally = Judgement(fidelity_flags(latest, before[-settings.history :]), [])
    for target_run in latest.result.runs:
        tally.flags += _judge_target(latest, target_run, before, settings, tally)
    return tally


def judge_current(
    runs: Sequence[StoredRun], settings: Settings = _DEFAULT_SETTINGS, *, among: Collection[int] | None = None
) -> Judgement:
    """Flags for the newest run of each target of a recipe (`runs` oldest first): the state a report shows,
    judged as `judge` judges a run. A target whose newest run is not in `among` (a report's time window, the
    night's own runs) is not judged: an old flag is not news, and a run recorded by someone else after the
    night is not the night's: each series' newest run in `among` is judged, whatever was recorded after it. The
    recipe's conversion flags are those of the newest run judged."""
    tally = Judgement([], [])
    flags: list[Flag] = []
    seen: list[tuple] = []
    newest: int | None = None  # its index in runs
    for at in range(len(runs) - 1, -1, -1):
        run = runs[at]
        if among is not None and run.id not in among:
            continue  # a colleague's run after the night's is not the night's, nor does it stand in for it
        for target_run in run.result.runs:
            key = series_key(target_run)
            if any(stands_in(k, key) for k in seen):
                continue
            seen.append(key)
            newest = at if newest is None else newest
            flags += _judge_target(run, target_run, list(runs[:at]), settings, tally)
    if newest is not None:
        flags = fidelity_flags(runs[newest], list(runs[:newest])[-settings.history :]) + flags
        flags = [name_other_host(f, runs, runs[newest]) for f in flags]
    tally.flags = flags
    return tally


def _judge_target(
    latest: StoredRun,
    target_run: TargetRun,
    before: list[StoredRun],
    settings: Settings,
    tally: Judgement,
) -> list[Flag]:
    """`target_run` of `latest` against the last `settings.lookback` runs before it of the same series, each
    reduced to that series' target run (`tally`: the keys it judged, could not judge, found unreliable)."""
    key = series_key(target_run)
    earlier: list[StoredRun] = []
    for run in reversed(before):  # and the lookback before it: a regression that aged out unaccepted
        mine = [t for t in run.result.runs if same_series(series_key(t), key)]
        if mine:
            earlier.append(StoredRun(run.id, run.started_ts, run.result.model_copy(update={"runs": mine})))
            if len(earlier) == 2 * settings.lookback:
                break
    window, older = earlier[: settings.lookback], earlier[settings.lookback :]
    return _target_flags(latest, target_run, window[::-1], settings, tally, older[::-1])


def regressed_keys(
    runs: Sequence[StoredRun], settings: Settings = _DEFAULT_SETTINGS
) -> list[tuple[str, str, int]]:
    """(target, artifact, threads) of every latency or instruction-count regression flagged in runs[-1] against
    the runs before it (one recipe): what `edgekit runs accept` records as accepted."""
    judged = (FlagKind.LATENCY, FlagKind.INSTRUCTIONS)
    return [
        (f.target, f.artifact, f.threads)
        for f in judge(runs, settings).flags
        if f.kind in judged and f.target and f.artifact and f.threads
    ]


# --- per target ---------------------------------------------------------------------------------------------
def _target_flags(
    latest: StoredRun,
    target_run: TargetRun,
    earlier: list[StoredRun],
    settings: Settings,
    tally: Judgement,
    older: list[StoredRun] | None = None,
) -> list[Flag]:
    recipe, target = latest.result.recipe, target_run.target
    baseline = earlier[-settings.history :]
    base_targets = [t for b in baseline for t in b.result.runs if t.target == target]
    # a failure or a note is news against the target's last run (a latency flag names the runs it was judged on)
    base_ids = tuple(b.id for b in baseline if any(t.target == target for t in b.result.runs))[-1:]

    def flag(kind: FlagKind, message: str, m: Measurement | None = None, first_run: bool = False) -> Flag:
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
            first_run=first_run,
        )

    flags: list[Flag] = []
    if target_run.interrupted:  # stopped by Ctrl-C or SIGTERM: what it did not measure is no regression
        skipped = sum(1 for m in _measurements(target_run) if m.status != "ok" and stopped(m))
        said = f"{skipped} measurement(s) not taken" if skipped else "stopped before the end"
        flags.append(flag(FlagKind.UNRELIABLE, f"{target}: run interrupted (Ctrl-C or SIGTERM): {said}"))
        if target_run.agent is None:
            return flags
    if target_run.place_lost is not None:  # a lab place taken from the run: see _place_lost_flags
        tally.unreliable += sum(m.status == "ok" for m in _measurements(target_run))
        return flags + _place_lost_flags(target_run, flag, first_run=not base_targets)
    if target_run.status == "failed" and target_run.agent is None:
        if base_targets and all(t.status == "failed" for t in base_targets):
            return []
        if _host_left_out(latest, target_run):
            return []
        return [
            flag(
                FlagKind.FAILED,
                f"{target}: {target_run.error or 'target failed'}",
                first_run=not base_targets,
            )
        ]
    flags += target_fidelity_flags(
        latest, target_run, [t for b in earlier for t in b.result.runs if t.target == target]
    )
    reason = throttle_reason(target_run, settings.max_temperature_c)
    if reason:
        flags.append(flag(FlagKind.UNRELIABLE, f"{target}: timings unreliable: {reason}"))
    trusted = [
        t
        for t in base_targets
        if throttle_reason(t, settings.max_temperature_c) is None and t.place_lost is None
    ]
    failures: dict[
        tuple[str, str], list[Measurement]
    ] = {}  # one flag per distinct failure, not per thread count
    unseen: set[tuple[str, int]] = set()  # failed keys no earlier run measured: failures, not regressions
    for m in _measurements(target_run):
        if m.status == "ok":
            made = judge_measurement(
                latest, target_run, m, earlier, settings, tally, older, unreliable=reason
            )
            flags += [made] if made is not None else []
        elif not (target_run.interrupted and stopped(m)):
            past = [
                pm
                for t in trusted
                for pm in _measurements(t)
                if (pm.artifact, pm.threads) == (m.artifact, m.threads)
            ]
            if not (past and all(pm.status != "ok" for pm in past)):  # a known-broken one is not news
                failures.setdefault((m.artifact, m.error or "failed"), []).append(m)
                if not past:
                    unseen.add((m.artifact, m.threads))
    for (artifact, error), failed in failures.items():  # 'at 1 and 2 threads': one flag, threads None
        counts = sorted({fm.threads for fm in failed})
        at = " and ".join(map(str, counts)) + (" thread" if counts == [1] else " threads")
        first = all((fm.artifact, fm.threads) in unseen for fm in failed)
        one = flag(FlagKind.FAILED, f"{artifact} on {target} failed at {at}: {error}", failed[0], first)
        flags.append(one if len(counts) == 1 else replace(one, threads=None))
    return flags


def _place_lost_flags(target_run: TargetRun, flag: Callable[..., Flag], *, first_run: bool) -> list[Flag]:
    """A lab place taken from the run before it ended (a teammate's kick, a coordinator restart): when is not
    known, so none of its figures is trusted. The run is a failure naming who holds the place now (it fails the
    night, as docs/lab.md says), its timings are flagged unreliable and neither judged nor a baseline
    (baseline.key_series leaves such runs out). Its measurements were stored as `ok` and judged as any run's,
    and taken into the board's history: the night passed."""
    target = target_run.target
    return [
        flag(
            FlagKind.FAILED,
            f"{target}: the lab place was taken from this run before it ended ({target_run.place_lost}); "
            "measure it again",
            first_run=first_run,
        ),
        flag(
            FlagKind.UNRELIABLE,
            f"{target}: timings unreliable: the lab place was taken from the run before it ended (they may have "
            "shared the board with someone else's work): not judged, not a baseline",
        ),
    ]


def _host_left_out(latest: StoredRun, target_run: TargetRun) -> bool:
    """The host, not measured because every device of the deploy failed before measuring (its figures are only
    their reference): the devices' failures are the news, flagged each; the host's is no failure of its own."""
    others = [t for t in latest.result.runs if t.target != target_run.target]
    return (
        target_run.target == HOST
        and bool(others)
        and all(t.status == "failed" and t.agent is None for t in others)
    )


def _measurements(target_run: TargetRun) -> list[Measurement]:
    return target_run.agent.measurements if target_run.agent else []
