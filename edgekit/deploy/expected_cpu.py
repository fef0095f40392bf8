"""A target's `expected_cpu` against the CPU its device reports: a wrong host or IP reaching a Pi 5 instead of a
Pi 4 was recorded under pi4 in silence. deploy and bench warn, naming both, and keep the warning among the run's
caveats (--json, the store).

How they are spelled: a target file names cores as ARM does ("Cortex-A72", "Cortex-A76/A55 (big.LITTLE)"); the
agent reports its /proc/cpuinfo's "CPU part" through ARM's part numbers (0xd08: Cortex-A72), else its "model name"
("ARMv8 Processor rev 3 (v8l)", "AMD EPYC 7B13"). Cores are compared by name (a76, a55, x1, n1) whatever the case or
prefix (a part number, 0xd08, as the core it is). A device that reports each cpu's part (cpu_parts) is judged on all
its cores: a core the target names that the device lacks, or one of the device's the target does not name, warns
(a big.LITTLE phone's cpu0 is mostly an A55, which every such phone has). A model name that names no core (a 32-bit kernel's "ARMv8 Processor") cannot be told apart: no warning.
An expected_cpu naming no ARM core ("Intel Core i7 8th gen", "AMD EPYC 7xx3", "Apple M1") is judged only where it
names something distinctive: its vendor (Intel, AMD, ARM or Apple) against the model name's, and a model number both
name (i7-8650U, 5950X, 7B13: a word with three digits or more) against the other's. Anything else is not judged: a
word-by-word rule warned of "Intel Core i7 8th gen" on an "Intel(R) Core(TM) i7-8650U" on every run.
"""

from __future__ import annotations

import re

from edgekit.agent.agent import ARM_PARTS
from edgekit.results import DeviceFacts, TargetRun
from edgekit.target import Target

_CORE = re.compile(
    # Cortex-X1..X4 and X925: x86 (`expected_cpu: x86-64 server`) is no core
    r"(?<![a-z0-9])(?:cortex[-_ ]?)?(a\d{1,3}[a-z]?|x(?:\d|9\d\d)[a-z]?|neoverse[-_ ]?[a-z]\d{1,3})(?![a-z0-9])"
)
_X86 = frozenset({"x86_64", "amd64", "i386", "i686"})


def _cores(text: str) -> set[str]:
    """The ARM core names in `text`, as 'a72', 'x1', 'neoverse-n1'; a part number (0xd08) as the core it is."""
    text = text.lower()
    named = [ARM_PARTS[p].lower() for p in re.findall(r"0x[0-9a-f]{3}", text) if p in ARM_PARTS]
    return {re.sub(r"neoverse[-_ ]?", "neoverse-", m) for m in _CORE.findall(" ".join([text, *named]))}


_VENDORS = {  # words naming a CPU's maker; Apple's and the ARM licensees' cores are one family: ARM
    "intel": ("intel", "xeon", "celeron", "pentium"),
    "amd": ("amd", "ryzen", "epyc", "threadripper", "athlon", "opteron", "phenom"),
    "arm": (
        "arm",
        "armv7",
        "armv8",
        "armv9",
        "aarch64",
        "apple",
        "qualcomm",
        "snapdragon",
        "ampere",
        "graviton",
    ),
}
# not a model: a clock (@ 2.90GHz), a core count (64-Core, 16 cores), a generation (12th Gen)
_NOT_MODEL = re.compile(r"\d+(?:\.\d+)?\s*[gm]hz|\d+[- ]?cores?\b|\d+(?:st|nd|rd|th)\b")


def _vendor(text: str) -> str | None:
    """intel, amd or arm as `text` names its maker (or an ARM core, or Intel's i3/i5/i7/i9), else None."""
    words = set(re.findall(r"[a-z0-9]+", text.lower()))
    found = {v for v, names in _VENDORS.items() if words & set(names)}
    if _cores(text):
        found.add("arm")
    if re.search(r"(?<![a-z0-9])i[3579]-\d{3,}", text.lower()):
        found.add("intel")
    return found.pop() if len(found) == 1 else None


def _models(text: str) -> set[str]:
    """The model numbers in `text` ('8650u' of i7-8650U, '5950x', '7b13', 'n100'): words with 3 digits or more."""
    words = re.findall(r"[a-z0-9]+", _NOT_MODEL.sub(" ", text.lower()))
    return {w for w in words if sum(c.isdigit() for c in w) >= 3}


def _same_model(want: set[str], have: set[str]) -> bool:
    """Whether a model number of each side is the same one, a suffix letter aside (8650 and 8650u, 7950x and
    7950x3d)."""
    return any(a.startswith(b) or b.startswith(a) for a in want for b in have)


def reported_cpu(facts: DeviceFacts) -> str:
    """How the device's CPU is named in the warning: its model, and the part number it was read from."""
    every = list(dict.fromkeys(ARM_PARTS.get(p.lower(), p) for p in facts.cpu_parts.values()))
    if len(every) > 1:
        return " + ".join(every)
    model = facts.cpu_model or facts.machine
    return f"{model} (CPU part {facts.cpu_part})" if facts.cpu_part and facts.cpu_part not in model else model


def device_cores(facts: DeviceFacts) -> set[str] | None:
    """Every core the device has, by name ({'a76', 'a55'}), from each cpu's part; None where a part is not ARM's
    known one (or no part was read: an older agent, an x86 machine)."""
    names = [ARM_PARTS.get(p.lower()) for p in facts.cpu_parts.values()]
    if not names or None in names:
        return None
    return {core for name in names for core in _cores(name or "")}


def mismatch(expected: str | None, facts: DeviceFacts | None) -> bool:
    """Whether the device `facts` describe is certainly not the `expected` CPU (False when either is unknown)."""
    if not expected or not expected.strip() or facts is None:
        return False
    model = facts.cpu_model or ""
    want = _cores(expected)
    every = device_cores(facts)
    if want and every is not None:
        return (
            every != want
        )  # a named core the device lacks, or a core of the device's the target does not name
    if want:
        have = _cores(ARM_PARTS.get((facts.cpu_part or "").lower(), "")) | _cores(model)
        if have:
            return not want & have
        return facts.machine.lower() in _X86  # an x86 machine is no ARM core; an unnamed ARM one may be
    vendor = _vendor(expected)
    machine = facts.machine.lower()
    arm_machine = machine.startswith(("aarch64", "arm")) or bool(
        _cores(ARM_PARTS.get(facts.cpu_part or "", ""))
    )
    have_vendor = _vendor(model) or ("arm" if arm_machine else None)
    if vendor and have_vendor and vendor != have_vendor:
        return True
    if (vendor == "arm" and machine in _X86) or (vendor in ("intel", "amd") and arm_machine):
        return True  # the model name aside, an x86 machine is no ARM CPU (nor an ARM one an x86)
    want, have = _models(expected), _models(model)
    return bool(want and have) and not _same_model(want, have)


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
