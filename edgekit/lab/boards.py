"""What the results store knows about each board of a lab: its last run's device facts, and how its timings
compare with its siblings' (boards of the same type measuring the same artifact at the same thread count); and
the night report's lab lines built from them (board_lines).

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
from typing import TYPE_CHECKING, Any

from edgekit.results import DeployResult, DeviceFacts, TargetRun

if TYPE_CHECKING:
    from edgekit.lab.spread import SpreadOutcome

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

    # board -> key -> ms: the median over the board's trusted runs (_add) of each run's median
    medians: dict[str, dict[tuple[str, str, int], float]] = field(default_factory=dict)
    types: dict[str, str] = field(
        default_factory=dict
    )  # board -> its type (the lab spec it was acquired for)
    facts: dict[str, DeviceFacts | None] = field(default_factory=dict)  # of the newest run that joined
    slow: list[SlowBoard] = field(default_factory=list)
    # board -> keys it measured in an ok run but timed while other processes used the CPUs (left out)
    busy: dict[str, set[tuple[str, str, int]]] = field(default_factory=dict)


def board_spread(
    results: Iterable[DeployResult], types: dict[str, str], ratio: float = SLOW_RATIO
) -> BoardSpread:
    """Compare every board with the other boards of its type on the keys both measured: per board and key, the
    median over its runs of each run's median, from ok runs and trusted measurements only (_add)."""
    spread = BoardSpread(types=dict(types))
    per_run: dict[str, dict[tuple[str, str, int], list[float]]] = {}  # board -> key -> one median per run
    newest: dict[str, str] = {}  # board -> started_at of the run its facts come from
    for result in results:
        for run in result.runs:
            if (
                run.target not in types
                or not _add(per_run, result.recipe, run, spread.busy)
                or run.agent is None
            ):
                continue
            if result.started_at >= newest.get(run.target, ""):
                newest[run.target] = result.started_at
                spread.facts[run.target] = run.agent.facts_after or run.agent.facts_before
    spread.medians = {
        board: {key: statistics.median(values) for key, values in keys.items()}
        for board, keys in per_run.items()
    }
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


def _add(
    per_run: dict[str, dict[tuple[str, str, int], list[float]]],
    recipe: str,
    run: TargetRun,
    busy: dict[str, set[tuple[str, str, int]]],
) -> bool:
    """Add the run's trusted figures to its board's; False if none joined. A failed run, one whose place was taken
    from it before it ended (place_lost: another's work may have shared the board) and a measurement timed while
    other processes used the CPUs (Measurement.timed_while_busy, as the report judges it) never join a board's
    figures: they say what else ran on the board, not how fast it is. A throttled or hot run does join: a board
    that heats up is what the SLOW BOARD verdict is for. The keys timed while busy go to `busy`, so the night's
    lines say what was left out rather than '0 measured'."""
    if run.agent is None or run.status != "ok" or run.place_lost is not None:
        return False
    joined = False
    for m in run.agent.measurements:
        key = (recipe, m.artifact, m.threads)
        if m.status == "ok" and m.samples_ms and m.timed_while_busy:
            busy.setdefault(run.target, set()).add(key)
        elif m.status == "ok" and m.samples_ms:
            per_run.setdefault(run.target, {}).setdefault(key, []).append(statistics.median(m.samples_ms))
            joined = True
    return joined


def board_lines(store: Any, done: SpreadOutcome, history: int = 14) -> list[str]:
    """The lab part of the night's report: per board, per board type, and boards slower than their siblings
    (over each board's last `history` runs in the store, tonight's included)."""
    busy = sum(done.board_seconds.values())
    unavailable = [
        f"  {name}: NO PLACE tonight: {why.splitlines()[0]}" for name, why in done.unavailable.items()
    ] + [
        f"  {name}: NOT RUN on any board of it tonight: {', '.join(left)}"
        for name, left in done.unrun.items()
    ]
    lines = [
        f"lab: {len(done.boards)} board(s); wall {done.wall_s:.0f} s (conversions {done.convert_s:.0f} s, "
        f"deploys {done.deploy_s:.0f} s); board-seconds {busy:.0f} s "
        f"({busy / done.deploy_s if done.deploy_s else 0:.2f} boards busy on average while deploying)",
        *unavailable,
    ]
    for board, kind in done.board_type.items():
        facts = last_facts(store, board)
        stopped = f"; STOPPED: {done.stopped[board]}" if board in done.stopped else ""
        if not done.jobs.get(board) and not stopped:  # no target of the night (edgekit.nightly leaves it out)
            stopped = (
                "; no recipe finished on it before the stop"
                if done.interrupted
                else "; idle: its siblings took every recipe"
            )
        lines.append(
            f"  {board} ({kind}): {len(done.jobs.get(board, []))} recipe(s) in "
            f"{done.board_seconds.get(board, 0.0):.0f} s{stopped}; last: "
            f"{facts.summary() if facts else 'no run stored'}"
        )
    ids = {r.id for board in done.boards for r in store.runs(target=board, limit=history)}
    found = board_spread(store.load_many(ids).values(), done.board_type)
    compared = False  # some key was counted on two boards of one type: a slow board could have shown
    for kind in dict.fromkeys(done.board_type.values()):
        boards = [b for b, k in done.board_type.items() if k == kind]
        lines.append(f"  {kind}: {_type_count(found, boards)}")
        keys = {key for b in boards for key in found.medians.get(b, {})}
        shared = [k for k in keys if sum(k in found.medians.get(b, {}) for b in boards) >= 2]
        compared = compared or bool(shared)
        lines += [f"    {line}" for line in _type_lines(found.medians, boards, keys)]
    for slow in found.slow:
        lines.append(f"  SLOW BOARD {slow.line()}")
    if not found.slow:
        lines.append(  # not an all-clear when nothing was compared (each board ran other recipes, or busy)
            f"  no board is {100 * (SLOW_RATIO - 1):.0f} % slower than its siblings on what both measured"
            if compared
            else "  no comparison possible: no (recipe, artifact, threads) counted on two boards of one type"
        )
    return lines


def _type_count(found: BoardSpread, boards: list[str]) -> str:
    """'2 board(s), 0 (recipe, artifact, threads) counted (14 timed while busy left out)': what the comparison
    stands on, and what it left out (after lab nights on a busy machine it read '0 measured')."""
    keys = {key for b in boards for key in found.medians.get(b, {})}
    busy = {key for b in boards for key in found.busy.get(b, set())} - keys
    left = f" ({len(busy)} timed while busy left out)" if busy else ""
    return f"{len(boards)} board(s), {len(keys)} (recipe, artifact, threads) counted{left}"


def _type_lines(
    medians: dict[str, dict[tuple[str, str, int], float]],
    boards: list[str],
    keys: set[tuple[str, str, int]],
    most: int = 5,
) -> list[str]:
    """A board type's figures: per key, the median over its boards and their range; widest spread first."""
    rows = []
    for key in keys:
        values = [medians[b][key] for b in boards if key in medians.get(b, {})]
        if len(values) >= 2:
            rows.append((max(values) / min(values) if min(values) > 0 else 1.0, key, values))
    rows.sort(key=lambda r: -r[0])
    return [
        f"{r} {a} x{t}: {statistics.median(v):.2f} ms median over {len(v)} boards ({min(v):.2f}-{max(v):.2f}, "
        f"spread {100 * (ratio - 1):.0f} %)"
        for ratio, (r, a, t), v in rows[:most]
    ]
