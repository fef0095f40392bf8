"""What the results store knows about each board of a lab: its last run's device facts, and how its timings
compare with its siblings' (boards of the same type measuring the same artifact at the same thread count).

A board whose median is 20 % (SLOW_RATIO) above the median of its siblings on the same keys is a finding: a
Pi with a bad power supply, a missing heatsink or a powersave governor measures like a slower board, and a
nightly that spreads over boards must not mistake it for a regression. It is reported with its clocks and
temperature, which usually say why.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from edgekit.results import DeployResult, DeviceFacts, TargetRun

SLOW_RATIO = 1.2


@dataclass(frozen=True)
class BoardFacts:
    """One board's facts from its last run in the store."""

    board: str
    run_id: int
    started_at: str
    status: str
    facts: DeviceFacts | None

    def clocks(self) -> str:
        f = self.facts
        if f is None or not f.freqs:
            return "clocks unknown"
        governors = sorted({q.governor for q in f.freqs if q.governor})
        cur = [q.cur_khz for q in f.freqs if q.cur_khz]
        top = [q.max_khz for q in f.freqs if q.max_khz]
        text = "/".join(governors) or "governor ?"
        if cur:
            text += f" {min(cur) / 1000:.0f}-{max(cur) / 1000:.0f} MHz"
        if top:
            text += f" (max {max(top) / 1000:.0f} MHz)"
        return text

    def thermal(self) -> str:
        f = self.facts
        if f is None:
            return "temperature unknown"
        temp = f"{f.temperature_c:.0f} °C" if f.temperature_c is not None else "temperature unknown"
        return temp + (f", throttled {f.throttled}" if f.throttled and f.throttled != "0x0" else "")

    def summary(self) -> str:
        f = self.facts
        cpu = (f.cpu_model or f.machine) if f else "?"
        emu = " emulated" if f is not None and f.emulated else ""
        return f"run {self.run_id} {self.started_at[:16]} {self.status}: {cpu}{emu}, {self.clocks()}, {self.thermal()}"


def last_facts(store: Any, board: str) -> BoardFacts | None:
    """The newest stored run that measured on `board` (a place name)."""
    found = store.runs(target=board, limit=1)
    if not found:
        return None
    result = store.load(found[0].id)
    run = next((r for r in result.runs if r.target == board), None)
    if run is None:
        return None
    facts = run.agent.facts_after or run.agent.facts_before if run.agent else None
    return BoardFacts(board, found[0].id, result.started_at, run.status, facts)


@dataclass
class SlowBoard:
    board: str
    board_type: str
    ratio: float  # this board's median over its siblings' median, geometric mean over shared keys
    keys: int  # (recipe, artifact, threads) compared
    facts: DeviceFacts | None = None

    def line(self) -> str:
        f = BoardFacts(self.board, 0, "", "", self.facts)
        return (
            f"{self.board} ({self.board_type}) is {100 * (self.ratio - 1):.0f} % slower than its siblings over "
            f"{self.keys} measurement(s): {f.clocks()}, {f.thermal()}"
        )


@dataclass
class BoardSpread:
    """Per board and per board type: medians by (recipe, artifact, threads), and the slow boards."""

    medians: dict[str, dict[tuple[str, str, int], float]] = field(default_factory=dict)  # board -> key -> ms
    types: dict[str, str] = field(
        default_factory=dict
    )  # board -> its type (the lab spec it was acquired for)
    facts: dict[str, DeviceFacts | None] = field(default_factory=dict)
    slow: list[SlowBoard] = field(default_factory=list)


def board_spread(
    results: Iterable[DeployResult], types: dict[str, str], ratio: float = SLOW_RATIO
) -> BoardSpread:
    """Compare every board with the other boards of its type on the keys both measured."""
    spread = BoardSpread(types=dict(types))
    for result in results:
        for run in result.runs:
            if run.target in types:
                _add(spread, result.recipe, run)
    by_type: dict[str, list[str]] = defaultdict(list)
    for board, kind in types.items():
        by_type[kind].append(board)
    for kind, boards in by_type.items():
        for board in boards:
            mine = spread.medians.get(board, {})
            ratios = []
            for key, ms in mine.items():
                siblings = [
                    spread.medians[b][key] for b in boards if b != board and key in spread.medians.get(b, {})
                ]
                if siblings and ms > 0:
                    ratios.append(ms / statistics.median(siblings))
            if ratios:
                mean = statistics.geometric_mean(ratios)
                if mean >= ratio:
                    spread.slow.append(SlowBoard(board, kind, mean, len(ratios), spread.facts.get(board)))
    return spread


def _add(spread: BoardSpread, recipe: str, run: TargetRun) -> None:
    if run.agent is None:
        return
    spread.facts[run.target] = run.agent.facts_after or run.agent.facts_before
    for m in run.agent.measurements:
        if m.status == "ok" and m.samples_ms:
            spread.medians.setdefault(run.target, {})[(recipe, m.artifact, m.threads)] = statistics.median(
                m.samples_ms
            )
