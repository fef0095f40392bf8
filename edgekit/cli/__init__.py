"""The `edgekit` command line: one module per command group, each with a `register(app)` function.

`main()` turns every EdgekitError into its message on stderr and its exit code (2 for a bad argument or input
file, 1 for a failed run, 130 for Ctrl-C); any other exception is one line naming it, and its traceback only
with `--debug` (also shows paramiko's log).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import stat
import sys
import threading
import time
from typing import NoReturn

import click
import typer
import typer.rich_utils

from edgekit.errors import EdgekitError
from edgekit.terminal import Console, plain


def _error_hint(self: click.Option, ctx: click.Context) -> str:
    """click 8.2.1 names "(env var: 'None')" in every bad-option message when typer shows env vars (click issue
    2971, fixed in the yanked 8.2.2): name the option alone unless it has an env var."""
    hint = click.Parameter.get_error_hint(self, ctx)
    return f"{hint} (env var: '{self.envvar}')" if self.show_envvar and self.envvar else hint


click.Option.get_error_hint = _error_hint  # type: ignore[method-assign]

# typer prints --help through a rich Console of its own, whose broken-pipe exit is 1: `edgekit runs --help | head`
# failed a `set -o pipefail` script. Its help console is edgekit's (a subclass: only that exit differs).
typer.rich_utils.Console = Console  # type: ignore[attr-defined]

_app = typer.Typer(
    name="edgekit",
    help="Take a trained model to Raspberry Pis and Android phones, and measure how it behaves there.\n\n"
    "Example: edgekit deploy recipes/yolov5-lite.yaml --target pi4-emu",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

err_console = Console(stderr=True, soft_wrap=True)  # an error stays one line per line: greppable in logs


def _print_version(value: bool) -> None:
    if value:
        from edgekit import __version__

        typer.echo(f"edgekit {__version__}")
        raise typer.Exit()


@_app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="show tracebacks and paramiko's log"),
    _version: bool = typer.Option(
        False,
        "--version",
        callback=_print_version,
        is_eager=True,
        help="print edgekit's version and exit (`edgekit version` lists runtimes)",
    ),
) -> None:
    """Take a trained model to Raspberry Pis and Android phones, and measure how it behaves there.

    Example: edgekit deploy recipes/yolov5-lite.yaml --target pi4-emu
    """


@_app.command()
def version() -> None:
    """Print edgekit's version and the versions of the runtimes it finds.

    Example: edgekit version
    """
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as pkg_version

    from edgekit import __version__

    typer.echo(f"edgekit {__version__}")
    from edgekit.runtimes import device_packages

    runtimes = [d for p in device_packages()[1:] for d in p.version_dists]  # the registry's, numpy aside
    for name in dict.fromkeys([*runtimes, "onnx2tf", "tensorflow", "torch", "pnnx"]):
        try:
            typer.echo(f"  {name} {pkg_version(name)}")
        except PackageNotFoundError:
            typer.echo(f"  {name} (not installed)")


# each command group's module, in --help's order; a module registers the one top-level command of its name
COMMANDS = (
    "convert",
    "cache",
    "deploy",
    "bench",
    "emu",
    "targets",
    "formats",
    "runs",
    "report",
    "nightly",
    "analyze",
    "estimate",
    "roofline",
    "profile",
    "lab",
)
_registered: set[str] = set()


def _register(names: tuple[str, ...] = COMMANDS) -> typer.Typer:
    """The app with the command groups `names` registered (once each). Every module is imported only where needed:
    importing all of them (numpy, SQLAlchemy, pydantic, paramiko) took ~0.35 s of CPU on each run of edgekit."""
    import importlib

    for name in names:
        if name not in _registered:
            _registered.add(name)
            importlib.import_module(f"edgekit.cli.{name}").register(_app)
    return _app


def _groups_for(argv: list[str]) -> tuple[str, ...]:
    """The command groups an edgekit command line needs: the one its first word (after the root's flags) names,
    none for `version`, every one otherwise (`edgekit --help`, a misspelt command: click lists or suggests them)."""
    words = [a for a in argv if not a.startswith("-")]
    if words and words[0] in COMMANDS:
        return (words[0],)
    return () if words[:1] == ["version"] else COMMANDS


def __getattr__(name: str) -> typer.Typer:
    """`edgekit.cli.app` for an embedding program (typer's CliRunner): every command registered."""
    if name == "app":
        return _register()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _debug() -> bool:
    return "--debug" in sys.argv[1:]


# SIGHUP: the terminal closed or the SSH session ended (a nightly started by hand) killed edgekit at once, the
# measurements neither recorded nor said; it ends the run as SIGTERM does
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
REPEAT_GRACE_S = 3.0  # a second Ctrl-C / SIGTERM this soon after the first is the same request


class _Stop:
    """Ctrl-C (SIGINT) and SIGTERM (`timeout`, systemd, a cancelled CI job) end a run the same way: the first
    raises KeyboardInterrupt, and the run stops its agents and keeps what was measured. The same request often comes
    twice at once (`timeout` signals the process and then its whole group; people press Ctrl-C twice): a repeat
    within REPEAT_GRACE_S is ignored, so it cannot cut the stopping short and lose the measurements. A later one
    raises again: the stopping skips its remaining waits (edgekit.deploy), still keeping what it has."""

    def __init__(self) -> None:
        self.first: float | None = None
        self.terminal = _terminal()  # known now: a hung-up terminal is no tty

    def __call__(self, signum: int, frame: object) -> None:
        if signum == signal.SIGHUP:  # the terminal closed (an SSH session ended): nobody reads it any more
            self._detach_terminal()
        now = time.monotonic()
        if self.first is not None and now - self.first < REPEAT_GRACE_S:
            return
        if self.first is not None:
            err_console.print("stopping now: the agents still running are left to their own time limits")
        self.first = now
        raise KeyboardInterrupt

    def _detach_terminal(self) -> None:
        """Output to the closed terminal goes nowhere instead of failing (EIO) while the run is stopped and
        recorded; output to a file or a pipe (`nohup`, a log) goes on. Every descriptor of the terminal is
        replaced, the copies too: a live display keeps one of stderr aside and puts it back when it ends."""
        if self.terminal is None:
            return
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_RDWR)
            for fd in _open_fds():
                if fd != devnull and _device(fd) == self.terminal:
                    with contextlib.suppress(OSError):
                        os.dup2(devnull, fd)
            os.close(devnull)
        self.terminal = None


def _device(fd: int) -> int | None:
    """The character device `fd` is open on (a terminal's), None for anything else."""
    try:
        st = os.fstat(fd)
    except OSError:
        return None
    return st.st_rdev if stat.S_ISCHR(st.st_mode) else None


def _terminal() -> int | None:
    """The terminal stdout or stderr writes to (its device), None when neither is one."""
    for fd in (1, 2):
        with contextlib.suppress(OSError):
            if os.isatty(fd):
                return _device(fd)
    return None


def _open_fds() -> list[int]:
    try:
        return [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:  # no /proc (macOS): the descriptors a process has early on
        return list(range(256))


def main() -> None:
    logging.getLogger("paramiko").addHandler(logging.StreamHandler() if _debug() else logging.NullHandler())
    stop = _Stop()
    if threading.current_thread() is threading.main_thread():  # signals can only be set there (embedded use)
        for signum in STOP_SIGNALS:
            if signum != signal.SIGHUP or signal.getsignal(signum) is not signal.SIG_IGN:  # nohup's stays
                signal.signal(signum, stop)
    try:
        _main()
    finally:
        if stop.first is not None and threading.current_thread() is threading.main_thread():
            # Stopping, what was measured kept, exiting: Python puts back the default action of these signals while
            # it shuts down, so the repeat of the request (`timeout` signals the group too) arriving then killed the
            # process (exit -2 instead of 130). It is the same request: ignored until the process is gone.
            for signum in STOP_SIGNALS:
                signal.signal(signum, signal.SIG_IGN)  # (SIGHUP: the terminal gone, nothing left to say)


def _holds_cache(argv: list[str]) -> bool:
    """Every command holds the conversion cache shared while it runs, but `cache prune`, which takes it
    exclusively (edgekit.convert.housekeeping.in_use: prune during a nightly removed files the nightly used)."""
    words = [a for a in argv if not a.startswith("-")][:2]
    return words != ["cache", "prune"] and "--help" not in argv


def _main() -> None:
    from edgekit.convert.housekeeping import in_use

    try:
        with in_use() if _holds_cache(sys.argv[1:]) else contextlib.nullcontext():
            try:
                code = _register(_groups_for(sys.argv[1:]))(
                    standalone_mode=False
                )  # click returns typer.Exit's code here instead of raising it
            except SystemExit as exc:  # click's own exit 1 on a closed stdout (it wraps sys.stdout first)
                from click.utils import PacifyFlushWrapper

                if exc.code == 1 and isinstance(sys.stdout, PacifyFlushWrapper):
                    raise BrokenPipeError from None
                raise
        # click turns a Ctrl-C into this code, silently: say it
        if code == 130:
            err_console.print(INTERRUPTED)
        if isinstance(code, int) and code != 0:
            sys.exit(code)
    except EdgekitError as exc:
        if _debug():
            raise
        _named_error(exc)
    except BrokenPipeError:  # stdout's reader has gone (`edgekit version | head -1`): all it asked was said
        from edgekit.terminal import stdout_to_devnull

        stdout_to_devnull()
        sys.exit(0)
    except OSError as exc:
        if _debug() or exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            _internal_error(exc)
        err_console.print(
            f"[bold red]error[/] (DiskFull): {plain(exc.filename2 or exc.filename or 'a local file')}: no space left on the disk "
            f"({exc.strerror})",
            highlight=False,
        )
        err_console.print(f"  note: {plain(_low_disk_note(1 << 62) or 'free some space')}", highlight=False)
        sys.exit(1)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort as exc:
        # click turns ANY EOFError escaping a command into Abort: only the end of stdin at a prompt is the
        # user's Ctrl-D; one from a socket or paramiko (a dropped link) or a file is not theirs to abort
        cause = exc.__cause__
        if isinstance(cause, EOFError) and not _end_of_stdin(cause):
            _stray_eof(cause)
        err_console.print("aborted")
        sys.exit(130)
    except KeyboardInterrupt:
        err_console.print(INTERRUPTED)
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - the top level: click usage errors, and bugs, named in one line
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        _internal_error(exc)


def _named_error(exc: EdgekitError) -> NoReturn:
    err_console.print(f"[bold red]error[/] ({type(exc).__name__}): {plain(exc)}", highlight=False)
    # a converter that died of a full disk often says nothing of it (its log could not be written)
    note = _low_disk_note() if exc.exit_code == 1 else None
    if note:
        err_console.print(f"  note: {plain(note)}", highlight=False)
    sys.exit(exc.exit_code)


def _modules_of(exc: BaseException) -> list[str]:
    """The modules of the frames `exc` went through, outermost first."""
    found = []
    tb = exc.__traceback__
    while tb is not None:
        found.append(str(tb.tb_frame.f_globals.get("__name__", "")))
        tb = tb.tb_next
    return found


def _end_of_stdin(exc: EOFError) -> bool:
    """An EOFError of `input()` (Ctrl-D, or stdin closed, at a prompt), or of a prompt of click's."""
    return exc.args == ("EOF when reading a line",) or any(
        m.startswith(("click.termui", "getpass")) for m in _modules_of(exc)
    )


_LINK_MODULES = ("paramiko", "socket", "ssl", "edgekit.transport", "edgekit.lab")


def _stray_eof(exc: EOFError) -> NoReturn:
    """An EOFError nobody named: a connection that closed under a paramiko call (exit 1, as ConnectionLost),
    else a bug (an internal error). Never 'aborted', exit 130: the user pressed nothing."""
    if _debug():
        raise exc
    modules = _modules_of(exc)
    inner = next((m for m in reversed(modules) if m.startswith(_LINK_MODULES)), None)
    if inner is None:
        _internal_error(exc)
    from edgekit.errors import ConnectionLost

    _named_error(
        ConnectionLost(
            f"the connection closed unexpectedly (EOFError in {inner}"
            + (f": {exc}" if str(exc) else "")
            + ")",
            hint="is the device still up and its sshd running? run again; --debug shows where it happened",
        )
    )


INTERRUPTED = "interrupted (Ctrl-C or SIGTERM); what was finished is kept (cache, store), run again to go on"
# below this, a failed run also names the disk: converters need tens to hundreds of MB
LOW_DISK_BYTES = 200 << 20


def _low_disk_note(threshold: int = LOW_DISK_BYTES) -> str | None:
    from edgekit import paths

    return paths.low_disk_note(threshold)


def _internal_error(exc: BaseException) -> NoReturn:
    if _debug():
        raise exc
    err_console.print(
        f"[bold red]internal error[/] ({type(exc).__name__}): {plain(str(exc)[:500])}", highlight=False
    )
    err_console.print(
        "  this is a bug in edgekit: run again with --debug for the traceback and report it",
        highlight=False,
    )
    sys.exit(1)
