"""llvm-mca cycles of counted blocks: the plugin lists a window's executed blocks exactly, llvm-mca times them with
the core's model (real llvm-mc / llvm-mca from set-up), and deploy on pi5-emu uses them. That `edgekit estimate` on
the Pi 5 uses them and on the Pi 4 does not is asserted on the estimates tests/test_estimate.py makes anyway
(test_a_bare_param_labelled_ncnn_fp32_counts_what_edgekits_ncnn_fp32_counts and
test_estimate_command_counts_once_and_reuses_the_count): the same commands, counted once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_counting import CHANNELS, SIZE, write_chain

from edgekit.emu.plugin import build as plugin_build
from edgekit.emu.plugin import cycles, selftest
from edgekit.emu.plugin.counting import CountJob, count_artifacts
from edgekit.errors import EmulatorError

A76 = "cortex-a76"
# fmla v0.4s, v0.4s, v1.4s: each one needs the one before (a chain); then four on different registers
CHAIN = ("4e21cc00",) * 4
APART = ("4e21cc00", "4e21cc62", "4e21cca4", "4e21cce6")
LOOP = ("f1000400", "54ffff81")  # subs x0, x0, #1; b.ne


@pytest.fixture(scope="module")
def tools() -> None:
    if not cycles.tools_present():
        pytest.fail(f"llvm-mc / llvm-mca {cycles.LLVM_VERSION} are not installed: run `make setup`")


def test_the_plugin_lists_every_instruction_of_the_window_in_its_blocks(tmp_path: Path) -> None:
    """The block list is the window's count, block by block: executions x block length sums to the plugin's own
    count exactly, and the loop's block ran once per iteration."""
    if not plugin_build.is_built():
        pytest.fail("the counting plugin is not built: run `edgekit emu build-plugin`")
    loops = 700
    exe = tmp_path / "marks"
    exe.write_bytes(selftest.program(loops))
    exe.chmod(0o755)
    out, listed = tmp_path / "counts.txt", tmp_path / "blocks.txt"
    plugin = f"{plugin_build.plugin_path()},out={out},blocks={listed}"
    proc = subprocess.run(
        [str(plugin_build.counting_qemu()), "-cpu", "cortex-a76", "-plugin", plugin, str(exe)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    window = int(out.read_text().split()[0])
    blocks = cycles.read_blocks(listed)
    assert sum(n * len(words) for words, n in blocks.items()) == window == selftest.expected(loops)
    looped = [
        n
        for words, n in blocks.items()
        if words[-2:] == (f"{selftest._SUBS_X0:08x}", f"{selftest._BNE_BACK:08x}")
    ]
    assert looped and max(looped) >= loops - 1


def test_llvm_mca_charges_a_dependency_chain_its_latency(tools: None) -> None:
    chain = cycles.window_cycles({CHAIN + LOOP: 1000}, A76)
    apart = cycles.window_cycles({APART + LOOP: 1000}, A76)
    assert chain.instructions == apart.instructions == 6000 and chain.covered == 1.0
    assert chain.cycles > 2.5 * apart.cycles  # four dependent multiply-adds wait on each other
    more = cycles.window_cycles({APART + LOOP: 3000}, A76)
    assert more.cycles == pytest.approx(3 * apart.cycles)
    called = cycles.window_cycles({APART + ("94000064",) + LOOP: 1000}, A76)  # + bl: not 100 cycles a call
    assert called.cycles < apart.cycles + 1000 * 5


def test_a_core_llvm_does_not_model_is_not_timed(tools: None) -> None:
    assert cycles.models(A76) and not cycles.models("cortex-a72")
    with pytest.raises(EmulatorError, match="no LLVM scheduling model"):
        cycles.window_cycles({APART: 1}, "cortex-a72")


@pytest.mark.integration
def test_a_count_with_blocks_times_them_on_the_pi5s_core(tmp_path: Path, tools: None) -> None:
    """A real ncnn model counted on pi5-emu with blocks: cycles per invocation, the same on a second run to within
    the count's own repeatability (one thread repeats to a few tens of instructions: 656,076 and 656,048 in one CI
    run, 311,663 and 311,697 cycles), fewer than its instructions at the A76's width; its instruction count
    unchanged."""
    param = write_chain(tmp_path / "chain", 2)

    def job(blocks: bool) -> CountJob:
        return CountJob(param, threads=1, input_shape=[1, CHANNELS, SIZE, SIZE], repeat=1, blocks=blocks)

    timed, again, plain = count_artifacts([job(True), job(True), job(False)], "pi5-emu")
    assert timed.cycles > 0 and again.cycles == pytest.approx(timed.cycles, rel=1e-3) and plain.cycles == -1
    assert 0.2 * timed.instructions < timed.cycles < timed.instructions
    assert abs(timed.instructions - plain.instructions) < 1e-3 * plain.instructions


@pytest.mark.integration
def test_deploy_to_pi5_emu_times_each_counted_window_for_its_estimate(tmp_path: Path, tools: None) -> None:
    """deploy on pi5-emu with the caches simulated (its default; the suite turns them off) lists each window's
    blocks, times the one-thread measurements' windows with llvm-mca on this machine, and its estimate weighs
    the cycle forms, as `edgekit estimate --board pi5` does; the block list does not stay behind.

    The session's data dir (conftest.py): the tiny recipe's ncnn-fp32 conversion comes from its cache when an
    earlier test converted it (a home of its own converted it again, seconds); nothing here asserts a fresh
    conversion or count, and a block list is looked for among the files this deploy adds."""
    import os

    env = {k: v for k, v in os.environ.items() if k != "EDGEKIT_TARGET_PI5_EMU_EMULATED__CACHES"}
    from edgekit.paths import data_path

    home = data_path()
    before = set(home.rglob("blocks.txt"))
    out = tmp_path / "run.json"
    args = [
        "deploy",
        "recipes/tiny.yaml",
        "--target",
        "pi5-emu",
        "--no-host",
        "-f",
        "ncnn-fp32",
        "--samples",
        "4",
    ]
    proc = subprocess.run(
        [sys.executable, "-m", "edgekit", *args, "--no-store", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (run,) = json.loads(out.read_text())["runs"]
    (one,) = [m for m in run["agent"]["measurements"] if m["threads"] == 1]
    assert one["cache_misses"] and 0.2 * one["instructions_per_invoke"] < one["cycles_per_invoke"]
    assert one["cycles_per_invoke"] < one["instructions_per_invoke"]
    weights = run["estimates"]["ncnn-fp32 x1"]["cross_validation"]["weights"]
    assert any(name.startswith("cycles") for name in weights)
    assert set(home.rglob("blocks.txt")) <= before, sorted(set(home.rglob("blocks.txt")) - before)
