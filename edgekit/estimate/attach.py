"""The `estimate` entries of a deploy result: what a real board would take, from an emulated target's counts.

deploy calls `estimates_for_run(run, artifacts, device)` (or `estimate_for(measurement, artifact_info, board)`
per measurement) for an emulated target with instruction counts and keeps the dicts in TargetRun.estimates;
they are labelled estimates and carry no field a report could mistake for a measured latency (no p50/mean).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgekit.estimate import cost_model
from edgekit.estimate.boards import BOARDS
from edgekit.estimate.boards import board as get_board
from edgekit.estimate.forms import misses_of
from edgekit.estimate.graph import ModelCost, analyze
from edgekit.estimate.roofline import compute_precision, roofline
from edgekit.formats import Format, Precision
from edgekit.results import ArtifactInfo, Measurement, TargetRun

# emulated device -> the real board its core stands for (phone-emu has no calibrated board)
BOARD_OF_DEVICE = {b.emulated_device: b.name for b in BOARDS.values()}


def board_for_device(device: str) -> str | None:
    """pi4-emu -> pi4, pi5-emu -> pi5; None for an emulated device no board is calibrated for."""
    return BOARD_OF_DEVICE.get(device)


def estimate_for(
    measurement: Measurement,
    artifact_info: ArtifactInfo | None,
    board: str,
    reference: Measurement | None = None,
    input_shape: list[int] | None = None,
) -> dict[str, Any]:
    """A labelled estimate of `measurement`'s artifact on the real `board` at its thread count.

    The cost model wants the one-thread count (counts at more threads include the split between threads, used
    when the measurement has it); pass the same artifact's one-thread measurement as `reference` when
    `measurement` ran with more threads. Returns {"status": "unavailable", "reason": ...} (still labelled) when
    no count exists.
    """
    base = {
        "label": cost_model.LABEL,
        "board": board,
        "artifact": measurement.artifact,
        "threads": measurement.threads,
    }
    source = reference if reference is not None and reference.instructions_per_invoke else measurement
    if measurement.status != "ok" or not source.instructions_per_invoke:
        return {
            **base,
            "status": "unavailable",
            "reason": "no instruction count (run the emulated target with emulated.counting: true)",
        }
    caveats = []
    if source.threads > 1:
        caveats.append(f"count taken at {source.threads} threads: includes the threads' synchronisation")
    fmt = _format(measurement.format)
    cost = _cost(artifact_info, input_shape)
    busiest = (
        {measurement.threads: max(measurement.instructions_per_thread)}
        if measurement.threads > 1 and measurement.instructions_per_thread
        else {}
    )
    # the miss features are one-thread figures (as calibrated): from a one-thread count only
    l1, llc = misses_of(source.cache_misses) if source.threads == 1 else (-1, -1)
    feats = cost_model.Features(
        source.instructions_per_invoke,
        cost.params if cost else 0,
        fmt is not None and fmt.precision is Precision.INT8,
        busiest,
        cost.macs if cost else 0,
        tuple(source.instruction_mix),
        cost.activation_bytes if cost else 0,
        l1,
        llc,
    )
    est = cost_model.estimate(
        board,
        feats,
        measurement.threads,
        fmt=fmt,
        caveats=caveats,
        layer_types=cost.layer_types
        if cost is not None
        else (),  # ncnn graphs only: the calibration is ncnn's
    )
    out = {**base, **est.to_dict(), "status": "ok", "instructions_per_invoke": source.instructions_per_invoke}
    if cost is not None and fmt is not None:
        out["roofline_lower_bound_ms"] = round(
            roofline(cost, get_board(board), measurement.threads, compute_precision(fmt)).lower_bound_ms, 3
        )
    return out


def _format(value: str) -> Format | None:
    try:
        return Format(value)
    except ValueError:
        return None


def _cost(info: ArtifactInfo | None, input_shape: list[int] | None = None) -> ModelCost | None:
    """The artifact's graph cost when its files are readable here (a .param without sidecar: given its input
    shape); None otherwise (never fatal)."""
    if info is None or not info.files:
        return None
    try:
        return analyze(Path(info.files[0]), input_shape)
    except Exception:  # noqa: BLE001 (an estimate must never break a deploy)
        return None


def estimates_for_run(
    run: TargetRun,
    artifacts: list[ArtifactInfo],
    device: str,
    threads: list[int] | None = None,
    input_shape: list[int] | None = None,
) -> dict[str, Any]:
    """TargetRun.estimates for an emulated target in one call: {"artifact xN": estimate dict} for every thread
    count measured and every one in `threads` (the recipe's plan: a capped emulated run measures 1 thread, the
    board question is often 4), each from the same artifact's one-thread count. {} when no board stands for
    DEVICE (phone-emu) or the run has no agent result."""
    board = board_for_device(device)
    if board is None or run.agent is None:
        return {}
    infos = {a.id: a for a in artifacts}
    single = {m.artifact: m for m in run.agent.measurements if m.threads == 1 and m.instructions_per_invoke}
    out = {
        f"{m.artifact} x{m.threads}": estimate_for(
            m, infos.get(m.artifact), board, single.get(m.artifact), input_shape
        )
        for m in run.agent.measurements
    }
    for artifact, one in single.items():
        for n in threads or []:
            if f"{artifact} x{n}" not in out:
                wanted = one.model_copy(update={"threads": n, "instructions_per_thread": []})
                out[f"{artifact} x{n}"] = estimate_for(wanted, infos.get(artifact), board, one, input_shape)
    return out
