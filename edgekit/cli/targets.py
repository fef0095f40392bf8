"""`edgekit targets [check|setup]`: the devices edgekit can run on, what they are, and their runtimes."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer
from rich.table import Table

from edgekit.terminal import Console, plain

if TYPE_CHECKING:
    from edgekit.emu.device_info import DeviceInfo
    from edgekit.target import Target

targets_app = typer.Typer(
    help="List targets (targets/*.yaml); `check NAME` connects and shows what the device is; `setup NAME` "
    "installs missing runtimes from wheels downloaded here and pushed over SSH.\n\n"
    "Example: edgekit targets check pi4-emu",
    invoke_without_command=True,
)
console = Console()

SET_HELP = "override a target field, e.g. --set host=192.168.1.20 --set port=2222 (repeatable)"


@targets_app.callback()
def list_cmd(ctx: typer.Context) -> None:
    """List every target: name, kind, host, emulated CPU.

    Example: edgekit targets
    """
    if ctx.invoked_subcommand is None:
        _print_targets()


@targets_app.command("list", hidden=True)
def list_alias() -> None:
    """The same list as `edgekit targets` (`list` is what people type).

    Example: edgekit targets list
    """
    _print_targets()


def _print_targets() -> None:
    from edgekit.emu.device import running_target
    from edgekit.errors import EdgekitError
    from edgekit.paths import emu_dir
    from edgekit.target import list_target_names, load_target

    # An EDGEKIT_EMU_HOME that cannot be a folder is the command's error (UsageError, exit 2, as `emu status`),
    # not every emulated target's: they were each listed "invalid" with it, and the list exited 0.
    emu_dir()
    rows: list[tuple[str, ...]] = []
    for name in list_target_names():
        try:
            t = running_target(load_target(name))
        except EdgekitError as exc:
            rows.append((name, "[red]invalid[/]", str(exc).splitlines()[0], "", ""))
            continue
        if t.host:
            host = f"{t.host}:{t.port}"
        elif t.lab is not None:  # the board's address comes from the place acquired at deploy time
            host = f"lab {t.lab.wanted()} via {t.lab.address()}"
        else:
            host = "(not running)" if t.emulated else "this machine"
        # looked up by its file's name; stored under its `name:` when that differs (said, so neither surprises)
        shown = name if t.name == name else f"{name} (name: {t.name})"
        rows.append((shown, t.kind, host, t.emulated.cpu if t.emulated else "-", t.expected_cpu or "-"))
    # An address is what a user copies into ssh: the CPU columns wrap at their words (two-line headers, the
    # expected CPU no wider than its longest word) so that the host column keeps "raspberrypi5.local:22" whole
    # at 80 columns; narrower than that, cells fold, never cut.
    cpu_word = max((len(w) for r in rows for w in r[4].split()), default=0)
    table = Table(title="targets")
    for col in ("name", "kind", "host", "emulated\ncpu", "expected\ncpu"):
        table.add_column(
            col, overflow="fold", max_width=max(8, cpu_word) if col.startswith("expected") else None
        )
    for name, kind, *rest in rows:  # the kind is edgekit's (markup); the rest, a file's or an error's words
        table.add_row(plain(name), kind, *map(plain, rest))
    console.print(table)


@targets_app.command("check")
def check_cmd(
    name: str = typer.Argument(..., help="target name (targets/NAME.yaml) or a path"),
    set_: list[str] | None = typer.Option(None, "--set", help=SET_HELP),
) -> None:
    """Connect and print what the device is: machine, CPU model and features, cores, memory, python and
    runtime versions, emulated or not (starts an emulated device if needed).

    Example: edgekit targets check pi4-emu
    """
    from edgekit.target import load_target

    target = load_target(name, set_ or [])  # a bad target file is said before the device code is imported
    from edgekit.emu.device_info import check_target

    info = check_target(target)
    _print_info(target.name, info)
    wrong = _expected_cpu(target, info)
    if (
        wrong is not None
    ):  # the check's finding: a script that gates on it must see it, as deploy's warning is
        console.print(f"[yellow]![/] {plain(target.name)}: {plain(wrong)}", highlight=False)
        raise typer.Exit(1)


def _expected_cpu(target: Target, info: DeviceInfo) -> str | None:
    """The warning deploy and bench give (deploy.expected_cpu) for a device that is not the target's
    `expected_cpu`, from the probe's facts, or None: `targets check` printed the CPU and never compared it."""
    from edgekit.agent.agent import ARM_PARTS
    from edgekit.deploy.expected_cpu import warning
    from edgekit.results import DeviceFacts

    raw = info.raw
    cpu = raw.get("cpu") or {}
    facts = DeviceFacts(
        machine=str(raw.get("machine") or ""),
        # as the agent's facts name it: the part's core, else the model name
        cpu_model=ARM_PARTS.get(cpu.get("CPU part") or "")
        or cpu.get("model name")
        or cpu.get("Processor")
        or None,
        cpu_part=cpu.get("CPU part") or None,
        cpu_parts={str(k): str(v) for k, v in (raw.get("cpu_parts") or {}).items()},
        cores=int(raw.get("cores") or 0),
        python=str(raw.get("python") or ""),
    )
    return warning(target, facts)


