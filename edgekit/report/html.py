"""The HTML report: one self-contained file (inline CSS, inline SVG plots, no scripts, no network).

Layout per recipe: flags first (what needs attention), then the latest table and the route per target, then
the plots (trend, distribution of the newest samples, precisions vs fp32: per target a grid of panels that
reflows from 1400 px to a 390 px phone; the conversion's fidelity once), then the device facts of every run.
Checked in headless Chromium at 1400, 900 and 390 px by tests/test_report_screenshots.py.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from html import escape

from edgekit.report import plots, trend_plots
from edgekit.report.figures import same_precision
from edgekit.report.flag_text import accept_commands, accept_why
from edgekit.report.flags import failures_text
from edgekit.report.html_facts import facts_section
from edgekit.report.html_latest import emu_badge, latest_table, number, pct
from edgekit.report.html_routes import routes_section
from edgekit.report.panels import PRECISION_COLOURS, Panel, colour_hex
from edgekit.report.regression import Flag, FlagKind
from edgekit.report.run_view import result_not_ok
from edgekit.report.view import RecipeView, Report, when
from edgekit.results import DeployResult
from edgekit.store.masked import masked_text
from edgekit.terminal import printable

# what the page shows for an emulated target: tables and routes never show qemu's wall time as a figure
EMULATED_BANNER = (
    'Targets marked <span class="emu">emulated</span> ran under qemu on this machine: their tables and routes show '
    "the real board's latency estimated from exact instruction counts (an ESTIMATE, not a measurement), or the "
    "counts themselves where no board is calibrated for the core; so do their plots where the estimates exist "
    "(over time, and with their intervals). qemu's wall time is no device latency: it is drawn only in the plots marked EMULATED (and kept in a "
    "table cell's tooltip). Instruction counts are guest "
    "instructions per invoke, not time; x fp32 by insn = the same runtime's fp32 count / the artifact's (above 1: "
    "fewer instructions)."
)

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1400px;
 padding:16px 24px;color:#1d232a;background:#fff}
h1{margin:0 0 4px} h2{border-bottom:2px solid #d0d7de;padding-bottom:4px;margin-top:36px}
h3{margin:22px 0 8px;color:#3b4550}
table{border-collapse:collapse;margin:6px 0 12px;font-size:13px;display:block;overflow-x:auto;max-width:100%}
th,td{border:1px solid #d0d7de;padding:3px 8px;text-align:right;vertical-align:top}
th{background:#f3f5f7} td.l,th.l{text-align:left} td{white-space:nowrap} td.wrap{white-space:normal}
/* may break lines, with no minimum width: only where the table would not fit its box (a 1280 px laptop) */
td.brk{white-space:normal}
.emu{display:inline-block;background:#fff3cd;color:#7a5a00;border:1px solid #e5c76b;border-radius:3px;
 font-size:11px;padding:0 4px;margin-left:4px}
.bad{background:#ffe3e3} .warn{background:#fff6d6} .ok{color:#1a7f37} .muted{color:#6b7785}
.badge{display:inline-block;border-radius:10px;padding:1px 10px;margin-right:6px;font-weight:600}
.badge.bad{background:#d1242f;color:#fff} .badge.warn{background:#bf8700;color:#fff}
.badge.ok{background:#1a7f37;color:#fff}
h4{margin:14px 0 4px;font-size:14px}
code{overflow-wrap:anywhere}
.plots{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(100%,400px),1fr));gap:8px 20px}
figure{margin:0 0 10px;min-width:0} figure svg{display:block;width:100%;max-width:480px;height:auto}
figcaption{font-size:13px;margin:0 0 2px} figure.nodata{border:1px dashed #d0d7de;padding:8px;color:#6b7785}
.legend{font-size:12px;margin:2px 0 6px} .key{display:inline-block;margin-right:12px;white-space:nowrap}
.key i{display:inline-block;width:11px;height:11px;margin-right:4px;vertical-align:-1px;border-radius:2px}
.key i.ring{border:2px solid red;border-radius:50%;width:8px;height:8px;background:none}
.key i.hollow{border:2px solid #888;border-radius:50%;width:6px;height:6px;background:#fff}
.key i.accepted{border:2px solid #006d2c;border-radius:0;width:6px;height:6px;background:none;transform:rotate(45deg)}
td.wrap{min-width:14em}
details summary{cursor:pointer;color:#0969da}
td.est{white-space:normal;min-width:11em;max-width:22em} th{white-space:normal}
table.latest td.wrap{min-width:10em;max-width:28em}
table.latest td:first-child,table.flags td[data-label=target]{white-space:normal;overflow-wrap:anywhere;min-width:8em;max-width:12em}
/* a 128-character target name ran past a phone's screen: flag detail, not-judged box, headings, routes */
table.flags td.wrap,h2,h3,h4,p,li,figcaption{overflow-wrap:anywhere}
@media (max-width:600px){body{padding:10px 12px} h2{margin-top:24px} table{font-size:12px}}
@media (max-width:1100px){table.flags,table.flags tbody,table.flags tr,table.flags td{display:block;width:auto}
 table.flags tr:first-child{display:none} table.flags tr{border:1px solid #d0d7de;margin:0 0 6px}
 table.flags td{display:inline-block;border:0;text-align:left;white-space:normal;padding:1px 8px}
 table.flags td.wrap{display:block} table.flags td[data-label=target]{max-width:none}
 table.flags td[data-label]::before{content:attr(data-label) ": ";font-weight:600}}
"""


