#!/usr/bin/env python3
"""edgekit's on-device timing agent: `python agent.py request.json result.json`.

One standalone file that the device's own python runs (3.9+, stdlib + numpy + whichever runtime is present:
ai_edge_litert / tflite_runtime for .tflite, ncnn for .param/.bin, onnxruntime or cv2 (OpenCV DNN) for .onnx,
MNN for .mnn, openvino for .xml on an x86 host).
It never imports edgekit: the host pushes this file as is. The result JSON has exactly the fields of
edgekit/results.py (AgentResult, Measurement, DeviceFacts); it is rewritten atomically after every measurement,
so a crash keeps what was measured.

Timing follows TVM's vocabulary: `warmup` runs discarded; `repeat` samples, each one window of `number`
invocations (raised automatically until a window lasts >= `min_repeat_ms`); a sample is the window's time divided
by `number`, in ms per invocation. Every sample is kept. One invocation is each runner's `invoke`, and its scope
differs by runtime (edgekit.runtimes.ranking_table.TIMED_SCOPE says it under a ranking): `Interpreter.invoke()` for
TFLite and `InferRequest.infer()` for OpenVINO (outputs left in the runtime); one extractor run (input + extract
of every output) for ncnn; `InferenceSession.run` for onnxruntime (input fed, outputs copied out), `Net.forward`
for OpenCV, `Module.forward` for MNN, `Method.execute` for ExecuTorch (outputs returned). The input is set and
the outputs converted outside the timing everywhere.

Peak RSS is process-wide in Linux (VmHWM). The agent resets it before each measurement by writing 5 to
/proc/self/clear_refs where the kernel allows it (`peak_rss_scope: "measurement"`), otherwise it is the peak so
far (`"process"`); `rss_delta_mb` is the resident-set growth across loading and running, from `rss_baseline_mb`.
Memory freed earlier (another model, the runtime's untimed first load) and by the load goes back to the OS before
the baseline and before the reading (glibc's malloc_trim; `memory_released` false where the C library has none, and
then the figures may include earlier frees), so they do not depend on what the process measured before. Both are read right after
the timed runs, with the model still loaded: the per-layer profile and the accuracy pass (every evaluation input's
outputs, kept and saved at the first thread count only) come after and are not in them, so every thread count's
figures compare. Memory figures are MiB (2^20 bytes; `_mb` is kB/1024). Under qemu-user these
figures describe the emulator process (guest memory plus translated code). The agent never spawns another
aarch64 program: an emulated device cannot exec one (no binfmt), so one process measures every artifact.

Request `nice` (deploy sends -10) asks for a better scheduling priority before any runtime thread starts; it is
applied only where permitted (root / CAP_SYS_NICE) and the facts record the value in effect.
"""

from __future__ import annotations

import datetime
import gc
import hashlib
import json
import math
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Callable, Optional

# `edgekit targets setup` on a device without pip unpacks the runtimes' wheels into <work_dir>/site, beside this
# file: put it where the probe's PYTHONPATH puts it (ahead of the system's packages), so `targets check` and the
# agent see the same runtimes.
_SITE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "site")
if os.path.isdir(_SITE) and _SITE not in sys.path:
    sys.path.insert(1, _SITE)

import numpy as np  # noqa: E402 - after the site dir is on the path

PROTOCOL_VERSION = 1  # edgekit/agent/contract.py's, checked by tests/test_contract.py
# Why a measurement failed: the codes the agent sets (contract.ErrorCode has these and the host's own)
LOAD_ERROR, RUN_ERROR = "load_error", "run_error"
# exit statuses: 3-5 are contract.py's (the host reads them), checked by tests/test_contract.py
EXIT_OK, EXIT_CRASH, EXIT_BAD_REQUEST, EXIT_LOCKED, EXIT_DEADLINE = 0, 1, 2, 3, 4
EXIT_CANNOT_WRITE = (
    5  # a file the agent writes (result, lock, outputs) could not be: a full disk, EACCES, EIO
)
# another benchmark holds the device: a WAITING line on stdout (contract.py's STREAM_WAITING) at once, then this often
WAITING_EVERY_S = 30.0
DEADLINE_BACKSTOP_S = 30.0  # after the deadline: faulthandler ends a process whose main thread holds the GIL
ARM_PARTS = {
    "0xd03": "Cortex-A53",
    "0xd04": "Cortex-A35",
    "0xd05": "Cortex-A55",
    "0xd07": "Cortex-A57",
    "0xd08": "Cortex-A72",
    "0xd09": "Cortex-A73",
    "0xd0a": "Cortex-A75",
    "0xd0b": "Cortex-A76",
    "0xd0c": "Neoverse-N1",
    "0xd0d": "Cortex-A77",
    "0xd41": "Cortex-A78",
    "0xd44": "Cortex-X1",
    "0xd46": "Cortex-A510",
    "0xd47": "Cortex-A710",
    "0xd48": "Cortex-X2",
    "0xd4d": "Cortex-A715",
    "0xd4e": "Cortex-X3",
}
# The agent's copy of edgekit's runtime registry (edgekit/runtimes/; tests/test_runtimes.py checks it):
# format -> runtime, runtime -> runner class (RUNNERS, after the runners), module -> distributions to read its
# version from (the first one installed).
FORMAT_RUNTIMES = {
    "tflite-fp32": "tflite",
    "tflite-fp16": "tflite",
    "tflite-dynamic": "tflite",
    "tflite-int8": "tflite",
    "tflite-onnx2tf-fp32": "tflite",
    "tflite-onnx2tf-fp16": "tflite",
    "tflite-onnx2tf-dynamic": "tflite",
    "tflite-onnx2tf-int8": "tflite",
    "ncnn-fp32": "ncnn",
    "ncnn-fp16": "ncnn",
    "ncnn-int8": "ncnn",
    "onnx-fp32": "onnxruntime",
    "onnx-int8": "onnxruntime",
    "opencv-fp32": "opencv",
    "mnn-fp32": "mnn",
    "mnn-fp16": "mnn",
    "mnn-int8": "mnn",
    "openvino-fp32": "openvino",
    "openvino-int8": "openvino",
    "executorch-fp32": "executorch",
    "executorch-int8": "executorch",
}
RUNTIME_DISTS = {
    "numpy": ("numpy",),
    "ai_edge_litert": ("ai-edge-litert",),
    "tflite_runtime": ("tflite-runtime",),
    "ncnn": ("ncnn",),
    "onnxruntime": ("onnxruntime",),
    "cv2": ("opencv-python-headless", "opencv-python"),
    "MNN": ("mnn",),
    "openvino": ("openvino",),
    "executorch": ("executorch",),
}
# MNN's runtime precision per artifact precision (edgekit/runtimes/mnn.py PRECISION)
MNN_PRECISION = {"fp32": "high", "fp16": "low", "int8": "normal"}


class AgentFailure(Exception):
    """A request the agent cannot serve at all (bad request, lock held): exit code attached."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class CannotWrite(Exception):
    """A file the agent writes could not be written (not an OSError: main() calls those a bad request)."""

    def __init__(self, path: str, exc: OSError) -> None:
        super().__init__("cannot write %s: %s" % (path, exc))


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def log(message: str) -> None:
    sys.stderr.write("edgekit-agent: %s\n" % message)
    sys.stderr.flush()


# --- device facts ---------------------------------------------------------------------------------------------
def _read(path: str) -> Optional[str]:
    try:
        with open(path) as handle:
            return handle.read().strip()
    except (OSError, ValueError):
        return None


def _cpuinfo(used: Optional[list[int]] = None) -> dict[str, Any]:
    """The CPU from /proc/cpuinfo: each core's ARM part (cpu_parts, {"0": "0xd05", ...}: a big.LITTLE phone's cpu0
    is often a little core), and the model named from the cores `used` (the affinity mask), else every core's
    (cpu_name)."""
    fields, parts = cpu_fields(_read("/proc/cpuinfo") or "")
    mine = [parts[str(c)] for c in used or [] if str(c) in parts] or list(parts.values())
    mine = list(dict.fromkeys(mine))  # each part once, in cpu order
    part = mine[0] if len(mine) == 1 else fields.get("CPU part")
    features = (fields.get("Features") or fields.get("flags") or "").split()
    return {
        "cpu_model": cpu_name(fields, parts, used),
        "cpu_part": part,
        "cpu_parts": parts,
        "cpu_features": features,
    }


def cpu_fields(text: str) -> tuple[dict[str, str], dict[str, str]]:
    """/proc/cpuinfo's text as (each key's first value, each cpu's `CPU part` lowercased). An older kernel lists
    every `processor : N` line, then one shared block with one `CPU part`: that part is every cpu's. Stdlib only:
    `targets check`'s probe runs this source too (edgekit.emu.device_info)."""
    fields: dict[str, str] = {}
    parts: dict[str, str] = {}
    cpus: list[str] = []
    said: list[str] = []  # every `CPU part` line's value, in order
    cpu: Optional[str] = None
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if not sep:
            continue
        if key == "processor" and value.isdigit():
            cpu = value
            cpus.append(value)
        elif key == "CPU part":
            said.append(value.lower())
            if cpu is not None:
                parts[cpu] = value.lower()
        if key and value and key not in fields:
            fields[key] = value
    if len(said) == 1 and cpus:  # one shared block (older kernels): its part is every cpu's
        parts = dict.fromkeys(cpus, said[0])
    return fields, parts


