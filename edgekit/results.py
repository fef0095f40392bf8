"""Typed results: what the on-device agent reports, and what a deploy produces.

The agent (edgekit/agent/agent.py) writes plain JSON with exactly these fields (it cannot import edgekit);
`AgentResult.model_validate_json` reads it back. Fields a model does not declare are kept (`model_extra`; the
store keeps them in its extra columns, so a record from a newer edgekit survives an older one), and
`unknown_fields` lists them: the deploy session warns when the agent writes one, and the tests require none,
so a misspelt agent field fails a test instead of vanishing. The request side and the protocol version:
edgekit.agent.contract.
Wall times measured under emulation carry `emulated=True` in their device facts and every table and report
must label them `emulated`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from edgekit.agent.contract import PROTOCOL_VERSION, ErrorCode

# Other processes using this share of a device's CPUs while a measurement was timed make its times unreliable
# (reported, not judged for regressions): background daemons use 1-2 %; one busy core of a 4-core Pi is 25 %.
BUSY_SHARE = 0.10


class _Model(BaseModel):
    # NaN and infinities are written as NaN/Infinity (as Python's json writes them), not null: a NaN cosine (a
    # zero output) written as null made `runs import` refuse its own unrecorded file and deploy's --json
    model_config = ConfigDict(extra="allow", ser_json_inf_nan="constants")


# the error of a measurement a Ctrl-C (or SIGTERM) left unmeasured: not a failure of the artifact (runs lists
# these apart from failures, by this prefix: the store keeps the error code only in a JSON field)
NOT_RUN_INTERRUPTED = "not run: interrupted (Ctrl-C or SIGTERM)"
GATE_MISSED = "missed its fidelity gate: "  # how a missed gate's artifact error begins (convert.pipeline)
VANISHED = (
    "vanish in int8 or fp16 arithmetic"  # fidelity.check.vanished_note's words, which convert's hint finds
)


def unknown_fields(model: BaseModel, where: str = "") -> list[str]:
    """Dotted paths of every field no model in the tree declares (e.g. `measurements[0].p50ms`)."""
    found = [f"{where}{name}" for name in (model.model_extra or {})]
    for name in type(model).model_fields:
        value = getattr(model, name)
        items = list(enumerate(value)) if isinstance(value, list) else [(None, value)]
        for i, item in items:
            if isinstance(item, BaseModel):
                found += unknown_fields(item, f"{where}{name}{'' if i is None else f'[{i}]'}.")
    return found


class CpuFreq(_Model):
    cpu: int
    governor: str | None = None
    cur_khz: int | None = None
    max_khz: int | None = None


class DeviceFacts(_Model):
    machine: str  # platform.machine(): aarch64, x86_64
    # "Cortex-A72" or the model name line; on big.LITTLE the cores used (cpus_used), "Cortex-A76 + Cortex-A55"
    cpu_model: str | None = None
    cpu_part: str | None = None  # ARM "CPU part" e.g. 0xd08 (the cores used, where they are all one part)
    # additive: each cpu's part, {"0": "0xd05", "4": "0xd0b"}
    cpu_parts: dict[str, str] = Field(default_factory=dict)
    cpu_features: list[str] = Field(default_factory=list)
    cores: int
    mem_total_mb: float | None = None  # MiB, as every agent memory figure (kB / 1024)
    mem_available_mb: float | None = None
    freqs: list[CpuFreq] = Field(default_factory=list)
    # the hottest CPU/SoC thermal zone (temperature_zone names it; the hottest of any zone where none names the CPU);
    # on an emulated device, as freqs and thermal_zones, the emulator host's (/sys there is the host's; no battery)
    temperature_c: float | None = None
    temperature_zone: str | None = None  # additive
    throttled: str | None = None  # vcgencmd get_throttled value, e.g. "0x0"
    python: str
    runtimes: dict[str, str] = Field(default_factory=dict)  # {"ai_edge_litert": "2.1.0", "ncnn": "1.0..."}
    emulated: bool = False
    emulator: str | None = None  # e.g. "qemu-aarch64 -cpu cortex-a72"
    hostname: str | None = None
    nice: int | None = None  # the agent's scheduling priority while measuring (additive; see request `nice`)
    cpus_used: list[int] | None = None  # the agent's affinity mask (after the target's `affinity`, if any)
    affinity: dict[str, Any] | None = None  # what the target asked for and the cores it got (facts_before)
    thermal_zones: dict[str, float] = Field(default_factory=dict)  # every readable zone by type, deg C
    battery: dict[str, Any] | None = None  # capacity_pct, status, charging, where the device lets it be read

    def usable_cores(self) -> int:
        """The cores the agent could run on: its affinity mask's, else the device's."""
        return len(self.cpus_used) if self.cpus_used else self.cores


class LayerTime(_Model):
    """One layer's own wall time on the device: an ncnn layer's (extract of its output minus a cached re-extract)
    or an onnxruntime node's (its kernel time in onnxruntime's profiler)."""

    name: str
    type: str
    ms: float  # median over the passes
    min_ms: float
    # ncnn's (the agent's layer_times): the median re-extract subtracted from the extract, and the passes whose
    # extract took no longer than its re-extract (profile_wall.noisy_layers); None from onnxruntime and older agents
    reextract_ms: float | None = None
    noisy_passes: int | None = None


class Measurement(_Model):
    """One artifact at one thread count. Latencies in milliseconds per invocation."""

    artifact: str  # artifact id, e.g. "tflite-int8"
    format: str
    runtime: str  # which runtime ran it: ai_edge_litert, tflite_runtime, ncnn
    threads: int = Field(ge=1)
    # "skipped": never tried, as the device's python lacks its runtime (error_code runtime_missing, the error
    # naming the fix); set by edgekit, never by the agent, and never a pass
    status: Literal["ok", "failed", "skipped"]
    error: str | None = None
    error_code: ErrorCode | None = (
        None  # why it failed (agent: load/run error; host: crash, timeout, not run)
    )
    load_ms: float | None = (
        None  # opening the model with its runtime already started (comparable across formats)
    )
    # additive: the first load of this runtime in the agent process (start-up and this artifact's load together),
    # done untimed as load_ms before it; set on the first measurement of each runtime, None on the others
    runtime_init_ms: float | None = None
    samples_ms: list[float] = Field(default_factory=list)
    number: int = 1
    # the samples' percentiles as numpy interpolates them (linear): of few samples p90 and p99 are the max or next
    # to it (p99 of 10 lies 91 % of the way from the 9th to the 10th; of 2, p50 is their mean), so the tables show
    # p90 from 10 samples and p99 from 100 (report.percentiles.PERCENTILE_MIN_SAMPLES); std_ms: the sample standard
    # deviation (ddof 1), None from one sample (recorded as 0.0 before)
    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    mean_ms: float | None = None
    std_ms: float | None = None
    min_ms: float | None = None
    # MiB (2^20 bytes): the agent process's peak resident set (the interpreter, numpy and the runtime as well as the
    # model: 53 MiB for a 25 KB model) over loading, warm-up and the timed runs, read right after them (the accuracy
    # pass and the per-layer profile, at the first thread count only, come after and are not in it); the model's
    # own growth is rss_delta_mb
    peak_rss_mb: float | None = None
    outputs_file: str | None = None  # .npz of outputs on the evaluation inputs, relative to the result dir
    output_checksums: dict[str, str] = Field(default_factory=dict)
    instructions_per_invoke: int | None = None  # guest instruction count (counting qemu only)
    instructions_per_thread: list[int] = Field(default_factory=list)  # each guest thread's share, per invoke
    instruction_mix: list[int] = Field(
        default_factory=list
    )  # per invoke: simd_fp, simd_ldst, ldst, branch, other
    cache_misses: list[int] = Field(
        default_factory=list
    )  # per invoke, simulated data caches of the board the device stands for: accesses, then each level's misses
    # set by edgekit on this machine after the run, never by the agent: the counted window's blocks timed by
    # llvm-mca's model of the core (emulated device on a core LLVM models, one thread; emu/plugin/cycles.py)
    cycles_per_invoke: float | None = None
    # the agent's own timer and loop, timed around a no-op: per timed window of `number` invocations (compare with
    # p50_ms * number: a sample is that window divided by number), and (additive) per invocation, the samples' unit
    overhead_ms_per_sample: float | None = None
    overhead_ms_per_invoke: float | None = None
    # additive (deploy issue): memory scope, output layout of outputs_file (keys in npz order)
    peak_rss_scope: Literal["measurement", "process"] | None = None  # VmHWM reset per measurement or not
    # MiB: resident-set growth from before loading to the end of the timed runs, read with the model still loaded
    rss_delta_mb: float | None = None
    # additive: the resident set (MiB) the growth and the peak start from, read before loading, after the memory
    # freed by earlier measurements went back to the OS (memory_released: glibc's malloc_trim). memory_released
    # False: the C library could not (bionic, musl, macOS), so rss_delta_mb may read low and peak_rss_mb high
    # after another model was measured in the same agent process; None: recorded before either existed
    rss_baseline_mb: float | None = None
    memory_released: bool | None = None
    output_names: list[str] = Field(default_factory=list)  # runtime's output names, in npz key order
    output_keys: list[str] = Field(default_factory=list)  # the .npz keys (sanitized names)
    output_shapes: list[list[int]] = Field(default_factory=list)  # each (samples, *output shape)
    timed_inputs: int | None = None  # inputs the timed invocations ran (the first one)
    accuracy_inputs: int | None = None  # inputs whose outputs were saved for the accuracy comparison
    layer_ms: list[LayerTime] = Field(
        default_factory=list
    )  # on request (profile on a board): ncnn, onnxruntime
    layer_passes: int | None = (
        None  # how many passes each layer_ms median is over (extractors; profiled runs)
    )
    layer_error: str | None = None  # why layer_ms is missing although asked for
    # the fraction of all the device's CPU time other processes used while the samples were timed (/proc/stat
    # minus the agent's own CPU time; None: not Linux, or too short a window to tell)
    others_cpu_share: float | None = None

    @property
    def timed_while_busy(self) -> bool:
        """Other processes used at least BUSY_SHARE of the CPUs while this was timed: its times are not the
        model's alone (a shared runner, a board running something else, another emulated device)."""
        return self.others_cpu_share is not None and self.others_cpu_share >= BUSY_SHARE


