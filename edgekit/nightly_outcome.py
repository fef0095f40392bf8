"""What a night came to (NightlyOutcome: runs recorded, deploys failed, targets never measured, lab targets not
reached, interrupted) and its exit status, and the one-line verdict at the end of a cron log.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekit.report import Report
from edgekit.terminal import one_line


@dataclass
class NightlyOutcome:
    run_ids: dict[str, int] = field(default_factory=dict)  # recipe file -> stored run id
    failures: dict[str, str] = field(default_factory=dict)  # recipe file -> why it could not be deployed
    report: Report | None = None
    written: list[Path] = field(default_factory=list)
    never_measured: dict[str, str] = field(default_factory=dict)  # target -> tonight's error, if any
    lab: Any = None  # edgekit.lab.spread.SpreadOutcome when lab targets were spread over their places
    lab_lines: list[str] = field(default_factory=list)  # per board and board type, slow boards flagged
    interrupted: bool = False  # Ctrl-C or SIGTERM: the night stopped after recording what was measured
    not_reached: list[str] = field(default_factory=list)  # recipe files an interruption left unrun
    measured: list[str] = field(
        default_factory=list
    )  # every target tonight's recorded deploys ran on (host too)
    unreached: dict[str, str] = field(
        default_factory=dict
    )  # lab target -> why it ran nothing or not all tonight

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 130
        regressed = bool(self.report and (self.report.regressions or self.report.failures))
        return 1 if regressed or self.failures or self.never_measured or self.unreached else 0


def verdict(outcome: NightlyOutcome, most: int = 3) -> str:
    """Why the night passed or failed, in one line for the end of a cron log: 'nightly: 1 regression, 2 unreliable:
    tiny fidelity tflite-int8: below its fidelity gate at conversion (min_cosine: ...)', 'nightly: no
    regressions, 2 unreliable', 'nightly: nothing judged: 28 of 28 timings unreliable' (none judged). The counts, then the first `most` reasons (each flag in regression.flag_line's
    words, as the Markdown summary lists it)."""
    from edgekit.report.flag_text import flag_line

    deploys = by_name(outcome.failures)
    from edgekit.report.flags import failures_text

    flags = outcome.report.flags if outcome.report is not None else []
    regressions = [f for f in flags if f.is_regression]
    failed = [f for f in flags if f.is_failure]
    counts = ["interrupted (Ctrl-C or SIGTERM)"] if outcome.interrupted else []
    if deploys:
        counts.append(f"{len(deploys)} deploy{'s' if len(deploys) != 1 else ''} failed")
    n = len(regressions)
    if "report" in outcome.failures:  # nothing was judged: not "no regressions"
        counts.append("no report: regressions not judged")
    else:
        if failed:
            counts.append(failures_text(len(failed)))
        timings = outcome.report.timings_not_judged if outcome.report is not None else ""
        counts.append(
            f"{n} regression{'s' if n != 1 else ''}"
            if n
            else f"nothing judged: {timings}"  # every timing unreliable: not "no regressions, 28 unreliable"
            if timings
            else "no runs to judge"  # the report's window (--since) held none of the night's runs
            if outcome.report is not None and not outcome.report.recipes
            else "no regressions"
        )
        if n and timings:
            counts.append(f"no timing judged ({timings})")
    unreliable = sum(1 for f in flags if not f.is_bad)
    if unreliable and not (outcome.report is not None and outcome.report.timings_not_judged):
        counts.append(f"{unreliable} unreliable")
    if outcome.never_measured:
        counts.append(
            f"{len(outcome.never_measured)} target{'s' if len(outcome.never_measured) != 1 else ''} never measured"
        )
    if outcome.unreached:
        counts.append(
            f"{len(outcome.unreached)} lab target{'s' if len(outcome.unreached) != 1 else ''} not reached"
        )
    reasons = [f"{name}: {_first_line(why)}" for name, why in deploys.items()]
    reasons += [_first_line(outcome.failures["report"])] if "report" in outcome.failures else []
    reasons += [f"{f.recipe} {f.kind_label} {_first_line(flag_line(f))}" for f in [*regressions, *failed]]
    reasons += [
        f"{target} never measured" + (f" (tonight: {why})" if why else "")
        for target, why in outcome.never_measured.items()
    ]
    reasons += [f"{target} not reached: {_first_line(why)}" for target, why in outcome.unreached.items()]
    more = f"; and {len(reasons) - most} more (see the report)" if len(reasons) > most else ""
    line = f"nightly: {', '.join(counts)}" + (f": {'; '.join(reasons[:most])}{more}" if reasons else "")
    return one_line(
        line
    )  # a recipe file named with a newline or an escape forged a line of the cron log's tail


def _first_line(text: str, limit: int = 400) -> str:
    """`text` on one line (an error's reason often starts on its second: 'broken.yaml: invalid recipe:' then
    the field), without its hint, cut in the middle when too long so that a command at its end (`runs import`)
    stays."""
    lines = text.strip().splitlines()
    said = next(
        (i for i, ln in enumerate(lines) if ln.strip().startswith("hint:")), len(lines)
    )  # the report has it
    line = " ".join(" ".join(lines[:said]).split())
    if len(line) <= limit:
        return line
    tail = min(160, limit // 2)
    return line[: limit - tail - 3] + " … " + line[-tail:]


def by_name(failures: dict[str, str]) -> dict[str, str]:
    """Failed deploys by their recipe file's name, or its path where two files of the night share a name
    (`--recipes team-a/ team-b/`): one entry each, not one for both."""
    files = [p for p in failures if p != "report"]
    names = [Path(p).name for p in files]
    return {(Path(p).name if names.count(Path(p).name) == 1 else p): failures[p] for p in files}
