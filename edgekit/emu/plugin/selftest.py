"""A tiny aarch64 program whose instruction count between the two marks is known exactly.

It is a hand-assembled static ELF (no sysroot, no compiler for ARM needed): mark start (syscall 4093), a loop
of `loops` iterations of two instructions, mark end (syscall 4094), exit. Between the marks qemu executes
`2 * loops + 3` guest instructions, so the plugin can be checked for exactness at set-up and in tests.
"""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

from edgekit.errors import EmulatorError

MARK_START = 4093
MARK_END = 4094
LOOPS = 1000
_SVC = 0xD4000001  # svc #0
_SUBS_X0 = 0xF1000400  # subs x0, x0, #1
_BNE_BACK = 0x54FFFFE1  # b.ne .-4
_BASE = 0x400000


def expected(loops: int) -> int:
    """Instructions between the marks: movz x0 + (subs, b.ne) * loops + (movz x8, svc) of the end mark."""
    return 2 * loops + 3


def program(loops: int) -> bytes:
    if not 0 < loops < 1 << 16:
        raise ValueError(f"loops must fit a movz immediate (1..65535), got {loops}")
    code = [
        _movz(8, MARK_START),
        _SVC,
        _movz(0, loops),
        _SUBS_X0,
        _BNE_BACK,
        _movz(8, MARK_END),
        _SVC,
        _movz(0, 0),
        _movz(8, 93),
        _SVC,
    ]  # 93: exit
    return elf(code)


def cache_program(lines: int, passes: int) -> bytes:
    """Between the marks, `passes` passes of `lines` 8-byte loads 64 bytes apart (one per cache line) over a region
    1 MB below the stack pointer: the simulated caches' misses are known (tests/test_counting.py)."""
    if not 0 < lines < 1 << 16:
        raise ValueError(f"lines must fit a movz immediate (1..65535), got {lines}")
    one_pass = [
        0x910003E1,  # mov x1, sp
        0xD1000000 | (1 << 22) | (256 << 10) | (1 << 5) | 1,  # sub x1, x1, #256, lsl #12 (1 MB)
        _movz(0, lines),
        0xF8400400 | (64 << 12) | (1 << 5) | 2,  # ldr x2, [x1], #64
        _SUBS_X0,
        0x54FFFFC1,  # b.ne .-8
    ]
    code = [
        _movz(8, MARK_START),
        _SVC,
        *one_pass * passes,
        _movz(8, MARK_END),
        _SVC,
        _movz(0, 0),
        _movz(8, 93),
        _SVC,
    ]
    return elf(code)


def cache_program_instructions(lines: int, passes: int) -> int:
    """Instructions between the marks of cache_program: per pass mov, sub, movz and 3 per line; the end mark's 2."""
    return passes * (3 + 3 * lines) + 2


def elf(code: list[int]) -> bytes:
    """A static aarch64 ELF executable of these instruction words, loaded at _BASE."""
    body = b"".join(struct.pack("<I", word) for word in code)
    offset = 64 + 56  # ELF header + one program header
    size = offset + len(body)
    header = struct.pack(
        "<4sBBBBB7xHHIQQQIHHHHHH",
        b"\x7fELF",
        2,
        1,
        1,
        0,
        0,
        2,
        183,
        1,
        _BASE + offset,
        64,
        0,
        0,
        64,
        56,
        1,
        0,
        0,
        0,
    )  # EXEC, EM_AARCH64
    segment = struct.pack("<IIQQQQQQ", 1, 5, 0, _BASE, _BASE, size, size, 0x10000)  # PT_LOAD, R+X
    return header + segment + body


def run(qemu: Path, plugin: Path, workdir: Path, loops: int = LOOPS, cpu: str = "cortex-a72") -> int:
    """Run the program under the counting qemu and return the count the plugin wrote."""
    workdir.mkdir(parents=True, exist_ok=True)
    exe = workdir / f"marks-{loops}"
    exe.write_bytes(program(loops))
    exe.chmod(0o755)
    out = workdir / f"counts-{loops}.txt"
    out.unlink(missing_ok=True)
    cmd = [str(qemu), "-cpu", cpu, "-plugin", f"{plugin},out={out}", str(exe)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0 or not out.exists():
        raise EmulatorError(
            f"counting self-test failed (exit {proc.returncode}): {proc.stderr.strip()}",
            where=" ".join(cmd),
            hint="is this qemu the dynamic one from qemu-user?",
        )
    return int(out.read_text().splitlines()[-1].split()[0])  # the window's total


def _movz(reg: int, imm: int) -> int:
    return 0xD2800000 | (imm << 5) | reg
