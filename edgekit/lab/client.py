"""edgekit's side of the boundary to labgrid: runs edgekit/lab/helper.py with labgrid's own python and turns
its JSON lines into typed objects (Place, Lease) and named errors.

The helper that holds places is a child whose stdin is a pipe from this process: when edgekit ends in any way,
even SIGKILL, the pipe closes and the helper releases every place it holds. While it waits it shares edgekit's
process group (a Ctrl-C at the terminal ends the wait at once); once it holds places it moves to a session of its
own and ignores SIGINT and SIGTERM (edgekit handles them and tells it to release; killing edgekit's group, or
systemd's stop signalling every process of the unit, leaves it to release when edgekit says so or is gone).
"""

from __future__ import annotations

import atexit
import collections
import getpass
import json
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgekit.errors import Interrupted
from edgekit.lab.errors import (
    LabError,
    LabSetupError,
    LabWaitTimeout,
    SamePlaceTwice,
    no_matching_place,
    no_reachable_place,
)
from edgekit.lab.place import Place, held_place, holder_text, parse_place
from edgekit.paths import data_dir, source_checkout
from edgekit.target import LabSpec

HELPER = Path(__file__).with_name("helper.py")
Say = Callable[[str], None]


def lab_python() -> Path:
    """labgrid's python: $EDGEKIT_LAB_PYTHON, else the repo's .venv-lab (made by `make setup`)."""
    path = Path(
        os.environ.get("EDGEKIT_LAB_PYTHON")
        or (source_checkout() or data_dir()) / ".venv-lab" / "bin" / "python"
    )
    if not path.exists():
        raise LabSetupError(
            f"labgrid's environment is missing ({path})",
            where="edgekit lab",
            hint="make setup (creates .venv-lab from constraints-lab.txt), or set "
            "EDGEKIT_LAB_PYTHON to a python that has labgrid 26",
        )
    return path


def holder_name() -> str:
    """The labgrid user this process holds places as: USER.edgekit-PID-START-mMACHINEbBOOTnPIDNS (helper.py)."""
    from edgekit.lab.helper import identity

    with open(f"/proc/{os.getpid()}/stat") as fh:
        start = fh.read().rsplit(")", 1)[1].split()[19]
    return f"{getpass.getuser()}.edgekit-{os.getpid()}-{start}-{identity()}"


