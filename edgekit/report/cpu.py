"""A device's CPU as judging compares two runs' (a change of CPU restarts a baseline; on the host, another CPU is
another machine): the whole device's cores, not the cores a run used.

Since f926395 the agent names `cpu_model` from the cores used ('Cortex-A55 + Cortex-A76', or 'Cortex-A76' pinned
to the big cores) and records every cpu's part (`cpu_parts`); older agents named cpu0's part ('Cortex-A55' on a
big.LITTLE board whose cpu0 is a little core). Compared as strings, the first run after the upgrade read as a
CPU swap and absorbed a real slowdown into a new baseline.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgekit.agent.agent import ARM_PARTS
from edgekit.results import DeviceFacts

PART_SEPARATOR = " + "  # as the agent joins the parts' names in cpu_model


def cpu_name(facts: DeviceFacts) -> str | None:
    """The whole device's CPU: every cpu's part named once, in cpu order ('Cortex-A55 + Cortex-A76'), whatever
    cores the run was pinned to; a run that recorded no parts (an older agent, x86) by its cpu_model."""
    if not facts.cpu_parts:
        return facts.cpu_model
    order = sorted(facts.cpu_parts, key=lambda cpu: int(cpu) if cpu.isdigit() else 0)
    parts = dict.fromkeys(facts.cpu_parts[cpu].lower() for cpu in order)
    return PART_SEPARATOR.join(ARM_PARTS.get(part, part) for part in parts)


def same_cpu(a: str, b: str) -> bool:
    """Two CPU names (cpu_name) name one CPU: the same set of parts, or one a single part that is one of the
    other's (an older agent's cpu0 part beside a newer one's every part: the same board, not a swap)."""
    x, y = set(a.split(PART_SEPARATOR)), set(b.split(PART_SEPARATOR))
    return x == y or (len(x) == 1 and x <= y) or (len(y) == 1 and y <= x)


@dataclass(frozen=True)
class Cpu:
    """A run's CPU in a key's fingerprint (fingerprint.differs compares it by same_cpu, not as a string)."""

    name: str

    def __str__(self) -> str:
        return self.name


def cpu_of(facts: DeviceFacts) -> Cpu | None:
    name = cpu_name(facts)
    return Cpu(name) if name is not None else None
