"""`edgekit lab`: the places of a labgrid lab, their tags, who holds them, and each board's facts from its last
stored run; `edgekit lab release PLACE` gives back a place a dead edgekit left acquired."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.table import Table

from edgekit.cli.report import STORE_HELP
from edgekit.terminal import Console, plain, printable

if TYPE_CHECKING:
    from edgekit.target import LabSpec

lab_app = typer.Typer(
    help="A team's boards shared through a labgrid coordinator: list places, holders and last-run facts.\n\n"
    "Example: edgekit lab --target lab-pi4   (or --coordinator labgrid.lab:20408)",
    invoke_without_command=True,
)
console = Console()
SSH_MIN_FOLD = 24  # an ssh address up to this long is never folded, however narrow the terminal


def _coordinator(coordinator: str | None, target: str | None) -> str:
    from edgekit.target import LabSpec, load_target
    from edgekit.target.lab_spec import coordinator_address

    if coordinator is not None:
        try:
            return coordinator_address(coordinator)
        except ValueError as exc:
            from edgekit.errors import UsageError

            raise UsageError(str(exc), where="--coordinator") from None
    if target:
        spec = load_target(target).lab
        if spec is None:
            from edgekit.errors import TargetError

            raise TargetError(f"{target} is not a lab target (no lab: block)", where="--target")
        return spec.address()
    from edgekit.target import list_target_names

    if "lab" in list_target_names():
        return _defaults_file_spec().address()
    return LabSpec().address()


def _defaults_file_spec() -> LabSpec:
    """The `lab` defaults file's `lab:` block alone (none: $LG_COORDINATOR, else labgrid's default). Loading the
    file as a whole target refused a defaults file with no `lab:` block ("an ssh target needs a host", exit 2)
    that deploy reads fine: its other fields are defaults for lab:TAG=VALUE targets, not a target of its own."""
    from pydantic import ValidationError

    from edgekit.errors import TargetError
    from edgekit.target import LabSpec, target_path
    from edgekit.yamlfile import read_yaml

    path = target_path("lab")
    raw = read_yaml(path, TargetError, max_bytes=64 * 1024)
    block = raw.get("lab") if isinstance(raw, dict) else None
    if block is None:
        return LabSpec()
    try:
        return LabSpec.model_validate(block)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(["lab", *(str(p) for p in first["loc"])])
        raise TargetError(f"{field}: {first['msg']}", where=str(path)) from None


@lab_app.callback()
def lab_cmd(
    ctx: typer.Context,
    coordinator: str | None = typer.Option(
        None,
        "--coordinator",
        "-x",
        help="HOST[:PORT] (default: the target's, "
        "the `lab` target file's, $LG_COORDINATOR, else 127.0.0.1:20408)",
    ),
    target: str | None = typer.Option(
        None,
        "--target",
        "-t",
        help="a lab target (file or lab:TAG=VALUE): its coordinator, and only the places it would take",
    ),
    store: str | None = typer.Option(None, "--store", help=STORE_HELP),
) -> None:
    """List the lab's places: tags, who holds each (an edgekit that is gone is marked stale), its SSH service,
    and the board's facts from its last run in the store (CPU, clocks, temperature).

    Example: edgekit lab --target lab:board=pi4
    """
    if ctx.invoked_subcommand is not None:
        return
    from edgekit.lab.boards import last_facts
    from edgekit.lab.client import LabClient
    from edgekit.lab.errors import lab_command, no_matching_place
    from edgekit.lab.place import holder_text, matches
    from edgekit.store import open_store
    from edgekit.target import load_target

    address = _coordinator(coordinator, target)
    places = LabClient(address).places()
    spec = load_target(target).lab if target else None
    if spec is not None:
        everyone = places
        places = [p for p in places if matches(p, spec)]
        if not places:  # an empty table read as "the lab is empty"; deploy says this, exit 2
            raise no_matching_place(spec.wanted(), [p.name for p in everyone], address)
    table = Table(title=plain(f"lab at {address}" + (f" ({spec.wanted()})" if spec else "")))
    ssh = {
        p.name: f"{p.service.username}@{p.service.address}:{p.service.port}" if p.service else None
        for p in places
    }
    for column in ("place", "tags", "held by"):
        table.add_column(column, overflow="fold")
    # the address a user copies into ssh is never cut (at 80 columns it was 'pi@127.0.0.1:2…'), and no address
    # takes more than a third of the width: one long one (an exporter's typo) squeezed every other column to
    # 3 characters. Longer ones fold onto lines of that width (_folded), whole; the other columns fold as needed
    fold_at = max(SSH_MIN_FOLD, console.width // 3)
    widest = max((len(printable(a)) for a in ssh.values() if a), default=3)
    table.add_column("ssh", no_wrap=True, min_width=min(widest, fold_at))
    table.add_column("last run", overflow="fold")
    unrecorded = _no_store_yet(store)
    with open_store(store, create=False) if unrecorded is None else nullcontext(None) as st:
        for p in places:
            facts = last_facts(st, p.name) if st is not None else None
            # the coordinator's words (place names, tags, holders) and a device's (its CPU): printed as they are
            held = plain(holder_text(p)) if p.holder else "[green]free[/]"
            if p.holder and _is_stale(p):
                held += (
                    f" [red]STALE: that edgekit is gone[/] ({plain(lab_command(address, 'release', p.name))})"
                )
            address_of = ssh[p.name]
            table.add_row(
                plain(p.name),
                plain(" ".join(f"{k}={v}" for k, v in sorted(p.tags.items()))),
                held,
                _folded(address_of, fold_at) if address_of else "[red]no NetworkService[/]",
                plain(facts.summary()) if facts else "-",
            )
    console.print(table)
    if unrecorded is not None:
        console.print(
            f"no run is recorded yet: no results store at {plain(str(unrecorded))} (the first deploy or nightly "
            "on these boards makes it and fills the last-run column)",
            highlight=False,
        )


def _no_store_yet(store: str | None) -> Path | None:
    """The SQLite file the results store will be, when nothing has been recorded there yet: a new team's first
    `edgekit lab` with EDGEKIT_STORE set failed 'no results store here', exit 2, for a column that is only
    facts. Any other trouble with the store (a folder, an empty --store, a bad URL) is still said by open_store."""
    from edgekit.path_kind import PathKind, path_kind
    from edgekit.store.location import _sqlite_file, resolve_url

    if store is not None and not store.strip():
        return None
    path = _sqlite_file(resolve_url(store))
    return path if path is not None and path_kind(path) is PathKind.MISSING else None


def _folded(text: str, width: int) -> str:
    """`text` as it prints (plain), on lines of `width` characters."""
    shown = printable(text)
    return "\n".join(escape(shown[i : i + width]) for i in range(0, len(shown), width))


def _is_stale(place: object) -> bool:
    """Held by an edgekit of this machine that is gone (edgekit/lab/helper.py's `stale`, as the holder judges)."""
    import os
    import socket

    from edgekit.lab.helper import stale

    here = os.environ.get("LG_HOSTNAME", socket.gethostname())  # as labgrid names this host
    return stale(getattr(place, "holder", None) or "", here)


@lab_app.command("release")
def release_cmd(
    place: str = typer.Argument(..., help="the place to give back"),
    coordinator: str | None = typer.Option(
        None,
        "--coordinator",
        "-x",
        help="HOST[:PORT] (default: the target's, "
        "the `lab` target file's, $LG_COORDINATOR, else 127.0.0.1:20408)",
    ),
    target: str | None = typer.Option(
        None, "--target", "-t", help="a lab target (file or lab:TAG=VALUE): its coordinator"
    ),
    kick: bool = typer.Option(False, "--kick", help="release it whoever holds it (tell them first)"),
) -> None:
    """Give back a place held by an edgekit that is gone (this host: checked; another host: pass --kick).

    Example: edgekit lab release pi4-03 --target lab-pi4
    """
    from edgekit.errors import UsageError
    from edgekit.lab.client import LabClient
    from edgekit.lab.errors import lab_command
    from edgekit.lab.place import holder_text

    client = LabClient(_coordinator(coordinator, target))
    found = next((p for p in client.places() if p.name == place), None)
    if found is None:
        raise UsageError(
            f"no place {place!r}",
            where=client.coordinator,
            hint=f"{lab_command(client.coordinator)} lists the places",
        )
    if found.holder is None:
        console.print(f"{plain(place)} is free", highlight=False)
        return
    if kick:  # said once it is done: a kick that fails (the coordinator gone meanwhile) must not read as done
        client.kick(place)
        console.print(f"{plain(place)}: released (was held by {plain(holder_text(found))})", highlight=False)
        return
    if not _is_stale(found):
        raise UsageError(
            f"{place} is held by {holder_text(found)}, which is not a dead edgekit of this host",
            where=client.coordinator,
            hint=f"ask them, or: {lab_command(client.coordinator, 'release', place, '--kick')}",
        )
    client.release_from(place, found.holder)
    console.print(
        f"{plain(place)}: released (its edgekit, pid {found.edgekit_pid}, is gone)", highlight=False
    )


def register(app: typer.Typer) -> None:
    app.add_typer(lab_app, name="lab")
