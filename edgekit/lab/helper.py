"""The labgrid side of edgekit: a standalone script run by labgrid's own python (.venv-lab), never by edgekit's.

labgrid 26 needs protobuf >= 5.29.6, the toolchain's onnx2tf pins 4.25.5: the two never share a venv. This
file imports labgrid and the standard library only (never edgekit), talks to the coordinator through labgrid's
own ClientSession, and answers in JSON, one object per line on stdout (edgekit/lab/client.py reads them).

    places                      {"places": [...]} once
    hold --tag K=V --count N    waits for free matching places, acquires them, then holds them until edgekit
                                says so on its stdin (one JSON object a line: {"release": [PLACE...]}, every
                                place when the list is empty; {"check": [PLACE...]}: still ours?) or its stdin
                                closes; {"log": PATH}: where retries write); events: waiting, stale-released,
                                acquired, released, checked, retrying, retried, abandoned, error. A release the
                                coordinator does not answer is tried again once edgekit's pipe closes (`released`
                                says `retry_s` and `pid`; `retrying` once edgekit is done; `retried` when a try
                                gives it back), for up to RETRY_S, by this helper alone, out of edgekit's way;
                                SIGTERM ends the retries after one last quick try (`abandoned`: how to free it). A
                                place without an available NetworkService (its exporter is gone) is never
                                acquired: skipped, and said while waiting; a place this same edgekit holds (for
                                another target of its run) is never taken a second time.
    release-from --place P --holder HOST/USER   releases P only while HOST/USER still holds it
    kick --place P              releases P whoever holds it
    define --places JSON        [{"place", "matches", "tags"}]: each place created (if new), matched, tagged

An edgekit holder names itself `USER.edgekit-PID-START-mMACHINEbBOOTnPIDNS` (LG_USERNAME): PID and START (the
process's start time in clock ticks since boot) of the edgekit process it holds for, and where that PID means
something: MACHINE and BOOT (short hashes of /etc/machine-id and the kernel's boot id) and PIDNS (its PID
namespace). The holder keeps the place while that process lives: its stdin closes when edgekit exits in any way
(even SIGKILL) and every place is released then, whether or not anyone still reads what it says. If both die at
once (power loss), a later edgekit on the same host finds the place held by a dead edgekit and releases it with
release-from (atomic: nothing is released that someone else took meanwhile). Dead means: this machine rebooted
since (same machine, another boot), or the same boot and PID namespace and the PID gone or reused. A holder in
another PID namespace (a container sharing the host's name), on another machine of the same name, hidden by
/proc's hidepid, or named in the older form without MACHINE/BOOT/PIDNS, is never judged dead from here.

A place is ours while the coordinator records this holder on it. A teammate's kick, or a coordinator restart
(labgrid 26 forgets every hold when it starts), ends that: `released` and `checked` then say `lost_to` (its
holder now, None when free) and never release it; after a restart the session is opened again to find out.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import hashlib
import json
import logging
import os
import re
import signal
import socket
import sys
import time
from typing import Any

EXIT_TIMEOUT = 3
EXIT_ERROR = 1
EXIT_INTERRUPTED = 130


MAX_BOUND_S = 3600.0  # the longest bound that can be set: an hour


def usable_seconds(raw: str) -> float | None:
    """A bound's setting in seconds: a number above 0 and at most MAX_BOUND_S, else None (`inf`, `1e10`, `nan`,
    `0`, `-3`, `5s`). edgekit refuses an unusable one before it starts a helper (edgekit/lab/client.py's
    check_bounds), naming it."""
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if 0 < value <= MAX_BOUND_S else None  # nan compares false: refused too


def seconds(variable: str, default: float) -> float:
    """A bound of this file's in seconds: $variable when usable_seconds takes it, else `default` (edgekit refused
    an unusable one already; a helper started by hand never crashes on one: `inf` overflowed signal.alarm)."""
    raw = os.environ.get(variable, "").strip()
    value = usable_seconds(raw) if raw else None
    return default if value is None else value


# one call to the coordinator: a frozen coordinator is an error, never a hang ($EDGEKIT_LAB_CALL_S: the tests that
# freeze it use a few seconds, as they sit through these bounds many times)
CALL_DEFAULT_S, CONNECT_DEFAULT_S = 20.0, 10.0  # edgekit's own waits for the helper grow as these are raised
CALL_S = seconds("EDGEKIT_LAB_CALL_S", CALL_DEFAULT_S)
CONNECT_S = seconds("EDGEKIT_LAB_CONNECT_S", CONNECT_DEFAULT_S)  # opening a session ($EDGEKIT_LAB_CONNECT_S)
# gRPC's own bound on a connection's handshake (its MIN_CONNECT_TIMEOUT): a CONNECT_S above it is given to gRPC too
GRPC_CONNECT_S = 20.0
HOLDER = re.compile(
    r"^(?P<host>[^/]+)/(?P<user>.+)\.edgekit-(?P<pid>\d+)-(?P<start>\d+)"
    r"(?:-m(?P<machine>[0-9a-f]{8})b(?P<boot>[0-9a-f]{8})n(?P<pidns>\d+))?$"
)


_SILENCED: list[bool] = []  # edgekit's end of stdout is closed: nothing more is said


def emit(event: str, **fields: object) -> None:
    """One event for edgekit. Never raises: once edgekit is gone (its pipe closed: BrokenPipeError) the helper
    still has every place to give back, so stdout goes to /dev/null and the work goes on."""
    if _SILENCED:
        return
    try:
        sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
        sys.stdout.flush()
    except (OSError, ValueError):
        _SILENCED.append(True)
        try:  # what is still buffered is flushed at exit: into /dev/null, not into a second BrokenPipeError
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except OSError:
            pass


def process_start(pid: int) -> int | None:
    """The start time of pid in clock ticks since boot (/proc/PID/stat field 22), None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            stat = fh.read()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def _short(path: str) -> str:
    """8 hex digits of a file's first line (sha256), 00000000 when it cannot be read."""
    try:
        with open(path) as fh:
            text = fh.readline().strip()
    except OSError:
        return "0" * 8
    return hashlib.sha256(text.encode()).hexdigest()[:8] if text else "0" * 8


