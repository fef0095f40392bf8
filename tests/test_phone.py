"""Phones: `targets setup` on a Termux device installs with `pkg install` (then pip) and says what it could not;
the agent pins itself to the cores a target asks for and records the cores used, battery and thermal zones.

On `phone-emu` (qemu cortex-a76 + a real sshd): its python is given Termux's environment (TERMUX_VERSION, a
PREFIX) and the PREFIX holds a stand-in `pkg` that records what it was asked to install (it installs nothing,
so the fallbacks and the report of what is still missing run for real).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgekit.agent import agent
from edgekit.target import Target

REPO = Path(__file__).resolve().parent.parent
STAND_IN_PKG = """#!/bin/sh
# stand-in for Termux's pkg: records the request; "knows" no opencv-python, so a batch naming it fails
echo "$@" >> "$(dirname "$0")/../pkg.log"
case " $* " in *" opencv-python "*) echo "E: Unable to locate package opencv-python" >&2; exit 100;; esac
exit 0
"""


@pytest.fixture(scope="module")
def phone_emu() -> Iterator[Target]:
    from edgekit.emu.device import ensure_device
    from edgekit.emu.runner import down, running_state
    from edgekit.target import load_target

    started = running_state("phone-emu") is None
    target = ensure_device(load_target("phone-emu"))
    try:
        yield target
    finally:
        if started:
            down("phone-emu")


def test_affinity_picks_cores_by_max_frequency(monkeypatch: pytest.MonkeyPatch) -> None:
    """big / little from per-core max frequencies (a 4+4 phone), a cpu list as given, all = the mask."""
    freqs = [{"cpu": c, "max_khz": 1800000 if c < 4 else 2840000} for c in range(8)]
    pinned: list[list[int]] = []
    monkeypatch.setattr(agent, "_freqs", lambda: freqs)
    monkeypatch.setattr(agent, "_cpus_used", lambda: pinned[-1] if pinned else list(range(8)))
    monkeypatch.setattr(agent, "_online_cpus", lambda: list(range(8)))
    monkeypatch.setattr(agent.os, "sched_setaffinity", lambda pid, cpus: pinned.append(sorted(cpus)))
    assert agent.apply_affinity("big")["cpus"] == [4, 5, 6, 7]  # type: ignore[index]
    assert agent.apply_affinity("little")["cpus"] == [0, 1, 2, 3]  # type: ignore[index]
    assert agent.apply_affinity("0,2-3")["cpus"] == [0, 2, 3]  # type: ignore[index]
    assert agent.apply_affinity(None) is None


def test_affinity_pins_this_process_for_real() -> None:
    """The real sched_setaffinity on this host: pin to one allowed core, then back."""
    allowed = sorted(os.sched_getaffinity(0))
    try:
        got = agent.apply_affinity(str(allowed[0]))
        assert got is not None and got["cpus"] == [allowed[0]] and agent._cpus_used() == [allowed[0]]
        facts = agent.device_facts()
        assert facts["cpus_used"] == [allowed[0]] and isinstance(facts["thermal_zones"], dict)
        without = agent.apply_affinity("big")  # this VM reports no per-core max frequency: big = all, said
        assert without is not None and (
            without["note"] is None or "no per-core max frequency" in without["note"]
        )
    finally:
        os.sched_setaffinity(0, allowed)


@pytest.mark.integration
def test_termux_setup_uses_pkg_then_pip_and_names_what_is_missing(phone_emu: Target, tmp_path: Path) -> None:
    from edgekit.emu import layout
    from edgekit.emu.provision import setup_target
    from edgekit.target import load_target

    prefix = tmp_path / "usr"
    (prefix / "bin").mkdir(parents=True)
    (prefix / "bin" / "pkg").write_text(STAND_IN_PKG)
    (prefix / "bin" / "pkg").chmod(0o755)
    # the device's python that has only numpy<2 + tflite-runtime, in Termux's environment
    python = (
        f"env TERMUX_VERSION=0.118.3 PREFIX={prefix} {layout.device_dir('phone-emu').python_tflite_runtime}"
    )
    target = load_target(
        "phone-emu",
        [f"python={python}", "runtime_python={}", "runtimes=[tflite_runtime, ncnn, onnxruntime, cv2, MNN]"],
    )
    logs: list[str] = []
    info = setup_target(target, logs.append)
    assert (prefix / "pkg.log").exists(), logs
    asked = (prefix / "pkg.log").read_text().splitlines()
    assert asked[0] == "install -y ncnn python-onnxruntime opencv-python"  # one batch first, Termux names
    assert asked[1:] == ["install -y ncnn", "install -y python-onnxruntime", "install -y opencv-python"]
    assert info.raw["termux_version"] == "0.118.3" and info.runtimes["tflite_runtime"] == "2.14.0"
    said = next(line for line in logs if line.startswith(f"{target.name}: could not install: "))
    for module in ("ncnn", "onnxruntime", "cv2", "MNN"):
        assert f"{module} (" in said
    assert "pkg opencv-python: E: Unable to locate package opencv-python" in said
    assert "MNN (no Termux package; no pip on the device" in said


@pytest.mark.integration
def test_agent_on_phone_emu_pins_cores_and_records_them(phone_emu: Target) -> None:
    from edgekit.deploy import DeployOptions, deploy
    from edgekit.emu.device import ensure_device
    from edgekit.formats import Format
    from edgekit.recipe import load_recipe
    from edgekit.target import load_target

    target = ensure_device(load_target("phone-emu", ["affinity=0"]))
    result = deploy(
        load_recipe(REPO / "recipes" / "tiny.yaml"),
        [target],
        DeployOptions(repeat=2, warmup=1, threads=(1,), samples=2, formats=(Format.TFLITE_FP32,), host=False),
        lambda m: None,
    )
    (run,) = result.runs
    assert run.status == "ok" and run.agent is not None, run.error
    facts = run.agent.facts_before
    assert facts.affinity == {"requested": "0", "cpus": [0], "note": None}
    assert facts.cpus_used == [0] and isinstance(facts.thermal_zones, dict)
    assert run.agent.measurements[0].status == "ok"


def test_big_is_every_core_above_the_slowest_cluster() -> None:
    """A Snapdragon 855 (4 A55 at 1.79 GHz, 3 A76 at 2.42 GHz, 1 A76 at 2.84 GHz): big was the prime core
    alone, so `threads: 4` ran 4 threads on one core."""
    tops = dict(enumerate([1785600] * 4 + [2419200] * 3 + [2841600]))
    assert agent.big_little_cpus(tops, "big") == [4, 5, 6, 7]
    assert agent.big_little_cpus(tops, "little") == [0, 1, 2, 3]
    one = {0: 1500000, 1: 1500000}
    assert agent.big_little_cpus(one, "big") == agent.big_little_cpus(one, "little") == [0, 1]


def test_the_temperature_is_the_cpu_zones_not_the_battery_or_skin() -> None:
    """The hottest of all zones was called the SoC's: a phone charging at 45 °C was 'SoC at 45 °C'."""
    zones = {"cpu-0-0": 41.2, "cpu-1-0": 43.0, "battery": 45.0, "skin-therm": 39.0, "pm8150b-charger": 50.0}
    assert agent.cpu_zone_temperature(zones) == (43.0, "cpu-1-0")
    assert agent.cpu_zone_temperature({"cpu-thermal": 52.1}) == (52.1, "cpu-thermal")  # a Pi
    assert agent.cpu_zone_temperature({"acpitz": 30.0, "x86_pkg_temp": 61.0}) == (61.0, "x86_pkg_temp")
    # no zone names the CPU: the hottest, named so a reader sees which
    assert agent.cpu_zone_temperature({"battery": 30.5, "tz0": 35.0}) == (35.0, "tz0")
    assert agent.cpu_zone_temperature({}) == (None, None)


