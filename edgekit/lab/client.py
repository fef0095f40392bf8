"""edgekit's side of the boundary to labgrid: runs edgekit/lab/helper.py with labgrid's own python and turns
its JSON lines into typed objects (Place; the Lease of held places is lease.py) and named errors.

"""

from __future__ import annotations

import getpass
import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekit.errors import Interrupted
from edgekit.lab.errors import (
    LabError,
    LabSetupError,
    LabWaitTimeout,
    SamePlaceTwice,
    lab_command,
    no_matching_place,
    no_reachable_place,
)
from edgekit.lab.place import Place, held_place, holder_text, parse_place
from edgekit.paths import data_dir, source_checkout
from edgekit.target import LabSpec

if TYPE_CHECKING:
    from edgekit.lab.lease import Lease

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


BOUNDS = (
    "EDGEKIT_LAB_CALL_S",
    "EDGEKIT_LAB_CONNECT_S",
    "EDGEKIT_LAB_LAST_TRY_S",
    "EDGEKIT_LAB_RETRY_GRACE_S",
)


def check_bounds() -> None:
    """The lab helper's bounds as set ($EDGEKIT_LAB_CALL_S, ...): one that is no usable number of seconds (`inf`,
    `1e10`, `5s`, `0`, `-3`, `nan`) is the user's setting, a UsageError naming it (exit 2) before any helper runs;
    it was taken (and `inf` crashed the helper's retries) or silently replaced by the default."""
    from edgekit.errors import UsageError
    from edgekit.lab.helper import MAX_BOUND_S, usable_seconds

    for variable in BOUNDS:
        raw = os.environ.get(variable, "").strip()
        if raw and usable_seconds(raw) is None:
            raise UsageError(
                f"{variable}={raw!r} is not a usable number of seconds: give one above 0 and at most "
                f"{MAX_BOUND_S:.0f}",
                where=f"${variable}",
                hint=f"seconds without a unit, e.g. {variable}=60 (`5s` is not understood); unset it for the default",
            )


def waited_s(today: float, calls: int = 1) -> float:
    """One of edgekit's waits for the helper's answer: `today` at the helper's default bounds, longer by as much as
    $EDGEKIT_LAB_CONNECT_S (one session opened) and $EDGEKIT_LAB_CALL_S (`calls` calls) raise the helper's own
    bounds, never shorter. Fixed, they gave up on a helper that was still within the bounds set for a slow lab
    network (`did not confirm its release within 30 s` with CALL_S and CONNECT_S of 60 s)."""
    from edgekit.lab.helper import CALL_DEFAULT_S, CONNECT_DEFAULT_S, seconds

    call = seconds("EDGEKIT_LAB_CALL_S", CALL_DEFAULT_S)
    connect = seconds("EDGEKIT_LAB_CONNECT_S", CONNECT_DEFAULT_S)
    return today + max(0.0, connect - CONNECT_DEFAULT_S) + calls * max(0.0, call - CALL_DEFAULT_S)


class LabClient:
    """One coordinator, reached through the helper (short commands run to completion; `hold` stays)."""

    def __init__(self, coordinator: str, timeout_s: float | None = None) -> None:
        check_bounds()  # every helper is started through a LabClient: a bad bound is said before the first
        self.coordinator = coordinator
        # a short command: a session opened, then at most two calls (a release and its sync); 30 s by default
        self.timeout_s = waited_s(30.0, calls=2) if timeout_s is None else timeout_s

    def _argv(self, *args: str) -> list[str]:
        # one word: an address starting with '-' is never read as an option of the helper's
        return [str(lab_python()), str(HELPER), f"--coordinator={self.coordinator}", *args]

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
            raise event_error(last, self.coordinator)
        return last

    def places(self) -> list[Place]:
        return [parse_place(p) for p in self._run("places")["places"]]

    def release_from(self, place: str, holder: str) -> None:
        """Release `place` only while `holder` still holds it (a stale hold; never someone's new one)."""
        last = self._run("release-from", f"--place={place}", f"--holder={holder}")
        if last.get("error"):
            raise LabError(f"cannot release {place}: {last['error']}", where=self.coordinator)

    def kick(self, place: str) -> str | None:
        """Release `place` whoever holds it; returns whom it was taken from."""
        last = self._run("kick", f"--place={place}")
        if last.get("error"):
            raise LabError(f"cannot release {place}: {last['error']}", where=self.coordinator)
        return last.get("holder")

    def define(self, places: list[tuple[str, list[str], dict[str, str]]]) -> None:
        """Create each (place, matches, tags) if new, add its matches (exporter/group/cls), set its tags: what an
        admin does with labgrid-client create / add-match / set-tags, in one session."""
        self._run(
            "define", "--places=" + json.dumps([{"place": p, "matches": m, "tags": t} for p, m, t in places])
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
        # OPTION=VALUE, one word each: a value starting with '-' (a place `-h`) is never read as an option
        args = ["hold", f"--count={count}", f"--wait={spec.wait_s}"]
        args += [f"--tag={k}={v}" for k, v in spec.tags.items()]
        args += [f"--place={spec.place}"] if spec.place else []
        args += [f"--avoid={name}" for name in sorted(spec._avoid)]
        env = {**os.environ, "LG_USERNAME": holder_name()}
        proc = subprocess.Popen(
            self._argv(*args),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )  # leaves our group once it holds
        from edgekit.lab.lease import Lease  # the lease asks this client the coordinator's view of its places

        return Lease(proc, spec, self.coordinator, say or (lambda _m: None), started)


def skipped_note(event: dict[str, Any]) -> str:
    """The places left out because no exporter offers their NetworkService, as the waiting line's tail."""
    names = event.get("skipped") or []
    return f"; skipped (no available NetworkService: exporter down?): {', '.join(names)}" if names else ""


def event_error(event: dict[str, Any], coordinator: str) -> LabError | Interrupted:
    kind, message = event.get("kind"), str(event.get("message"))
    if kind == "timeout":
        holders = "; ".join(
            f"{h['place']} held by {holder_text(held_place(h))}" for h in event.get("holders", [])
        )
        wanted = " ".join(f"{k}={v}" for k, v in (event.get("tags") or {}).items())
        return LabWaitTimeout(
            f"no free place with {wanted or 'the name asked for'}: {message}; {holders}{skipped_note(event)}",
            where=coordinator,
            hint=f"{lab_command(coordinator)} (who holds what); wait longer with lab.wait_s in the target file; "
            f"a holder that is gone: {lab_command(coordinator, 'release', 'PLACE')}",
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