def identity() -> str:
    """Where this process's PID means something: `mMACHINEbBOOTnPIDNS` (see the module's docstring)."""
    machine = _short("/etc/machine-id")
    if machine == "0" * 8:
        machine = _short("/var/lib/dbus/machine-id")
    try:
        pidns = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        pidns = 0
    return f"m{machine}b{_short('/proc/sys/kernel/random/boot_id')}n{pidns}"


def _proc_hides_others() -> bool:
    """/proc mounted with hidepid (other users' processes invisible: a live edgekit of theirs looks gone)."""
    try:
        with open("/proc/self/mountinfo") as fh:
            mounts = fh.read().splitlines()
    except OSError:
        return True
    for line in mounts:
        fields = line.split()
        if len(fields) > 4 and fields[4] == "/proc":
            options = line.rsplit(" - ", 1)[-1]
            return re.search(r"hidepid=(?!0\b|off\b)", options) is not None
    return False


def stale(holder: str, hostname: str) -> bool:
    """True when `holder` is an edgekit of this machine that no longer runs: this machine rebooted since it took
    the place, or its PID (in this same PID namespace) is gone or reused. Whatever cannot be told from here (another
    machine of this name, another PID namespace, /proc hiding other users, the older holder form) is live."""
    m = HOLDER.match(holder or "")
    if m is None or m["host"] != hostname or m["machine"] is None:
        return False
    mine = re.fullmatch(r"m(?P<machine>[0-9a-f]{8})b(?P<boot>[0-9a-f]{8})n(?P<pidns>\d+)", identity())
    assert mine is not None  # identity()'s own form
    unknown = "0" * 8
    if m["machine"] != mine["machine"] or mine["machine"] == unknown:
        return False  # another machine that shares this name (or ours is unknown)
    if m["boot"] != mine["boot"]:
        return mine["boot"] != unknown  # this machine rebooted since: every process of then is gone
    if m["pidns"] != mine["pidns"] or mine["pidns"] == "0":
        return False  # a container on this kernel: its PIDs are not ours to look up
    if m["user"] != getpass.getuser() and _proc_hides_others():
        return False
    return process_start(int(m["pid"])) != int(m["start"])


def services(session: Any, place: Any) -> list[dict[str, object]]:
    """The NetworkService resources a place matches: address, username, port, exporter path, available."""
    found = []
    for exporter, groups in sorted(session.resources.items()):
        for group_name, group in sorted(groups.items()):
            for resource_name, entry in sorted(group.items()):
                if entry.cls != "NetworkService":
                    continue
                if place.hasmatch((exporter, group_name, entry.cls, resource_name)):
                    params = dict(entry.params)
                    found.append(
                        {
                            "address": params.get("address"),
                            "username": params.get("username"),
                            "port": port_of(params.get("port")),
                            "avail": bool(entry.avail),
                            "path": f"{exporter}/{group_name}/{resource_name}",
                        }
                    )
    return found


def port_of(given: object) -> object:
    """A NetworkService's port as its exporter gave it: labgrid's (and ssh's) 22 only when it gives none. A 0 or
    a port out of range stays as given, for edgekit to refuse (`int(port or 22)` turned 0 into 22: a deploy
    connected to another service than the exporter's)."""
    if given is None:
        return 22
    if isinstance(given, bool):
        return -1
    try:
        return int(given)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return -1  # not a number: out of range, refused


