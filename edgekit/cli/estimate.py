"""`edgekit estimate ARTIFACT --board pi4|pi5`: the board's latency estimated from a count.

It counts the guest instructions of one inference on the board's emulated core (locally, under the counting
qemu; no SSH), then applies the calibrated cost model; an ONNX file (not runnable on the device) is estimated
from its MACs. The roofline bound is printed beside it (edgekit.cli.roofline: `edgekit roofline`). Every number
is labelled for what it is: an instruction count, an emulated time, an estimate, or a bound; none is a measured
latency.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from edgekit.cli.bench import check_timeout
from edgekit.cli.inputs import check_model_file
from edgekit.cli.shapes import parse_shape
from edgekit.errors import InputDataError, UsageError
from edgekit.terminal import Console, plain, stdout_to_devnull, ticking_status


def print_json(data: dict[str, Any]) -> None:
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


def artifact_runs_as(artifact: Path, fmt: str | None) -> Any:
    from edgekit.estimate.runs_as import runs_as

    return runs_as(artifact, _format_of(artifact, fmt))


# the arguments `estimate` and `roofline` (edgekit.cli.roofline) share
ARTIFACT = typer.Argument(
    ...,
    callback=check_model_file,
    help="a .tflite, an ncnn .param (its .bin beside it; a bare .param alone: zero weights, as benchncnn) or an .onnx",
)
BOARD = typer.Option(..., "--board", "-b", help="pi4 or pi5")
THREADS = typer.Option(1, "--threads", "-t", min=1, help="threads on the real board")
INPUT_SHAPE = typer.Option(
    None,
    "--input-shape",
    help="NCHW: for a .param without sidecar, or an .onnx or .tflite with free dimensions (batch 1)",
)
FORMAT = typer.Option(None, "--format", help="the artifact's format if no metadata says it")
AS_JSON = typer.Option(False, "--json", help="print JSON instead of text")


def estimate_cmd(
    artifact: Path = ARTIFACT,
    board: str = BOARD,
    threads: int = THREADS,
    input_shape: str | None = INPUT_SHAPE,
    fmt: str | None = FORMAT,
    as_json: bool = AS_JSON,
    timeout: float = typer.Option(
        3600.0,
        "--timeout",
        callback=check_timeout,
        help="seconds each counting run under qemu may take before it is stopped (a big model: minutes)",
    ),
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
    from edgekit.estimate.zero_weights import named_as_given, weights_for

    b = get_board(board)
    from edgekit.path_kind import not_a_file

    why = not_a_file(artifact, "model file")
    if why:
        raise UsageError(why, where=str(artifact), hint="give an .onnx, .tflite or ncnn .param")
    from edgekit.convert.cache import mark_used

    mark_used(artifact)  # a cache entry estimated by path is in use: `cache prune` keeps it
    shape = parse_shape(input_shape, "--input-shape")
    given = artifact
    artifact, zero_note = weights_for(artifact)  # a bare .param alone: zero weights, as benchncnn
    with named_as_given(given, artifact):  # errors name the user's file, not the zero-weight copy
        cost = analyze(artifact, shape)
        runs = artifact_runs_as(artifact, fmt)
    bound = roofline(cost, b, threads, runs.precision, runs.storage_bytes)
    out: dict[str, Any] = {
        "artifact": str(given),
        "board": b.name,
        "threads": threads,
        "runs_as": runs.how if artifact.suffix != ".onnx" else f"{runs.how} (not run: MAC-based)",
        "roofline": None,  # filled once bound_note has judged it: a count may show it is no bound ("none")
    }
    if zero_note:
        out["weights"] = zero_note
    if artifact.suffix == ".onnx":
        if not cost.macs:
            raise InputDataError(
                "no estimate: an ONNX file is estimated from its MACs, and this graph has none (no convolution "
                "or matrix product)",
                where=str(artifact),
                hint="convert it (`edgekit convert`) and estimate the .tflite or ncnn .param: those are counted "
                "on the emulated core",
            )
        est = mac_estimate(
            b.name,
            cost,
            runs,
            artifact,
            threads,
            [
                f"an .onnx is not counted on the emulated core: this estimate is from its MACs alone, blind to the "
                f"runtime ({runs.how}) and its precision; `edgekit bench FILE --target {b.name}-emu` counts it "
                "(onnxruntime: no calibration figure); for the calibrated interval convert it to ncnn (a recipe "
                "with `model: {kind: onnx, path: FILE}`, `formats: [ncnn-fp16]`; `edgekit convert`) and estimate "
                "the .param",
                *cost.notes,
            ],
        )
    else:
        with named_as_given(given, artifact):  # a counting error names the user's file too
            feats, counted = _count(artifact, b, threads, shape, cost, runs.int8, runs.count_options, timeout)
        out["count"] = counted
        est = cost_model.estimate(
            b.name,
            feats,
            threads,
            fmt=runs.fmt,
            caveats=list(cost.notes),
            layer_types=cost_model.graph_layer_types(cost),
            fp16_off=runs.fp16_off,
        )
    out["estimate"] = est.to_dict()
    from edgekit.estimate.roofline import bound_note

    note = bound_note(cost, bound, est, runs.precision)
    if note:
        out["estimate"]["caveats"].append(note)
    out["roofline"] = bound.to_dict()  # after bound_note: "compute-bound" beside "no bound here" before
    if as_json:
        print_json(out)
        return
    _print_estimate(out, b.title)


def mac_estimate(board: str, cost: Any, runs: Any, artifact: Path, threads: int, caveats: list[str]) -> Any:
    """The MAC-based estimate (`roofline`, an ONNX file) with what `estimate` checks on a count: the format (an
    .onnx without one runs on onnxruntime: no calibration figure, as any runtime but ncnn), the int8 kernels,
    the layer types no calibration model has and ncnn's fp16 flags, so the same widening and "not validated"
    rules apply."""
    from edgekit.estimate import cost_model
    from edgekit.formats import Format, Precision

    fmt = runs.fmt
    if fmt is None and artifact.suffix == ".onnx":
        fmt = Format.ONNX_INT8 if runs.precision is Precision.INT8 else Format.ONNX_FP32
    return cost_model.estimate(
        board,
        cost_model.Features(0, cost.params, runs.int8, {}, cost.macs),
        threads,
        fmt=fmt,
        caveats=caveats,
        layer_types=cost_model.graph_layer_types(cost),
        fp16_off=runs.fp16_off,
    )


def _count(
    artifact: Path,
    b: Any,
    threads: int,
    shape: list[int] | None,
    cost: Any,
    int8: bool,
    options: dict[str, bool] | None = None,
    timeout_s: float = 3600.0,
) -> tuple[Any, dict[str, Any]]:
    """Features of the artifact on the board's core: the one-thread count, and the N-thread split only when the
    cost model for N threads uses it. Counts come from the count cache when this artifact was counted before
    (`options`, a bare .param's ncnn flags from its --format, are part of the cache key)."""
    from edgekit.emu.plugin import cycles
    from edgekit.emu.plugin.counting import CountJob, heartbeat
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
        blocks = n == 1 and cycles.models(b.core) and cycles.tools_present()  # so are llvm-mca's cycles
        with (
            heartbeat(say, f"{artifact.name} on {b.emulated_device}, {n} thread(s)"),
            ticking_status(
                err_console,
                f"counting instructions on {b.emulated_device} ({b.core}) under qemu, {n} thread(s)"
                + (", caches simulated" if caches else "")
                + (", blocks timed by llvm-mca" if blocks else ""),
            ),
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
                    blocks=blocks,
                ),
                b.emulated_device,
                say,
                timeout_s,
            )
        return res, cached

    first, cached = one(1)
    counted: dict[str, Any] = {**first.to_dict(), "window_misses": first.window_misses, "cached": cached}
    if (
        counted.get("cycles", -1) < 0
    ):  # the count's 'not timed' (-1.0: no llvm-mca model of this core) is null
        counted["cycles"] = None
    busiest: dict[int, int] = {}
    # 2 or 3 threads are interpolated towards 4, which is estimated as `--threads 4` is: with its split
    n = cost_model.split_threads(threads, b.cores)
    if n is not None:  # the thread split: forms on the busiest thread use it
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
        first.instructions,
        cost.params,
        int8,
        busiest,
        cost.macs,
        mix,
        cost.activation_bytes,
        l1,
        llc,
        max(first.cycles, 0.0),
    ), counted


