"""Running a command on the device over an SSH link: its output, its deadline, and its process group.

Each command runs as `exec` of the login shell sshd started for it; sshd makes that shell a session leader,
so its pid (printed first, on stderr) is the process group of everything the command starts. On timeout
that group is killed from a second channel and RemoteTimeout raised; on Ctrl-C (`Link.interrupt()`) it is
killed (bounded) and Interrupted raised, also when the kill cannot reach the device (frozen, link lost). A link
error and Interrupted carry what the command had printed so far (`stdout`) and its process group (`pgid`), so a
fresh connection can pull back what the device wrote and stop what is left.

A command dies with its session: a watcher in the same process group waits for the end of the command's stdin
(sshd closes it when the session ends: the link dropped, or sshd was killed) and then kills the group, so a lost
link never leaves an agent running (and holding the device lock) on the device.

The command's stdout and stderr are held to a bound (limits.keep_bounded: their head and their latest bytes); its
stdout is passed to `on_output` as it comes, whatever is kept.
"""

from __future__ import annotations

import re
import select
import shlex
import time
from collections.abc import Callable

import paramiko

from edgekit.errors import ConnectionLost, Interrupted, RemoteTimeout, TransportError
from edgekit.transport.base import RunResult, shown_command
from edgekit.transport.limits import keep_bounded
from edgekit.transport.ssh_link import Link, lost_hint

_PID_MARK = "EDGEKIT_PGID "
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def close_quietly(chan: paramiko.Channel | paramiko.SFTPClient) -> None:
    """Close a channel or SFTP session whose link may already be gone (its close message then cannot be sent:
    EOFError, a broken pipe); the session is gone with the link anyway."""
    try:
        chan.close()
    except (EOFError, OSError, paramiko.SSHException):
        pass


def _command_word(program: str) -> str:
    """`program` quoted as the command's word: shlex leaves `A=b` bare, which a shell reads as an assignment."""
    word = quoted_word(program)
    return f"'{program}'" if word == program and "=" in program else word


def quoted_word(word: str) -> str:
    """`word` shell-quoted, but a leading `~/` (or a bare `~`) is the device login's home, as a shell reads it
    (`python: ~/venv/bin/python3`): `"$HOME"/` and the rest quoted, so no text of the word itself is ever read by
    the shell. (`~user/` stays literal.)"""
    if word == "~":
        return '"$HOME"'
    if word.startswith("~/"):
        rest = word[2:]
        return '"$HOME"/' + (shlex.quote(rest) if rest else "")
    return shlex.quote(word)


