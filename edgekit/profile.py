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

import json
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgekit.emu import layout
from edgekit.emu.plugin import build as plugin_build
from edgekit.emu.plugin.counting import _guest_env
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
    work a cut moved, is 0); the empty graph's count is the runtime's own per-invoke work, in no row."""
    from edgekit.emu.plugin.counting import CountJob, count_artifacts

    models = [empty, *prefixes, artifact]
    if say:
        say(
            f"counting {len(models)} models ({len(prefixes)} prefixes, an empty graph and the whole) on {device}, "
            "one inference each under the counting emulator: minutes for a big graph"
        )
    jobs = [CountJob(p, threads=threads, repeat=1, warmup=1) for p in models]
    counted = count_artifacts(jobs, device, timeout_s=timeout_s)
    cumulative = [c.instructions for c in counted[:-1]]  # [empty, prefix 0, prefix 1, ...]
    layers = [
        LayerProfile(
            name=row["name"],
            type=row["type"],
            shape=row["shape"],
            precision=row["precision"],
            instructions=max(0, cumulative[k + 1] - cumulative[k]),
        )
        for k, row in enumerate(rows)
    ]
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
) -> Profile:
    """Per-layer guest instruction counts of one ncnn artifact (.param with its .bin and sidecar) on an
    emulated DEVICE (pi4-emu: Cortex-A72, pi5-emu: Cortex-A76). A bare .param (no sidecar) needs `input_shape`
    (NCHW) and runs the way benchncnn runs it: ncnn's default options, every input element 0.01."""
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
    with tempfile.TemporaryDirectory(prefix="edgekit-profile-") as tmp:
        shape = input_shape if bare else None
        data = _run_guest(artifact, device, python, plugin, Path(tmp), threads, shape, timeout_s)
        bare_net = _run_guest(
            write_input_only(artifact, Path(tmp)),
            device,
            python,
            plugin,
            Path(tmp),
            threads,
            shape,
            timeout_s,
        )
    return _profile_from(data, str(artifact), device, spec.cpu, threads, fixed=int(bare_net["total"]))


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
    try:
        proc = subprocess.run(
            cmd,
            check=False,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env=_guest_env(plugin, insn_file, threads),
        )
    except subprocess.TimeoutExpired as exc:
        raise EmulatorError(
            f"profiling outlived {timeout_s:g} s",
            where=device,
            hint="give it longer with `edgekit profile --timeout SECONDS` (every layer runs twice under the "
            "counting emulator: big models take minutes)",
        ) from exc
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise EmulatorError(
            f"profiling run failed (exit {proc.returncode}): {proc.stderr.strip()[-1500:]}", where=device
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
        layers.append(
            LayerProfile(
                name=row["name"],
                type=row["type"],
                shape=row["shape"],
                precision=precision,
                instructions=max(0, row["window"] - row["overhead"]),
                activation=int(float(params.get("9", 0))),
                requantized=scale_term > 100,
                busiest_share=_busiest_share(row.get("split") or [], threads),
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


def serial_layers(profile: Profile, share: float = 0.02) -> list[LayerProfile]:
    """At N threads, the layers that hold at least `share` of the work and whose busiest thread did more than
    twice an even split of it: where more threads gain little (measured: blazeface's first convolution on the
    A76, 84 % on one of 4 threads; yolov4-tiny's Yolov3DetectionOutput on the A72, 94 %)."""
    if profile.threads <= 1:
        return []
    even = 1 / profile.threads
    return [
        layer
        for layer in profile.top(len(profile.layers))
        if layer.busiest_share is not None
        and layer.busiest_share > 2 * even
        and profile.share(layer) >= share
    ]


def short_names(names: list[str], width: int) -> list[str]:
    """Each name in `width` characters: its end (which says the most: `.../conv2/Conv2D`), or where two ends
    would read the same, the part where the names differ and the end (two BATCH_MATMULs both showed
    `…at.v1.transpose_3/transpose`)."""
    tails = [n if len(n) <= width else "…" + n[-(width - 1) :] for n in names]
    out = []
    for n, t in zip(names, tails):
        twins = [m for m, u in zip(names, tails) if u == t and m != n]
        if not twins or len(n) <= width:
            out.append(t)
            continue
        differ = min(_common_start(n, m) for m in twins)  # where n parts from its twins
        mid = n[max(0, differ - 4) : differ + 8]
        keep = width - len(mid) - 2
        out.append("…" + mid + "…" + n[-keep:] if keep > 0 else t)
    return out


def _common_start(a: str, b: str) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def format_table(profile: Profile, top: int = 10) -> list[str]:
    """Plain text lines: the `top` layers by instructions, then the totals."""
    scale, unit = (1e6, "M") if profile.total >= 10e6 else (1e3, "k")  # a small model's ops are 0.00 M
    split = profile.threads > 1 and any(layer.busiest_share is not None for layer in profile.layers)
    lines = [
        f"{profile.artifact} on {profile.device} ({profile.cpu}), threads={profile.threads}: {profile.label}",
        f"{'layer':<28} {'type':<22} {'output shape':<16} {'prec':<5} {unit + ' insns':>9} {'share':>7}"
        + (f" {'busiest thread':>14}" if split else ""),
    ]
    shown = profile.top(top)
    names = short_names([layer.name for layer in shown], 28)
    for layer, name in zip(shown, names):
        shape = "x".join(str(d) for d in layer.shape)
        busiest = f"{layer.busiest_share:.0%}" if layer.busiest_share is not None else "-"
        share = "-" if profile.nothing_to_split else f"{profile.share(layer):.1%}"
        lines.append(
            f"{name:<28} {layer.type:<22} {shape:<16} {layer.precision:<5} "
            f"{layer.instructions / scale:>9.2f} {share:>6}" + (f" {busiest:>14}" if split else "")
        )
    if profile.nothing_to_split:
        lines.append(
            f"whole inference {profile.total / scale:.2f} {unit} instructions, {profile.fixed_what} counted apart "
            f"{profile.fixed / scale:.2f} {unit}: the whole inference is the runtime's own per-run work within the "
            f"count's noise: nothing to split ({len(profile.layers)} layers sum to {profile.layer_sum / scale:.2f} "
            f"{unit})"
        )
        return lines
    fixed = f", of which {profile.fixed / scale:.2f} {unit} {profile.fixed_what}" if profile.fixed else ""
    rest = " of the rest" if profile.fixed else " of it"
    lines.append(
        f"whole inference {profile.total / scale:.2f} {unit} instructions{fixed}; {len(profile.layers)} layers "
        f"sum to {profile.layer_sum / scale:.2f} {unit} ({profile.coverage:.2%}{rest}, the base of the share "
        f"column; {profile.remainder})"
    )
    if split:
        lines.append(
            f"busiest thread: its share of the layer's own instructions ({1 / profile.threads:.0%}: split evenly "
            f"over {profile.threads} threads; 100%: one thread did it all while the others waited)"
        )
        serial = serial_layers(profile)
        if serial:
            lines.append(
                "gain little from more threads (busiest thread over twice an even split): "
                + ", ".join(
                    f"{layer.name} ({layer.type}, {profile.share(layer):.0%} of the work, busiest "
                    f"{layer.busiest_share:.0%})"
                    for layer in serial[:5]
                )
                + (f" and {len(serial) - 5} more" if len(serial) > 5 else "")
            )
    if not 0.8 <= profile.coverage <= 1.2:
        lines.append(
            f"! the layers sum to {profile.coverage:.0%} of the whole: this model's per-layer figures are not "
            "reliable (the runtime runs its layers differently alone than together); compare artifacts by "
            "their whole count"
        )
    return lines