@targets_app.command("setup")
def setup_cmd(
    name: str = typer.Argument(..., help="target name (targets/NAME.yaml) or a path"),
    set_: list[str] | None = typer.Option(None, "--set", help=SET_HELP),
) -> None:
    """Install the runtimes the device lacks (numpy and the target's `runtimes:`) from wheels downloaded on
    this machine for the device's python/arch/glibc and pushed over SSH (no internet needed on the device). An
    Android phone in Termux gets Termux's packages (`pkg install`), then pip, and is told what could not be
    installed. Exits 1 (RuntimeInstallError, after the table) when a runtime is still missing.

    Example: edgekit targets setup pi4 --set host=192.168.1.20
    """
    from edgekit.emu.provision import require_installed, setup_target
    from edgekit.target import load_target

    target = load_target(name, set_ or [])
    info = setup_target(target, lambda m: console.print(f"[dim]{plain(m)}[/]", highlight=False))
    _print_info(target.name, info)
    require_installed(target, info)  # a script or a nightly must see it: exit 1


def _print_info(name: str, info: object) -> None:
    raw = info.raw  # type: ignore[attr-defined]
    table = Table(title=plain(name), show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    emulated = info.emulated  # type: ignore[attr-defined]
    host = " (the emulator host's, not the device's)" if emulated else ""
    rows = [
        ("machine", raw["machine"]),
        (
            "emulated",
            f"yes ({raw['emulator']}): wall times are emulated, not device latency" if emulated else "no",
        ),
        ("cpu model", info.cpu_model),  # type: ignore[attr-defined]
        ("cpu features", info.features),  # type: ignore[attr-defined]
        ("board", raw["cpu"].get("Model") or raw["cpu"].get("Hardware") or "-"),
        # under qemu-user the process sees the host's cores and memory: they are said as the host's
        ("cores", f"{raw['cores']}{host}"),
        ("memory", f"{raw['mem_total_mb']} MB total, {raw['mem_available_mb']} MB available{host}"),
        ("python", f"{raw['python']} ({' '.join(raw['libc'])})"),
    ]
    # what the device said is printed as it said it; only edgekit's own "missing" is marked up
    rows = [(key, plain(value)) for key, value in rows]
    rows += [(f"  {k}", plain(v) if v else "[yellow]missing[/]") for k, v in info.runtimes.items()]  # type: ignore[attr-defined]
    for key, value in rows:
        table.add_row(key, str(value))
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add `edgekit targets` to the app."""
    app.add_typer(targets_app, name="targets")
