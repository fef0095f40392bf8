"""Which layers of an ncnn INT8 artifact stay int8: chosen by speed, counted per layer on the emulated cores.

A layer's int8 kernel is not always faster than its float one: on the Cortex-A72 (no dot product, no fp16
arithmetic) a 1x1 convolution with few input channels over a large image costs more instructions in int8
(quantize, pack, widen) than in fp32; on the Cortex-A76 the float alternative is fp16 (ncnn's default there),
and fp16 depthwise convolutions beat int8 ones. So the quantizer first writes every layer it can in int8, then
`edgekit.profile` counts each layer on each core twice: in that artifact, and in the fp32 model run with the
same (default) options, i.e. as the layer would run if left float in the int8 artifact (on a core without
fp16 arithmetic, the A72, those run as ncnn-fp32's own options do, so the fp32 model's profile serves). A
layer goes back to float when, summed over the cores weighted by 1 / the fp32 model's count there (each core's
ratio counts the same), its int8 window costs more than its float window.

One artifact serves both cores (the recipe does not know its boards, and a format is one artifact); the plan,
with every layer's counts on each core, is kept in the artifact's sidecar. Neighbour effects (a float layer
makes its producer dequantize and its consumer quantize) are not in the per-layer figures, so the planned
artifact is counted again and kept only if it beats the all-int8 one on the same weighted measure.
Instruction counts, not cycles, from the guest runs of edgekit.convert.ncnn.plan_counts.

A plan with no layer left int8 ships the fp32 model, its files and ncnn-fp32's options (fp16 off; the converter
copies them), not the float graph under the int8 artifact's options: those compute in fp16 on the A76, which
would make an artifact with no int8 layer an ncnn-fp16 model under the int8 label, less exact than the fp32
model on one core only. So its figures are the fp32 model's (kept "fp32"): the all-float graph's count under
the int8 options (0.816 of fp32 on the A76 for a small CNN) described an artifact nobody got, whose count was
1.000. And as the all-float choice was weighed against float layers in fp16, the all-int8 artifact is then
weighed again against the fp32 model actually shipped (_all_float).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgekit.convert.ncnn.plan_counts import (
    DEVICES,
    digest,
    float_runs_as_fp32,
    guest_runs,
    guests_at_once,
    profiles,
    profiles_of,
)
from edgekit.emu.guests import scratch
from edgekit.errors import EmulatorError
from edgekit.profile import Profile

ENV_SWITCH = "EDGEKIT_NCNN_SPEED_PLAN"  # "0": no counting at conversion (every quantizable layer int8)
COUNT_FAILED = "counting failed"  # how plan_and_build's reason begins when the counting itself failed
# in the cache key of a counted ncnn-int8: a change of what the plan keeps from the same counts converts again
# (2: the fp32 model, not the weighted plan, when that and the strict plan both leave a core slower than fp32)
PLAN_RULES = "2"
SWITCHED_OFF = f"{ENV_SWITCH}=0"  # its reason when the user (or the test suite) turned counting off
HELD = "held from another artifact's plan"  # its reason when a caller gave the float layers (analyze --fix)


@dataclass
class LayerChoice:
    name: str
    type: str
    int8: bool
    # device -> {"int8": n, "float": n}: the layer's own instructions; its int8 count is counted in the all-int8
    # model (every neighbour int8): beside a float neighbour, in the artifact shipped, it counts 16-22 % more
    counts: dict[str, dict[str, int]]
    reason: str


@dataclass
class SpeedPlan:
    devices: list[str]
    weights: dict[str, float]  # device -> 1 / fp32 model count there
    layers: list[LayerChoice] = field(default_factory=list)
    totals: dict[str, dict[str, int]] = field(
        default_factory=dict
    )  # device -> {"fp32", "all_int8", "planned"}
    kept: str = (
        "planned"  # "planned", "all-int8" (the plan was not faster), "strict" (int8 only where it wins
    )
    # on every core: used when the weighted plan left some core slower than fp32) or "fp32" (no layer int8: the
    # fp32 model with its own options is shipped, and its totals are the kept figures)
    digests: dict[str, str] = field(
        default_factory=dict
    )  # totals' key -> sha256 of the .param and .bin counted
    label: str = "guest instructions per inference on the emulated cores, 1 thread (not cycles)"
    # what a layer's counts are: the int8 one is not what `edgekit profile` counts in the artifact shipped
    layer_counts: str = (
        "int8 counted in the all-int8 model, float in the float model; a layer beside float neighbours counts "
        "more in the artifact shipped (its quantize and dequantize): profile that artifact for its own counts"
    )

    @property
    def float_layers(self) -> list[str]:
        return [c.name for c in self.layers if not c.int8]

    def to_dict(self) -> dict:
        return {**asdict(self), "float_layers": self.float_layers}

    def notes(self) -> list[str]:
        out = [
            (
                f"speed plan ({', '.join(self.devices)}; {self.label}): {len(self.layers) - len(self.float_layers)} "
                f"of {len(self.layers)} quantizable layers int8, {len(self.float_layers)} float because their int8 "
                f"kernel counts more instructions, counted in the all-int8 model (kept: {self.kept})"
            )
        ]
        key = kept_key(self)
        for device, t in self.totals.items():
            ratio = {k: by_insn(t.get("fp32", 0), v) for k, v in t.items() if k != "fp32"}
            line = f"{device}: {BY_INSN} " + ", ".join(f"{k} {v:.3f}x" for k, v in ratio.items())
            shipped = by_insn(t.get("fp32", 0), t.get(key, t.get("all_int8", 0)))
            out.append(f"{line}; shipped ({key}) {shipped:.3f}x")
        if self.kept == "fp32":
            out.append(
                "no layer is int8: the artifact shipped is the fp32 model with ncnn-fp32's options (fp16 off), so "
                "it counts as ncnn-fp32 does (shipped 1.000x); `planned` is the same graph under the int8 "
                "artifact's options (fp16 arithmetic where the core has it), counted for the plan, not shipped"
            )
        return out


# deploy's ratio and the README's: fp32's count over the artifact's, so above 1 is fewer instructions (an
# int8/fp32 ratio read the other way: mobilenetv2's 0.421x on the A76 was deploy's 2.37x)
BY_INSN = "x fp32 by insn (ncnn-fp32's guest instructions / this artifact's, 1 thread; above 1: fewer)"


def by_insn(fp32: int, count: int) -> float:
    """The 'x fp32 by insn' ratio of an artifact counting `count` instructions where ncnn-fp32 counts `fp32`."""
    return fp32 / max(1, count)


def enabled() -> bool:
    """Counting at conversion needs the plugin and both emulated devices; EDGEKIT_NCNN_SPEED_PLAN=0 skips it."""
    return not_counted_because() is None


def not_counted_because() -> str | None:
    """Why no plan can be counted here (SWITCHED_OFF, or what is not built, where, and the command that builds
    it), or None when it can."""
    if os.environ.get(ENV_SWITCH, "1") == "0":
        return SWITCHED_OFF
    from edgekit.emu import layout
    from edgekit.emu.plugin import build as plugin_build
    from edgekit.paths import emu_dir

    missing = [] if plugin_build.is_built() else ["the counting plugin (`edgekit emu build-plugin`)"]
    missing += [f"{d} (`edgekit emu build {d}`)" for d in DEVICES if not layout.device_dir(d).python.exists()]
    if missing:
        return (
            f"the emulated cores are not built in {emu_dir()} (missing: {', '.join(missing)}); with your own "
            "EDGEKIT_HOME, set EDGEKIT_EMU_HOME to where they are built"
        )
    return None


def choose(
    int8: dict[str, Profile], floats: dict[str, Profile], weights: dict[str, float], quantized: list[str]
) -> SpeedPlan:
    """Pure: the plan from per-layer profiles of the all-int8 artifact and of the float model, per device."""
    devices = list(int8)
    plan = SpeedPlan(devices=devices, weights=weights)
    by_dev = {d: (int8[d].by_layer(), floats[d].by_layer()) for d in devices}
    for name in quantized:
        counts = {
            d: {"int8": by_dev[d][0][name].instructions, "float": by_dev[d][1][name].instructions}
            for d in devices
            if name in by_dev[d][0] and name in by_dev[d][1]
        }
        if not counts:
            continue
        gain = sum(weights[d] * (c["float"] - c["int8"]) for d, c in counts.items())
        kind = next(iter(by_dev.values()))[0][name].type
        detail = ", ".join(f"{d} {c['int8'] / max(1, c['float']):.2f}x" for d, c in counts.items())
        plan.layers.append(
            LayerChoice(
                name,
                kind,
                gain >= 0,
                counts,
                f"int8 (counted in the all-int8 model)/float instructions: {detail}",
            )
        )
    return plan


KEPT_KEYS = {"planned": "planned", "all-int8": "all_int8", "strict": "strict", "fp32": "fp32"}


def kept_key(plan: SpeedPlan) -> str:
    """The key of `totals` and `digests` that holds the kept artifact's figures."""
    return KEPT_KEYS[plan.kept]