def cpu_name(
    fields: dict[str, str], parts: dict[str, str], used: Optional[list[int]] = None
) -> Optional[str]:
    """The cores `used` (else every core), each part once in cpu order: named from ARM's table where it knows each
    of them ('Cortex-A55 + Cortex-A76'); else the `model name` or `Processor` line (a Kryo's 0x805 is no Cortex);
    else 'ARM part 0x805 + ...'. The agent's facts and `targets check` name a CPU by this one rule."""
    mine = [parts[str(c)] for c in used or [] if str(c) in parts] or list(parts.values())
    if not mine and fields.get("CPU part"):
        mine = [fields["CPU part"].lower()]
    mine = list(dict.fromkeys(mine))
    if mine and all(p in ARM_PARTS for p in mine):
        return " + ".join(ARM_PARTS[p] for p in mine)
    named = fields.get("model name") or fields.get("Processor")
    if named:
        return named
    return " + ".join(ARM_PARTS.get(p, "ARM part " + p) for p in mine) or None


def _emulated() -> bool:
    """Under qemu-user (EDGEKIT_EMULATOR set) /sys is the host's: its clocks and thermal zones are recorded as they
    are (the emulator host's, which the report judges an emulated run's wall time by and says as the host's: its
    instruction counts do not depend on them); its battery is not read, and big/little mean all cores."""
    return bool(os.environ.get("EDGEKIT_EMULATOR"))


def _freqs() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    root = "/sys/devices/system/cpu"
    names = sorted((n for n in _listdir(root) if re.match(r"cpu\d+$", n)), key=lambda n: int(n[3:]))
    for name in names:
        base = "%s/%s/cpufreq/" % (root, name)
        governor = _read(base + "scaling_governor")
        cur, top = _read(base + "scaling_cur_freq"), _read(base + "cpuinfo_max_freq")
        if governor is None and cur is None and top is None:
            continue
        out.append({"cpu": int(name[3:]), "governor": governor, "cur_khz": _int(cur), "max_khz": _int(top)})
    return out


# thermal zone types that measure the CPU or SoC (Pi: cpu-thermal; phones: cpu-0-0, cpuss-0, soc_thermal, tsens_tz_
# sensor1, mtktscpu; x86: x86_pkg_temp, coretemp); a phone's battery, skin, charger or modem zones are none of them
_CPU_ZONE = re.compile(r"cpu|soc|x86_pkg|coretemp|k10temp|tsens|apc|gold|silver|prime|big|little|core", re.I)
_NOT_CPU_ZONE = re.compile(
    r"batt|skin|charg|usb|pa_|pa-|modem|wlan|wifi|camera|xo|chg|bms|pmic|pm\d|quiet", re.I
)


def cpu_zone_temperature(zones: dict[str, float]) -> tuple[Optional[float], Optional[str]]:
    """The temperature the facts call the SoC's, and the zone it is: the hottest CPU/SoC zone (a phone's battery
    or skin zone is not the SoC), else, where no zone names the CPU, the hottest zone of all (named, so a reader
    sees which)."""
    cpu = {n: t for n, t in zones.items() if _CPU_ZONE.search(n) and not _NOT_CPU_ZONE.search(n)}
    pick = cpu or zones
    if not pick:
        return None, None
    name = max(pick, key=lambda n: pick[n])
    return pick[name], name