def run(
    link: Link,
    argv: list[str],
    *,
    timeout: float,
    cwd: str,
    env: dict[str, str] | None = None,
    on_output: Callable[[str], None] | None = None,
) -> RunResult:
    """`argv` in the absolute remote folder `cwd`, stopped (its process group killed) after `timeout` seconds.
    A word starting with `~/` is in the device login's home, as the device's shell reads it (quoted_word)."""
    command = " ".join([_command_word(str(argv[0])), *(quoted_word(str(a)) for a in argv[1:])])
    # shell assignments before the command: `env A=b CMD` took a CMD holding '=' (/opt/py=3/python3) for one more
    # assignment and ran the next word
    assignments = "".join(f"{k}={shlex.quote(v)} " for k, v in checked_env(env).items())
    where = shlex.quote(cwd)
    # the command runs in the background beside a watcher of the session's stdin: when sshd closes it (the
    # session ended: link dropped, sshd killed) the watcher kills the whole process group
    wrapped = (
        f"echo {_PID_MARK}$$ >&2; cd {where} && {{ exec 3<&0; {assignments}{command} 3<&- & c=$!; "
        "{ cat >/dev/null; kill -TERM -$$; } <&3 >/dev/null 2>&1 & w=$!; exec 3<&-; "
        "wait $c; s=$?; kill $w 2>/dev/null; exit $s; }"
    )
    start = time.monotonic()
    chan = link.open_channel(wrapped)
    out, err, timed_out = bytearray(), bytearray(), False
    try:
        with link.deadline(f"`{argv[0]}`", timeout + 2 * link.target.io_timeout + 60):
            out, err, timed_out = collect(
                chan,
                start + timeout,
                link.probe,
                link.interrupted.is_set,
                probe_every=link.target.io_timeout / 2,
                out=out,
                err=err,
                on_out=on_output,
            )
    except KeyboardInterrupt:  # Ctrl-C in this thread (edgekit bench): stop the remote command too
        link.interrupted.set()
    except TransportError as failed:  # the link failed: keep what the command printed, and its process group
        failed.stdout = out.decode(errors="replace")  # type: ignore[attr-defined]
        failed.pgid, failed.stderr = split_pid(err.decode(errors="replace"))  # type: ignore[attr-defined]
        raise
    pgid, err_text = split_pid(err.decode(errors="replace"))
    if link.interrupted.is_set():
        close_quietly(chan)
        link.interrupt_answered()  # the command is in hand: the kill and the fetch after it have their own deadlines
        try:
            survivors = kill_group(link, pgid) if pgid else None  # no pid yet: the closed session ends it
        except (
            TransportError
        ) as failed:  # a frozen or lost link: the Ctrl-C still ends the run, with what was printed
            survivors = (
                f"not known: the kill did not reach the device ({type(failed).__name__}); the session's watcher "
                "stops them when sshd ends the session"
            )
        stopped = Interrupted(
            f"`{shown_command(command)}` stopped (Ctrl-C or SIGTERM)"
            + (f"; still alive: {survivors}" if survivors else ""),
            where=link.address,
        )
        # what the command had printed (deploy keeps the measurements the agent streamed), and its process group
        stopped.stdout, stopped.stderr, stopped.pgid = out.decode(errors="replace"), err_text, pgid  # type: ignore[attr-defined]
        raise stopped
    if timed_out:
        close_quietly(chan)
        survivors = kill_group(link, pgid) if pgid else None  # no pid yet: the closed session ends it
        exc = RemoteTimeout(
            f"`{shown_command(command)}` did not finish within {timeout:g} s and was stopped"
            + (f" (still alive: {survivors})" if survivors else ""),
            where=link.address,
        )
        exc.stdout, exc.stderr, exc.pgid = out.decode(errors="replace"), err_text, pgid  # type: ignore[attr-defined]
        raise exc
    if link.dropped(chan):
        lost = ConnectionLost(
            f"the connection dropped while `{argv[0]}` ran (after {time.monotonic() - start:.1f} s)",
            stage=f"`{argv[0]}`",
            where=link.address,
            hint=lost_hint(link.target),
        )
        lost.stdout, lost.stderr, lost.pgid = out.decode(errors="replace"), err_text, pgid  # type: ignore[attr-defined]
        raise lost
    status = chan.recv_exit_status()
    close_quietly(chan)  # the command's result is in hand: a link dropping now does not undo it
    return RunResult(command, status, out.decode(errors="replace"), err_text, time.monotonic() - start)


def exec_simple(
    link: Link, command: str, *, check: bool = False, timeout: float = 120.0, step: str = ""
) -> str:
    """A short helper command (no pid marker); returns stdout. One that outlives `timeout` returns what it printed,
    unless `step` names what it was for: then it is a RemoteTimeout naming that step and the device (its output
    cut short would be misread: files counted absent, a rename taken for a failed check)."""
    chan = link.open_channel(command)
    with link.deadline(f"`{command.split()[0]}`", timeout + link.target.io_timeout):
        out, err, timed_out = collect(
            chan, time.monotonic() + timeout, link.probe, probe_every=link.target.io_timeout / 2
        )
        if not timed_out and link.dropped(chan):
            raise EOFError("the channel closed without an exit status")
        status = -1 if timed_out else chan.recv_exit_status()
        chan.close()
    if timed_out and step:
        raise RemoteTimeout(
            f"{step} did not finish within {timeout:g} s on the device; its output was cut short and not used",
            where=link.address,
            hint="the device is slow or overloaded (a large file hashed under emulation): try again when it is idle",
        )
    if check and status != 0:
        raise TransportError(
            f"`{shown_command(command)}` failed ({status}): {err.decode(errors='replace').strip()}",
            where=link.address,
        )
    return out.decode(errors="replace")


