"""A spread's night at work, once spread.py has read the targets and converted the recipes: one thread per
target (a lab target's acquires its places), one worker thread per board taking recipes from its target's queue,
the stop on Ctrl-C or SIGTERM, every place given back, and each recipe's result settled from what its boards gave.

A lab board stops taking recipes when its place is no longer this night's (a teammate kicked it, a coordinator
restart dropped the hold: checked after every recipe, and the deploy itself fails that run with place_lost) or
when its run failed at connect (a re-flashed board's new host key, sshd down behind a live exporter, a wrong key):
such a board fails in a tenth of a second, so it emptied its type's queue while its healthy siblings spent
minutes per recipe. Its recipe goes back on the queue for a sibling (its failed run stays in the result), and when
no board of the type is left, what remains is said as not run on it. So a board whose queue is empty gives its
place back only once no sibling is still deploying (a recipe of theirs may come back).

A module of its own because it is the part with threads (the results it settles are night_results.py): what they share sits behind one lock in `Night`, and no
thread changes the outcome once `Night.close()` ran (the caller reads it from then on).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekit.convert.base import Artifact
from edgekit.errors import EdgekitError, Interrupted
from edgekit.lab.acquire import place_target, usable_places
from edgekit.lab.client import LabClient
from edgekit.lab.errors import NotRun
from edgekit.lab.lease import Lease, PlaceHold
from edgekit.lab.night_results import Raised, error_text, interrupted_runs, settled, why_stop
from edgekit.recipe import Recipe
from edgekit.results import DeployResult
from edgekit.target import Target

if TYPE_CHECKING:
    from edgekit.lab.spread import SpreadOutcome

Log = Callable[[str], None]
DeployOne = Callable[[Recipe, Target, list[Artifact]], DeployResult]
STOPPED = "interrupted (Ctrl-C or SIGTERM)"
STOP_WAIT_S = 30.0  # after a Ctrl-C: how long the boards still deploying are waited for before every release


class Night:
    """One thread per target (a lab target's acquires its places, then starts their workers), one worker thread
    per board, each taking recipes from its target's queue until it is empty, then giving its place back; what
    each place ran and for how long goes into the outcome (under the lock, and never once `close()` ran: the
    caller then reads the outcome while a board it stopped waiting for may still be deploying)."""

    def __init__(
        self,
        run: DeployOne | None,
        loaded: dict[Path, Recipe],
        artifacts: dict[Path, list[Artifact]],
        outcome: SpreadOutcome,
        log: Log,
        todo: list[Path],
    ) -> None:
        self.deploy, self.loaded, self.artifacts = run or _deploy_one, loaded, artifacts
        self.outcome, self.log, self.todo = outcome, log, todo
        self.queues: dict[str, queue.Queue[Path]] = {}
        self.parts: dict[Path, list[DeployResult]] = {p: [] for p in todo}
        self.raised: dict[Path, list[Raised]] = {p: [] for p in todo}
        # recipe -> what boards the night's stop cut short measured (their runs interrupted): kept, not failures
        self.cut: dict[Path, list[DeployResult]] = {p: [] for p in todo}
        self.cut_on: dict[str, Path] = {}  # board -> the recipe the stop cut short on it
        self.pending: dict[Path, int] = {}  # recipe -> targets still to run it
        self.running: dict[str, Path] = {}  # board -> the recipe it is deploying now
        self.workers: dict[str, int] = {}  # target -> its boards still taking recipes
        self.missed: dict[Path, list[str]] = {p: [] for p in todo}  # recipe -> why a target never ran it
        self.leases: list[Lease] = []
        self.lock = threading.Lock()
        self.busy = 0
        self.idle = threading.Event()  # no thread left
        self.stopping = threading.Event()
        self.closed = False  # set by close(): no thread changes the outcome any longer
        self.released = False  # release_all() ran: a lease started later is closed at once
        self.first_start: float | None = None
        self.last_end: float | None = None

    def run(self, templates: list[tuple[str, Target]]) -> None:
        self.pending = dict.fromkeys(self.todo, len(templates))
        self.idle.set()
        for name, _template in templates:  # every queue full before any board takes from one
            self.queues[name] = queue.Queue()
            for path in self.todo:
                self.queues[name].put(path)
        for name, template in templates:
            self._start(self._target, name, template, name=f"spread-{name}")
        while not self.idle.wait(0.2):  # not Thread.join: it misbehaves after a Ctrl-C (CPython 3.11)
            pass

    def _start(self, fn: Callable[..., None], *args: Any, name: str) -> None:
        def guarded() -> None:
            try:
                fn(*args)
            finally:
                with self.lock:
                    self.busy -= 1
                    if not self.busy:
                        self.idle.set()

        with self.lock:
            self.busy += 1
            self.idle.clear()
        threading.Thread(target=guarded, name=name, daemon=True).start()

    def _target(self, name: str, template: Target) -> None:
        """A target's boards at work: a lab target's places acquired (waiting for at least one), each starting
        its worker at once. Whatever fails before a board starts (a lab error, an OSError starting labgrid's
        helper, a bug) is why this target got no place tonight: said, and its queue given up."""
        if template.lab is None:
            with self.lock:
                self.workers[name] = 1
            self.work(template, name, None)
            return
        try:
            started = self._acquire(name, template)
        except Exception as exc:  # noqa: BLE001 - this board type gets no place tonight; the others go on
            started, why = 0, error_text(exc)
            with self.lock:
                quiet = self.stopping.is_set()  # the lease closed under it by release_all: no failure
                if not quiet:
                    self.outcome.unavailable[name] = why
            if not quiet:
                self.log(f"lab: {name}: no place tonight: {why}")
        if not started:
            with self.lock:
                why = self.outcome.unavailable.get(name, "no place tonight")
            self._give_up(name, f"{name} got no place tonight ({why.splitlines()[0]})")

    def _acquire(self, name: str, template: Target) -> int:
        """Every free place of a lab target, each with its worker started; how many started."""
        assert template.lab is not None  # _target's caller: lab targets only
        self.log(
            f"lab: acquiring every free place with {template.lab.wanted()} (at least one, up to "
            f"{template.lab.wait_s:.0f} s)"
        )
        client = LabClient(template.lab.address())
        # a place edgekit refuses (its name, its NetworkService's address or user) is never taken: acquired, it
        # was left out after, and the night's only free place of the type ("no place tonight") while a good one
        # was about to free up
        refused = usable_places(template, client.places(), client.coordinator)
        spec = template.lab.model_copy()
        spec._avoid = frozenset(template.lab._avoid | set(refused))

        def started(lease: Lease) -> None:
            lease.refused = dict(refused)
            self._track(lease)

        lease = client.hold(spec, count=0, say=lambda m: self.log(f"{name}: {m}"), started=started)
        with self.lock:
            stopped = self.stopping.is_set() or self.closed
            if not stopped:
                self.outcome.acquire_s[name] = lease.acquire_s
        if stopped:
            lease.close()
            return 0
        self.log(
            f"lab: {name}: acquired {', '.join(p.name for p in lease.places)} in {lease.acquire_s:.2f} s"
        )
        boards: list[Target] = []
        for place in lease.places:
            try:  # the board's transport checks after each recipe that the place is still ours (PlaceHold)
                board = place_target(template, place, PlaceHold(lease)).model_copy(update={"lab": None})
            except Exception as exc:  # noqa: BLE001 - its exporter went between the acquiring and now, a name or
                # address edgekit refuses (or a bug): that place is left out, given back
                self.log(f"lab: {name}: {place.name} left out: {error_text(exc)}")
                self._release(lease, place.name)
                continue
            boards.append(board)
        with self.lock:
            stopped = self.stopping.is_set() or self.closed
            if not stopped:
                self.workers[name] = len(
                    boards
                )  # before any starts: one that stops at once sees its siblings
                for board in boards:
                    self.outcome.board_type[board.name] = name
        if stopped:
            return 0
        for board in boards:
            self._start(self.work, board, name, lease, name=f"spread-{board.name}")
        if not boards:
            with self.lock:
                if not (self.stopping.is_set() or self.closed):
                    self.outcome.unavailable[name] = "no place it acquired could be reached"
            lease.close()
        return len(boards)

    def _track(self, lease: Lease) -> None:
        with self.lock:
            self.leases.append(lease)
            late = self.released
        if late:  # the night ended while this lease was being asked for: it ends its wait now
            lease.close()

    def _give_up(self, name: str, why: str) -> list[Path]:
        """A target that got no place, or whose every board stopped: its recipes wait for it no longer (each
        keeps `why`); the ones it gave up."""
        left: list[Path] = []
        while True:
            try:
                path = self.queues[name].get_nowait()
            except queue.Empty:
                return left
            with self.lock:
                self.pending[path] -= 1
                self.missed[path].append(why)
            left.append(path)

    def work(self, target: Target, kind: str, lease: Lease | None) -> None:
        name, outcome = target.name, self.outcome
        _NIGHT.stop = self.stopping  # _deploy_one stops this board's deploy when the night stops
        stopped: str | None = None  # why this board takes no more recipes
        while not self.stopping.is_set():
            path, busy = self._next(kind, name)
            if path is None:
                if not busy:
                    break
                time.sleep(0.2)  # a sibling still deploying may put its recipe back (it stopped): wait for it
                continue
            t = time.monotonic()
            self.log(f"{name}: {path.name}")
            result: DeployResult | None = None
            error: Exception | None = None
            was_cut, cut = False, None  # the night's stop cut this deploy short; what it had measured
            try:
                result = self.deploy(self.loaded[path], target, self.artifacts[path])
            except Interrupted as exc:
                if not self.stopping.is_set():  # not the night's stop: this recipe's failure on this board
                    error = exc
                    self.log(f"{name}: {path.name}: deploy failed: {error_text(exc).splitlines()[0]}")
                else:  # the night's Ctrl-C or SIGTERM stopped it: an interrupted run, not a failed deploy
                    was_cut, cut = True, interrupted_runs(exc)
                    self.log(
                        f"{name}: {path.name}: stopped by the interrupt, not finished"
                        + ("; what it measured is kept as an interrupted run" if cut is not None else "")
                    )
            except Exception as exc:  # noqa: BLE001 - this recipe's failure on this board, said now
                error = exc
                self.log(f"{name}: {path.name}: deploy failed: {error_text(exc).splitlines()[0]}")
            if lease is not None:
                stopped = why_stop(name, lease.check(name), result)
            with self.lock:
                self.running.pop(name, None)
                if self.closed:  # the night stopped waiting for this board: its result is dropped
                    return
                outcome.board_seconds[name] = outcome.board_seconds.get(name, 0.0) + time.monotonic() - t
                outcome.jobs.setdefault(name, []).append(path.name)
                self.last_end = time.monotonic()
                if stopped is not None and not self.stopping.is_set():
                    self.queues[kind].put(path)  # a sibling runs it; this board's run stays in the result
                    outcome.stopped[name] = stopped
                else:
                    self.pending[path] -= 1
                if was_cut:
                    self.cut_on[name] = path
                    if cut is not None:
                        self.cut[path].append(cut)
                elif error is not None:
                    self.raised[path].append(Raised(name, target, error))
                elif result is not None:
                    self.parts[path].append(result)
            if stopped is not None:
                self.log(
                    f"lab: {name}: {stopped}: it takes no more recipes tonight; {path.name} goes back to the queue"
                )
                break
        self._leave(kind)
        if lease is None or self.stopping.is_set() or name in lease.lost:  # a place taken is not ours to give
            return
        seconds = self._release(lease, name)
        if seconds is not None:
            self.log(f"{name}: {'stopped' if stopped else 'queue empty'}, released ({seconds:.3f} s)")

    def _next(self, kind: str, name: str) -> tuple[Path | None, bool]:
        """The next recipe of `kind`'s queue, marked running on board `name`; else None, and whether a sibling is
        still deploying. Under the lock a stopping sibling puts its recipe back under: never in between."""
        with self.lock:
            try:
                path = self.queues[kind].get_nowait()
            except queue.Empty:
                return None, any(self.outcome.board_type.get(b) == kind for b in self.running if b != name)
            self.running[name] = path
            self.first_start = self.first_start or time.monotonic()
            return path, True

    def _leave(self, kind: str) -> None:
        """A board of `kind` takes no more recipes. The last one to go leaves nothing in the queue: what a
        stopped board put back and no sibling took is given up, said with every stopped board's reason."""
        with self.lock:
            self.workers[kind] -= 1
            if self.workers[kind] or self.stopping.is_set() or self.closed:
                return
            why = "; ".join(
                f"{board}: {reason}"
                for board, reason in self.outcome.stopped.items()
                if self.outcome.board_type.get(board) == kind
            )
        if not why:
            return
        given_up = self._give_up(kind, f"every board of {kind} stopped taking recipes ({why})")
        with self.lock:  # a recipe its stopped board ran (and failed) is in the results: not "not run"
            boards = {b for b, k in self.outcome.board_type.items() if k == kind}
            left = [
                p
                for p in given_up
                if not any(r.target in boards for part in self.parts[p] for r in part.runs)
                and not any(r.board in boards for r in self.raised[p])
            ]
        if left:
            with self.lock:
                self.outcome.unrun[kind] = [p.name for p in left]
            self.log(
                f"lab: {kind}: every board it got stopped taking recipes ({why}): not run on it tonight: "
                + ", ".join(p.name for p in left)
            )

    def _release(self, lease: Lease, place: str) -> float | None:
        """One place given back; how long the coordinator took, or None when the release failed (said: every
        place is closed again in `finally`)."""
        try:
            lease.release(place)
        except Exception as exc:  # noqa: BLE001 - release_all tries again; the helper releases when it ends
            self.log(
                f"lab: warning: {place}: release failed ({error_text(exc)}); tried again at the end of the night"
            )
            return None
        if place in lease.unreleased:  # said by the lease ("was not released: ..."): not "released"
            return None
        seconds = lease.release_s.get(place, 0.0)
        with self.lock:
            if not self.closed:  # the caller may read the outcome already
                self.outcome.release_s[place] = seconds
        return seconds

    def stop(self) -> None:
        """Ctrl-C or SIGTERM: no board takes another recipe; each board still deploying is told to stop (the
        `stopping` event its deploy watches: its agent is stopped, what it measured kept) and waited for, up to
        STOP_WAIT_S, before the places are given back (a teammate must not share a board with our agent). What
        finishes meanwhile is kept; what still runs after the wait is dropped. A second Ctrl-C ends the wait."""
        with self.lock:
            self.stopping.set()
            running = dict(self.running)
        if running:
            self.log(
                f"lab: {STOPPED}: no board takes another recipe; waiting up to {STOP_WAIT_S:.0f} s for "
                + ", ".join(f"{p.name} on {b}" for b, p in running.items())
                + " to stop (each board's agent is told to; what it measured is kept) before giving the places back"
            )
            deadline = time.monotonic() + STOP_WAIT_S
            try:
                while time.monotonic() < deadline:
                    with self.lock:
                        if not self.running:
                            break
                    time.sleep(0.1)
            except KeyboardInterrupt:
                self.log(f"lab: {STOPPED} again: not waiting for the boards any longer")
        with self.lock:
            self.closed = True  # what is said now is what is kept: a board finishing later is dropped
            running = dict(self.running)
            cut_on = dict(self.cut_on)
            done = [
                p for p in self.todo if self.parts[p] and not self.pending.get(p) and p not in cut_on.values()
            ]
            part = [p for p in self.todo if self.parts[p] and p not in done]
        said = f"lab: {STOPPED}: keeping what finished: {len(done)} recipe(s) on every board type"
        said += f", {len(part)} on some" if part else ""
        if cut_on:
            said += "; stopped, not finished: " + ", ".join(f"{p.name} on {b}" for b, p in cut_on.items())
            said += " (what it measured is recorded as an interrupted run)"
        if running:
            said += "; dropped, not finished: " + ", ".join(f"{p.name} on {b}" for b, p in running.items())
            said += " (its agent may still run on the board after the release)"
        self.log(said + "; releasing every place")

    def close(self) -> None:
        with self.lock:
            self.closed = True
            self.stopping.set()

    def release_all(self) -> None:
        with self.lock:
            self.released = True
            leases = list(self.leases)
        for lease in leases:
            try:
                lease.close()
            except Exception as exc:  # noqa: BLE001 - the others are released all the same
                self.log(f"lab: warning: a lease could not be closed: {error_text(exc)}")

    def deploy_s(self) -> float:
        if self.first_start is None:
            return 0.0
        return (self.last_end or time.monotonic()) - self.first_start

    def anything_finished(self) -> bool:
        """Some board finished some recipe (measured it, or failed it): there is something to record."""
        with self.lock:
            return any(self.parts[p] or self.raised[p] or self.cut[p] for p in self.todo)

    def settle(self) -> None:
        """Each recipe's result: its boards' runs as one DeployResult, a board whose deploy raised as a failed run
        of it (every board raised: the error, with what was measured on it). After a Ctrl-C, a recipe no board
        finished is NotRun; an error is never replaced by it."""
        outcome = self.outcome
        for path in self.todo:
            parts, raised = self.parts[path] + self.cut[path], self.raised[path]
            if raised:
                outcome.raised[path] = {r.board: error_text(r.error) for r in raised}
            if parts or raised:
                outcome.results[path] = settled(path, parts, raised)
            elif outcome.interrupted:
                outcome.results[path] = NotRun(
                    f"not run: the night was {STOPPED} before a board finished it", where=str(path)
                )
            elif self.missed[path]:  # every target gave it up: why, not "no board ran this recipe"
                outcome.results[path] = EdgekitError(
                    f"no board ran this recipe: {'; '.join(self.missed[path])}", where=str(path)
                )


_NIGHT = threading.local()  # each board's worker thread: `stop`, the night's Ctrl-C event


def _deploy_one(recipe: Recipe, target: Target, artifacts: list[Artifact]) -> DeployResult:
    """One recipe on one board, stopped as on Ctrl-C (its agent stopped, what it measured kept) when the night
    is stopped: deploy runs in this worker thread, where no Ctrl-C arrives."""
    from edgekit.deploy import DeployOptions, deploy

    stop = getattr(_NIGHT, "stop", None)
    return deploy(recipe, [target], DeployOptions(host=False, stop=stop), artifacts=artifacts)
