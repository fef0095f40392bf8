"""The agent's device facts on real (emulated) devices whose /sys and /proc/cpuinfo say what a test needs: the
device's python is run by a wrapper under `unshare -m` with a made-up cpufreq and thermal tree bind-mounted over
/sys (and, for the phone, qemu's sysroot holding a big.LITTLE /proc/cpuinfo), then deploy runs the agent through
pi4-emu's real sshd.

- Under emulation (EDGEKIT_EMULATOR) /sys is the host's: a hot laptop's 86 °C x86_pkg_temp and 3.5 GHz are
  recorded as they are (the report says them as the emulator host's, and judges an emulated run's wall time by
  them: qemu's wall time depends on the host's heat; f926395 stopped recording them, which left a hot host's
  slow night a regression with no evidence), the battery is not read, and `big` is every core.
- A phone (cpu0 a 1.79 GHz A55, cpu1 a 2.84 GHz A76, zones cpu-0-0, battery, skin): `affinity: big` runs on cpu1
  and the facts name the A76 (cpu0's A55 was named), each cpu's part, and the CPU zone's temperature (the
  battery's 45 °C was called the SoC's); `expected_cpu: Cortex-A78/A55` warns (the shared A55 matched); a cpu
  list the phone has no cpu of is a named failure (it ran unpinned, exit 0, said nowhere).
- `targets check` names the field of a runtime_python that does not run, and says an emulated device's cores
  and memory are the host's.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from procs import named, run

from edgekit.target import Target

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare (bind-mounts)"
)

PHONE_CPUINFO = (
    "".join(
        f"processor\t: {n}\nBogoMIPS\t: 38.40\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp "
        f"asimdhp cpuid asimdrdm lrcpc dcpop asimddp\nCPU implementer\t: 0x41\nCPU architecture: 8\n"
        f"CPU variant\t: 0x{v}\nCPU part\t: {part}\nCPU revision\t: 0\n\n"
        for n, v, part in ((0, 2, "0xd05"), (1, 4, "0xd0b"))
    )
    + "Hardware\t: Qualcomm Technologies, Inc SM8150\n"
)


def _fake_sys(root: Path, khz: tuple[int, int], governor: str, zones: dict[str, int], battery: bool) -> Path:
    """A /sys/devices/system/cpu and /sys/class with two cpus at `khz` and `zones` (type -> millidegrees)."""
    cpu = root / "cpu"
    for name in ("online", "present", "possible"):
        (cpu / name).parent.mkdir(parents=True, exist_ok=True)
        (cpu / name).write_text("0-1\n")
    for n, top in enumerate(khz):
        freq = cpu / f"cpu{n}" / "cpufreq"
        freq.mkdir(parents=True)
        (freq / "scaling_governor").write_text(governor + "\n")
        (freq / "scaling_cur_freq").write_text(f"{top}\n")
        (freq / "cpuinfo_max_freq").write_text(f"{top}\n")
    for i, (kind, milli) in enumerate(zones.items()):
        zone = root / "class" / "thermal" / f"thermal_zone{i}"
        zone.mkdir(parents=True)
        (zone / "type").write_text(kind + "\n")
        (zone / "temp").write_text(f"{milli}\n")
    if battery:
        bat = root / "class" / "power_supply" / "battery"
        bat.mkdir(parents=True)
        for name, value in (("type", "Battery"), ("status", "Charging"), ("capacity", "80")):
            (bat / name).write_text(value + "\n")
    return root


def _wrapper(path: Path, fake: Path, command: str) -> Path:
    path.write_text(
        "#!/bin/sh\n"
        f"exec unshare -m sh -c 'mount --bind {fake}/cpu /sys/devices/system/cpu && "
        f'mount --bind {fake}/class /sys/class && exec {command} "$@"\' python "$@"\n'
    )
    path.chmod(0o755)
    return path


@pytest.fixture(scope="module")
def pi4() -> Iterator[Target]:
    from edgekit.emu.device import ensure_device
    from edgekit.target import load_target

    yield ensure_device(load_target("pi4-emu"))


def _deploy(target: Target):  # type: ignore[no-untyped-def]
    from edgekit.deploy import DeployOptions, deploy
    from edgekit.formats import Format
    from edgekit.recipe import load_recipe

    result = deploy(
        load_recipe(REPO / "recipes" / "tiny.yaml"),
        [target],
        DeployOptions(repeat=2, warmup=1, threads=(1,), samples=2, formats=(Format.TFLITE_FP32,), host=False),
        lambda m: None,
    )
    (one,) = result.runs
    return one


@pytest.mark.integration
def test_an_emulated_devices_facts_hold_the_hosts_temperature_and_clocks_not_its_battery(
    pi4: Target, tmp_path: Path
) -> None:
    from edgekit.emu.layout import device_dir
    from edgekit.target import load_target

    fake = _fake_sys(tmp_path / "hot", (3500000, 2000000), "performance", {"x86_pkg_temp": 86000}, True)
    python = _wrapper(tmp_path / "hot-python", fake, str(device_dir("pi4-emu").root / "bin" / "python3"))
    one = _deploy(load_target("pi4-emu", [f"python={python}", "affinity=big"]))
    assert one.status == "ok" and one.agent is not None, one.error
    facts = one.agent.facts_before
    assert facts.emulated
    # f926395 recorded None and []: a hot host left no evidence against qemu's wall time
    assert facts.temperature_c == 86.0 and facts.temperature_zone == "x86_pkg_temp", facts
    assert [(f.cpu, f.cur_khz) for f in facts.freqs] == [(0, 3500000), (1, 2000000)], facts
    assert facts.thermal_zones == {"x86_pkg_temp": 86.0} and facts.battery is None, facts
    # the host's faster core is no big cluster of the emulated device's
    assert facts.affinity is not None and facts.affinity["cpus"] == [0, 1], facts.affinity
    assert "emulated device has no clusters" in (facts.affinity["note"] or ""), facts.affinity


@pytest.fixture(scope="module")
def phone(pi4: Target, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Termux-like phone target file: pi4-emu's sshd, a python seeing a 2-core big.LITTLE /sys and cpuinfo."""
    from edgekit.emu.layout import device_dir, shared

    tmp = tmp_path_factory.mktemp("phone")
    fake = _fake_sys(
        tmp / "sys",
        (1785600, 2841600),
        "schedutil",
        {"cpu-0-0": 41200, "battery": 45000, "skin": 36000},
        True,
    )
    sysroot = tmp / "sysroot"
    (sysroot / "proc").mkdir(parents=True)
    (sysroot / "proc" / "cpuinfo").write_text(PHONE_CPUINFO)
    base = device_dir("pi4-emu").root / "sysroot"
    for name in ("bin", "etc", "lib", "sbin", "usr", "var"):
        if (base / name).exists():
            (sysroot / name).symlink_to((base / name).resolve())
    site = shared().site("litert")
    python = tmp / "termux-python"
    python.write_text(
        "#!/bin/sh\nunset EDGEKIT_EMULATOR\n"
        f"export PYTHONPATH={site} PYTHONNOUSERSITE=1\n"
        f"exec unshare -m sh -c 'mount --bind {fake}/cpu /sys/devices/system/cpu && "
        f"mount --bind {fake}/class /sys/class && exec /usr/bin/qemu-aarch64-static -cpu cortex-a76 "
        f'-L {sysroot} {sysroot}/usr/bin/python3.11 "$@"\' python "$@"\n'
    )
    python.chmod(0o755)
    board = tmp / "tphone.yaml"
    board.write_text(
        f"name: tphone\ntransport: ssh\nhost: {pi4.host}\nport: {pi4.port}\nuser: {pi4.user}\nkey: {pi4.key}\n"
        f"known_hosts: {pi4.known_hosts}\naccept_new: false\nwork_dir: ~/tphone-f10\npython: {python}\n"
        "runtimes: [ai_edge_litert]\naffinity: big\nexpected_cpu: Cortex-A78/A55\n"
    )
    return board