class LabClient:
    """One coordinator, reached through the helper (short commands run to completion; `hold` stays)."""

    def __init__(self, coordinator: str, timeout_s: float = 30.0) -> None:
        self.coordinator = coordinator
        self.timeout_s = timeout_s

    def _argv(self, *args: str) -> list[str]:
        return [str(lab_python()), str(HELPER), "--coordinator", self.coordinator, *args]

    def _run(self, *args: str) -> dict[str, Any]:
        try:
            proc = subprocess.run(
                self._argv(*args),
                capture_output=True,
                text=True,
                timeout=self.timeout_s,
                stdin=subprocess.DEVNULL,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise LabError(
                f"no answer from the coordinator within {self.timeout_s:g} s", where=self.coordinator
            ) from None
        events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
        if not events:
            raise LabError(
                f"the labgrid helper said nothing (exit {proc.returncode}): {proc.stderr.strip()[-400:]}",
                where=self.coordinator,
            )
        last: dict[str, Any] = events[-1]
        if last["event"] == "error":
            raise _error(last, self.coordinator)
        return last

    def places(self) -> list[Place]:
        return [parse_place(p) for p in self._run("places")["places"]]

    def release_from(self, place: str, holder: str) -> None:
        """Release `place` only while `holder` still holds it (a stale hold; never someone's new one)."""
        last = self._run("release-from", "--place", place, "--holder", holder)
        if last.get("error"):
            raise LabError(f"cannot release {place}: {last['error']}", where=self.coordinator)

    def kick(self, place: str) -> str | None:
        """Release `place` whoever holds it; returns whom it was taken from."""
        last = self._run("kick", "--place", place)
        if last.get("error"):
            raise LabError(f"cannot release {place}: {last['error']}", where=self.coordinator)
        return last.get("holder")

    def define(self, places: list[tuple[str, list[str], dict[str, str]]]) -> None:
        """Create each (place, matches, tags) if new, add its matches (exporter/group/cls), set its tags: what an
        admin does with labgrid-client create / add-match / set-tags, in one session."""
        self._run(
            "define", "--places", json.dumps([{"place": p, "matches": m, "tags": t} for p, m, t in places])
        )

    def hold(
        self,
        spec: LabSpec,
        *,
        count: int = 1,
        say: Say | None = None,
        started: Callable[[Lease], None] | None = None,
    ) -> Lease:
        """Wait (up to spec.wait_s) for free matching places, acquire `count` of them (0: every free one, at
        least one) and return the Lease that holds them. `started` gets the Lease before the wait (another thread
        may close it to end the wait)."""
        args = ["hold", "--count", str(count), "--wait", str(spec.wait_s)]
        args += [a for k, v in spec.tags.items() for a in ("--tag", f"{k}={v}")]
        args += ["--place", spec.place] if spec.place else []
        env = {**os.environ, "LG_USERNAME": holder_name()}
        proc = subprocess.Popen(
            self._argv(*args),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )  # leaves our group once it holds
        return Lease(proc, spec, self.coordinator, say or (lambda _m: None), started)


class Lease:
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
        self._ended = False  # the helper's stdout ended: it has exited (every answer is read)
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
            if event.get("event") in ("released", "checked"):
                with self._state:
                    said = self._apply(event)
                    self._state.notify_all()
                if said:
                    self.say(said)
            else:
                self._events.put(event)
        with self._state:
            self._ended = True
            self._state.notify_all()
        self._events.put(None)

    def _read_err(self) -> None:
        """labgrid's and gRPC's own output, kept short: read all along, so a long hold never fills the pipe."""
        assert self.proc.stderr is not None  # Popen(stderr=PIPE)
        for line in self.proc.stderr:
            self._err.append(line)

    def _apply(self, event: dict[str, Any]) -> str | None:
        """A `released` or `checked` answer into the lease's state (under `_state`); what to say, if anything."""
        place, checked = str(event.get("place")), event["event"] == "checked"
        if checked:
            self._checked[place] = self._checked.get(place, 0) + 1
        if "lost_to" in event:
            now = f"now held by {event['lost_to']}" if event["lost_to"] else "free now"
            return self._lose(place, now + (f"; {event['why']}" if event.get("why") else ""))
        if not checked:
            self.release_s[place] = float(event.get("seconds") or 0.0)
        if not event.get("error"):
            return None
        if checked:  # the coordinator could not say: the place is taken as still held
            return f"lab: warning: could not check that {place} is still held by this run: {event['error']}"
        return (
            f"lab: warning: {place} was not released: {event['error']}; `edgekit lab` shows who holds it, "
            f"`edgekit lab release {place}` frees it"
        )

    def _lose(self, place: str, now: str) -> str | None:
        """`place` was taken from this run (under `_state`): the warning, once."""
        if place in self.lost:
            return None
        self.lost[place] = now
        return (
            f"lab: warning: {place} was taken from this run before it ended (released by someone else; "
            f"{now}): measurements made after that may have shared the board; not released by edgekit"
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
                raise _error(event, self.coordinator)
            if kind == "waiting":
                holders = "; ".join(
                    f"{h['place']} held by {holder_text(held_place(h))}" for h in event["holders"]
                )
                self.say(
                    f"lab: waiting for a free place with {self.spec.wanted()} ({event['waited_s']:.0f} s of "
                    f"{self.spec.wait_s:.0f} s): {holders or 'none free'}{_skipped(event)}"
                )
            elif kind == "stale-released":
                self.say(
                    f"lab: {event['place']} was held by a dead edgekit ({event['holder']}): released"
                    + (f" (failed: {event['error']})" if event.get("error") else "")
                )

    def _send(self, command: dict[str, list[str]]) -> bool:
        """A command to the helper; False when it is gone (exited, or its stdin closed)."""
        if self.proc.poll() is not None or self._ended:
            return False
        try:
            assert self.proc.stdin is not None  # Popen(stdin=PIPE)
            self.proc.stdin.write(json.dumps(command) + "\n")
            self.proc.stdin.flush()
        except (OSError, ValueError):
            return False
        return True

    def _until(self, done: Callable[[], bool], timeout_s: float) -> bool:
        """Wait (bounded) for the helper's answers to make `done` true, or for the helper to end."""
        deadline = time.monotonic() + timeout_s
        with self._state:
            while not done() and not self._ended and time.monotonic() < deadline:
                self._state.wait(timeout=max(0.05, deadline - time.monotonic()))
            return done()

    def release(self, name: str | None = None, timeout_s: float = 30.0) -> None:
        """Give back one place (or all); waits for the coordinator's answer, bounded. A place taken from this run
        is never released by it (it is someone else's now, or free), only said and kept in `lost`."""
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
                            f"within {timeout_s:g} s; if `edgekit lab` shows it held by this edgekit, "
                            f"`edgekit lab release {place}`"
                        )
            with self._state:
                every = all(p.name in self.release_s or p.name in self.lost for p in self.places)
            if name is None or every:
                self._end()

    def check(self, name: str, timeout_s: float = 30.0) -> str | None:
        """Whether `name` is still this run's, asked of the coordinator now: None while it is, else who holds it
        now (also in `lost`, and said once). A coordinator that cannot say (down, no answer in time) leaves it
        as held: the run is not failed for that."""
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

    def _helper_gone(self, names: list[str], *, release: bool) -> None:
        """The helper ended while it held `names` (SIGKILL, OOM, a crash): what it still held is acquired under
        this process's holder name until someone kicks it, and whether it stayed ours is for the coordinator to
        say. Still ours: given back now (`release`) or left held (a check); not ours: lost, said."""
        try:
            code = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
        how = (
            "stopped answering"
            if code is None
            else f"was killed ({signal.Signals(-code).name})"
            if code < 0
            else f"exited ({code})"
        )
        mine = {p.name: p.holder for p in self.places}
        client = LabClient(self.coordinator)
        said: list[str | None] = []
        try:
            now = {p.name: p.holder for p in client.places()}
        except LabError as exc:
            with self._state:
                for place in names:
                    said.append(
                        self._lose(
                            place,
                            f"unknown: the lab helper holding it {how}, and the coordinator could not be asked: "
                            f"{exc.message}",
                        )
                    )
        else:
            for place in names:
                holder = now.get(place)
                if holder is None or holder != mine.get(place):
                    with self._state:
                        said.append(
                            self._lose(
                                place,
                                f"{f'now held by {holder}' if holder else 'free now'}; the lab helper holding it "
                                f"{how}",
                            )
                        )
                elif release:
                    t0 = time.monotonic()
                    try:
                        client.release_from(place, holder)
                    except LabError as exc:
                        said.append(
                            f"lab: warning: {place} was not released: the lab helper holding it {how}, and "
                            f"{exc.message}; `edgekit lab release {place}` frees it once this edgekit has exited"
                        )
                        continue
                    with self._state:
                        self.release_s[place] = round(time.monotonic() - t0, 3)
                    said.append(
                        f"lab: the lab helper holding {place} {how}; it was still this run's: released"
                    )
        for line in said:
            if line:
                self.say(line)

    def close(self) -> None:
        self.release()
        self._end()

    def _end(self) -> None:
        _LIVE.discard(self)
        if self.proc.poll() is None:
            try:
                if self.proc.stdin is not None:
                    self.proc.stdin.close()  # the helper releases what it still holds and exits
                self.proc.wait(timeout=15)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self._reader.join(timeout=5)  # it reads stdout to its end: closed under it, it would raise
        self._err_reader.join(timeout=5)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass

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


def _skipped(event: dict[str, Any]) -> str:
    """The places left out because no exporter offers their NetworkService, as the waiting line's tail."""
    names = event.get("skipped") or []
    return f"; skipped (no available NetworkService: exporter down?): {', '.join(names)}" if names else ""


def _error(event: dict[str, Any], coordinator: str) -> LabError | Interrupted:
    kind, message = event.get("kind"), str(event.get("message"))
    if kind == "timeout":
        holders = "; ".join(
            f"{h['place']} held by {holder_text(held_place(h))}" for h in event.get("holders", [])
        )
        wanted = " ".join(f"{k}={v}" for k, v in (event.get("tags") or {}).items())
        return LabWaitTimeout(
            f"no free place with {wanted or 'the name asked for'}: {message}; {holders}{_skipped(event)}",
            where=coordinator,
            hint="edgekit lab (who holds what); wait longer with "
            "lab.wait_s in the target file; a holder that is gone: edgekit lab release PLACE",
        )
    asked = " ".join(
        [f"place {n}" for n in event.get("names") or []]
        + [f"{k}={v}" for k, v in (event.get("tags") or {}).items()]
    )
    if kind == "no-service":
        return no_reachable_place(asked or "any name", list(event.get("places") or []), coordinator)
    if kind == "same-run":
        places = ", ".join(event.get("places") or [])
        return SamePlaceTwice(
            f"every place matching {asked or 'the name asked for'} ({places}) is already held by this edgekit for "
            "another target of the same run: a board is measured once per run",
            where=coordinator,
            hint="give one lab target per board type (`--target lab:board=pi4` and `--target lab-pi4` are the "
            "same boards), or add places to the lab",
        )
    if kind == "no-match":
        return no_matching_place(asked or "any place", list(event.get("known") or []), coordinator)
    if kind == "interrupted":
        return Interrupted(message, where=coordinator)
    if kind == "coordinator":
        said = message.removeprefix(f"cannot reach the coordinator at {coordinator}: ")
        return LabError(
            f"cannot reach the labgrid coordinator: {said}",
            where=coordinator,
            hint="is it running (labgrid-coordinator -l HOST:PORT)? the address comes from the target's "
            "lab.coordinator, else $LG_COORDINATOR, else 127.0.0.1:20408",
        )
    return LabError(message, where=coordinator)


_LIVE: set[Lease] = set()


@atexit.register
def _release_at_exit() -> None:
    for lease in list(_LIVE):
        lease.close()