def render(report: Report) -> str:
    """The whole report as one HTML string."""
    parts = [_header(report)]
    if report.failed_deploys:  # a recipe that did not deploy has no run to show below: said first
        items = "".join(
            f"<li><code>{escape(recipe)}</code>: {escape(masked_text(why))}</li>"
            for recipe, why in report.failed_deploys.items()
        )
        parts.append(f'<section><h2 class="bad">Deploys that failed</h2><ul>{items}</ul></section>')
    if report.not_reached:
        items = "".join(f"<li><code>{escape(recipe)}</code></li>" for recipe in report.not_reached)
        parts.append(f"<section><h2>Not run (the night was interrupted)</h2><ul>{items}</ul></section>")
    if report.unreadable:
        parts.append(f'<p class="bad">{escape(report.unreadable)}</p>')
    elif not report.recipes:
        parts.append("<p>No runs in the store for this selection.</p>")
        if report.empty_hint:
            parts.append(f"<p>{escape(report.empty_hint)}</p>")
    parts += [_recipe(view, report.store_url) for view in report.recipes]
    # a control character in stored text (an error, a device's CPU model) as its escape (`\\x1b`), wherever on
    # the page it is: `cat report.html` set the terminal's title and cleared its screen
    body = printable("\n".join(parts))
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1"><title>edgekit report</title>'
        f"<style>{CSS}</style></head><body>\n{body}\n</body></html>\n"
    )


def _header(report: Report) -> str:
    regressions, unreliable = len(report.regressions), len(report.unreliable)
    # a green '0 regressions' where nothing was judged (the Markdown headline's words: markdown.verdict)
    unjudged = (
        ""
        if regressions
        else "regressions not judged (the store could not be read)"
        if report.unreadable
        else f"nothing judged: {report.timings_not_judged}"
        if report.timings_not_judged
        else ""
        if report.recipes
        else "no runs to judge"
    )
    badges = (
        f'<span class="badge warn">{escape(unjudged)}</span>'
        if unjudged
        else f'<span class="badge {"bad" if regressions else "ok"}">{regressions} regression'
        f"{'s' if regressions != 1 else ''}</span>"
    )
    if report.failures:
        badges += f'<span class="badge bad">{escape(failures_text(len(report.failures)))}</span>'
    if unreliable:
        badges += f'<span class="badge warn">{unreliable} unreliable</span>'
    if report.failed_deploys:
        failed = len(report.failed_deploys)
        badges += f'<span class="badge bad">{failed} deploy{"s" if failed != 1 else ""} failed</span>'
    if report.interrupted:
        badges += '<span class="badge warn">interrupted: not everything was run</span>'
    if report.unjudged:
        badges += (
            f'<span class="badge warn">{report.unjudged_what} not judged: {len(report.unjudged)} without enough '
            "history</span>"
        )
    window = f"since {when(report.since)} UTC" if report.since else "all history"
    nav = " · ".join(f'<a href="#{_anchor(v.recipe)}">{escape(v.recipe)}</a>' for v in report.recipes)
    return (
        f"<header><h1>edgekit report</h1><p>{badges} generated {escape(report.generated_at)}, {window}, "
        f"store <code>{escape(home(report.store_url))}</code></p><p>{nav}</p>"
        f'<p class="muted">{EMULATED_BANNER}</p></header>'
    )