def reachable(session: Any, place: Any) -> bool:
    """Whether the place has an available NetworkService with an address: the only way edgekit reaches a board."""
    return any(s["avail"] and s["address"] for s in services(session, place))


def describe(session: Any, place: Any, now: float) -> dict[str, object]:
    return {
        "name": place.name,
        "tags": dict(place.tags),
        "acquired": place.acquired,
        "held_s": round(now - place.changed, 1) if place.acquired else None,
        "comment": place.comment,
        "reservation": place.reservation,
        "services": services(session, place),
    }


def matching(session: Any, tags: dict[str, str], names: list[str]) -> list[Any]:
    """Places carrying every tag (`name` matches the place name, as labgrid's reservations do)."""
    result = []
    for name, place in sorted(session.places.items()):
        have = {**place.tags, "name": name}
        if names and name not in names:
            continue
        if all(have.get(k) == v for k, v in tags.items()):
            result.append(place)
    return result


class LastWords(logging.Handler):
    """labgrid logs why it cannot reach the coordinator and then raises a bare "Could not connect": the log's
    words are the reason a user can act on (refused, no route, ...)."""

    said = ""

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR:
            LastWords.said = record.getMessage()


def new_session(address: str, loop: asyncio.AbstractEventLoop) -> Any:
    """labgrid's ClientSession to `address`, its channel allowed CONNECT_S for a connection's handshake: gRPC gives
    it GRPC_CONNECT_S (20 s) and then fails the session with its own words (`connection attempt timed out before
    receiving SETTINGS frame`), so a longer CONNECT_S (a slow lab network) did nothing. labgrid builds the channel
    with options of its own (keepalive) and has no parameter for more: its call to gRPC gets one more option,
    grpc.min_reconnect_backoff_ms (gRPC's name for that bound), a second longer than CONNECT_S so that edgekit's
    own bound, and its words, come first."""
    from labgrid.remote.client import ClientSession

    if CONNECT_S + 1 <= GRPC_CONNECT_S:
        return ClientSession(address, loop)
    import grpc

    made = grpc.aio.insecure_channel
    handshake = ("grpc.min_reconnect_backoff_ms", int((CONNECT_S + 1) * 1000))

    def channel(target: str, options: Any = None, *args: Any, **kwargs: Any) -> Any:
        return made(target, [*(options or ()), handshake], *args, **kwargs)

    grpc.aio.insecure_channel = channel
    try:
        return ClientSession(address, loop)
    finally:
        grpc.aio.insecure_channel = made


async def connect(address: str, within: float = CONNECT_S) -> Any:
    """A started session to the coordinator at `address`, its handshake and first sync allowed `within` seconds."""
    host = address.rpartition(":")[0].strip("[]") or address
    try:
        await asyncio.get_running_loop().getaddrinfo(host, None)
    except OSError as exc:  # gaierror: a typo'd or unknown name, said as such (gRPC's own words are long)
        raise ConnectionError(
            f"the host name {host!r} could not be resolved ({exc.strerror or exc})"
        ) from None
    session = new_session(address, asyncio.get_running_loop())
    try:
        await asyncio.wait_for(session.start(), timeout=within)
    except BaseException as exc:
        # closed, not left half-open: its stream shares the connection with the next session's, and a coordinator
        # that was only frozen registers it when it thaws, then refuses every later session on that connection
        for step in (session.stop, session.close):
            try:
                await asyncio.wait_for(step(), CALL_S)
            except Exception:  # noqa: BLE001 - it never started: nothing to close cleanly
                pass
        if isinstance(exc, TimeoutError):
            raise TimeoutError(
                f"no answer within {within:g} s (something accepts connections there but does not answer as a "
                "labgrid coordinator)"
            ) from None
        raise
    return session


async def do_places(args: argparse.Namespace) -> int:
    session = await connect(args.coordinator)
    now = time.time()
    emit("places", places=[describe(session, p, now) for _, p in sorted(session.places.items())])
    await session.stop()
    return 0


async def acquire(session: Any, name: str) -> str | None:
    """AcquirePlace; None on success, else the coordinator's reason (taken meanwhile, reserved, ...)."""
    import grpc
    from labgrid.remote.generated import labgrid_coordinator_pb2

    try:
        await asyncio.wait_for(
            session.stub.AcquirePlace(labgrid_coordinator_pb2.AcquirePlaceRequest(placename=name)), CALL_S
        )
        await asyncio.wait_for(session.sync_with_coordinator(), CALL_S)
        return None
    except grpc.aio.AioRpcError as exc:
        return exc.details() or str(exc.code())
    except TimeoutError:
        return f"the coordinator did not answer within {CALL_S:g} s"


