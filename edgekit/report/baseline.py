"""One key (artifact x target x thread count) over time: which of its earlier runs are the baseline (a regression
that persists stays flagged); the verdict of a run against it is verdict.py's.

Judging each night only against the runs before it let a regression flag once: the next night's baseline held
the slow night, whose odd median widened the night-to-night bound (t * s) past the step, and a +30 % step passed
from its second night on; a creep of +4 % a night did the same. So each key's earlier runs, up to `lookback`
runs back, are judged in turn as they were on their own night, and a run that was flagged does not join the
baseline of the runs after it:
- a level shift stays flagged ('still slower since run #15, 2026-11-14') until a run is back within the noise
  of the baseline (it then joins it again; "within" is the drift bound at `held_alpha`, 5 %, rather than the
  0.1 % a regression must pass to start: a step near the bound was otherwise flagged on some of its nights only,
  each night it passed joining the baseline; a false start, rare at 0.1 %, lasts a night more with 5 %);
- a regression whose first night came with a change of configuration against the last good run is explained
  (fingerprint.py): flagged on that night with what changed, then the baseline starts again from that run;
- a shift nobody explains is remembered while a run from before it is in the lookback window (`lookback`, 42
  runs: six weeks of nights), then its level is the history; a held 10 % step at 1 % drift kept every key
  flagged for 36 nights and failed the nightly to night ~41, so a change the fingerprint cannot see (a kernel,
  a board swapped for the same model, edgekit's agent) is accepted by hand: `edgekit runs accept RUN
  [--target T] [--artifact A]` marks the run with the keys flagged in it (Store.accept, regressed_keys); a
  run so marked is not flagged for them, and the regression's runs up to it (its first slow night to the
  accepted one) are the baseline of the runs after it, so they are judged on the new level at once and a
  further step is still caught; other keys keep their history. The accepted level is the baseline until the
  key leaves it: `min_runs` runs in a row below it by the same two tests mirrored (a level of its own, an
  improvement: the slowdown fixed) are then the baseline in its place, so a return to the accepted level is
  flagged. Before, the fast runs joined the accepted slow ones, the night-to-night bound of the mix covered
  both levels, and a return to the slow one passed for the whole lookback; fewer fast runs in a row are left
  out of the baseline (the accepted level stands: a return to it is what was accepted). An accepted level of
  fewer than `min_runs` runs (accepted on the step's first night) is left on min_change and the Mann-Whitney
  test alone, with the drift of the key's earlier levels when the window holds any. Steps of +8 % and +50 % held for 30 nights after their acceptance (on their first or fifth
  night), 6 seeds at 1, 2, 3 % drift: 0 flags in 2160 checks. Departed runs back at a level the key had in the
  window (the one before the regression) join its runs at it (rejoined): alone, three of them were the
  baseline, and a return to the accepted level soon after the fix passed their bound and joined them for good
  (+15 and +25 % returns three nights after the fix, 4 seeds: missed on every one; now flagged at 1 and 2 %
  drift, and at 3 % the +25 % ones). A fix small against the drift (-13 % after +15 % at 3 %) seldom departed
  three nights in a row, and a fast night that did not joined the accepted level, whose spread then hid the
  rest: a night back at the earlier level (returns: judged on that level's own nights) counts as departed,
  two of three clearly (departs), and a night only nearer the earlier level joins neither (3 and 6 keys of 8
  back at the earlier level after six nights of the fix, accepted on the step's third or fifth night; now 7
  and 7; accepted on its first night, one noisy run, 4 and now 5);
- a run faster than the baseline by what would flag it slower (departs) does not join it when no level was
  accepted (faster): with a configuration change it restarts the baseline, `min_runs` in a row are a new level,
  fewer are left out. Joining, one 0.7x night at 1 % drift widened the bound to 73 % and a +32 % night passed;
  a held speed-up (a runtime upgrade) kept the old level as the baseline and a +29 % slowdown from the new one
  passed (review r13);
- a baseline's night-to-night drift is measured on the key's earlier levels in the window too (pooled_bound:
  a level shift, explained, accepted or fixed, moves the level, not the drift): three nights after a restart
  alone gave t(0.999, 2) = 22 spreads, over 100 % at 2 % drift, and a +20-25 % step 3-5 nights after a
  converted-file change passed in 46 of 144 cases (3 seeds x 1, 2, 3 % drift x 2 steps x 3, 4, 5, 7 nights
  on, at 1 and 4 threads), then joined the baseline; now 1 of 144 (+20 % at 3 % drift, 7 nights on). The 2160
  checks above: still 0 flags;
- a creep, which moves each night by less than the bound and widens the bound as it goes, is judged against
  the older half of the baseline too (verdict.py says how, and what it costs in false alarms). Throttled and
  busy runs are neither judged in the walk nor baseline.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from edgekit.report.fingerprint import differs, fingerprint
from edgekit.report.flags import Settings

# what a count may move by on identical code, ncnn's and every other runtime's, measured (levels.py); regression.py
# and tests import these from here
from edgekit.report.levels import COUNT_NOISE as COUNT_NOISE
from edgekit.report.levels import COUNT_NOISE_OTHERS as COUNT_NOISE_OTHERS
from edgekit.report.levels import (
    _timed,
    departs,
    med,
    rejoined,
    returns,
)
from edgekit.report.levels import night_bound as night_bound
from edgekit.report.unreliable import throttle_reason
from edgekit.report.verdict import TooFewRuns, judge_key
from edgekit.results import Measurement
from edgekit.store import StoredRun


@dataclass(frozen=True)
class Entry:
    run: StoredRun
    target: str
    m: Measurement
    fingerprint: tuple


@dataclass
class Walk:
    """A key's earlier runs judged in turn: the ones that form the baseline of the next run (`kept`, oldest
    first), the first run of a regression still going on (`streak`) and its flagged runs so far (`held`), the
    run whose configuration change restarted the baseline (`restarted`); whether `kept` is a level accepted by
    `edgekit runs accept` (`accepted`) and the runs in a row since then that are faster than it (`departed`);
    the key's earlier baselines, replaced by a restart, an accepted level or a departure from it (`levels`):
    their night-to-night drift is the key's too (`earlier`), and departed runs back at one of them join it."""

    kept: list[Entry]
    streak: Entry | None = None
    held: list[Entry] = field(default_factory=list)
    restarted: int | None = None
    accepted: bool = False
    departed: list[Entry] = field(default_factory=list)
    levels: list[list[Entry]] = field(default_factory=list)
    # the level a held speed-up (faster) replaced, while the speed-up is the baseline: a return to it is the
    # speed-up lost, said so (lost_speedup), not a slowdown of the kind a kernel or a board swap brings
    before_speedup: list[Entry] = field(default_factory=list)

    def baseline(self, settings: Settings) -> list[Entry]:
        return self.kept[-settings.history :]

    def earlier(self, settings: Settings) -> list[list[Entry]]:
        """The key's earlier levels, each its last `history` runs (as a baseline is): their night-to-night drift
        is the key's as much as the baseline's (pooled_bound)."""
        return [level[-settings.history :] for level in self.levels]

    def replace(self, kept: list[Entry]) -> None:
        """A new level: the baseline is `kept` from now on, the one it replaces one of the key's earlier levels."""
        if self.kept:
            self.levels.append(self.kept)
        self.kept = kept
        self.before_speedup = []