def _recipe(view: RecipeView, store_url: str) -> str:
    latest = view.latest.result
    parts = [
        f'<section id="{_anchor(view.recipe)}"><h2>{escape(view.recipe)}</h2>',
        f"<p>latest run <b>#{view.latest.id}</b> at {when(view.latest.started_ts)} UTC{_state(latest)}, "
        f"{len(view.runs)} run{'s' if len(view.runs) != 1 else ''} shown; recipe "
        f"<code>{escape(home(latest.recipe_path))}</code> sha256 <code>{escape(latest.recipe_sha256[:12])}</code>, "
        f"git <code>{escape((latest.git_revision or '-')[:12])}</code></p>",
        "<h3>Flags</h3>",
        _flags(view.flags, [*view.not_judged(), *view.aged_out], store_url),
        *(f"<p>{escape(a.line())}</p>" for a in view.accepted()),
        _changes(view.changes, view.changes_against),
        "<h3>Latest results</h3>",
        latest_table(view.rows),
        "<h3>Route to ship, per target</h3>",
        routes_section(view),
    ]
    from edgekit.runtimes.ranking_table import (
        runtime_html,
    )  # each runtime's best within the gates, per target

    if ranking := runtime_html(latest, view.targets):
        at = parts.index("<h3>Route to ship, per target</h3>")
        parts[at:at] = [f"<h3>Runtimes compared (run #{view.latest.id}){_compared(view)}</h3>", ranking]
    parts += _plots(view)
    parts += ["<h3>Device facts</h3>", facts_section(view), "</section>"]
    return "\n".join(parts)


def _state(result: DeployResult) -> str:
    """', <span class=bad>not ok (not finished)</span>' for a latest run that is not ok, as `edgekit runs` says
    (an imported run of a killed deploy was shown as the latest with no word of it)."""
    state = result_not_ok(result)
    return f', <span class="bad">{escape(state)}</span>' if state else ""


def _compared(view: RecipeView) -> str:
    """': host (x86_64) vs pi4-emu (aarch64, emulated)': the targets the runtime table compares and the machines
    they ran on (it said "host vs ARM" with no ARM target in the report)."""
    from edgekit.runtimes.ranking import HOST, rank_runtimes

    result = view.latest.result
    shown = [
        r.target
        for r in rank_runtimes(result)
        if not view.targets or r.target in view.targets or r.target == HOST
    ]
    runs = {t.target: t for t in result.runs}

    def named(target: str) -> str:
        run = runs.get(target)
        machine = run.agent.facts_before.machine if run is not None and run.agent is not None else ""
        about = ", ".join(x for x in (machine, "emulated" if run is not None and run.emulated else "") if x)
        return escape(target) + (f" ({escape(about)})" if about else "")

    if len(shown) == 1:
        return f" on {named(shown[0])}"
    return ": " + " vs ".join(named(t) for t in shown) if shown else ""


def _plots(view: RecipeView) -> list[str]:
    """Per chart kind, a heading, the legend once (HTML, so it never covers a title) and per target a grid
    of panels; the conversion's fidelity is one chart for all targets."""
    parts = []
    for title, draw, legend in (  # the trend's legend: every line it draws, of every run shown
        (
            "Latency trend",
            trend_plots.trend,
            _artifact_legend(trend_plots.trend_artifacts(view), trend=True, accepted=bool(view.accepted())),
        ),
        ("Latency distribution (newest run of each target)", plots.distribution, ""),
        ("Precisions vs fp32 (newest run of each target)", plots.precisions, _precision_legend()),
    ):
        parts.append(f"<h3>{title}</h3>{legend}")
        for target in view.targets:
            for name, mine in plots.machine_views(view, target):  # on the host, one set per machine
                panels = "".join(_figure(p, name) for p in draw(mine, target, name))
                parts.append(
                    f'<h4>{escape(name)}{emu_badge(view.emulated(target))}</h4><div class="plots">{panels}</div>'
                )
    parts.append(f"<h3>Fidelity vs the original model (at conversion)</h3>{_precision_legend()}")
    parts.append(f'<div class="plots">{_figure(plots.fidelity(view), "")}</div>')
    return parts


def _figure(panel: Panel, target: str) -> str:
    caption = escape(panel.caption)
    if panel.note:
        caption += f'<br><span class="muted">{escape(masked_text(panel.note))}</span>'  # a run's error
    body = panel.svg if panel.svg is not None else ""
    css = "" if panel.svg is not None else ' class="nodata"'
    return f'<figure{css} data-target="{escape(target)}"><figcaption>{caption}</figcaption>{body}</figure>'


def _artifact_legend(artifacts: list[str], *, trend: bool = False, accepted: bool = False) -> str:
    items = [
        f'<span class="key"><i style="background:{colour_hex(a)}"></i>{escape(a)}</span>' for a in artifacts
    ]
    if trend:
        items.append('<span class="key"><i class="ring"></i>flagged regression</span>')
        items.append(
            '<span class="key"><i class="hollow"></i>unreliable, not judged (busy or throttled)</span>'
        )
    if accepted:
        items.append(
            '<span class="key"><i class="accepted"></i>level accepted (<code>edgekit runs accept</code>)</span>'
        )
    return f'<p class="legend">{"".join(items)}</p>'