def _throttled() -> Optional[str]:
    """The Pi's `vcgencmd get_throttled` flags; skipped under emulation (the agent must not exec there)."""
    tool = shutil.which("vcgencmd")
    if os.environ.get("EDGEKIT_EMULATOR") or tool is None:
        return None
    try:
        done = subprocess.run([tool, "get_throttled"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip().partition("=")[2] or None


def _meminfo() -> tuple[Optional[float], Optional[float]]:
    values = {}
    for line in (_read("/proc/meminfo") or "").splitlines():
        key, _, rest = line.partition(":")
        values[key] = _int(rest.split()[0]) if rest.split() else None
    total, avail = values.get("MemTotal"), values.get("MemAvailable")
    return (total / 1024.0 if total else None, avail / 1024.0 if avail else None)


def _runtime_versions() -> dict[str, str]:
    """Installed versions, read from package metadata so facts cost no runtime import."""
    try:
        from importlib import metadata
    except ImportError:  # pragma: no cover - python < 3.8
        return {}
    found = {}
    for module, dists in RUNTIME_DISTS.items():
        for dist in dists:
            try:
                found[module] = metadata.version(dist)
                break
            except Exception:  # noqa: BLE001 - absent or broken metadata both mean "unknown"
                continue
    return found


def device_facts() -> dict[str, Any]:
    mem_total, mem_avail = _meminfo()
    zones = _thermal_zones()
    temperature, zone = cpu_zone_temperature(zones)
    used = _cpus_used()
    facts = {
        "nice": _nice(),
        "machine": platform.machine(),
        "cores": os.cpu_count() or 1,
        "mem_total_mb": mem_total,
        "mem_available_mb": mem_avail,
        "freqs": _freqs(),
        "temperature_c": temperature,
        "temperature_zone": zone,
        "throttled": _throttled(),
        "python": platform.python_version(),
        "runtimes": _runtime_versions(),
        "emulated": bool(os.environ.get("EDGEKIT_EMULATOR")),
        "emulator": os.environ.get("EDGEKIT_EMULATOR") or None,
        "hostname": socket.gethostname(),
        "cpus_used": used,
        "thermal_zones": zones,
        "battery": _battery(),
    }
    facts.update(_cpuinfo(used))
    return facts


# --- phones: cores, battery, thermal zones -------------------------------------------------------------------
def _cpus_used() -> Optional[list[int]]:
    """The cores this process may run on (its affinity mask), None where the OS does not say."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def _thermal_zones() -> dict[str, float]:
    """Every readable thermal zone, by its type (phones have dozens: cpu-0-0, battery, skin, ...), in deg C."""
    zones: dict[str, float] = {}
    for zone in sorted(_listdir("/sys/class/thermal")):
        if not zone.startswith("thermal_zone"):
            continue
        temp = _int(_read("/sys/class/thermal/%s/temp" % zone))
        if temp is not None:
            name = (_read("/sys/class/thermal/%s/type" % zone) or zone).strip()
            zones[name if name not in zones else "%s/%s" % (name, zone)] = temp / 1000.0
    return zones


def _battery() -> Optional[dict[str, Any]]:
    """Charge and charging state of the first battery power supply where readable (Android often hides it)."""
    root = "/sys/class/power_supply"
    if _emulated():
        return None
    for name in sorted(_listdir(root)):
        base = "%s/%s/" % (root, name)
        if (_read(base + "type") or "").strip() != "Battery":
            continue
        status = (_read(base + "status") or "").strip() or None
        return {
            "name": name,
            "capacity_pct": _int(_read(base + "capacity")),
            "status": status,
            "charging": None if status is None else status in ("Charging", "Full"),
        }
    return None


def apply_affinity(spec: Optional[str]) -> Optional[dict[str, Any]]:
    """Pin this process (and the runtime threads it starts later) to `spec`: big | little | all | a cpu list
    ("4-7", "0,2"). big / little come from the per-core max frequencies (big_little_cpus); where no core reports
    one (an emulated device, some kernels) big and little mean all, and the result says so. A cpu list the device
    cannot pin to exactly (a cpu it does not have, or not online) is a ValueError naming them: its figures would
    be another pinning's."""
    if not spec:
        return None
    if _cpus_used() is None:
        return {"requested": spec, "cpus": None, "note": "this OS has no sched_setaffinity: not pinned"}
    allowed = _online_cpus()  # not the current mask: a pin from a parent process must not narrow the choice
    note = None
    if spec in ("big", "little"):
        tops = {f["cpu"]: f["max_khz"] for f in _freqs() if f.get("max_khz") and f["cpu"] in allowed}
        if _emulated():  # the host's cores' clocks, no cluster of the emulated device's
            cpus, note = allowed, "an emulated device has no clusters of its own: %s = all cores" % spec
        elif tops:
            cpus = big_little_cpus(tops, spec)
        else:
            cpus, note = allowed, "no per-core max frequency readable: %s = all cores" % spec
    elif spec == "all":
        cpus = allowed
    else:
        cpus = sorted({c for part in spec.split(",") for c in _cpu_range(part)})  # ValueError: a bad request
        missing = [c for c in cpus if c not in allowed]
        if missing:
            raise ValueError(
                "cpu %s not online on this device (online: %s)"
                % (",".join(map(str, missing)), ",".join(map(str, allowed)))
            )
    try:
        os.sched_setaffinity(0, cpus)
    except (OSError, ValueError) as exc:
        if spec not in ("big", "little", "all"):
            raise ValueError("cannot pin to cpus %s: %s" % (spec, exc)) from None
        return {"requested": spec, "cpus": allowed, "note": "not pinned: %s" % exc}
    got = _cpus_used()
    if spec not in ("big", "little", "all") and got is not None and got != cpus:
        raise ValueError("pinned to cpus %s, not %s (a cpuset allows only those)" % (got, spec))
    return {"requested": spec, "cpus": got, "note": note}


def big_little_cpus(tops: dict[int, int], spec: str) -> list[int]:
    """The cores `big` or `little` names, from each core's max kHz: little is the slowest cluster; big every core
    above it (a phone's prime core and its big cluster: Snapdragon 855's 2.84 GHz A76 and its three 2.42 GHz
    ones). Where every core is as fast (one cluster) both are every core."""
    slowest = min(tops.values())
    if spec == "little":
        return sorted(c for c, khz in tops.items() if khz == slowest)
    return sorted(c for c, khz in tops.items() if khz > slowest) or sorted(tops)


def _online_cpus() -> list[int]:
    online = _read("/sys/devices/system/cpu/online")
    if online and online.strip():
        return sorted({c for part in online.strip().split(",") for c in _cpu_range(part)})
    return list(range(os.cpu_count() or 1))


MAX_CPU = 4095  # the highest cpu number an affinity list may name: 4096 cpus, more than any board has


def _cpu_range(part: str) -> list[int]:
    """The cpus of "4" or "4-7"; ValueError past MAX_CPU ("0-999999999999" built the whole list: gigabytes)."""
    low, _, high = part.strip().partition("-")
    first, last = int(low), int(high or low)
    if last > MAX_CPU:
        raise ValueError("cpu %d is past the highest cpu number, %d" % (last, MAX_CPU))
    return list(range(first, last + 1))


def _nice() -> Optional[int]:
    try:
        return os.getpriority(os.PRIO_PROCESS, 0)
    except (AttributeError, OSError):
        return None


def raise_priority(nice: Optional[int]) -> None:
    """Ask for a better scheduling priority (lower nice) so other work on the device disturbs the timing less;
    allowed for root / CAP_SYS_NICE only, otherwise left as is. The facts record the nice value in effect."""
    if nice is None:
        return
    try:
        os.setpriority(os.PRIO_PROCESS, 0, int(nice))
    except (AttributeError, OSError, ValueError) as exc:
        log("priority left at nice %s (%s)" % (_nice(), exc))


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def _int(text: Optional[str]) -> Optional[int]:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


# --- memory ---------------------------------------------------------------------------------------------------
def _status_kb(key: str) -> Optional[int]:
    for line in (_read("/proc/self/status") or "").splitlines():
        if line.startswith(key + ":"):
            return _int(line.split()[1])
    return None


def rss_mb() -> Optional[float]:
    kb = _status_kb("VmRSS")
    return kb / 1024.0 if kb is not None else None


def peak_rss_mb() -> Optional[float]:
    """This process's own peak (VmHWM: per address space, fresh at exec); None (unknown) where the kernel does not
    say it. Never getrusage's ru_maxrss: Linux carries the parent's peak across fork and exec into it (an agent
    started by a large process would report that one's), and macOS counts it in bytes."""
    kb = _status_kb("VmHWM")
    return kb / 1024.0 if kb else None


def release_freed_memory() -> bool:
    """Hand the memory freed so far (an earlier model, the runtime's untimed first load) back to the OS: glibc's
    malloc_trim(0). Without it the allocator keeps those pages resident and reuses them, so a model measured after
    another one grew the resident set by 0.0 MiB (28.6 alone) and its peak started from the leftovers. False where
    the C library has no malloc_trim (macOS, Android's bionic, musl) or ctypes is missing: the next figures may
    then include memory earlier measurements freed."""
    try:
        import ctypes

        trim = ctypes.CDLL(None).malloc_trim
    except (ImportError, OSError, AttributeError):
        return False
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    trim(0)
    return True


def reset_peak_rss() -> bool:
    """Reset VmHWM (Linux >= 4.0) so the next peak belongs to one measurement."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


# --- other processes' CPU use while timing --------------------------------------------------------------------
MIN_BUSY_WINDOW_S = 0.1  # /proc/stat counts in clock ticks (10 ms): a shorter window cannot be told apart


def cpu_snapshot() -> Optional[tuple]:
    """(wall s, CPU-busy s of the whole machine from /proc/stat, this process's CPU s over all its threads), or
    None where /proc/stat cannot be read (not Linux)."""
    try:
        with open("/proc/stat") as handle:
            fields = handle.readline().split()
        ticks = [int(v) for v in fields[1:9]]  # user nice system idle iowait irq softirq steal
        hz = float(os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return None
    if not fields or fields[0] != "cpu" or len(ticks) < 8:
        return None
    busy = (sum(ticks) - ticks[3] - ticks[4]) / hz
    own = os.times()
    return (time.monotonic(), busy, own.user + own.system)


def extend_busy_window(invoke: Callable[[], Any], before: Optional[tuple]) -> None:
    """A timed window shorter than MIN_BUSY_WINDOW_S (a small model: 5-40 ms in all) is extended with untimed
    invocations of the same model up to it, so other processes' CPU use is known for it too (it was None, and a
    run on a busy machine was judged and kept as a baseline); what others use over the extension stands for the
    window (the load of another process does not change in 0.1 s)."""
    if before is None:
        return
    while time.monotonic() - before[0] < MIN_BUSY_WINDOW_S:
        invoke()


def others_cpu_share(before: Optional[tuple], after: Optional[tuple]) -> Optional[float]:
    """The fraction of all the machine's CPU time that other processes used between two snapshots (0: the
    agent had the machine to itself; 0.5 on 2 cores: another process kept one core busy), or None when it
    cannot be known (no /proc/stat, a window shorter than MIN_BUSY_WINDOW_S)."""
    if before is None or after is None:
        return None
    wall = after[0] - before[0]
    if wall < MIN_BUSY_WINDOW_S:
        return None
    others = (after[1] - before[1]) - (after[2] - before[2])
    share = others / (wall * float(os.cpu_count() or 1))
    return round(min(1.0, max(0.0, share)), 3)


# --- instruction counting (the counting qemu plugin; no effect unless EDGEKIT_INSN_FILE is set) ---------------
class InsnCounter:
    """Marks each timed window with unused syscalls 4093/4094 (-ENOSYS elsewhere); the plugin appends one line
    to EDGEKIT_INSN_FILE per window: the guest instructions executed between the marks by all threads, then
    each guest thread's share (see edgekit/emu/plugin/insn_count.c). `stop` returns the total; `last_split`
    keeps the shares of the last window (the busiest thread bounds a parallel run)."""

    def __init__(self) -> None:
        self.path = os.environ.get("EDGEKIT_INSN_FILE")
        self._syscall = None
        self.last_split: list[int] = []
        self.last_mix: list[int] = []
        self.last_misses: list[int] = []
        if self.path:
            import ctypes

            self._syscall = ctypes.CDLL(None).syscall

    def start(self) -> None:
        if self._syscall is not None:
            self._syscall(4093)

    def stop(self) -> Optional[int]:
        if self._syscall is None or not self.path:
            return None
        self._syscall(4094)
        fields = last_count_line(self.path)
        if not fields:
            return None
        self.last_split = fields[1:]
        self.last_mix = last_mix(self.path)
        self.last_misses = last_misses(self.path)
        return fields[0]


def last_count_line(path: str) -> list[int]:
    """The integers of the last line the counting plugin wrote before its `;` (the total, then each thread's
    share), or [] if none is readable. After the `;` comes the instruction mix (see last_mix)."""
    line = _last_line(path)
    try:
        return [int(v) for v in line.split(";")[0].split()]
    except ValueError:
        return []


def last_misses(path: str) -> list[int]:
    """With cache levels given to the plugin: the last window's data accesses, then the misses at each simulated
    level (L1, L2[, L3]); [] without them."""
    parts = _last_line(path).split(";")
    try:
        return [int(v) for v in parts[2].split()] if len(parts) > 2 else []
    except ValueError:
        return []


def last_mix(path: str) -> list[int]:
    """The last window's instruction mix: SIMD/FP, SIMD/FP loads+stores, other loads+stores, branches, other."""
    parts = _last_line(path).split(";")
    try:
        return [int(v) for v in parts[1].split()] if len(parts) > 1 else []
    except ValueError:
        return []


def _last_line(path: str) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(max(0, os.fstat(handle.fileno()).st_size - 65536))
            lines = [line for line in handle.read().decode(errors="replace").splitlines() if line.strip()]
        return lines[-1] if lines else ""
    except OSError:
        return ""


# --- runtimes -------------------------------------------------------------------------------------------------
def fit_shape(x: np.ndarray, shape: tuple[int, ...], free: Sequence[int] = ()) -> np.ndarray:
    """One input sample in the model's shape: as is, with a batch axis, or NCHW -> NHWC (onnx2tf models). The
    axes in `free` (an .onnx's dynamic dimensions) take the sample's size."""
    candidates = [x, x[None]]
    if x.ndim == 4:
        candidates.append(np.transpose(x, (0, 2, 3, 1)))
    if x.ndim == 3:
        candidates.append(np.transpose(x, (1, 2, 0))[None])
    for cand in candidates:
        if cand.ndim == len(shape) and all(
            axis in free or size == want for axis, (size, want) in enumerate(zip(cand.shape, shape))
        ):
            return np.ascontiguousarray(cand)
    raise ValueError(
        "input sample of shape %s does not fit the model input %s"
        % (list(x.shape), "[%s]" % ", ".join("?" if axis in free else str(n) for axis, n in enumerate(shape)))
    )


def with_batch_axis(x: np.ndarray, rank: Optional[int]) -> np.ndarray:
    """One sample as a model of input rank `rank` takes it: a batch axis added unless it has the model's rank
    already. deploy's samples carry no batch axis, bench's do ((1, 16, 20) for a [1, 16, 20] Conv1d input): a rule
    of "4-D or add one" fed bench's as [1, 1, 16, 20]. A rank the model does not state: that rule (NCHW images)."""
    x = np.asarray(x, dtype=np.float32)
    return np.ascontiguousarray(x if x.ndim == (rank or 4) else x[None])


def output_array(y: Any) -> np.ndarray:
    """One runtime output as saved: float32, except integer and boolean outputs (class indices from an ArgMax,
    token ids, counts), which keep their type so the host compares them exactly (edgekit.runtimes.base's
    output_array, which the host runners use: a cast made an id above 2**24 another number, and an ArgMax that
    flipped from 2 to 1 a cosine of 1). Always a copy: MNN's `read()` and OpenVINO's `data` are views of a buffer
    the next run reuses."""
    a = np.array(y)
    return a if np.issubdtype(a.dtype, np.integer) or a.dtype == np.bool_ else a.astype(np.float32)


def _pb_varint(handle: Any) -> int:
    value = shift = 0
    while True:
        byte = handle.read(1)
        if not byte:
            raise ValueError("truncated protobuf")
        value |= (byte[0] & 0x7F) << shift
        if byte[0] < 0x80:
            return value
        shift += 7


def _pb_fields(handle: Any, end: int) -> Iterator[tuple[int, int, int]]:
    """(field number, value offset, value length) of each length-delimited field of the message that ends at `end`,
    read at the file's position; other fields are skipped, as is each value the caller did not read."""
    while handle.tell() < end:
        key = _pb_varint(handle)
        wire = key & 7
        if wire == 0:
            _pb_varint(handle)
        elif wire in (1, 5):
            handle.seek(8 if wire == 1 else 4, 1)
        elif wire == 2:
            length = _pb_varint(handle)
            start = handle.tell()
            yield key >> 3, start, length
            handle.seek(start + length)
        else:
            raise ValueError("protobuf wire type %d" % wire)


def onnx_input_rank(path: str) -> Optional[int]:
    """The rank of an .onnx model's first input (the graph's inputs that are no initializer, as OpenCV reads
    them), from the file's protobuf (ModelProto.graph, GraphProto.input, its tensor type's shape dims) without
    the onnx package; the weights are skipped, not read. None when the file states no shape or cannot be read."""
    try:
        with open(path, "rb") as handle:
            for field, start, length in _pb_fields(handle, os.fstat(handle.fileno()).st_size):
                if field != 7:  # ModelProto.graph
                    continue
                initializers, inputs = set(), []  # names; (name, rank) of each input
                for gfield, gstart, glength in _pb_fields(handle, start + length):
                    if gfield == 5:  # GraphProto.initializer: TensorProto, its name field 8
                        for tfield, _, tlength in _pb_fields(handle, gstart + glength):
                            if tfield == 8:
                                initializers.add(handle.read(tlength))
                                break
                    elif gfield == 11:  # GraphProto.input: ValueInfoProto (name 1, type 2)
                        inputs.append(_value_info_rank(handle, gstart + glength))
                return next((rank for name, rank in inputs if name not in initializers), None)
    except (OSError, ValueError):
        return None
    return None


def _value_info_rank(handle: Any, end: int) -> tuple[bytes, Optional[int]]:
    name, rank = b"", None
    for field, start, length in _pb_fields(handle, end):
        if field == 1:
            name = handle.read(length)
        elif (
            field == 2
        ):  # TypeProto.tensor_type (1) -> TypeProto.Tensor.shape (2) -> TensorShapeProto.dim (1)
            for tfield, tstart, tlength in _pb_fields(handle, start + length):
                if tfield != 1:
                    continue
                for sfield, sstart, slength in _pb_fields(handle, tstart + tlength):
                    if sfield == 2:
                        rank = sum(1 for dim in _pb_fields(handle, sstart + slength) if dim[0] == 1)
    return name, rank


class TfliteRunner:
    """`layout`: the artifact's recorded layout (the request's `layout`: the input's axes from the ONNX model's
    layout, each output's axes back to it); without it the sample is fitted by shape (fit_shape) and the outputs
    are saved as the model gives them."""

    def __init__(
        self, path: str, threads: int, preference: str, layout: Optional[dict[str, Any]] = None
    ) -> None:
        module_name, interpreter_mod = _import_tflite(preference)
        self.runtime = module_name
        with open(path, "rb") as handle:
            self._content = (
                handle.read()
            )  # model_content is verified as a flatbuffer; model_path is not (SIGSEGV)
        self.interp = interpreter_mod.Interpreter(model_content=self._content, num_threads=threads)
        self.interp.allocate_tensors()
        self.inp = self.interp.get_input_details()[0]
        self.outs = self.interp.get_output_details()
        self.names = _signature_output_names(self.interp, self.outs)
        self.invoke = self.interp.invoke
        lay = layout or {}
        self.in_axes = lay.get("input")
        outs = lay.get("outputs") or []
        self.out_axes = list(outs) if len(outs) == len(self.outs) else [None] * len(self.outs)

    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.inp["shape"])

    def set_input(self, x: np.ndarray) -> None:
        x = fit_shape(x, self.input_shape()) if self.in_axes is None else self._by_layout(x)
        scale, zero = self.inp.get("quantization", (0.0, 0))
        dtype = self.inp["dtype"]
        if np.issubdtype(dtype, np.integer) and scale:
            info = np.iinfo(dtype)
            x = np.clip(np.round(x / scale + zero), info.min, info.max)
        self.interp.set_tensor(self.inp["index"], x.astype(dtype))

    def outputs(self) -> list[tuple[str, np.ndarray]]:
        result = []
        for name, det, axes in zip(self.names, self.outs, self.out_axes):
            y = self.interp.get_tensor(det["index"]).copy()
            scale, zero = det.get("quantization", (0.0, 0))
            if np.issubdtype(y.dtype, np.integer) and scale:
                y = ((y.astype(np.float32) - zero) * scale).astype(np.float32)  # int8 I/O: dequantized
            if axes is not None:  # back to the ONNX model's layout, as recorded
                y = np.ascontiguousarray(np.transpose(y, axes))
            result.append((name, y))
        return result

    def _by_layout(self, x: np.ndarray) -> np.ndarray:
        """The sample (with or without its batch axis) moved as the artifact's layout says."""
        axes = list(self.in_axes or ())
        batched = x if x.ndim == len(axes) else x[None]
        moved = np.transpose(batched, axes) if batched.ndim == len(axes) else batched
        if tuple(moved.shape) != self.input_shape():
            raise ValueError(
                "input sample of shape %s moved by the recorded layout %s does not fit the model input %s"
                % (list(x.shape), list(axes), list(self.input_shape()))
            )
        return np.ascontiguousarray(moved)


