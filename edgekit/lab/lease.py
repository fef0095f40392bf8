"""The places this process holds (Lease): the holder helper's side in edgekit, its events read on threads, its
release, and what happens to a place a teammate or a coordinator restart took (lost).

The helper that holds places is a child whose stdin is a pipe from this process: when edgekit ends in any way,
even SIGKILL, the pipe closes and the helper releases every place it holds. While it waits it shares edgekit's
process group (a Ctrl-C at the terminal ends the wait at once); once it holds places it moves to a session of its
own and ignores SIGINT and SIGTERM (edgekit handles them and tells it to release; killing edgekit's group, or
systemd's stop signalling every process of the unit, leaves it to release when edgekit says so or is gone). How the helper ends (its pipe closed, a release left to its
retries, a helper that died holding places) is edgekit/lab/helper_end.py's.
"""

from __future__ import annotations

import atexit
import collections
import json
import queue
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

from edgekit.lab.client import Say, event_error, skipped_note, waited_s
from edgekit.lab.errors import LabError, LabWaitTimeout, lab_command
from edgekit.lab.helper_end import HelperEnd
from edgekit.lab.place import Place, held_place, holder_text, parse_place
from edgekit.paths import data_path
from edgekit.target import LabSpec


class Lease(HelperEnd):
    """Places held for this process; `release()` gives them back (also at exit, and by the helper itself when
    this process dies). Construction waits until the places are acquired or raises a named error.

    A place stops being ours when a teammate kicks it, when the coordinator restarts (it forgets every hold), or
    when the helper is killed outright and someone takes it meanwhile: `release()` and `check()` find out, put it
    in `lost` (who holds it now) and say so, and a deploy fails that board's run (place_lost)."""

    def __init__(
        self,
        proc: subprocess.Popen[str],
        spec: LabSpec,
        coordinator: str,
        say: Say,
        started: Callable[[Lease], None] | None = None,
    ) -> None:
        self.proc = proc
        self.spec = spec
        self.coordinator = coordinator
        self.say = say
        self.places: list[Place] = []
        self.acquire_s = 0.0
        self.release_s: dict[str, float] = {}
        # place -> who holds it now ("now held by HOST/USER", "free now"): taken from this run before it ended
        self.lost: dict[str, str] = {}
        self._events: queue.Queue[dict[str, Any] | None] = queue.Queue()  # until the places are acquired
        self._lock = threading.Lock()  # one command to the helper at a time
        self._state = threading.Condition()  # what the helper answered: release_s, lost, _checked, _ended
        self._checked: dict[str, int] = {}  # place -> answers to `check` so far
        # place -> why the coordinator could not be asked: said once until it answers again (a nightly board's
        # transport and its worker both check after each recipe: the warning came twice)
        self._check_warned: dict[str, str] = {}
        self.unreleased: dict[str, str] = {}  # place -> why its release failed (said; not released)
        # place -> why edgekit refuses it (acquire.refusals): the helper passes it over; said while waiting
        self.refused: dict[str, str] = {}
        self._ended = False  # the helper's stdout ended: it has exited (every answer is read)
        self._retrying: int | None = (
            None  # the helper's pid once it said it goes on trying releases on its own
        )
        self._retry_s = 600.0  # for how long it goes on trying (its word)
        self._log = data_path() / "lab" / f"helper-{proc.pid}.log"  # what its retries write, if it retries
        self._pending_said: set[str] = set()  # places whose pending release was said
        self._left = False  # _end went on without the helper (it is still giving places back)
        self._err: collections.deque[str] = collections.deque(maxlen=40)  # the helper's last words
        self._reader = threading.Thread(target=self._read, name="lab-lease", daemon=True)
        self._err_reader = threading.Thread(target=self._read_err, name="lab-lease-err", daemon=True)
        self._reader.start()
        self._err_reader.start()
        _LIVE.add(self)
        try:
            if started is not None:
                started(self)
            self._await_acquired()
        except BaseException:
            self.close()
            raise

    def _read(self) -> None:
        assert self.proc.stdout is not None  # Popen(stdout=PIPE) always has it
        for line in self.proc.stdout:
            try:
                event = json.loads(line) if line.startswith("{") else None
            except ValueError:
                event = None
            if not isinstance(event, dict):
                continue
            if event.get("event") in ("released", "checked", "retrying", "retried", "abandoned"):
                with self._state:
                    said = self._apply(event)
                    self._state.notify_all()
                    # edgekit went on without the helper: said already, in _end (a place it gave up is said)
                    quiet = self._left and event["event"] != "abandoned"
                if said and not quiet:
                    self.say(said)
            else:
                self._events.put(event)
        with self._state:
            self._ended = True
            self._state.notify_all()
            left = self._left
        self._events.put(None)
        if left:  # _end went on without the helper: this end of its pipe is closed here
            self.proc.stdout.close()

    def _read_err(self) -> None:
        """labgrid's and gRPC's own output, kept short: read all along, so a long hold never fills the pipe."""
        assert self.proc.stderr is not None  # Popen(stderr=PIPE)
        for line in self.proc.stderr:
            self._err.append(line)
        with self._state:
            left = self._left
        if left:
            self.proc.stderr.close()

    def _apply(self, event: dict[str, Any]) -> str | None:
        """A `released` or `checked` answer into the lease's state (under `_state`); what to say, if anything."""
        if event["event"] == "retrying":  # edgekit is done: the helper goes on trying on its own
            self._retrying = int(event.get("pid") or self.proc.pid)
            self._retry_s = float(event.get("for_s") or self._retry_s)
            return None
        if event["event"] == "abandoned":  # SIGTERM (or its time was up) while it still retried
            return f"lab: warning: the lab helper (pid {self._retrying or self.proc.pid}) stopped: {event.get('message')}"
        if event["event"] == "retried":  # a later try gave it back (or found it no longer ours)
            place = str(event.get("place"))
            self.unreleased.pop(place, None)
            if "lost_to" in event:
                now = f"now held by {event['lost_to']}" if event["lost_to"] else "free now"
                return self._lose(place, now)
            return f"lab: {place} released on a later try (the coordinator answered again)"
        place, checked = str(event.get("place")), event["event"] == "checked"
        if checked:
            self._checked[place] = self._checked.get(place, 0) + 1
        if "lost_to" in event:
            now = f"now held by {event['lost_to']}" if event["lost_to"] else "free now"
            return self._lose(place, now + (f"; {event['why']}" if event.get("why") else ""))
        if not checked:
            self.release_s[place] = float(event.get("seconds") or 0.0)
        if not event.get("error"):
            self._check_warned.pop(place, None)
            return None
        if checked:  # the coordinator could not say: the place is taken as still held
            if self._check_warned.get(place) == str(event["error"]):
                return None
            self._check_warned[place] = str(event["error"])
            return f"lab: warning: could not check that {place} is still held by this run: {event['error']}"
        self.unreleased[place] = str(event["error"])
        # "release pending" is said once its retries had a moment to get an answer (_end)
        if event.get("retry_s"):
            self._retry_s = float(event["retry_s"])
            return f"lab: warning: {place} was not released: {event['error']}; the lab helper tries again"
        return (
            f"lab: warning: {place} was not released: {event['error']}; `{lab_command(self.coordinator)}` shows who holds it, "
            f"`{lab_command(self.coordinator, 'release', place)}` frees it"
        )

    def _await_acquired(self) -> None:
        deadline = (
            time.monotonic() + self.spec.wait_s + 60.0
        )  # the helper times out first; this is a backstop
        while True:
            try:
                event = self._events.get(timeout=min(3600.0, max(1.0, deadline - time.monotonic())))
            except queue.Empty:
                if time.monotonic() < deadline:
                    continue
                raise LabError(
                    f"the labgrid helper said nothing for {self.spec.wait_s + 60:.0f} s",
                    where=self.coordinator,
                ) from None
            if event is None:
                code = self.proc.wait()
                self._err_reader.join(timeout=5)
                raise LabError(
                    f"the labgrid helper exited ({code}) before acquiring: {''.join(self._err).strip()[-400:]}",
                    where=self.coordinator,
                )
            kind = event["event"]
            if kind == "acquired":
                self.places = [parse_place(p) for p in event["places"]]
                self.acquire_s = float(event.get("seconds") or 0.0)
                return
            if kind == "error":
                error = event_error(event, self.coordinator)
                if isinstance(error, LabWaitTimeout) and self.refused:
                    raise LabWaitTimeout(
                        error.message + self._refused_note(), where=error.where, hint=error.hint
                    )
                raise error
            if kind == "waiting":
                holders = "; ".join(
                    f"{h['place']} held by {holder_text(held_place(h))}" for h in event["holders"]
                )
                self.say(
                    f"lab: waiting for a free place with {self.spec.wanted()} ({event['waited_s']:.0f} s of "
                    f"{self.spec.wait_s:.0f} s): {holders or 'none free'}{skipped_note(event)}{self._refused_note()}"
                )
            elif kind == "stale-released":
                self.say(
                    f"lab: {event['place']} was held by a dead edgekit ({event['holder']}): released"
                    + (f" (failed: {event['error']})" if event.get("error") else "")
                )

    def _refused_note(self) -> str:
        """The places edgekit refuses (their name or NetworkService), as a waiting or timeout line's tail."""
        if not self.refused:
            return ""
        return "; refused by edgekit (never taken): " + "; ".join(
            f"{name} ({why})" for name, why in sorted(self.refused.items())
        )

    def _until(self, done: Callable[[], bool], timeout_s: float) -> bool:
        """Wait (bounded) for the helper's answers to make `done` true, or for the helper to end."""
        deadline = time.monotonic() + timeout_s
        with self._state:
            while not done() and not self._ended and time.monotonic() < deadline:
                self._state.wait(timeout=max(0.05, deadline - time.monotonic()))
            return done()

    def release(self, name: str | None = None, timeout_s: float | None = None) -> None:
        """Give back one place (or all); waits for the coordinator's answer, bounded (30 s at the helper's default
        bounds, longer as they are raised: client.waited_s). A place taken from this run is never released by it
        (it is someone else's now, or free), only said and kept in `lost`."""
        timeout_s = waited_s(30.0) if timeout_s is None else timeout_s
        with self._lock:
            with self._state:
                names = [
                    p.name
                    for p in self.places
                    if name in (None, p.name) and p.name not in self.release_s and p.name not in self.lost
                ]

            def settled() -> bool:
                return all(n in self.release_s or n in self.lost for n in names)

            if names and not (self._send({"release": names}) and self._until(settled, timeout_s)):
                with self._state:
                    left = [n for n in names if n not in self.release_s and n not in self.lost]
                if self._ended or self.proc.poll() is not None:
                    self._helper_gone(left, release=True)
                else:  # no answer in time: the helper goes on trying when its stdin closes (_end)
                    for place in left:
                        self.say(
                            f"lab: warning: {place} may still be held: the coordinator did not confirm its release "
                            f"within {timeout_s:g} s; if `{lab_command(self.coordinator)}` shows it held by this edgekit, "
                            f"`{lab_command(self.coordinator, 'release', place)}`"
                        )
            with self._state:
                every = all(p.name in self.release_s or p.name in self.lost for p in self.places)
            if name is None or every:
                self._end()

    def check(self, name: str, timeout_s: float | None = None) -> str | None:
        """Whether `name` is still this run's, asked of the coordinator now: None while it is, else who holds it
        now (also in `lost`, and said once). A coordinator that cannot say (down, no answer in time: 30 s at the
        helper's default bounds, longer as they are raised) leaves it as held: the run is not failed for that."""
        timeout_s = waited_s(30.0) if timeout_s is None else timeout_s
        with self._lock:
            with self._state:
                if name in self.lost or name in self.release_s:
                    return self.lost.get(name)
                asked = self._checked.get(name, 0)

            def answered() -> bool:
                return name in self.lost or self._checked.get(name, 0) > asked

            unanswered = not (self._send({"check": [name]}) and self._until(answered, timeout_s))
            if unanswered and (self._ended or self.proc.poll() is not None):
                self._helper_gone([name], release=False)
            return self.lost.get(name)

    def close(self) -> None:
        self.release()
        self._end()

    def _end(self, wait_s: float | None = None) -> None:
        _LIVE.discard(self)
        super()._end(wait_s)

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PlaceHold:
    """One place of a Lease as the board's transport sees it (edgekit/transport/leased.py) in a nightly, where a
    board runs recipe after recipe and the night gives its place back once its queue is empty: closing the
    transport after a recipe asks whether the place is still this run's, so a deploy fails the run of a board
    taken from it (place_lost) exactly as a deploy of its own does at its release."""

    def __init__(self, lease: Lease) -> None:
        self.lease = lease

    def release(self, name: str) -> None:
        self.lease.check(name)

    @property
    def lost(self) -> dict[str, str]:
        return self.lease.lost


_LIVE: set[Lease] = set()


@atexit.register
def _release_at_exit() -> None:
    for lease in list(_LIVE):
        lease.close()