class AgentResult(_Model):
    protocol: int = PROTOCOL_VERSION
    started_at: str
    finished_at: str | None = None
    facts_before: DeviceFacts
    facts_after: DeviceFacts | None = None
    measurements: list[Measurement] = Field(default_factory=list)
    request: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None  # the agent could not serve the request at all (lock held, bad request)
    in_progress: str | None = None  # "artifact threads=N" being measured when this file was written


class Comparison(_Model):
    """Outputs of one artifact on one side compared with a reference (the ONNX model or the host run)."""

    artifact: str
    target: str
    reference: str  # "onnx" or "host"
    max_abs_error: float
    mean_abs_error: float
    cosine: float
    top1_agreement: float | None = None
    box_match: float | None = None
    metric: dict[str, float] = Field(default_factory=dict)  # top1 / map50 / map50_95 where labels exist
    # additive (deploy issue): how many samples, how outputs were matched, the recipe's gates on this side
    samples: int | None = None
    output_mapping: str | None = None  # name / index / shape / position (edgekit.fidelity.check)
    gates_passed: bool | None = None  # set for reference "onnx": the artifact's gates on this target
    gate_failures: list[str] = Field(default_factory=list)


class ArtifactInfo(_Model):
    """A converted artifact as deploy used it: files, size, and its fidelity against the original model."""

    id: str  # the format name, e.g. "ncnn-int8" (unique within one recipe)
    format: str
    files: list[str]
    sha256: (
        str  # of every file, a sidecar too (ncnn's model.io.json, whose speed-plan counts vary run to run)
    )
    size_bytes: int
    cached: bool = False
    convert_s: float | None = None
    fidelity: dict[str, Any] = Field(default_factory=dict)  # max_abs_error, cosine, top1_agreement, ...
    gates_passed: bool = True
    status: Literal["ok", "failed"] = "ok"
    error: str | None = None
    # the artifact this one is the very same model as, and why (same_model.same_models), decided by deploy while
    # the files exist: a stored run's files may be pruned, or rewritten by a later conversion (additive)
    same_model_as: str | None = None
    same_model_why: str = ""
    same_model_checked: bool = False  # deploy compared the files (False: a result from before, no record)
    # an ncnn-int8 whose speed plan kept the fp32 model (its sidecar's int8.speed_plan.kept), as deploy read it while
    # the files existed: a stored run still says it holds no int8 layer after its cache is pruned (None: no record)
    kept_fp32: bool | None = None
    # sha256 of the model files alone, the sidecars that describe them left out (additive; None before it): what
    # "the converted file changed" compares, where both runs have it (converted_changed)
    model_sha256: str | None = None

    @property
    def missed_gate(self) -> bool:
        """Converted and checked, and it missed the recipe's fidelity gates: its status is `failed` for that alone
        (the conversion pipeline), unlike a conversion or a host run that failed (no gate verdict in `fidelity`)."""
        gates = self.fidelity.get("gates")
        return (isinstance(gates, dict) and gates.get("passed") is False) or (
            self.status == "ok" and not self.gates_passed
        )


