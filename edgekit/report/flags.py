"""Regression flags as plain data: what a judgement says (FlagKind, Flag, Unjudged, Judgement) and the
thresholds it is judged with (Settings). The report and `edgekit nightly` read them; regression.py makes them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum


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
    first_run: bool = False  # a failure or missed gate of a key no earlier run has: nothing regressed from
    # the --min-change a latency flag was judged with: `runs accept` re-judges the run with it (flag_text.py)
    min_change: float = Settings.min_change
    # a host flag of another machine than the newest run's host (a store shared by several): which one, as the
    # latest table names it ('host (AMD EPYC, 2 cores) run #12'); '' otherwise (regression.judge_current)
    host_label: str = ""
    # a regression on the night its configuration changed (the report's "Changed since ..." explains it): the
    # baseline starts again from it on its own, so no `runs accept` is offered (flag_text.accept_commands)
    explained: bool = False
    # a return to the level a held speed-up replaced: that level's runs (baseline_runs are the speed-up's);
    # said as the speed-up lost (flag_text), with no kernel or board swap offered as its reason
    lost_speedup: tuple[int, ...] = ()

    @property
    def kind_label(self) -> str:
        """The flag's kind in a report's words: an emulated target's wall time (one that did not count: qemu on
        this machine's shared cores) is 'emulated wall time', never 'latency', which is a device's (review r13)."""
        if self.emulated and self.kind is FlagKind.LATENCY:
            return "emulated wall time"
        return self.kind.value

    @property
    def where(self) -> str:
        """The flag's target as the report names it: the host's machine and run when it is another's."""
        return self.host_label or self.target or ""

    @property
    def against(self) -> str:
        """What a judged figure's old value is: 'vs runs #1-#5 (pooled median)' (baseline_words)."""
        return baseline_words(self.kind, self.baseline_runs)

    @property
    def speedup_lost(self) -> str:
        """'back at the level of runs #1-#8 (the speed-up of runs #9-#11 is gone)'; '' for other flags."""
        return speedup_lost_words(self.lost_speedup, self.baseline_runs)

    @property
    def is_bad(self) -> bool:
        """Worth failing for: a regression or a failure (unreliable runs are worth a look only)."""
        return self.kind is not FlagKind.UNRELIABLE

    @property
    def is_regression(self) -> bool:
        """Worse than it was: not an unreliable run, nor a failure of something never run before (a recipe's
        first night that fails was counted as "6 regressions")."""
        return self.is_bad and not self.first_run

    @property
    def is_failure(self) -> bool:
        """A failure or missed gate with no earlier run to have regressed from."""
        return self.is_bad and self.first_run


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
    what: str = "latency"  # or "instructions": a count at several threads, judged against its run-to-run spread; or  # "count": an emulated target's first counted run, whose earlier runs counted nothing
    # the host's machine ('AMD EPYC, 2 cores'; '' on other targets or not recorded): a store several machines
    # record into shows a host per machine, and 'on host' did not say which one lacked history (review r13)
    machine: str = ""


@dataclass
class Judgement:
    flags: list[Flag]
    unjudged: list[Unjudged]
    judged: int = 0  # timings (latency or instruction-count keys) judged against their history
    unreliable: int = 0  # timings not judged as unreliable: timed while busy, on a throttled or taken board
    # regressions nobody accepted whose runs before them left the lookback: their level is the baseline now
    aged_out: list[str] = field(default_factory=list)


def threads_text(n: int) -> str:
    """'1 thread', '4 threads' ('x1' read like a speed-up factor)."""
    return f"{n} thread{'s' if n != 1 else ''}"


def baseline_words(kind: FlagKind, ids: Sequence[int]) -> str:
    """'vs runs #1-#5 (pooled median)': the runs a latency or instruction-count verdict compared with and what
    its old figure is of them (a latency's: the median of their samples pooled; a count's: the median of their
    counts). A flag said '0.00645 -> 0.009489 ms' and never what 0.00645 was. '' for other kinds."""
    if not ids or kind not in (FlagKind.LATENCY, FlagKind.INSTRUCTIONS):
        return ""
    how = "pooled median" if kind is FlagKind.LATENCY else "median count"
    return f"vs {runs_text(ids)} ({how})"


def speedup_lost_words(level: Sequence[int], speedup: Sequence[int]) -> str:
    """A return to the level a held speed-up replaced, in a flag's words; '' when `level` is empty."""
    if not level:
        return ""
    return f"back at the level of {runs_text(level)} (the speed-up of {runs_text(speedup)} is gone)"


def runs_text(ids: Sequence[int]) -> str:
    """'run #4', 'runs #1-#5' (consecutive), 'runs #2, #5, #9', or '12 runs, #3 to #40' (a store several recipes
    record into numbers one recipe's runs apart)."""
    ids = list(dict.fromkeys(ids))
    if len(ids) == 1:
        return f"run #{ids[0]}"
    if ids == list(range(ids[0], ids[0] + len(ids))):
        return f"runs #{ids[0]}-#{ids[-1]}"
    if len(ids) <= 4:
        return "runs " + ", ".join(f"#{i}" for i in ids)
    return f"{len(ids)} runs, #{ids[0]} to #{ids[-1]}"


def failures_text(n: int) -> str:
    """'2 failed (no earlier run)': failures and missed gates of what no earlier run had (counted apart from
    regressions: nothing regressed)."""
    return f"{n} failed (no earlier run)"