def slower_cores(plan: SpeedPlan) -> list[str]:
    """Cores on which the kept artifact counts more instructions than the fp32 model."""
    key = kept_key(plan)
    return [d for d, t in plan.totals.items() if t.get(key, t["all_int8"]) > t["fp32"]]


def weighted(totals: dict[str, int], weights: dict[str, float]) -> float:
    return sum(weights[d] * n for d, n in totals.items())


def with_options(param: Path, options: dict[str, bool], folder: Path) -> Path:
    """A copy of an ncnn artifact whose sidecar sets `options` (the float model as the int8 one would run it)."""
    folder.mkdir(parents=True, exist_ok=True)
    for suffix in (".param", ".bin"):
        shutil.copyfile(param.with_suffix(suffix), folder / f"model{suffix}")
    io = json.loads(param.with_suffix(".io.json").read_text())
    io["options"] = dict(options)
    (folder / "model.io.json").write_text(json.dumps(io))
    return folder / "model.param"


def measure(
    fp32_param: Path,
    int8_param: Path,
    quantized: list[str],
    float_options: dict[str, bool],
    say: Callable[[str], None] | None = None,
) -> SpeedPlan:
    """Profile the fp32 model (its own options and, on cores with fp16 arithmetic, the int8 artifact's) and the
    all-int8 artifact per core."""
    same = [(0, d) for d in DEVICES if float_runs_as_fp32(d)]
    with scratch("plan") as tmp:
        as_int8_runs = with_options(fp32_param, float_options, Path(tmp) / "float")
        floats, fp32_profiles, int8 = profiles_of(
            [as_int8_runs, fp32_param, int8_param], say=say, names=("float layers", "fp32", "int8"), skip=same
        )
    floats = {d: floats.get(d) or fp32_profiles[d] for d in DEVICES}
    fp32 = {d: p.total for d, p in fp32_profiles.items()}
    plan = choose(int8, floats, {d: 1.0 / fp32[d] for d in int8}, quantized)
    plan.totals = {d: {"fp32": fp32[d], "all_int8": int8[d].total} for d in int8}
    plan.digests = {"fp32": digest(fp32_param), "all_int8": digest(int8_param)}
    return plan