def converted_changed(before: ArtifactInfo, after: ArtifactInfo) -> bool:
    """The artifact's model files differ between two runs: by their model_sha256 where both runs have it, else by
    the digest of every file (a run stored before model_sha256)."""
    if before.model_sha256 is not None and after.model_sha256 is not None:
        return before.model_sha256 != after.model_sha256
    return before.sha256 != after.sha256


class TargetRun(_Model):
    """Everything measured on one target (a device, an emulated device, or `host`)."""

    target: str
    kind: Literal["ssh", "local"]
    emulated: bool
    status: Literal["ok", "failed"]
    error: str | None = None  # a target-level failure (unreachable, agent crash); measurements kept
    interrupted: bool = False  # stopped by Ctrl-C: what was measured is kept (additive)
    # its error is bad input (the target's `python` field names no python the device has: exit 2), not a failed
    # run (additive: False for records before it)
    bad_input: bool = False
    # not measured because every device failed before measuring (deploy's fail-fast skips the host, only their
    # reference): no failure of its own (additive)
    skipped: bool = False
    agent: AgentResult | None = None
    comparisons: list[Comparison] = Field(default_factory=list)  # vs onnx and vs host
    estimates: dict[str, Any] = Field(default_factory=dict)  # labelled estimates for emulated targets
    stage_seconds: dict[str, float] = Field(default_factory=dict)  # connect/push/run/pull
    result_dir: str | None = None  # local folder with the pulled result.json and outputs (additive)
    benchmark: dict[str, Any] = Field(default_factory=dict)  # this target's settings (its own cap applied)
    profiles: dict[str, Any] = Field(default_factory=dict)  # deploy --profile, emulated: per-layer counts
    # a lab place taken from this run before it ended (who holds it now): its figures may have shared the board
    place_lost: str | None = None
    # artifact -> the runtime module it ran with that the target's `runtimes:` does not list (the device had it)
    unlisted_runtimes: dict[str, str] = Field(default_factory=dict)
    # an emulated target that was to count (emulated.counting): a run of it without counts lost them (additive)
    counting: bool = False
    # how an emulated run is emulated (additive; None: not emulated, or recorded before this field): "target", an
    # edgekit emulated target (its `emulated:` block, whose `counting` decides whether it counts); "board", a qemu
    # machine reached as a plain or lab board, which the device's own facts said is emulated (it cannot count)
    emulated_as: Literal["target", "board"] | None = None
    # what a reader of this run's figures must know that no figure says: why an emulated run has no board estimate,
    # a device whose CPU is not the target's expected_cpu (additive)
    caveats: list[str] = Field(default_factory=list)


