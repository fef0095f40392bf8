"""Terminal tables (rich) for `edgekit deploy` (the `edgekit bench` table is report/bench_table.py).

One row per artifact and thread count; per real target: p50 / p90 and the speed-up over the same runtime's fp32
on the same target and thread count; per emulated target: the estimated board latency with its interval and the
instruction-count ratio (a counting device), or labelled emulated wall times (counting off); then the output
drift from the host CPU, and whether the recipe's fidelity gates held on that target. Emulated wall times are
never shown as device latency nor coloured as a win: qemu runs about 600 times slower, with distorted ratios.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable

from rich.console import Group
from rich.table import Table
from rich.text import Text

from edgekit.formats import Format
from edgekit.report.figures import (
    agreement,
    cosine_text,
    judged_on,
    millions,
    percent,
    task_metric,
)
from edgekit.report.percentiles import percentile
from edgekit.report.table_caption import caption, counted, interval_words
from edgekit.results import (
    Comparison,
    DeployResult,
    Measurement,
    TargetRun,
    unchecked_gates,
)
from edgekit.route_rejections import not_comparable
from edgekit.runtimes import host_only_artifact
from edgekit.same_model import holds_no_int8, no_int8_note, same_models

HOST = "host"


DRIFT_NOTE = (  # under the tables when a 'drift vs host' column is shown: 3.5e+00 in pixels is not alarming
    "drift vs host: largest absolute difference (in the output's own units) / cosine between this target's "
    "outputs and the host's on the same inputs"
)
SAME_MODEL = Text(
    "same model", style="dim"
)  # the 'x fp32' of an artifact that is its fp32 model (same_models)
# the 'x fp32' of an int8 artifact that holds no int8 layer (same_model.holds_no_int8) and has no twin in the deploy:
# the recipe had no fp32 format to call it the same model as; the note under the tables says what it is
NO_INT8 = Text("no int8 layer", style="yellow")


def deploy_table(result: DeployResult, verbose: bool = False) -> Group:
    """The conversions (size, fidelity vs ONNX), then one table per target, stacked: each fits from 80 columns
    up (cells fold rather than vanish). A real board or the host shows measured p50 / p90 and speed-ups; an
    emulated target the estimated board latency with its cross-validated interval and ratios by instruction
    count; its emulated wall time only with `verbose` (not device latency; the JSON always has it)."""
    runs = sorted(result.runs, key=lambda r: r.target == HOST)  # devices first, the host last
    conversions = Table(title=f"{result.recipe}: artifacts", title_justify="left", header_style="bold")
    conversions.add_column("artifact", no_wrap=True, min_width=name_width(a.id for a in result.artifacts))
    conversions.add_column("MB (10^6 B)", justify="right")
    conversions.add_column("fidelity vs ONNX (convert)", justify="right", overflow="fold")
    for art in result.artifacts:
        size = (
            f"{art.size_bytes / 1e6:.3g}" if art.size_bytes else "-"
        )  # as convert; a failed one has no files
        conversions.add_row(art.id, size, _fidelity(art))
    parts: list[Table | Text] = [conversions]
    twins = {a: same for a, (same, _) in same_models(result.artifacts).items()}  # one model: no speed-up
    no_int8 = holds_no_int8(result.artifacts)  # an ncnn-int8 the speed plan left the fp32 model: said
    drifts = False
    for run in runs:
        drift = compared_with_host(run)
        drifts = drifts or drift
        table = target_table(
            f"{result.recipe} on {run.target}" + (" (emulated)" if run.emulated else ""),
            [a.id for a in result.artifacts],
            _target_headers(run, verbose, drift),
        )
        estimated = {int(k.rsplit(" x", 1)[1]) for k in run.estimates if k.rsplit(" x", 1)[-1].isdigit()}
        ran = set((run.benchmark or result.benchmark).get("threads") or [1])  # its own plan (a cap applied)
        for art in result.artifacts:  # an emulated run's plan is capped (1 thread); its estimates are not
            for threads in sorted(ran | estimated):
                table.add_row(
                    art.id,
                    str(threads),
                    *_target_cells(
                        run,
                        art.id,
                        threads,
                        verbose,
                        art.fidelity.get("samples"),
                        drift,
                        art.fidelity.get("gates"),
                        twins.get(art.id),
                        art.id in no_int8,
                    ),
                )
        parts.append(table)
    if no_int8:  # an int8 name on the fp32 model: said in words, a cached conversion printing no finding
        parts.append(
            Text("\n".join(no_int8_note(a.id) for a in result.artifacts if a.id in no_int8), style="yellow")
        )
    from edgekit.runtimes.ranking_table import (  # the runtimes side by side (a deploy of several)
        ranked_scope_note,
        runtime_table,
        tie_note,
    )

    ranked = runtime_table(result)
    if ranked is not None:  # with what one timed invocation covers in each: not the same work
        notes = filter(None, [tie_note(result), ranked_scope_note(result)])
        parts += [ranked, Text("\n".join(notes), style="dim")]
    parts.append(Text(caption(result, runs) + (f"\n{DRIFT_NOTE}" if drifts else ""), style="dim"))
    return Group(*parts)


def target_table(
    title: str | None, artifacts: Iterable[str], headers: Iterable[str], left: Collection[str] = ()
) -> Table:
    """One target's table in deploy's layout, which reads from 80 columns up: the artifact's name whole (its column
    as wide as the longest name: never 'tflite-dyna…'), the thread count, then one column per header, each at least
    5 wide and folding a long cell onto more lines rather than cutting it; right-aligned figures, `left` words
    (a status). `edgekit runs show` prints a stored run's targets in it too."""
    table = Table(title=title, title_justify="left", header_style="bold")
    table.add_column("artifact", no_wrap=True, min_width=name_width(artifacts))
    table.add_column("thr", justify="right", min_width=3)
    for header in headers:
        table.add_column(header, justify="left" if header in left else "right", overflow="fold", min_width=5)
    return table


