"""A place as the labgrid coordinator describes it (its tags, who holds it and for how long, the NetworkService
that reaches its board), read from the helper's JSON, and whether it is one a LabSpec asks for.

Apart from the client because every side reads places: the client's answers and waits, acquiring a board
(edgekit/lab/acquire.py) and `edgekit lab`'s table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from edgekit.target import LabSpec

HOLDER = re.compile(  # edgekit/lab/helper.py's (that file imports nothing of edgekit's)
    r"^(?P<host>[^/]+)/(?P<user>.+)\.edgekit-(?P<pid>\d+)-(?P<start>\d+)"
    r"(?:-m(?P<machine>[0-9a-f]{8})b(?P<boot>[0-9a-f]{8})n(?P<pidns>\d+))?$"
)


@dataclass(frozen=True)
class Service:
    """A place's NetworkService, as its exporter publishes it: how to reach the board over SSH."""

    address: str
    username: str
    port: int
    available: bool
    path: str  # exporter/group/resource


@dataclass(frozen=True)
class Place:
    name: str
    tags: dict[str, str]
    holder: str | None  # "host/user" as labgrid shows it, None when free
    held_s: float | None
    comment: str
    reservation: str | None
    services: list[Service] = field(default_factory=list)

    @property
    def service(self) -> Service | None:
        """The first available NetworkService (None when the place has none or its exporter is gone)."""
        return next((s for s in self.services if s.available and s.address), None)

    @property
    def edgekit_pid(self) -> int | None:
        m = HOLDER.match(self.holder or "")
        return int(m["pid"]) if m else None


def holder_text(place: Place) -> str:
    """`vm/alice for 4 m` or `ws1/bob (edgekit pid 4242) for 12 s`."""
    held = f" for {_duration(place.held_s)}" if place.held_s is not None else ""
    m = HOLDER.match(place.holder or "")
    who = f"{m['host']}/{m['user']} (edgekit pid {m['pid']})" if m else (place.holder or "?")
    return who + held


def _duration(seconds: float | None) -> str:
    s = seconds or 0.0
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.0f} min" if s < 7200 else f"{s / 3600:.1f} h"


def parse_place(data: dict[str, Any]) -> Place:
    """A place as the helper reports it (its `places` answer, its `acquired` event)."""
    services = [
        Service(
            str(s.get("address") or ""),
            str(s.get("username") or ""),
            _port(s.get("port")),
            bool(s.get("avail")),
            str(s.get("path")),
        )
        for s in data.get("services", [])
    ]
    return Place(
        name=data["name"],
        tags=dict(data.get("tags") or {}),
        holder=data.get("acquired") or None,
        held_s=data.get("held_s"),
        comment=data.get("comment") or "",
        reservation=data.get("reservation"),
        services=services,
    )


def _port(given: Any) -> int:
    """The port the helper names (22 only when the exporter gives none); a value that is not a number is -1, for
    the place check to refuse as out of range (0 stays 0, refused as such: never read as 22)."""
    if given is None:
        return 22
    try:
        return int(given)
    except (TypeError, ValueError):
        return -1


def held_place(h: dict[str, Any]) -> Place:
    """A holder the helper names while waiting or timing out, as a Place (for holder_text)."""
    return Place(
        name=h["place"], tags={}, holder=h.get("by"), held_s=h.get("held_s"), comment="", reservation=None
    )


def matches(place: Place, spec: LabSpec) -> bool:
    """Whether `place` is one `spec` asks for (its name, every tag; `name` matches the place name), as the
    helper's own matching does."""
    have = {**place.tags, "name": place.name}
    return (spec.place is None or place.name == spec.place) and all(
        have.get(k) == v for k, v in spec.tags.items()
    )
