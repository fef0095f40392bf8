"""Synthetic deploy histories: realistic-looking DeployResult records without a device.

Used by the tests, the benchmarks (report speed, regression false alarms) and to preview a report. Latency
noise is modelled the way boards show it: a small night-to-night drift (clocks, temperature, background load),
right-skewed per-sample noise, and rare large outliers. Emulated targets get ~600x wall times and
deterministic instruction counts, as the counting qemu gives (docs/notes/arm-emulation.md).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta

import numpy as np

from edgekit.formats import Format, Precision
from edgekit.results import (
    AgentResult,
    ArtifactInfo,
    Comparison,
    CpuFreq,
    DeployResult,
    DeviceFacts,
    Measurement,
    TargetRun,
)

# Single-thread p50 on a Pi 4 for a YOLOv5-Lite-sized detector, ms (shape from published figures).
BASE_MS = {
    Format.TFLITE_FP32: 150.0,
    Format.TFLITE_FP16: 152.0,
    Format.TFLITE_DYNAMIC: 170.0,
    Format.TFLITE_INT8: 95.0,
    Format.NCNN_FP32: 130.0,
    Format.NCNN_FP16: 126.0,
    Format.NCNN_INT8: 90.0,
}
# formats a synthetic run has only when asked for (the defaults above stay what the report tests were written on)
OTHER_MS = {
    Format.TFLITE_ONNX2TF_FP32: 149.0,
    Format.TFLITE_ONNX2TF_INT8: 96.0,
    Format.ONNX_FP32: 140.0,
    Format.ONNX_INT8: 100.0,
    Format.MNN_FP32: 135.0,
    Format.MNN_INT8: 92.0,
}
COSINE = {
    Precision.FP32: 0.999999,
    Precision.FP16: 0.99991,
    Precision.DYNAMIC: 0.9983,
    Precision.INT8: 0.9915,
}
TARGETS = {  # name -> (emulated, speed factor vs Pi 4, cpu)
    "pi4": (False, 1.0, "Cortex-A72"),
    "pi5": (False, 0.4, "Cortex-A76"),
    "pi4-emu": (True, 40.0, "Cortex-A72"),
    "pi5-emu": (True, 40.0, "Cortex-A76"),
    "phone-emu": (True, 40.0, "Cortex-A76"),  # no board to estimate: routes by instruction count
    "host": (
        False,
        0.2,
        "x86_64 host CPU",
    ),  # the machine edgekit runs on: every deploy measures it by default
}


def synthetic_result(
    started: datetime,
    *,
    rng: np.random.Generator,
    recipe: str = "yolov5-lite",
    targets: Sequence[str] = ("pi4", "pi5-emu"),
    formats: Sequence[Format] = tuple(BASE_MS),  # the runtimes it has figures for (TFLite, ncnn)
    threads: Sequence[int] = (1, 4),
    repeat: int = 50,
    night_sd: float = 0.01,
    sample_sd: float = 0.03,
    slowdown: Mapping[tuple[str, str], float] | None = None,
    throttled: Mapping[str, str] | None = None,
    fidelity_drop: Mapping[str, float] | None = None,
) -> DeployResult:
    """One night's deploy; `slowdown[(artifact, target)] = 1.2` makes that pair 20% slower (time, counts)."""
    slowdown = slowdown or {}
    fidelity_drop = fidelity_drop or {}
    night = float(np.exp(rng.normal(0.0, night_sd)))
    arts = [_artifact(f, fidelity_drop.get(f.value, 0.0)) for f in formats]
    runs = [
        _target_run(
            t,
            started,
            formats,
            threads,
            repeat,
            night,
            sample_sd,
            slowdown,
            (throttled or {}).get(t, "0x0"),
            rng,
        )
        for t in targets
    ]
    for target_run in runs:  # the target-side check sees the same fidelity loss as the conversion
        for c in target_run.comparisons:
            if c.reference == "onnx" and c.artifact in fidelity_drop:
                c.cosine -= fidelity_drop[c.artifact]
                c.max_abs_error = 1.0 - c.cosine
    result = DeployResult(
        recipe=recipe,
        recipe_path=f"recipes/{recipe}.yaml",
        recipe_sha256=hashlib.sha256(recipe.encode()).hexdigest(),
        git_revision="0" * 40,
        task="detect",
        started_at=started.isoformat(),
        finished_at=(started + timedelta(minutes=20)).isoformat(),
        tool_versions={"edgekit": "0.1.0", "onnx2tf": "1.29.24", "ncnn": "1.0.20261020"},
        benchmark={"warmup": 2, "repeat": repeat, "number": 1, "threads": list(threads)},
        artifacts=arts,
        runs=runs,
        ok=all(a.gates_passed for a in arts),
    )
    from edgekit.route_deploy import routes_for_deploy  # the route deploy would record for these measurements

    result.routes = [r.to_dict() for r in routes_for_deploy(result)]
    return result


