"""A short Markdown summary of a report, fit for a pull request comment or a chat message.

Per recipe: the verdict, each flag on one line, one compact table (artifact x target at the lowest thread
count: p50 and speed-up over fp32, emulated targets labelled with their instruction counts beside them), and the
route to ship per target.
"""

from __future__ import annotations

import re
import unicodedata

from edgekit.formats import Format
from edgekit.report.figures import cosine_text, millions
from edgekit.report.flag_text import accept_commands, accept_why, flag_line
from edgekit.report.flags import failures_text
from edgekit.report.regression import Flag
from edgekit.report.rows import Row
from edgekit.report.run_view import result_not_ok
from edgekit.report.table import estimate_text
from edgekit.report.table_caption import NO_BOARD, interval_words
from edgekit.report.view import RecipeView, Report, when
from edgekit.results import NOT_RUN_INTERRUPTED
from edgekit.store.masked import masked_text
from edgekit.terminal import printable

# the ratio as deploy's table heads it: fp32's count over the artifact's, so above 1 is fewer instructions ("0.78x
# instr." read as 0.78 times the instructions, the opposite)
BY_INSN = (
    "x fp32 by insn = the same runtime's fp32 instruction count / this artifact's (above 1: fewer instructions; "
    "base = that fp32; instructions are not cycles)"
)
_ESCAPED = str.maketrans({c: "\\" + c for c in "\\<>&|`[]"})
# a run of these Markdown may take for emphasis (`*`, `_`) or GFM strikethrough (`~`): `numpy/__init__.py` read
# `numpy/<strong>init</strong>.py`
_DELIMITER_RUN = re.compile(r"\*+|_+|~+")


def _text(value: object) -> str:
    """Text from the store (messages, names from an imported result) as Markdown shows it and nothing more:
    every character Markdown or HTML would act on backslash-escaped (CommonMark: a renderer that passes HTML
    through shows `<script>` as text and runs nothing; the raw file stays readable, with no `&lt;` entities),
    one line, no table-breaking `|`. An ASCII arrow `->` is written `→` (escaped, it read `-\\>` in a log).
    A `*`, `_` or `~` is escaped only where it could open or close emphasis: a masked secret between spaces
    stays `***` in the raw file, `snake_case` stays as it is. A control character is written as its escape
    (`\\x1b`): `cat report.md` set the terminal's title from an imported run's error."""
    text = printable(str(value).replace("->", "→").replace("\r", " ").replace("\n", " ").replace("\t", " "))
    out, at = [], 0
    for run in _DELIMITER_RUN.finditer(text):
        out.append(text[at : run.start()].translate(_ESCAPED))
        before = text[run.start() - 1] if run.start() else ""
        after = text[run.end()] if run.end() < len(text) else ""
        acts = _delimiter_acts(run.group()[0], before, after)
        out.append("".join("\\" + c for c in run.group()) if acts else run.group())
        at = run.end()
    out.append(text[at:].translate(_ESCAPED))
    return "".join(out)


def _delimiter_acts(char: str, before: str, after: str) -> bool:
    """A run of `char` between `before` and `after` ('' at the text's ends, taken as punctuation: the text may
    sit next to anything) can open or close emphasis (CommonMark's flanking rules), whether the renderer counts
    Unicode symbols (`→`) as punctuation (CommonMark 0.31) or not (older ones)."""
    for symbols in (True, False):
        punct_before, punct_after = _punct(before, symbols), _punct(after, symbols)
        space_before, space_after = before.isspace(), after.isspace()
        left = not space_after and (not punct_after or space_before or punct_before)
        right = not space_before and (not punct_before or space_after or punct_after)
        if char != "_" and (left or right):
            return True
        if char == "_" and ((left and (not right or punct_before)) or (right and (not left or punct_after))):
            return True
    return False


def _punct(char: str, symbols: bool) -> bool:
    if not char:
        return True
    kind = unicodedata.category(char)
    return (
        char in "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"
        or kind.startswith("P")
        or (symbols and kind.startswith("S"))
    )