@pytest.mark.integration
def test_a_phone_pinned_to_its_big_core_is_named_by_it_and_judged_on_every_core(phone: Path) -> None:
    from edgekit.target import load_target

    one = _deploy(load_target(str(phone)))
    assert one.status == "ok" and one.agent is not None, one.error
    facts = one.agent.facts_before
    assert facts.cpus_used == [1] and facts.cpu_model == "Cortex-A76", facts  # was Cortex-A55: cpu0's
    assert facts.cpu_parts == {"0": "0xd05", "1": "0xd0b"}, facts
    assert facts.temperature_c == 41.2 and facts.temperature_zone == "cpu-0-0", (
        facts
    )  # was 45.0: the battery's
    assert facts.battery is not None and facts.battery["charging"] is True
    said = " ".join(one.caveats)
    assert "not the target's expected_cpu Cortex-A78/A55" in said and "Cortex-A55 + Cortex-A76" in said, said


@pytest.mark.integration
def test_a_cpu_list_the_phone_cannot_pin_to_is_a_named_failure(phone: Path) -> None:
    from edgekit.target import load_target

    one = _deploy(load_target(str(phone), ["affinity=3", "expected_cpu=Cortex-A76/A55"]))
    assert one.status != "ok", one  # ran unpinned on cpus 0-1, exit 0
    assert "cpu 3 not online on this device (online: 0,1)" in (one.error or ""), one.error
    assert one.bad_input and "BadAffinity" in (one.error or ""), one  # was AgentError: a failed run, exit 1