def add_estimates(
    result: DeployResult,
    target: str = "pi5-emu",
    board: str = "pi5",
    ms: tuple[float, float, float] = (12.3, 10.1, 15.6),
    calibrated: Callable[[Measurement], bool] = lambda _m: True,
) -> DeployResult:
    """The board estimates a counted deploy attaches to an emulated target's measurements (estimate, low, high
    ms), each interval calibrated where `calibrated` says so."""
    run = next(r for r in result.runs if r.target == target)
    for m in run.agent.measurements if run.agent else []:
        run.estimates[f"{m.artifact} x{m.threads}"] = {
            "status": "ok",
            "board": board,
            "estimate_ms": ms[0],
            "low_ms": ms[1],
            "high_ms": ms[2],
            "interval_calibrated": calibrated(m),
        }
    return result


def synthetic_history(
    nights: int = 30,
    *,
    seed: int = 0,
    start: datetime | None = None,
    last_slowdown: Mapping[tuple[str, str], float] | None = None,
    **kwargs: object,
) -> list[DeployResult]:
    """`nights` nightly deploys, one day apart; `last_slowdown` applies to the newest night only."""
    rng = np.random.default_rng(seed)
    start = start or datetime(2026, 1, 1, 2, 0, tzinfo=UTC)
    out = []
    for night in range(nights):
        slow = last_slowdown if night == nights - 1 else None
        out.append(synthetic_result(start + timedelta(days=night), rng=rng, slowdown=slow, **kwargs))  # type: ignore[arg-type]
    return out


def _artifact(fmt: Format, drop: float) -> ArtifactInfo:
    cosine = COSINE[fmt.precision] - drop
    gate = {Precision.FP32: 0.9999, Precision.FP16: 0.999, Precision.DYNAMIC: 0.98, Precision.INT8: 0.95}
    return ArtifactInfo(
        id=fmt.value,
        format=fmt.value,
        files=[f"model{s}" for s in fmt.files],
        sha256=hashlib.sha256(fmt.value.encode()).hexdigest(),
        size_bytes=4_880_000 // (2 if fmt.quantized else 1),
        cached=True,
        convert_s=20.0,
        fidelity={"cosine": cosine, "max_abs_error": 1.0 - cosine},
        gates_passed=cosine >= gate[fmt.precision],
    )