def _code(command: str) -> str:
    """A command as a Markdown code span, shown exactly as it is to be pasted: CommonMark acts on nothing inside
    one (no HTML, no escapes: `_text`'s backslashes showed, so a store URL's `&` was pasted as `\\&`); fenced
    with more backticks than any run of them in it."""
    text = command.replace("\r", " ").replace("\n", " ")
    fence = "`" * (max((len(run) for run in re.findall("`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def verdict(report: Report) -> str:
    """The headline: deploys that failed first, then whether the run was complete ('interrupted: not everything
    was run'), the regressions ('nothing judged: 28 of 28 timings unreliable' when every timing was unreliable),
    and the recipes whose latency could not be judged for want of history (never 'no regressions' alone while
    something was not run or not judged)."""
    regressions = len(report.regressions)
    unreliable = report.timings_not_judged  # every timing unreliable: nothing was judged, no "no regressions"
    parts = [
        "regressions not judged (the store could not be read)"
        if report.unreadable
        else f"{regressions} regression{'s' if regressions != 1 else ''}"
        if regressions
        else f"nothing judged: {unreliable}"
        if unreliable
        else "no regressions"
        if report.recipes
        else "no runs to judge"  # an empty selection judged nothing: it has no regression to speak of
    ]
    if regressions and unreliable:  # a fidelity or failure flag: the timings were still not judged
        parts.append(f"no timing judged ({unreliable})")
    if report.failures:  # failed where no earlier run had measured it: nothing regressed, something failed
        parts.insert(0, failures_text(len(report.failures)))
    if report.interrupted:
        parts.insert(0, "interrupted, not everything was run")
    if report.failed_deploys:  # the night failed even with no regression: the verdict says so first
        failed = len(report.failed_deploys)
        parts.insert(0, f"{failed} deploy{'s' if failed != 1 else ''} failed")
    if report.aged_out:  # no longer flagged, but nobody accepted them: never 'no regressions' alone
        aged = len(report.aged_out)
        parts.append(f"{aged} regression{'s' if aged != 1 else ''} aged out unaccepted")
    unjudged = report.unjudged
    if unjudged:
        parts.append(
            f"{report.unjudged_what} not judged for {len(unjudged)} recipe{'s' if len(unjudged) != 1 else ''} "
            "(not enough history)"
        )
    return ", ".join(parts)


def render(report: Report) -> str:
    lines_verdict = verdict(report)
    lines = [
        f"## edgekit report: {lines_verdict}",
        "",
        f"_generated {report.generated_at}, "
        f"{'since ' + when(report.since) + ' UTC' if report.since else 'all history'}_",
        "",
    ]
    if report.not_reached:
        lines += ["### ⚠️ Not run (the night was interrupted)", ""]
        lines += [f"- `{_text(recipe)}`" for recipe in report.not_reached]
        lines.append("")
    if report.failed_deploys:
        lines += ["### ❌ Deploys that failed", ""]
        lines += [
            f"- `{_text(recipe)}`: {_text(masked_text(why))}" for recipe, why in report.failed_deploys.items()
        ]
        lines.append("")
    if report.unreadable:
        lines.append(_text(report.unreadable))
    elif not report.recipes:
        lines.append("No runs in the store for this selection.")
        if report.empty_hint:
            lines += ["", report.empty_hint]
    for view in report.recipes:
        lines += _recipe(view, report.store_url)
    return printable("\n".join(lines).rstrip() + "\n")  # and any other stored text: no terminal sequence


def _recipe(view: RecipeView, store_url: str) -> list[str]:
    bad = [f for f in view.flags if f.is_bad]
    state = result_not_ok(view.latest.result)  # 'not ok (not finished)': an imported run of a killed deploy
    mark = "❌" if bad else ("⚠️" if view.flags or view.unjudged or view.aged_out or state else "✅")
    lines = [
        f"### {mark} {_text(view.recipe)}: run #{view.latest.id}, {when(view.latest.started_ts)} UTC"
        + (f", {_text(state)}" if state else ""),
        "",
    ]
    lines += [_flag(f) for f in view.flags]
    accept = accept_commands(view.flags, store_url)
    if accept:
        lines.append(f"- {accept_why(view.flags)}: " + "; ".join(_code(c) for c in accept))
    not_judged = view.not_judged()
    lines += [f"- **not judged** {_text(line)}" for line in not_judged]
    lines += [f"- **aged out unaccepted** {_text(line)}" for line in view.aged_out]
    lines += [f"- {_text(a.line())}" for a in view.accepted()]  # the flags it ended leave no other trace
    if not view.flags:  # a paragraph of its own: a line right after a bullet continues it (CommonMark)
        lines += [""] if lines[-1] else []
        lines.append(
            "No regressions in what could be judged."
            if not_judged or view.aged_out
            else "No regressions against recent history."
        )
    if view.changes:
        lines += [
            "",
            f"Changed since {_text(view.changes_against)}: "
            + "; ".join(_text(c) for c in view.changes[:8])
            + (f"; and {len(view.changes) - 8} more" if len(view.changes) > 8 else ""),
        ]
    lines += ["", *_table(view), ""]
    routes = _routes(view)
    if routes:
        lines += [
            "Route to ship, per target (the fastest artifact that meets every gate):",
            "",
            *routes,
            "",
        ]
    return lines


def _routes(view: RecipeView) -> list[str]:
    """Per target, the route its newest run recorded (the recipe's latest run, or the target's own newest one, named),
    with its figure, what kind of figure it is, its speed-ups and caveats (report/lines.route_line)."""
    from edgekit.report.lines import route_line

    lines = []
    for target in view.targets:
        found = view.route_on(target)
        if found is None:
            continue
        run, data = found
        newest = view.latest_on(target)
        older = f" (run #{run.id})" if run.id != view.latest.id else ""
        if newest is not None and newest[0].id != run.id and newest[1].interrupted:
            older = f" (run #{run.id}; run #{newest[0].id} was interrupted before choosing one)"
        try:
            line = route_line(data)
        except (KeyError, TypeError, ValueError):  # a route this edgekit cannot read (a newer one's)
            continue
        lines.append(f"- {_text(line)}{older}")
    return lines


def _flag(f: Flag) -> str:
    emulated = " (emulated)" if f.emulated and f.kind_label == f.kind.value else ""
    return f"- **{f.kind_label}**{emulated} {_text(masked_text(flag_line(f)))}"  # a failure quotes its error


def _table(view: RecipeView) -> list[str]:
    rows = view.rows
    if not rows:
        return ["_no measurements_"]
    threads = min(r.threads for r in rows)
    targets = list(dict.fromkeys(r.target for r in rows))
    cells = {(r.artifact, r.target): r for r in rows if r.threads == threads}
    artifacts = list(dict.fromkeys(r.artifact for r in rows))
    estimated = {r.target for r in rows if isinstance(r.estimate, dict) and estimate_text(r.estimate)}
    # a target the latest run did not include: every row is from its own newest run, said once in its header; a
    # row of a target it did include comes from an older run only when a Ctrl-C left it unmeasured: said in the cell
    in_latest = {t.target for t in view.latest.result.runs}
    older = {r.target: r.run_id for r in rows if r.run_id is not None and r.target not in in_latest}
    head = ["artifact"] + [
        (
            (
                f"{_text(t)} board ESTIMATE ms"
                if t in estimated
                else f"{_text(t)} instructions (count)"
                if any(r.instructions for r in rows if r.target == t)
                else f"{_text(t)} (not counted)"
            )
            if view.emulated(t)
            else f"{_text(t)} p50 ms"
        )
        + (f" (run #{older[t]})" if t in older else "")
        for t in targets
    ]
    measured = [t for t in targets if not view.emulated(t)]
    emulated = [t for t in targets if view.emulated(t)]
    intro = (
        [f"p50 at {threads} thread{'s' if threads > 1 else ''}, speed-up over fp32 in brackets"]
        if measured
        else []
    )
    if estimated:
        intro.append(
            "an emulated target shows the real board's estimated latency (from its instruction count, "
            f"{interval_words(r.estimate for r in rows)}; not a measurement; * = interval not validated) and its "
            "instruction count, never qemu's wall time"
        )
    counted = {r.target for r in rows if r.instructions}
    if no_board := [t for t in emulated if t not in estimated and t in counted]:
        intro.append(
            f"{', '.join(_text(t) for t in no_board)}: {NO_BOARD}, so "
            f"instruction counts at {threads} thread{'s' if threads > 1 else ''}, never qemu's wall time"
        )
    uncounted: dict[str, list[str]] = {}  # why -> the targets: each run's own reason, grouped
    for t in emulated:
        if t not in estimated and t not in counted:
            uncounted.setdefault(_not_counted_why(view, t), []).append(t)
    for why, named in uncounted.items():
        intro.append(
            f"{', '.join(_text(t) for t in named)}: not counted ({why}), so neither a board estimate nor an "
            "instruction count; qemu's wall time is no device latency and stays in the JSON"
        )
    if any(t in counted for t in emulated):  # no ratio by instructions where nothing was counted
        intro.append(BY_INSN)
    lines = [
        "; ".join(intro) + ":",
        "",
        "| " + " | ".join(head + ["fidelity vs ONNX (cosine, host, at conversion)"]) + " |",
        "|" + "---|" * (len(head) + 1),
    ]
    # one definition for every row: the conversion's check on the host, over the recipe's evaluation inputs (a
    # target's own comparison may be over a capped few inputs: mixing them in one column compared unlike figures)
    converted = {
        a.id: a.fidelity.get("cosine") for run in view.runs for a in run.result.artifacts if a.fidelity
    }
    for artifact in artifacts:
        value = converted.get(artifact)
        cosine = float(value) if isinstance(value, (int, float)) else None
        lines.append(
            "| "
            + " | ".join(
                [_text(artifact)]
                + [_cell(cells.get((artifact, t)), name_run=t not in older) for t in targets]
                + [cosine_text(cosine, 5) if cosine is not None else "-"]
            )
            + " |"
        )
    return lines


def _not_counted_why(view: RecipeView, target: str) -> str:
    """Why an emulated target's newest run has no instruction count, from the run: its target turned counting
    off, it is a qemu machine reached as a plain or lab board (which cannot count), or it was to count and lost
    them (its error says why); a run recorded before edgekit kept how it was emulated names both first two."""
    found = view.latest_on(target)
    run = found[1] if found is not None else None
    if run is not None and run.counting:
        return "it was to count, and its counts were lost: see its error"
    if run is not None and run.emulated_as == "board":
        return "a qemu machine reached as a plain or lab board, which cannot count"
    if run is not None and run.emulated_as == "target":
        return "the run had `emulated.counting: false`"
    return "no count came back: `emulated.counting: false`, or a qemu machine reached as a plain or lab board"


def _cell(row: Row | None, *, name_run: bool = True) -> str:
    """A row's cell; one from an older run than the latest names it (`90.06 (run #3)`) unless its column's
    header does (`name_run` False)."""
    if row is None:
        return "-"
    if row.status != "ok":  # one never run because of a Ctrl-C or SIGTERM did not fail (as the HTML says)
        text = (
            "not run (interrupted)"
            if (row.error or "").startswith(NOT_RUN_INTERRUPTED)
            else "skipped (runtime not installed)"
            if row.status == "skipped"
            else "failed"
        )
    elif row.emulated:
        text = _emulated_cell(row)
    else:
        text = f"{row.p50_ms:.4g}" if row.p50_ms is not None else "-"
        if row.speedup:
            by_insn = row.speedup_basis == "instruction count"
            text += f" (x fp32 by insn {row.speedup:.2f}x)" if by_insn else f" ({row.speedup:.2f}x)"
        if row.instructions:
            text += f", {millions(row.instructions)} instr. (count)"
    if name_run and row.run_id is not None:
        text += f" (run #{row.run_id})"
    if row.status == "ok" and any(f.is_bad for f in row.flags):
        text += " ❌"
    return text


def _emulated_cell(row: Row) -> str:
    """An emulated target's headline: the board estimate and the count, not the emulated wall time."""
    est = row.estimate if isinstance(row.estimate, dict) else {}
    text = estimate_text(est)
    parts = [f"{text} {est.get('board', 'board')} est."] if text else []
    if row.speedup and row.speedup_basis == "instruction count":
        parts.append("base" if _is_fp32_base(row.artifact) else f"x fp32 by insn {row.speedup:.2f}x")
    if row.instructions:
        parts.append(f"{millions(row.instructions)} instr. (count)")
    return ", ".join(parts) or "no count (emulated wall time only: see the JSON)"


def _is_fp32_base(artifact: str) -> bool:
    """The artifact its runtime's ratios are taken against (tflite-fp32 for every tflite-*)."""
    try:
        return Format(artifact).fp32_reference.value == artifact
    except ValueError:
        return False