async def release(session: Any, name: str, fromuser: str | None = None) -> str | None:
    import grpc
    from labgrid.remote.generated import labgrid_coordinator_pb2

    request = labgrid_coordinator_pb2.ReleasePlaceRequest(placename=name)
    if fromuser:
        request.fromuser = fromuser
    try:
        await asyncio.wait_for(session.stub.ReleasePlace(request), CALL_S)
        await asyncio.wait_for(session.sync_with_coordinator(), CALL_S)
        return None
    except grpc.aio.AioRpcError as exc:
        return exc.details() or str(exc.code())
    except TimeoutError:
        return f"the coordinator did not answer within {CALL_S:g} s"


async def unreachable(session: Any) -> str | None:
    """Why the coordinator cannot be reached on this session (its stream ended, or no answer within CALL_S), or
    None. labgrid's sync returns, without an error, once the stream has ended: the session says so (and a sync
    asked after that would never be answered)."""
    if session.stopping.is_set():
        return "the coordinator closed the connection"
    try:
        await asyncio.wait_for(session.sync_with_coordinator(), CALL_S)
    except TimeoutError:
        return f"the coordinator did not answer within {CALL_S:g} s"
    except Exception as exc:  # noqa: BLE001 - grpc's errors: the coordinator is gone
        return f"{type(exc).__name__}: {exc}"
    return "the coordinator closed the connection" if session.stopping.is_set() else None


def stopped_by(signals: list[int]) -> str:
    """`interrupted (Ctrl-C)` or `interrupted (SIGTERM)`: the signal that came, by its name (none: edgekit's pipe
    closed)."""
    if not signals:
        return "stopped (edgekit gave up the wait, or is gone)"
    named = {int(signal.SIGINT): "Ctrl-C", int(signal.SIGTERM): "SIGTERM"}
    return f"interrupted ({', '.join(dict.fromkeys(named.get(s, signal.Signals(s).name) for s in signals))})"


async def reservation_owners(session: Any) -> dict[str, str]:
    """token -> owner (HOST/USER) of the coordinator's reservations; {} when it cannot say (the token is said)."""
    from labgrid.remote.generated import labgrid_coordinator_pb2

    try:
        answer = await asyncio.wait_for(
            session.stub.GetReservations(labgrid_coordinator_pb2.GetReservationsRequest()), CALL_S
        )
    except Exception:  # noqa: BLE001 - grpc's, or no answer: the waiting line names the token instead
        return {}
    return {r.token: r.owner for r in answer.reservations}


def held_by(place: Any, owners: dict[str, str], refused: str | None) -> str:
    """Who keeps a place from this edgekit, for the waiting and timeout lines: its holder, the owner of the
    reservation it is allocated to (labgrid's token said nothing to a teammate), or why the coordinator would not
    give it (a place matching the same resource held through another place: AcquirePlace's own words)."""
    if place.acquired:
        return str(place.acquired)
    if place.reservation:
        owner = owners.get(place.reservation)
        return f"a reservation of {owner}" if owner else f"a reservation (token {place.reservation})"
    if refused:
        return f"nobody, but the coordinator would not give it: {refused}"
    return "nobody (free now: taken at the next look)"


def me(session: Any) -> str:
    """This session's holder name, as the coordinator records it in a place's `acquired`."""
    return f"{session.gethostname()}/{session.getuser()}"


class Link:
    """The helper's session to the coordinator while it holds places, opened again when it ended (a coordinator
    restart, a dropped connection): whether a place is still ours is asked of the coordinator as it is now."""

    def __init__(self, address: str, session: Any) -> None:
        self.address = address
        self.session = session
        self.renewed = False  # the session was opened again since the places were acquired
        self.closed = False  # `session` was closed (it stopped answering) and no new one could be opened yet

    async def ready(self) -> str | None:
        """None when the coordinator answers on this link (on a new session if the old one ended), else why not."""
        if not self.closed and await unreachable(self.session) is None:
            return None
        if not self.closed:
            # closed before the new one is opened: gRPC shares one connection between channels to one address, and
            # a coordinator that was only frozen (SIGSTOP, a stalled VM) still has the old stream on it, so it
            # refused every new session on that connection (AssertionError: the same peer) until the helper ended
            self.closed = True
            for step in (self.session.stop, self.session.close):
                try:
                    await asyncio.wait_for(step(), CALL_S)
                except Exception:  # noqa: BLE001 - the old session is dead already: nothing to close cleanly
                    pass
        # tried again until CONNECT_S is spent: a session to a coordinator that is only slow (frozen, then thawed
        # within the bound set) can still fail at once (in one CI run: `Could not connect to coordinator` 5 s after
        # the old stream ended, with CONNECT_S 45 s), which said `not released` of a place the coordinator would give
        deadline = time.monotonic() + CONNECT_S
        while True:
            try:
                fresh = await connect(self.address, within=max(1.0, deadline - time.monotonic()))
                break
            except Exception as exc:  # noqa: BLE001 - labgrid's or grpc's: the coordinator is still gone
                if (
                    isinstance(exc, ConnectionError) or deadline - time.monotonic() < 2
                ):  # ConnectionError: no such host
                    return f"the coordinator cannot be reached ({str(exc) or type(exc).__name__})"
                await asyncio.sleep(1)
        self.session, self.renewed, self.closed = fresh, True, False
        return None


