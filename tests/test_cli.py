"""The command line: both entry points work and every command's --help says what it does with an example."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import click
import pytest
import typer

from edgekit.cli import app


def _commands(
    group: click.Command, prefix: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], click.Command]]:
    found = [(prefix, group)]
    if isinstance(group, click.Group):
        for name, cmd in group.commands.items():
            found += _commands(cmd, prefix + (name,))
    return found


ALL = _commands(typer.main.get_command(app))


@pytest.mark.parametrize("path,command", ALL, ids=[" ".join(p) or "edgekit" for p, _ in ALL])
def test_every_command_has_help_with_an_example(path: tuple[str, ...], command: click.Command) -> None:
    text = (command.help or "") + (command.epilog or "")
    assert text.strip(), f"`edgekit {' '.join(path)}` has no help text"
    assert "example" in text.lower(), f"`edgekit {' '.join(path)}` --help shows no example"


def test_python_dash_m_and_the_script_agree() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "edgekit", "version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.startswith("edgekit ")


def test_unknown_command_exits_non_zero() -> None:
    out = subprocess.run([sys.executable, "-m", "edgekit", "no-such-command"], capture_output=True, text=True)
    assert out.returncode != 0
    assert "No such command" in out.stderr


def test_version_flag_prints_the_version() -> None:
    import subprocess
    import sys

    from edgekit import __version__

    out = subprocess.run(
        [sys.executable, "-m", "edgekit", "--version"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0 and out.stdout.strip() == f"edgekit {__version__}"


def test_main_runs_outside_the_main_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """main() installs its SIGTERM handler only where Python allows one (the main thread): embedded in a
    thread (a service calling edgekit) it raised ValueError before doing anything."""
    import threading

    from edgekit.cli import main

    monkeypatch.setattr(sys, "argv", ["edgekit", "version"])
    failures: list[BaseException] = []

    def run() -> None:
        try:
            main()
        except SystemExit as done:
            if done.code not in (0, None):
                failures.append(done)
        except BaseException as exc:  # noqa: BLE001 - the test reports it
            failures.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive() and failures == []


EOF_SCRIPT = """
import socket, sys
import paramiko, typer
from edgekit.cli import app, main

kind = sys.argv[1]

def boom() -> None:
    if kind == "paramiko":  # a connection closed under a paramiko read: paramiko raises a bare EOFError
        ours, theirs = socket.socketpair()
        theirs.close()
        paramiko.packet.Packetizer(ours).read_all(4)
    elif kind == "input":
        input("name? ")
    elif kind == "prompt":
        typer.prompt("name")
    else:
        raise EOFError("the end of a file edgekit read")

app.command("boom")(boom)
sys.argv = ["edgekit", "boom"]
main()
"""


@pytest.mark.parametrize(
    "kind,code,said",
    [
        ("paramiko", 1, "error (ConnectionLost): the connection closed unexpectedly (EOFError in paramiko."),
        ("bug", 1, "internal error (EOFError): the end of a file edgekit read"),
        ("input", 130, "aborted"),
        ("prompt", 130, "aborted"),
    ],
)
def test_only_the_end_of_stdin_is_an_abort(kind: str, code: int, said: str) -> None:
    """click turns any EOFError escaping a command into Abort, and edgekit printed "aborted", exit 130, as if
    the user had pressed Ctrl-D: a connection paramiko found closed, or a bug, read as the user's doing. Only
    the end of stdin at a prompt is now; an EOFError from paramiko is a ConnectionLost (exit 1), any other an
    internal error (exit 1)."""
    out = subprocess.run(
        [sys.executable, "-c", EOF_SCRIPT, kind],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )
    assert out.returncode == code and said in out.stderr, (out.returncode, out.stderr)
    if code != 130:
        assert "aborted" not in out.stderr


def test_a_closed_pipe_ends_any_command_quietly() -> None:
    """`edgekit formats | head -1` exited 1 (rich's broken-pipe exit), failing a `set -o pipefail` script that got
    all it asked for. The reader here (`true`) is gone before edgekit writes: exit 0, nothing on stderr."""
    import subprocess
    import sys

    # --help is printed by typer's own rich console: `runs --help | head` exited 1 too
    for args in ("formats", "version", "runs --help", "--help"):
        done = subprocess.run(
            ["bash", "-c", f"set -o pipefail; {sys.executable} -m edgekit {args} | true; echo rc=$?"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert "rc=0" in done.stdout and not done.stderr.strip(), (args, done.stdout, done.stderr)


_MODULES_AFTER = """
import json, sys
sys.argv = ["edgekit", *sys.argv[1:]]
from edgekit.cli import main
code = 0
try:
    main()
except SystemExit as exc:
    code = exc.code
print(json.dumps([code, sorted(sys.modules)]))
"""


def _imported(*args: str, home: str) -> tuple[int, set[str]]:
    """The exit code of `edgekit ARGS` (run as the console script runs it, in a child) and the modules it imported."""
    env = {**os.environ, "EDGEKIT_HOME": home}
    out = subprocess.run(
        [sys.executable, "-c", _MODULES_AFTER, *args], capture_output=True, text=True, env=env, timeout=120
    )
    code, modules = json.loads(out.stdout.splitlines()[-1])
    return code, set(modules)


def test_a_command_line_imports_only_its_own_command(tmp_path) -> None:
    """Every command group's module (and what it imports: numpy, SQLAlchemy, pydantic, paramiko) was imported on
    every run of edgekit, ~0.35 s before any work: a command line imports its own; `--help` lists them all."""
    code, imported = _imported("report", "--since", "3x", home=str(tmp_path))
    assert code == 2 and "edgekit.cli.report" in imported, sorted(imported)
    others = {f"edgekit.cli.{name}" for name in ("deploy", "bench", "convert", "runs", "targets", "lab")}
    assert not imported & (others | {"sqlalchemy", "edgekit.store", "numpy"}), imported & others
    code, imported = _imported("--help", home=str(tmp_path))
    assert code == 0 and others <= imported, others - imported