def kill_group(link: Link, pgid: int) -> str:
    """TERM then KILL the command's process group; return '' when no live (non-zombie) member is left.

    Zombies are ignored: on a device whose init does not reap, orphans stay as zombies but run nothing.
    """
    live = (
        f"ps -eo pid=,pgid=,stat= 2>/dev/null | awk -v g={pgid} '$2==g && $3 !~ /^Z/ {{printf \"%s \", $1}}'"
    )
    script = (
        f'kill -TERM -- -{pgid} 2>/dev/null; i=0; while [ -n "$({live})" ] && [ $i -lt 20 ]; '
        f"do sleep 0.1; i=$((i+1)); done; kill -KILL -- -{pgid} 2>/dev/null; sleep 0.1; {live}; true"
    )
    return exec_simple(link, script, timeout=10.0).strip()


def quoted_command(command: str) -> str:
    """A command line from a target field (the device's `python`), each word shell-quoted (a leading `~/` is the
    device's home: quoted_word)."""
    return " ".join(quoted_word(part) for part in shlex.split(command))


def checked_env(env: dict[str, str] | None) -> dict[str, str]:
    for key in env or {}:
        if not _ENV_NAME.match(key):
            raise TransportError(f"invalid environment variable name {key!r}", where="run(env=...)")
    return dict(env or {})


def collect(
    chan: paramiko.Channel,
    deadline: float,
    probe: Callable[[], None] | None = None,
    stop: Callable[[], bool] | None = None,
    probe_every: float = 10.0,
    out: bytearray | None = None,
    err: bytearray | None = None,
    on_out: Callable[[str], None] | None = None,
) -> tuple[bytearray, bytearray, bool]:
    """Read stdout/stderr until the command exits and its streams close, or the deadline passes (or `stop()`).
    After `probe_every` seconds without a byte, `probe()` checks the device still answers (raises if not).
    `out`/`err` collect into the caller's buffers (kept when Ctrl-C interrupts the read), each held to a bound
    (keep_bounded: a device printing 400 MB held it all in this machine's memory); every stdout chunk goes to
    `on_out` as it comes."""
    out = bytearray() if out is None else out
    err = bytearray() if err is None else err
    heard = time.monotonic()
    while True:
        if stop is not None and stop():
            return out, err, False
        while chan.recv_ready():
            chunk = chan.recv(65536)
            out += chunk
            keep_bounded(out)
            if on_out is not None:
                on_out(chunk.decode(errors="replace"))  # the agent's lines are ASCII JSON
            heard = time.monotonic()
        while chan.recv_stderr_ready():
            err += chan.recv_stderr(65536)
            keep_bounded(err)
            heard = time.monotonic()
        if probe is not None and time.monotonic() - heard > probe_every:
            probe()
            heard = time.monotonic()
        if chan.exit_status_ready() and (chan.eof_received or chan.closed):
            while chan.recv_ready():
                chunk = chan.recv(65536)
                out += chunk
                keep_bounded(out)
                if on_out is not None:
                    on_out(chunk.decode(errors="replace"))
            while chan.recv_stderr_ready():
                err += chan.recv_stderr(65536)
                keep_bounded(err)
            return out, err, False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return out, err, True
        select.select([chan], [], [], min(remaining, 0.05))


def split_pid(stderr: str) -> tuple[int | None, str]:
    first, _, rest = stderr.partition("\n")
    if first.startswith(_PID_MARK) and first[len(_PID_MARK) :].isdigit():
        return int(first[len(_PID_MARK) :]), rest
    return None, stderr
