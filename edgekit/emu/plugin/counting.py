"""Count the guest instructions one inference of an artifact executes on an emulated device, locally.

The emulated device's python wrapper (built by `edgekit emu build NAME`) switches to the plugin-capable
qemu when EDGEKIT_QEMU_PLUGIN is set; runner.py marks each window of `number` invocations. No sshd is
needed: this runs the device's python directly on this machine. Counts are instruction counts, not cycles,
and with one thread they are exactly the same on every run.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgekit.emu import layout
from edgekit.emu.plugin import build as plugin_build
from edgekit.emu.specs import device_spec
from edgekit.errors import EmulatorError

RUNNER = Path(__file__).with_name("runner.py")
RUNTIMES = ("ncnn", "ai_edge_litert", "tflite_runtime")


@dataclass
class CountResult:
    """Guest instructions per invocation of one artifact on one emulated CPU, one value per window."""

    artifact: str
    device: str
    cpu: str
    runtime: str
    threads: int
    number: int
    per_invoke: list[int]
    emulated_ms_per_invoke: list[float] = field(default_factory=list)  # wall time under qemu+plugin

    @property
    def instructions(self) -> int:
        """The count to report: the median window (all windows are equal with one thread)."""
        ordered = sorted(self.per_invoke)
        return ordered[len(ordered) // 2]

    @property
    def spread(self) -> float:
        """(max - min) / median over the windows: 0 when the count is exact."""
        return (max(self.per_invoke) - min(self.per_invoke)) / max(1, self.instructions)

    def to_dict(self) -> dict:
        return {**asdict(self), "instructions": self.instructions, "spread": self.spread,
                "label": "guest instruction count (not cycles); emulated wall times are not device latency"}


def runtime_for(artifact: Path) -> str:
    return "ncnn" if artifact.suffix == ".param" else "ai_edge_litert"


def count_artifact(artifact: Path, device: str, *, threads: int = 1, runtime: str | None = None,
                   input_shape: list[int] | None = None, number: int = 1, repeat: int = 2,
                   warmup: int = 1, timeout_s: float = 1800) -> CountResult:
    """Run ARTIFACT on emulated DEVICE under the counting plugin; one count per window of NUMBER invokes."""
    runtime = runtime or runtime_for(artifact)
    if runtime not in RUNTIMES:
        raise EmulatorError(f"unknown runtime {runtime!r}", where=str(artifact), hint=f"one of {RUNTIMES}")
    if runtime == "ncnn" and not input_shape:
        raise EmulatorError("an ncnn artifact needs its input shape", where=str(artifact),
                            hint="pass --input-shape 1,3,224,224 (NCHW)")
    python = _device_python(device, runtime)
    plugin = plugin_build.build_plugin()
    with tempfile.TemporaryDirectory(prefix="edgekit-count-") as tmp:
        insn_file = Path(tmp) / "insns.txt"
        insn_file.touch()
        request = Path(tmp) / "request.json"
        request.write_text(json.dumps({
            "artifact": str(artifact.resolve()), "runtime": runtime, "threads": threads,
            "input_shape": input_shape, "warmup": warmup, "number": number, "repeat": repeat,
            "insn_file": str(insn_file)}))
        env = _guest_env(plugin, insn_file, threads)
        result = _run(["setarch", "-R", str(python), str(RUNNER), str(request)], env, timeout_s, artifact)
    return CountResult(artifact=str(artifact), device=device, cpu=device_spec(device).cpu, runtime=runtime,
                       threads=threads, number=number, per_invoke=[int(c) for c in result["per_invoke"]],
                       emulated_ms_per_invoke=[float(t) for t in result["emulated_ms_per_invoke"]])


def _guest_env(plugin: Path, insn_file: Path, threads: int) -> dict[str, str]:
    """A fixed, minimal environment: qemu hands it to the guest, and its size shifts the guest stack, which
    moved counts by a few dozen instructions; a random hash seed moved them by hundreds (measured)."""
    return {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": str(threads),
            "EDGEKIT_QEMU_PLUGIN": f"{plugin},out={insn_file}", "EDGEKIT_INSN_FILE": str(insn_file),
            "EDGEKIT_QEMU_DYNAMIC": str(plugin_build.counting_qemu())}


def _device_python(device: str, runtime: str) -> Path:
    device_spec(device)  # an unknown name fails here with the list of known devices
    dev = layout.device_dir(device)
    python = dev.python_tflite_runtime if runtime == "tflite_runtime" else dev.python
    if not python.exists():
        raise EmulatorError(f"emulated device {device} is not built", where=str(python),
                            hint=f"run `edgekit emu build {device}`")
    return python


def _run(cmd: list[str], env: dict[str, str], timeout_s: float, artifact: Path) -> dict:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        raise EmulatorError(f"counting run outlived {timeout_s:.0f} s", where=str(artifact),
                            hint="count a smaller model or fewer windows (--repeat)") from exc
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise EmulatorError(f"counting run failed (exit {proc.returncode}): {proc.stderr.strip()[-1500:]}",
                            where=str(artifact))
    return json.loads(lines[-1])
