"""A nightly spread over a lab: every free place matching each lab target works through that target's queue of
recipes in parallel (each board one benchmark at a time), conversions done once per recipe before any place is
acquired (the content-addressed cache then hands the same artifacts to every board), one DeployResult per recipe
with every board's run in it.

Who does what: `spread()` converts first (no board is held while converting; a recipe whose conversion failed
goes to no board, and with nothing converted no place is acquired), then acquires each lab target's places in a
thread of its own (every free place, at least one, waiting up to its `wait_s`): a target's boards start working
as soon as they are acquired, never held idle while another board type is waited for. One worker thread per
place; each place is released as soon as its queue is empty, and every place in `finally`, whatever happened.
A deploy that raises on a board is said at once and becomes a failed run of that board in the recipe's result
(what it measured kept); it is listed in `SpreadOutcome.raised`, so the night counts it as a failed deploy.

A Ctrl-C or SIGTERM keeps what finished: no board takes another recipe, the boards still deploying are told to
stop (DeployOptions.stop: a worker thread gets no Ctrl-C) and waited for (up to STOP_WAIT_S, so no place is given
back with our agent on it), then every place is released. `spread()` returns each finished recipe's result, a NotRun for
each recipe no board took, and `interrupted` set (edgekit.nightly records every result and ends the night with
130); it raises KeyboardInterrupt only when no board finished anything. The queue's starting recipe turns with
the night, so over a few nights every board measures every recipe and boards of one type can be compared with
each other (edgekit/lab/boards.py). The threads, the stop and each recipe's settled result are
edgekit/lab/night.py.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from edgekit.convert.base import Artifact
from edgekit.errors import EdgekitError
from edgekit.lab.acquire import check_matchable
from edgekit.lab.night import DeployOne, Log, Night
from edgekit.lab.night_results import error_text
from edgekit.recipe import Recipe
from edgekit.results import DeployResult
from edgekit.target import Target, is_inline, load_target


def is_lab(targets: Sequence[str]) -> bool:
    """True when any of the names is a lab target (lab:TAG=VALUE or a target file with a `lab:` block); a name
    that does not load is no lab target here (the deploy reports it, as for any target)."""
    return any(is_inline(t) or _has_lab_block(t) for t in targets)


def _has_lab_block(name: str) -> bool:
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
    stopped: dict[str, str] = field(
        default_factory=dict
    )  # place -> why it took no more recipes (lost, broken)
    unrun: dict[str, list[str]] = field(
        default_factory=dict
    )  # lab target -> recipes no board of it ran: every board it got stopped
    raised: dict[Path, dict[str, str]] = field(
        default_factory=dict
    )  # recipe -> board -> why its deploy raised
    convert_s: float = 0.0
    deploy_s: float = 0.0  # wall time from the first board starting to the last one finishing
    wall_s: float = 0.0  # everything: converting, acquiring, deploying, releasing
    interrupted: bool = False  # Ctrl-C or SIGTERM: the results are what finished before it

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
    """Deploy every recipe to every target; lab targets spread over all their free places. A target named twice
    is one target (two queues of one name would be one, and a board would run two benchmarks at once)."""
    start = time.monotonic()
    outcome = SpreadOutcome()
    templates = _usable_targets(list(dict.fromkeys(targets)), log, outcome)
    if not templates:  # every target is a lab's with no place of its kind reachable: nothing to convert for
        log("lab: no target can be reached tonight: nothing converted, no place acquired")
        why = "; ".join(
            f"{name} got no place tonight ({w.splitlines()[0]})" for name, w in outcome.unavailable.items()
        )
        for path in recipes:
            outcome.results[path] = EdgekitError(f"no board ran this recipe: {why}", where=str(path))
        outcome.wall_s = time.monotonic() - start
        return outcome
    t0 = time.monotonic()
    loaded, artifacts = _convert_all(recipes, log, outcome)
    outcome.convert_s = time.monotonic() - t0
    todo = _tonights_order([p for p in recipes if p in artifacts], night)  # a failed conversion: no board
    work = Night(deploy_one, loaded, artifacts, outcome, log, todo)
    try:
        if todo and templates:
            work.run(templates)
        elif not todo:
            log("lab: no recipe converted: no place acquired")
    except KeyboardInterrupt:
        outcome.interrupted = True
        work.stop()
    finally:
        work.close()  # from here on no thread changes the outcome (a board still deploying is dropped)
        work.release_all()
        outcome.deploy_s = work.deploy_s()
        outcome.wall_s = time.monotonic() - start
    finished = work.anything_finished()  # before settle, which turns what did not into NotRun
    work.settle()
    if outcome.interrupted and not finished:
        raise KeyboardInterrupt  # no board finished anything: nothing to record (the conversions are in the cache)
    return outcome


def _usable_targets(targets: Sequence[str], log: Log, outcome: SpreadOutcome) -> list[tuple[str, Target]]:
    """Every target, read (a bad one is refused before converting, exit 2); so is a lab target no place of its
    lab matches (a misspelt tag: NoMatchingPlace) or one labgrid's environment is missing for (LabSetupError),
    as deploy refuses them: bad input, said before any work, not "no place tonight" after converting everything.
    A lab target whose lab is down, or whose every place is unreachable (exporters down), gets no place tonight
    and the others go on (said before converting). Two names of one board (`pi4` and its file) are one target:
    one worker per board."""
    from edgekit.lab.errors import LabError

    usable: list[tuple[str, Target]] = []
    for name in targets:
        template = load_target(name)
        if template.lab is not None:
            try:
                check_matchable(template)
            except LabError as exc:
                if exc.exit_code == 2:  # the input is wrong, not the lab: no night makes it right
                    raise
                outcome.unavailable[name] = str(exc)
                log(f"lab: {name}: no place tonight: {exc}")
                continue
        elif any(t.lab is None and t.name == template.name for _, t in usable):
            log(f"{name}: the board {template.name} is named twice: measured once")
            continue
        usable.append((name, template))
    return usable


def _convert_all(
    recipes: Sequence[Path], log: Log, outcome: SpreadOutcome
) -> tuple[dict[Path, Recipe], dict[Path, list[Artifact]]]:
    """Every recipe loaded and converted once, before any place is acquired; a recipe that fails is its result
    (said now) and goes to no board."""
    from edgekit.recipe import load_recipe

    loaded: dict[Path, Recipe] = {}
    artifacts: dict[Path, list[Artifact]] = {}
    for path in recipes:
        try:
            loaded[path] = load_recipe(path)
            artifacts[path] = _convert(loaded[path], log)
        except Exception as exc:  # noqa: BLE001 - one recipe's failure never stops the night
            outcome.results[path] = exc
            log(f"{path.name}: not converted, sent to no board: {error_text(exc).splitlines()[0]}")
    return loaded, artifacts


def _tonights_order(todo: list[Path], night: int | None) -> list[Path]:
    """The queue starts at a recipe that turns with the night, so every board meets every recipe over nights."""
    turn = (night if night is not None else datetime.now(UTC).toordinal()) % max(1, len(todo))
    return todo[turn:] + todo[:turn]


def _convert(recipe: Recipe, log: Log) -> list[Artifact]:
    from edgekit.convert.pipeline import convert_recipe

    arts = convert_recipe(
        recipe, None, keep_going=True, progress=lambda m: log(f"{recipe.name}: convert: {m}")
    )
    return [a for a in arts if a.files] or arts
