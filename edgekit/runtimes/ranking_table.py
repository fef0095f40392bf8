"""The runtimes ranking shown: the terminal table and the HTML table (a rank, the runtime's fastest format within
the gates and its figure per target), the verdict lines (does the host's fastest runtime stay fastest on each ARM
target?) and the notes said under them (what '=' means, what one timed invocation covers). The ranking itself is
edgekit.runtimes.ranking's.
"""

from __future__ import annotations

from html import escape

from rich.table import Table

from edgekit.results import DeployResult
from edgekit.route import Basis
from edgekit.runtimes.ranking import HOST, RuntimeEntry, TargetRanking, host_only, rank_runtimes

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


def verdicts(rankings: list[TargetRanking]) -> list[str]:
    """'host's fastest runtime onnxruntime (onnx-int8) on pi4-emu: ranked 3 of 5; fastest there: ncnn', per ARM
    target, naming the runtime's own fastest format there where it is not the host's ('stays fastest (tflite-fp16
    there)'); a host-only reference (OpenVINO) fastest on the host hands over to the host's fastest board runtime."""
    host = next((r for r in rankings if r.target == HOST), None)
    if host is None or host.fastest is None:
        return []
    ranked_host = [e for e in host.entries if e.rank]
    board = next((e for e in ranked_host if not host_only(e.runtime)), None)
    lead = f"host's fastest runtime {host.fastest.runtime} ({host.fastest.artifact})"
    if board is not host.fastest:
        if board is None:
            return [f"{lead} is host only: no board runtime ran within the gates on the host"]
        lead = (
            f"host's fastest runtime {host.fastest.runtime} is host only; its fastest board runtime "
            f"{board.runtime} ({board.artifact}, ranked {_shown_rank(host, board)} on the host)"
        )
    other = host.tied_with(board) if board is not None else None
    pair = host.sample_pair(board, other) if board is not None and other is not None else None
    if other is not None and pair is not None:  # the host's samples do not tell the two apart
        lead += (
            f", which the host's samples do not tell apart from {other.runtime} ({other.artifact}) "
            f"({host.tie_test(pair)}),"
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
            if rank == 1:
                same += ", though " + r.tie_words(True, mine, rival)
            else:  # the runtimes table shows both '=1.': 'ranked 2 of 2; fastest there' said otherwise
                same = (
                    f"ranked {_shown_rank(r, mine)} of {ranked}{own} with {rival.runtime} ({rival.artifact}): "
                    + r.tie_words(False, mine, rival)
                )
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
        return "host only" if ranking.target != HOST and host_only(runtime) else "-"
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
        if r.basis is Basis.P50_MS and r.sample_ties:
            lines.append(f"=N on {r.target}: its timed samples do not tell these apart ({r.tie_note()})")
    return lines


def _unit(basis: Basis) -> str:
    return {
        Basis.P50_MS: "p50 ms",
        Basis.ESTIMATE_MS: "ESTIMATE ms (*interval not validated)",
        Basis.INSTRUCTIONS: "insn/invoke",
    }[basis]
