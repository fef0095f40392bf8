"""Counting on an emulated target: the counting plugin's environment for the agent's run, and, after it, the
llvm-mca cycles of the windows it counted.

The device's python wrapper runs the plugin-capable qemu when EDGEKIT_QEMU_PLUGIN is set (edgekit/emu/README.md);
the agent reads each timed window's count from EDGEKIT_INSN_FILE, a path on this machine (the emulated device
shares its filesystem). A device that stands for a board also runs every load and store through that board's
simulated data caches (the estimate's miss features, edgekit/estimate/forms.py), and on a core LLVM models (the
Pi 5's) the plugin lists each window's blocks, which edgekit times after the run (emu/plugin/cycles.py).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from edgekit.errors import EdgekitError
from edgekit.results import TargetRun
from edgekit.target import Target

COUNTS, BLOCKS = "insns.txt", "blocks.txt"  # in the target's local run folder


def plugin_env(target: Target, local_dir: Path) -> dict[str, str] | None:
    """For an emulated target with `counting: true`: the environment that makes the agent's run count; None
    otherwise."""
    if not (target.emulated and target.emulated.counting):
        return None
    from edgekit.emu.plugin import build as plugin_build
    from edgekit.estimate.boards import caches_for_device

    plugin = plugin_build.require_plugin()  # built by set-up (`edgekit emu build`); never at run time
    args = caches_for_device(target.emulated.device) if target.emulated.caches else ()
    insn = (local_dir / COUNTS).resolve()
    insn.parent.mkdir(parents=True, exist_ok=True)
    insn.touch()
    if times_blocks(target):  # each window's blocks, for llvm-mca's cycles (time_blocks)
        args = (*args, f"blocks={local_dir.resolve() / BLOCKS}")
    return {
        "EDGEKIT_QEMU_PLUGIN": ",".join([str(plugin), f"out={insn}", *args]),
        "EDGEKIT_INSN_FILE": str(insn),
        "EDGEKIT_QEMU_DYNAMIC": str(plugin_build.counting_qemu()),
        "PYTHONHASHSEED": "0",
    }


def times_blocks(target: Target) -> bool:
    """Whether the counting run lists each window's blocks: an emulated device that stands for a board (an
    estimate to make) on a core LLVM models (the Pi 5's), with the board's simulated caches (the forms on cycles
    were calibrated with the misses), llvm-mca installed."""
    from edgekit.emu.plugin import cycles
    from edgekit.estimate.boards import BOARDS

    emulated = target.emulated
    if emulated is None or not (emulated.counting and emulated.caches) or not cycles.tools_present():
        return False
    return any(b.emulated_device == emulated.device and cycles.models(b.core) for b in BOARDS.values())


def time_blocks(run: TargetRun, target: Target, local_dir: Path, say: Callable[[str], None]) -> None:
    """On this machine, after the agent: each one-thread counted measurement's window (found by its count in the
    plugin's count file) timed by llvm-mca (emu/plugin/cycles.py), into cycles_per_invoke; the block list is
    removed afterwards (hundreds of KB a window). A failure of llvm-mca is said and leaves the estimates on the
    forms without cycles."""
    from edgekit.emu.plugin import cycles
    from edgekit.emu.specs import device_spec

    listed, counts = local_dir / BLOCKS, local_dir / COUNTS
    if run.agent is None or target.emulated is None or not listed.exists() or not counts.exists():
        return
    ones = [
        m for m in run.agent.measurements if m.status == "ok" and m.threads == 1 and m.instructions_per_invoke
    ]
    try:
        cpu = device_spec(target.emulated.device).cpu
        timed = cycles.measured_cycles(
            counts, listed, cpu, [(m.instructions_per_invoke or 0, m.number) for m in ones]
        )
        for m, c in zip(ones, timed):
            m.cycles_per_invoke = round(c, 1) if c is not None else None
    except (EdgekitError, OSError, ValueError) as exc:
        say(f"{target.name}: warning: llvm-mca's cycles not taken ({exc}); estimates without them")
    finally:
        drop_blocks(local_dir)


def drop_blocks(local_dir: Path) -> None:
    (local_dir / BLOCKS).unlink(missing_ok=True)
