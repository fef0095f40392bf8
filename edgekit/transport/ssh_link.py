"""The SSH link to a device under deadlines: a frozen device (a board that hangs, a Wi-Fi link that drops without
a reset) never hangs a night.

Each channel open, short command, upload and download runs under a watchdog that severs the connection (shuts its
socket) when the device has not answered in time, which wakes every paramiko call blocked on it; while a long
command runs, a silent device is probed (an OpenSSH keepalive request) and a probe without answer ends it. A
severed or silent device raises DeviceTimeout (which operation, after how long); a dropped connection raises
ConnectionLost; an interrupted one (Ctrl-C) raises Interrupted. `sever()` cuts the link from any thread.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import paramiko

from edgekit.errors import ConnectError, ConnectionLost, DeviceTimeout, Interrupted, TransportError
from edgekit.target import Target


def shown_seconds(seconds: float) -> str:
    """Seconds as a message says them: whole ones from 1 s up (a deadline of 5.98432 s is "6 s")."""
    return f"{round(seconds):d}" if seconds >= 1 else f"{seconds:.1g}"


def stalled_after_greeting(client: paramiko.SSHClient) -> str | None:
    """The server's greeting when it greeted and then never finished the key exchange (a stalled sshd), else
    None; asked of a client whose connect failed, before it is closed."""
    transport = client.get_transport()
    if transport is None or not transport.remote_version:
        return None
    # paramiko's handshake timer ran out (EOFError), or its start_client gave up waiting on a live transport
    # that has no host key yet ("No existing session"); a server that closed the link is neither
    if transport.packetizer.handshake_timed_out() or (transport.is_active() and transport.host_key is None):
        return str(transport.remote_version)
    return None


def lost_hint(target: Target) -> str:
    """What to check when the connection dropped: an emulated device (an `emulated:` block) has no power or
    network of its own, its qemu or sshd on this machine stopped."""
    if target.emulated is not None:
        device = target.emulated.device
        return (
            f"is the emulated device still running? `edgekit emu status {device}` shows it; "
            f"`edgekit emu up {device}` starts it again"
        )
    return "is the device still powered and on the network?"


def frozen_hint(target: Target) -> str:
    """What to check when the device stopped answering (DeviceTimeout)."""
    left = "a process left running on it ends with its SSH session"
    if target.emulated is not None:
        device = target.emulated.device
        return (
            f"is the emulated device stopped or starved of CPU on this machine? `edgekit emu status {device}` "
            f"shows it, `edgekit emu up {device}` starts it again; {left}"
        )
    return f"is the board frozen or off the network? {left}"


class Link:
    """One target's SSH client (None until connected), why it was cut, and whether Ctrl-C was pressed.

    `connect` is the transport's: the link connects on first use like the transport does."""

    def __init__(self, target: Target, connect: Callable[[], object]) -> None:
        self.target = target
        self.client: paramiko.SSHClient | None = None
        self.severed: str | None = None  # why the link was cut (a watchdog, the run deadline, Ctrl-C)
        self.interrupted = threading.Event()
        self._interrupt_timer: threading.Timer | None = None
        self._connect = connect

    @property
    def address(self) -> str:
        return f"{self.target.host}:{self.target.port}"

    def connected(self) -> paramiko.SSHClient:
        self._connect()
        if self.client is None:  # connect() sets it or raises
            raise ConnectError("not connected", where=self.address)
        return self.client

    def sever(self, reason: str) -> None:
        """Cut the link from any thread: every call blocked on it wakes up and fails (DeviceTimeout)."""
        if self.severed is None:
            self.severed = reason
        transport = self.client.get_transport() if self.client is not None else None
        sock = getattr(transport, "sock", None)
        if sock is not None:
            try:
                if hasattr(sock, "shutdown"):
                    sock.shutdown(socket.SHUT_RDWR)
                else:  # a ProxyCommand pipe
                    sock.close()
            except OSError:
                pass

    def interrupt(self) -> None:
        """Ctrl-C from another thread: a running command is stopped (its process group killed) and the
        operation raises Interrupted; an upload or download still stuck after `io_timeout` is severed."""
        self.interrupted.set()
        if self.client is not None:
            timer = threading.Timer(
                self.target.io_timeout, self.sever, args=("interrupted (Ctrl-C or SIGTERM)",)
            )
            timer.daemon = True
            self._interrupt_timer = timer
            timer.start()

    def interrupt_answered(self) -> None:
        """The command running at the interrupt has returned (it polls the flag): the timer that severs a link
        stuck at a Ctrl-C is cancelled, and stopping the command's process group and fetching what the agent wrote
        (deploy keeps it) run under their own deadlines. Without this, a device slow to stop its agent (an emulated
        one on a busy machine) had the link cut under that fetch io_timeout after the Ctrl-C, and the
        measurements it had written were lost."""
        timer, self._interrupt_timer = self._interrupt_timer, None
        if timer is not None:
            timer.cancel()

    def resume_after_interrupt(self) -> bool:
        """After the Ctrl-C's command returned (interrupt_answered): new calls run again, each under its own
        deadline, so what the agent measured can be fetched and its run folder removed. False, and the link left
        as it is, when it was cut meanwhile (the timer of a command stuck at the Ctrl-C, a dropped link)."""
        self.interrupt_answered()
        if self.severed is not None:
            return False
        self.interrupted.clear()
        return True

    @contextmanager
    def deadline(
        self, what: str, seconds: float, progress: Callable[[], tuple[object, str]] | None = None
    ) -> Iterator[None]:
        """Run the body within `seconds` or sever the link; translate link failures into named errors.

        With `progress` (a transfer), `seconds` is a limit on silence, not on the whole: the link is severed only
        when what `progress` returns (a state that changes whenever the device acknowledges or takes bytes, and
        what was sent so far, said in the error) stays the same for `seconds`. A slow but live link goes on (the
        whole-run deadline bounds it); a frozen device is still cut after `seconds`."""
        if self.severed is not None:
            raise self.dead_error(what)
        stop = self._watch(what, seconds, progress)
        try:
            yield
        except (EOFError, OSError, paramiko.SSHException) as exc:
            if self.severed is not None:
                raise self.dead_error(what) from None
            if isinstance(exc, TimeoutError):
                self.sever(f"no answer within {shown_seconds(self.target.io_timeout)} s to {what}")
                raise self.dead_error(what) from None
            if isinstance(exc, OSError) and self.alive():
                raise  # the device answered with an error (an SFTP status: no such file, disk full): not the link
            self.sever(f"connection lost during {what}")
            raise ConnectionLost(
                f"the connection dropped during {what}: {str(exc).rstrip(': ') or type(exc).__name__}",
                stage=what,
                where=self.address,
                hint=lost_hint(self.target),
            ) from None
        finally:
            stop()
        if self.severed is not None:
            raise self.dead_error(what)

    def _watch(
        self, what: str, seconds: float, progress: Callable[[], tuple[object, str]] | None
    ) -> Callable[[], None]:
        """Start the watchdog of `deadline`; returns what stops it."""
        if progress is None:
            timer = threading.Timer(
                seconds, self.sever, args=(f"no answer within {shown_seconds(seconds)} s to {what}",)
            )
            timer.daemon = True
            timer.start()
            return timer.cancel
        done = threading.Event()
        step = min(0.25, seconds / 8)

        def watch() -> None:
            last, since = progress()[0], time.monotonic()
            while not done.wait(step):
                state, sent = progress()
                if state != last:
                    last, since = state, time.monotonic()
                elif time.monotonic() - since >= seconds:
                    self.sever(f"nothing acknowledged for {shown_seconds(seconds)} s during {what}, {sent}")
                    return

        thread = threading.Thread(target=watch, name=f"edgekit-watch {what}", daemon=True)
        thread.start()

        def stop() -> None:
            done.set()
            thread.join(timeout=5)

        return stop

    def dead_error(self, what: str) -> TransportError:
        reason = self.severed or "the link was cut"
        if reason.startswith("interrupted"):
            return Interrupted(f"{what}: {reason}", where=self.address)
        if reason.startswith("connection lost"):
            return ConnectionLost(
                f"{what}: {reason}", stage=what, where=self.address, hint=lost_hint(self.target)
            )
        return DeviceTimeout(
            f"the device stopped answering ({reason})",
            stage=what,
            seconds=self.target.io_timeout,
            where=self.address,
            hint=frozen_hint(self.target),
        )

    def alive(self) -> bool:
        transport = self.client.get_transport() if self.client is not None else None
        return bool(transport is not None and transport.is_active() and transport.saved_exception is None)

    def dropped(self, chan: paramiko.Channel) -> bool:
        """The channel ended without an exit status because the connection itself is gone."""
        if chan.exit_status != -1:  # paramiko sets status_event on close too: -1 is "no exit status"
            return False
        transport = chan.get_transport()
        if transport is None or not transport.is_active() or transport.saved_exception is not None:
            self.sever("connection lost")
            return True
        return False

    def probe(self) -> None:
        """A keepalive request the server must answer; a device that does not within io_timeout is frozen."""
        transport = self.connected().get_transport()
        with self.deadline("a keepalive probe", self.target.io_timeout):
            transport.global_request("keepalive@openssh.com", wait=True)

    def open_channel(self, command: str) -> paramiko.Channel:
        transport = self.connected().get_transport()
        with self.deadline("opening a channel", self.target.io_timeout):
            chan = transport.open_session(timeout=self.target.io_timeout)
            chan.exec_command(command)
        return chan
