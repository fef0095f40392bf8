"""The real boards edgekit estimates for: clock, cores, NEON width, peak MACs per cycle, memory bandwidth.

Each figure carries its source. Peak MACs per cycle per core are for 128-bit NEON multiply-accumulate:
- Cortex-A72: two 64-bit-wide FP/ASIMD pipes, so one 4-lane fp32 FMLA per cycle (4 MACs); no fp16
  arithmetic (fp16 runs as fp32); int8 by SMLAL/SMLAL2 on the one integer multiply pipe (8 MACs per cycle).
  Sources: Arm Cortex-A72 Software Optimization Guide (UAN 0016A, 2015), section 3.14 ASIMD FP/integer
  instructions; vfpbench on Cortex-A72 measured 8 fp32 FLOP/cycle per core (wlog.flatlib.jp/2015/10/30/n1787).
- Cortex-A76: two 128-bit ASIMD pipes, each an FMLA per cycle: 8 fp32 MACs, 16 fp16 MACs (ARMv8.2 FP16),
  and SDOT (ARMv8.2 dot product) 16 int8 MACs per instruction on both pipes: 32. Source: Arm Cortex-A76
  Software Optimization Guide (PJDOC-466751330-7215, v8.0, 2019), section 3.15 ASIMD instructions.
Boards (raspberrypi.com product briefs): Pi 4 Model B: BCM2711, 4 x Cortex-A72 at 1.8 GHz (since the 2020
firmware; 1.5 GHz before; ncnn's table was measured at 1.8 GHz), LPDDR4-3200 on a 32-bit bus (12.8 GB/s
peak), 1 MB shared L2. Pi 5: BCM2712, 4 x Cortex-A76 at 2.4 GHz, LPDDR4X-4267 on a 32-bit bus (17.1 GB/s
peak), 512 KB L2 per core and 2 MB shared L3.
Data caches as the counting plugin simulates them (`caches`, line 64 bytes): Cortex-A72 L1D 32 KB 2-way and
L2 16-way (Arm Cortex-A72 MPCore TRM, sections 6.1 and 7.1); Cortex-A76 L1D 64 KB 4-way, L2 8-way (Arm Cortex-A76
Core TRM, A6.1 and A7.1); the Pi 5's 2 MB L3 in the DynamIQ Shared Unit, 16-way (Arm DSU TRM, B1.1). Both
cores prefetch data streams in hardware (their TRMs' memory system chapters), so the simulation has a simple
stream prefetcher (`pf=1`: a miss next to a recent miss fetches the next 4 lines; insn_count.c): a stream of
loads misses about once per 5 lines instead of once per line. It is not the boards' prefetchers; with it the
cross-validated estimate improved on the Pi 4 and was within a point either way on the Pi 5 (README).
"""

from __future__ import annotations

from dataclasses import dataclass

from edgekit.errors import UsageError
from edgekit.formats import Precision


@dataclass(frozen=True)
class Board:
    name: str
    title: str
    core: str  # the CPU core, as qemu's -cpu names it
    emulated_device: str  # the emulated device with the same core (edgekit emu)
    clock_ghz: float
    cores: int
    neon_bits: int
    macs_per_cycle: dict[
        Precision, int
    ]  # peak MACs per cycle per core; DYNAMIC runs int8 kernels (XNNPACK qd8)
    mem_bw_gbs: float  # peak DRAM bandwidth (theoretical)
    l2_kb: int
    sources: str
    caches: tuple[
        str, ...
    ] = ()  # the counting plugin's data cache levels: "l1=SIZE:WAYS", "l2=...", "l3=...", then "pf=1"

    def peak_macs_per_s(self, precision: Precision, threads: int) -> float:
        """Peak MAC/s with `threads` cores busy (threads beyond the core count add nothing)."""
        return self.macs_per_cycle[precision] * self.clock_ghz * 1e9 * min(max(threads, 1), self.cores)


BOARDS: dict[str, Board] = {
    "pi4": Board(
        name="pi4",
        title="Raspberry Pi 4 Model B (BCM2711, 4 x Cortex-A72 @ 1.8 GHz)",
        core="cortex-a72",
        emulated_device="pi4-emu",
        clock_ghz=1.8,
        cores=4,
        neon_bits=128,
        macs_per_cycle={Precision.FP32: 4, Precision.FP16: 4, Precision.DYNAMIC: 8, Precision.INT8: 8},
        mem_bw_gbs=12.8,
        l2_kb=1024,
        sources="raspberrypi.com Pi 4 product brief; Arm Cortex-A72 Software Optimization Guide; vfpbench",
        caches=("l1=32768:2", "l2=1048576:16", "pf=1"),
    ),
    "pi5": Board(
        name="pi5",
        title="Raspberry Pi 5 (BCM2712, 4 x Cortex-A76 @ 2.4 GHz)",
        core="cortex-a76",
        emulated_device="pi5-emu",
        clock_ghz=2.4,
        cores=4,
        neon_bits=128,
        macs_per_cycle={Precision.FP32: 8, Precision.FP16: 16, Precision.DYNAMIC: 32, Precision.INT8: 32},
        mem_bw_gbs=17.1,
        l2_kb=512,
        sources="raspberrypi.com Pi 5 product brief; Arm Cortex-A76 Software Optimization Guide",
        caches=("l1=65536:4", "l2=524288:8", "l3=2097152:16", "pf=1"),
    ),
}


def board(name: str) -> Board:
    try:
        return BOARDS[name]
    except KeyError:
        raise UsageError(
            f"unknown board {name!r}", where="--board", hint=f"known boards: {', '.join(sorted(BOARDS))}"
        ) from None


def caches_for_device(device: str) -> tuple[str, ...]:
    """The counting plugin's cache arguments for an emulated device that stands for a board (pi4-emu: the Pi
    4's L1 and L2); () for one no board is calibrated for (phone-emu)."""
    return next((b.caches for b in BOARDS.values() if b.emulated_device == device), ())
