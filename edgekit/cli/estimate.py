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

from edgekit.cli.inputs import check_model_file
from edgekit.cli.shapes import parse_shape
from edgekit.errors import InputDataError, UsageError
from edgekit.terminal import Console, plain, stdout_to_devnull


def _print_json(data: dict[str, Any]) -> None:
    try:
        print(json.dumps(data, indent=1), flush=True)
    except BrokenPipeError:
        stdout_to_devnull()
        raise SystemExit(0) from None


console = Console()  # a closed pipe ends quietly (edgekit.terminal.Console)
err_console = Console(stderr=True)
if not console.is_terminal:  # logs and CI: keep each line whole
    console.width = max(console.width, 130)


def _format_of(artifact: Path, fmt: str | None) -> Any:
    from edgekit.cli.formats import agreeing_format
    from edgekit.estimate.roofline import artifact_format
    from edgekit.formats import Format

    try:
        given = Format(fmt) if fmt else None
    except ValueError:
        raise UsageError(
            f"unknown format {fmt!r}", where="--format", hint=", ".join(f.value for f in Format)
        ) from None
    if given is not None and given.files[0] != artifact.suffix:  # a .param is not a TFLite model
        fitting = [f.value for f in Format if f.files[0] == artifact.suffix]
        raise UsageError(
            f"--format {given.value} is a {given.files[0]} file; {artifact.name} is a {artifact.suffix or 'suffix-less'} "
            "file",
            where="--format",
            hint=f"a {artifact.suffix} file is one of: {', '.join(fitting)}"
            if fitting
            else "leave --format out",
        )
    return agreeing_format(given, artifact_format(artifact))


def _runs_as(artifact: Path, fmt: str | None) -> Any:
    from edgekit.estimate.runs_as import runs_as

    return runs_as(artifact, _format_of(artifact, fmt))