def _signature_output_names(interp: Any, outs: list[dict[str, Any]]) -> list[str]:
    """The signature's output names (onnx2tf keeps the ONNX names there), else the tensor names: the same
    naming as edgekit.runtimes on the host, so outputs line up by name."""
    names = {o["index"]: o["name"] for o in outs}
    try:
        if len(interp.get_signature_list()) == 1:
            for name, detail in interp.get_signature_runner().get_output_details().items():
                if detail["index"] in names:
                    names[detail["index"]] = name
    except (AttributeError, ValueError, RuntimeError):
        pass
    return [names[o["index"]] for o in outs]


def _import_tflite(preference: str) -> tuple[str, Any]:
    order = ["ai_edge_litert", "tflite_runtime"] if preference in ("auto", "") else [preference]
    errors = []
    for name in order:
        try:
            module = __import__(name + ".interpreter", fromlist=["Interpreter"])
            return name, module
        except ImportError as exc:
            errors.append("%s: %s" % (name, exc))
    raise RuntimeError("no TFLite runtime importable (%s)" % "; ".join(errors))


def _ncnn_io_from_param(path: str) -> tuple[list[str], list[str]]:
    """Input blobs (Input layers) and outputs of a .param file: the blobs produced but never consumed, where a
    sink made by a `Noop` layer (which only gathers the real outputs, e.g. a detector's six heads) stands for
    that layer's inputs."""
    produced, consumed, inputs = [], set(), []
    noop_inputs: dict[str, list[str]] = {}
    with open(path) as handle:
        lines = handle.read().splitlines()[2:]
    for line in lines:
        parts = line.split()
        if len(parts) < 4:
            continue
        n_in, n_out = int(parts[2]), int(parts[3])
        bottoms, tops = parts[4 : 4 + n_in], parts[4 + n_in : 4 + n_in + n_out]
        consumed.update(bottoms)
        produced.extend(tops)
        if parts[0] == "Input":
            inputs.extend(tops)
        if parts[0] == "Noop":
            for top in tops:
                noop_inputs[top] = bottoms
    outputs: list[str] = []
    for blob in produced:
        if blob in consumed:
            continue
        for name in noop_inputs.get(blob) or [blob]:
            if name not in outputs:
                outputs.append(name)
    return inputs, outputs


def _ncnn_layers(path: str) -> list[tuple[str, str, str]]:
    """(name, type, first output blob) of every layer of a .param but its inputs, in file order."""
    layers = []
    with open(path) as handle:
        for line in handle.read().splitlines()[2:]:
            parts = line.split()
            if len(parts) < 4 or parts[0] == "Input":
                continue
            n_in, n_out = int(parts[2]), int(parts[3])
            if n_out:
                layers.append((parts[1], parts[0], parts[4 + n_in]))
    return layers


