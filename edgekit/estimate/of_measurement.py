"""One measurement's labelled estimate of a real board's latency (`estimate_for`): the cost model fed from an
emulated target's counts (one-thread count, instruction mix, simulated misses, llvm-mca cycles, the split between
threads the caller hands in) and the artifact's graph where its files are here; labelled an estimate, never a
field a report could take for a measured latency. Which real board an emulated device stands for
(`board_for_device`). edgekit.estimate.attach makes a whole run's entries, counting the splits they want.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgekit.estimate import cost_model
from edgekit.estimate.boards import BOARDS
from edgekit.estimate.boards import board as get_board
from edgekit.estimate.forms import misses_of
from edgekit.estimate.graph import analyze
from edgekit.estimate.model_cost import ModelCost
from edgekit.estimate.roofline import compute_precision, roofline, weight_storage_bytes
from edgekit.estimate.runs_as import RunsAs, format_fp16_off, runs_as
from edgekit.formats import Format, Precision
from edgekit.results import ArtifactInfo, Measurement

# emulated device -> the real board it stands for (phone-emu: a phone; no calibrated board stands for it)
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
    split_counted: str = "",
    split_at: int | None = None,
) -> dict[str, Any]:
    """A labelled estimate of `measurement`'s artifact on the real `board` at its thread count.

    The cost model wants the one-thread count (counts at more threads include the split between threads, used
    when the measurement has it); pass the same artifact's one-thread measurement as `reference` when
    `measurement` ran with more threads. Returns {"status": "unavailable", "reason": ...} (still labelled) when
    no count exists. `split_counted` says where a split that was not timed came from (a note of the estimate);
    `split_at` is the thread count that split was counted at (default: the measurement's, at most the board's
    cores; 4 for a 2- or 3-thread estimate, whose interpolation reads the 4-thread split).
    """
    base = {
        "label": cost_model.LABEL,
        "board": board,
        "artifact": measurement.artifact,
        "threads": measurement.threads,
    }
    source = reference if reference is not None and reference.instructions_per_invoke else measurement
    if measurement.status != "ok" or not source.instructions_per_invoke:
        # a measurement that failed or was cut short (a Ctrl-C) has no count whatever the counting setting
        why = (
            f"no instruction count: the measurement did not finish ({measurement.error or 'failed'})"
            if measurement.status != "ok"
            else "no instruction count (run the emulated target with emulated.counting: true)"
        )
        return {
            **base,
            "status": "unavailable",
            "reason": why,
        }
    caveats = []
    if source.threads > 1:
        caveats.append(f"count taken at {source.threads} threads: includes the threads' synchronisation")
    if split_counted:
        caveats.append(split_counted)
    fmt = _format(measurement.format)
    cost = _cost(artifact_info, input_shape)
    runs = _runs_as(artifact_info, fmt)
    # the split the cost model reads is at the thread count it estimates (the board's cores at most): a split
    # between more threads than that (99 on a 4-core board) is none it was calibrated on
    cores = get_board(board).cores
    split = measurement.instructions_per_thread
    at = split_at if split_at is not None else min(measurement.threads, cores)
    busiest = {at: max(split)} if measurement.threads > 1 and 0 < len(split) <= cores else {}
    # the miss features are one-thread figures (as calibrated): from a one-thread count only
    l1, llc = misses_of(source.cache_misses) if source.threads == 1 else (-1, -1)
    feats = cost_model.Features(
        source.instructions_per_invoke,
        cost.params if cost else 0,
        runs.int8 if runs else fmt is not None and fmt.precision is Precision.INT8,
        busiest,
        cost.macs if cost else 0,
        tuple(source.instruction_mix),
        cost.activation_bytes if cost else 0,
        l1,
        llc,
        (source.cycles_per_invoke or 0.0) if source.threads == 1 else 0.0,
    )
    est = cost_model.estimate(
        board,
        feats,
        measurement.threads,
        fmt=fmt,
        caveats=caveats,
        count_threads=source.threads,
        layer_types=cost_model.graph_layer_types(cost) if cost is not None else (),
        fp16_off=runs.fp16_off if runs is not None else format_fp16_off(fmt),
    )
    out = {**base, **est.to_dict(), "status": "ok", "instructions_per_invoke": source.instructions_per_invoke}
    if cost is not None and fmt is not None:
        out["roofline_lower_bound_ms"] = round(
            roofline(
                cost,
                get_board(board),
                measurement.threads,
                runs.precision if runs else compute_precision(fmt),
                runs.storage_bytes if runs else weight_storage_bytes(fmt),
            ).lower_bound_ms,
            3,
        )
    return out


def _format(value: str) -> Format | None:
    try:
        return Format(value)
    except ValueError:
        return None


def _runs_as(info: ArtifactInfo | None, fmt: Format | None) -> RunsAs | None:
    """What runs, read from the artifact's files when they are here (an ncnn-int8 artifact the speed plan kept
    all float runs float); None otherwise (the format alone says)."""
    if info is None or not info.files or not Path(info.files[0]).is_file():
        return None
    try:
        return runs_as(Path(info.files[0]), fmt)
    except Exception:  # noqa: BLE001 (an estimate must never break a deploy)
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
