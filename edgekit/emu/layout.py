"""Where an emulated device's files live under edgekit.paths.emu_dir().

emu_dir()/
  base/sysroot/            arm64 CPython 3.11 from Debian bookworm packages (shared by every device)
  base/apt/                the private apt state that fetched it
  wheels/<platform>/...    downloaded wheel files (shared; also used by `edgekit targets setup`)
  site/litert/             numpy + ai-edge-litert + ncnn, unpacked for the device python (shared)
  site/tflite-runtime/     tflite-runtime 2.14 + numpy<2 (shared)
  runtimes/onnx-opencv/    onnxruntime + opencv-python-headless, on the device python's path after site/litert
  runtimes/mnn/            MNN, on the path after runtimes/onnx-opencv
  devices/<name>/
    sysroot/               top-level symlinks into base/sysroot plus this device's proc/cpuinfo
    bin/python3            the device's python: the arm64 interpreter under qemu with -cpu <model>
    bin/python3-tflite-runtime   the same with the tflite-runtime site dir
    ssh/                   host key, client key, authorized_keys
    sshd_config, known_hosts (the pinned host key), home/ (the work dir), run/ (pid file, log)
    state.json             the running device: port, host key, client key, pids (see state.py)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgekit.paths import emu_dir


@dataclass(frozen=True)
class Shared:
    """Assets shared by every emulated device."""

    root: Path

    @property
    def base(self) -> Path:
        return self.root / "base"

    @property
    def sysroot(self) -> Path:
        return self.base / "sysroot"

    @property
    def wheels(self) -> Path:
        return self.root / "wheels"

    def site(self, flavour: str) -> Path:
        return self.root / "site" / flavour

    @property
    def onnx_opencv_site(self) -> Path:
        """Outside site/: the instruction-count cache keys ncnn/TFLite counts on site/*'s wheels (unchanged by
        this set); counts of onnxruntime/OpenCV artifacts key on their own versions (emu/plugin/counting.py)."""
        return self.root / "runtimes" / "onnx-opencv"

    @property
    def mnn_site(self) -> Path:
        """MNN's own site dir, outside site/ for the same reason (its counts key on its own wheels)."""
        return self.root / "runtimes" / "mnn"

    @property
    def runtime_sites(self) -> tuple[Path, ...]:
        """The runtime site dirs outside site/, in the order the device python's path has them."""
        return (self.onnx_opencv_site, self.mnn_site)


@dataclass(frozen=True)
class DeviceDir:
    """One emulated device's own files."""

    name: str
    root: Path

    @property
    def sysroot(self) -> Path:
        return self.root / "sysroot"

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    @property
    def python(self) -> Path:
        return self.bin / "python3"

    @property
    def python_tflite_runtime(self) -> Path:
        return self.bin / "python3-tflite-runtime"

    @property
    def ssh(self) -> Path:
        return self.root / "ssh"

    @property
    def host_key(self) -> Path:
        return self.ssh / "host_ed25519"

    @property
    def client_key(self) -> Path:
        return self.ssh / "client_ed25519"

    @property
    def authorized_keys(self) -> Path:
        return self.ssh / "authorized_keys"

    @property
    def sshd_config(self) -> Path:
        return self.root / "sshd_config"

    @property
    def known_hosts(self) -> Path:
        return self.root / "known_hosts"

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def pid_file(self) -> Path:
        return self.run / "sshd.pid"

    @property
    def log_file(self) -> Path:
        return self.run / "sshd.log"

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    @property
    def built_stamp(self) -> Path:
        return self.root / "built.done"


def shared() -> Shared:
    return Shared(emu_dir())


def device_dir(name: str) -> DeviceDir:
    return DeviceDir(name, emu_dir() / "devices" / name)
