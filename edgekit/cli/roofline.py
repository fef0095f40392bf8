"""`edgekit roofline ARTIFACT --board pi4|pi5`: MACs, parameters, bytes moved and the lower bound on latency
from the board's peak compute and bandwidth, with the MAC-based estimate beside it; and what that bound is worth
beside an instruction-count estimate (`bound_note`, also printed by `edgekit estimate`). A bound from published
specs and a MAC count, never a measured latency.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from edgekit.cli.estimate import (
    ARTIFACT,
    AS_JSON,
    BOARD,
    FORMAT,
    INPUT_SHAPE,
    THREADS,
    artifact_runs_as,
    console,
    ms,
    print_json,
)
from edgekit.cli.shapes import parse_shape


def bound_note(cost: Any, bound: Any, est: Any, precision: Any) -> str:
    """What the roofline bound is worth beside the estimate. With a count, the graph's MACs are checked against
    the SIMD/FP instructions counted (roofline.macs_the_count_can_hold): more MACs than those can execute mean
    the graph reader miscounted (a BATCH_MATMUL with adj_x counted 16x its MACs and its "bound", 0.938 ms, sat
    above a 0.531 ms estimate with "the board cannot be that fast"), and the bound is flagged as no bound. Only a
    bound that passes is called the floor; that claim still rests on the MAC count and the published peaks."""
    from edgekit.estimate.roofline import executed_macs, macs_the_count_can_hold

    mix = est.features.mix
    if len(mix) == 5 and est.features.instructions:
        most = macs_the_count_can_hold(mix, precision)
        if executed_macs(cost) > most:
            bound.bound = "none"
            return (
                f"the roofline figure ({bound.lower_bound_ms:.3g} ms) is no bound here: it is built on "
                f"{cost.macs / 1e6:.3g} M MACs read from the graph, more than the {mix[0] + mix[4]:,d} SIMD/FP and "
                f"integer data-processing instructions counted can execute (at most {most / 1e6:.3g} M at "
                f"{precision.value}); the graph's MAC count is wrong for this artifact, the estimate stands on the "
                "instruction count"
            )
        if est.estimate_ms < bound.lower_bound_ms:
            return (
                f"the estimate is below the roofline lower bound ({bound.lower_bound_ms:.3g} ms from "
                f"{cost.macs / 1e6:.3g} M MACs, which the counted instructions can hold): if every one of "
                "those MACs runs and the published peaks hold, the board cannot be that fast; take the bound as "
                "the floor"
            )
        return ""
    if est.estimate_ms < bound.lower_bound_ms:  # MAC-based: the cost model extrapolates below the peak specs
        return (
            f"the estimate is below the roofline lower bound ({bound.lower_bound_ms:.3g} ms) from the same "
            f"{cost.macs / 1e6:.3g} M MACs: if the graph's MAC count is right and the published peaks hold, the "
            "board cannot be that fast; take the bound as the floor"
        )
    return ""


def roofline_cmd(
    artifact: Path = ARTIFACT,
    board: str = BOARD,
    threads: int = THREADS,
    input_shape: str | None = INPUT_SHAPE,
    fmt: str | None = FORMAT,
    as_json: bool = AS_JSON,
) -> None:
    """MACs, parameters, bytes moved, and the lower bound on latency from the board's peak specs.

    Beside it, the MAC-based estimate, so you see how far the model is from the hardware's limit (run
    `edgekit estimate` for the instruction-count estimate, which sees the runtime and the precision).

    Example: edgekit roofline model.onnx --board pi4 --threads 4
    """
    from edgekit.estimate import cost_model
    from edgekit.estimate.boards import board as get_board
    from edgekit.estimate.graph import analyze
    from edgekit.estimate.roofline import roofline
    from edgekit.estimate.zero_weights import weights_for

    b = get_board(board)
    given = artifact
    artifact, zero_note = weights_for(artifact)  # a bare .param alone: zero weights, as benchncnn
    cost = analyze(artifact, parse_shape(input_shape, "--input-shape"))
    notes = [*cost.notes, *filter(None, [zero_note])]
    runs = artifact_runs_as(artifact, fmt)
    r = roofline(cost, b, threads, runs.precision, runs.storage_bytes)
    # the MAC-based estimate needs MACs: a graph without convolutions or matrix products has none to scale
    est = (
        cost_model.estimate(
            b.name,
            cost_model.Features(0, cost.params, False, {}, cost.macs),
            threads,
            caveats=list(notes),
        )
        if cost.macs
        else None
    )
    no_estimate = (
        "none: the graph has no MACs (no convolution or matrix product) for the MAC-based cost model"
    )
    if as_json:
        print_json(
            {
                "roofline": r.to_dict(),
                "estimate": est.to_dict() if est else None,
                **({} if est else {"no_estimate": no_estimate}),
                "macs_by_op": cost.macs_by_op,
                "notes": notes,
            }
        )
        return
    mb = 1e6
    console.print(f"[bold]{given}[/] ({cost.kind}) on {b.title}, {r.threads} core(s)", highlight=False)
    rows = [
        ("MACs", f"{cost.macs / 1e6:,.1f} M"),
        ("parameters", f"{cost.params / 1e6:,.3f} M"),
        ("weights", f"{cost.weight_bytes / mb:,.2f} MB"),
        ("bytes moved", f"{cost.bytes_moved / mb:,.2f} MB (no reuse: weights + every activation in/out)"),
        ("peak compute", f"{r.peak_gmacs:,.1f} GMAC/s ({r.precision})"),
        ("peak bandwidth", f"{r.mem_bw_gbs:.1f} GB/s"),
        ("compute time", f"{ms(r.compute_ms)} ms"),
        (
            "memory time",
            f"{ms(r.memory_ms)} ms compulsory ({r.compulsory_bytes / mb:,.3f} MB: weights at "
            f"{r.weight_storage_bytes} bytes each as the runtime holds them + I/O); {ms(r.traffic_ms)} ms with no "
            "reuse",
        ),
        (
            "intensity",
            f"{r.intensity_macs_per_byte:.1f} MAC/byte of compulsory traffic (ridge {r.ridge_macs_per_byte:.1f}: "
            f"above it the bound is compute); {r.intensity_no_reuse_macs_per_byte:.1f} with no reuse",
        ),
    ]
    for name, value in rows:
        console.print(f"  {name:15s} {value}", highlight=False)
    console.print(
        f"  [bold]lower bound[/]     {ms(r.lower_bound_ms)} ms ({r.bound}-bound) "
        "[dim]roofline bound from published specs, not a measurement[/]",
        highlight=False,
    )
    if est is None:
        console.print(f"  estimate        {no_estimate}", highlight=False)
        for note in notes:
            console.print(f"  [dim]note: {note}[/]", highlight=False)
        return
    console.print(
        f"  estimate        {ms(est.estimate_ms)} ms, 80 % interval {ms(est.low_ms)} .. {ms(est.high_ms)} ms "
        f"(method {est.method}; {ms(est.estimate_ms / max(r.lower_bound_ms, 1e-9))}x the bound) "
        "[dim]MAC-based estimate, not a measurement[/]",
        highlight=False,
    )
    below = bound_note(cost, r, est, runs.precision)
    for note in [*est.caveats, *([below] if below else [])]:
        console.print(f"  [dim]note: {note}[/]", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("roofline")(roofline_cmd)