class DeployResult(_Model):
    """The record of one `edgekit deploy`: what `--json` writes and the results store keeps."""

    protocol: int = PROTOCOL_VERSION
    recipe: str  # recipe name
    recipe_path: str
    recipe_sha256: str
    # the recipe's settings as validated (Recipe.digest's input), so a report names the fields that changed
    recipe_settings: dict[str, Any] = Field(default_factory=dict)
    git_revision: str | None = None
    task: str = "generic"
    started_at: str
    finished_at: str | None = None
    tool_versions: dict[str, str] = Field(default_factory=dict)
    benchmark: dict[str, Any] = Field(default_factory=dict)  # the effective benchmark settings
    artifacts: list[ArtifactInfo] = Field(default_factory=list)
    runs: list[TargetRun] = Field(default_factory=list)
    ok: bool = False
    # not ok only for bad input: every target that failed failed on its input (bad_input), the rest was ok (exit 2)
    bad_input: bool = False
    routes: list[dict[str, Any]] = Field(
        default_factory=list
    )  # per target: the artifact to ship (edgekit.route)

    @field_validator("started_at", "finished_at")
    @classmethod
    def _iso_time(cls, value: str | None) -> str | None:
        """An ISO-8601 time: the store orders and filters runs by it (`runs import` of a hand-edited file)."""
        if value is not None:
            datetime.fromisoformat(value)  # ValueError: the field named by pydantic, exit 2 at import
        return value


def unchecked_gates(gates: dict[str, Any] | None) -> list[str]:
    """The gates the recipe set that a `check_gates` record could not judge ('max_top1_drop (no top1_drop: needs
    labels)'): never a pass, though none was missed (`passed` is True for them, so a conversion goes on).
    Read here, beside the records, by the report and the route (edgekit.fidelity.check writes them)."""
    skipped = gates.get("skipped") if isinstance(gates, dict) else None
    return [str(s) for s in skipped] if isinstance(skipped, list) else []


def interval_not_validated(estimate: dict[str, Any]) -> str | None:
    """Why an estimate's interval is not validated (`edgekit.estimate`), or None when it is. Runs stored before
    the reason was recorded had one reason only: a runtime the cost model has no figure for."""
    if estimate.get("interval_calibrated", True):
        return None
    return str(estimate.get("interval_not_validated") or "no calibration figure for this runtime")
