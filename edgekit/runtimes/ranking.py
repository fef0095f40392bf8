"""Runtimes compared: per target, each runtime's fastest format within the recipe's gates, the runtimes ranked,
and the host's ranking beside each ARM target's (does the host's fastest runtime stay fastest on the A72, the
A76?). Built from a DeployResult with the route's own candidates (edgekit.route), so a figure means what the
route's does: measured p50 on the host and real boards, the board estimate on pi4-emu/pi5-emu, the instruction
count on phone-emu; never an emulated wall time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from html import escape
from typing import Any

from rich.table import Table

from edgekit.formats import Format
from edgekit.results import ArtifactInfo, DeployResult, TargetRun
from edgekit.route import Basis, Candidate, recommend
from edgekit.route_deploy import candidates_for_run, route_inputs, table_threads
from edgekit.route_estimates import bounded, estimates_tied

HOST = "host"
# What one timed invocation covers, by runtime (the agent's runners' invoke): not the same scope everywhere, so a
# ranking says it under the runtimes it compares. The input is set and the outputs converted outside the timing in
# every runtime; a runtime that hands its outputs back as new arrays pays for them inside it.
TIMED_SCOPE = {
    "tflite": "Interpreter.invoke() (outputs left in the interpreter)",
    "ncnn": "a new extractor, its input and every output extracted",
    "onnxruntime": "InferenceSession.run (the input fed, the outputs copied out as new arrays)",
    "opencv": "Net.forward of every output (returned as new arrays)",
    "mnn": "Module.forward (outputs returned)",
    "openvino": "InferRequest.infer() (outputs left in the request)",
    "executorch": "Method.execute (outputs returned)",
}
EMU_HTML = '<span class="emu">emulated</span>'  # the report's own label of an emulated target


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
    # measured basis: the two fastest runtimes' tie (the first's artifact, the second's, the Mann-Whitney p: their
    # samples not told apart by the route's rank test, measured_tie); `route_tie`: the route's own tie is that pair
    sample_tie: tuple[str, str, float] | None = None
    route_tie: bool = False

    def rank_of(self, runtime: str) -> int | None:
        return next((e.rank for e in self.entries if e.runtime == runtime), None)

    @property
    def fastest(self) -> RuntimeEntry | None:
        return next((e for e in self.entries if e.rank == 1), None)

    def tied(self, a: RuntimeEntry, b: RuntimeEntry) -> bool:
        """Two ranked entries not ordered by their figures: board estimates one inside the other's 80 % interval,
        or measured samples the route's rank test does not tell apart (its tie)."""
        if self.basis is Basis.P50_MS:
            return self.sample_tie is not None and {a.artifact, b.artifact} == set(self.sample_tie[:2])
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

    def tie_test(self) -> str:
        """'Mann-Whitney p=0.55: a tie, as its route says', or where the route's own tie is another pair (its
        choice with a format of the same runtime), 'a tie by the route's rank test'."""
        p = self.sample_tie[2] if self.sample_tie else 1.0
        return f"Mann-Whitney p={p:.2f}: a tie" + (
            ", as its route says" if self.route_tie else " by the route's rank test"
        )

    def tie_words(self, first: bool, rival: RuntimeEntry) -> str:
        """What does not order an entry and the `rival` it is tied with: 'the estimates do not rank the two: ...'
        or, measured, the route's rank test; `first`: the entry is the first of the two ('it apart from X')."""
        apart = f"it apart from {rival.runtime} ({rival.artifact})"
        if self.basis is Basis.P50_MS and self.sample_tie is not None:
            return f"the samples do not tell {apart if first else 'the two apart'} ({self.tie_test()})"
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
            if runtime not in by_runtime and (run.target == HOST or not _host_only(runtime)):
                failed = any(a.status == "failed" and not a.missed_gate for a in arts)
                why = "did not convert" if failed else "not measured here"
                ranking.entries.append(RuntimeEntry(runtime, None, None, why=why))
        ranked = sorted((e for e in ranking.entries if e.artifact), key=lambda e: (e.value, e.runtime))
        for k, e in enumerate(ranked, 1):
            e.rank = k
        ranking.entries = ranked + [e for e in ranking.entries if not e.artifact]
        if basis is Basis.P50_MS:
            ranking.sample_tie = measured_tie(candidates, ranked)
            route = recommend(run.target, candidates, basis, n)
            ranking.route_tie = ranking.sample_tie is not None and (route.artifact, route.tied_with) == tuple(
                ranking.sample_tie[:2]
            )
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


