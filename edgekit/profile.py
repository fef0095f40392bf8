"""Where an ncnn artifact's instructions go: guest instructions per layer on an emulated core, exact.

The guest side (emu/plugin/profile_runner.py) counts, for every layer in topological order, a window that
computes the layer and a twin window that only re-extracts its output; the difference is the layer's own
instructions. With one thread the counts are exactly repeatable. The layers' sum is compared with a whole
inference counted in the same process, less ncnn's own per-inference work (`fixed`: the whole inference of a net
of the artifact's Input alone, counted as the TFLite and ONNX profiles count an empty graph): `coverage`.
Instruction counts, not cycles: an int8 or fp16 instruction does more work than an fp32 one.
TFLite artifacts are profiled op by op with prefix models (profile_tflite.py), ONNX Runtime's node by node
(profile_onnx.py).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgekit.emu import layout
from edgekit.emu.guests import Guests, scratch
from edgekit.emu.plugin import build as plugin_build
from edgekit.emu.plugin.counting import _guest_env, wait_saying
from edgekit.emu.specs import device_spec
from edgekit.errors import EmulatorError, InputDataError, UsageError

BARE_FILL = 0.01  # a bare .param's input, as benchncnn fills it (edgekit.estimate.calibration.INPUT_FILL)
RUNNER = Path(__file__).parent / "emu" / "plugin" / "profile_runner.py"
LABEL = "guest instructions per layer on the emulated core, 1 inference (exact; not cycles)"
THREADED_LABEL = (
    "guest instructions per layer on the emulated core, 1 inference (not cycles; at more than one thread not "
    "exactly repeatable: which thread takes which chunk varies a little run to run)"
)
QUANTIZED_TYPES = ("Convolution", "ConvolutionDepthWise", "InnerProduct")
# how far two counts of the runtime's own work (two processes, two models) were seen apart: 2.5 % (an ONNX
# Identity graph, 39.18 k and 40.17 k); a whole inference within it of the fixed work has nothing to split
FIXED_NOISE = 0.03


@dataclass
class LayerProfile:
    """One ncnn layer: its own guest instructions for one inference, output shape (c, h, w) and precision."""

    name: str
    type: str
    shape: list[int]
    precision: str  # int8 (int8 kernel), fp16 or fp32 (its output's storage), as it ran on this core
    instructions: int
    activation: int = 0  # ncnn activation_type fused into the layer (param 9), 0 none, 1 ReLU, 3 clip...
    requantized: bool = False  # int8 output written straight for the next int8 layer (8=10x)
    # threads > 1: the busiest guest thread's share of the layer's own instructions (1 / threads: split evenly;
    # 1.0: one thread did it all, the others waited); None at one thread or where the plugin gave no split
    busiest_share: float | None = None
    # the negative difference a row was counted as, its `instructions` then 0: a prefix model that counted fewer
    # instructions than the one before (a cut that moved work, such as XNNPACK fusing tiny's first PAD into the
    # convolution after it: that convolution -36 k, the PAD +107 k), so the row's own work is unknown
    clamped_from: int | None = None


@dataclass
class Profile:
    artifact: str
    device: str
    cpu: str
    threads: int
    total: int  # one whole inference, counted in the same process
    layers: list[LayerProfile] = field(default_factory=list)
    label: str = LABEL
    # the runtime's own per-inference work (a graph with no op, an ncnn net of its Input alone), in no op's count
    fixed: int = 0

    @property
    def layer_sum(self) -> int:
        return sum(layer.instructions for layer in self.layers)

    @property
    def clamped(self) -> list[LayerProfile]:
        """The rows counted below 0 and shown as 0 (LayerProfile.clamped_from), in the order they ran."""
        return [layer for layer in self.layers if layer.clamped_from is not None]

    @property
    def nothing_to_split(self) -> bool:
        """The whole inference is the runtime's own work within the count's noise: an ONNX graph of one Identity
        counted 39.18 k, its fixed work (another process, another model) 40.17 k, and the table said 0.00 %."""
        return self.fixed > 0 and self.total - self.fixed <= FIXED_NOISE * self.total

    @property
    def coverage(self) -> float:
        """Share of the whole inference (less the interpreter's fixed work) the layers account for (the rest:
        extractor bookkeeping, or what a cut moved between TFLite ops)."""
        return self.layer_sum / max(1, self.total - self.fixed)

    @property
    def remainder(self) -> str:
        """What the difference between the layers' sum and the whole inference is, for this kind of profile."""
        if self.artifact.endswith(".onnx"):
            return (
                "nodes differenced from prefix models: a cut that changes what onnxruntime fuses or how it lays "
                "out tensors moves work between nodes, and every prefix returns its live tensors"
            )
        if self.artifact.endswith(".tflite"):
            return (
                "ops differenced from prefix models: a cut that changes how XNNPACK delegates or fuses ops moves "
                "work between them, and on a small model such shifts are large beside the ops themselves"
            )
        return "the difference is the extractor's bookkeeping between layers and allocator state"

    @property
    def fixed_what(self) -> str:
        """What `fixed` is, for this kind of profile."""
        if self.artifact.endswith(".onnx"):
            return "onnxruntime's own per-run work (a graph of one Identity)"
        if self.artifact.endswith(".param"):
            return "ncnn's own per-inference work (an extractor of the net's Input alone)"
        return "the interpreter's own per-invoke work (a graph with no op)"

    def top(self, n: int = 10) -> list[LayerProfile]:
        return sorted(self.layers, key=lambda layer: -layer.instructions)[:n]

    def share(self, layer: LayerProfile) -> float:
        """Of the same whole the footer's coverage is of: the inference less the interpreter's fixed work (the
        column said 23 % of the whole while the footer summed the ops to 114 % of the rest)."""
        return layer.instructions / max(1, self.total - self.fixed)

    def by_layer(self) -> dict[str, LayerProfile]:
        return {layer.name: layer for layer in self.layers}

    def to_dict(self) -> dict:
        return {
            **asdict(self),
            "layer_sum": self.layer_sum,
            "coverage": self.coverage,
            "nothing_to_split": self.nothing_to_split,
        }


