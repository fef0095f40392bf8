"""What a lab target asks the labgrid coordinator for: which coordinator, which places (tags or a name), how
long to wait for a free one. Read from a target file's `lab:` block or from `lab:TAG=VALUE[:TAG=VALUE]`.

`lab:board=pi4` takes every other field (key, python, runtimes, accept_new, the coordinator) from the target
file named `lab` when there is one (targets/ or $EDGEKIT_TARGETS_DIR): a team keeps its lab's defaults there.
"""

from __future__ import annotations

import os
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from edgekit.errors import TargetError

DEFAULT_COORDINATOR = "127.0.0.1:20408"  # labgrid's own default
INLINE_PREFIX = "lab:"
_TAG_KEY = re.compile(r"^[a-z][a-z0-9_]+$")  # labgrid's TAG_KEY
_TAG_VALUE = re.compile(r"^[A-Za-z0-9_.-]+$")


class LabSpec(BaseModel):
    """A place to acquire: by name, or any free place carrying every tag."""

    model_config = ConfigDict(extra="forbid")

    coordinator: str | None = None  # HOST[:PORT]; default $LG_COORDINATOR, else 127.0.0.1:20408
    tags: dict[str, str] = Field(default_factory=dict)
    place: str | None = None
    wait_s: float = Field(600.0, ge=0)  # how long to wait for a free place before LabWaitTimeout

    def address(self) -> str:
        return self.coordinator or os.environ.get("LG_COORDINATOR") or DEFAULT_COORDINATOR

    def wanted(self) -> str:
        """`board=pi4` or `place pi4-03`, as a user reads it."""
        parts = ([f"place {self.place}"] if self.place else []) + [f"{k}={v}" for k, v in self.tags.items()]
        return " ".join(parts) or "any place"


def is_inline(name: str) -> bool:
    return str(name).startswith(INLINE_PREFIX)


def parse_inline(text: str) -> tuple[dict[str, Any], str]:
    """`lab:board=pi4:rack=2` -> ({"tags": {...}}, target name `lab-board-pi4-rack-2`); `name=X` picks a place."""
    body = text[len(INLINE_PREFIX):]
    tags: dict[str, str] = {}
    place: str | None = None
    for part in filter(None, body.split(":")):
        key, sep, value = part.partition("=")
        if not sep or not _TAG_KEY.match(key) or not _TAG_VALUE.match(value):
            raise TargetError(f"{text!r}: {part!r} is not TAG=VALUE", where="--target",
                              hint="e.g. lab:board=pi4, lab:board=pi5:rack=2, lab:name=pi4-03")
        if key == "name":
            place = value
        else:
            tags[key] = value
    if not tags and not place:
        raise TargetError(f"{text!r} names no tag", where="--target", hint="e.g. lab:board=pi4")
    name = "lab-" + "-".join(f"{k}-{v}" for k, v in [*([("name", place)] if place else []), *tags.items()])
    lab: dict[str, Any] = {"tags": tags}
    if place:
        lab["place"] = place
    return lab, re.sub(r"[^A-Za-z0-9_.-]", "-", name)