def measured_tie(candidates: list[Candidate], ranked: list[RuntimeEntry]) -> tuple[str, str, float] | None:
    """The tie of the two fastest runtimes (`ranked`: first the fastest) as the route's rank test tells it
    (route._tie: at least MIN_SAMPLES each, the second not slower at TIE_P), on their own samples: the first's
    artifact, the second's and the p. 'mnn-fp32 and onnx-fp32 are not told apart by these samples (Mann-Whitney
    p=0.55)' was the route's note while the table ranked them 1 and 2. The route's runner-up was tested alone: one
    of the same runtime (onnx-fp32 under onnx-int8) hid mnn-fp32 at p=0.45, ranked 2 on the host and '=1.' on pi5."""
    if len(ranked) < 2:
        return None
    from edgekit.route import MIN_SAMPLES, TIE_P
    from edgekit.samples import slower_p_value

    samples = {c.artifact: c.samples for c in candidates}
    first, second = (samples.get(e.artifact or "", ()) for e in ranked[:2])
    if min(len(first), len(second)) < MIN_SAMPLES:
        return None
    p = slower_p_value(second, first)  # as route._tie tests the runner-up against the choice
    return (ranked[0].artifact or "", ranked[1].artifact or "", p) if p >= TIE_P else None


def verdicts(rankings: list[TargetRanking]) -> list[str]:
    """'host's fastest runtime onnxruntime (onnx-int8) on pi4-emu: ranked 3 of 5; fastest there: ncnn', per ARM
    target, naming the runtime's own fastest format there where it is not the host's ('stays fastest (tflite-fp16
    there)'); a host-only reference (OpenVINO) fastest on the host hands over to the host's fastest board runtime."""
    host = next((r for r in rankings if r.target == HOST), None)
    if host is None or host.fastest is None:
        return []
    ranked_host = [e for e in host.entries if e.rank]
    board = next((e for e in ranked_host if not _host_only(e.runtime)), None)
    lead = f"host's fastest runtime {host.fastest.runtime} ({host.fastest.artifact})"
    if board is not host.fastest:
        if board is None:
            return [f"{lead} is host only: no board runtime ran within the gates on the host"]
        lead = (
            f"host's fastest runtime {host.fastest.runtime} is host only; its fastest board runtime "
            f"{board.runtime} ({board.artifact}, ranked {_shown_rank(host, board)} on the host)"
        )
    other = host.tied_with(board) if board is not None else None
    if other is not None and host.sample_tie is not None:  # the host's own route called the two a tie
        lead += (
            f", which the host's samples do not tell apart from {other.runtime} ({other.artifact}) "
            f"({host.tie_test()}),"
        )
    lines = []
    for r in rankings:
        if r is host or r.fastest is None or board is None:
            continue
        rank = r.rank_of(board.runtime)
        ranked = sum(1 for e in r.entries if e.rank)
        entry = next((e for e in r.entries if e.runtime == board.runtime), None)
        # a runtime that did not run, did not convert or was never judged there did not fail its gates
        where = (
            f"ranked {rank} of {ranked}" if rank else (entry.why if entry and entry.why else "not measured")
        )
        where = "not within the gates" if where == "gates failed" else where
        # its own fastest format there, where it is not the host's: 'stays fastest' named tflite-int8 on pi4-emu,
        # where tflite's fastest within the gates was tflite-fp16 (tflite-int8 0.78x fp32 by count there)
        own = f" ({entry.artifact} there)" if rank and entry and entry.artifact != board.artifact else ""
        same = (
            f"stays fastest{own}"
            if rank == 1
            else f"{where}{own}; fastest there: {r.fastest.runtime} ({r.fastest.artifact})"
        )
        mine = next((e for e in r.entries if e.runtime == board.runtime and e.rank), None)
        rival = r.fastest if rank != 1 else next((e for e in r.entries if e.rank == 2), None)
        if mine is not None and rival is not None and r.tied(mine, rival):
            same += ", though " + r.tie_words(rank == 1, rival)
        note = {
            Basis.ESTIMATE_MS: " (by board estimates, * interval not validated: confirm on the board)"
            if r.not_validated
            else " (by board estimates)",
            Basis.INSTRUCTIONS: " (by guest instruction counts on the emulated core, not latency)",
            Basis.P50_MS: "",
        }[r.basis]
        lines.append(f"{lead} on {r.target}: {same}{note}")
    return lines


