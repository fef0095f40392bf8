"""`edgekit emu build|up|status|down`: emulated ARM devices on this machine (qemu-user + arm64 CPython
sysroot + a real OpenSSH server on 127.0.0.1). Wall times measured on them are emulated, never latency."""

from __future__ import annotations

import time

import typer
from rich.table import Table

from edgekit.terminal import Console, plain

emu_app = typer.Typer(
    help="Build, start, inspect and stop emulated ARM devices (pi4-emu, pi5-emu, phone-emu).\n\n"
    "Example: edgekit emu up pi4-emu",
    no_args_is_help=True,
)
console = Console()
err_console = Console(stderr=True, soft_wrap=True)


def _log(message: str) -> None:
    console.print(f"[dim]{plain(message)}[/]", highlight=False)


@emu_app.command("build")
def build_cmd(name: str = typer.Argument(..., help="device: pi4-emu, pi5-emu or phone-emu")) -> None:
    """Download and cache a device's assets once (arm64 sysroot, aarch64 wheels, keys); a second call
    returns at once.

    Example: edgekit emu build pi4-emu
    """
    from edgekit.emu.build import build
    from edgekit.emu.runner import refresh

    start = time.monotonic()
    dev = build(name, _log)
    console.print(f"{name}: built in {plain(dev.root)} ({time.monotonic() - start:.1f} s)", highlight=False)
    refresh(name, _log)  # a running device whose keys this build rewrote is restarted (and said)


@emu_app.command("build-plugin")
def build_plugin_cmd(force: bool = typer.Option(False, "--force", help="rebuild even if built")) -> None:
    """Build the instruction-counting qemu plugin (header from Debian's qemu source, gcc, exact self-test);
    `emu build` also does it. Needed for `edgekit estimate` and counts on emulated devices.

    Example: edgekit emu build-plugin
    """
    from edgekit.emu.plugin.build import build_plugin

    path = build_plugin(_log, force=force)
    console.print(f"counting plugin: {plain(path)}", highlight=False)


@emu_app.command("up")
def up_cmd(name: str = typer.Argument(..., help="device: pi4-emu, pi5-emu or phone-emu")) -> None:
    """Start a device's sshd on 127.0.0.1 (building it first if needed); harmless if it is running.

    Example: edgekit emu up pi4-emu
    """
    from edgekit.emu.runner import up

    start = time.monotonic()
    state = up(name, _log)
    console.print(
        f"{name}: running on 127.0.0.1:{state.port} (sshd pid {state.sshd_pid}, "
        f"cpu {state.cpu}) in {time.monotonic() - start:.2f} s",
        highlight=False,
    )


@emu_app.command("status")
def status_cmd(
    names: list[str] = typer.Argument(None, help="devices to show (default: every one)", show_default=False),
) -> None:
    """Show every emulated device (or those named): built, running, port, sshd pid, CPU model.

    Example: edgekit emu status pi4-emu
    """
    from edgekit.emu.runner import status
    from edgekit.emu.specs import device_spec

    for name in names or []:
        device_spec(name)  # an unknown name is refused (exit 2), listing the known ones
    table = Table(title="emulated devices")
    for col in ("name", "cpu", "built", "running", "port", "sshd pid"):
        table.add_column(col)
    rows = [row for row in status() if not names or row.name in names]
    for row in rows:
        table.add_row(
            row.name,
            row.cpu,
            "yes" if row.built else "no",
            "yes" if row.running else "no",
            str(row.port or "-"),
            str(row.sshd_pid or "-"),
        )
    console.print(table)
    for row in rows:
        if row.note:
            console.print(f"note: {plain(row.note)}", highlight=False)


@emu_app.command("down")
def down_cmd(name: str = typer.Argument(..., help="device: pi4-emu, pi5-emu or phone-emu")) -> None:
    """Stop a device: its sshd and every process it started; nothing is left running.

    Example: edgekit emu down pi4-emu
    """
    from edgekit.emu.runner import stop

    done = stop(name, lambda m: err_console.print(plain(m), highlight=False))
    said = "stopped" if done.stopped else "" if done.orphans else "was not running"
    if done.leftovers:
        pids = ", ".join(map(str, done.leftovers))
        said += f", but its sessions were: stopped them (pid {pids})" if said else f"stopped (pid {pids})"
    if done.orphans:
        pids = ", ".join(map(str, done.orphans))
        said += (", and " if said else "") + f"stopped its sshd that no state file recorded (pid {pids})"
    if done.stale:
        said += " (stale state removed)" if not done.orphans else "; stale state removed"
    console.print(f"{name}: {said}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add `edgekit emu` to the app."""
    app.add_typer(emu_app, name="emu")