def count_prefix_models(
    artifact: Path,
    empty: Path,
    prefixes: list[Path],
    rows: list[dict],
    device: str,
    *,
    label: str,
    threads: int = 1,
    timeout_s: float = 3600,
    say: Callable[[str], None] | None = None,
) -> Profile:
    """A profile by prefix models (TFLite ops, ONNX Runtime nodes): EMPTY (a graph with no work), one prefix per
    row (name, type, shape, precision) and the ARTIFACT itself, one inference each counted in one guest process
    on emulated DEVICE. A row's instructions are its prefix's count minus the one before (a negative difference,
    work a cut moved, is 0, kept in `clamped_from`); the empty graph's count is the runtime's own per-invoke work, in
    no row."""
    from edgekit.emu.plugin.counting import CountJob, count_artifacts, heartbeat

    models = [empty, *prefixes, artifact]
    if say:
        say(
            f"counting {len(models)} models ({len(prefixes)} prefixes, an empty graph and the whole) on {device}, "
            "one inference each under the counting emulator: minutes for a big graph"
        )
    jobs = [CountJob(p, threads=threads, repeat=1, warmup=1) for p in models]
    with heartbeat(say, f"{artifact.name}'s prefix models on {device}"):
        counted = count_artifacts(jobs, device, timeout_s=timeout_s)
    cumulative = [c.instructions for c in counted[:-1]]  # [empty, prefix 0, prefix 1, ...]
    layers = []
    for k, row in enumerate(rows):
        own = cumulative[k + 1] - cumulative[k]
        layers.append(
            LayerProfile(
                name=row["name"],
                type=row["type"],
                shape=row["shape"],
                precision=row["precision"],
                instructions=max(0, own),
                clamped_from=own if own < 0 else None,
            )
        )
    return Profile(
        artifact=str(artifact),
        device=device,
        cpu=device_spec(device).cpu,
        threads=threads,
        total=counted[-1].instructions,
        layers=layers,
        fixed=counted[0].instructions,
        label=label,
    )


