"""What a report shows, computed once from stored runs: per recipe, the latest table, history and flags.

html.py, markdown.py and plots.py only lay this out; every number a report prints is computed here (or in
regression.py), so the HTML and the Markdown summary can never disagree.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from edgekit.report.baseline import accepted, accepted_level
from edgekit.report.changes import judged_changes
from edgekit.report.older_rows import host_series_rows, or_older, unmeasured_from_older
from edgekit.report.regression import (
    Flag,
    Settings,
    Unjudged,
    judge_current,
    same_series,
    series_key,
    threads_text,
)
from edgekit.report.rows import Row, latest_rows, measurements
from edgekit.report.selection import empty_hint
from edgekit.report.selection import when as when  # where the reports import it from
from edgekit.report.series import machines
from edgekit.results import (
    TargetRun,
)
from edgekit.store import Store, StoredRun


@dataclass(frozen=True)
class Accepted:
    """A level `edgekit runs accept` took as expected: the run, the target and the keys (artifact, threads) it
    covers. The report marks it on the trend and says it in the recipe's section: the flags it stopped leave no
    other trace."""

    run_id: int
    started_ts: float
    target: str
    keys: tuple[tuple[str, int], ...]

    def line(self) -> str:
        """'level accepted at run #11 on pi4 (2026-06-11 02:00 UTC): tflite-fp32 at 1 thread'."""
        which = ", ".join(f"{a} at {threads_text(n)}" for a, n in self.keys)
        return f"level accepted at run #{self.run_id} on {self.target} ({when(self.started_ts)} UTC): {which}"


@dataclass
class RecipeView:
    recipe: str
    runs: list[StoredRun]  # oldest first, restricted to the chosen targets
    latest: StoredRun
    rows: list[Row]
    flags: list[Flag]
    targets: list[str] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)  # what differs from the runs it was judged against
    changes_against: str = "the previous run"  # those runs, in words ('run #12 (pi5-emu's last judged)')
    unjudged: list[Unjudged] = field(default_factory=list)  # keys with too little history to judge latency
    judged_runs: list[StoredRun] = field(default_factory=list)  # the runs judged on (reaching before `runs`)
    judged: int = 0  # timings (latency or instruction-count keys) of the newest runs judged against history
    unreliable_timings: int = 0  # timings not judged: timed while busy, on a throttled or taken board
    aged_out: list[str] = field(default_factory=list)  # regressions nobody accepted, now the baseline

    @property
    def interrupted(self) -> bool:
        """The latest run was stopped by Ctrl-C or SIGTERM on some target: not everything was measured."""
        return any(t.interrupted for t in self.latest.result.runs)

    def not_judged(self) -> list[str]:
        """Per target, 'not enough history to judge latency on host (2 earlier runs; 3 needed)': what could
        not be judged is not called within the noise (instruction counts, fidelity and failures still are)."""
        by_target: dict[tuple[str, str], list[Unjudged]] = {}
        for u in self.unjudged:
            by_target.setdefault((u.target, u.machine), []).append(u)
        # several host machines in the runs shown (a store shared with a colleague's laptop): name which one
        hosts = machines(
            series_key(t)
            for r in self.runs
            for t in r.result.runs
            if t.target == "host" and None not in series_key(t)[1:]
        )
        lines = []
        for (target, machine), keys in by_target.items():
            named = f"{target} ({machine})" if machine and len(hosts) > 1 else target
            counts = sorted({u.earlier for u in keys})
            earlier = " or ".join(map(str, counts))
            since = next((u.since_change for u in keys if u.since_change is not None), None)
            after = f" since its configuration changed in run #{since}" if since is not None else ""
            newest = self.latest_on(target)
            measured = [m for m in measurements(newest[1]) if m.status == "ok"] if newest else []
            everything = len(keys) >= len(measured)
            which = (
                ""
                if everything
                else ": " + ", ".join(f"{u.artifact} at {threads_text(u.threads)}" for u in keys)
            )
            if any(u.what == "latency" for u in keys):
                what, runs = "latency", "run"
            elif any(u.what == "instructions" for u in keys):
                what, runs = "the instruction count at several threads", "run"
            else:  # the first run that counted: its wall time is not comparable with the earlier ones' either
                what, runs = "the instruction count", "counted run"
            lines.append(
                f"not enough history to judge {what} on {named} ({earlier} earlier "
                f"{runs}{'s' if counts != [1] else ''}{after}; {max(u.needed for u in keys)} needed){which}"
            )
        return lines

    def accepted(self) -> list[Accepted]:
        """The levels accepted in the runs shown, oldest first, per target (baseline.accepted decides which
        measurements a mark covers, as judging does), each key only while its accepted level is still its
        baseline (baseline.accepted_level): 'level accepted at run #11' stayed after a fix, a configuration
        change or a later accepted level had moved the key on."""
        found = []
        history = self.judged_runs or self.runs
        for run in self.runs:
            for t in run.result.runs:
                keys = {
                    (m.artifact, m.threads)
                    for m in measurements(t)
                    if accepted(run, t.target, m)
                    and accepted_level(history, t.target, m, t.emulated, Settings()) == run.id
                }
                if keys:
                    found.append(Accepted(run.id, run.started_ts, t.target, tuple(sorted(keys))))
        return found

    def latest_on(self, target: str) -> tuple[StoredRun, TargetRun] | None:
        """The newest shown run that includes `target`, and its part for that target: a recipe's latest run
        may have been on another target."""
        for run in reversed(self.runs):
            for t in run.result.runs:
                if t.target == target:
                    return run, t
        return None

    def route_on(self, target: str) -> tuple[StoredRun, dict[str, Any]] | None:
        """The newest shown run that recorded a route for `target`, and that route: a run interrupted before its
        routes were chosen records none, and the route before it still stands."""
        for run in reversed(self.runs):
            for data in run.result.routes:
                if data.get("target") == target:
                    return run, data
        return None

    def emulated(self, target: str) -> bool:
        """Whether `target`'s own newest run was emulated (decided per target, never from another's run)."""
        found = self.latest_on(target)
        return found is not None and found[1].emulated


@dataclass
class Report:
    recipes: list[RecipeView]
    generated_at: str
    since: float | None
    store_url: str
    empty_hint: str = ""  # with nothing to show: what the store does hold, so a filter's typo is visible
    failed_deploys: dict[str, str] = field(
        default_factory=dict
    )  # nightly: recipe file -> why it did not deploy

    @property
    def flags(self) -> list[Flag]:
        return [f for view in self.recipes for f in view.flags]

    not_reached: list[str] = field(default_factory=list)  # nightly: recipes an interruption left unrun
    unreadable: str = ""  # nightly: why the store could not be read for the report (nothing was judged)

    @property
    def regressions(self) -> list[Flag]:
        return [f for f in self.flags if f.is_regression]

    @property
    def failures(self) -> list[Flag]:
        """Failures and missed gates of what no earlier run had measured (a recipe's first night)."""
        return [f for f in self.flags if f.is_failure]

    @property
    def unreliable(self) -> list[Flag]:
        return [f for f in self.flags if not f.is_bad]

    @property
    def interrupted(self) -> bool:
        """Not everything was run: a recipe's latest run was stopped (Ctrl-C, SIGTERM) or the night named
        recipes it never reached."""
        return bool(self.not_reached) or any(v.interrupted for v in self.recipes)

    @property
    def aged_out(self) -> list[str]:
        """Regressions nobody accepted that left the lookback: no longer flagged, said apart."""
        return [line for view in self.recipes for line in view.aged_out]

    @property
    def unjudged(self) -> list[str]:
        """Recipes with a key whose latency or instruction count could not be judged for want of history."""
        return [v.recipe for v in self.recipes if v.unjudged]

    @property
    def timings_not_judged(self) -> str:
        """'28 of 28 timings unreliable' when no timing (latency or instruction-count key) was judged because
        those measured were unreliable (timed while busy, on a throttled board): a lab night timed beside other
        work said 'no regressions' while it had judged nothing; '2 of 14 timings unreliable, 12 without enough
        history' when the others lacked history. '' when one was judged, or none was unreliable (the recipes with
        a key without enough history are also said apart: `unjudged`)."""
        unreliable = sum(v.unreliable_timings for v in self.recipes)
        if not unreliable or any(v.judged for v in self.recipes):
            return ""
        missing = sum(len(v.unjudged) for v in self.recipes)
        total = unreliable + missing
        said = f"{unreliable} of {total} timing{'s' if total != 1 else ''} unreliable"
        # the rest lacked history: '2 of 14 timings unreliable' alone blamed the 12 on unreliability (review r13)
        return said + (f", {missing} without enough history" if missing else "")

    @property
    def unjudged_what(self) -> str:
        """What could not be judged, for the headline: 'latency', 'instruction counts' or both."""
        kinds = {u.what for v in self.recipes for u in v.unjudged}
        counts = kinds & {"instructions", "count"}
        if counts and kinds - counts:
            return "latency or instruction counts"
        return "instruction counts" if counts else "latency"


def build(
    store: Store,
    *,
    since: float | None = None,
    recipes: Sequence[str] = (),
    targets: Sequence[str] = (),
    settings: Settings = Settings(),
    judge_only: Collection[int] | None = None,
) -> Report:
    """Read the store and compute everything a report shows. Each target's newest run shown is judged
    (regression.judge_current); with `judge_only` (the nightly: the runs it recorded), only those runs are."""
    names = list(recipes) or store.recipes(since=since)
    views = []
    for name in names:
        shown = [
            r for r in (_only(r, targets) for r in store.history(recipe=name, since=since)) if r.result.runs
        ]
        if not shown:
            continue
        # regression baseline may reach back before `since`: a regression's start, a creep's; read per target,
        # so that 41 host-only deploys do not push a board's nights out of its window
        found: dict[int, StoredRun] = {}
        for target in dict.fromkeys(t.target for r in shown for t in r.result.runs):
            found.update((r.id, r) for r in _target_history(store, name, target, shown, settings))
        recent = sorted(found.values(), key=lambda r: (r.started_ts, r.id))
        views.append(
            recipe_view(name, shown, recent, targets=targets, settings=settings, judge_only=judge_only)
        )
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    return Report(views, stamp, since, store.url, "" if views else empty_hint(store, since, recipes, targets))


READ_ROUNDS = 4  # a target's window is read at most lookback+1 runs x 2**(READ_ROUNDS-1) deep (host series)


def _target_history(
    store: Store, recipe: str, target: str, shown: list[StoredRun], settings: Settings
) -> list[StoredRun]:
    """The newest runs of `recipe` stored under `target`, enough for the window of each of its series shown (on
    the host, one per CPU: regression.series_key): every machine stores itself as `host`, so the newest
    lookback+1 host runs could all be a colleague's laptop's (45 of them left the runner's host 'not enough
    history'). Read deeper, doubling, until each series shown has lookback+1 runs or the store has no more
    (bounded: READ_ROUNDS reads)."""
    wanted = machines(  # a run that recorded no CPU belongs to no series of its own
        series_key(t)
        for r in reversed(shown)
        for t in r.result.runs
        if t.target == target and None not in series_key(t)[1:]
    )
    limit = (
        2 * settings.lookback + 1
    )  # and the lookback before the window: a regression that aged out (regression)
    for _ in range(READ_ROUNDS):
        runs = store.history(recipe=recipe, target=target, limit=limit)
        short = [
            k
            for k in wanted
            if sum(any(same_series(series_key(t), k) for t in r.result.runs) for r in runs) < limit
        ]
        if len(runs) < limit or not short:
            break
        limit *= 2
    return runs


def recipe_view(
    name: str,
    shown: list[StoredRun],
    recent: list[StoredRun] | None = None,
    *,
    targets: Sequence[str] = (),
    settings: Settings = Settings(),
    judge_only: Collection[int] | None = None,
) -> RecipeView:
    shown = [_only(r, targets) for r in shown]
    ids = {r.id for r in shown}
    recent = [
        r
        for r in (_only(r, targets) for r in (recent if recent is not None else shown))
        if r.result.runs  # a run recorded after `shown` was read is not what the report shows
        and (r.id in ids or (r.started_ts, r.id) < (shown[-1].started_ts, shown[-1].id))
    ]
    among = ids if judge_only is None else ids & set(judge_only)
    judgement = judge_current(recent, settings, among=among)
    flags = judgement.flags
    latest = shown[-1]
    target_names = list(dict.fromkeys(t.target for r in shown for t in r.result.runs))
    changed, against = judged_changes(recent, flags, settings) if recent else ([], "")
    rows = latest_rows(latest.result, [f for f in flags if f.run_id == latest.id])
    in_latest = {t.target for t in latest.result.runs}
    for target in target_names:  # a target the latest run did not include: its own newest run
        if target in in_latest:
            continue
        older = next(
            (
                r
                for r in reversed(shown)
                if any(t.target == target and measurements(t) for t in r.result.runs)
            ),
            None,
        )  # the newest run that measured it (one that failed before measuring has no rows to show)
        if older is not None:
            mine = [f for f in flags if f.run_id == older.id]  # its newest run was judged (judge_current)
            rows += [replace(row, run_id=older.id) for row in latest_rows(older.result, mine, only=target)]
    rows = host_series_rows(
        unmeasured_from_older([or_older(row, latest, shown) for row in rows], latest, shown), shown, flags
    )
    return RecipeView(
        name,
        shown,
        latest,
        rows,
        flags,
        target_names,
        changed,
        against,
        judgement.unjudged,
        recent,
        judgement.judged,
        judgement.unreliable,
        judgement.aged_out,
    )


def _only(run: StoredRun, targets: Sequence[str]) -> StoredRun:
    if not targets:
        return run
    kept = [t for t in run.result.runs if t.target in targets]
    return StoredRun(run.id, run.started_ts, run.result.model_copy(update={"runs": kept}))