RESTARTED = "the coordinator's connection dropped meanwhile (a coordinator restart forgets every hold)"


async def still_ours(link: Link, name: str) -> dict[str, object]:
    """{} while this holder holds `name`; else `lost_to` (its holder now, None when free) and, when the session
    had to be opened again, `why`; or `error` when the coordinator cannot say."""
    why = await link.ready()
    if why:
        return {"error": why}
    place = link.session.places.get(name)
    holder = place.acquired if place is not None else None
    if holder == me(link.session):
        return {}
    return {"lost_to": holder, **({"why": RESTARTED} if link.renewed else {})}


async def release_own(link: Link, name: str) -> dict[str, object]:
    """Release `name` only while this session still holds it (labgrid's ReleasePlace without `fromuser` releases
    whoever holds it: a place kicked from edgekit and taken by a teammate was released from under them). The
    fields of the `released` event: `error` (why the coordinator did not release it) and, for a place that was
    taken from us meanwhile (`edgekit lab release --kick`, `labgrid-client release -k`, a coordinator restart),
    `lost_to` (its holder now, or None when it is free)."""
    try:
        found = await still_ours(link, name)
        if found:
            return {"error": None, **found} if "lost_to" in found else found
        return {"error": await release(link.session, name, fromuser=me(link.session))}
    except Exception as exc:  # noqa: BLE001 - one place's failure never keeps the others from being released
        return {"error": f"{type(exc).__name__}: {exc}"}


