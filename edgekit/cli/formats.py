"""`edgekit formats`: every format, its runtime and files, and where it can run (this host; a target)."""

from __future__ import annotations

import difflib
from typing import Any

import click
import typer
from rich.table import Table

from edgekit.errors import (
    HostKeyError,
    HostNameError,
    Interrupted,
    RemoteTimeout,
    TransportError,
    UsageError,
    WorkDirError,
)
from edgekit.formats import Format
from edgekit.terminal import Console, plain

console = Console()


def agreeing_format(given: Format | None, stated: Format | None) -> Format | None:
    """The artifact's format: `--format` where its metadata says none, else the metadata's; a `--format` that
    contradicts the metadata (a .param converted as ncnn-fp32 labelled ncnn-int8) is a usage error."""
    if given is not None and stated is not None and given is not stated:
        raise UsageError(
            f"the artifact's metadata says {stated.value}; --format {given.value} contradicts it",
            where="--format",
            hint="leave --format out: it is for a file without metadata",
        )
    return given or stated


class FormatName(click.Choice):
    """A format's name in any case (`ONNX-FP32` is onnx-fp32); a name that is no format says the nearest ones
    ("did you mean onnx-fp32?") instead of listing all 21. Gives the name as written in Format (typer makes it one)."""

    def __init__(self) -> None:
        super().__init__([f.value for f in Format], case_sensitive=False)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            return super().convert(value, param, ctx)
        except click.BadParameter:
            near = difflib.get_close_matches(
                str(value).lower(), [str(c) for c in self.choices], n=3, cutoff=0.6
            )
            guess = f"; did you mean {', '.join(near)}?" if near else ""
            self.fail(
                f"{value!r} is no format{guess} (`edgekit formats` lists all {len(self.choices)})", param, ctx
            )


# `--format/-f`, repeatable, for commands that take a subset of a recipe's formats (convert, deploy): shown as
# FORMAT, since the 21 choices wrap mid-word in --help; any case; a wrong one names the nearest. typer only reads it.
FORMATS_OPTION: Any = typer.Option(
    None,
    "--format",
    "-f",
    metavar="FORMAT",
    click_type=FormatName(),
    help="only these formats (repeatable, any case; `edgekit formats` lists them)",
)


LISTED = "listed"  # a target not probed: what its file lists (said under the table)


def exc_first_line(exc: Exception) -> str:
    """An error's first line (where: what), without its hint."""
    return str(exc).splitlines()[0]


def formats_cmd(
    target: str | None = typer.Option(
        None, "--target", "-t", help="also probe this target (starts an emulated device)"
    ),
    set_: list[str] | None = typer.Option(None, "--set", help="override a target field (repeatable)"),
) -> None:
    """List every format with its runtime, files and device packages; whether this host can convert and run it;
    with --target, whether that device has a module that runs it.

    Example: edgekit formats --target pi4-emu
    """
    from edgekit.formats import Format
    from edgekit.runtimes import spec_for

    if set_ and not target:  # it overrides a target's fields: without one it would change nothing
        raise UsageError(
            "--set overrides a target's fields: give the target with --target",
            hint="edgekit formats --target pi4-emu --set port=2222",
        )
    device: dict[str, str | None] | None = None
    listed: list[str] = []
    unprobed: TransportError | None = None  # the target could not be reached: its file's runtimes only
    this_host = False
    if target:
        from edgekit.emu.device_info import check_target
        from edgekit.target import load_target

        tgt = load_target(target, set_ or [])
        listed, this_host = tgt.runtimes, tgt.is_this_host  # `local`: host-only formats run there too
        try:
            device = check_target(tgt).runtimes
        except TransportError as exc:  # a phone not at hand: what its target file lists still answers
            # a changed key, a bad name, a work dir it cannot make, a python that hangs: said, never "not
            # probed" as if unreachable (the device answered)
            if isinstance(exc, (Interrupted, HostKeyError, HostNameError, WorkDirError, RemoteTimeout)):
                raise
            unprobed = exc
    table = Table(title="formats")
    # A format's name is what the user types next: never cut to "tflite-onnx2tf-…" on a narrow terminal; nor is
    # the module that runs it here (one word: "ai_edge_li / tert" read as two). The host's headers take two lines
    # so the table fits 80 columns; the file suffixes fold.
    whole = {"format", "host\nrun"}
    for col in (
        "format",
        "runtime",
        "files",
        "host\nconvert",
        "host\nrun",
        *((plain(target),) if target else ()),  # as given: a name, or a path
    ):
        table.add_column(
            col, no_wrap=col in whole, min_width=22 if col == "format" else None, overflow="fold"
        )
    packages: dict[str, str] = {}  # per runtime, once (its formats share them): below the table
    for fmt in Format:
        spec = spec_for(fmt)
        packages[spec.runtime.value] = ", ".join(f"{p.pip} / {p.termux or 'pip'}" for p in spec.packages)
        host_mod = spec.host_module()
        row = [
            fmt.value,
            spec.runtime.value,
            " + ".join(spec.suffixes),
            "yes" if spec.converter_available() else "[red]no[/]",
            host_mod or "[red]no[/]",
        ]
        if target and spec.host_only and not this_host:
            row.append("host only (a reference, sent to no board)")
        elif device is not None:
            have = [f"{m} {device[m]}" for m in spec.modules() if device.get(m)]
            note = "" if any(m in listed for m in spec.modules()) else " (not in the target's runtimes)"
            missing = f"[red]no[/] ({spec.not_installable or 'edgekit targets setup'})"
            row.append(plain(have[0] + note) if have else missing)  # the device's version, as it said it
        elif unprobed is not None:
            row.append(LISTED if any(m in listed for m in spec.modules()) else "[dim]not listed[/]")
        table.add_row(*row)
    console.print(table)
    if unprobed is not None:
        console.print(
            f"[yellow]{plain(target or '')} was not probed[/] ({plain(exc_first_line(unprobed))}): its column "
            f"is what the target file lists ({plain(', '.join(listed))}), not what the device has; `edgekit formats "
            f"--target {plain(target or '')}` again once it is reachable says which it has",
            highlight=False,
        )
    console.print("device packages per runtime (pip / Termux's pkg):", highlight=False)
    for runtime, listed_packages in packages.items():
        console.print(f"  {runtime}: {listed_packages}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add `edgekit formats` to the app."""
    app.command("formats")(formats_cmd)
