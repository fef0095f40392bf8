"""A nightly spread over a lab: every free place matching each lab target works through that target's queue of
recipes in parallel (each board one benchmark at a time), conversions done once per recipe before any board
starts (the content-addressed cache then hands the same artifacts to every board), one DeployResult per recipe
with every board's run in it.

Who does what: `spread()` acquires the places (at least one per lab target, waiting up to its `wait_s`),
converts, runs one worker thread per place, releases each place as soon as its queue is empty (and every
place in `finally`, whatever happened), and reports wall time, board-seconds and the acquire/release times.
The queue's starting recipe turns with the night, so over a few nights every board measures every recipe and
boards of one type can be compared with each other (edgekit/lab/boards.py).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edgekit.convert.base import Artifact
from edgekit.lab.acquire import place_target
from edgekit.lab.client import LabClient, Lease
from edgekit.lab.errors import LabError
from edgekit.recipe import Recipe
from edgekit.results import DeployResult
from edgekit.target import Target, is_inline, load_target

Log = Callable[[str], None]
DeployOne = Callable[[Recipe, Target, list[Artifact]], DeployResult]


def is_lab(targets: Sequence[str]) -> bool:
    """True when any of the names is a lab target (lab:TAG=VALUE or a target file with a `lab:` block); a name
    that does not load is no lab target here (the deploy reports it, as for any target)."""
    return any(is_inline(t) or _has_lab_block(t) for t in targets)


def _has_lab_block(name: str) -> bool:
    from edgekit.errors import EdgekitError

    try:
        return load_target(name).lab is not None
    except EdgekitError:
        return False


@dataclass
class SpreadOutcome:
    results: dict[Path, DeployResult | Exception] = field(default_factory=dict)
    board_type: dict[str, str] = field(default_factory=dict)  # place -> the lab target it was acquired for
    board_seconds: dict[str, float] = field(default_factory=dict)  # place -> seconds spent deploying
    jobs: dict[str, list[str]] = field(default_factory=dict)  # place -> recipes it ran
    acquire_s: dict[str, float] = field(default_factory=dict)  # lab target -> seconds to acquire its places
    release_s: dict[str, float] = field(
        default_factory=dict
    )  # place -> seconds the coordinator took to release
    unavailable: dict[str, str] = field(default_factory=dict)  # lab target -> why it got no place tonight
    convert_s: float = 0.0
    deploy_s: float = 0.0  # wall time from the first board starting to the last one finishing
    wall_s: float = 0.0  # everything: acquiring, converting, deploying, releasing

    @property
    def boards(self) -> list[str]:
        return list(self.board_type)


def spread(
    recipes: Sequence[Path],
    targets: Sequence[str],
    log: Log,
    *,
    deploy_one: DeployOne | None = None,
    night: int | None = None,
) -> SpreadOutcome:
    """Deploy every recipe to every target; lab targets spread over all their free places."""
    start = time.monotonic()
    outcome = SpreadOutcome()
    leases: list[Lease] = []
    try:
        queues, boards = _acquire(targets, log, outcome, leases)
        t0 = time.monotonic()
        loaded, artifacts = _convert_all(recipes, log, outcome)
        outcome.convert_s = time.monotonic() - t0
        todo = _tonights_order([p for p in recipes if p in loaded], night)
        for kind in queues:
            for path in todo:
                queues[kind].put(path)
        work = _Night(deploy_one or _deploy_one, loaded, artifacts, queues, outcome, log, todo)
        t0 = time.monotonic()
        work.run(boards)
        outcome.deploy_s = time.monotonic() - t0
        for path, results in work.parts.items():
            if results:
                outcome.results[path] = _merge(results)
    finally:
        for lease in leases:
            lease.close()
        outcome.wall_s = time.monotonic() - start
    return outcome


def _convert_all(
    recipes: Sequence[Path], log: Log, outcome: SpreadOutcome
) -> tuple[dict[Path, Recipe], dict[Path, list[Artifact]]]:
    """Every recipe loaded and converted once, before any board starts; a recipe that fails is its result."""
    from edgekit.recipe import load_recipe

    loaded: dict[Path, Recipe] = {}
    artifacts: dict[Path, list[Artifact]] = {}
    for path in recipes:
        try:
            loaded[path] = load_recipe(path)
            artifacts[path] = _convert(loaded[path], log)
        except Exception as exc:  # noqa: BLE001 - one recipe's failure never stops the night
            outcome.results[path] = exc
    return loaded, artifacts


def _tonights_order(todo: list[Path], night: int | None) -> list[Path]:
    """The queue starts at a recipe that turns with the night, so every board meets every recipe over nights."""
    turn = (night if night is not None else datetime.now(UTC).toordinal()) % max(1, len(todo))
    return todo[turn:] + todo[:turn]


class _Night:
    """One worker thread per acquired place, each taking recipes from its lab target's queue until it is empty,
    then giving its place back; what each place ran and for how long goes into the outcome."""

    def __init__(
        self,
        run: DeployOne,
        loaded: dict[Path, Recipe],
        artifacts: dict[Path, list[Artifact]],
        queues: dict[str, queue.Queue[Path]],
        outcome: SpreadOutcome,
        log: Log,
        todo: list[Path],
    ) -> None:
        self.deploy, self.loaded, self.artifacts, self.queues = run, loaded, artifacts, queues
        self.outcome, self.log = outcome, log
        self.parts: dict[Path, list[DeployResult]] = {p: [] for p in todo}
        self.lock = threading.Lock()

    def run(self, boards: list[tuple[Target, str, Lease | None]]) -> None:
        done = threading.Semaphore(0)  # not Thread.join: it misbehaves after a Ctrl-C (CPython 3.11)

        def worker(target: Target, kind: str, lease: Lease | None) -> None:
            try:
                self.work(target, kind, lease)
            finally:
                done.release()

        threads = [
            threading.Thread(target=worker, args=b, name=f"spread-{b[0].name}", daemon=True) for b in boards
        ]
        for t in threads:
            t.start()
        try:
            for _ in threads:
                done.acquire()
        except KeyboardInterrupt:
            self.log("lab: interrupted (Ctrl-C): releasing every place; tonight's runs are not recorded")
            raise

    def work(self, target: Target, kind: str, lease: Lease | None) -> None:
        name, outcome = target.name, self.outcome
        while True:
            try:
                path = self.queues[kind].get_nowait()
            except queue.Empty:
                break
            self.log(f"{name}: {path.name}")
            t = time.monotonic()
            try:
                result = self.deploy(self.loaded[path], target, self.artifacts[path])
            except Exception as exc:  # noqa: BLE001 - recorded as this recipe's failure on this board
                with self.lock:
                    outcome.results.setdefault(path, exc)
                continue
            finally:
                with self.lock:
                    outcome.board_seconds[name] = outcome.board_seconds.get(name, 0.0) + time.monotonic() - t
                    outcome.jobs.setdefault(name, []).append(path.name)
            with self.lock:
                self.parts[path].append(result)
        if lease is not None:
            lease.release(name)
            outcome.release_s[name] = lease.release_s.get(name, 0.0)
            self.log(f"{name}: queue empty, released ({outcome.release_s[name]:.3f} s)")


def _acquire(
    targets: Sequence[str], log: Log, outcome: SpreadOutcome, leases: list[Lease]
) -> tuple[dict[str, queue.Queue[Path]], list[tuple[Target, str, Lease | None]]]:
    """One queue per target name; one worker per board: every free place of a lab target, or the target."""
    queues: dict[str, queue.Queue[Path]] = {}
    boards: list[tuple[Target, str, Lease | None]] = []
    for name in targets:
        template = load_target(name)
        queues[name] = queue.Queue()
        if template.lab is None:
            boards.append((template, name, None))
            continue
        client = LabClient(template.lab.address())
        log(
            f"lab: acquiring every free place with {template.lab.wanted()} (at least one, up to "
            f"{template.lab.wait_s:.0f} s)"
        )
        try:
            lease = client.hold(template.lab, count=0, say=log)
        except LabError as exc:  # this board type gets no place tonight; the others go on
            outcome.unavailable[name] = str(exc)
            log(f"lab: {name}: no place tonight: {exc}")
            del queues[name]
            continue
        leases.append(lease)
        outcome.acquire_s[name] = lease.acquire_s
        log(f"lab: {name}: acquired {', '.join(p.name for p in lease.places)} in {lease.acquire_s:.2f} s")
        for place in lease.places:
            board = place_target(template, place, None).model_copy(update={"lab": None})
            outcome.board_type[place.name] = name
            boards.append((board, name, lease))
    return queues, boards


def _convert(recipe: Recipe, log: Log) -> list[Artifact]:
    from edgekit.convert.pipeline import convert_recipe

    arts = convert_recipe(
        recipe, None, keep_going=True, progress=lambda m: log(f"{recipe.name}: convert: {m}")
    )
    return [a for a in arts if a.files] or arts


def _deploy_one(recipe: Recipe, target: Target, artifacts: list[Artifact]) -> DeployResult:
    from edgekit.deploy import DeployOptions, deploy

    return deploy(recipe, [target], DeployOptions(host=False), artifacts=artifacts)


def _merge(results: list[DeployResult]) -> DeployResult:
    """One recipe's runs on many boards as one DeployResult (the same artifacts, every board's TargetRun)."""
    base = results[0].model_copy(deep=True)
    for other in results[1:]:
        base.runs += other.runs
        base.routes += other.routes
        base.started_at = min(base.started_at, other.started_at)
        base.finished_at = max(base.finished_at or "", other.finished_at or "") or None
        base.ok = base.ok and other.ok
    return base


def board_lines(store: Any, done: SpreadOutcome, history: int = 14) -> list[str]:
    """The lab part of the night's report: per board, per board type, and boards slower than their siblings
    (over each board's last `history` runs in the store, tonight's included)."""
    from edgekit.lab.boards import SLOW_RATIO, board_spread, last_facts

    busy = sum(done.board_seconds.values())
    unavailable = [
        f"  {name}: NO PLACE tonight: {why.splitlines()[0]}" for name, why in done.unavailable.items()
    ]
    lines = [
        f"lab: {len(done.boards)} board(s); wall {done.wall_s:.0f} s (conversions {done.convert_s:.0f} s, "
        f"deploys {done.deploy_s:.0f} s); board-seconds {busy:.0f} s "
        f"({busy / done.deploy_s if done.deploy_s else 0:.2f} boards busy on average while deploying)",
        *unavailable,
    ]
    for board, kind in done.board_type.items():
        facts = last_facts(store, board)
        lines.append(
            f"  {board} ({kind}): {len(done.jobs.get(board, []))} recipe(s) in "
            f"{done.board_seconds.get(board, 0.0):.0f} s; last: {facts.summary() if facts else 'no run stored'}"
        )
    ids = {r.id for board in done.boards for r in store.runs(target=board, limit=history)}
    found = board_spread(store.load_many(ids).values(), done.board_type)
    for kind in dict.fromkeys(done.board_type.values()):
        boards = [b for b, k in done.board_type.items() if k == kind]
        keys = {key for b in boards for key in found.medians.get(b, {})}
        lines.append(f"  {kind}: {len(boards)} board(s), {len(keys)} (recipe, artifact, threads) measured")
        lines += [f"    {line}" for line in _type_lines(found.medians, boards, keys)]
    for slow in found.slow:
        lines.append(f"  SLOW BOARD {slow.line()}")
    if not found.slow:
        lines.append(
            f"  no board is {100 * (SLOW_RATIO - 1):.0f} % slower than its siblings on what both measured"
        )
    return lines


def _type_lines(
    medians: dict[str, dict[tuple[str, str, int], float]],
    boards: list[str],
    keys: set[tuple[str, str, int]],
    most: int = 5,
) -> list[str]:
    """A board type's figures: per key, the median over its boards and their range; widest spread first."""
    import statistics

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