def _print_estimate(out: dict[str, Any], title: str) -> None:
    est, bound = out["estimate"], out["roofline"]
    asked, used = out["threads"], est.get("threads", out["threads"])
    threads = (
        f"{asked} thread(s)" if asked == used else f"{asked} threads, estimated as {used} (the board's cores)"
    )
    console.print(
        f"[bold]{plain(out['artifact'])}[/] on {title}, {threads}; runs as {plain(out['runs_as'])}",
        highlight=False,
    )
    if out.get("weights"):
        console.print(f"  weights       {plain(out['weights'])}", highlight=False)
    count = out.get("count")
    if count:
        cached = " (from the count cache)" if count.get("cached") else ""
        console.print(
            f"  instructions  {count['instructions']:,d} per invoke (guest instruction count, "
            f"emulated {count['cpu']}, 1 thread{cached}; emulated wall time is not latency)",
            highlight=False,
        )
        if (count.get("cycles") or 0) > 0:
            console.print(
                f"  cycles        {count['cycles']:,.0f} per invoke (the counted blocks timed by llvm-mca's model of "
                f"the core's pipeline, every load an L1 hit: a cost model's input, not a measurement)",
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
    level = f"{int(100 * est['interval_level'])} % interval" if est.get("interval_level") else "interval"
    cv = est["cross_validation"]
    validated = "" if est["interval_calibrated"] else " [yellow]not validated (see the notes)[/]"
    console.print(
        f"  [bold]estimate[/]      {ms(est['estimate_ms'])} ms, {level} {ms(est['low_ms'])} .. "
        f"{ms(est['high_ms'])} ms{validated}; [dim]an estimate, not a measurement[/]",
        highlight=False,
    )
    ends = cv.get("ends")  # an interpolated estimate: each end's own cross-validation
    for part in ends or [cv]:
        which = f" at {part['threads']} thread(s)" if ends else f" {est['method']}"
        # `held` counts the procedure's ordinary interval: beside a widened one, say which interval held
        ordinary = part.get("procedure_interval") or part.get("held_interval") or part.get("interval")
        held = (
            f"the ordinary {ordinary} interval held"
            if ends or part.get("procedure_interval")
            else "interval held"
        )
        console.print(
            f"  [dim]cost model{which}: leave-one-model-out on {part['n']} ncnn benchmark models, the weighting "
            f"included: median |error| {100 * part['median']:.0f} %, p90 {100 * part['p90']:.0f} %, {held} "
            f"{part['held']} of {part['n']}[/]",
            highlight=False,
        )
    scaling = cv.get("thread_scaling")
    if scaling:
        console.print(
            f"  [dim]threads       t({est['threads']})/t(1) {scaling['ratio']:.2f} by {scaling['form']} (the busiest "
            f"thread does {100 * scaling['busiest_share']:.0f} % of the work; misses per instruction do not scale): "
            f"half the estimate is the 1-thread {ms(scaling['one_thread_ms'])} ms x that ratio[/]",
            highlight=False,
        )
    if bound["bound"] == "none":
        console.print(
            f"  roofline      {ms(bound['lower_bound_ms'])} ms [yellow]not a bound for this artifact (see the "
            "notes)[/]",
            highlight=False,
        )
    else:
        console.print(
            f"  roofline      {ms(bound['lower_bound_ms'])} ms ({bound['bound']}-bound, "
            f"{bound['precision']} peak {bound['peak_gmacs']:.1f} GMAC/s; {bound['label']})",
            highlight=False,
        )
    for note in est["caveats"]:
        console.print(
            f"  [dim]note: {plain(note)}[/]", highlight=False
        )  # a note may hold [brackets]: shown as is


def ms(value: float) -> str:
    """Milliseconds to three significant digits (a tiny model is 0.0123 ms, not 0.0), whole ms from 1000."""
    return f"{value:.0f}" if value >= 1000 else f"{value:.3g}"


def register(app: typer.Typer) -> None:
    app.command("estimate")(estimate_cmd)