def _cpuinfo(monkeypatch: pytest.MonkeyPatch, text: str, used: list[int] | None = None) -> dict[str, object]:
    read = agent._read
    monkeypatch.setattr(agent, "_read", lambda path: text if path == "/proc/cpuinfo" else read(path))
    return agent._cpuinfo(used)


def test_an_older_kernels_shared_cpu_part_is_every_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    """Older ARM kernels print `Processor`, every `processor : N` line, then one shared block with one `CPU part`:
    it was given to the last cpu only ({'1': '0x801'}) and the model named by the raw part ('0x801'), where the
    `Processor` line named it before (review r15 #4)."""
    old = (
        "Processor\t: AArch64 Processor rev 4 (aarch64)\nprocessor\t: 0\nprocessor\t: 1\nFeatures\t: fp\n"
        "CPU implementer\t: 0x51\nCPU part\t: 0x801\n"
    )
    got = _cpuinfo(monkeypatch, old)
    assert got["cpu_parts"] == {"0": "0x801", "1": "0x801"}, got
    assert got["cpu_model"] == "AArch64 Processor rev 4 (aarch64)" and got["cpu_part"] == "0x801", got
    # the same layout with a part ARM's table knows is named by it
    assert _cpuinfo(monkeypatch, old.replace("0x801", "0xd03"))["cpu_model"] == "Cortex-A53"


