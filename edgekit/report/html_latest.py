"""The HTML report's table of a recipe's latest run: one row per target, artifact and thread count; an emulated
target's headline is the board estimate (qemu's wall time only in a tooltip), its speed-up by instruction count.
"""

from __future__ import annotations

import math
from html import escape

from edgekit.report.figures import apart, cosine_text, signed_percent
from edgekit.report.html_facts import EMU_BADGE
from edgekit.report.rows import Row
from edgekit.report.table_caption import NO_BOARD, interval_words
from edgekit.results import interval_not_validated
from edgekit.store.masked import masked_text

NO_COSINE = '<span class="bad">n/a</span>'  # deploy's table prints n/a in red


def latest_table(rows: list[Row]) -> str:
    if not rows:  # a run whose targets all failed before measuring: its flags say why
        return '<p class="muted">No measurements in the latest run (its flags say why).</p>'
    head = (
        "<tr><th class=l>target</th><th class=l>artifact</th><th>threads</th><th>p50 (ms)</th>"
        f"<th>p90 (ms)</th><th>board estimate (ms, {interval_words(r.estimate for r in rows)})</th>"
        "<th>speed-up over fp32</th>"
        "<th>fidelity (cosine)</th>"
        "<th>host-vs-ARM drift (max abs / cosine)</th><th>instructions / invoke (count)</th>"
        "<th class=l>status</th></tr>"
    )
    body = []
    for r in rows:
        css = "bad" if any(f.is_bad for f in r.flags) or r.status != "ok" or r.gates_passed is False else ""
        emu = emu_badge(r.emulated)
        speed = f"{r.speedup:.2f}x" if r.speedup else "-"
        if r.speedup and r.speedup_basis != "latency":
            speed += f'<br><span class="muted">({escape(r.speedup_basis)})</span>'
        elif r.speedup_basis == "emulated wall time":  # no count: qemu's wall time ratios are distorted
            speed += '<br><span class="muted">(no count; not from emulated wall time)</span>'
        drift = (
            "-"
            if r.drift_max_abs is None or r.drift_cosine is None
            else NO_COSINE  # no output judged (0 in the model itself): as the terminal's drift cell
            if math.isnan(r.drift_cosine)
            else f"{r.drift_max_abs:.3g} / {cosine_text(r.drift_cosine, 6).replace(' ', '&nbsp;')}"
        )
        error = masked_text(r.error) or ""
        # a skipped row's error says it: 'skipped: runtime MNN not installed on pi4-emu (...)'
        status = escape(
            r.status
            if r.status == "ok"
            else error
            if error.startswith(f"{r.status}:")
            else f"{r.status}: {error}"
        )
        status += "".join(f" · {f.kind.value} {pct(f.change)}" for f in r.flags)
        gate = "" if r.gates_passed is not False else " (below gate)" if r.comparable else " (not comparable)"
        body.append(
            f'<tr class="{css}"><td class=l>{escape(r.target)}{emu}{_older(r.run_id)}</td>'
            f"<td class=l>{escape(r.artifact)}</td>"
            f"<td>{r.threads}</td><td>{_wall(r.p50_ms, r.emulated)}{emu}</td><td>{_wall(r.p90_ms, r.emulated)}{emu}</td>"
            f"<td class=est>{_estimate(r.estimate, counted=r.emulated and bool(r.instructions))}</td>"
            f"<td class=brk>{speed}</td><td>{_cos(r.cosine)}{gate}</td><td class=brk>{drift}</td>"
            f"<td>{_count(r.instructions)}</td><td class='l wrap'>{status}</td></tr>"
        )
    return f'<table class="latest">{head}{"".join(body)}</table>'


def _older(run_id: int | None) -> str:
    """A target the recipe's latest run did not include shows its own newest run, and says which."""
    return f' <span class="muted">run #{run_id}</span>' if run_id is not None else ""


def _wall(ms: float | None, emulated: bool) -> str:
    """A measured time; on an emulated target qemu's wall time is no device latency: not shown as a figure (the
    board estimate beside it is the headline), kept in the cell's tooltip and in the run's JSON."""
    if not emulated or ms is None:
        return number(ms)
    return f'<span class=muted title="qemu wall time {number(ms)} ms: not a device latency">-</span>'


# --- formatting ---------------------------------------------------------------------------------------------
def _estimate(est: dict | None, counted: bool = False) -> str:
    """An emulated target's headline: the real board's estimated latency, labelled as an estimate; for a counted
    core no board is calibrated for (phone-emu), why there is none."""
    if (
        not est
    ):  # the reason in the tooltip: in every row of a 9-format table it made each row five lines tall
        return (
            f'<span class="muted" title="{escape(NO_BOARD)}">none (no calibrated board)</span>'
            if counted
            else "-"
        )
    why = interval_not_validated(est)
    mark = f" (interval not validated: {why})" if why else ""
    return (
        f"<b>~{number(est['estimate_ms'])}</b> ({number(est['low_ms'])}–{number(est['high_ms'])}) "
        f'<span class="muted">{escape(str(est.get("board", "")))} estimate{mark}</span>'
    )


def emu_badge(emulated: bool) -> str:
    return EMU_BADGE if emulated else ""


def number(value: float | None, *others: float | None) -> str:
    """4 significant digits (whole numbers from 10,000), more where fewer would print `value` equal to one of
    `others` it differs from (figures.apart)."""
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 1e4 else apart(value, *others)


def pct(value: float | None) -> str:
    return "-" if value is None else signed_percent(value)


def _cos(value: float | None) -> str:
    """A cosine; NaN (a comparison with no output judged: 0 in the model itself) is n/a, as in deploy's table."""
    return "-" if value is None else NO_COSINE if math.isnan(value) else cosine_text(value, 5)


def _count(value: int | None) -> str:
    return "-" if not value else f"{value:,} instr."
