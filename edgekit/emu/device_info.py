"""What a device is (`edgekit targets check`): a few lines of Python run with each of the target's pythons on
the device (stdlib only), its facts (machine, python, libc, CPU, memory, each runtime's version as the python a
deploy runs it with sees it) as a DeviceInfo, and the wheel platform that fits it (for `targets setup`,
provision.py). A python that does not run, or hangs, is named by its field.
"""

from __future__ import annotations

import inspect
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic_core import from_json

from edgekit.agent.agent import cpu_fields, cpu_name
from edgekit.emu.device import emulated_key_errors, ensure_device
from edgekit.emu.wheels import WheelPlatform
from edgekit.errors import RemoteTimeout, TargetError
from edgekit.runtimes import device_packages
from edgekit.target import Target, python_argv
from edgekit.transport import Transport, open_transport

Log = Callable[[str], None]

# Runs on the device with the device's python (stdlib only, nothing imported that is slow under qemu).
PROBE = r"""from __future__ import annotations
import json, os, platform, sys
from typing import Optional
__CPU_FIELDS__
def meta(name):
    try:
        from importlib import metadata
        return metadata.version(name)
    except Exception:
        return None
info = {"machine": platform.machine(), "python": platform.python_version(), "libc": list(platform.libc_ver()),
        "cores": os.cpu_count(), "emulator": os.environ.get("EDGEKIT_EMULATOR"), "hostname": platform.node(),
        "system": platform.system(), "android": "ANDROID_ROOT" in os.environ,
        "termux_version": os.environ.get("TERMUX_VERSION"), "prefix": os.environ.get("PREFIX"),
        "venv": sys.prefix != getattr(sys, "base_prefix", sys.prefix)}
try:
    cpu, parts = cpu_fields(open("/proc/cpuinfo").read())
except OSError:
    cpu, parts = {}, {}
info["cpu"] = {
    k: cpu.get(k) for k in ("model name", "Processor", "CPU part", "Features", "flags", "Model", "Hardware")
}
info["cpu_parts"] = parts
mem = {}
try:
    for line in open("/proc/meminfo"):
        k, _, v = line.partition(":")
        mem[k] = int(v.split()[0])
except (OSError, ValueError, IndexError):
    pass
info["mem_total_mb"] = round(mem.get("MemTotal", 0) / 1024, 1) or None
info["mem_available_mb"] = round(mem.get("MemAvailable", 0) / 1024, 1) or None
DISTS = __DISTS__
info["runtimes"] = {m: next((v for v in map(meta, ds) if v), None) for m, ds in DISTS.items()}
info["pip"] = meta("pip")
print("EDGEKIT_PROBE " + json.dumps(info))
"""

# module -> the distributions that may provide it, from the runtime registry; /proc/cpuinfo read as the agent does
PROBE = PROBE.replace("__DISTS__", json.dumps({p.module: list(p.version_dists) for p in device_packages()}))
PROBE = PROBE.replace("__CPU_FIELDS__", inspect.getsource(cpu_fields))

PROBE_S = 120.0  # the probe imports every runtime: seconds under qemu, on a busy machine more


@dataclass
class DeviceInfo:
    """What `targets check` prints; raw is the probe's JSON."""

    raw: dict[str, Any]
    runtimes: dict[str, str | None] = field(default_factory=dict)  # each as target.python_for(it) sees it
    # after `targets setup`: each runtime it could not install -> what was tried and why it failed
    not_installed: dict[str, str] = field(default_factory=dict)
    pythons: dict[str, dict[str, Any]] = field(default_factory=dict)  # each python command -> its own probe

    @property
    def cpu_model(self) -> str:
        """The device's cores: each part once ("Cortex-A55 + Cortex-A76" on big.LITTLE) where ARM's table knows
        each of them (a Kryo's 0x805 is no name: its model name line then), else the model name."""
        fields = {k: v for k, v in (self.raw.get("cpu") or {}).items() if isinstance(v, str)}
        return cpu_name(fields, self.raw.get("cpu_parts") or {}) or "unknown"

    @property
    def features(self) -> str:
        cpu = self.raw.get("cpu", {})
        return cpu.get("Features") or cpu.get("flags") or ""

    @property
    def emulated(self) -> bool:
        return bool(self.raw.get("emulator"))

    def wheel_platform(self, where: str) -> WheelPlatform:
        libc, version = (self.raw.get("libc") or ["", ""])[:2]
        if self.raw.get("android") or libc != "glibc" or not version:
            raise TargetError(
                "no manylinux wheels fit this device (not a glibc Linux: Android/Termux?)",
                where=where,
                hint="on Termux: pkg install python-numpy; pip install ncnn "
                "(tflite-runtime / ai-edge-litert publish no Android wheels)",
            )
        # These name the wheel cache's folder on this machine: a `/..` in them put it (and the wheels pushed from
        # it) wherever the device chose; a glibc of `2.36-rc1` crashed int().
        machine = _reported("machine", self.raw.get("machine"), r"[A-Za-z0-9_]+", "aarch64, x86_64", where)
        py = _reported(
            "Python version", self.raw.get("python"), r"(\d+\.\d+)(\.\d+)?((a|b|rc)\d+)?\+?", "3.11.2", where
        )
        glibc = _reported("glibc version", version, r"(\d+)\.(\d+)(\.\d+)*", "2.36", where)
        return WheelPlatform(
            python=py.group(1), machine=machine.group(0), glibc=(int(glibc.group(1)), int(glibc.group(2)))
        )


