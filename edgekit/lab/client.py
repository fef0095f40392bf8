"""edgekit's side of the boundary to labgrid: runs edgekit/lab/helper.py with labgrid's own python and turns
its JSON lines into typed objects (Place, Lease) and named errors.

The helper that holds places is a child whose stdin is a pipe from this process: when edgekit ends in any way,
even SIGKILL, the pipe closes and the helper releases every place it holds. While it waits it shares edgekit's
process group (a Ctrl-C at the terminal ends the wait at once); once it holds places it moves to a session of its
own (edgekit handles the Ctrl-C and tells it to release; killing edgekit's group leaves it to release).
"""

from __future__ import annotations

import atexit
import getpass
import json
import os
import queue
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
    """The labgrid user this process holds places as: USER.edgekit-PID-START (see helper.py)."""
    with open(f"/proc/{os.getpid()}/stat") as fh:
        start = fh.read().rsplit(")", 1)[1].split()[19]
    return f"{getpass.getuser()}.edgekit-{os.getpid()}-{start}"


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
    this process dies). Construction waits until the places are acquired or raises a named error."""

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
        self._events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, name="lab-lease", daemon=True)
        self._reader.start()
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
            if line.startswith("{"):
                self._events.put(json.loads(line))
        self._events.put(None)

    def _await_acquired(self) -> None:
        deadline = (
            time.monotonic() + self.spec.wait_s + 60.0
        )  # the helper times out first; this is a backstop
        while True:
            try:
                event = self._events.get(timeout=max(1.0, deadline - time.monotonic()))
            except queue.Empty:
                raise LabError(
                    f"the labgrid helper said nothing for {self.spec.wait_s + 60:.0f} s",
                    where=self.coordinator,
                ) from None
            if event is None:
                err = self.proc.stderr.read() if self.proc.stderr else ""
                raise LabError(
                    f"the labgrid helper exited ({self.proc.wait()}) before acquiring: {err.strip()[-400:]}",
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

    def release(self, name: str | None = None, timeout_s: float = 30.0) -> None:
        """Give back one place (or all); waits for the coordinator's answer, bounded."""
        with self._lock:
            names = [p.name for p in self.places if p.name not in self.release_s and (name in (None, p.name))]
            if not names or self.proc.poll() is not None:
                return
            try:
                assert self.proc.stdin is not None  # Popen(stdin=PIPE)
                self.proc.stdin.write(f"release {' '.join(names)}\n")
                self.proc.stdin.flush()
            except OSError:
                return  # the helper is gone: its stdin closing released the places
            deadline = time.monotonic() + timeout_s
            while names and time.monotonic() < deadline:
                try:
                    event = self._events.get(timeout=max(0.1, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if event is None:
                    break
                if event["event"] == "released" and event["place"] in names:
                    names.remove(event["place"])
                    self.release_s[event["place"]] = float(event.get("seconds") or 0.0)
                    self._said_released(event)
            for left in names:  # no answer in time: the helper goes on trying when its stdin closes (_end)
                self.say(
                    f"lab: warning: {left} may still be held: the coordinator did not confirm its release within "
                    f"{timeout_s:g} s; if `edgekit lab` shows it held by this edgekit, `edgekit lab release {left}`"
                )
            if name is None or len(self.release_s) == len(self.places):
                self._end()

    def _said_released(self, event: dict[str, Any]) -> None:
        """A release that did not happen, or a place taken from this run before it ended, said as a warning: the
        figures measured on a board someone else used meanwhile may have shared it."""
        place = event["place"]
        if "lost_to" in event:
            now = f"now held by {event['lost_to']}" if event["lost_to"] else "free now"
            self.lost[place] = now
            self.say(
                f"lab: warning: {place} was taken from this run before it ended (released by someone else; "
                f"{now}): measurements made after that may have shared the board; not released by edgekit"
            )
        elif event.get("error"):
            self.say(
                f"lab: warning: {place} was not released: {event['error']}; `edgekit lab` shows who holds it, "
                f"`edgekit lab release {place}` frees it"
            )

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
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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
