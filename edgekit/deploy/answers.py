"""What deploy answers once the targets have measured, from what they measured: on each emulated target the real
boards' estimated latency from its instruction counts and, with --profile, the per-layer counts of its ncnn
artifacts; per target the artifact to ship (edgekit.route). None of them may cost a measurement: a failure is said
and recorded."""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path
from typing import Any

from edgekit.deploy.plan import Progress
from edgekit.results import DeployResult, TargetRun
from edgekit.target import Target


def _said_for(say: Progress, target: str, message: str) -> None:
    say(f"{target}: {message}")


def attach_estimates(
    result: DeployResult, targets: dict[str, Target], say: Progress, counting: bool = True
) -> None:
    """Labelled real-board estimates from an emulated target's instruction counts (edgekit.estimate). Not
    COUNTING (a deploy interrupted after measuring): from the counts made and cached only, nothing new counted
    under qemu (an estimate needing one says it was not made)."""
    from edgekit.estimate.counts import cached_only

    with (
        contextlib.nullcontext()
        if counting
        else cached_only("the deploy was interrupted: nothing more is counted")
    ):
        _attach_estimates(result, targets, say)


def _attach_estimates(result: DeployResult, targets: dict[str, Target], say: Progress) -> None:
    for run in result.runs:
        target = targets.get(run.target)
        counted = run.agent is not None and any(m.instructions_per_invoke for m in run.agent.measurements)
        if target is None or target.emulated is None or not counted:
            continue
        try:
            from edgekit.estimate.attach import estimates_for_run

            run.estimates = estimates_for_run(
                run,
                result.artifacts,
                target.emulated.device,
                list(result.benchmark.get("threads", [1])),
                say=functools.partial(_said_for, say, run.target),
            )
        except Exception as exc:  # noqa: BLE001 - an estimate must never cost the measurements
            say(f"{run.target}: no estimates ({type(exc).__name__}: {exc})")


def attach_profiles(result: DeployResult, targets: dict[str, Target], say: Progress) -> None:
    """With --profile, on each emulated target: every ncnn artifact measured there, counted layer by layer on its
    core at one thread (edgekit.profile; exact). Boards and the host carry their layer wall times in their
    measurements (`layer_ms`: ncnn's and onnxruntime's). A failure is said in the result, never costs a
    measurement."""
    from edgekit.profile import profile_ncnn

    files = {a.id: a.files for a in result.artifacts}
    for run in result.runs:
        target = targets.get(run.target)
        if run.agent is None:
            continue
        if target is None or target.emulated is None:  # a board or the host: ncnn's layer times came back
            _say_not_timed_by_layer(run, say)
            continue
        measured = sorted({m.artifact for m in run.agent.measurements if m.status == "ok"})
        for artifact in measured:
            param = next((Path(f) for f in files.get(artifact, []) if f.endswith(".param")), None)
            if param is None:
                run.profiles[artifact] = {
                    "status": "skipped",
                    "reason": "per-layer counts in deploy are for ncnn artifacts; `edgekit profile FILE "
                    f"--target {run.target}` counts a .tflite op by op or an .onnx node by node (one prefix model "
                    "per cut: slow)",
                }
                continue
            say(f"{run.target}: counting {artifact} layer by layer")
            try:
                prof = profile_ncnn(param, target.emulated.device, threads=1)
            except Exception as exc:  # noqa: BLE001 - a profile must never cost the measurements
                run.profiles[artifact] = {"status": "failed", "reason": f"{type(exc).__name__}: {exc}"}
                say(f"{run.target}: no profile of {artifact} ({exc})")
                continue
            run.profiles[artifact] = {"status": "ok", **prof.to_dict()}


def _say_not_timed_by_layer(run: TargetRun, say: Progress) -> None:
    """On a board or the host, one line naming the artifacts measured without per-layer times (neither ncnn's nor
    onnxruntime's), so their absence from the profile lines is not read as nothing to say."""
    timed = LAYER_TIMED_RUNTIMES
    others = (
        sorted({m.artifact for m in run.agent.measurements if m.status == "ok" and m.runtime not in timed})
        if run.agent
        else []
    )
    if others:
        say(
            f"{run.target}: not profiled: {', '.join(others)} (per-layer times on a board are ncnn's and "
            "onnxruntime's; `edgekit profile FILE --target pi4-emu` counts a .tflite op by op on an emulated core)"
        )


# the runtimes whose agent runner times each layer on a board (ncnn's extractor, onnxruntime's profiler)
LAYER_TIMED_RUNTIMES = frozenset({"ncnn", "onnxruntime"})


def routes(result: DeployResult) -> list[dict[str, Any]]:
    """Per target, the artifact to ship: the fastest that meets every gate (edgekit.route), at the fastest thread
    count the target measured."""
    from edgekit.route_deploy import routes_for_deploy

    return [r.to_dict() for r in routes_for_deploy(result)]
