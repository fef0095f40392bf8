"""A target's `expected_cpu` against the CPU its device reports: a wrong host or IP reaching a Pi 5 instead of a
Pi 4 was recorded under pi4 in silence. deploy and bench warn, naming both, and keep the warning among the run's
caveats (--json, the store).

How they are spelled: a target file names cores as ARM does ("Cortex-A72", "Cortex-A76/A55 (big.LITTLE)"); the
agent reports its /proc/cpuinfo's "CPU part" through ARM's part numbers (0xd08: Cortex-A72), else its "model name"
("ARMv8 Processor rev 3 (v8l)", "AMD EPYC 7B13"). Cores are compared by name (a76, a55, x1, n1) whatever the case or
prefix (a part number, 0xd08, as the core it is); a big.LITTLE device reports one of its cores (cpu0's, often the little one), which matches when the target
names it. A model name that names no core (a 32-bit kernel's "ARMv8 Processor") cannot be told apart: no warning.
An expected_cpu naming no ARM core ("AMD EPYC") is compared word by word, either side's words within the other's.
"""

from __future__ import annotations

import re

from edgekit.agent.agent import ARM_PARTS
from edgekit.results import DeviceFacts, TargetRun
from edgekit.target import Target

_CORE = re.compile(
    r"(?<![a-z0-9])(?:cortex[-_ ]?)?([ax]\d{1,3}[a-z]?|neoverse[-_ ]?[a-z]\d{1,3})(?![a-z0-9])"
)
_X86 = frozenset({"x86_64", "amd64", "i386", "i686"})


def _cores(text: str) -> set[str]:
    """The ARM core names in `text`, as 'a72', 'x1', 'neoverse-n1'; a part number (0xd08) as the core it is."""
    text = text.lower()
    named = [ARM_PARTS[p].lower() for p in re.findall(r"0x[0-9a-f]{3}", text) if p in ARM_PARTS]
    return {re.sub(r"neoverse[-_ ]?", "neoverse-", m) for m in _CORE.findall(" ".join([text, *named]))}


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def reported_cpu(facts: DeviceFacts) -> str:
    """How the device's CPU is named in the warning: its model, and the part number it was read from."""
    model = facts.cpu_model or facts.machine
    return f"{model} (CPU part {facts.cpu_part})" if facts.cpu_part and facts.cpu_part not in model else model


def mismatch(expected: str | None, facts: DeviceFacts | None) -> bool:
    """Whether the device `facts` describe is certainly not the `expected` CPU (False when either is unknown)."""
    if not expected or not expected.strip() or facts is None:
        return False
    model = facts.cpu_model or ""
    want = _cores(expected)
    if want:
        have = _cores(ARM_PARTS.get((facts.cpu_part or "").lower(), "")) | _cores(model)
        if have:
            return not want & have
        return facts.machine.lower() in _X86  # an x86 machine is no ARM core; an unnamed ARM one may be
    if not model.strip():
        return False
    expected_words, model_words = _words(expected), _words(model)
    return not (expected_words <= model_words or model_words <= expected_words)


def warning(target: Target, facts: DeviceFacts | None) -> str | None:
    """The caveat for a device whose CPU is not the target's expected_cpu, or None."""
    if facts is None or not mismatch(target.expected_cpu, facts):
        return None
    where = f" in {target.source}" if target.source else ""
    return (
        f"the device reports its CPU as {reported_cpu(facts)}, not the target's expected_cpu {target.expected_cpu}: "
        f"these figures may be another device's (a wrong host or IP), recorded under {target.name} all the same; "
        f"check the target's host, or its expected_cpu{where}"
    )


def check_run(run: TargetRun, target: Target) -> str | None:
    """Add the warning (if any) to the run's caveats, once, and return it."""
    said = warning(target, run.agent.facts_before if run.agent is not None else None)
    if said is not None and said not in run.caveats:
        run.caveats.append(said)
    return said