def runtime_table(result: DeployResult, threads: int | None = None) -> Table | None:
    """Rows: runtimes; columns: the host, then each target; a cell: rank, the runtime's fastest format within
    the gates and its figure. None when the deploy has a single runtime (nothing to compare)."""
    rankings = rank_runtimes(result, threads)
    runtimes = list(dict.fromkeys(e.runtime for r in rankings for e in r.entries))
    if len(runtimes) < 2:
        return None
    table = Table(
        title=f"{result.recipe}: runtimes, fastest format within the gates ({_threads_said(rankings)})",
        title_justify="left",
        header_style="bold",
    )
    table.add_column("runtime", no_wrap=True)
    for r in rankings:
        table.add_column(
            f"{r.target}\n{_unit(r.basis)}{_threads_of(r, rankings)}", overflow="fold", min_width=9
        )
    for runtime in runtimes:
        table.add_row(runtime, *(_cell(r, runtime) for r in rankings))
    return table


def ranked_scope_note(result: DeployResult, threads: int | None = None) -> str | None:
    """scope_note of the runtimes runtime_table ranks (None: no table), said under it: a caption would fold to the
    narrow table's width."""
    rankings = rank_runtimes(result, threads)
    runtimes = list(dict.fromkeys(e.runtime for r in rankings for e in r.entries))
    return scope_note(runtimes) if len(runtimes) >= 2 else None


def scope_note(runtimes: list[str]) -> str | None:
    """What one timed invocation of each ranked runtime covers, where it is known: the scopes differ."""
    known = [f"{rt} {TIMED_SCOPE[rt]}" for rt in runtimes if rt in TIMED_SCOPE]
    return "one timed invocation: " + "; ".join(known) if known else None


def runtime_html(result: DeployResult, targets: list[str] | None = None, threads: int | None = None) -> str:
    """The same comparison as an HTML table with the verdict lines under it ('' with a single runtime)."""
    rankings = [
        r for r in rank_runtimes(result, threads) if not targets or r.target in targets or r.target == HOST
    ]
    runtimes = list(dict.fromkeys(e.runtime for r in rankings for e in r.entries))
    if len(runtimes) < 2:
        return ""
    head = "<tr><th class=l>runtime</th>" + "".join(
        f"<th>{escape(r.target)}{EMU_HTML if r.emulated else ''}<br><span class=muted>"
        f"{escape(_unit(r.basis) + _threads_of(r, rankings))}</span></th>"
        for r in rankings
    )
    rows = "".join(
        f"<tr><td class=l>{escape(rt)}</td>"
        + "".join(f"<td>{escape(_cell(r, rt))}</td>" for r in rankings)
        + "</tr>"
        for rt in runtimes
    )
    notes = "".join(
        f"<li>{escape(line)}</li>"
        for line in [*_tie_lines(rankings), *verdicts(rankings), scope_note(runtimes)]
        if line
    )
    return f"<table>{head}</tr>{rows}</table>" + (f"<ul>{notes}</ul>" if notes else "")


