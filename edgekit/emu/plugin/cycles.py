"""Cycles of a counted window by LLVM's scheduling model of the core: what the instructions cost on an ideal memory.

The counting plugin (`blocks=PATH`) lists the window's executed translation blocks: executions and instruction
words. Each distinct block is disassembled by llvm-mc and timed by llvm-mca as a loop of itself with LLVM's model
of the core (issue width, pipelines, latencies: a chain of dependent multiply-adds costs its latency, independent
ones their throughput); the window's cycles are the sum over blocks of executions x cycles per iteration, the
blocks past 99.5 % of the instructions scaled in at the timed blocks' cycles per instruction. Every load hits the
L1 here: the simulated cache misses are separate features. Calls are timed as a plain instruction (llvm-mca
charges a call 100 cycles; the callee's blocks are counted on their own).

Only a core LLVM models is timed: the Cortex-A76 (Pi 5) through LLVM's Neoverse N1 model (the N1 is built on the
A76's microarchitecture). LLVM has no Cortex-A72 model (it times the A72 with its Cortex-A57 one), and cycles from
that model did not help the Pi 4's estimate in cross-validation (docs/estimate.md), so the Pi 4 has none.
"""

from __future__ import annotations

import re
import subprocess
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from edgekit.errors import EmulatorError

LLVM_VERSION = 19
LLVM_BIN = Path(f"/usr/lib/llvm-{LLVM_VERSION}/bin")
MODELS = {"cortex-a76": ("neoverse-n1", "+v8.2a,+fullfp16,+dotprod,+rcpc")}  # core -> (llvm -mcpu, -mattr)
COVER = 0.995  # the hottest blocks timed: this share of the window's instructions
ITERATIONS = 100  # llvm-mca's loop of each block
_CALL = re.compile(r"(bl|blr|blraaz?|blrabz?)\s")
_ENCODED = re.compile(r"\s*(.*?)\s*// encoding: \[0x(..),0x(..),0x(..),0x(..)\]")

Blocks = dict[tuple[str, ...], int]  # instruction words (hex) -> executions in the window


@dataclass(frozen=True)
class WindowCycles:
    cycles: float  # llvm-mca cycles of the window (ideal memory)
    instructions: int  # the window's instructions, from the block list
    timed_blocks: int
    covered: float  # share of the instructions in timed blocks


def models(cpu: str) -> bool:
    """Whether edgekit times this core's blocks (LLVM has a model of it)."""
    return cpu in MODELS


def tools_present() -> bool:
    return all((LLVM_BIN / tool).exists() for tool in ("llvm-mc", "llvm-mca"))


def read_windows(path: Path) -> list[Blocks]:
    """Each window's block list from the plugin's file (section i: the window of the count file's line i), a
    block translated more than once summed into one entry."""
    windows: list[defaultdict[tuple[str, ...], int]] = []
    for line in path.read_text().splitlines():
        if line == "#":
            windows.append(defaultdict(int))
            continue
        parts = line.split()
        if windows and len(parts) >= 3:
            windows[-1][tuple(parts[2:])] += int(parts[1])
    return [dict(w) for w in windows]


def window_totals(count_file: Path) -> list[int]:
    """Each window's instruction total from the plugin's count file (out=PATH), in order."""
    totals = []
    for line in count_file.read_text().splitlines():
        fields = line.split(";")[0].split()
        totals.append(int(fields[0]) if fields and fields[0].isdigit() else -1)
    return totals


def matching_window(totals: list[int], per_invoke: int, number: int) -> int | None:
    """The window whose total is a measurement's count (per invocation x invocations per window), within 0.1 %
    (the agent reports the median window; a window of another artifact with the same count ran the same code)."""
    want = per_invoke * max(1, number)
    best = min(range(len(totals)), key=lambda i: abs(totals[i] - want), default=None)
    if best is None or abs(totals[best] - want) > 1e-3 * want:
        return None
    return best


def measured_cycles(
    count_file: Path, block_file: Path, cpu: str, measured: list[tuple[int, int]]
) -> list[float | None]:
    """Per invocation, the llvm-mca cycles of each measurement's window, given as (instructions per invocation,
    invocations per window): the window is found by its count in the plugin's count file (matching_window) and
    timed once however many measurements share it; None where no window matches or the window has no blocks (more
    than one thread ran in it)."""
    windows = read_windows(block_file)
    totals = window_totals(count_file)[: len(windows)]
    timed: dict[int, float] = {}
    out: list[float | None] = []
    for per_invoke, number in measured:
        i = matching_window(totals, per_invoke, number)
        if i is None or not windows[i]:
            out.append(None)
            continue
        if i not in timed:
            timed[i] = window_cycles(windows[i], cpu).cycles
        out.append(timed[i] / max(1, number))
    return out