def profile_ncnn(
    artifact: Path,
    device: str,
    threads: int = 1,
    timeout_s: float = 3600,
    input_shape: list[int] | None = None,
    guests: Guests | None = None,
) -> Profile:
    """Per-layer guest instruction counts of one ncnn artifact (.param with its .bin and sidecar) on an
    emulated DEVICE (pi4-emu: Cortex-A72, pi5-emu: Cortex-A76). A bare .param (no sidecar) needs `input_shape`
    (NCHW) and runs the way benchncnn runs it: ncnn's default options, every input element 0.01. Its guest
    processes are started through `guests` (where another thread stops them), else its own."""
    artifact = Path(artifact)
    if artifact.suffix != ".param":
        raise EmulatorError(
            "per-layer ncnn profiles are for .param artifacts",
            where=str(artifact),
            hint="profile a .tflite with edgekit.profile_tflite (`edgekit profile` picks it)",
        )
    if not [
        ln
        for ln in artifact.read_text(errors="replace").splitlines()[2:]
        if ln.split()[:1] not in ([], ["Input"])
    ]:
        raise InputDataError(  # as profile_onnx refuses a graph with no node: it ran, and the table was empty
            "the model has no layer to profile: its .param holds Input layers only",
            where=str(artifact),
            hint="give the model a layer to profile",
        )
    bare = not artifact.with_suffix(".io.json").exists()
    if bare and not input_shape:
        raise UsageError(
            "an ncnn .param without edgekit's model.io.json sidecar needs its input shape to be profiled",
            where=str(artifact),
            hint="give --input-shape 1,3,H,W (it then runs with ncnn's default options, as benchncnn), "
            "or convert the model with `edgekit convert`",
        )
    spec = device_spec(device)
    python = layout.device_dir(device).python
    if not python.exists():
        raise EmulatorError(
            f"emulated device {device} is not built",
            where=str(python),
            hint=f"run `edgekit emu build {device}`",
        )
    plugin = plugin_build.require_plugin()
    guests = guests or Guests()
    with scratch("profile") as tmp:
        shape = input_shape if bare else None
        data = _run_guest(artifact, device, python, plugin, Path(tmp), threads, shape, timeout_s, guests)
        input_only = write_input_only(artifact, Path(tmp))
        key = _input_only_key(input_only, device, threads, shape, plugin)
        fixed = _INPUT_ONLY.get(key)
        if fixed is None:
            bare_net = _run_guest(
                input_only, device, python, plugin, Path(tmp), threads, shape, timeout_s, guests
            )
            fixed = _INPUT_ONLY.setdefault(key, int(bare_net["total"]))
    return _profile_from(data, str(artifact), device, spec.cpu, threads, fixed=fixed)


# the input-only net's count by what it runs (its .param and sidecar, the core, threads, shape, the plugin): the
# same for every artifact of one model and options, so a speed plan's five profiles (two pairs alike) and a
# deploy's artifacts count it once a process, not once a profile (4.5 s a guest run on pi4-emu, measured)
_INPUT_ONLY: dict[str, int] = {}


