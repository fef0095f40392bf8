"""`edgekit estimate ARTIFACT --board pi4|pi5` and `edgekit roofline ARTIFACT --board pi4|pi5`.

estimate: counts the guest instructions of one inference on the board's emulated core (locally, under the
counting qemu; no SSH), then applies the calibrated cost model; an ONNX file (not runnable on the device) is
estimated from its MACs. roofline: MACs, parameters, bytes moved and the lower bound on latency from the
board's peak compute and bandwidth, with the MAC-based estimate beside it. Every number is labelled for what
it is: an instruction count, an emulated time, an estimate, or a bound; none is a measured latency.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from edgekit.errors import EdgekitError

console = Console()
if not console.is_terminal:  # logs and CI: keep each line whole
    console.width = max(console.width, 130)


def _shape(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(v) for v in text.replace("x", ",").split(",") if v.strip()]
    except ValueError:
        raise EdgekitError(f"bad input shape {text!r}", where="--input-shape", hint="e.g. 1,3,224,224") from None


def _format_of(artifact: Path, fmt: str | None) -> Any:
    from edgekit.estimate.roofline import artifact_format
    from edgekit.formats import Format

    if fmt:
        try:
            return Format(fmt)
        except ValueError:
            raise EdgekitError(f"unknown format {fmt!r}", where="--format",
                               hint=", ".join(f.value for f in Format)) from None
    return artifact_format(artifact)


def estimate_cmd(
    artifact: Path = typer.Argument(..., help="a .tflite, an ncnn .param (its .bin beside it) or an .onnx"),
    board: str = typer.Option(..., "--board", "-b", help="pi4 or pi5"),
    threads: int = typer.Option(1, "--threads", "-t", min=1, help="threads on the real board"),
    input_shape: str | None = typer.Option(None, "--input-shape", help="NCHW, for a .param without sidecar"),
    fmt: str | None = typer.Option(None, "--format", help="the artifact's format if no metadata says it"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of text"),
) -> None:
    """Estimate the latency of one inference on a real Pi 4 / Pi 5 (an estimate with its stated error).

    Counts the artifact's ARM instructions on the emulated core (1 thread, exact), then applies a cost model
    calibrated only on published Pi figures. Slow for big models: qemu runs each invocation in seconds.

    Example: edgekit estimate ~/.local/share/edgekit/cache/KEY/model.param --board pi5 --threads 4
    """
    from edgekit.emu.plugin.counting import CountJob, count_artifacts
    from edgekit.estimate import cost_model
    from edgekit.estimate.boards import board as get_board
    from edgekit.estimate.graph import analyze
    from edgekit.estimate.roofline import compute_precision, roofline

    b = get_board(board)
    shape = _shape(input_shape)
    cost = analyze(artifact, shape)
    artifact_fmt = _format_of(artifact, fmt)
    bound = roofline(cost, b, threads, compute_precision(artifact_fmt))
    out: dict[str, Any] = {"artifact": str(artifact), "board": b.name, "threads": threads,
                           "roofline": bound.to_dict()}
    if artifact.suffix == ".onnx":
        est = cost_model.estimate(b.name, cost.macs, threads, method="macs",
                                  caveats=["ONNX is not run on the device: MAC-based, blind to runtime and precision"])
    else:
        with console.status(f"counting instructions on {b.emulated_device} ({b.core}) under qemu"):
            (count,) = count_artifacts([CountJob(artifact, input_shape=shape, repeat=1)], b.emulated_device)
        out["count"] = count.to_dict()
        est = cost_model.estimate(b.name, count.instructions, threads, fmt=artifact_fmt)
    out["estimate"] = est.to_dict()
    if as_json:
        print(json.dumps(out, indent=1))
        return
    _print_estimate(out, b.title)


def _print_estimate(out: dict[str, Any], title: str) -> None:
    est, bound = out["estimate"], out["roofline"]
    console.print(f"[bold]{out['artifact']}[/] on {title}, {out['threads']} thread(s)", highlight=False)
    count = out.get("count")
    if count:
        console.print(f"  instructions  {count['instructions']:,d} per invoke (guest instruction count, "
                      f"emulated {count['cpu']}, 1 thread; emulated time {count['emulated_ms_per_invoke'][0]:.0f} ms "
                      "is not latency)", highlight=False)
    console.print(f"  [bold]estimate[/]      {est['estimate_ms']:.1f} ms  (calibration error ±{est['error_pct']:.1f} %: "
                  f"{est['low_ms']:.1f} .. {est['high_ms']:.1f} ms; method {est['method']}) "
                  "[dim]estimate, not a measurement[/]", highlight=False)
    console.print(f"  roofline      lower bound {bound['lower_bound_ms']:.2f} ms ({bound['bound']}-bound, "
                  f"{bound['precision']} peak {bound['peak_gmacs']:.1f} GMAC/s)", highlight=False)
    for note in est["caveats"]:
        console.print(f"  [dim]note: {note}[/]", highlight=False)


def roofline_cmd(
    artifact: Path = typer.Argument(..., help="a .tflite, an ncnn .param (its .bin beside it) or an .onnx"),
    board: str = typer.Option(..., "--board", "-b", help="pi4 or pi5"),
    threads: int = typer.Option(1, "--threads", "-t", min=1, help="cores used on the real board"),
    input_shape: str | None = typer.Option(None, "--input-shape", help="NCHW, for a .param without sidecar"),
    fmt: str | None = typer.Option(None, "--format", help="the artifact's format if no metadata says it"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of text"),
) -> None:
    """MACs, parameters, bytes moved, and the lower bound on latency from the board's peak specs.

    Beside it, the MAC-based estimate, so you see how far the model is from the hardware's limit (run
    `edgekit estimate` for the instruction-count estimate, which sees the runtime and the precision).

    Example: edgekit roofline model.onnx --board pi4 --threads 4
    """
    from edgekit.estimate import cost_model
    from edgekit.estimate.boards import board as get_board
    from edgekit.estimate.graph import analyze
    from edgekit.estimate.roofline import compute_precision, roofline

    b = get_board(board)
    cost = analyze(artifact, _shape(input_shape))
    artifact_fmt = _format_of(artifact, fmt)
    r = roofline(cost, b, threads, compute_precision(artifact_fmt))
    est = cost_model.estimate(b.name, cost.macs, threads, method="macs", fmt=artifact_fmt)
    if as_json:
        print(json.dumps({"roofline": r.to_dict(), "estimate": est.to_dict(), "macs_by_op": cost.macs_by_op}, indent=1))
        return
    mb = 1e6
    console.print(f"[bold]{artifact}[/] ({cost.kind}) on {b.title}, {r.threads} core(s)", highlight=False)
    rows = [("MACs", f"{cost.macs / 1e6:,.1f} M"), ("parameters", f"{cost.params / 1e6:,.3f} M"),
            ("weights", f"{cost.weight_bytes / mb:,.2f} MB"),
            ("bytes moved", f"{cost.bytes_moved / mb:,.2f} MB (no reuse: weights + every activation in/out)"),
            ("peak compute", f"{r.peak_gmacs:,.1f} GMAC/s ({r.precision})"),
            ("peak bandwidth", f"{r.mem_bw_gbs:.1f} GB/s"),
            ("compute time", f"{r.compute_ms:.2f} ms"),
            ("memory time", f"{r.memory_ms:.2f} ms compulsory (weights + I/O); {r.traffic_ms:.2f} ms with no reuse"),
            ("intensity", f"{r.intensity_macs_per_byte:.1f} MAC/byte (ridge {r.ridge_macs_per_byte:.1f})")]
    for name, value in rows:
        console.print(f"  {name:15s} {value}", highlight=False)
    console.print(f"  [bold]lower bound[/]     {r.lower_bound_ms:.2f} ms ({r.bound}-bound) "
                  "[dim]roofline bound from published specs, not a measurement[/]", highlight=False)
    console.print(f"  estimate        {est.estimate_ms:.1f} ms ±{100 * est.error:.1f} % (method macs; "
                  f"{est.estimate_ms / max(r.lower_bound_ms, 1e-9):.1f}x the bound) [dim]estimate[/]", highlight=False)
    for note in est.caveats:
        console.print(f"  [dim]note: {note}[/]", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("estimate")(estimate_cmd)
    app.command("roofline")(roofline_cmd)