class NcnnRunner:
    runtime = "ncnn"

    def __init__(self, param: str, model: str, threads: int, io: Optional[dict[str, Any]]) -> None:
        import ncnn

        io = io or {}
        inputs, outputs = _ncnn_io_from_param(param)
        names = list(io.get("inputs") or inputs)
        if len(names) != 1:
            raise RuntimeError(
                "this ncnn model has %d inputs (%s): edgekit feeds one input tensor per inference, so models "
                "with several inputs cannot be timed or counted yet"
                % (len(names), ", ".join(names) or "none")
            )
        self.in_name = names[0]
        self.out_blobs = list(io.get("outputs") or outputs)
        self.out_names = list(io.get("output_names") or self.out_blobs)  # the ONNX names where known
        self.out_shapes = list(io.get("output_shapes") or [None] * len(self.out_blobs))
        self.in_shape = (io.get("input_shapes") or [None])[0]
        self.net = ncnn.Net()
        for key, value in (io.get("options") or {}).items():
            if hasattr(self.net.opt, key):
                setattr(self.net.opt, key, value)
        self.net.opt.num_threads = threads
        self.param = param
        if self.net.load_param(param) != 0:
            raise RuntimeError("ncnn could not parse %s" % param)
        if self.net.load_model(model) != 0:
            raise RuntimeError("ncnn could not load weights %s" % model)
        self._ncnn = ncnn
        self.mat = None
        self._array: Optional[np.ndarray] = None  # ncnn.Mat(array) does not copy: the array must outlive it
        self._last: list[Any] = []

    def set_input(self, x: np.ndarray) -> None:
        """ncnn has no batch axis: the sample in the sidecar's input shape, without its batch axis of 1."""
        if self.in_shape and int(np.prod(self.in_shape)) == x.size:
            x = x.reshape(self.in_shape)[0]
        while x.ndim > 3 and x.shape[0] == 1:
            x = x[0]
        self._array = np.ascontiguousarray(x, dtype=np.float32)
        # an owned copy, made here outside any timing: ncnn.Mat(array) borrows the buffer with no reference
        # count, which ncnn reads before an in-place first layer (ReLU, BatchNorm) consumes the input: a segfault
        self.mat = self._ncnn.Mat(self._array).clone()

    def invoke(self) -> None:
        ex = self.net.create_extractor()
        ex.input(self.in_name, self.mat)
        last = []
        for name in self.out_blobs:
            ret, out = ex.extract(name)
            if ret != 0:
                raise RuntimeError("ncnn extract(%r) returned %d" % (name, ret))
            last.append(out)
        self._last = last

    def layer_times(self, passes: int) -> list[dict[str, Any]]:
        """Each layer's own wall time (ms), the median and minimum over `passes` fresh extractors. In .param order
        (topological), extracting a layer's first output computes that layer alone (its inputs are ready); a
        second extract of the same blob costs the same call without the layer, and is subtracted. A layer whose
        output is empty (a detector that found nothing) has nothing cached: ncnn would run it again, so it is not
        extracted twice (the call's own cost, microseconds, stays in its time).

        The re-extract is subtracted as a distribution, not pass by pass: a re-extract held up (preempted, another
        thread's turn) as long as the layer took made that pass's difference 0 and the layer's minimum 0 ms, a
        real convolution reported free. So `ms` is the median extract minus the median re-extract, and `min_ms`
        the fastest extract minus the fastest re-extract (the layer at its fastest is no faster than that), never
        above `ms`. New keys: `reextract_ms`, the median re-extract subtracted (0 where none was made), and
        `noisy_passes`, the passes whose extract took no longer than their re-extract (the layer's time there
        within the timer's noise: many of them say the layer's figure is too)."""
        layers = _ncnn_layers(self.param)
        first: list[list[float]] = [[] for _ in layers]
        again: list[list[float]] = [[] for _ in layers]
        noisy = [0] * len(layers)
        clock = time.perf_counter
        for _ in range(passes):
            ex = self.net.create_extractor()
            ex.input(self.in_name, self.mat)
            for k, (name, _, top) in enumerate(layers):
                t0 = clock()
                ret, mat = ex.extract(top, 1)  # 1: the blob as stored, no conversion in either window
                t1 = clock()
                ret2 = 0
                if not mat.empty():  # an empty output has nothing cached: ncnn would run the layer again
                    ret2, mat = ex.extract(top, 1)
                    t2 = clock()
                    again[k].append((t2 - t1) * 1000.0)
                    noisy[k] += (t2 - t1) >= (t1 - t0)
                if ret != 0 or ret2 != 0:
                    raise RuntimeError("ncnn extract(%r) of layer %s returned %d" % (top, name, ret or ret2))
                first[k].append((t1 - t0) * 1000.0)
                mat = None
            ex = None
        rows = []
        for (name, kind, _), ms, re_ms, n_noisy in zip(layers, first, again, noisy):
            re_median = float(np.median(re_ms)) if re_ms else 0.0
            median = max(0.0, float(np.median(ms)) - re_median)
            fastest = max(0.0, min(ms) - (min(re_ms) if re_ms else 0.0))
            rows.append(
                {
                    "name": name,
                    "type": kind,
                    "ms": median,
                    "min_ms": min(fastest, median),
                    "reextract_ms": re_median,
                    "noisy_passes": n_noisy,
                }
            )
        return rows

    def outputs(self) -> list[tuple[str, np.ndarray]]:
        result = []
        for name, shape, mat in zip(self.out_names, self.out_shapes, self._last):
            if mat.empty():  # e.g. a detector with no detection: a result, and np.array() of it crashes
                result.append((name, np.zeros((0,), dtype=np.float32)))
                continue
            y = np.array(mat, dtype=np.float32)
            result.append((name, y.reshape(shape) if shape and int(np.prod(shape)) == y.size else y[None]))
        return result


class OnnxRuntimeRunner:
    """An .onnx model in onnxruntime's CPU provider; one invocation is one `InferenceSession.run`."""

    runtime = "onnxruntime"

    def __init__(self, path: str, threads: int) -> None:
        self.path = path
        self.threads = threads
        self.sess = self._session()
        self.inp = self.sess.get_inputs()[0]
        self.names = [o.name for o in self.sess.get_outputs()]
        self.feed: dict[str, np.ndarray] = {}
        self._last: list[Any] = []

    def _session(self, profile_prefix: Optional[str] = None) -> Any:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        if self.threads > 1 and os.environ.get("EDGEKIT_INSN_FILE"):
            # counted: ORT's waiting threads spin, and spinning is instructions (4 threads counted 3x the work of
            # one, the busiest thread as much as all of it); with spinning off the count is the work and its split
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if profile_prefix is not None:
            opts.enable_profiling = True
            opts.profile_file_prefix = profile_prefix
        return ort.InferenceSession(self.path, opts, providers=["CPUExecutionProvider"])

    def layer_times(self, passes: int) -> list[dict[str, Any]]:
        """Each node's own wall time (ms) as onnxruntime's profiler records it (the node's kernel, its
        `<node>_kernel_time` event), the median and minimum over `passes` runs of a second session made with
        profiling on (its first run, which allocates, is left out). The nodes are those of onnxruntime's optimised
        graph, in the order they ran: a fused node (Conv + Relu, a QDQ group run as QLinearConv) is one row, named
        as onnxruntime names it; a node run several times in one inference (inside a Loop) is summed per run."""
        folder = tempfile.mkdtemp(prefix="edgekit-ort-profile-")
        try:
            sess = self._session(os.path.join(folder, "ort"))
            for _ in range(passes + 1):
                sess.run(self.names, self.feed)
            with open(sess.end_profiling()) as fh:
                events = json.load(fh)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        runs = sorted(
            (e["ts"], e["ts"] + e["dur"])
            for e in events
            if e.get("cat") == "Session" and e.get("name") == "model_run"
        )[1:]  # the first run allocates: left out like a warm-up
        if len(runs) != passes:
            raise RuntimeError(
                "onnxruntime's profile holds %d timed runs, %d were made" % (len(runs), passes)
            )
        own: dict[str, list[float]] = {}  # node -> ms per run, in the order the nodes first ran
        kinds: dict[str, str] = {}
        suffix = "_kernel_time"
        for e in events:
            name = str(e.get("name", ""))
            if e.get("cat") != "Node" or not name.endswith(suffix):
                continue
            k = next((i for i, (t0, t1) in enumerate(runs) if t0 <= e["ts"] <= t1), None)
            if k is None:
                continue  # the first run's
            node = name[: -len(suffix)]
            kinds.setdefault(node, str((e.get("args") or {}).get("op_name", "?")))
            own.setdefault(node, [0.0] * passes)[k] += e["dur"] / 1000.0
        if not own:
            raise RuntimeError("onnxruntime's profile has no node events (an empty graph?)")
        return [
            {"name": node, "type": kinds[node], "ms": float(np.median(ms)), "min_ms": float(min(ms))}
            for node, ms in own.items()
        ]

    def input_shape(self) -> tuple[int, ...]:
        """The graph input's shape, a dynamic dimension 1 (what random inputs are made at)."""
        return tuple(d if isinstance(d, int) else 1 for d in self.inp.shape)

    def dynamic_axes(self) -> tuple[int, ...]:
        """The dynamic dimensions a sample sets: all but the batch (axis 0: one sample per invocation, batch 1)."""
        return tuple(axis for axis, d in enumerate(self.inp.shape) if not isinstance(d, int) and axis > 0)

    def set_input(self, x: np.ndarray) -> None:
        """A dynamic dimension (a free H and W) takes the sample's size: it was fed at 1, the only size accepted."""
        self.feed = {self.inp.name: fit_shape(x.astype(np.float32), self.input_shape(), self.dynamic_axes())}

    def invoke(self) -> None:
        self._last = self.sess.run(self.names, self.feed)

    def outputs(self) -> list[tuple[str, np.ndarray]]:
        return [(n, output_array(y)) for n, y in zip(self.names, self._last)]


