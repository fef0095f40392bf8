"""The emulated devices edgekit can stand up, each one qemu CPU model plus the /proc/cpuinfo it shows.

qemu 7.2 (Debian bookworm) offers these 64-bit ARM cores: a64fx, cortex-a35, cortex-a53, cortex-a57,
cortex-a72, cortex-a76, neoverse-n1 and `max`. `max` is never used: it turns on SVE/SME and ai-edge-litert's
INT8 output comes out wrong under it (see docs/notes/arm-emulation.md).

phone-emu uses cortex-a76: every Android phone of the last years is ARMv8.2 with dot-product and fp16
arithmetic (the instructions quantized and fp16 kernels select on), and qemu 7.2's only ARMv8.2 phone core is
the A76 (big core of Snapdragon 855/865-class and Dimensity 1000-class SoCs). The A55 little core, the other
common phone core, is not offered by qemu 7.2; the A53 lacks dot-product and fp16, so it would pick kernels
no recent phone runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgekit.errors import UsageError

# Kernel HWCAP names as /proc/cpuinfo prints them on the real parts.
_A72_FEATURES = "fp asimd evtstrm crc32 cpuid"
_A76_FEATURES = (
    "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp"
)


@dataclass(frozen=True)
class DeviceSpec:
    """One emulated device: the qemu `-cpu` model and what its /proc/cpuinfo says."""

    name: str
    cpu: str  # qemu -cpu model
    cpu_part: str  # ARM MIDR part number as /proc/cpuinfo prints it
    cpu_variant: str
    cpu_revision: int
    features: str
    hardware: str
    model: str  # the board, as a Raspberry Pi's /proc/cpuinfo "Model" line


DEVICES: dict[str, DeviceSpec] = {
    "pi4-emu": DeviceSpec(
        "pi4-emu",
        "cortex-a72",
        "0xd08",
        "0x0",
        3,
        _A72_FEATURES,
        "BCM2835",
        "Raspberry Pi 4 Model B Rev 1.4 (emulated: qemu cortex-a72)",
    ),
    "pi5-emu": DeviceSpec(
        "pi5-emu",
        "cortex-a76",
        "0xd0b",
        "0x4",
        1,
        _A76_FEATURES,
        "BCM2712",
        "Raspberry Pi 5 Model B Rev 1.0 (emulated: qemu cortex-a76)",
    ),
    "phone-emu": DeviceSpec(
        "phone-emu",
        "cortex-a76",
        "0xd0b",
        "0x4",
        1,
        _A76_FEATURES,
        "Qualcomm Technologies, Inc SM8150",
        "Android phone, Cortex-A76 cores (emulated: qemu cortex-a76)",
    ),
}


def device_spec(name: str) -> DeviceSpec:
    """The spec of an emulated device by name, or a UsageError (exit 2) listing the known ones."""
    try:
        return DEVICES[name]
    except KeyError:
        raise UsageError(  # a name the user typed (or wrote in a target file): bad input, exit 2
            f"unknown emulated device {name!r}",
            where="edgekit emu",
            hint=f"known devices: {', '.join(sorted(DEVICES))}",
        ) from None


def cpuinfo_text(spec: DeviceSpec, processors: int) -> str:
    """An ARM /proc/cpuinfo for `processors` cores of this device's CPU.

    ai-edge-litert parses /proc/cpuinfo in Interpreter() and crashes on the host's x86 one; XNNPACK and
    ncnn also pick micro-kernels from the CPU part, so the part must match the emulated core. The count
    matches the host's cores because that is what the emulated program can actually run threads on.
    """
    blocks = [
        f"processor\t: {i}\nBogoMIPS\t: 108.00\nFeatures\t: {spec.features}\nCPU implementer\t: 0x41\n"
        f"CPU architecture: 8\nCPU variant\t: {spec.cpu_variant}\nCPU part\t: {spec.cpu_part}\n"
        f"CPU revision\t: {spec.cpu_revision}\n"
        for i in range(max(1, processors))
    ]
    tail = f"Hardware\t: {spec.hardware}\nRevision\t: 0000\nSerial\t\t: 0000000000000000\nModel\t\t: {spec.model}\n"
    return "\n".join(blocks) + "\n" + tail
