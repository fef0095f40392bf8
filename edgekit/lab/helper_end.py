"""How a lab lease's helper ends (edgekit/lab/lease.py's Lease inherits HelperEnd): its pipe closed, a release
the coordinator did not answer left to it (it goes on trying on its own: "release pending", said only once its
first retries had a moment to get an answer), a helper that died while it held places (the coordinator asked
whether each is still this run's), and a place taken from this run (lost)."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from pathlib import Path

from edgekit.lab.client import LabClient, Say, waited_s
from edgekit.lab.errors import LabError, lab_command
from edgekit.lab.place import Place, holder_text

RETRY_GRACE_S = 12.0  # how long edgekit waits for the helper's first retries before saying "release pending"


def retry_grace_s() -> float:
    """RETRY_GRACE_S, or $EDGEKIT_LAB_RETRY_GRACE_S when it is a positive number (the tests whose coordinator stays
    frozen through it set a short one: nothing can answer in it); read as the helper reads its own bounds."""
    from edgekit.lab.helper import seconds

    return seconds("EDGEKIT_LAB_RETRY_GRACE_S", RETRY_GRACE_S)


class HelperEnd:
    """The end of the helper of a Lease (its state is the Lease's: see lease.py)."""

    proc: subprocess.Popen[str]
    coordinator: str
    say: Say
    places: list[Place]
    release_s: dict[str, float]
    lost: dict[str, str]
    unreleased: dict[str, str]
    _state: threading.Condition
    _retrying: int | None
    _retry_s: float
    _log: Path
    _pending_said: set[str]
    _left: bool
    _reader: threading.Thread
    _err_reader: threading.Thread
    _ended: bool

    def _send(self, command: dict[str, list[str]] | dict[str, str]) -> bool:
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

    def _pending_text(self, place: str, retry_s: float, pid: int) -> str:
        """What a place whose release the helper goes on trying means: for how long, what a teammate sees, and
        the command that frees it at once."""
        held = next((p for p in self.places if p.name == place), None)
        who = holder_text(held).split(" for ")[0] if held is not None and held.holder else "this edgekit"
        return (
            f"{place}: release pending: the lab helper keeps trying for up to {retry_s / 60:.0f} min, pid {pid}, "
            f"after this edgekit is done; until then teammates see {place} held by {who} and wait for it "
            f"(from another host they cannot tell this edgekit is gone); `{lab_command(self.coordinator, 'release', place)}` frees it; "
            f"`kill {pid}` stops it after one last try; what became of it: {self._log}"
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
                            f"{exc.message}; `{lab_command(self.coordinator, 'release', place)}` frees it once this edgekit has exited"
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

    def _end(self, wait_s: float | None = None) -> None:
        """Close the helper's stdin (it releases what it still holds and exits) and wait for it, bounded (15 s at
        the helper's default bounds, longer as they are raised: client.waited_s). A helper
        still giving places back (a release the coordinator did not answer: it goes on trying on its own for a
        bounded time, in a session of its own) is left to it, and said; one that holds nothing and hangs is
        killed. Once left to it (`_leave`), a second call (Lease.close's, after its release's) does nothing: it sat
        through the grace again."""
        if self._left:
            return
        if self.proc.poll() is None:
            if (
                self.places
            ):  # where its retries, if any, say what became of the places; a helper still waiting
                # to acquire reads no command, and a line left in its pipe hides the end of it (it waited to be
                # killed: a SIGTERM to a waiting deploy took 15 s)
                self._send({"log": str(self._log)})
            try:
                if self.proc.stdin is not None:
                    self.proc.stdin.close()
            except OSError:
                pass
            deadline = time.monotonic() + (waited_s(15.0) if wait_s is None else wait_s)
            with self._state:
                while self.proc.poll() is None and self._retrying is None and time.monotonic() < deadline:
                    self._state.wait(timeout=0.1)
                # a coordinator only slow (paused a moment) answers its first retries: "pending" said only after
                grace = time.monotonic() + retry_grace_s()
                while (
                    self._retrying is not None
                    and self.proc.poll() is None
                    and any(p not in self.lost for p in self.unreleased)
                    and time.monotonic() < grace
                ):
                    self._state.wait(timeout=0.1)
            if self.proc.poll() is None:
                with self._state:
                    left = [
                        p.name
                        for p in self.places
                        if p.name not in self.lost
                        and (p.name not in self.release_s or p.name in self.unreleased)
                    ]
                if self._retrying is not None or left:
                    self._leave(left)
                    return
                self.proc.kill()  # nothing left to give back: stuck closing its session
                self.proc.wait()
        self._reader.join(timeout=5)  # it reads stdout to its end: closed under it, it would raise
        self._err_reader.join(timeout=5)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass

    def _leave(self, places: list[str]) -> None:
        """The helper goes on giving `places` back on its own: said for each not said yet; its pipes are left to
        it (the reader threads end when it closes them; they are daemons)."""
        pid = self._retrying or self.proc.pid
        with self._state:
            self._left = True
            unsaid = [p for p in places if p not in self._pending_said]
            self._pending_said.update(unsaid)
        for place in unsaid:
            self.say("lab: warning: " + self._pending_text(place, self._retry_s, pid))
        # reaped when it is done (never a zombie of a long nightly, nor a Popen collected while it runs)
        threading.Thread(target=self.proc.wait, name="lab-helper-reaper", daemon=True).start()
        for thread, stream in ((self._reader, self.proc.stdout), (self._err_reader, self.proc.stderr)):
            if stream is not None and not thread.is_alive():  # else the thread closes it at its end
                stream.close()
