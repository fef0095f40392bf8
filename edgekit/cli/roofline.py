"""`edgekit roofline ARTIFACT --board pi4|pi5`: MACs, parameters, bytes moved and the lower bound on latency
from the board's peak compute and bandwidth, with the MAC-based estimate beside it; and what that bound is worth
beside an instruction-count estimate (edgekit.estimate.roofline.bound_note, also printed by `edgekit estimate`).
A bound from published specs and a MAC count, never a measured latency.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

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
    mac_estimate,
    ms,
    print_json,
)
from edgekit.cli.shapes import parse_shape
from edgekit.errors import UsageError
from edgekit.estimate.roofline import bound_note
from edgekit.formats import Precision, Runtime
from edgekit.terminal import plain

if TYPE_CHECKING:
    from edgekit.estimate.cost_model import Estimate


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
    from edgekit.estimate.boards import board as get_board
    from edgekit.estimate.graph import analyze
    from edgekit.estimate.roofline import roofline
    from edgekit.estimate.zero_weights import named_as_given, weights_for

    b = get_board(board)
    from edgekit.path_kind import not_a_file

    why = not_a_file(artifact, "model file")  # a missing one went on to an internal FileNotFoundError
    if why:
        raise UsageError(why, where=str(artifact), hint="give an .onnx, .tflite or ncnn .param")
    given = artifact
    artifact, zero_note = weights_for(artifact)  # a bare .param alone: zero weights, as benchncnn
    with named_as_given(given, artifact):  # errors name the user's file, not the zero-weight copy
        cost = analyze(artifact, parse_shape(input_shape, "--input-shape"))
        runs = artifact_runs_as(artifact, fmt)
    notes = [*cost.notes, *filter(None, [zero_note])]
    r = roofline(cost, b, threads, runs.precision, runs.storage_bytes)
    # the MAC-based estimate needs MACs: a graph without convolutions or matrix products has none to scale
    # with the file's format, int8 kernels, layer types and fp16 flags: `estimate`'s widening and "not validated"
    est = mac_estimate(b.name, cost, runs, artifact, threads, list(notes)) if cost.macs else None
    clipped = _clip_at_bound(est, r.lower_bound_ms) if est else None
    no_estimate = (
        "none: the graph has no MACs (no convolution or matrix product) for the MAC-based cost model"
    )
    if as_json:
        print_json(
            {
                "artifact": str(
                    given
                ),  # the user's file (not a zero-weight copy), as `estimate --json` names it
                "board": b.name,
                "threads": threads,
                "roofline": r.to_dict(),
                "estimate": {**est.to_dict(), **_clip_fields(clipped)} if est else None,
                **({} if est else {"no_estimate": no_estimate}),
                "macs_by_op": cost.macs_by_op,
                "notes": notes,
            }
        )
        return
    mb = 1e6
    # ncnn holds float weights in fp16 (unless its options say not), every runtime int8 ones in a byte; an ONNX
    # file or a float .tflite names no runtime that does: 2 bytes is then the fewest, so the bound still holds
    held = (
        "as the runtime holds them"
        if runs.int8
        or runs.precision in (Precision.INT8, Precision.DYNAMIC)
        or runs.storage_bytes is not None
        or (runs.fmt.runtime is Runtime.NCNN if runs.fmt else artifact.suffix == ".param")
        else "(fp16 storage, the fewest a runtime holds a float weight in: onnxruntime and TFLite hold 4, so "
        "the bound holds for them too)"
    )
    console.print(f"[bold]{plain(given)}[/] ({cost.kind}) on {b.title}, {r.threads} core(s)", highlight=False)
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
            f"{r.weight_storage_bytes} byte{'s' if r.weight_storage_bytes != 1 else ''} each {held} + I/O); "
            f"{ms(r.traffic_ms)} ms with no reuse",
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
        console.print(f"  estimate        {plain(no_estimate)}", highlight=False)
        for note in notes:
            console.print(f"  [dim]note: {plain(note)}[/]", highlight=False)
        return
    validated = "" if est.calibrated else " [yellow]not validated (see the notes)[/]"
    console.print(
        f"  estimate        {ms(est.estimate_ms)} ms, {'80 % ' if est.calibrated else ''}interval {ms(est.low_ms)} .. "
        f"{ms(est.high_ms)} ms"
        f"{validated} (method {est.method}; {ms(est.estimate_ms / max(r.lower_bound_ms, 1e-9))}x the bound) "
        "[dim]MAC-based estimate, not a measurement[/]",
        highlight=False,
    )
    below = bound_note(cost, r, est, runs.precision)
    for note in [*est.caveats, *([below] if below else [])]:
        console.print(f"  [dim]note: {plain(note)}[/]", highlight=False)


def _clip_at_bound(est: Estimate, bound_ms: float) -> float | None:
    """The MAC-based interval's low end clipped at the lower bound (the cost model's own low end returned, None
    where it was not clipped): mbv3 at 224 printed "lower bound 5.01 ms" beside "interval 1.89 .. 25.3 ms", times
    its own bound calls impossible. An estimate below the bound is left as it is (bound_note says so): the bound
    is then in doubt, not the interval."""
    if est.low_ms >= bound_ms or est.estimate_ms < bound_ms:
        return None
    own = float(est.low_ms)
    est.low_ms = bound_ms
    est.caveats.append(
        f"the interval's low end is the roofline lower bound ({ms(bound_ms)} ms): the cost model's own low end, "
        f"{ms(own)} ms, is below it, faster than the board's published peaks allow"
    )
    return own


def _clip_fields(own_low_ms: float | None) -> dict[str, Any]:
    """The JSON's record of the clip: whether low_ms is the roofline bound, and the cost model's own low end."""
    from edgekit.estimate.cost_model import significant

    return {
        "low_clipped_at_lower_bound": own_low_ms is not None,
        "low_ms_before_clip": significant(own_low_ms) if own_low_ms is not None else None,
    }


def register(app: typer.Typer) -> None:
    app.command("roofline")(roofline_cmd)
