"""The HTML report's device facts: per run and target, what the agent found on the device before and after timing
(CPU, cores, governor, clocks, temperature, throttling, runtimes), the throttled ones marked, and under each the
run's caveats (a device that is not the target's expected_cpu; an affinity not applied, memory figures that may
include earlier frees)."""

from __future__ import annotations

from html import escape

from edgekit.report.lines import fact_caveats
from edgekit.report.regression import throttle_reason
from edgekit.report.unreliable import clock_caution
from edgekit.report.view import RecipeView, when
from edgekit.results import AgentResult, DeviceFacts, TargetRun
from edgekit.store.masked import masked_text

EMU_BADGE = '<span class="emu">emulated</span>'


def facts_section(view: RecipeView) -> str:
    head = (
        "<tr><th class=l>run</th><th class=l>target</th><th class=l>CPU</th><th>cores</th>"
        "<th class=l>governor</th><th>clock MHz (before → after / max)</th><th>temperature °C (before → after)</th>"
        "<th class=l>throttled (before → after)</th><th class=l>runtimes</th></tr>"
    )
    rows = []
    for run in reversed(view.runs):
        for t in run.result.runs:
            if t.agent is None:
                rows.append(
                    f"<tr class=bad><td class=l>#{run.id} {when(run.started_ts)}</td><td class=l>"
                    f"{escape(t.target)}</td><td class=l colspan=7>{escape(masked_text(t.error) or t.status)}</td></tr>"
                )
                continue
            caveats = "".join(  # the run's own (a device that is not the expected_cpu), and what its facts say
                # of an affinity not applied and of its memory figures: deploy printed them
                f"<tr class=warn><td></td><td class='l wrap' colspan=8>! {escape(masked_text(c))}</td></tr>"
                for c in [*t.caveats, *fact_caveats(t)]
            )
            rows.append(_facts_row(run.id, run.started_ts, t, t.agent) + caveats)  # one target run, one entry
    return history_details(rows, head)


OPEN_ROWS = 8  # a history section this short is open; a longer one (60 nights: 60 rows) starts collapsed


def history_details(rows: list[str], head: str) -> str:
    """A history table, newest first, in a details element: open when short, collapsed when long (60 nights
    made two sections of 60 rows each that the reader had to scroll past)."""
    shown = "open" if len(rows) <= OPEN_ROWS else ""
    summary = f"<summary>{len(rows)} target runs, newest first</summary>"
    return f"<details {shown}>{summary}<table>{head}{''.join(rows)}</table></details>".replace(
        "<details >", "<details>"
    )


def _facts_row(run_id: int, started_ts: float, t: TargetRun, agent: AgentResult) -> str:
    before, after = agent.facts_before, agent.facts_after
    reason = throttle_reason(t)
    emulator = f" <span class=muted>{escape(before.emulator)}</span>" if before.emulator else ""
    throttled = f"{escape(before.throttled or '-')} → {escape((after.throttled if after else None) or '-')}"
    if reason:
        throttled += f" <b>{escape(reason)}</b>"
    caution = clock_caution(t)
    if caution:
        throttled += f" <i>{escape(caution)}</i>"
    runtimes = escape(", ".join(f"{k} {v}" for k, v in before.runtimes.items()))
    # an emulated target's governor, clocks and temperature, where a stored run has them (older agents read the
    # host's /sys under qemu-user), are the machine running the emulator's: 'a Cortex-A72 at 3.5 GHz and 86 °C'
    facts = [f for f in (before, after) if f is not None]
    clocks = HOST_NOTE if t.emulated and any(f.freqs for f in facts) else ""
    heat = HOST_NOTE if t.emulated and any(f.temperature_c is not None for f in facts) else ""
    return (
        f'<tr class="{"warn" if reason else ""}"><td class=l>#{run_id} {when(started_ts)}</td>'
        f"<td class=l>{escape(t.target)}{EMU_BADGE if t.emulated else ''}</td>"
        f"<td class='l brk'>{escape(before.cpu_model or before.machine)}{emulator}</td>"
        # a cell with the note wraps (td.brk): four notes on one line pushed the table 260 px past a laptop's box
        f"<td{_wrap(t.emulated)}>{before.cores}{HOST_NOTE if t.emulated else ''}</td>"  # qemu-user reads the host's
        f"<td class='l{' brk' if clocks else ''}'>{escape(_governor(before))}{clocks}</td>"
        f"<td{_wrap(bool(clocks))}>{_clock(before, after)}{clocks}</td>"
        f"<td{_wrap(bool(heat))}>{_temp(before)} → {_temp(after)}{heat}</td>"
        f"<td class='l wrap'>{throttled}</td>"
        f"<td class='l wrap'>{runtimes}</td></tr>"
    )


HOST_NOTE = " <span class=muted>(emulator host's)</span>"


def _wrap(noted: bool) -> str:
    """A right-aligned cell's class: its figure and the emulator host's note may wrap (cells do not, by default;
    td.wrap would also widen it to 14em)."""
    return " class=brk" if noted else ""


def _temp(facts: DeviceFacts | None) -> str:
    return "-" if facts is None or facts.temperature_c is None else f"{facts.temperature_c:.1f}"


def _governor(facts: DeviceFacts) -> str:
    return ", ".join(sorted({f.governor for f in facts.freqs if f.governor})) or "-"


def _clock(before: DeviceFacts, after: DeviceFacts | None) -> str:
    """Every core's clock before and after the run ('2400 → 1000 / 2400'; a range where cores differ, '600-1800'),
    then the top clock: the highest core's clock before the run alone hid a clock that fell while timing."""
    top = [f.max_khz for f in before.freqs if f.max_khz]
    clocks = [c for c in (_clocks(before), _clocks(after)) if c]
    if not clocks and not top:
        return "-"
    now = " → ".join(clocks) if len(clocks) == 2 else (clocks[0] + " → -" if clocks else "")
    peak = f"{max(top) / 1000:.0f}" if top else ""
    return f"{now} / {peak}" if now and peak else now or peak


def _clocks(facts: DeviceFacts | None) -> str:
    cur = [f.cur_khz for f in (facts.freqs if facts else []) if f.cur_khz]
    if not cur:
        return ""
    lo, hi = min(cur) / 1000, max(cur) / 1000
    return f"{lo:.0f}" if round(lo) == round(hi) else f"{lo:.0f}-{hi:.0f}"