def name_width(artifacts: Iterable[str]) -> int:
    """The artifact column's width: its longest name (rich cut a name the table had no room for), 11 at least and
    24 at most (every format's id fits; a stored name of any length from a file must not widen every table)."""
    return min(24, max([11, *(len(a) for a in artifacts)]))


def compared_with_host(run: TargetRun) -> bool:
    """A target whose outputs were compared with the host's: its table has a 'drift vs host' column (--no-host
    and the host itself: none)."""
    return run.target != HOST and any(c.reference == HOST for c in run.comparisons)


def _target_headers(run: TargetRun, verbose: bool, drift: bool = True) -> list[str]:
    """Column headers of one target's table (its name is in the title)."""
    if not run.emulated:
        heads = ["p50 / p90\nms", "x fp32"]
    elif counted(run):
        heads = []
        if run.estimates:
            board = next((e.get("board") for e in run.estimates.values() if isinstance(e, dict)), "board")
            heads.append(f"{board} ESTIMATE\nms ({interval_words(run.estimates.values())})")
        heads += ["x fp32\nby insn", "insn/invoke\n(count)"]
        if verbose:
            heads.append("p50 emulated\nwall ms")
    else:
        heads = ["p50 / p90\nemulated ms", "x fp32\nemulated"]
    if drift:
        heads.append("drift vs host\nmax|d| / cos")
    heads.append("gates")
    return heads