def _input_only_key(param: Path, device: str, threads: int, shape: list[int] | None, plugin: Path) -> str:
    sidecar = param.with_suffix(".io.json")
    parts = [
        param.read_text(),
        sidecar.read_text() if sidecar.exists() else "",
        device,
        str(threads),
        repr(shape),
        str(plugin.stat().st_mtime_ns),
    ]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def write_input_only(param: Path, folder: Path) -> Path:
    """The net of PARAM's Input layers alone (with its sidecar, outputs its inputs): its whole inference is
    ncnn's own per-inference work (an extractor made, fed and read), in no layer's count (the layers' windows are
    differenced against a re-extract), which a small model's layers were judged against: 39.11 k of tiny
    ncnn-fp32's 180.84 k on pi5-emu, its 7 layers summing to 78 %."""
    lines = [ln for ln in Path(param).read_text().splitlines() if ln.strip()]
    inputs = [ln for ln in lines[2:] if ln.split()[0] == "Input"]
    blobs = sum(int(ln.split()[3]) for ln in inputs)
    target = folder / "input_only.param"
    target.write_text("\n".join([lines[0], f"{len(inputs)} {blobs}", *inputs]) + "\n")
    target.with_suffix(".bin").write_bytes(b"")
    sidecar = Path(param).with_suffix(".io.json")
    if sidecar.exists():
        io = json.loads(sidecar.read_text())
        io["outputs"] = io.get("inputs") or []
        target.with_suffix(".io.json").write_text(json.dumps(io))
    return target


def _run_guest(
    param: Path,
    device: str,
    python: Path,
    plugin: Path,
    folder: Path,
    threads: int,
    input_shape: list[int] | None,
    timeout_s: float,
    guests: Guests,
) -> dict:
    """One run of the guest profiler on PARAM: its result JSON (layers' windows and one whole inference)."""
    insn_file = folder / f"{param.stem}.insns.txt"
    insn_file.touch()
    request = folder / f"{param.stem}.request.json"
    request.write_text(
        json.dumps(
            {
                "insn_file": str(insn_file),
                "artifact": str(param.resolve()),
                "threads": threads,
                "warmup": 1,
                **({"input_shape": input_shape, "fill": BARE_FILL} if input_shape else {}),
            }
        )
    )
    cmd = ["setarch", "-R", str(python), str(RUNNER), str(request)]
    proc = guests.start(cmd, _guest_env(plugin, insn_file, threads))
    try:
        stdout, stderr = wait_saying(proc, timeout_s)  # says it is still going inside counting.heartbeat
    except subprocess.TimeoutExpired as exc:
        raise EmulatorError(
            f"profiling outlived {timeout_s:g} s",
            where=device,
            hint="give it longer with `edgekit profile --timeout SECONDS` (every layer runs twice under the "
            "counting emulator: big models take minutes)",
        ) from exc
    finally:  # any way out (a timeout, Ctrl-C in this thread) ends the guest
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        guests.ended(proc)
    if guests.stopped:
        raise EmulatorError("profiling stopped (Ctrl-C or SIGTERM)", where=device)
    lines = stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise EmulatorError(
            f"profiling run failed (exit {proc.returncode}): {stderr.strip()[-1500:]}", where=device
        )
    data = json.loads(lines[-1])
    if "error" in data:
        raise EmulatorError(f"profiling failed: {data['error']}", where=str(param))
    return data


def _profile_from(data: dict, artifact: str, device: str, cpu: str, threads: int, fixed: int = 0) -> Profile:
    layers = []
    for row in data["layers"]:
        params = row.get("params", {})
        scale_term = int(float(params.get("8", 0))) if row["type"] in QUANTIZED_TYPES else 0
        precision = "int8" if scale_term else {8: "int8", 16: "fp16"}.get(row["elembits"], "fp32")
        own = row["window"] - row["overhead"]
        layers.append(
            LayerProfile(
                name=row["name"],
                type=row["type"],
                shape=row["shape"],
                precision=precision,
                instructions=max(0, own),
                activation=int(float(params.get("9", 0))),
                requantized=scale_term > 100,
                busiest_share=_busiest_share(row.get("split") or [], threads),
                clamped_from=own if own < 0 else None,
            )
        )
    return Profile(
        artifact=artifact,
        device=device,
        cpu=cpu,
        threads=threads,
        total=int(data["total"]),
        layers=layers,
        label=LABEL if threads == 1 else THREADED_LABEL,
        fixed=fixed,
    )


def _busiest_share(split: list[int], threads: int) -> float | None:
    """The busiest guest thread's share of a layer's own instructions, at more than one thread."""
    total = sum(split)
    return max(split) / total if threads > 1 and total > 0 else None