class OpenCvRunner:
    """An .onnx model read by cv2.dnn, OpenCV's own CPU backend; one invocation is one `Net.forward`."""

    runtime = "cv2"  # runners name the module they run (ai_edge_litert, ncnn, onnxruntime, cv2)

    def __init__(self, path: str, threads: int) -> None:
        import cv2

        cv2.setNumThreads(threads)
        self.net = cv2.dnn.readNetFromONNX(path)
        self.net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        self.net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
        self.names = list(self.net.getUnconnectedOutLayersNames())
        self.rank = onnx_input_rank(path)  # cv2.dnn's Net does not say its input's shape
        self._last: list[Any] = []

    def set_input(self, x: np.ndarray) -> None:
        """cv2.dnn takes the sample in the ONNX model's layout with its batch axis."""
        self.net.setInput(with_batch_axis(x, self.rank))

    def invoke(self) -> None:
        self._last = list(self.net.forward(self.names))

    def outputs(self) -> list[tuple[str, np.ndarray]]:
        return [(n, output_array(y)) for n, y in zip(self.names, self._last)]


class MnnRunner:
    """A .mnn model in MNN's Module API on its CPU backend; one invocation is one `Module.forward` (synchronous
    on the CPU). `precision` as edgekit runs the format: fp32 high, fp16 low (fp16 arithmetic on ARMv8.2)."""

    runtime = "MNN"

    def __init__(self, path: str, threads: int, precision: str = "high") -> None:
        import MNN

        self.mnn = MNN
        config = {"backend": "CPU", "numThread": threads, "precision": precision}
        manager = MNN.nn.create_runtime_manager((config,))
        self.module = MNN.nn.load_module_from_file(path, [], [], runtime_manager=manager)
        info = self.module.get_info()
        self.names = list(info["outputNames"])
        shape = list(info["inputs"][0].shape) if len(info.get("inputs") or []) else []
        self.rank = len(shape) or None  # the input's shape as the .mnn states it
        self.feed: list[Any] = []
        self._last: list[Any] = []

    def set_input(self, x: np.ndarray) -> None:
        """MNN takes the sample in the ONNX model's layout (NCHW) with its batch axis."""
        x = with_batch_axis(x, self.rank)
        self.feed = [self.mnn.expr.const(x, list(x.shape), self.mnn.expr.NCHW)]

    def invoke(self) -> None:
        self._last = list(self.module.forward(self.feed))
        if not self._last:  # MNN says "Compute Shape Error" and returns nothing: not a run to time
            raise RuntimeError(
                "MNN's forward returned no outputs (an input of shape %s the model cannot take?)"
                % list(self.feed[0].shape)
            )

    def outputs(self) -> list[tuple[str, np.ndarray]]:
        result = []
        for name, y in zip(self.names, self._last):
            y = self.mnn.expr.convert(y, self.mnn.expr.NCHW)
            result.append((name, output_array(y.read()).reshape(y.shape)))
        return result