def _threads_said(rankings: list[TargetRanking]) -> str:
    counts = {r.threads for r in rankings}
    return f"threads={counts.pop()}" if len(counts) == 1 else "threads: each column's own"


def _threads_of(ranking: TargetRanking, rankings: list[TargetRanking]) -> str:
    """A column's thread count where the columns differ (`--threads 2` on the host, a capped emulated target)."""
    return f", {ranking.threads} thr" if len({r.threads for r in rankings}) > 1 else ""


def _cell(ranking: TargetRanking, runtime: str) -> str:
    entry = next((e for e in ranking.entries if e.runtime == runtime), None)
    if entry is None:
        return "host only" if ranking.target != HOST and _host_only(runtime) else "-"
    if entry.artifact is None or entry.value is None:
        return entry.why or "-"
    # three significant figures on every basis, as the target tables: 0.133 M and 0.136 M both read "0.1M"
    figure = f"{entry.value / 1e6:.3g}M" if ranking.basis is Basis.INSTRUCTIONS else f"{entry.value:.3g}"
    mark = "*" if entry.artifact in ranking.not_validated else ""
    return f"{_shown_rank(ranking, entry)}. {entry.artifact} {figure}{mark}"


def _shown_rank(ranking: TargetRanking, entry: RuntimeEntry) -> str:
    """'2', or '=1' when its figure does not order it apart from the entry above it (board estimates one inside the
    other's 80 % interval; measured samples the route calls a tie), chained up the ranking; the entry above is
    then '=1' too."""
    ranked = [e for e in ranking.entries if e.rank]
    if ranking.basis is Basis.INSTRUCTIONS or entry not in ranked:  # an exact count ties nothing
        return str(entry.rank)
    k = ranked.index(entry)
    top = k
    while top > 0 and ranking.tied(ranked[top - 1], ranked[top]):
        top -= 1
    tied_below = k + 1 < len(ranked) and ranking.tied(entry, ranked[k + 1])
    return f"={ranked[top].rank}" if top < k or tied_below else str(entry.rank)


def _not_run(run: TargetRun, cands: list[Any]) -> str:
    """Why a runtime has no figure on `run` although it was asked: 'skipped: not installed' where its every
    measurement there was skipped for want of the runtime (the live line and deploy's table say so; this table said
    'did not run'), else 'did not run'."""
    mine = {c.artifact for c in cands}
    ms = [m for m in (run.agent.measurements if run.agent else []) if m.artifact in mine]
    if ms and all(m.status == "skipped" for m in ms):
        return "skipped: not installed"
    return "did not run"


def tie_note(result: DeployResult, threads: int | None = None) -> str | None:
    """What '=' in the runtimes table means, when a cell has one."""
    return "\n".join(_tie_lines(rank_runtimes(result, threads))) or None


def _tie_lines(rankings: list[TargetRanking]) -> list[str]:
    """'=N: ...' for each kind of tie the table shows: by board estimates, by a target's measured samples."""
    tied = [r for r in rankings if any(_shown_rank(r, e).startswith("=") for e in r.entries if e.rank)]
    lines = []
    if any(r.basis is Basis.ESTIMATE_MS for r in tied):
        lines.append("=N: the board estimates do not rank these apart (one lies inside the other's interval)")
    for r in tied:
        if r.basis is Basis.P50_MS and r.sample_tie is not None:
            lines.append(f"=N on {r.target}: its timed samples do not tell these apart ({r.tie_test()})")
    return lines


def _unit(basis: Basis) -> str:
    return {
        Basis.P50_MS: "p50 ms",
        Basis.ESTIMATE_MS: "ESTIMATE ms (*interval not validated)",
        Basis.INSTRUCTIONS: "insn/invoke",
    }[basis]


def _host_only(runtime: str) -> bool:
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