# --- cells --------------------------------------------------------------------------------------------------------
def _target_cells(
    run: TargetRun,
    artifact: str,
    threads: int,
    verbose: bool = False,
    evaluation_inputs: int | None = None,
    drift: bool = True,
    gates: dict | None = None,
    twin: str | None = None,
    no_int8: bool = False,
) -> list[Text | str]:
    """One row's cells; `twin`: the artifact this one is the very same model as (same_model.same_models): its
    'x fp32' over that one is 'same model', never a ratio of two timings of one model; `no_int8`: an int8
    artifact that holds no int8 layer (same_model.holds_no_int8), its 'x fp32' NO_INT8 where no twin says it."""
    m = _measurement(run, artifact, threads)
    ran = m is not None and m.status == "ok"
    same = twin is not None and twin == fp32_id(artifact) and ran
    said = SAME_MODEL if same else NO_INT8 if no_int8 and ran else None
    cells: list[Text | str] = []
    missing: Text | None = None
    # its runtime is not installed on the device (the target's error under the table says which, and the fix),
    # at this thread count or at the one a capped plan ran (its other rows are estimates from that run)
    skipped = any(
        k.artifact == artifact and k.status == "skipped"
        for k in (run.agent.measurements if run.agent else [])
    )
    if m is None and run.target != HOST and host_only_artifact(artifact):
        missing = Text("host only: not sent to boards", style="dim")
    elif (m is None or m.status == "skipped") and skipped:
        missing = Text("skipped", style="yellow")
    elif m is None:
        missing = Text(run.status if run.status == "failed" else "-", style="red" if run.error else "dim")
    elif m.status != "ok":
        missing = Text("failed", style="red")
    if run.emulated and counted(run):
        if run.estimates:
            est = run.estimates.get(f"{artifact} x{threads}")
            # not 'n/a' (dim: reads as not applicable) for a measurement that failed or never ran: the row says so
            if est and not ((skipped or missing is not None) and estimate_text(est) is None):
                cells.append(estimate_cell(est))
            else:
                cells.append(missing or Text("-", style="dim"))
        # no estimate column (phone-emu): why there is no count is said in the first cell, not left blank
        cells.append(
            missing
            if missing is not None and not run.estimates
            else said or count_ratio(run, artifact, threads, m)
        )
        count = m.instructions_per_invoke if m is not None else None
        cells.append(millions(count) if count else "")
        if verbose:
            cells.append(_ms(m.p50_ms) if m is not None and m.status == "ok" else "")
    else:
        cells.append(
            missing
            or Text(
                f"{_ms(m.p50_ms)} / {_ms(percentile(m, 'p90'))}"  # type: ignore[union-attr,arg-type]
                + (" emulated" if run.emulated else "")
            )
        )
        cells.append(said or speedup(run, artifact, threads, m))
    if drift:
        cells.append(drift_cell(comparison(run, artifact, "host")))
    cells.append(_gate(comparison(run, artifact, "onnx"), evaluation_inputs, gates))
    return cells


def estimate_text(est: dict) -> str | None:
    """'~12.3 (9.8-15.6)', with '*' where the interval is not validated for the artifact (explained in the
    caption); None when there is no estimate. The one wording of an estimate in tables and summaries."""
    if est.get("status") != "ok" or not isinstance(est.get("estimate_ms"), (int, float)):
        return None
    mark = "" if est.get("interval_calibrated", True) else "*"
    return f"~{_ms(est['estimate_ms'])} ({_ms(est['low_ms'])}-{_ms(est['high_ms'])}){mark}"


def estimate_cell(est: dict) -> Text | str:
    """An estimate, never styled like a measurement."""
    text = estimate_text(est)
    return Text("n/a", style="dim") if text is None else Text(text, style="italic")


def count_ratio(run: TargetRun, artifact: str, threads: int, m: Measurement | None) -> Text | str:
    """fp32's instruction count / this artifact's: exact, but instructions are not cycles (an int8 or fp16
    instruction does more work), so never coloured like a measured speed-up."""
    if m is None or m.status != "ok" or not m.instructions_per_invoke:
        return ""
    base = _fp32_of(run, artifact, threads)
    if isinstance(base, Text) or base is None or not base.instructions_per_invoke:
        return base if isinstance(base, Text) else ""
    return f"{base.instructions_per_invoke / m.instructions_per_invoke:.2f}x"