def _precision_legend() -> str:
    items = [
        f'<span class="key"><i style="background:{c}"></i>{p.value}</span>'
        for p, c in PRECISION_COLOURS.items()
    ]
    return f'<p class="legend">precision: {"".join(items)}</p>'


def _flags(flags: list[Flag], not_judged: Sequence[str] = (), store_url: str | None = None) -> str:
    """The flags, then what could not be judged for want of history (never 'within the noise' for those)."""
    unjudged = "".join(f'<p class="warn">{escape(line)}</p>' for line in not_judged)
    if not flags:
        if unjudged:
            return f"{unjudged}<p>No regressions in what could be judged.</p>"
        return '<p class="ok">No regressions: every artifact is within the noise of its recent history.</p>'
    head = (
        "<tr><th class=l>kind</th><th class=l>artifact</th><th class=l>target</th><th>threads</th>"
        "<th>old</th><th>new</th><th>change</th><th>p-value</th><th class=l>detail</th></tr>"
    )
    rows = []
    for f in flags:
        css = "bad" if f.is_bad else "warn"
        old, new = (_with_unit(x, f.kind) for x in _pair(f))
        rows.append(
            f'<tr class="{css}"><td class=l data-label=kind>{f.kind_label}</td>'
            f"<td class=l data-label=artifact>{escape(f.artifact or '-')}</td>"
            f"<td class=l data-label=target>{escape(masked_text(f.where) or '-')}{emu_badge(f.emulated)}</td>"
            f"<td data-label=threads>{f.threads or '-'}</td>"
            f"<td data-label=old{_title(f.against)}>{old}</td><td data-label=new>{new}</td>"
            f"<td data-label=change>{pct(f.change)}</td><td data-label=p-value>{_p(f.p_value)}</td>"
            f"<td class='l wrap'>{escape(masked_text(f.message))}</td></tr>"
        )
    accept = accept_commands(flags, store_url)
    hint = (
        f"<p>{escape(accept_why(flags))}: " + "; ".join(f"<code>{escape(c)}</code>" for c in accept) + "</p>"
        if accept
        else ""
    )
    return f'<table class="flags">{head}{"".join(rows)}</table>{hint}{unjudged}'


# a flag's old and new figures with their unit: one table held instruction counts and milliseconds unlabelled
FLAG_UNITS = {
    FlagKind.LATENCY: "ms",
    FlagKind.UNRELIABLE: "ms",
    FlagKind.INSTRUCTIONS: "instr.",
    FlagKind.FIDELITY: "cosine",
}


def _with_unit(figure: str, kind: FlagKind) -> str:
    unit = FLAG_UNITS.get(kind)
    return f"{figure} <span class=muted>{unit}</span>" if unit and figure != "-" else figure


def _title(text: str) -> str:
    return f" title='{escape(text)}'" if text else ""


def _pair(flag: Flag) -> tuple[str, str]:
    """A flag's old and new figures at one precision, never equal unless they are, and for a fidelity flag (a
    cosine) never printed as 1 below 1."""
    if flag.new is None:
        return number(flag.old), "-"
    if flag.old is None:
        return "-", number(flag.new, *_against(flag))
    fidelity = flag.kind is FlagKind.FIDELITY
    old, new = same_precision(
        [flag.old, flag.new], [1.0] if fidelity else [], digits=5 if fidelity else 4, down=fidelity
    )
    return old, new


def _changes(changes: list[str], against: str = "the previous run") -> str:
    if not changes:
        return ""
    items = "".join(f"<li>{escape(c)}</li>" for c in changes)
    return f"<p>Changed since {escape(against)}:</p><ul>{items}</ul>"


def home(text: str) -> str:
    """A path (or a URL holding one) under the user's home directory written with `~`: a shared report need not
    show the user's name, and the path reads shorter."""
    root = os.path.expanduser("~").rstrip("/")
    if not root or root == "~" or root == "":
        return text
    return text.replace(root + "/", "~/") if (root + "/") in text else text


def _against(flag: Flag) -> tuple[float | None, ...]:
    """What a flag's new figure must not print equal to: its old one, and for a fidelity flag (a cosine) 1, so a
    cosine that missed its gate never reads as a perfect one."""
    return (flag.old, 1.0) if flag.kind is FlagKind.FIDELITY else (flag.old,)


def _p(value: float | None) -> str:
    return "-" if value is None else f"{value:.2g}"


def _anchor(name: str) -> str:
    return "recipe-" + "".join(c if c.isalnum() else "-" for c in name)