@pytest.mark.integration
def test_deploy_exits_2_for_a_cpu_list_the_phone_cannot_pin_to(phone: Path, tmp_path: Path) -> None:
    """README: a cpu list the device cannot pin to is a bad request, exit 2 naming the cpus, nothing recorded (it
    exited 1, stored as a failed run: review r15 #2)."""
    store = f"sqlite:///{tmp_path / 'runs.sqlite'}"
    tiny = str(REPO / "recipes" / "tiny.yaml")
    args = ("--target", str(phone), "--set", "affinity=3", "--no-host", "-f", "tflite-fp32", "--repeat", "2")
    out = run(
        "deploy", tiny, *args, "--warmup", "1", "--samples", "2", "--store", store, cwd=tmp_path, timeout=600
    )
    assert out.returncode == 2, (out.stdout[-1500:], out.stderr[-1500:])
    said = " ".join((out.stdout + out.stderr).split())
    assert "BadAffinity" in said and "cpu 3 not online on this device (online: 0,1)" in said, said
    assert "not recorded: bad input (above) and nothing was measured" in said, said
    stored = run("runs", "--store", store, cwd=tmp_path)
    assert stored.returncode == 0 and "tphone" not in stored.stdout, stored.stdout  # was run 1, failed


@pytest.mark.integration
def test_targets_check_names_the_phones_cores_and_a_runtime_pythons_field(
    phone: Path, tmp_path: Path
) -> None:
    out = run("targets", "check", str(phone), cwd=tmp_path, timeout=300)
    assert out.returncode == 1, (out.stdout, out.stderr)  # expected_cpu Cortex-A78/A55: the A76 is not named
    assert "Cortex-A55 + Cortex-A76" in out.stdout, out.stdout
    err = named(
        run(
            "targets",
            "check",
            str(phone),
            "--set",
            "runtime_python.ai_edge_litert=/nonexistent/python",
            cwd=tmp_path,
            timeout=300,
        )
    )
    assert "field `runtime_python.ai_edge_litert`" in err and "--set runtime_python.ai_edge_litert=" in err, (
        err
    )


@pytest.mark.integration
def test_targets_check_says_an_emulated_devices_cores_and_memory_are_the_hosts(
    pi4: Target, tmp_path: Path
) -> None:
    out = run("targets", "check", "pi4-emu", cwd=tmp_path, timeout=300)
    assert out.returncode == 0, (out.stdout, out.stderr)
    assert "2 (the emulator host's, not the device's)" in out.stdout, (
        out.stdout
    )  # the table may wrap the memory row
    assert out.stdout.count("(the emulator") == 2, out.stdout
