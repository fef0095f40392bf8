"""`edgekit runs show ID`: one stored run printed for a decision: its artifacts with fidelity, and per target the
device facts, every measurement (its status saying a missed gate and a busy machine), and the route to ship, in
the words deploy printed them (report/lines.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.table import Table
from rich.text import Text

from edgekit.report.bench_table import MEMORY_NOTE, MODEL_GROWTH, PROCESS_PEAK, load_note
from edgekit.report.figures import estimated_thread_counts, fidelity_line, three_figures
from edgekit.report.lines import route_line, timing_caveats
from edgekit.report.percentiles import few_samples_note, percentile
from edgekit.report.table import NO_INT8, SAME_MODEL, count_ratio, fp32_id
from edgekit.report.table_caption import not_validated_note
from edgekit.route_rejections import not_comparable
from edgekit.terminal import Console, plain

if TYPE_CHECKING:
    from edgekit.results import DeployResult, Measurement, TargetRun

EMU = "[black on yellow] emulated [/]"


def not_ok_why(
    *,
    ok: bool,
    finished: bool,
    artifact_problems: list[str],
    failed_targets: list[str],
) -> list[str] | None:
    """Why a run is not ok, in the words `edgekit runs` says it ('ncnn-int8: gate', 'target failed', 'not
    finished': an imported result of a deploy that was killed); None for a run that is ok. The report's recipe
    heading says the same (a run that did not finish was shown as the latest with no word of it)."""
    if ok:
        return None
    why = artifact_problems[:3] + (["..."] if len(artifact_problems) > 3 else [])
    if not why and failed_targets:  # `edgekit runs` names them in its measurements column
        why = [f"target{'s' * (len(failed_targets) > 1)} failed"]
    if not why and not finished:
        why = ["not finished"]
    return why


def result_not_ok(result: DeployResult) -> str:
    """'' for an ok run; 'not ok (not finished)', 'not ok (ncnn-int8: gate)', 'interrupted (pi4)' otherwise."""
    stopped = [t.target for t in result.runs if t.interrupted]
    if stopped:
        some = stopped != [t.target for t in result.runs]
        return "interrupted" + (f" ({', '.join(stopped)})" if some else "")
    left_out = _host_left_out(result)
    why = not_ok_why(
        ok=result.ok,
        finished=result.finished_at is not None,
        artifact_problems=[
            f"{a.id}: {'gate' if a.missed_gate else 'failed'}"
            for a in result.artifacts
            if a.status != "ok" or not a.gates_passed
        ],
        failed_targets=[t.target for t in result.runs if t.status == "failed" and t.target != left_out],
    )
    if why is None:
        return ""
    return "not ok" + (f" ({', '.join(why)})" if why else "")


def _host_left_out(result: DeployResult) -> str | None:
    """The host, not measured because every device failed before measuring: no failure of its own (a host that
    measured, or failed with its agent's result, is not; the store's rule, store/read.py host_left_out)."""
    host = next((t for t in result.runs if t.target == "host"), None)
    others = [t for t in result.runs if t.target != "host"]
    skipped = host is not None and host.status == "failed" and host.agent is None
    if skipped and others and all(t.status == "failed" and t.agent is None for t in others):
        return "host"
    return None


def print_run(console: Console, run_id: int, result: DeployResult, verbose: bool = False) -> None:
    console.print(
        f"[bold]run {run_id}[/]: "
        + plain(
            f"{result.recipe} ({result.recipe_path}) started {result.started_at}, ok={result.ok}, "
            f"git {result.git_revision or '-'}, recipe sha256 {result.recipe_sha256[:12]}"
        ),
        highlight=False,
    )
    console.print(
        "tools: " + plain(", ".join(f"{k} {v}" for k, v in result.tool_versions.items())), highlight=False
    )
    arts = Table(title="artifacts")
    for col in ("artifact", "size MB", "cached", "convert s", "fidelity", "gates", "status"):
        arts.add_column(col)
    for a in result.artifacts:
        fidelity = fidelity_line(a.fidelity)  # one line, percentages rounded down (never 100 % for 99.7 %)
        arts.add_row(
            plain(a.id),
            f"{a.size_bytes / 1e6:.3g}" if a.size_bytes else "-",  # as convert: a 4 kB model is not 0.00
            "yes" if a.cached else "no",
            f"{a.convert_s:.1f}" if a.convert_s is not None else "-",
            plain(fidelity),
            "[green]passed[/]" if a.gates_passed else "[red]failed[/]",
            a.status if a.status == "ok" else f"[red]{plain(a.status)}: {plain(a.error)}[/]",
        )
    if result.artifacts:
        console.print(arts)
    missed = {a.id for a in result.artifacts if a.missed_gate}
    routes = {str(r.get("target")): r for r in result.routes}
    left_out = _host_left_out(result)
    not_ratios = _not_ratios(result)
    for t in result.runs:
        _print_target(console, t, verbose, missed, left_out=t.target == left_out, not_ratios=not_ratios)
        if t.target in routes:  # the artifact to ship there, as deploy said it
            console.print(f"  route {plain(route_line(routes[t.target]))}", highlight=False)
    for target in sorted(set(routes) - {t.target for t in result.runs}):
        console.print(f"route {plain(route_line(routes[target]))}", highlight=False)


def _not_ratios(result: DeployResult) -> dict[str, Text]:
    """Artifact -> what its 'x fp32 by insn' says instead of a ratio, as deploy's table (table._target_cells):
    'same model' for an artifact that is its fp32 model (same_models: a ratio of two counts of one model is
    noise), the no-int8 cell for an int8 artifact the speed plan left the fp32 model (holds_no_int8)."""
    from edgekit.same_model import holds_no_int8, same_models

    twins = {a for a, (same, _) in same_models(result.artifacts).items() if same == fp32_id(a)}
    return dict.fromkeys(holds_no_int8(result.artifacts), NO_INT8) | dict.fromkeys(twins, SAME_MODEL)


def _print_target(
    console: Console,
    t: TargetRun,
    verbose: bool,
    missed: set[str],
    *,
    left_out: bool = False,
    not_ratios: dict[str, Text] | None = None,
) -> None:
    """LEFT_OUT: the host skipped because every device failed before measuring: 'not measured', as `runs` says,
    not 'failed' (its status field is failed: it has no figures). `not_ratios`: _not_ratios."""
    label = f"{plain(t.target)} {EMU}" if t.emulated else plain(t.target)
    status, colour = ("not measured", "yellow") if left_out else (plain(t.status), "red")
    console.print(
        f"\n[bold]{label}[/] ({plain(t.kind)}) status {status}"
        + (" [yellow](interrupted)[/]" if t.interrupted else "")
        + (f": [{colour}]{plain(t.error)}[/]" if t.error else ""),
        highlight=False,  # rich's repr highlighter is quadratic on a long word: 50,000 characters took 28 s
    )
    if t.agent is None:
        return
    f = t.agent.facts_before
    after = t.agent.facts_after
    console.print(  # the device's own words (its CPU model, runtime versions): printed as they are
        plain(
            f"  {f.machine} {f.cpu_model or ''} x{f.cores}"
            + (f" via {f.emulator}" if f.emulator else "")
            + f", temperature {f.temperature_c if f.temperature_c is not None else '-'} -> "
            + f"{after.temperature_c if after and after.temperature_c is not None else '-'} C, throttled "
            + f"{f.throttled or '-'} -> {(after.throttled if after else None) or '-'}, runtimes "
            + ", ".join(f"{k} {v}" for k, v in f.runtimes.items())
        ),
        highlight=False,
    )
    unit = "ms, emulated wall time" if t.emulated else "ms"
    # a counted emulated target leads with its estimate and count; qemu's wall time is no device latency
    walls = verbose or not (t.emulated and any(m.instructions_per_invoke for m in t.agent.measurements))
    table = Table()
    board = next(
        (e.get("board") for e in t.estimates.values() if isinstance(e, dict) and e.get("board")), None
    )
    heads = ["artifact", "threads"]
    if board:  # an emulated target leads with the real board's estimate
        heads.append(f"{board} ESTIMATE ms (80% interval)")
    for col in (
        *heads,
        *(
            [f"p50 ({unit})", f"p90 ({unit})", "p99 (emulated)", "load ms (emulated)"]
            if walls and t.emulated
            else ["p50 (ms)", "p90 (ms)", "p99", "load ms"]
            if walls
            else []
        ),
        # emulated: the qemu process's peak, said below; its growth is the emulator's, no column
        *(["peak RSS MiB (qemu)"] if t.emulated else [PROCESS_PEAK, MODEL_GROWTH]),
        "instructions / invoke (count)",
        *(["x fp32 by insn"] if board else []),
        "samples",
        "status",
    ):
        table.add_column(col, justify="left" if col in ("artifact", "status") else "right")
    # the gates judged on this target's outputs (deploy's MISS), else the artifact's at conversion
    judged = {c.artifact: c.gates_passed for c in t.comparisons if c.reference == "onnx"}
    uncompared = {
        c.artifact for c in t.comparisons if c.reference == "onnx" and not_comparable(c.gate_failures)
    }
    for m in t.agent.measurements:
        est = [_estimate(t.estimates.get(f"{m.artifact} x{m.threads}"))] if board else []
        verdict = judged.get(m.artifact)
        gate_missed = verdict is False or (verdict is None and m.artifact in missed)
        table.add_row(
            plain(m.artifact),
            str(m.threads),
            *est,
            *(
                [_n(m.p50_ms), _n(percentile(m, "p90")), _n(percentile(m, "p99")), _n(m.load_ms)]
                if walls
                else []
            ),
            _n(m.peak_rss_mb),
            *([] if t.emulated else [_n(m.rss_delta_mb)]),
            f"{m.instructions_per_invoke:,}" if m.instructions_per_invoke else "-",
            *([_ratio_cell(t, m, (not_ratios or {}).get(m.artifact))] if board else []),
            str(len(m.samples_ms)),
            _status(m, gate_missed, t.emulated, m.artifact in uncompared),
        )
    for artifact, threads, figure in estimated_only(t) if board else []:
        ran = sorted({m.threads for m in t.agent.measurements if m.artifact == artifact})
        table.add_row(
            plain(artifact),
            str(threads),
            _estimate(figure),
            *(["-"] * (4 if walls else 0)),
            *(["-"] * (4 if t.emulated else 5)),
            f"[dim]not run: estimated from the {', '.join(map(str, ran))}-thread run's instruction counts[/]",
        )
    console.print(table)
    shown = (
        [e for e in t.estimates.values() if isinstance(e, dict) and e.get("status") == "ok"] if board else []
    )
    starred = not_validated_note(shown)  # what the '*' of an estimate means, as under deploy's table
    if starred:
        console.print(f"  [dim]{plain(starred)}[/]", highlight=False)
    said = load_note(t.agent.measurements, emulated=t.emulated) if walls else None
    if said:
        console.print(f"  [dim]{plain(said)}[/]", highlight=False)
    if not t.emulated:
        console.print(f"  [dim]{MEMORY_NOTE}[/]", highlight=False)
    few = few_samples_note(t.agent.measurements) if walls else None
    if few:
        console.print(f"  [dim]{plain(few)}[/]", highlight=False)
    for line in timing_caveats(t):  # a busy machine, more threads than cores: deploy's lines
        console.print(f"  [yellow]! {plain(line)}[/]", highlight=False)
    for caveat in t.caveats:  # the run's own (a device that is not the expected_cpu): deploy printed them
        console.print(f"  [yellow]! {plain(caveat)}[/]", highlight=False)
    if t.emulated:
        console.print(
            "  [dim]peak RSS (qemu) = the emulator process: the guest and its translated code, not the device's"
            + (
                "; emulated wall and load times (not device figures): --verbose or --json"
                if not walls
                else ""
            )
            + "[/]",
            highlight=False,
        )


def _ratio_cell(t: TargetRun, m: Measurement, instead: Text | None) -> Text | str:
    """fp32's count / this one's, or `instead` (_not_ratios) for a measurement that ran."""
    if instead is not None and m.status == "ok":
        return instead
    return count_ratio(t, m.artifact, m.threads, m) or "-"


def estimated_only(t: TargetRun) -> list[tuple[str, int, dict]]:
    """(artifact, threads, estimate) for the thread counts a capped emulated target was estimated at but did not
    run (deploy's 4-thread ESTIMATE rows from a 1-thread run's counts), in the order measured."""
    ran = {(m.artifact, m.threads) for m in (t.agent.measurements if t.agent else [])}
    order = list(dict.fromkeys(m.artifact for m in (t.agent.measurements if t.agent else [])))
    rows = [r for r in estimated_thread_counts(t.estimates) if r[0] in order and r[:2] not in ran]
    return sorted(rows, key=lambda r: (order.index(r[0]), r[1]))


def _status(m: Measurement, gate_missed: bool, emulated: bool, uncompared: bool = False) -> str:
    """'ok', or what makes the row no candidate (a failure, a missed gate: `runs` says 'no (x: gate)'; outputs not
    comparable with the ONNX model's, so no gate judged) and what makes its time doubtful (other processes busy
    while it was timed; emulated wall times are not judged)."""
    if m.status != "ok":
        return f"[red]{plain(m.status)}: {plain(m.error)}[/]"
    said = (
        "[yellow]outputs not comparable[/] (timed ok)"
        if uncompared
        else "[red]gate missed[/] (timed ok)"
        if gate_missed
        else "ok"
    )
    if m.timed_while_busy and not emulated:
        said += f"; [yellow]unreliable: other processes used {m.others_cpu_share:.0%} of CPUs while timed[/]"
    return said


def _estimate(est: object) -> str:
    if not isinstance(est, dict) or est.get("status") != "ok":
        return "-"
    mark = "" if est.get("interval_calibrated", True) else "*"
    e, lo, hi = (
        three_figures(est[k]) for k in ("estimate_ms", "low_ms", "high_ms")
    )  # as deploy: 44.4, not 44.42
    return f"~{e} ({lo}-{hi}){mark} est."


def _n(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"