async def do_hold(args: argparse.Namespace) -> int:
    """While waiting, this process is in edgekit's process group: a Ctrl-C at the terminal (or a SIGTERM to the
    group) reaches it too and ends the wait at once. Once it holds places it leaves the group (setsid) and ignores
    SIGINT and SIGTERM: edgekit handles them and says when to release (a nightly first waits up to 30 s for the
    boards still measuring), and the places go back when edgekit says so or is gone (its pipe closes), never
    under its feet. systemd's stop (and its start timeout) sends SIGTERM to every process of the unit at once:
    a helper that released then gave the boards away while edgekit's agents still ran on them. SIGKILL still
    ends it; edgekit finds out when it gives the places back (edgekit/lab/client.py)."""
    interrupted: list[int] = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda got, _frame: interrupted.append(got))
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()  # edgekit's pipe: closed (at_eof) as soon as edgekit is gone
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    session = await connect(args.coordinator)
    link = Link(args.coordinator, session)
    tags = dict(t.split("=", 1) for t in args.tag)
    hostname = os.environ.get("LG_HOSTNAME", socket.gethostname())
    start = time.monotonic()
    deadline = start + args.wait
    parent = os.getppid()
    held: list[str] = []
    ours: set[str] = set()  # held by this same edgekit for another target of its run: never taken twice
    refused: dict[str, str] = {}  # place -> why the coordinator would not give it (AcquirePlace's words)
    last_said: tuple[Any, ...] | None = None
    said_at = 0.0
    while True:
        lost = await unreachable(
            session
        )  # the places are labgrid's cached view: frozen if the coordinator went
        if lost:
            emit("error", kind="coordinator", message=f"lost while waiting for a free place: {lost}")
            return EXIT_ERROR
        candidates = matching(session, tags, args.place)
        if not candidates:
            emit(
                "error",
                kind="no-match",
                message="no place matches",
                tags=tags,
                names=args.place,
                known=sorted(session.places),
            )
            return EXIT_ERROR
        usable = [p for p in candidates if reachable(session, p)]
        skipped = [p.name for p in candidates if p not in usable]
        ours |= {p.name for p in usable if p.acquired == me(session) and p.name not in held}
        if not held and not usable:
            emit(
                "error",
                kind="no-service",
                message="no matching place has an available NetworkService",
                places=skipped,
                tags=tags,
                names=args.place,
            )
            return EXIT_ERROR
        if not held and all(p.name in ours for p in usable):
            emit(
                "error",
                kind="same-run",
                message="every matching place is held by this edgekit already",
                places=sorted(ours),
                skipped=skipped,
                tags=tags,
                names=args.place,
            )
            return EXIT_ERROR
        for place in usable:
            if place.acquired and stale(place.acquired, hostname):
                holder = place.acquired  # the release clears it
                why = await release(session, place.name, fromuser=holder)
                emit("stale-released", place=place.name, holder=holder, error=why)
        for place in usable:
            if args.count and len(held) >= args.count:
                break
            if place.acquired or place.reservation or place.name in held or place.name in ours:
                continue
            if place.name in args.avoid:  # another target of this run asks for it by name: never ours to take
                continue
            why = await acquire(session, place.name)
            if why is None:
                held.append(place.name)
                refused.pop(place.name, None)
            else:  # taken meanwhile, or its resource held through another place: the coordinator's words
                refused[place.name] = why
        if held and (not args.count or len(held) >= args.count or time.monotonic() >= deadline):
            break
        if interrupted or reader.at_eof() or os.getppid() != parent:  # Ctrl-C, or edgekit gave up or is gone
            for name in held:
                await release_own(link, name)
            emit(
                "error",
                kind="interrupted",
                message=f"{stopped_by(interrupted)} while waiting for a free place",
            )
            return EXIT_INTERRUPTED
        now_wall = time.time()
        waited = [
            p for p in usable if p.name not in held and p.name not in args.avoid
        ]  # avoided: not waited for
        owners = await reservation_owners(session) if any(p.reservation for p in waited) else {}
        holders = [
            {
                "place": p.name,
                "by": "this edgekit (another target of its run)"
                if p.name in ours
                else held_by(p, owners, refused.get(p.name)),
                "held_s": round(now_wall - p.changed, 1) if p.acquired else None,
            }
            for p in waited
        ]
        if time.monotonic() >= deadline:
            emit(
                "error",
                kind="timeout",
                message=f"no free place within {args.wait:g} s",
                holders=holders,
                skipped=skipped,
                tags=tags,
            )
            for name in held:
                await release_own(link, name)
            return EXIT_TIMEOUT
        key = (tuple((h["place"], h["by"]) for h in holders), tuple(skipped))
        if key != last_said or time.monotonic() - said_at >= args.say_every:
            emit(
                "waiting",
                holders=holders,
                skipped=skipped,
                waited_s=round(time.monotonic() - start, 1),
                wait_s=args.wait,
            )
            last_said, said_at = key, time.monotonic()
        await asyncio.sleep(args.poll)
    try:
        os.setsid()  # from now on, only edgekit's word (or its death) releases the places
    except OSError:
        pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # see the docstring
    if interrupted:
        for name in held:
            await release_own(link, name)
        emit("error", kind="interrupted", message=f"{stopped_by(interrupted)} while acquiring")
        return EXIT_INTERRUPTED
    now_wall = time.time()
    acquired = [describe(session, session.places[n], now_wall) for n in held]
    emit("acquired", places=acquired, seconds=round(time.monotonic() - start, 3))
    return await hold_until_told(link, held, reader)


async def hold_until_told(link: Link, held: list[str], reader: asyncio.StreamReader) -> int:
    """Keep the places until edgekit says `release` or its pipe closes (edgekit done, or gone: then every place
    is released first, each whatever happened to the one before, and said after, to whoever still listens).
    `check` answers whether a place is still ours; one that is not is never released, and no longer held."""
    lost: dict[str, object] = {}  # place -> its holder now: taken from us, never to be released by us
    pending: dict[str, str] = {}  # place -> why its release failed: tried again once edgekit is done
    log: str | None = None  # where the retries write what became of them (edgekit names it: {"log": PATH})
    while held or pending:
        line = await reader.readline()
        if not line:
            done = {}
            for name in list(held):
                t0 = time.monotonic()
                done[name] = {**await release_own(link, name), "seconds": round(time.monotonic() - t0, 3)}
            held.clear()
            for name, outcome in done.items():
                emit("released", place=name, **outcome, **retried(pending, name, outcome))
            if pending:
                await retry_releases(link, pending, log)
            break
        try:
            command = json.loads(line)
        except ValueError:
            continue  # not a command: ignored
        if not isinstance(command, dict):
            continue
        if isinstance(command.get("log"), str):
            log = command["log"]
            continue
        verb = "release" if "release" in command else "check" if "check" in command else None
        names = [str(n) for n in command.get(verb) or []] if verb else []
        if verb == "release":
            for name in names or list(held):
                if name not in held:
                    said = {"error": None, "lost_to": lost[name]} if name in lost else {"error": "not held"}
                    emit("released", place=name, seconds=0.0, **said)
                    continue
                t0 = time.monotonic()
                outcome = await release_own(link, name)
                held.remove(name)
                emit(
                    "released",
                    place=name,
                    seconds=round(time.monotonic() - t0, 3),
                    **outcome,
                    **retried(pending, name, outcome),
                )
        elif verb == "check":
            for name in names:
                if name not in held:
                    emit(
                        "checked",
                        place=name,
                        **({"lost_to": lost[name]} if name in lost else {"error": "not held"}),
                    )
                    continue
                try:
                    found = await still_ours(link, name)
                except Exception as exc:  # noqa: BLE001 - said as data; the place stays held
                    found = {"error": f"{type(exc).__name__}: {exc}"}
                if "lost_to" in found:
                    held.remove(name)
                    lost[name] = found["lost_to"]
                emit("checked", place=name, **found)
    try:
        await asyncio.wait_for(link.session.stop(), CALL_S)
    except Exception:  # noqa: BLE001 - the places are given back already; a dead session is no error
        pass
    return 0


