"""Runtimes compared: per target, each runtime's fastest format within the recipe's gates, the runtimes ranked,
and the host's ranking beside each ARM target's (does the host's fastest runtime stay fastest on the A72, the
A76?). Built from a DeployResult with the route's own candidates (edgekit.route), so a figure means what the
route's does: measured p50 on the host and real boards, the board estimate on pi4-emu/pi5-emu, the instruction
count on phone-emu; never an emulated wall time. Shown (tables, verdict lines, notes) by
edgekit.runtimes.ranking_table.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

from edgekit.formats import Format
from edgekit.results import ArtifactInfo, DeployResult, TargetRun
from edgekit.route import Basis, Candidate, recommend
from edgekit.route_deploy import candidates_for_run, route_inputs, table_threads
from edgekit.route_estimates import bounded, estimates_tied
from edgekit.route_rejections import NOT_TOLD_APART

HOST = "host"


@dataclass
class RuntimeEntry:
    """One runtime on one target: its fastest artifact within the gates (None: none ran within them)."""

    runtime: str
    artifact: str | None
    value: float | None
    rank: int | None = None
    why: str = ""  # when no artifact: why (gates failed, did not run)


@dataclass
class TargetRanking:
    target: str
    basis: Basis
    emulated: bool
    entries: list[RuntimeEntry] = field(
        default_factory=list
    )  # ranked first, then the runtimes without a route
    # artifacts whose estimate's interval is not validated: an uncalibrated runtime, a thread count without a
    # figure, a model outside the calibration range (results.interval_not_validated: the deploy caption says which)
    not_validated: list[str] = field(default_factory=list)
    # estimate basis: artifact -> its estimate ({estimate_ms, low_ms, high_ms}), to tell ties from ranks
    estimates: dict[str, dict[str, Any]] = field(default_factory=dict)
    threads: int = 1  # the thread count its figures are at
    # measured basis: each pair of neighbours in the ranking whose samples the route's rank test does not tell
    # apart (the faster's artifact, the slower's, the Mann-Whitney p: measured_ties), fastest pair first;
    # `route_ties`: the pairs the route itself calls a tie (its choice and each candidate it does not tell apart)
    sample_ties: list[tuple[str, str, float]] = field(default_factory=list)
    route_ties: set[tuple[str, str]] = field(default_factory=set)

    def rank_of(self, runtime: str) -> int | None:
        return next((e.rank for e in self.entries if e.runtime == runtime), None)

    @property
    def fastest(self) -> RuntimeEntry | None:
        return next((e for e in self.entries if e.rank == 1), None)

    def tied(self, a: RuntimeEntry, b: RuntimeEntry) -> bool:
        """Two ranked entries not ordered by their figures: board estimates one inside the other's 80 % interval,
        or measured samples the route's rank test does not tell apart (its tie)."""
        if self.basis is Basis.P50_MS:
            return self.sample_pair(a, b) is not None
        return estimates_tied(*(self.estimates.get(e.artifact or "") for e in (a, b)))

    def tied_with(self, entry: RuntimeEntry) -> RuntimeEntry | None:
        """The ranked entry just above or below `entry` that it is tied with (None: none)."""
        ranked = [e for e in self.entries if e.rank]
        if entry not in ranked:
            return None
        k = ranked.index(entry)
        return next(
            (e for e in ranked[max(k - 1, 0) : k + 2] if e is not entry and self.tied(entry, e)), None
        )

    def sample_pair(self, a: RuntimeEntry, b: RuntimeEntry) -> tuple[str, str, float] | None:
        """The measured tie of `a` and `b` (either order), None when their samples are told apart or untested."""
        pair = {a.artifact, b.artifact}
        return next((t for t in self.sample_ties if {t[0], t[1]} == pair), None)

    def tie_test(self, pair: tuple[str, str, float] | None = None) -> str:
        """'Mann-Whitney p=0.55: a tie, as its route says' of `pair` (None: the fastest tied pair), or where the
        route's own tie is another pair (its choice with a format of the same runtime), 'a tie by the route's
        rank test'."""
        pair = pair or (self.sample_ties[0] if self.sample_ties else None)
        p = pair[2] if pair else 1.0
        ours = pair is not None and pair[:2] in self.route_ties
        return f"Mann-Whitney p={p:.2f}: a tie" + (
            ", as its route says" if ours else " by the route's rank test"
        )

    def tie_note(self) -> str:
        """Every measured tie of the ranking, for the note under the table: the test of the one pair, or of each
        ('mnn-fp32 / onnx-fp32: Mann-Whitney p=0.55: ...; onnx-fp32 / tflite-fp32: ...')."""
        if len(self.sample_ties) == 1:
            return self.tie_test()
        return "; ".join(f"{a} / {b}: {self.tie_test((a, b, p))}" for a, b, p in self.sample_ties)

    def tie_words(self, first: bool, entry: RuntimeEntry, rival: RuntimeEntry) -> str:
        """What does not order `entry` and the `rival` it is tied with: 'the estimates do not rank the two: ...'
        or, measured, the route's rank test; `first`: the entry is the first of the two ('it apart from X')."""
        apart = f"it apart from {rival.runtime} ({rival.artifact})"
        pair = self.sample_pair(entry, rival) if self.basis is Basis.P50_MS else None
        if pair is not None:
            return f"the samples do not tell {apart if first else 'the two apart'} ({self.tie_test(pair)})"
        return (
            f"the estimates do not rank {apart if first else 'the two'}: one lies inside the other's interval"
        )