def speedup(run: TargetRun, artifact: str, threads: int, m: Measurement | None) -> Text | str:
    """The same runtime's fp32 p50 / this one's ('x fp32'): coloured as a win or a loss on a real target only."""
    if m is None or m.status != "ok" or not m.p50_ms:
        return ""
    base = _fp32_of(run, artifact, threads)
    if isinstance(base, Text) or base is None or base.status != "ok" or not base.p50_ms:
        return base if isinstance(base, Text) else ""
    ratio = base.p50_ms / m.p50_ms
    if run.emulated:  # emulated wall-time ratios are distorted: shown, never coloured as a win
        return f"{ratio:.2f}x"
    return Text(f"{ratio:.2f}x", style="green" if ratio > 1.05 else ("red" if ratio < 0.95 else ""))


def fp32_id(artifact: str) -> str | None:
    try:
        return Format(artifact).fp32_reference.value
    except ValueError:
        return None


def _fp32_of(run: TargetRun, artifact: str, threads: int) -> Measurement | Text | None:
    """The same runtime's fp32 measurement at the same threads; a dim 'base' for fp32 itself; None if unknown."""
    try:
        base_id = Format(artifact).fp32_reference.value
    except ValueError:
        return None
    if base_id == artifact:
        return Text("base", style="dim")
    return _measurement(run, base_id, threads)


def drift_cell(c: Comparison | None) -> Text | str:
    if c is None:
        return ""
    if math.isnan(c.cosine):
        return Text("n/a", style="red")
    text = f"{c.max_abs_error:.1e} / {cosine_text(c.cosine, 6)}"
    if c.top1_agreement is not None and c.top1_agreement < 1.0:
        text += f" agree {percent(c.top1_agreement)}"
    if c.box_match is not None and c.box_match < 1.0:
        text += f" boxes {percent(c.box_match)}"
    return Text(text, style="yellow" if c.max_abs_error > 1e-3 else "")


def _gate(
    c: Comparison | None, evaluation_inputs: int | None = None, gates: dict | None = None
) -> Text | str:
    """'ok on 8 inputs'; 'ok on 4 of 100 inputs' when the target ran fewer inputs (a per-target cap); 'not
    checked: max_top1_drop (no top1_drop: needs labels)' where a gate the recipe set could not be judged (the
    conversion's `gates` record): never 'ok', though none was missed."""
    if c is None:
        return ""
    on = judged_on(c.samples, evaluation_inputs)
    unchecked = unchecked_gates(gates)
    if c.gates_passed and unchecked:
        rest = f"; the rest ok {on}".rstrip() if (gates or {}).get("checks") else ""
        return Text(f"not checked: {'; '.join(unchecked)}{rest}", style="yellow")
    if c.gates_passed:
        return Text(f"ok {on}".rstrip(), style="green" if not on.count(" of ") else "yellow")
    if not_comparable(c.gate_failures):  # no gate judged, none missed: why is in the lines under the tables
        return Text("not comparable", style="yellow")
    return Text(f"MISS {on}".rstrip(), style="bold red")


def _fidelity(art: object) -> Text | str:
    fid = getattr(art, "fidelity", {}) or {}
    if getattr(art, "status", "ok") != "ok" and not fid:
        return Text("conversion failed", style="red")
    cos = fid.get("cosine")
    text = f"cos {cosine_text(cos, 5)}" if isinstance(cos, (int, float)) else "-"
    text += "".join(f" {part}" for part in (task_metric(fid), agreement(fid)) if part)
    passed = getattr(art, "gates_passed", False)
    if passed and unchecked_gates(fid.get("gates")):  # none missed, one never judged: no pass either
        return Text(text + " gate not checked", style="yellow")
    return Text(text + ("" if passed else " MISS"), style="" if passed else "red")


def _measurement(run: TargetRun, artifact: str, threads: int) -> Measurement | None:
    for m in run.agent.measurements if run.agent else []:
        if m.artifact == artifact and m.threads == threads:
            return m
    return None


def comparison(run: TargetRun, artifact: str, reference: str) -> Comparison | None:
    return next((c for c in run.comparisons if c.artifact == artifact and c.reference == reference), None)


def _ms(value: float | None, emulated: bool = False) -> str:
    if value is None:
        return "-"
    text = f"{value:.3g}" if value < 100 else f"{value:.0f}"
    return text + (" emulated" if emulated else "")
