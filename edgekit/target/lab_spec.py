"""A lab target's `lab:` block (docs/lab.md): what it asks the labgrid coordinator for (a place by name, or any free
place carrying every tag), where the coordinator is, and how long to wait for a free place.
"""

from __future__ import annotations

import os
import re

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator
from pydantic_core import PydanticCustomError

# The `lab:` block (docs/lab.md): what a lab target asks the labgrid coordinator for. Also read from
# `lab:TAG=VALUE[:TAG=VALUE]`, which takes every other field from the target file named `lab`, if any.
DEFAULT_COORDINATOR = "127.0.0.1:20408"  # labgrid's own default
INLINE_PREFIX = "lab:"
TAG_KEY = re.compile(r"^[a-z][a-z0-9_]+$")  # labgrid's TAG_KEY
TAG_VALUE = re.compile(r"^[A-Za-z0-9_.-]+$")
DEFAULT_COORDINATOR_PORT = 20408
# HOST[:PORT]: a name or IPv4 address, or an IPv6 address in brackets; the port is checked apart (1-65535). A host
# never starts with '-' ('-h', '--version' reached labgrid's helper as options: "usage: ...", exit 1)
COORDINATOR = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.][A-Za-z0-9_.-]*)(?::(?P<port>.*))?$")
COORDINATOR_FORM = "HOST[:PORT] (say labgrid.lab:20408 or 127.0.0.1; PORT 1-65535, 20408 if left out)"


def coordinator_address(value: str) -> str:
    """A coordinator's HOST[:PORT] as labgrid's client takes it, HOST:PORT (PORT 20408 when left out: gRPC
    would try 443); ValueError naming the expected form for anything else ('127.0.0.1:notaport', 'host:0',
    'a b')."""
    m = COORDINATOR.match(value.strip())
    port = m["port"] if m else None
    if m is None or (
        port is not None and not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535)
    ):
        raise ValueError(f"{value!r} is not a coordinator address: expected {COORDINATOR_FORM}")
    return f"{m['host']}:{int(port) if port is not None else DEFAULT_COORDINATOR_PORT}"


class LabSpec(BaseModel):
    """A place to acquire: by name, or any free place carrying every tag."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # an infinite wait is a hang, not a value

    coordinator: str | None = None  # HOST[:PORT]; default $LG_COORDINATOR, else 127.0.0.1:20408
    tags: dict[str, str] = Field(default_factory=dict)
    place: str | None = None
    wait_s: float = Field(600.0, ge=0, le=86400)  # how long to wait for a free place before LabWaitTimeout
    # places another lab target of the same run asks for by name: never taken by this one (set by
    # edgekit/lab/acquire.py check_distinct_places), so a tag target cannot take a named target's only place
    _avoid: frozenset[str] = PrivateAttr(default_factory=frozenset)

    @field_validator("coordinator")
    @classmethod
    def _coordinator(cls, value: str | None) -> str | None:
        return None if value is None else coordinator_address(value)

    @field_validator("place")
    @classmethod
    def _place(cls, value: str | None) -> str | None:
        """A place's name is a target's name (acquire.py check_place reads the coordinator's with that rule):
        `lab:name=-h` reached labgrid's helper as an option ("usage: ...", exit 1)."""
        from edgekit.target.schema import TARGET_NAME

        if value is not None and not re.fullmatch(TARGET_NAME, value):
            raise PydanticCustomError(
                "place_name",
                "{message}",
                {
                    "message": f"{value!r} is not a place name: letters, digits, '.', '_', '-' (not first), up "
                    "to 128 characters",
                    "hint": "a place's name as `labgrid-client places` lists it, e.g. lab:name=pi4-03",
                },
            )
        return value

    def address(self) -> str:
        if self.coordinator:
            return self.coordinator
        env = os.environ.get("LG_COORDINATOR")
        if not env:
            return DEFAULT_COORDINATOR
        try:
            return coordinator_address(env)
        except ValueError as exc:
            from edgekit.errors import UsageError

            raise UsageError(str(exc), where="$LG_COORDINATOR") from None

    def wanted(self) -> str:
        """`board=pi4` or `place pi4-03`, as a user reads it."""
        parts = ([f"place {self.place}"] if self.place else []) + [f"{k}={v}" for k, v in self.tags.items()]
        return " ".join(parts) or "any place"
