"""A lab target becomes a board: acquire a matching place, read its NetworkService, and return an SSH target
named after the place, with that place's own known_hosts file. The Lease rides on the target; the transport
that `open_transport` makes for it releases the place when it closes (edgekit/transport/leased.py).

Host keys are per place (`<data dir>/lab/known_hosts/<place>`): a board re-flashed under the same place name
keeps being checked against its own key, and two places behind one address never vouch for each other. An
unknown key is refused unless the lab target opts in with `accept_new: true` (then pinned on first use); a
changed key is always refused, as for any board.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekit.errors import TargetError
from edgekit.lab.client import LabClient, Say
from edgekit.lab.errors import (
    LabError,
    NoReachablePlace,
    SamePlaceTwice,
    no_matching_place,
    no_reachable_place,
)
from edgekit.lab.lease import Lease, PlaceHold
from edgekit.lab.place import Place, matches
from edgekit.paths import data_dir

if TYPE_CHECKING:
    from edgekit.target import Target


def known_hosts_for(place: str) -> Path:
    folder = data_dir() / "lab" / "known_hosts"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / re.sub(r"[^A-Za-z0-9_.-]", "_", place)


def acquire_target(template: Target, say: Say | None = None) -> Target:
    """Wait for and acquire one place for `template` (a target with a `lab:` block); the board's Target. A place
    whose name or NetworkService edgekit refuses (check_place) is never taken: the helper passes it over as it
    does a place another target of the run asks for by name, and the waiting line says which and why. One that
    turned bad between the look and the acquiring is given back and the wait goes on for another."""
    if template.lab is None:
        raise LabError("not a lab target", where=template.name)
    check_no_address(template)
    tell = say or (lambda _m: None)
    client = LabClient(template.lab.address())
    refused = usable_places(template, client.places(), client.coordinator)
    tell(f"lab: acquiring a place with {template.lab.wanted()} from {client.coordinator}")
    deadline = time.monotonic() + template.lab.wait_s
    while True:
        spec = template.lab.model_copy(
            update={"wait_s": max(1.0, deadline - time.monotonic())} if refused else {}
        )
        spec._avoid = frozenset(template.lab._avoid | set(refused))  # never taken, never waited for

        def waiting(pending: Lease) -> None:
            # while it waits, the lease rides on the template: a deploy's Ctrl-C or SIGTERM (TargetSession.interrupt)
            # closes it, which ends the wait at once (a signal to edgekit's pid alone never reached the helper)
            pending.refused = dict(refused)  # as the helper was told: said while waiting
            template._lease = pending

        try:
            lease = client.hold(spec, count=1, say=tell, started=waiting)
        finally:
            template._lease = None  # the template stays a template: the place's target gets the lease
        place = lease.places[0]
        tell(f"lab: acquired {place.name} in {lease.acquire_s:.2f} s")
        try:
            return place_target(template, place, lease)
        except PlaceRefused as exc:
            lease.close()  # its exporter's YAML changed since the look: given back, another one waited for
            refused[place.name] = exc.why
            tell(f"lab: {place.name} given back: {exc.message}")
            usable_places(template, client.places(), client.coordinator, refused)
        except BaseException:
            lease.close()
            raise


class PlaceRefused(LabError):
    """A place whose name or NetworkService edgekit refuses (check_place): `why` names the field."""

    def __init__(self, message: str, why: str, *, where: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, where=where, hint=hint)
        self.why = why


def refusals(template: Target, places: Sequence[Place]) -> dict[str, str]:
    """place -> why edgekit refuses it (its name, or its available NetworkService's address, port or user, read as
    a target file's are: check_place), for the places given that have an available NetworkService."""
    refused = {}
    for place in places:
        service = place.service
        if service is not None:
            why = place_problems(
                template, place, service.address, service.port, template.user or service.username
            )
            if why:
                refused[place.name] = why
    return refused


def usable_places(
    template: Target, places: Sequence[Place], coordinator: str, known: dict[str, str] | None = None
) -> dict[str, str]:
    """The matching places edgekit refuses (place -> why), with `known` refusals kept; NoReachablePlace (exit 1,
    as a lab whose exporters are down) when no matching place is left that has an available NetworkService and is
    not refused: no waiting helps."""
    assert template.lab is not None  # lab targets only
    matching = [place for place in places if matches(place, template.lab)]
    refused = {**(known or {}), **refusals(template, matching)}
    if any(p.service is not None and p.name not in refused for p in matching) or not matching:
        return refused
    wanted = template.lab.wanted()
    if not refused:  # every exporter of them is down
        raise no_reachable_place(wanted, [p.name for p in matching], coordinator)
    down = [p.name for p in matching if p.name not in refused]
    raise NoReachablePlace(
        f"every place matching {wanted} is refused by edgekit: "
        + "; ".join(f"place {name!r} of the lab is refused: {why}" for name, why in refused.items())
        + (f"; and {', '.join(down)} has no available NetworkService (exporter down?)" if down else ""),
        where=coordinator,
        hint=REFUSED_HINT,
    )


def _tag_typo(asked: dict[str, str], places: list[Place]) -> str:
    """A tag name or value no place has, with the nearest one some place has: `bord=pi4` -> board."""
    import difflib

    have = [{**p.tags, "name": p.name} for p in places]  # `name` matches the place's name (client.matches)
    names = sorted({k for tags in have for k in tags})
    for key, value in asked.items():
        if key not in names:
            near = difflib.get_close_matches(key, names, n=1)
            return f"no place has a tag {key!r}" + (f" (did you mean {near[0]}?)" if near else "")
        values = sorted({tags[key] for tags in have if key in tags})
        if value not in values:
            near = difflib.get_close_matches(value, values, n=1)
            return f"no place has {key}={value}" + (f" (did you mean {key}={near[0]}?)" if near else "")
    return ""


def check_matchable(template: Target) -> None:
    """Before any work: some place of the lab is one the target asks for (NoMatchingPlace, exit 2, in a second or
    two, not after the conversions). Whether it is free is for acquire_target to wait on."""
    if template.lab is None:
        return
    check_no_address(template)
    client = LabClient(template.lab.address())
    places = client.places()
    matching = [place for place in places if matches(place, template.lab)]
    if not matching:
        known = [
            f"{p.name} ({', '.join(f'{k}={v}' for k, v in sorted(p.tags.items())) or 'no tags'})"
            for p in places
        ]
        raise no_matching_place(
            template.lab.wanted(), known, client.coordinator, _tag_typo(template.lab.tags, places)
        )
    usable_places(template, places, client.coordinator)  # none left that edgekit takes: no waiting helps


def check_distinct_places(targets: Sequence[Target]) -> None:
    """Before acquiring anything: the lab targets of one run each take a place of their own (a board is measured
    once per run), so lab targets that between them match fewer places than they are (`--target lab:board=pi5
    --target lab:name=pi5-01` with one pi5) are refused at once (SamePlaceTwice, exit 2), not left to whichever
    acquires first while the other fails. The places compared are the ones each target's lab lists as matching
    with a NetworkService (check_matchable's); whether they are free is for the acquiring to wait on."""
    labs = [t for t in targets if t.lab is not None and t._lease is None]
    if len(labs) < 2:
        return
    listed: dict[str, list[Place]] = {}
    choices: list[list[tuple[str, str]]] = []  # per lab target: (coordinator, place) it could take
    for target in labs:
        assert target.lab is not None  # filtered above
        address = target.lab.address()
        if address not in listed:
            listed[address] = LabClient(address).places()
        choices.append(
            [(address, p.name) for p in listed[address] if p.service is not None and matches(p, target.lab)]
        )
    short = _without_a_place_each(choices)
    if short is None:
        _keep_named_places(labs)
        return
    names, places = [labs[i] for i in short[0]], sorted({p for _, p in short[1]})
    wanted = ", ".join(f"{t.name} ({t.lab.wanted() if t.lab else '?'})" for t in names)
    raise SamePlaceTwice(
        f"{len(names)} lab targets of this run can only take {len(places)} place(s) between them "
        f"({', '.join(places) or 'none'}): {wanted}; a board is measured once per run",
        where=", ".join(sorted({a for a, _ in short[1]})) or labs[0].lab.address(),  # type: ignore[union-attr]
        hint="give one lab target per board type (`--target lab:board=pi4` and `--target lab-pi4` are the "
        "same boards), or add places to the lab",
    )


def _keep_named_places(labs: Sequence[Target]) -> None:
    """Acquiring follows the assignment found above: a target asking for a place by name can only have that one,
    so the other lab targets of the run (on the same coordinator) never take it. `--target lab:board=rx --target
    lab:name=b1` with b1 and b2 free failed at random: the tag target acquired b1 first, the name target then
    found its only place held by its own run (SamePlaceTwice)."""
    for target in labs:
        assert target.lab is not None  # check_distinct_places's lab targets
        target.lab._avoid = frozenset(
            other.lab.place
            for other in labs
            if other is not target
            and other.lab is not None
            and other.lab.place
            and other.lab.place != target.lab.place
            and other.lab.address() == target.lab.address()
        )


def _without_a_place_each(
    choices: list[list[tuple[str, str]]],
) -> tuple[list[int], set[tuple[str, str]]] | None:
    """Whether every target (its index in `choices`) can have a place of its own (a bipartite matching); if not,
    the targets that cannot and the fewer places they share between them (Hall's condition fails there)."""
    owner: dict[tuple[str, str], int] = {}

    def place_for(i: int, seen: set[tuple[str, str]]) -> bool:
        for place in choices[i]:
            if place in seen:
                continue
            seen.add(place)
            if place not in owner or place_for(owner[place], seen):
                owner[place] = i
                return True
        return False

    for i in range(len(choices)):
        seen: set[tuple[str, str]] = set()
        if not place_for(i, seen):  # i and the targets holding the places it reached share only those
            return sorted({i, *(owner[p] for p in seen)}), seen
    return None


def check_no_address(template: Target) -> None:
    """A lab target's board is reached at its place's NetworkService (address and port, from the exporter): a
    `host:` or `port:` of its own (file, lab.yaml defaults, environment or --set) was silently overwritten, so
    it is refused (TargetError, exit 2) rather than looking used."""
    given = sorted(
        field
        for field in ("host", "port")
        if field in template.model_fields_set or field in template._overrides
    )
    if given:
        raise TargetError(
            f"{' and '.join(f'`{f}:`' for f in given)} in a lab target: a lab target's address comes from the "
            "NetworkService of the place it acquires (the exporter's address and port), never from the target",
            where=template.source or template.name,
            hint=f"remove {' and '.join(given)} from the lab target (or from the `lab` defaults file); a board "
            "at a fixed address is a target without a `lab:` block",
        )


def place_target(template: Target, place: Place, lease: Lease | PlaceHold | None) -> Target:
    """The SSH target for one acquired place (its NetworkService: address, port, user unless the file sets one),
    its name, address and user checked as a target file's are (check_place)."""
    service = place.service
    if service is None:
        raise LabError(
            f"place {place.name} has no available NetworkService (its exporter is gone, or the place "
            "matches none)",
            where=template.name,
            hint=f"labgrid-client -p {place.name} show; the exporter's YAML needs a NetworkService "
            "with address, username and port",
        )
    user = template.user or service.username
    check_place(template, place, service.address, service.port, user)
    update: dict[str, Any] = {
        "name": place.name,
        "host": service.address,
        "port": service.port,
        "user": user,
        "known_hosts": known_hosts_for(place.name),
        "description": f"{place.name} ({' '.join(f'{k}={v}' for k, v in place.tags.items())}) via labgrid "
        f"{template.lab.address() if template.lab else '?'}",
    }
    if template.key is not None:
        update["key"] = Path(str(template.key).replace("{place}", place.name))
    target = template.model_copy(update=update)  # fields checked above: model_copy checks nothing
    target._source = template.source
    target._overrides = template._overrides
    target._lease = lease
    target._place = place
    return target


REFUSED_HINT = (
    "a place's name is a board's name (letters, digits, '.', '_', '-'; no '/' or '..'), its NetworkService a plain "
    "address, a port 1-65535 and a user name: the lab's admin renames the place (labgrid-client create / delete) "
    "or fixes the exporter's YAML"
)


def place_problems(template: Target, place: Place, address: str, port: int, user: str | None) -> str | None:
    """Why a place is refused (check_place), naming each field; None when it is not."""
    from pydantic import ValidationError

    from edgekit.target import Target

    try:
        Target.model_validate({"name": place.name, "host": address, "port": port, "user": user})
    except ValidationError as exc:
        said = {
            "name": "its name",
            "host": "its NetworkService's address",
            "port": "its NetworkService's port",
        }
        said["user"] = "the target's user" if template.user else "its NetworkService's username"
        return "; ".join(
            f"{said.get(str(e['loc'][0]), str(e['loc'][0])) if e['loc'] else 'it'}: {e['msg']}"
            for e in exc.errors()
        )
    return None


def check_place(template: Target, place: Place, address: str, port: int, user: str | None) -> None:
    """A place's name names folders here (runs/, the store's history) and on the board (its run folder, removed
    with `rm -rf` at the end), its NetworkService's address and user go to ssh, and a coordinator takes any
    string from anyone who reaches its port (labgrid has no authentication): they are read as a target file's
    are, and a place they fail is refused (PlaceRefused, a LabError naming the field), never turned into a path
    or a command."""
    problems = place_problems(template, place, address, port, user)
    if problems:
        raise PlaceRefused(
            f"place {place.name!r} of the lab is refused: {problems}",
            problems,
            where=template.name,
            hint=REFUSED_HINT,
        )
