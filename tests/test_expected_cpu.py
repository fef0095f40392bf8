"""A target's `expected_cpu` against the CPU the device reports: `--set expected_cpu=Cortex-A76` on pi4-emu (a
Cortex-A72) ran with rc 0 and no word, so a wrong IP reaching a Pi 5 instead of a Pi 4 was recorded under pi4 in
silence. deploy and bench now warn naming both, and keep it among the run's caveats in --json; the shipped
targets' spellings match what their devices report (no warning on the emulated ones)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from edgekit.deploy.expected_cpu import mismatch
from edgekit.results import DeployResult, DeviceFacts, TargetRun

ROOT = Path(__file__).resolve().parent.parent


def facts(model: str | None, part: str | None = None, machine: str = "aarch64") -> DeviceFacts:
    return DeviceFacts(machine=machine, cpu_model=model, cpu_part=part, cores=4, python="3.11")


def shipped(name: str) -> str:
    return str(yaml.safe_load((ROOT / "targets" / f"{name}.yaml").read_text())["expected_cpu"])


def test_the_shipped_spellings_match_what_their_devices_report_and_another_core_does_not() -> None:
    a72, a76, a55 = facts("Cortex-A72", "0xd08"), facts("Cortex-A76", "0xd0b"), facts("Cortex-A55", "0xd05")
    for name in ("pi4", "pi4-emu", "lab-pi4"):
        assert not mismatch(shipped(name), a72) and mismatch(shipped(name), a76), name
    for name in ("pi5", "pi5-emu", "lab-pi5", "phone-emu"):
        assert not mismatch(shipped(name), a76) and mismatch(shipped(name), a72), name
    # a big.LITTLE phone reports cpu0's core, often the little one: the target names both
    assert not mismatch(shipped("phone"), a55) and not mismatch(shipped("phone"), a76)
    assert mismatch(shipped("phone"), a72)
    # a 32-bit kernel's model name with its part number; without one nothing tells the core: no warning
    assert not mismatch("Cortex-A72", facts("ARMv8 Processor rev 3 (v8l)", "0xd08"))
    assert mismatch("Cortex-A76", facts("ARMv8 Processor rev 3 (v8l)", "0xd08"))
    assert not mismatch("Cortex-A76", facts("ARMv8 Processor rev 3 (v8l)"))
    # case and prefix do not matter; an x86 machine is no ARM core
    assert not mismatch("cortex-a72", a72) and not mismatch("A72", a72) and not mismatch("0xd08", a72)
    assert mismatch("0xd0b", a72) and not mismatch("Neoverse-N1", facts("Neoverse-N1", "0xd0c"))
    assert mismatch("Cortex-A72", facts("AMD EPYC 7B13", machine="x86_64"))
    # an expected_cpu naming no ARM core: word by word, either way round
    intel = facts("Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz", machine="x86_64")
    assert not mismatch("Intel Core i7-8700", intel) and mismatch("AMD EPYC", intel)
    assert not mismatch("AMD EPYC 7B13", facts("AMD EPYC", machine="x86_64"))
    assert not mismatch(None, a72) and not mismatch("", a72) and not mismatch("Cortex-A72", None)


@pytest.mark.parametrize(
    "expected, model, differs",
    [
        # review of 2be9f1f: a word-by-word rule warned on every run of these (the first four)
        ("Intel Core i7 8th gen", "Intel(R) Core(TM) i7-8650U CPU @ 1.90GHz", False),
        ("AMD EPYC 7xx3", "AMD EPYC 7763 64-Core Processor", False),
        ("Ryzen 9 5950X", "AMD Ryzen 9 5950X 16-Core Processor", False),
        ("Xeon E5-2686", "Intel(R) Xeon(R) CPU E5-2686 v4 @ 2.30GHz", False),
        ("Core i7-12700H", "12th Gen Intel(R) Core(TM) i7-12700H", False),
        ("Ryzen 7 7840U", "AMD Ryzen 7 PRO 7840U w/ Radeon 780M Graphics", False),
        ("Intel N100", "Intel(R) N100", False),
        ("x86-64 server", "Intel(R) Core(TM) i7-8650U CPU @ 1.90GHz", False),  # x86 is no Cortex-X core
        ("Intel Core i7", "QEMU Virtual CPU version 2.5+", False),  # names no maker nor model: not judged
        # a model number both name, or the maker, contradicts
        ("Intel Core i7-8700", "Intel(R) Core(TM) i7-8650U CPU @ 1.90GHz", True),
        ("Ryzen 9 5950X", "AMD Ryzen 9 7950X3D 16-Core Processor", True),
        ("EPYC 9654", "AMD EPYC 9754 128-Core Processor", True),
        ("Xeon E5-2686 v4", "Intel(R) Xeon(R) CPU E5-2680 v4 @ 2.40GHz", True),
        ("AMD EPYC 7xx3", "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz", True),
        ("Apple M1", "Intel(R) Core(TM) i7-8650U CPU @ 1.90GHz", True),
    ],
)
def test_an_x86_expected_cpu_is_judged_by_maker_and_model_number_only(
    expected: str, model: str, differs: bool
) -> None:
    assert mismatch(expected, facts(model, machine="x86_64")) is differs


def test_an_x86_expected_cpu_on_an_arm_device_and_apple_on_arm() -> None:
    assert mismatch("Intel Core i7", facts("ARMv8 Processor rev 3 (v8l)", machine="armv7l"))
    assert not mismatch("Apple M1", facts("Cortex-A72", "0xd08"))  # ARM both: no model number to compare


def edgekit(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgekit", *args],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "COLUMNS": "400", "EDGEKIT_HOME": os.environ.get("EDGEKIT_HOME", str(home))},
    )


@pytest.fixture(scope="module")
def tiny_param(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgekit.convert.pipeline import convert_recipe
    from edgekit.formats import Format
    from edgekit.recipe import load_recipe

    (art,) = convert_recipe(load_recipe(ROOT / "recipes" / "tiny.yaml"), [Format.NCNN_FP32])
    return art.main_file


@pytest.mark.integration
def test_bench_warns_when_the_device_is_not_the_expected_cpu(
    pi4_emu: object, tiny_param: Path, tmp_path: Path
) -> None:
    wrong, right = tmp_path / "wrong.json", tmp_path / "right.json"
    common = [str(tiny_param), "--target", "pi4-emu", "--repeat", "1", "--warmup", "0"]
    done = edgekit("bench", *common, "--set", "expected_cpu=Cortex-A76", "--json", str(wrong), home=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    said = " ".join(done.stdout.split())
    assert (
        "reports its CPU as Cortex-A72 (CPU part 0xd08), not the target's expected_cpu Cortex-A76" in said
    ), said
    run = TargetRun.model_validate_json(wrong.read_text())
    assert any("expected_cpu Cortex-A76" in c for c in run.caveats), run.caveats
    done = edgekit("bench", *common, "--json", str(right), home=tmp_path)  # its own expected_cpu: Cortex-A72
    assert done.returncode == 0 and "expected_cpu" not in done.stdout, done.stdout
    assert not any("expected_cpu" in c for c in TargetRun.model_validate_json(right.read_text()).caveats)


@pytest.mark.integration
def test_deploy_warns_when_the_device_is_not_the_expected_cpu(pi4_emu: object, tmp_path: Path) -> None:
    out = tmp_path / "run.json"
    done = edgekit(
        "deploy",
        str(ROOT / "recipes" / "tiny.yaml"),
        "--target",
        "pi4-emu",
        "--format",
        "onnx-fp32",
        "--no-host",
        "--no-store",
        "--samples",
        "1",
        "--set",
        "expected_cpu=Cortex-A76",
        "--json",
        str(out),
        home=tmp_path,
    )
    said = " ".join(done.stdout.split())
    assert (
        "pi4-emu: the device reports its CPU as Cortex-A72 (CPU part 0xd08), not the target's expected_cpu "
        in said
    )
    result = DeployResult.model_validate(json.loads(out.read_text()))
    (run,) = result.runs
    assert any("expected_cpu Cortex-A76" in c for c in run.caveats), run.caveats


def test_a_device_reporting_each_cores_part_is_judged_on_all_of_them() -> None:
    """A big.LITTLE phone's cpu0 is mostly an A55, which every such phone has: `Cortex-A78/A55` passed on an
    A76 + A55 phone, as only cpu0's part was compared. Each cpu's part now is: a named core the device lacks, or a
    core of the device's the target does not name, warns."""

    def cores(*parts: str) -> DeviceFacts:
        each = {str(n): p for n, p in enumerate(parts)}
        return DeviceFacts(
            machine="aarch64",
            cpu_model="Cortex-A76",
            cpu_part=parts[-1],
            cpu_parts=each,
            cores=4,
            python="3.11",
        )

    a76_a55 = cores("0xd05", "0xd05", "0xd0b", "0xd0b")
    assert not mismatch("Cortex-A76/A55 (big.LITTLE)", a76_a55)
    assert mismatch("Cortex-A78/A55", a76_a55)  # the A76 is not named
    assert mismatch("Cortex-A76", a76_a55)  # nor the A55
    assert mismatch("Cortex-A76/A55", cores("0xd05", "0xd05"))  # an all-A55 phone lacks the A76
    assert not mismatch("Cortex-A72", cores("0xd08", "0xd08", "0xd08", "0xd08"))
    # a part ARM's table does not know (a vendor's own core) is not judged on every core: as before, by any match
    assert not mismatch("Cortex-A76/A55", cores("0xd05", "0x804"))