def plan_and_build(
    build: Callable[[list[str]], Any],
    src_param: Path,
    param: Path,
    float_options: dict[str, bool],
    progress: Callable[[str], None] | None = None,
) -> tuple[SpeedPlan | None, Any, str]:
    """The all-int8 artifact, then (where the emulated cores are built) the plan counted on them and the
    artifact it keeps: (plan or None, the report of the artifact written last, why there is no plan)."""
    say = progress or (lambda _message: None)
    report = build([])  # every quantizable layer int8
    if not enabled():
        return None, report, not_counted_because() or SWITCHED_OFF
    say(
        f"speed plan: counting the {len(report.quantized)} quantized layers in int8 and in float on "
        f"{' and '.join(DEVICES)} ({guest_runs()} guest runs, {guests_at_once()} at a time; then "
        f"{len(DEVICES)} more for the artifact it plans and {len(DEVICES)} for a strict plan, where needed)"
    )
    plan: SpeedPlan | None = None
    try:  # every counting round in this one place: a conversion never fails for want of a count
        plan = measure(src_param, param, report.quantized, float_options, say)
        report = _later_rounds(plan, build, param, report, say)
    except EmulatorError as exc:  # a guest timing out in any round: the all-int8 artifact, said not counted
        if plan is not None:  # a later round may have written another artifact over it
            report = build([])
        return None, report, f"{COUNT_FAILED} ({exc.message})"
    kept = {
        "planned": f"{len(plan.float_layers)} of {len(plan.layers)} layers float",
        "all-int8": "every layer int8 (the plan counted no fewer instructions)",
        "strict": "int8 only where it wins on every core",
        "fp32": "no layer int8: the fp32 model, its files and options",
    }[plan.kept]
    say(f"speed plan: kept {kept}")
    return plan, report, ""