def estimate_cmd(
    artifact: Path = typer.Argument(
        ..., callback=check_model_file, help="a .tflite, an ncnn .param (its .bin beside it) or an .onnx"
    ),
    board: str = typer.Option(..., "--board", "-b", help="pi4 or pi5"),
    threads: int = typer.Option(1, "--threads", "-t", min=1, help="threads on the real board"),
    input_shape: str | None = typer.Option(
        None,
        "--input-shape",
        help="NCHW: for a .param without sidecar, or an .onnx with free dimensions (batch 1)",
    ),
    fmt: str | None = typer.Option(None, "--format", help="the artifact's format if no metadata says it"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of text"),
) -> None:
    """Estimate the latency of one inference on a real Pi 4 / Pi 5, with its cross-validated 80 % interval.

    Counts the artifact's ARM instructions on the emulated core (exact; kept in a cache, so 1 and 4 threads or
    a second board with the same core count once), then applies the cost model cross-validated on ncnn's own
    benchmark models and their published Pi figures. Slow for big models: qemu runs each invocation in seconds.

    Example: edgekit estimate ~/.local/share/edgekit/cache/KEY/model.param --board pi5 --threads 4
    """
    from edgekit.estimate import cost_model
    from edgekit.estimate.boards import board as get_board
    from edgekit.estimate.graph import analyze
    from edgekit.estimate.roofline import roofline

    b = get_board(board)
    if not artifact.exists():
        raise UsageError(
            "no such model file", where=str(artifact), hint="give an .onnx, .tflite or ncnn .param"
        )
    shape = parse_shape(input_shape, "--input-shape")
    cost = analyze(artifact, shape)
    runs = _runs_as(artifact, fmt)
    bound = roofline(cost, b, threads, runs.precision, runs.storage_bytes)
    out: dict[str, Any] = {
        "artifact": str(artifact),
        "board": b.name,
        "threads": threads,
        "runs_as": runs.how if artifact.suffix != ".onnx" else f"{runs.how} (not run: MAC-based)",
        "roofline": bound.to_dict(),
    }
    if artifact.suffix == ".onnx":
        if not cost.macs:
            raise InputDataError(
                "no estimate: an ONNX file is estimated from its MACs, and this graph has none (no convolution "
                "or matrix product)",
                where=str(artifact),
                hint="convert it (`edgekit convert`) and estimate the .tflite or ncnn .param: those are counted "
                "on the emulated core",
            )
        feats = cost_model.Features(0, cost.params, False, {}, cost.macs)
        est = cost_model.estimate(
            b.name,
            feats,
            threads,
            caveats=[
                f"an .onnx is not counted on the emulated core: this estimate is from its MACs alone, blind to the "
                f"runtime ({runs.how}) and its precision; `edgekit bench FILE --target {b.name}-emu` counts it",
                *cost.notes,
            ],
        )
    else:
        feats, counted = _count(artifact, b, threads, shape, cost, runs.int8, runs.count_options)
        out["count"] = counted
        est = cost_model.estimate(
            b.name,
            feats,
            threads,
            fmt=runs.fmt,
            caveats=[*cost.notes, *filter(None, [runs.calibration_note()])],
            layer_types=cost.layer_types,
        )
    out["estimate"] = est.to_dict()
    note = _bound_note(cost, bound, est, runs.precision)
    if note:
        out["estimate"]["caveats"].append(note)
    if as_json:
        _print_json(out)
        return
    _print_estimate(out, b.title)


def _bound_note(cost: Any, bound: Any, est: Any, precision: Any) -> str:
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


def _count(
    artifact: Path,
    b: Any,
    threads: int,
    shape: list[int] | None,
    cost: Any,
    int8: bool,
    options: dict[str, bool] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Features of the artifact on the board's core: the one-thread count, and the N-thread split only when the
    cost model for N threads uses it. Counts come from the count cache when this artifact was counted before
    (`options`, a bare .param's ncnn flags from its --format, are part of the cache key)."""
    from edgekit.emu.plugin.counting import CountJob
    from edgekit.estimate import cost_model
    from edgekit.estimate.calibration import INPUT_FILL
    from edgekit.estimate.counts import count_cached
    from edgekit.estimate.forms import misses_of

    bare = artifact.suffix == ".param" and not artifact.with_suffix(".io.json").exists()
    fill = INPUT_FILL if bare else None  # a bare .param is counted the way benchncnn runs it

    def say(message: str) -> None:  # progress on stderr: stdout may be --json
        err_console.print(f"[dim]{plain(message)}[/]", highlight=False)

    def one(n: int) -> Any:
        caches = b.caches if n == 1 else ()  # the miss features are counted at one thread
        with err_console.status(
            f"counting instructions on {b.emulated_device} ({b.core}) under qemu, {n} thread(s)"
            + (", caches simulated" if caches else "")
        ):
            res, cached = count_cached(
                CountJob(
                    artifact,
                    threads=n,
                    input_shape=shape,
                    repeat=1,
                    fill=fill,
                    options=dict(options or {}),
                    caches=caches,
                ),
                b.emulated_device,
                say,
            )
        return res, cached

    first, cached = one(1)
    counted: dict[str, Any] = {**first.to_dict(), "window_misses": first.window_misses, "cached": cached}
    busiest: dict[int, int] = {}
    n = min(threads, b.cores)
    # 2 or 3 threads are interpolated towards 4, which is estimated as `--threads 4` is: with its split
    n = next((t for t in cost_model.CALIBRATED_THREADS if t >= n), n) if n > 1 else n
    if n > 1 and n in cost_model.CALIBRATED_THREADS:  # the thread split: forms on the busiest thread use it
        split, split_cached = one(n)
        busiest[n] = split.busiest_thread
        counted["threads_split"] = {
            "threads": n,
            "per_thread": split.per_thread,
            "cached": split_cached,
            "busiest_thread": split.busiest_thread,
        }
    mix = tuple(first.mix[0]) if first.mix else ()
    l1, llc = misses_of(first.window_misses)
    return cost_model.Features(
        first.instructions, cost.params, int8, busiest, cost.macs, mix, cost.activation_bytes, l1, llc
    ), counted


def _print_estimate(out: dict[str, Any], title: str) -> None:
    est, bound = out["estimate"], out["roofline"]
    console.print(
        f"[bold]{out['artifact']}[/] on {title}, {out['threads']} thread(s); runs as {out['runs_as']}",
        highlight=False,
    )
    count = out.get("count")
    if count:
        cached = " (from the count cache)" if count.get("cached") else ""
        console.print(
            f"  instructions  {count['instructions']:,d} per invoke (guest instruction count, "
            f"emulated {count['cpu']}, 1 thread{cached}; emulated wall time is not latency)",
            highlight=False,
        )
        window = count.get("window_misses") or []
        if len(window) >= 3:
            levels = ", ".join(f"L{i} {m:,d}" for i, m in enumerate(window[1:], start=1))
            console.print(
                f"  cache misses  {levels} of {window[0]:,d} data accesses (simulated caches of the board's sizes, "
                "LRU, a simple stream prefetcher: not the board's counters)",
                highlight=False,
            )
    level = int(100 * est["interval_level"])
    cv = est["cross_validation"]
    validated = "" if est["interval_calibrated"] else " [yellow]not validated (see the notes)[/]"
    console.print(
        f"  [bold]estimate[/]      {_ms(est['estimate_ms'])} ms, {level} % interval {_ms(est['low_ms'])} .. "
        f"{_ms(est['high_ms'])} ms{validated}; [dim]an estimate, not a measurement[/]",
        highlight=False,
    )
    ends = cv.get("ends")  # an interpolated estimate: each end's own cross-validation
    for part in ends or [cv]:
        which = f" at {part['threads']} thread(s)" if ends else f" {est['method']}"
        console.print(
            f"  [dim]cost model{which}: leave-one-model-out on {part['n']} ncnn benchmark models, the weighting "
            f"included: median |error| {100 * part['median']:.0f} %, p90 {100 * part['p90']:.0f} %, interval held "
            f"{part['held']} of {part['n']}[/]",
            highlight=False,
        )
    scaling = cv.get("thread_scaling")
    if scaling:
        console.print(
            f"  [dim]threads       t({est['threads']})/t(1) {scaling['ratio']:.2f} by {scaling['form']} (the busiest "
            f"thread does {100 * scaling['busiest_share']:.0f} % of the work; misses per instruction do not scale): "
            f"half the estimate is the 1-thread {_ms(scaling['one_thread_ms'])} ms x that ratio[/]",
            highlight=False,
        )
    if bound["bound"] == "none":
        console.print(
            f"  roofline      {_ms(bound['lower_bound_ms'])} ms [yellow]not a bound for this artifact (see the "
            "notes)[/]",
            highlight=False,
        )
    else:
        console.print(
            f"  roofline      {_ms(bound['lower_bound_ms'])} ms ({bound['bound']}-bound, "
            f"{bound['precision']} peak {bound['peak_gmacs']:.1f} GMAC/s; {bound['label']})",
            highlight=False,
        )
    for note in est["caveats"]:
        console.print(f"  [dim]note: {note}[/]", highlight=False)


def roofline_cmd(
    artifact: Path = typer.Argument(
        ..., callback=check_model_file, help="a .tflite, an ncnn .param (its .bin beside it) or an .onnx"
    ),
    board: str = typer.Option(..., "--board", "-b", help="pi4 or pi5"),
    threads: int = typer.Option(1, "--threads", "-t", min=1, help="cores used on the real board"),
    input_shape: str | None = typer.Option(
        None,
        "--input-shape",
        help="NCHW: for a .param without sidecar, or an .onnx with free dimensions (batch 1)",
    ),
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
    from edgekit.estimate.roofline import roofline

    b = get_board(board)
    cost = analyze(artifact, parse_shape(input_shape, "--input-shape"))
    runs = _runs_as(artifact, fmt)
    r = roofline(cost, b, threads, runs.precision, runs.storage_bytes)
    # the MAC-based estimate needs MACs: a graph without convolutions or matrix products has none to scale
    est = (
        cost_model.estimate(
            b.name,
            cost_model.Features(0, cost.params, False, {}, cost.macs),
            threads,
            caveats=list(cost.notes),
        )
        if cost.macs
        else None
    )
    no_estimate = (
        "none: the graph has no MACs (no convolution or matrix product) for the MAC-based cost model"
    )
    if as_json:
        _print_json(
            {
                "roofline": r.to_dict(),
                "estimate": est.to_dict() if est else None,
                **({} if est else {"no_estimate": no_estimate}),
                "macs_by_op": cost.macs_by_op,
                "notes": list(cost.notes),
            }
        )
        return
    mb = 1e6
    console.print(f"[bold]{artifact}[/] ({cost.kind}) on {b.title}, {r.threads} core(s)", highlight=False)
    rows = [
        ("MACs", f"{cost.macs / 1e6:,.1f} M"),
        ("parameters", f"{cost.params / 1e6:,.3f} M"),
        ("weights", f"{cost.weight_bytes / mb:,.2f} MB"),
        ("bytes moved", f"{cost.bytes_moved / mb:,.2f} MB (no reuse: weights + every activation in/out)"),
        ("peak compute", f"{r.peak_gmacs:,.1f} GMAC/s ({r.precision})"),
        ("peak bandwidth", f"{r.mem_bw_gbs:.1f} GB/s"),
        ("compute time", f"{_ms(r.compute_ms)} ms"),
        (
            "memory time",
            f"{_ms(r.memory_ms)} ms compulsory ({r.compulsory_bytes / mb:,.3f} MB: weights at "
            f"{r.weight_storage_bytes} bytes each as the runtime holds them + I/O); {_ms(r.traffic_ms)} ms with no "
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
        f"  [bold]lower bound[/]     {_ms(r.lower_bound_ms)} ms ({r.bound}-bound) "
        "[dim]roofline bound from published specs, not a measurement[/]",
        highlight=False,
    )
    if est is None:
        console.print(f"  estimate        {no_estimate}", highlight=False)
        for note in cost.notes:
            console.print(f"  [dim]note: {note}[/]", highlight=False)
        return
    console.print(
        f"  estimate        {_ms(est.estimate_ms)} ms, 80 % interval {_ms(est.low_ms)} .. {_ms(est.high_ms)} ms "
        f"(method {est.method}; {_ms(est.estimate_ms / max(r.lower_bound_ms, 1e-9))}x the bound) "
        "[dim]MAC-based estimate, not a measurement[/]",
        highlight=False,
    )
    below = _bound_note(cost, r, est, runs.precision)
    for note in [*est.caveats, *([below] if below else [])]:
        console.print(f"  [dim]note: {note}[/]", highlight=False)


def _ms(value: float) -> str:
    """Milliseconds to three significant digits (a tiny model is 0.0123 ms, not 0.0), whole ms from 1000."""
    return f"{value:.0f}" if value >= 1000 else f"{value:.3g}"


def register(app: typer.Typer) -> None:
    app.command("estimate")(estimate_cmd)
    app.command("roofline")(roofline_cmd)