def key_series(
    earlier: list[StoredRun], target: str, m: Measurement, emulated: bool, settings: Settings
) -> list[Entry]:
    """The key's trusted earlier measurements, oldest first: ok, not throttled, not timed while busy (a busy
    timing is not the model's alone; counts are, so a busy run's count joins: on_counts), not of a run whose lab
    place was taken from it before it ended (place_lost: its figures may have shared the board)."""
    found = []
    for run in earlier:
        for t in run.result.runs:
            if t.target != target or t.agent is None or t.place_lost is not None:
                continue
            for pm in t.agent.measurements:
                if (pm.artifact, pm.threads) != (m.artifact, m.threads) or pm.status != "ok":
                    continue
                if throttle_reason(
                    t, settings.max_temperature_c, pm
                ):  # an emulated host's heat: wall times only
                    continue
                if pm.timed_while_busy and not on_counts(pm, emulated):
                    continue
                found.append(Entry(run, target, pm, fingerprint(run, t, pm)))
    return found


def on_counts(m: Measurement, emulated: bool) -> bool:
    """The key is judged on its guest instruction count (an emulated target that counted), which the machine's
    load does not move; otherwise on a wall time, which a busy machine does (emulated wall time too: the
    emulated devices share this machine's cores with each other and everything else)."""
    return emulated and bool(m.instructions_per_invoke)


def accepted(run: StoredRun, target: str, m: Measurement) -> bool:
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


def accepted_level(
    runs: Sequence[StoredRun], target: str, m: Measurement, emulated: bool, settings: Settings
) -> int | None:
    """The run whose accepted level (`edgekit runs accept`) is still the key's baseline after the newest of `runs`
    (oldest first, its last `lookback` + 1 of `target` walked as judging walks them), None when the key has left
    it since: a fix back below it, a configuration change, a later accepted level."""
    mine = [r for r in runs if any(t.target == target for t in r.result.runs)][-(settings.lookback + 1) :]
    walk = walk_key(key_series(mine, target, m, emulated, settings), emulated, settings)
    if not walk.accepted:
        return None
    return next((e.run.id for e in reversed(walk.kept) if accepted(e.run, e.target, e.m)), None)