RETRY_S = 600.0  # how long a release the coordinator did not answer is tried again once edgekit is done


def retried(pending: dict[str, str], name: str, outcome: dict[str, object]) -> dict[str, object]:
    """A release that failed (not a place taken from us: that one is not ours to give) goes into `pending`, to be
    tried again once edgekit's pipe closes; the `released` event's fields that say so (edgekit tells the user)."""
    if not outcome.get("error") or "lost_to" in outcome:
        return {}
    pending[name] = str(outcome["error"])
    return {"retry_s": RETRY_S, "pid": os.getpid()}


# the last release attempt a SIGTERM during the retries leaves time for ($EDGEKIT_LAB_LAST_TRY_S)
LAST_TRY_S = seconds("EDGEKIT_LAB_LAST_TRY_S", 4.0)


async def retry_releases(link: Link, pending: dict[str, str], log: str | None = None) -> None:
    """edgekit is done and some places could not be given back (the coordinator frozen, unreachable): they would
    stay held by an edgekit that no longer runs, and a teammate on another host cannot tell (only this host can
    judge its edgekit dead). Said once (`retrying`), then this helper tries each again with a growing pause, for
    up to RETRY_S, out of edgekit's way (a session of its own); each outcome is said (`released`, `retried`) to
    edgekit while it still listens (it waits a few seconds for a coordinator that was only slow), and written to
    `log`. A place taken meanwhile (lost_to) is no longer ours to give. SIGTERM (`kill`, `systemctl stop`) ends
    it within LAST_TRY_S: one last quick attempt, then the places still held and the command that frees each by
    hand are written to the log (and said, if edgekit listens). SIGALRM ends it whatever happens."""
    emit("retrying", places=sorted(pending), pid=os.getpid(), for_s=RETRY_S, log=log)
    try:  # edgekit may be gone: its stderr is none of ours any longer (labgrid's logging goes to the log)
        if log:
            os.makedirs(os.path.dirname(log) or ".", exist_ok=True)
        target = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600) if log else -1
    except OSError:
        target = -1
    try:
        os.dup2(target if target >= 0 else os.open(os.devnull, os.O_WRONLY), sys.stderr.fileno())
    except OSError:
        pass
    note(f"retrying the release of {', '.join(sorted(pending))} at {link.address} for up to {RETRY_S:g} s")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    signal.alarm(int(RETRY_S + 4 * CALL_S))  # a hard bound: a call that never returns ends here
    deadline = time.monotonic() + RETRY_S
    pause = 2.0
    stopped = loop.create_task(stop.wait())
    while pending and time.monotonic() < deadline and not stop.is_set():
        await asyncio.wait({stopped}, timeout=min(pause, max(0.0, deadline - time.monotonic())))
        pause = min(pause * 2, 60.0)
        for name in sorted(pending):
            if stop.is_set():
                break
            attempt = loop.create_task(release_own(link, name))
            await asyncio.wait({attempt, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if not attempt.done():  # SIGTERM mid-call: the last attempt below, bounded
                attempt.cancel()
                break
            settle(pending, name, attempt.result())
    if stop.is_set():  # one last try for every place within LAST_TRY_S in all (not LAST_TRY_S each)
        last = time.monotonic() + LAST_TRY_S
        for name in sorted(pending):
            left = last - time.monotonic()
            try:
                if left <= 0:
                    raise TimeoutError
                outcome = await asyncio.wait_for(release_own(link, name), left)
            except TimeoutError:
                outcome = {"error": f"the coordinator did not answer within {LAST_TRY_S:g} s"}
            settle(pending, name, outcome)
    stopped.cancel()
    if pending:
        why = "SIGTERM" if stop.is_set() else f"{RETRY_S:g} s of retries"
        holder = me(link.session)
        host, _, user = holder.partition("/")
        for name, error in sorted(pending.items()):
            text = (
                f"{name} may still be held by {holder} after {why} (the coordinator at {link.address} did not "
                f"release it: {error}); release it by hand: LG_HOSTNAME={host} LG_USERNAME={user} "
                f"labgrid-client -x {link.address} -p {name} release"
            )
            note(text)
            emit("abandoned", place=name, error=error, why=why, message=text)


def settle(pending: dict[str, str], name: str, outcome: dict[str, object]) -> None:
    """One retried release's outcome: said (edgekit may still listen) and written to the log."""
    if outcome.get("error"):
        pending[name] = str(outcome["error"])
        note(f"{name}: release failed again: {outcome['error']}")
        return
    del pending[name]  # given back, or no longer ours (taken, or the coordinator restarted and forgot it)
    emit("retried", place=name, **outcome)
    note(f"{name}: {'released' if 'lost_to' not in outcome else 'no longer ours: not released'}")


def note(text: str) -> None:
    """A line of the retries' log (stderr: the log file edgekit named, else nowhere)."""
    try:
        sys.stderr.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} edgekit lab helper {os.getpid()}: {text}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


async def do_release_from(args: argparse.Namespace) -> int:
    session = await connect(args.coordinator)
    why = await release(session, args.place, fromuser=args.holder)
    emit("released", place=args.place, holder=args.holder, error=why)
    await session.stop()
    return 0 if why is None else EXIT_ERROR


async def do_kick(args: argparse.Namespace) -> int:
    session = await connect(args.coordinator)
    place = session.places.get(args.place)
    holder = place.acquired if place is not None else None
    why = await release(session, args.place)
    emit("released", place=args.place, holder=holder, error=why)
    await session.stop()
    return 0 if why is None else EXIT_ERROR


async def do_define(args: argparse.Namespace) -> int:
    """What `labgrid-client -p P create / add-match / set-tags` do, in one session (a lab of many places)."""
    from labgrid.remote.generated import labgrid_coordinator_pb2 as pb

    session = await connect(args.coordinator)
    stub = session.stub
    for spec in json.loads(args.places):
        name = spec["place"]
        if name not in session.places:
            await stub.AddPlace(pb.AddPlaceRequest(name=name))
        known = session.places.get(name)
        for pattern in spec.get("matches", []):
            if known is None or not known.hasmatch(pattern.split("/")):
                await stub.AddPlaceMatch(pb.AddPlaceMatchRequest(placename=name, pattern=pattern))
        await stub.SetPlaceTags(pb.SetPlaceTagsRequest(placename=name, tags=spec.get("tags", {})))
    await session.sync_with_coordinator()
    emit("defined", places=sorted(session.places))
    await session.stop()
    return 0


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="edgekit-lab-helper")
    parser.add_argument("--coordinator", required=True)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("places")
    hold = sub.add_parser("hold")
    hold.add_argument("--tag", action="append", default=[])
    hold.add_argument("--place", action="append", default=[])
    hold.add_argument(
        "--avoid",
        action="append",
        default=[],
        help="a place another target of this run asks for by name: not taken",
    )
    hold.add_argument("--count", type=int, default=1, help="places to hold; 0: every free one (at least one)")
    hold.add_argument("--wait", type=float, default=600.0)
    hold.add_argument("--poll", type=float, default=0.5)
    hold.add_argument("--say-every", type=float, default=15.0)
    rel = sub.add_parser("release-from")
    rel.add_argument("--place", required=True)
    rel.add_argument("--holder", required=True)
    kick = sub.add_parser("kick")
    kick.add_argument("--place", required=True)
    define = sub.add_parser("define")
    define.add_argument("--places", required=True)
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse(argv)
    run = {
        "places": do_places,
        "hold": do_hold,
        "release-from": do_release_from,
        "kick": do_kick,
        "define": do_define,
    }[args.command]
    logging.getLogger().addHandler(LastWords())
    try:
        return asyncio.run(run(args))
    except (TimeoutError, ConnectionError) as exc:
        emit(
            "error",
            kind="coordinator",
            message=f"cannot reach the coordinator at {args.coordinator}: {str(exc) or type(exc).__name__}",
        )
    except Exception as exc:  # noqa: BLE001 - reported to edgekit as data, with labgrid's own words
        if type(exc).__name__ == "ServerError" and LastWords.said:  # labgrid's bare "Could not connect"
            emit(
                "error",
                kind="coordinator",
                message=f"cannot reach the coordinator at {args.coordinator}: {LastWords.said}",
            )
            return EXIT_ERROR
        emit(
            "error",
            kind="coordinator" if "coordinator" in str(exc).lower() else "labgrid",
            message=f"{type(exc).__name__}: {exc}",
        )
    return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
