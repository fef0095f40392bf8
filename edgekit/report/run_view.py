"""`edgekit runs show ID`: one stored run printed for a decision: its artifacts with fidelity, and per target the
device facts, every measurement (its status saying a missed gate and a busy machine; report/run_target.py), and the
route to ship, in the words deploy printed them (report/lines.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.table import Table
from rich.text import Text

from edgekit.report.figures import fidelity_line
from edgekit.report.lines import route_line
from edgekit.report.run_target import print_target
from edgekit.report.table import NO_INT8, SAME_MODEL, fp32_id, name_width
from edgekit.terminal import Console, plain

if TYPE_CHECKING:
    from edgekit.results import DeployResult


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
    # as deploy's: each name whole, the fidelity and a failure's error folded onto more lines, never cut
    arts.add_column("artifact", no_wrap=True, min_width=name_width(a.id for a in result.artifacts))
    for col in ("size MB", "cached", "convert s"):
        arts.add_column(col)
    arts.add_column("fidelity", overflow="fold")
    arts.add_column("gates")
    arts.add_column("status", overflow="fold")
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
    instead = not_ratios(result)
    for t in result.runs:
        print_target(console, t, verbose, missed, left_out=t.target == left_out, not_ratios=instead)
        if t.target in routes:  # the artifact to ship there, as deploy said it
            console.print(f"  route {plain(route_line(routes[t.target]))}", highlight=False)
    for target in sorted(set(routes) - {t.target for t in result.runs}):
        console.print(f"route {plain(route_line(routes[target]))}", highlight=False)


def not_ratios(result: DeployResult) -> dict[str, Text]:
    """Artifact -> what its 'x fp32' says instead of a ratio, as deploy's table (table._target_cells):
    'same model' for an artifact that is its fp32 model (same_models: a ratio of two counts of one model is
    noise), the no-int8 cell for an int8 artifact the speed plan left the fp32 model (holds_no_int8)."""
    from edgekit.same_model import holds_no_int8, same_models

    twins = {a for a, (same, _) in same_models(result.artifacts).items() if same == fp32_id(a)}
    return dict.fromkeys(holds_no_int8(result.artifacts), NO_INT8) | dict.fromkeys(twins, SAME_MODEL)
