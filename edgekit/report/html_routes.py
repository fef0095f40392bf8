"""The HTML report's route history: per run (newest first) and target, the artifact to ship, its figure and
speed-ups, or why no artifact qualified, so a change of route over time shows."""

from __future__ import annotations

from html import escape
from typing import Any

from edgekit.report.figures import millions
from edgekit.report.html_facts import EMU_BADGE, history_details
from edgekit.report.view import RecipeView, when
from edgekit.route_rejections import why_no_route
from edgekit.store import StoredRun


def routes_section(view: RecipeView) -> str:
    """Per run (newest first) and target: the fastest artifact that met every gate, and what its figure is
    (measured p50, board estimate or instruction count), so a change of route over time shows."""
    head = (
        "<tr><th class=l>run</th><th class=l>target</th><th class=l>ship</th><th>figure</th>"
        "<th class=l>speed-up</th><th class=l>basis, and what the figure cannot tell</th></tr>"
    )
    rows = []
    for run in reversed(view.runs):
        routed = {r.get("target") for r in run.result.routes}
        for t in run.result.runs:  # stopped before routes were chosen: the older route below still stands
            if t.interrupted and t.target not in routed and (not view.targets or t.target in view.targets):
                rows.append(
                    f"<tr class=warn><td class=l>#{run.id} {when(run.started_ts)}</td><td class=l>"
                    f"{escape(t.target)}</td><td class=l colspan=4>interrupted (Ctrl-C or SIGTERM) before a route "
                    "was chosen: an older run's route still stands</td></tr>"
                )
        for r in run.result.routes:
            if view.targets and r.get("target") not in view.targets:
                continue  # the report's target filter
            if r.get("artifact") is None:
                rows.append(
                    f"<tr class=warn><td class=l>#{run.id} {when(run.started_ts)}</td><td class=l>"
                    f"{_target(run, r)}</td><td class=l colspan=4>{escape(why_no_route(r.get('rejected') or {}, r.get('recipe')))}"
                    "</td></tr>"
                )
                continue
            value = r.get("value") or 0.0
            figure = (
                f"{millions(value)} insn" if r.get("basis") == "instructions-emulated" else f"{value:.3g} ms"
            )
            speed = " · ".join(
                f"{r[k]:.2f}x vs {escape(str(r[a]))}"
                + (" by instruction count" if r.get("basis") == "instructions-emulated" else "")
                + (
                    f" (by estimate; {r['count_vs_fp32']:.2f}x by instruction count)"
                    if k == "speedup_vs_fp32" and r.get("count_vs_fp32")
                    else ""
                )
                for k, a in (("speedup_vs_fp32", "fp32_artifact"), ("speedup_vs_slowest", "slowest_artifact"))
                if r.get(k)
                and r.get(a) != r.get("artifact")
                and not (
                    a == "slowest_artifact"
                    and r.get(a) == r.get("fp32_artifact")
                    and r.get("speedup_vs_fp32")
                )
            )  # the slowest being fp32 printed '2.34x vs tflite-fp32 · 2.34x vs tflite-fp32'
            unranked = [  # a ratio by estimate whose other side lies inside the choice's 80 % interval
                f"vs {escape(str(r[a]))}: not ranked apart by the estimate"
                + (
                    f" ({r['count_vs_fp32']:.2f}x by instruction count)"
                    if a == "fp32_artifact" and r.get("count_vs_fp32")
                    else ""
                )
                for a in ("fp32_artifact", "slowest_artifact")
                if r.get(a) in (r.get("not_ranked_by_estimate") or [])
                and r.get(a) != r.get("artifact")
                and not (a == "slowest_artifact" and r.get(a) == r.get("fp32_artifact"))
            ]
            speed = " · ".join([*([speed] if speed else []), *unranked])
            tie = (
                f' <span class=muted title="{escape(_tie_title(r))}">&asymp; {escape(str(r["tied_with"]))}</span>'
                if r.get("tied_with")
                else ""
            )
            rows.append(
                f"<tr><td class=l>#{run.id} {when(run.started_ts)}</td><td class=l>"
                f"{_target(run, r)}</td><td class=l><b>{escape(str(r['artifact']))}</b>{tie}</td>"
                f"<td>{figure}</td><td class='l wrap'>{speed or '-'}</td>"
                f"<td class='l wrap'><span class=muted>{escape(str(r.get('basis_label', '')))}</span>"
                + "".join(f"<br>note: {escape(str(c))}" for c in r.get("caveats") or [])
                + "</td></tr>"
            )
    if not rows:
        return '<p class="muted">No route recorded yet (runs before routes were recorded).</p>'
    return history_details(rows, head)


def _target(run: StoredRun, route: dict) -> str:
    name = str(route.get("target"))
    return escape(name) + (EMU_BADGE if any(t.emulated for t in run.result.runs if t.target == name) else "")


def _tie_title(route: dict[str, Any]) -> str:
    """Why a route is marked tied: measured samples that overlap, or estimates inside each other's interval."""
    if route.get("basis") == "estimate-ms":
        return "one estimate lies inside the other's interval: the estimates do not rank the two"
    return "these samples do not tell the two apart"