class OpenVinoRunner:
    """OpenVINO IR (.xml + .bin beside it) on OpenVINO's CPU plugin, precision pinned to f32 (int8 layers stay
    int8); one invocation is one `InferRequest.infer`. The host-side reference runtime: x86 hosts only."""

    runtime = "openvino"

    def __init__(self, path: str, threads: int) -> None:
        import openvino as ov

        self.ov = ov
        config = {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32"}
        self.compiled = ov.Core().compile_model(path, "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.names = [o.any_name for o in self.compiled.outputs]
        self.rank = len(self.compiled.inputs[0].partial_shape)

    def set_input(self, x: np.ndarray) -> None:
        self.request.set_input_tensor(self.ov.Tensor(with_batch_axis(x, self.rank)))

    def invoke(self) -> None:
        self.request.infer()

    def outputs(self) -> list[tuple[str, np.ndarray]]:
        return [(n, output_array(self.request.get_output_tensor(k).data)) for k, n in enumerate(self.names)]


class ExecuTorchRunner:
    """An ExecuTorch .pte program (XNNPACK delegate) in ExecuTorch's Python runtime; one invocation is one
    `Method.execute`. Needs torch beside executorch (its runtime takes torch tensors)."""

    runtime = "executorch"

    def __init__(self, path: str, threads: int) -> None:
        import torch
        from executorch.runtime import Runtime

        self.torch = torch
        torch.set_num_threads(threads)
        self.method = Runtime.get().load_program(path).load_method("forward")
        self.rank = self._input_rank()
        self.feed: list[Any] = []
        self._last: list[Any] = []

    def _input_rank(self) -> Optional[int]:
        """The program's first input's rank, as its method metadata states it (None where it states none)."""
        try:
            return len(self.method.metadata.input_tensor_meta(0).sizes())
        except Exception:  # noqa: BLE001 - an older runtime without metadata: with_batch_axis's own rule
            return None

    def set_input(self, x: np.ndarray) -> None:
        """The sample with its batch axis by the program's input rank (bench's carry one, deploy's do not)."""
        self.feed = [self.torch.from_numpy(with_batch_axis(x, self.rank))]

    def invoke(self) -> None:
        self._last = list(self.method.execute(self.feed))

    def outputs(self) -> list[tuple[str, np.ndarray]]:
        return [("output_%d" % k, output_array(y)) for k, y in enumerate(self._last)]


RUNNERS = {
    "tflite": TfliteRunner,
    "ncnn": NcnnRunner,
    "onnxruntime": OnnxRuntimeRunner,
    "opencv": OpenCvRunner,
    "mnn": MnnRunner,
    "openvino": OpenVinoRunner,
    "executorch": ExecuTorchRunner,
}


def open_runner(art: dict[str, Any], base: str, threads: int, preference: str) -> Any:
    """The runner of the artifact's format (FORMAT_RUNTIMES); an unknown format is an error, never a guess."""
    files = [_resolve(base, f) for f in art["files"]]
    runtime = FORMAT_RUNTIMES.get(art["format"])
    if runtime is None:
        raise ValueError(
            "unknown artifact format %r (this agent knows %s)"
            % (art["format"], ", ".join(sorted(FORMAT_RUNTIMES)))
        )
    if runtime == "tflite":
        return TfliteRunner(files[0], threads, preference, art.get("layout"))
    if runtime == "ncnn":
        param = next((f for f in files if f.endswith(".param")), None)
        model = next((f for f in files if f.endswith(".bin")), None)
        if param is None or model is None:
            raise ValueError("an ncnn artifact needs a .param and a .bin file, got %s" % art["files"])
        io = None
        if art.get("io"):
            with open(_resolve(base, art["io"])) as handle:
                io = json.load(handle)
        return NcnnRunner(param, model, threads, io)
    if runtime == "mnn":
        return MnnRunner(files[0], threads, MNN_PRECISION[art["format"].rsplit("-", 1)[1]])
    return RUNNERS[runtime](files[0], threads)


# --- timing ---------------------------------------------------------------------------------------------------
def timed_window(fn: Callable[[], Any], number: int) -> float:
    """Seconds for `number` back-to-back calls: the only code inside a timed window."""
    clock = time.perf_counter
    start = clock()
    for _ in range(number):
        fn()
    return clock() - start


def calibrate_number(fn: Callable[[], Any], number: int, min_repeat_ms: float) -> int:
    """Raise `number` until one window lasts at least min_repeat_ms (TVM's rule)."""
    while min_repeat_ms > 0 and number < 10**7:
        elapsed_ms = timed_window(fn, number) * 1000.0
        if elapsed_ms >= min_repeat_ms:
            break
        number = max(number * 2, int(math.ceil(number * min_repeat_ms / max(elapsed_ms, 1e-3) * 1.1)))
    return number


def sample(
    fn: Callable[[], Any], repeat: int, number: int, insn: InsnCounter
) -> tuple[list[float], list[int]]:
    samples, counts = [], []
    for _ in range(repeat):
        insn.start()
        elapsed = timed_window(fn, number)
        count = insn.stop()
        samples.append(elapsed * 1000.0 / number)
        if count is not None:
            counts.append(count // number)
    return samples, counts


def overhead_ms(number: int, repeat: int) -> float:
    """The harness's own cost per timed window (`number` calls: one sample's window, before the division by
    `number` that makes a sample ms per invocation): the same window around a no-op, median of max(repeat, 50)."""
    noop = _noop
    windows = sorted(timed_window(noop, number) * 1000.0 for _ in range(max(repeat, 50)))
    return windows[len(windows) // 2]


def _noop() -> None:
    return None


def summarize(samples: list[float]) -> dict[str, Optional[float]]:
    arr = np.asarray(samples, dtype=np.float64)
    p50, p90, p99 = (float(v) for v in np.percentile(arr, [50, 90, 99]))
    std = float(arr.std(ddof=1)) if arr.size > 1 else None  # one sample has no spread (not a spread of 0)
    return {
        "p50_ms": p50,
        "p90_ms": p90,
        "p99_ms": p99,
        "mean_ms": float(arr.mean()),
        "std_ms": std,
        "min_ms": float(arr.min()),
    }


# --- one measurement ------------------------------------------------------------------------------------------
# the runtimes (FORMAT_RUNTIMES' names) this agent process has started: their first load is behind them
_STARTED_RUNTIMES: set = set()


def start_runtime(
    art: dict[str, Any], base: str, threads: int, preference: str, most: int
) -> Optional[float]:
    """Start the artifact's runtime, once per agent process: open this artifact once and drop it, untimed as a
    load. The first model a runtime loads pays its start-up (import, ORT's environment, thread pools, kernel
    tables): onnx-fp32 loaded in 24.8 ms and onnx-int8 after it in 4.0. Returns that first load's milliseconds
    (`runtime_init_ms`: start-up and this one load together), None when the runtime had started already.
    It starts at the measurement's own `threads`; the first measurement at more than one thread opens it once
    more, untimed, at `most` (start_threads: the most this agent will ask): MNN builds one worker pool, the first
    time more than one thread is asked, and never enlarges it (a 2-thread pool first ran the 4-thread row on 2
    threads), and a pool started before the one-thread windows spun in them (see run's measurement order)."""
    runtime = FORMAT_RUNTIMES.get(art["format"])
    if runtime is None:
        return None
    pool = threads > 1 and runtime not in _POOLED_RUNTIMES
    if runtime in _STARTED_RUNTIMES:
        if pool:
            sizer = open_runner(art, base, most, preference)
            del sizer  # the pool sized at the most threads asked; nothing timed
            _POOLED_RUNTIMES.add(
                runtime
            )  # only once it was: an artifact failing to load leaves it to the next
        return None
    t0 = time.perf_counter()
    runner = open_runner(art, base, most if threads > 1 else threads, preference)
    elapsed_ms = (time.perf_counter() - t0) * 1000.0
    del runner  # dropped before the timed load, and before this measurement's memory is counted
    _STARTED_RUNTIMES.add(runtime)
    if pool:
        _POOLED_RUNTIMES.add(runtime)
    return elapsed_ms


# the runtimes this agent process has opened at more than one thread (their pools sized): start_runtime
_POOLED_RUNTIMES: set = set()


def start_threads(req: dict[str, Any], threads: int) -> int:
    """The most threads this request asks: a pool sized once (MNN's) at it holds every count measured after it
    (a smaller count runs on part of it)."""
    return max([int(t) for t in req.get("threads") or [1]] + [int(threads)])


def measure(
    art: dict[str, Any],
    threads: int,
    req: dict[str, Any],
    inputs: np.ndarray,
    base: str,
    outdir: Optional[str],
    insn: InsnCounter,
) -> dict[str, Any]:
    m: dict[str, Any] = {
        "artifact": art["id"],
        "format": art["format"],
        "runtime": "",
        "threads": threads,
        "status": "failed",
        "number": int(req.get("number", 1)),
    }
    preference = req.get("tflite_runtime", "auto")
    not_started: Optional[Exception] = None
    try:  # before the memory baseline: the runtime's start-up is not this model's memory either
        init_ms = start_runtime(art, base, threads, preference, start_threads(req, threads))
        if init_ms is not None:
            m["runtime_init_ms"] = init_ms
    except Exception as exc:  # noqa: BLE001 - raised again below as this artifact's load error
        not_started = exc
    gc.collect()
    # the baseline after the memory freed before this measurement is back with the OS: its figures do not depend
    # on what the process measured before it
    m["memory_released"] = release_freed_memory()
    m["peak_rss_scope"] = "measurement" if reset_peak_rss() else "process"
    rss0 = rss_mb()
    m["rss_baseline_mb"] = rss0
    runner = None
    try:
        if not_started is not None:
            raise not_started
        t0 = time.perf_counter()
        runner = open_runner(art, base, threads, preference)
        m["load_ms"] = (time.perf_counter() - t0) * 1000.0  # the runtime started: comparable across formats
        m["runtime"] = runner.runtime
        runner.set_input(inputs[0])
        m["timed_inputs"] = 1  # every timed invocation runs the first input; accuracy_inputs: outputs below
        for _ in range(int(req.get("warmup", 1))):
            runner.invoke()
        gc.disable()
        try:
            number = calibrate_number(runner.invoke, m["number"], float(req.get("min_repeat_ms", 0.0)))
            before = cpu_snapshot()
            samples, counts = sample(runner.invoke, int(req.get("repeat", 10)), number, insn)
            extend_busy_window(runner.invoke, before)
            m["others_cpu_share"] = others_cpu_share(before, cpu_snapshot())
        finally:
            gc.enable()
        m.update(number=number, samples_ms=samples, **summarize(samples))
        # the model's memory: loading, warm-up and the timed runs, read with the model still loaded (not after it
        # is freed) and before the per-layer profile and the accuracy pass (all evaluation inputs' outputs kept
        # and stacked), which run at the first thread count only and are not the model's footprint
        m.update(memory_figures(rss0))
        if counts:
            m["instructions_per_invoke"] = int(np.median(counts))
            m["instructions_per_thread"] = [c // number for c in insn.last_split]
            m["instruction_mix"] = [c // number for c in insn.last_mix]
            if insn.last_misses:
                m["cache_misses"] = [c // number for c in insn.last_misses]
        overhead = overhead_ms(number, len(samples))
        m["overhead_ms_per_sample"] = overhead  # one timed window's: compare with p50_ms * number
        m["overhead_ms_per_invoke"] = overhead / number  # the samples' unit: compare with p50_ms
        passes = int(req.get("layer_times", 0))
        if passes > 0:
            m.update(layer_profile(runner, passes))
        if outdir is not None:
            m.update(save_outputs(runner, inputs, outdir, art["id"], threads, base))
            m["accuracy_inputs"] = len(inputs)
        m["status"] = "ok"
    except Exception as exc:  # noqa: BLE001 - a failure is data: recorded, and the next artifact goes on
        m["error"] = "%s: %s" % (type(exc).__name__, exc)
        m["error_code"] = RUN_ERROR if "load_ms" in m else LOAD_ERROR
        log("%s threads=%d failed: %s" % (art["id"], threads, m["error"]))
        log(traceback.format_exc(limit=3).rstrip())
    finally:
        if "peak_rss_mb" not in m:  # failed before its timing ended: what the load and runs reached
            m.update(memory_figures(rss0))
        runner = None
    return m


def memory_figures(rss0: Optional[float]) -> dict[str, Optional[float]]:
    """Peak RSS since the reset (VmHWM) and the resident-set growth since `rss0`, in MiB, read now: after the
    memory the load freed (the file read, the parsed graph) went back to the OS, so the growth is what the model
    holds, not where the allocator happened to leave its load's leftovers (54 or 77 MiB for a 26 MiB model)."""
    release_freed_memory()
    rss1 = rss_mb()
    return {
        "peak_rss_mb": peak_rss_mb(),
        "rss_delta_mb": rss1 - rss0 if rss0 is not None and rss1 is not None else None,
    }


def layer_profile(runner: Any, passes: int) -> dict[str, Any]:
    """Per-layer wall times where the runtime can time one layer at a time (ncnn's extractor, onnxruntime's
    profiler); a failure here is said in the measurement and costs none of its timings."""
    if not hasattr(runner, "layer_times"):
        return {}  # ncnn and onnxruntime only: the other runtimes' Python APIs run a graph as one call
    gc.disable()
    try:
        return {"layer_ms": runner.layer_times(passes), "layer_passes": passes}
    except Exception as exc:  # noqa: BLE001 - recorded with the measurement, which stays ok
        log("per-layer times failed: %s: %s" % (type(exc).__name__, exc))
        return {"layer_error": "%s: %s" % (type(exc).__name__, exc)}
    finally:
        gc.enable()


def save_outputs(
    runner: Any, inputs: np.ndarray, outdir: str, art_id: str, threads: int, base: str
) -> dict[str, Any]:
    """Run every evaluation input, stack each output over samples, write one .npz, checksum each output. An output
    whose shape differs between inputs (NonZero, a detector's built-in NMS: 3 boxes on one image, 5 on the next)
    cannot be stacked: it is saved input by input (per_input_key), named so in output_keys, and its checksum
    covers every input's array and shape (per_input_checksum)."""
    stacks: list[list[np.ndarray]] = []
    names: list[str] = []
    for x in inputs:
        runner.set_input(x)
        runner.invoke()
        outs = runner.outputs()
        names = [n for n, _ in outs]
        for i, (_, y) in enumerate(outs):
            if len(stacks) <= i:
                stacks.append([])
            stacks[i].append(np.ascontiguousarray(y))
    keys = _unique_keys(names)
    saved: dict[str, np.ndarray] = {}
    record_keys: list[str] = []
    checksums: dict[str, str] = {}
    shapes: list[list[int]] = []
    for name, key, arrays in zip(names, keys, stacks):
        if len({a.shape for a in arrays}) == 1:
            stacked = np.ascontiguousarray(np.stack(arrays))
            saved[key] = stacked
            record_keys.append(key)
            checksums[name] = hashlib.sha256(stacked.tobytes()).hexdigest()
            shapes.append(list(stacked.shape))
            continue
        for j, a in enumerate(arrays):
            saved[per_input_key(key, j)] = a
        record_keys.append(per_input_key(key))
        checksums[name] = per_input_checksum(arrays)
        shapes.append(_varying_shape(arrays))
    rel = outputs_name(outdir, art_id, threads)
    path = _resolve(base, rel)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path + ".tmp", "wb") as handle:
            np.savez(handle, **saved)
        os.replace(path + ".tmp", path)
    except OSError as exc:
        raise CannotWrite(rel, exc) from None
    return {
        "outputs_file": rel,
        "output_names": names,
        "output_keys": record_keys,
        "output_checksums": checksums,
        "output_shapes": shapes,
    }


PER_INPUT_MARK = "@"  # edgekit/agent/contract.py's: never in a stacked output's key (_unique_keys)


def per_input_key(key: str, j: Optional[int] = None) -> str:
    """An output saved input by input: its .npz key for input `j`, or (no `j`) the name output_keys gives it
    (edgekit/agent/contract.py's per_input_key; tests/test_contract.py checks they agree)."""
    return "%s%s%s" % (key, PER_INPUT_MARK, "*" if j is None else j)


def per_input_checksum(arrays: list[np.ndarray]) -> str:
    """One sha256 over every input's array of an output saved input by input, each shape before its bytes
    (edgekit/agent/contract.py's per_input_checksum)."""
    digest = hashlib.sha256()
    for a in arrays:
        digest.update(("%s;" % [int(d) for d in a.shape]).encode())
        digest.update(a.tobytes())  # C order, whatever the array's own
    return digest.hexdigest()


def _varying_shape(arrays: list[np.ndarray]) -> list[int]:
    """(samples, *output shape) of an output saved input by input: -1 on each axis whose size differs by input
    (only the samples when even the rank does)."""
    ranks = {a.ndim for a in arrays}
    if len(ranks) > 1:
        return [len(arrays), -1]
    sizes = zip(*(a.shape for a in arrays))
    return [len(arrays)] + [int(s[0]) if len(set(s)) == 1 else -1 for s in sizes]


def outputs_name(outdir: str, art_id: str, threads: int) -> str:
    """Where an artifact's outputs go, relative to the request's folder: the one name the host accepts as a
    measurement's outputs_file (edgekit/agent/contract.py's outputs_file_name)."""
    return "%s/%s.t%d.npz" % (outdir, re.sub(r"[^A-Za-z0-9_.-]", "_", art_id), threads)


def _unique_keys(names: list[str]) -> list[str]:
    keys: list[str] = []
    for i, name in enumerate(names):
        key = re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "output"
        keys.append(key if key not in keys else "%s_%d" % (key, i))
    return keys


# --- request, lock, result ------------------------------------------------------------------------------------
def _resolve(base: str, path: str) -> str:
    return path if os.path.isabs(path) else os.path.normpath(os.path.join(base, path))


def load_inputs(req: dict[str, Any], base: str) -> np.ndarray:
    """The evaluation inputs (first axis = sample), or seeded uniform random inputs of a given shape."""
    if req.get("inputs"):
        return np.load(_resolve(base, req["inputs"])).astype(np.float32)
    rnd = req.get("random_inputs") or {}
    if not rnd.get("shape"):
        raise AgentFailure("request has neither `inputs` nor `random_inputs.shape`", EXIT_BAD_REQUEST)
    gen = np.random.default_rng(int(rnd.get("seed", 0)))
    shape = [int(rnd.get("samples", 1))] + [int(d) for d in rnd["shape"]]
    return gen.uniform(float(rnd.get("low", 0.0)), float(rnd.get("high", 1.0)), shape).astype(np.float32)


@contextmanager
def device_lock(path: str, timeout_s: float) -> Iterator[None]:
    """One benchmark at a time on a device: flock on the work dir's lock file, waiting up to timeout_s."""
    import fcntl

    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise CannotWrite(path, exc) from None
    start = time.monotonic()
    deadline, said = start + timeout_s, None
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
                if said is None or time.monotonic() - said >= WAITING_EVERY_S:  # a wait is no hang: said
                    said = time.monotonic()
                    waited = round(said - start, 1)
                    stream("WAITING", {"holder": holder, "waited_s": waited, "lock_timeout_s": timeout_s})
                if time.monotonic() >= deadline:
                    raise AgentFailure(
                        "another benchmark holds %s (%s); waited %.0f s" % (path, holder, timeout_s),
                        EXIT_LOCKED,
                    ) from None
                time.sleep(0.2)
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, ("pid %d since %s\n" % (os.getpid(), now())).encode(), 0)
        except OSError as exc:
            raise CannotWrite(path, exc) from None
        yield
    finally:
        os.close(fd)  # closing releases the flock


def stop_at_deadline(seconds: Optional[float]) -> None:
    """A time limit the agent keeps on itself (the request's deadline_s): its host stops it long before, unless
    that host is gone (a link lost without a reset leaves sshd waiting for hours) and the agent, or a hung
    runtime, would hold the device lock all that time. At the deadline it says so on stderr and exits
    (EXIT_DEADLINE); the result file keeps what was measured and names the measurement in progress. A runtime
    stuck in C code that holds the GIL starves that timer: faulthandler's own thread dumps every thread's stack
    and ends the process DEADLINE_BACKSTOP_S later."""
    if not seconds or float(seconds) <= 0:
        return
    import faulthandler
    import threading

    limit = float(seconds)

    def stop() -> None:
        log(
            "stopped itself after %.0f s, its deadline (the host's time limit for this run and a grace): the host "
            "is gone or a runtime hung" % limit
        )
        os._exit(EXIT_DEADLINE)

    timer = threading.Timer(limit, stop)
    timer.daemon = True
    timer.start()
    faulthandler.dump_traceback_later(limit + DEADLINE_BACKSTOP_S, exit=True)


def stream(kind: str, obj: dict[str, Any]) -> None:
    """One line on stdout per event (`EDGEKIT_START {...}`, `EDGEKIT_MEASUREMENT {...}`): the host keeps what
    was measured even when the link drops before it can pull the result file."""
    sys.stdout.write("EDGEKIT_%s %s\n" % (kind, json.dumps(obj, separators=(",", ":"))))
    sys.stdout.flush()


def write_json(path: str, obj: dict[str, Any]) -> None:
    tmp = "%s.tmp.%d" % (path, os.getpid())
    try:
        with open(tmp, "w") as handle:
            json.dump(obj, handle, indent=1)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise CannotWrite(path, exc) from None


def run(request_path: str, result_path: str) -> int:
    base = os.path.dirname(os.path.abspath(request_path))
    with open(request_path) as handle:
        req = json.load(handle)
    stop_at_deadline(req.get("deadline_s"))  # from now: the host's time limit counts the lock wait too
    result: dict[str, Any] = {
        "protocol": PROTOCOL_VERSION,
        "started_at": now(),
        "facts_before": device_facts(),
        "measurements": [],
        "request": req,
    }
    write_json(result_path, result)
    stream("START", {"started_at": result["started_at"], "facts_before": result["facts_before"]})
    lock = _resolve(base, req.get("lock_file") or ".edgekit.lock")
    try:
        with device_lock(lock, float(req.get("lock_timeout_s", 600))):
            run_all(req, base, result, result_path)
    except AgentFailure as exc:
        result["error"] = str(exc)
        write_json(result_path, result)
        log(str(exc))
        return exc.code
    result["facts_after"] = device_facts()
    result["finished_at"] = now()
    result["in_progress"] = None
    write_json(result_path, result)
    return EXIT_OK


def run_all(req: dict[str, Any], base: str, result: dict[str, Any], result_path: str) -> None:
    if req.get("protocol", PROTOCOL_VERSION) != PROTOCOL_VERSION:
        raise AgentFailure(
            "request protocol %r, agent speaks %d" % (req.get("protocol"), PROTOCOL_VERSION), EXIT_BAD_REQUEST
        )
    raise_priority(req.get("nice"))  # before any runtime starts its threads: they inherit it
    try:
        pinned = apply_affinity(req.get("affinity"))  # likewise: runtime threads inherit the mask
    except ValueError as exc:
        raise AgentFailure(
            "bad affinity %r: %s (big, little, all or a cpu list such as 4-7)" % (req.get("affinity"), exc),
            EXIT_BAD_REQUEST,
        ) from None
    result["facts_before"] = device_facts()  # again: waiting for the lock may have taken a while
    if pinned is not None:
        result["facts_before"]["affinity"] = pinned
    inputs = load_inputs(req, base)
    insn = InsnCounter()
    first = True
    # every artifact at the plan's fewest threads, then every one at the next count: a runtime's worker pool (MNN's,
    # sized once at the most threads asked) does not exist yet while the one-thread windows are counted, so no idle
    # pool thread's spinning is counted as the model's work (mnn-fp32 x1 of the digits model: 332,022
    # instructions per invoke under [1], 503,159 under [1, 2] measured artifact by artifact)
    # fewest threads first, whatever order the plan was given in (--threads 2,1 put the pool before the one-thread
    # rows again: digits' mnn-fp32 x1 counted 487,242 instructions per invoke against 330,389)
    for i, threads in enumerate(sorted({int(t) for t in req.get("threads") or [1]})):
        for art in req.get("artifacts", []):
            if art.get("threads") is not None and threads not in art["threads"]:
                continue  # measured by an earlier agent of this run (a restart after it died)
            if not first and float(req.get("cooldown_s", 0)) > 0:
                time.sleep(float(req["cooldown_s"]))
            first = False
            result["in_progress"] = "%s threads=%d" % (art["id"], threads)
            write_json(result_path, result)
            outdir = req.get("outputs_dir", "outputs") if i == 0 else None
            m = measure(art, int(threads), req, inputs, base, outdir, insn)
            result["measurements"].append(m)
            result["in_progress"] = None
            stream("MEASUREMENT", m)
            write_json(result_path, result)
            log("%s threads=%d %s p50=%s ms" % (art["id"], threads, m["status"], m.get("p50_ms")))


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        sys.stderr.write("usage: python agent.py request.json result.json\n")
        return EXIT_BAD_REQUEST
    try:
        return run(argv[1], argv[2])
    except CannotWrite as exc:  # the request was fine: the device's disk or permissions are not
        log(str(exc))
        return EXIT_CANNOT_WRITE
    except (OSError, ValueError, KeyError) as exc:  # reading the request, its inputs, its fields
        log("bad request %s: %s: %s" % (argv[1], type(exc).__name__, exc))
        return EXIT_BAD_REQUEST


if __name__ == "__main__":
    sys.exit(main(sys.argv))