def rank_runtimes(result: DeployResult, threads: int | None = None) -> list[TargetRanking]:
    """One ranking per target run (the host first), at `threads` (None: each run's own, route.table_threads: 1
    where it measured 1 thread, else its fewest); emulated runs without counts are left out (their wall times
    rank nothing). The candidates are the route's (route_inputs): an artifact that is another's very model (an
    ncnn-int8 whose speed plan kept no layer int8) is never ranked against it, as the route never ranks it."""
    host_gates, unchecked, twins = route_inputs(result)
    rankings = []
    for run in sorted(result.runs, key=lambda r: r.target != HOST):
        n = threads if threads is not None else table_threads(run)
        basis, counting, candidates = candidates_for_run(run, host_gates, n, unchecked, twins)
        if run.emulated and not counting:
            continue
        by_runtime: dict[str, list] = {}
        for c in candidates:
            by_runtime.setdefault(_runtime(c.artifact), []).append(c)
        ranking = TargetRanking(run.target, basis, run.emulated, threads=n)
        for runtime, cands in by_runtime.items():
            best = recommend(run.target, cands, basis, n)
            ran = [c for c in cands if c.value is not None]
            usable = [c for c in ran if math.isfinite(c.value or 0.0) and (c.value or 0.0) > 0]
            why = (
                ""
                if best.artifact
                else _not_run(run, cands)
                if not ran
                else "figure unusable"  # a NaN figure ran: never 'gates failed' (route_rejections.FIGURE_UNUSABLE)
                if not usable
                else "gates not judged on the device"
                if all(not c.judged for c in usable)
                else "gates failed"
            )
            ranking.entries.append(RuntimeEntry(runtime, best.artifact, best.value, why=why))
        for runtime, arts in _runtimes_of(
            result
        ).items():  # asked for, never measured here: said, not dropped
            if runtime not in by_runtime and (run.target == HOST or not host_only(runtime)):
                failed = any(a.status == "failed" and not a.missed_gate for a in arts)
                why = "did not convert" if failed else "not measured here"
                ranking.entries.append(RuntimeEntry(runtime, None, None, why=why))
        ranked = sorted((e for e in ranking.entries if e.artifact), key=lambda e: (e.value, e.runtime))
        for k, e in enumerate(ranked, 1):
            e.rank = k
        ranking.entries = ranked + [e for e in ranking.entries if not e.artifact]
        if basis is Basis.P50_MS:
            ranking.sample_ties = measured_ties(candidates, ranked)
            route = recommend(run.target, candidates, basis, n)
            ranking.route_ties = {
                (route.artifact or "", a)
                for a, why in route.rejected.items()
                if why.startswith(NOT_TOLD_APART)
            }
        if basis is Basis.ESTIMATE_MS:
            ranking.estimates = {
                e.artifact: est for e in ranked if e.artifact and (est := bounded(run, e.artifact, n))
            }
            ranking.not_validated = [
                e.artifact
                for e in ranked
                if e.artifact
                and (run.estimates.get(f"{e.artifact} x{n}") or {}).get("interval_calibrated") is False
            ]
        rankings.append(ranking)
    return rankings


def measured_ties(candidates: list[Candidate], ranked: list[RuntimeEntry]) -> list[tuple[str, str, float]]:
    """The ties of neighbouring runtimes (`ranked`: first the fastest) as the route's rank test tells them
    (route._tie: at least MIN_SAMPLES each, the slower not slower at TIE_P), on their own samples: the faster's
    artifact, the slower's and the p, fastest pair first. 'mnn-fp32 and onnx-fp32 are not told apart by these
    samples (Mann-Whitney p=0.55)' was the route's note while the table ranked them 1 and 2. The route's runner-up
    was tested alone: one of the same runtime (onnx-fp32 under onnx-int8) hid mnn-fp32 at p=0.45, ranked 2 on the
    host and '=1.' on pi5. Only the two fastest were tested: a third runtime as close to the second was '3.'."""
    from edgekit.route import MIN_SAMPLES, TIE_P
    from edgekit.samples import slower_p_value

    samples = {c.artifact: c.samples for c in candidates}
    ties = []
    for faster, slower in itertools.pairwise(ranked):
        a, b = samples.get(faster.artifact or "", ()), samples.get(slower.artifact or "", ())
        if min(len(a), len(b)) < MIN_SAMPLES:
            continue
        p = slower_p_value(b, a)  # as route._tie tests a slower candidate against the choice
        if p >= TIE_P:
            ties.append((faster.artifact or "", slower.artifact or "", p))
    return ties


def _not_run(run: TargetRun, cands: list[Any]) -> str:
    """Why a runtime has no figure on `run` although it was asked: 'skipped: not installed' where its every
    measurement there was skipped for want of the runtime (the live line and deploy's table say so; this table said
    'did not run'), else 'did not run'."""
    mine = {c.artifact for c in cands}
    ms = [m for m in (run.agent.measurements if run.agent else []) if m.artifact in mine]
    if ms and all(m.status == "skipped" for m in ms):
        return "skipped: not installed"
    return "did not run"


def host_only(runtime: str) -> bool:
    from edgekit.runtimes import all_specs

    return any(s.runtime.value == runtime and s.host_only for s in all_specs())


def _runtimes_of(result: DeployResult) -> dict[str, list[ArtifactInfo]]:
    """The deploy's artifacts by runtime (the recipe's formats, converted or not)."""
    by: dict[str, list[ArtifactInfo]] = {}
    for art in result.artifacts:
        by.setdefault(_runtime(art.format), []).append(art)
    return by


def _runtime(artifact: str) -> str:
    try:
        return Format(artifact).runtime.value
    except ValueError:  # a user's file named as it is
        return artifact
