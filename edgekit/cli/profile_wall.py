"""`edgekit profile ARTIFACT --target pi4|host`: each layer's own wall time on a real board (SSH) or this host,
measured by the on-device agent next to the whole inference's p50. A hardware measurement, not a count.

ncnn: each layer's extract minus a re-extract of its output, median over `--passes` fresh extractors. onnxruntime:
its own profiler's kernel time of each node of its optimised graph, median over `--passes` runs. TFLite's Python API
runs a graph as one call and has no per-op timer: a .tflite is refused here and counted on an emulated core.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from edgekit.errors import EdgekitError, Interrupted, UsageError

if TYPE_CHECKING:
    from edgekit.results import Measurement


def wall_profile(
    artifact: Path,
    target: str,
    threads: int,
    passes: int,
    input_shape: str | None,
    top: int,
    as_json: bool,
    overrides: list[str],
    timeout: float,
) -> None:
    """Per-layer wall time of an ncnn or onnxruntime artifact on a board (SSH) or this host, by the on-device
    agent."""
    from edgekit.cli.bench import run_folder, run_one
    from edgekit.cli.bench_inputs import bench_inputs, sidecar_format
    from edgekit.deploy import AgentArtifact, Settings, host_target
    from edgekit.deploy.plan import check_before_work
    from edgekit.report.lines import timing_caveats
    from edgekit.runtimes import spec_for
    from edgekit.target import load_target
    from edgekit.terminal import Console

    if artifact.suffix == ".tflite":
        raise UsageError(
            f"target {target} times layers with ncnn's extractor or onnxruntime's profiler; TFLite's Python API "
            "runs a .tflite as one call and has no per-op timer",
            where="--target",
            hint="count it op by op on an emulated core: --target pi4-emu (Cortex-A72) or pi5-emu (Cortex-A76)",
        )
    art = AgentArtifact.from_path(artifact, sidecar_format(artifact))
    spec_for(art.format).check_file(
        art.files
    )  # a file its runtime cannot read: named here (exit 2), before any run
    if artifact.suffix == ".param" and input_shape is not None:
        from edgekit.cli.shapes import parse_shape
        from edgekit.estimate.graph import analyze

        # as on an emulated target: a shape the sidecar contradicts, a batch or channels the model cannot take
        # are refused here (exit 2); it ran at any shape given and the table did not say which
        analyze(artifact, parse_shape(input_shape, "--input-shape"))
    tgt = host_target() if target == "host" else load_target(target, overrides)
    check_before_work(tgt)
    settings = Settings(warmup=2, repeat=passes, threads=(threads,), layer_times=passes, timeout_s=timeout)
    import numpy as np

    with run_folder("profile") as folder:  # held while the run uses it: no prune removes it
        inputs = bench_inputs(art, None, input_shape, folder, "--input-shape")
        timed = list(np.load(inputs, mmap_mode="r").shape[1:])  # axis 0 is the sample; a sample is one input
        run = run_one(art, tgt, settings, folder, inputs, Console(stderr=True), f"profile {artifact.name}")
    if run.interrupted:  # Ctrl-C: the same exit (130) and message as bench, not "timing failed"
        raise Interrupted("interrupted (Ctrl-C) before the per-layer times came back", where=tgt.name)
    m = run.agent.measurements[0] if run.agent and run.agent.measurements else None
    if m is None or m.status != "ok" or not m.layer_ms:
        why = run.error or (m.error or m.layer_error if m else None) or "no measurement came back"
        raise EdgekitError(f"per-layer timing failed: {why}", where=tgt.name)
    if as_json:
        print(
            json.dumps(
                {
                    "target": tgt.name,
                    "label": wall_label(m.runtime),
                    "input_shape": timed,
                    **({"timer_resolution_ms": ORT_TICK_MS} if m.runtime == "onnxruntime" else {}),
                    **m.model_dump(mode="json"),
                    "timing_caveats": timing_caveats(run),
                },
                indent=1,
            )
        )
        return
    for line in wall_table(m, tgt.name, artifact.name, top, timed):
        typer.echo(line)
    for line in timing_caveats(
        run
    ):  # wall times: a busy machine, more threads than cores (as bench says them)
        typer.echo(f"! {line}")


WALL_LABELS = {
    "ncnn": "wall time per layer on the device (hardware measurement; each layer's extract minus a re-extract of "
    "its output, median over fresh extractors)",
    "onnxruntime": "wall time per node on the device (hardware measurement; onnxruntime's profiler: each node's "
    "kernel time in its optimised graph, fused nodes as one, median over profiled runs)",
}
# why the layers' sum is not the whole inference's p50
_SUM_NOTE = {
    "ncnn": "timed alone, a layer runs without the cache state a whole run leaves it, and the extractor's own work "
    "is in neither",
    "onnxruntime": "the nodes ran with the profiler on, which times each, the p50 without it; the session's own "
    "work per run (feeding the input, fetching the outputs, its executor between kernels) is in no node",
}


# onnxruntime's profiler records each node's duration in whole microseconds
ORT_TICK_MS = 0.001
# below this a node's time is within ten ticks: one tick of rounding is 10 % of it or more
ORT_COARSE_MS = 10 * ORT_TICK_MS


def wall_label(runtime: str) -> str:
    return WALL_LABELS.get(runtime, WALL_LABELS["ncnn"])


def wall_table(m: Measurement, target: str, name: str, top: int, shape: list[int]) -> list[str]:
    """Plain text lines: the `top` layers by median wall time (inputs of `shape`), then the whole inference."""
    total = sum(layer.ms for layer in m.layer_ms)
    unit = "node" if m.runtime == "onnxruntime" else "layer"
    lines = [
        f"{name} on {target}, input {'x'.join(map(str, shape))}, threads={m.threads}, {m.layer_passes} passes: "
        f"{wall_label(m.runtime)}",
        f"{unit:<28} {'type':<22} {'median ms':>10} {'min ms':>9} {'share':>7}",
    ]
    from edgekit.profile_table import short_names
    from edgekit.report.figures import three_figures

    shown = sorted(m.layer_ms, key=lambda layer: -layer.ms)[:top]
    for layer, label in zip(shown, short_names([layer.name for layer in shown], 28)):
        lines.append(  # 3 significant figures: a fast op's 0.0004 ms printed as 0.000
            f"{label:<28} {layer.type:<22} {three_figures(layer.ms):>10} {three_figures(layer.min_ms):>9} {layer.ms / max(total, 1e-12):>6.1%}"
        )
    lines.append(
        f"{len(m.layer_ms)} {unit}s sum to {total:.3f} ms; the whole inference p50 {m.p50_ms:.3f} ms "
        f"({total / max(m.p50_ms or 1e-12, 1e-12):.0%} of it: {_SUM_NOTE.get(m.runtime, _SUM_NOTE['ncnn'])})"
    )
    coarse = [layer for layer in m.layer_ms if layer.ms < ORT_COARSE_MS] if m.runtime == "onnxruntime" else []
    if coarse:
        lines.append(
            f"~ {len(coarse)} of {len(m.layer_ms)} nodes took under {three_figures(ORT_COARSE_MS)} ms: onnxruntime's "
            f"profiler times a node in whole microseconds ({three_figures(ORT_TICK_MS)} ms), so each of their times, and "
            "the shares made of them, is off by up to a microsecond: 10 % of such a node or more"
        )
    noisy = noisy_layers(m)
    if noisy:
        lines.append(
            f"~ {len(noisy)} {unit}(s) took no longer than their re-extract in over a quarter of the passes, their "
            f"times within the timer's noise ({', '.join(noisy[:3])}{', ...' if len(noisy) > 3 else ''}; "
            "`noisy_passes` in --json)"
        )
    return lines


def noisy_layers(m: Measurement) -> list[str]:
    """The ncnn layers whose extract took no longer than its re-extract in more than a quarter of the passes (the
    agent's `noisy_passes`; absent from older agents' results and from onnxruntime's nodes)."""
    passes = m.layer_passes or 0
    return [
        layer.name
        for layer in m.layer_ms
        if passes and layer.noisy_passes is not None and layer.noisy_passes * 4 > passes
    ]