def _later_rounds(
    plan: SpeedPlan, build: Callable[[list[str]], Any], param: Path, report: Any, say: Callable[[str], None]
) -> Any:
    """After the first round (measure): count the planned artifact, then the strict plan where a core is slower
    than fp32, and settle what is kept. Returns the report of the artifact written last."""
    if plan.float_layers:
        say(
            f"speed plan: {len(plan.float_layers)} layers count fewer instructions in float; counting that artifact"
        )
        report = build(plan.float_layers)
        planned = profiles(param)
        for device, prof in planned.items():
            plan.totals[device]["planned"] = prof.total
        plan.digests["planned"] = digest(param)
        all_int8 = {d: t["all_int8"] for d, t in plan.totals.items()}
        if weighted({d: p.total for d, p in planned.items()}, plan.weights) >= weighted(
            all_int8, plan.weights
        ):
            _keep_all_int8(plan)
            report = build([])
    if slower_cores(plan):
        say("speed plan: a core counts more than fp32; trying int8 only where it wins on every core")
        report = _no_core_slower(plan, build, param, report)
    if not report.quantized:
        report = _all_float(plan, build, report)
    return report


def _keep_all_int8(plan: SpeedPlan) -> None:
    """Keep the all-int8 artifact: every choice says int8, as that artifact runs every layer (the sidecar's
    float_layers, the notes and convert's finding read them; they listed the layers the plan had wanted float)."""
    plan.kept = "all-int8"
    for choice in plan.layers:
        choice.int8 = True


def _all_float(plan: SpeedPlan, build: Callable[[list[str]], Any], report: Any) -> Any:
    """The kept artifact has no int8 layer, so the converter ships the fp32 model with its own options (module
    docstring): kept "fp32", its figures the fp32 totals. That choice was weighed against float layers under the
    int8 options (fp16 on the A76); against the fp32 model, the all-int8 artifact is kept instead where it counts
    fewer instructions on the weighted measure and more on no core. Returns the report of the artifact that is
    written last (the all-int8 one, built again; else the all-float `report`, whose files the converter replaces
    by fp32's)."""
    all_int8 = {d: t["all_int8"] for d, t in plan.totals.items()}
    fp32 = {d: t["fp32"] for d, t in plan.totals.items()}
    if weighted(all_int8, plan.weights) < weighted(fp32, plan.weights) and all(
        all_int8[d] <= fp32[d] for d in fp32
    ):
        _keep_all_int8(plan)
        return build([])
    plan.kept = "fp32"
    for choice in plan.layers:
        choice.int8 = False
    return report


def _no_core_slower(plan: SpeedPlan, build: Callable[[list[str]], Any], param: Path, report: Any) -> Any:
    """The kept artifact counts more than fp32 on some core (a weighted plan can trade one core for the other):
    try the strict plan, float wherever int8 loses on any core, and keep it if no core is then slower than fp32.
    Else every layer float: plan_and_build then weighs the fp32 model against the all-int8 one (_all_float); going
    back to the weighted plan shipped one slower than fp32 on the A72 (shufflenet 0.99x), its A76 gain from the
    float layers' fp16, not from int8. Returns the report of the artifact written last."""
    strict = [c.name for c in plan.layers if any(v["int8"] > v["float"] for v in c.counts.values())]
    candidate = build(strict)
    totals = {d: prof.total for d, prof in profiles(param).items()}
    for device, total in totals.items():
        plan.totals[device]["strict"] = total
    plan.digests["strict"] = digest(param)
    if all(total <= plan.totals[d]["fp32"] for d, total in totals.items()):
        plan.kept = "strict"
        for choice in plan.layers:
            choice.int8 = choice.name not in strict
        return candidate
    return build(sorted({c.name for c in plan.layers} | set(report.quantized)))