def read_blocks(path: Path) -> Blocks:
    """The last window's block list."""
    windows = read_windows(path)
    return windows[-1] if windows else {}


def window_cycles(blocks: Blocks, cpu: str) -> WindowCycles:
    """The window's cycles on `cpu` by llvm-mca (see the module's docstring)."""
    if cpu not in MODELS:
        raise EmulatorError(f"no LLVM scheduling model used for {cpu}", where="edgekit.emu.plugin.cycles")
    if not tools_present():
        raise EmulatorError(
            f"llvm-mc / llvm-mca {LLVM_VERSION} are not installed",
            where=str(LLVM_BIN),
            hint=f"run `make setup` (it installs Debian's llvm-{LLVM_VERSION})",
        )
    total = sum(n * len(words) for words, n in blocks.items())
    if total == 0:
        return WindowCycles(0.0, 0, 0, 1.0)
    hot: list[tuple[tuple[str, ...], int]] = []
    covered = 0
    for words, n in sorted(blocks.items(), key=lambda kv: (-kv[1] * len(kv[0]), kv[0])):
        hot.append((words, n))
        covered += n * len(words)
        if covered >= COVER * total:
            break
    text = _disassemble(sorted({w for words, _ in hot for w in words}), cpu)
    source = []
    for i, (words, _) in enumerate(hot):
        source.append(f"# LLVM-MCA-BEGIN b{i}")
        source += ["nop" if _CALL.match(t) else t for t in (text.get(w, "nop") for w in words)]
        source.append(f"# LLVM-MCA-END b{i}")
    mcpu, mattr = MODELS[cpu]
    proc = _llvm(
        "llvm-mca",
        "-mtriple=aarch64",
        f"-mcpu={mcpu}",
        f"-mattr={mattr}",
        f"-iterations={ITERATIONS}",
        "-skip-unsupported-instructions=any",
        "-resource-pressure=0",
        "-instruction-info=0",
        stdin="\n".join(source) + "\n",
    )
    per_block = [int(c) / ITERATIONS for c in re.findall(r"Total Cycles:\s+(\d+)", proc.stdout)]
    if len(per_block) != len(hot):
        raise EmulatorError(
            f"llvm-mca timed {len(per_block)} of {len(hot)} blocks", where="llvm-mca", hint=proc.stderr[-500:]
        )
    cycles = sum(n * c for (_, n), c in zip(hot, per_block))
    return WindowCycles(cycles * total / covered, total, len(hot), covered / total)


def _disassemble(words: list[str], cpu: str) -> dict[str, str]:
    """Assembly text of each instruction word llvm-mc decodes and can assemble again (llvm-mca reads assembly)."""
    mattr = MODELS[cpu][1]
    lines = "\n".join(" ".join(f"0x{w[i : i + 2]}" for i in (6, 4, 2, 0)) for w in words) + "\n"
    proc = _llvm(
        "llvm-mc", "--disassemble", "-triple=aarch64", f"-mattr={mattr}", "-show-encoding", stdin=lines
    )
    text = {}
    for line in proc.stdout.splitlines():
        m = _ENCODED.match(line)
        if m:
            text[m.group(5) + m.group(4) + m.group(3) + m.group(2)] = m.group(1).replace("\t", " ")
    distinct = sorted(set(text.values()))
    check = _llvm(
        "llvm-mc",
        "-triple=aarch64",
        f"-mattr={mattr}",
        "-o",
        "/dev/null",
        stdin="\n".join(distinct) + "\n",
        ok=(0, 1),
    )
    bad = {distinct[int(m.group(1)) - 1] for m in re.finditer(r"<stdin>:(\d+):\d+: error", check.stderr)}
    return {w: t for w, t in text.items() if t not in bad}


def _llvm(tool: str, *args: str, stdin: str, ok: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(
            [str(LLVM_BIN / tool), *args], input=stdin, capture_output=True, text=True, timeout=600
        )
    except subprocess.TimeoutExpired as exc:
        raise EmulatorError(f"{tool} took over 600 s", where=str(LLVM_BIN / tool)) from exc
    if proc.returncode not in ok:
        raise EmulatorError(f"{tool} failed: {proc.stderr.strip()[-800:]}", where=str(LLVM_BIN / tool))
    return proc