def test_the_model_is_named_from_parts_only_where_arms_table_knows_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A Kryo's parts (0x805, 0x804) are no Cortex names: the `model name` line names the CPU (it was
    '0x805 + 0x804'); known parts name the cores used, as before."""
    kryo = "".join(
        f"processor\t: {i}\nCPU implementer\t: 0x51\nCPU part\t: {'0x805' if i < 4 else '0x804'}\n\n"
        for i in range(8)
    )
    named = _cpuinfo(monkeypatch, "model name\t: Kryo 485\n" + kryo)
    assert named["cpu_model"] == "Kryo 485", named
    # nothing else names it: as `targets check` says it (the agent said '0x805 + 0x804'; one rule: cpu_name)
    assert _cpuinfo(monkeypatch, kryo)["cpu_model"] == "ARM part 0x805 + ARM part 0x804"
    assert named["cpu_parts"] == {str(i): "0x805" if i < 4 else "0x804" for i in range(8)}, named
    phone = "".join(f"processor\t: {i}\nCPU part\t: {'0xd05' if i < 4 else '0xd0b'}\n\n" for i in range(8))
    assert _cpuinfo(monkeypatch, phone)["cpu_model"] == "Cortex-A55 + Cortex-A76"
    assert _cpuinfo(monkeypatch, phone, [4, 5, 6, 7])["cpu_model"] == "Cortex-A76"


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare (bind-mounts)"
)
def test_targets_checks_probe_reads_an_older_kernels_shared_cpu_part(tmp_path: Path) -> None:
    """`targets check`'s probe read /proc/cpuinfo as the agent did: the shared block's part was the last cpu's
    only; and a Kryo's unknown parts were named 'ARM part 0x805 + ARM part 0x804' over its model name line. The
    real probe script, run on a bind-mounted /proc/cpuinfo (review r15 #4)."""
    from edgekit.emu.device_info import PROBE, DeviceInfo

    def probe(cpuinfo: str) -> DeviceInfo:
        fake, script = tmp_path / "cpuinfo", tmp_path / "probe.py"
        fake.write_text(cpuinfo)
        script.write_text(PROBE)
        mount = f"mount --bind {fake} /proc/cpuinfo && exec {sys.executable} {script}"
        done = subprocess.run(
            ["unshare", "-m", "sh", "-c", mount], capture_output=True, text=True, timeout=60
        )
        line = next(ln for ln in done.stdout.splitlines() if ln.startswith("EDGEKIT_PROBE "))
        return DeviceInfo(raw=json.loads(line.split(" ", 1)[1]))

    old = "processor\t: 0\nprocessor\t: 1\nFeatures\t: fp\nCPU implementer\t: 0x41\nCPU part\t: 0xd03\n"
    info = probe(old)
    assert info.raw["cpu_parts"] == {"0": "0xd03", "1": "0xd03"}, info.raw  # was {'1': '0xd03'}
    assert info.cpu_model == "Cortex-A53", info.raw
    kryo = "".join(f"processor\t: {i}\nCPU part\t: {'0x805' if i < 4 else '0x804'}\n\n" for i in range(8))
    assert probe("model name\t: Kryo 485\n" + kryo).cpu_model == "Kryo 485"  # was 'ARM part 0x805 + ...'
    assert probe(kryo).cpu_model == "ARM part 0x805 + ARM part 0x804"  # nothing else names it