def _facts(target: str, throttled: str, rng: np.random.Generator) -> DeviceFacts:
    emulated, _, cpu = TARGETS[target]
    arm = target != "host"
    return DeviceFacts(
        machine="aarch64" if arm else "x86_64",
        cpu_model=cpu,
        cpu_part=("0xd08" if cpu == "Cortex-A72" else "0xd0b") if arm else None,
        cores=4,
        mem_total_mb=3800.0,
        mem_available_mb=3100.0,
        freqs=[
            CpuFreq(
                cpu=i,
                governor="ondemand" if throttled != "0x0" else "performance",
                cur_khz=1_500_000 if throttled == "0x0" else 1_000_000,
                max_khz=1_800_000,
            )
            for i in range(4)
        ],
        temperature_c=None
        if emulated
        else round(float(rng.normal(55 if throttled == "0x0" else 82, 1.5)), 1),
        throttled=None if emulated else throttled,
        python="3.11.2",
        runtimes={"ai_edge_litert": "2.1.0", "ncnn": "1.0.20261020"},
        emulated=emulated,
        emulator=f"qemu-aarch64 -cpu {cpu.lower()}" if emulated else None,
        hostname=target,
    )


def _target_run(
    target: str,
    started: datetime,
    formats: Sequence[Format],
    threads: Sequence[int],
    repeat: int,
    night: float,
    sample_sd: float,
    slowdown: Mapping[tuple[str, str], float],
    throttled: str,
    rng: np.random.Generator,
) -> TargetRun:
    emulated, factor, _ = TARGETS[target]
    measurements = []
    for fmt in formats:
        for t in threads:
            slow = slowdown.get((fmt.value, target), 1.0)
            base = {**OTHER_MS, **BASE_MS}[fmt] * factor * slow * night / (t**0.75)
            measurements.append(_measurement(fmt, t, base, repeat, sample_sd, slow, emulated, rng))
    facts = _facts(target, throttled, rng)
    agent = AgentResult(
        started_at=started.isoformat(),
        finished_at=(started + timedelta(minutes=9)).isoformat(),
        facts_before=facts,
        facts_after=facts.model_copy(),
        measurements=measurements,
        request={"repeat": repeat},
    )
    comps = [
        Comparison(
            artifact=f.value,
            target=target,
            reference=ref,
            max_abs_error=err,
            mean_abs_error=err / 10,
            cosine=1.0 - (err if ref == "onnx" else err / 100),
        )
        for f in formats
        for ref, err in (
            ("onnx", 1.0 - COSINE[f.precision]),
            ("host", 0.038 if f is Format.NCNN_FP16 else 1e-5),
        )
        if ref != target  # the host is no drift reference for itself
    ]
    return TargetRun(
        target=target,
        kind="ssh",
        emulated=emulated,
        emulated_as="target" if emulated else None,  # an edgekit emulated target, as `pi4-emu` is
        status="ok",
        agent=agent,
        comparisons=comps,
        stage_seconds={"connect": 0.2, "push": 1.1, "run": 530.0, "pull": 0.3},
    )


def _measurement(
    fmt: Format,
    threads: int,
    base: float,
    repeat: int,
    sample_sd: float,
    slow: float,
    emulated: bool,
    rng: np.random.Generator,
) -> Measurement:
    samples = base * np.exp(rng.normal(0.0, sample_sd, repeat))
    spikes = rng.random(repeat) < 0.03  # rare scheduler hiccups, 20-60% slower
    samples[spikes] *= 1.2 + 0.4 * rng.random(int(spikes.sum()))
    counts = None
    if emulated:
        jitter = 1.0 if threads == 1 else float(np.exp(rng.normal(0.0, 0.001)))
        counts = int({**OTHER_MS, **BASE_MS}[fmt] * 1.2e6 * slow * jitter)
    values = [round(float(v), 4) for v in samples]
    return Measurement(
        artifact=fmt.value,
        format=fmt.value,
        runtime="ncnn" if fmt.runtime.value == "ncnn" else "ai_edge_litert",
        threads=threads,
        status="ok",
        load_ms=35.0,
        samples_ms=values,
        p50_ms=float(np.percentile(values, 50)),
        p90_ms=float(np.percentile(values, 90)),
        p99_ms=float(np.percentile(values, 99)),
        mean_ms=float(np.mean(values)),
        std_ms=float(np.std(values)),
        min_ms=float(np.min(values)),
        peak_rss_mb=61.0,
        instructions_per_invoke=counts,
    )