def walk_key(series: list[Entry], emulated: bool, settings: Settings) -> Walk:
    """Judge each earlier run of the key against the baseline of its own night, oldest first: a flagged run stays
    out of the baseline, unless
    - it was accepted (`edgekit runs accept`): the new level is the regression's nights up to it, the baseline
      of the runs after it. Whatever its verdict in this walk: the walk starts at the lookback window's oldest
      run, so a night flagged on its own night may pass once fewer runs before the regression are in the window
      (one slow night joining the baseline, the mix then flagged against its older half: a held step accepted
      on its fifth night came back for three nights five weeks later);
    - its configuration differs from the last good run's and it is the regression's first night (a change on
      a later night of it explains nothing: the regression began before it): the baseline starts again from it.
    After an accepted run, a run faster than the accepted level (departs) is held aside (`departed`); `min_runs`
    of them in a row are the new level (the baseline from then on), a run back at the accepted level drops them.
    A new level at one the key had in the window (the level before the regression: the slowdown fixed) is that
    level again: its runs at it and the departed ones are the baseline (rejoined). Alone, three departed runs
    were the baseline, whose own night-to-night bound (t at 2 degrees of freedom) passed a return to the accepted
    level at 2 % drift, and the return joined them for good.
    """
    walk = Walk([])
    for entry in series:
        verdict = judge_key(entry, walk, emulated, settings)
        if accepted(entry.run, entry.target, entry.m):
            walk.replace([*walk.held, entry])
            walk.streak, walk.held = None, []
            walk.accepted, walk.departed = True, []
            continue
        if verdict is None or isinstance(verdict, TooFewRuns):
            walk.streak, walk.held = None, []
            back = returns(entry, walk, emulated, settings) if walk.accepted else ""
            if walk.accepted and (departs(entry, walk, emulated, settings) or back == "back"):
                walk.departed.append(entry)
                # a level of its own (the baseline from now on): `min_runs` in a row, one of them clearly below
                # the accepted level (departs), the others at least back at an earlier level of the key (returns)
                last = walk.departed[-settings.min_runs :]
                if len(last) >= settings.min_runs and sum(
                    departs(e, walk, emulated, settings) for e in last
                ) >= (settings.min_runs - 1):
                    walk.replace([*rejoined(walk, emulated, settings), *walk.departed])
                    walk.departed, walk.accepted = [], False
                continue
            if back == "nearer":  # nearer an earlier level than the accepted one: neither baseline's
                continue
            if verdict is None and not walk.accepted and departs(entry, walk, emulated, settings):
                faster(entry, walk, settings)
                continue
            walk.kept.append(entry)
            walk.departed = []
            continue
        walk.departed = []
        base = walk.baseline(settings)
        if walk.streak is None and base and differs(entry.fingerprint, base[-1].fingerprint):
            walk.replace([entry])
            walk.streak, walk.held, walk.restarted = None, [], entry.run.id
            walk.accepted = False
        else:
            walk.streak = walk.streak or entry
            walk.held.append(entry)
    return walk


def faster(entry: Entry, walk: Walk, settings: Settings) -> None:
    """`entry` is faster than the walk's baseline by what would flag it slower (departs) and no level was
    accepted: a speed-up, or one fast night. Joining the baseline, one 0.7x night widened its night-to-night
    bound to 73 % (1 % drift) and a +32 % night after it passed; with a few fast nights the bound stayed wide
    for the whole lookback (review r13). With a configuration change against the last baseline run (a runtime
    upgrade) it starts the baseline again, as a slowdown with one does; otherwise it is held aside (`departed`),
    and `min_runs` such runs in a row are the new level (a speed-up the fingerprint cannot see), against which
    a later slowdown is judged; fewer are left out of the baseline."""
    base = walk.baseline(settings)
    if base and differs(entry.fingerprint, base[-1].fingerprint):
        walk.replace([entry])
        walk.departed, walk.restarted = [], entry.run.id
        return
    walk.departed.append(entry)
    if len(walk.departed) >= settings.min_runs:
        before = walk.kept
        walk.replace(walk.departed)
        walk.departed, walk.before_speedup = [], before


def lost_speedup(entry: Entry, walk: Walk, emulated: bool, settings: Settings) -> tuple[int, ...]:
    """The runs of the level a held speed-up replaced (its last `history`) when `entry`, judged slower than the
    speed-up, is back at that level: nearer it than the speed-up (in log) and above it by less than a regression
    must rise (min_change; instruction_change for a count). A return to 152 ms after three nights at 105 ms
    read as any +44.6 % slowdown, offered 'a kernel or firmware update' as its reason; () otherwise."""
    level = walk.before_speedup[-settings.history :]
    if not level:
        return ()
    if on_counts(entry.m, emulated):
        value, floor = float(entry.m.instructions_per_invoke or 0), settings.instruction_change
        old = [float(e.m.instructions_per_invoke) for e in level if e.m.instructions_per_invoke]
        fast = [
            float(e.m.instructions_per_invoke) for e in walk.baseline(settings) if e.m.instructions_per_invoke
        ]
    else:
        value, floor = med(entry.m.samples_ms), settings.min_change
        old = [med(e.m.samples_ms) for e in _timed(level, emulated)]
        fast = [med(e.m.samples_ms) for e in _timed(walk.baseline(settings), emulated)]
    if not old or not fast or value <= 0:
        return ()
    there, here = med(old), med(fast)
    back = abs(np.log(value / there)) < abs(np.log(value / here)) and value / there - 1.0 < floor
    return tuple(e.run.id for e in level) if back else ()