def _reported(what: str, value: object, pattern: str, like: str, where: str) -> re.Match[str]:
    """A fact the device's probe reported, matched whole against `pattern`; anything else is a TargetError naming it."""
    match = re.fullmatch(pattern, value) if isinstance(value, str) else None
    if match is None:
        shown = repr(value) if len(repr(value)) <= 120 else repr(value)[:117] + "..."
        raise TargetError(
            f"the device reports its {what} as {shown}, not one edgekit can pick wheels for (like {like})",
            where=where,
            hint="is the target's `python:` a plain CPython? run it on the device with -c 'import platform; "
            "print(platform.machine(), platform.python_version(), platform.libc_ver())'",
        )
    return match


def probe(transport: Transport, target: Target) -> DeviceInfo:
    """Run the probe with the target's python (and each runtime-specific python) on the device. Each runtime's
    version is the one the python a deploy runs it with (target.python_for) sees, and only that one. It runs in
    the work dir, made first: one the device cannot make is a WorkDirError naming the field (the probe's `cd`
    failing was blamed on the python)."""
    transport.mkdir(".")
    info: DeviceInfo | None = None
    found: dict[str, dict[str, str | None]] = {}  # python -> its probe's runtimes
    site = f"{transport.work_dir or '.'}/site"  # where setup unpacks wheels on a pip-less device
    for python in dict.fromkeys([target.python, *target.runtime_python.values()]):
        try:
            res = transport.run(
                [*python_argv(python), "-c", PROBE], timeout=PROBE_S, env={"PYTHONPATH": site}
            )
        except RemoteTimeout as exc:  # a wrapper that waits for input, a python that hangs at start-up
            raise _python_hangs(target, python, exc) from None
        line = next((ln for ln in res.stdout.splitlines() if ln.startswith("EDGEKIT_PROBE ")), None)
        if line is None:
            field = _field_of(target, python)
            raise TargetError(
                f"`{python}` did not run on the device (exit {res.exit_status}): {res.stderr.strip()[-300:]}",
                where=f"{target.name} (field `{field}`)",
                hint=f"set the target's `{field}` to a python the device has: --set {field}=python3",
            )
        raw = _probe_line(line.split(" ", 1)[1], target, python)
        found[python] = raw["runtimes"]
        if info is None:
            info = DeviceInfo(raw)
        info.pythons[python] = raw
    if info is None:
        raise TargetError("the target has no python command", where=target.name)
    info.runtimes = {m: found[target.python_for(m)].get(m) for m in found[target.python]}
    return info


def _probe_line(body: str, target: Target, python: str) -> dict[str, Any]:
    """The probe's facts from its line, read as the agent's lines are (pydantic's parser: nesting past its limit is
    a ValueError; json.loads raised RecursionError on a line of 100,000 brackets, an internal error); anything but
    an object with a `runtimes` object is the device's python not running edgekit's probe."""
    try:
        raw = from_json(body)
    except ValueError:
        raw = None
    if not isinstance(raw, dict) or not isinstance(raw.get("runtimes"), dict):
        field = _field_of(target, python)
        raise TargetError(
            f"`{python}` answered edgekit's probe with a line that is not its facts: {body[:80]!r}",
            where=f"{target.name} (field `{field}`)",
            hint=f"is it a wrapper that prints its own EDGEKIT_PROBE line? set the target's `{field}`: "
            f"--set {field}=python3",
        )
    return raw


def _field_of(target: Target, python: str) -> str:
    """The target field that names `python`: `python`, or `runtime_python.RUNTIME` (a runtime's own python)."""
    keys = [runtime for runtime, own in target.runtime_python.items() if own == python]
    return "python" if python == target.python or not keys else f"runtime_python.{keys[0]}"


def _python_hangs(target: Target, python: str, exc: RemoteTimeout) -> RemoteTimeout:
    """The probe's timeout said as the target's python's: which field, what to set (it quoted the whole probe
    script, with no hint)."""
    field = _field_of(target, python)
    return RemoteTimeout(
        f"`{python}` did not answer edgekit's probe (a few lines of Python printing the device's facts) within "
        f"{PROBE_S:g} s and was stopped",
        where=f"{exc.where} (target {target.name}, field `{field}`)" if exc.where else target.name,
        hint=f"is `{field}:` a python? it must run `python -c SCRIPT` and end; run `{python} -c 'print(1)'` on the "
        f"device to see, then set it: --set {field}=python3, or `{field}:` in {target.source or 'the target file'}",
    )


def _to_stderr(message: str) -> None:
    print(message, file=sys.stderr)


def check_target(target: Target, log: Log = _to_stderr) -> DeviceInfo:
    target = ensure_device(
        target, log
    )  # an emulated device it starts (or restarts, frozen) is said, on stderr
    with emulated_key_errors(target), open_transport(target) as transport:
        return probe(transport, target)
