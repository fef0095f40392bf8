"""`edgekit profile ARTIFACT --target T`: where one artifact's instructions go, layer by layer (ncnn), op by op
(TFLite) or node by node (ONNX Runtime).

On an emulated target: every layer's guest instructions on the emulated core (locally, under the counting qemu;
no SSH), exactly and repeatably with one thread, with type, output shape, precision and share of the whole
inference. Instruction counts, not latency.

On a real board or `host`: each layer's own wall time, measured by the on-device agent over SSH, next to the
whole inference's p50. A hardware measurement. ncnn: the way the counts are made (extract the layer's output,
minus a re-extract of it), median over `--passes` fresh extractors. onnxruntime: its own profiler's kernel time of
each node of its optimised graph, median over `--passes` runs. TFLite's Python API runs a graph as one call and
has no per-op timer, so a .tflite is profiled on an emulated core only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from edgekit.cli.bench import MAX_TIMEOUT_S, check_timeout
from edgekit.cli.inputs import check_model_file
from edgekit.errors import InputDataError, UsageError
from edgekit.recipe.schema import MAX_THREADS

if TYPE_CHECKING:
    pass


def _device_for(target: str, overrides: list[str]) -> str | None:
    """An emulated target's device (pi4-emu -> pi4-emu); None for a real board or the host (wall time)."""
    from edgekit.deploy.plan import check_before_work
    from edgekit.target import load_target

    if target == "host":
        return None
    loaded = load_target(target, overrides)
    check_before_work(loaded)  # a missing key file, a wrong emulated.cpu: exit 2, as deploy says them
    return loaded.emulated.device if loaded.emulated is not None else None


def profile_cmd(
    artifact: Path = typer.Argument(
        ...,
        callback=check_model_file,
        help="an ncnn model.param (its .bin and model.io.json beside it), a .tflite or an .onnx model",
    ),
    target: str = typer.Option(
        ..., "--target", "-t", help="pi4-emu / pi5-emu (instruction counts), a board or host (wall time)"
    ),
    threads: int = typer.Option(
        1,
        "--threads",
        min=1,
        max=MAX_THREADS,  # as recipe, bench and deploy: --threads 99999 started that many and hung
        help="threads (counts: ncnn at any number, 1 exact and repeatable; TFLite and ONNX Runtime at 1)",
    ),
    top: int = typer.Option(10, "--top", min=1, help="how many layers to print"),
    as_json: bool = typer.Option(False, "--json", help="print every layer as JSON instead of the top table"),
    input_shape: str | None = typer.Option(
        None,
        "--input-shape",
        help="NCHW, for a .param without sidecar (runs as benchncnn: defaults, input 0.01), or an .onnx or .tflite "
        "with free dimensions (batch 1)",
    ),
    passes: int = typer.Option(
        20,
        "--passes",
        min=1,
        help="on a board or host: runs each layer's median is over (ncnn: fresh extractors; onnxruntime: profiled "
        "runs)",
    ),
    set_: list[str] | None = typer.Option(
        None, "--set", help="on a board: override a field of the target, e.g. --set key=PATH (repeatable)"
    ),
    timeout: float = typer.Option(
        3600.0,
        "--timeout",
        callback=check_timeout,
        help=f"seconds before the counting run or the agent is stopped (above 0, at most {MAX_TIMEOUT_S:g})",
    ),
) -> None:
    """Guest instructions per layer (ncnn), per op (TFLite) or per node (ONNX Runtime) on an emulated core, top
    layers first; on a board or the host, wall time per ncnn layer or onnxruntime node.

    ncnn: each layer is counted alone (computed once in a marked window, minus a twin window that only re-reads
    its output). TFLite and ONNX: one prefix model per op (the graph cut after it; an onnx-int8 QDQ group is one
    operator, as onnxruntime fuses it), counted and differenced; slow for big graphs (every prefix runs). The
    total is one whole inference.

    Example: edgekit profile ~/.local/share/edgekit/cache/KEY/model.param --target pi4-emu --top 10
    """
    from edgekit.path_kind import not_a_file
    from edgekit.profile import profile_ncnn
    from edgekit.profile_onnx import profile_onnx
    from edgekit.profile_table import format_table
    from edgekit.profile_tflite import profile_tflite

    why = not_a_file(artifact, "model file")
    if why:
        raise UsageError(
            why,
            where=str(artifact),
            hint="give an ncnn model.param (its .bin beside it), a .tflite or an .onnx",
        )
    from edgekit.cli.shapes import parse_shape
    from edgekit.convert.cache import mark_used

    mark_used(artifact)  # a cache entry profiled by path is in use: `cache prune` keeps it

    if artifact.suffix not in (".tflite", ".param", ".onnx"):
        raise InputDataError(
            f"`edgekit profile` counts ncnn layers, TFLite ops or ONNX Runtime nodes; a "
            f"{artifact.suffix or 'suffix-less'} file is none of them",
            where=str(artifact),
            hint="give an ncnn model.param, a .tflite or an .onnx; `edgekit bench FILE --target pi4-emu` counts "
            "a whole inference of the other runtimes",
        )
    if artifact.suffix == ".onnx":
        _refuse_other_onnx_runtime(artifact)
    if set_ and target == "host":
        raise UsageError(
            "--set overrides a target's fields; host has none", where="--set", hint="leave --set out"
        )
    device = _device_for(target, list(set_ or ()))
    if device is None:
        from edgekit.cli.profile_wall import wall_profile

        wall_profile(artifact, target, threads, passes, input_shape, top, as_json, list(set_ or ()), timeout)
        return
    _check_cores(threads, target, device)
    if artifact.suffix == ".tflite":
        from edgekit.profile_tflite import check_threads

        check_threads(threads)  # before any file is read or model written: the count would not be repeatable
    _check_counted_args(artifact, target, threads, input_shape)
    if artifact.suffix == ".tflite":
        from edgekit.runtimes.tflite import load_tflite

        load_tflite(
            artifact
        )  # a file TFLite cannot load is refused as estimate refuses it, before any guest run
        shape = parse_shape(input_shape, "--input-shape") if input_shape is not None else None
        result = profile_tflite(
            artifact, device, threads=threads, timeout_s=timeout, say=_say, input_shape=shape
        )
    elif artifact.suffix == ".onnx":
        shape = parse_shape(input_shape, "--input-shape") if input_shape is not None else None
        result = profile_onnx(
            artifact, device, threads=threads, timeout_s=timeout, say=_say, input_shape=shape
        )
    else:
        from edgekit.estimate.graph import analyze
        from edgekit.estimate.zero_weights import weights_for

        given = artifact
        artifact, zero_note = weights_for(artifact)  # a bare .param alone: zero weights, as benchncnn
        if zero_note and not as_json:
            typer.echo(f"note: {zero_note}")
        shape = parse_shape(input_shape, "--input-shape")
        # one run on this host first: a file ncnn cannot load, a shape it cannot take (its batch, its channels, a
        # layer that fails at that size, or not the sidecar's) is refused here, named (exit 2), not after a guest run
        analyze(artifact, shape)
        from edgekit.emu.plugin.counting import heartbeat

        with heartbeat(_say, f"{given.name}'s layers on {device}"):  # a minute and more said nothing before
            result = profile_ncnn(artifact, device, threads=threads, input_shape=shape, timeout_s=timeout)
        result.artifact = str(given)  # the user's file, not its zero-weight copy
    if as_json:
        print(json.dumps(result.to_dict(), indent=1))
        return
    for line in format_table(result, top):
        typer.echo(line)


def _check_counted_args(artifact: Path, target: str, threads: int, input_shape: str | None) -> None:
    """Options a count on an emulated core cannot honour, refused before any guest run (exit 2): --input-shape on
    a file that states its shape, and --threads above 1 for onnxruntime's per-node counts."""
    from edgekit.cli.shapes import parse_shape

    if (
        input_shape is not None
        and artifact.suffix in (".tflite", ".onnx")
        and not _free_onnx(artifact)
        and not _free_tflite(artifact)
        and not _states_shape(artifact, parse_shape(input_shape, "--input-shape"))
    ):
        # it was ignored: the prefix models are cut from the file and counted at the shape it states
        raise UsageError(
            f"--input-shape {input_shape}: on {target} a {artifact.suffix} is counted at the input shape the file "
            "states (every prefix model is cut from it); --input-shape is for an ncnn .param without its "
            "model.io.json, or an .onnx or .tflite whose input has free dimensions (a free height and width)",
            where="--input-shape",
            hint="leave --input-shape out; to count another input size, convert the model at that size",
        )
    if artifact.suffix == ".onnx" and threads > 1:
        raise UsageError(
            f"--threads {threads}: onnxruntime's per-node counts are made at one thread only (at 4 threads one "
            "inference of a 2-convolution model counted 15 M to 55 M instructions run to run, its thread pool "
            "waiting, so the difference of two prefixes is not a node's work)",
            where="--threads",
            hint="profile at --threads 1 (where one node's count is its work); `edgekit bench FILE --target "
            "pi4-emu` counts a whole inference; on a board or host, onnxruntime's profiler times each node at "
            "any thread count",
        )


def _check_cores(threads: int, target: str, device: str) -> None:
    """More threads than the emulated board has cores are refused: the per-layer split and the layers that 'gain
    little from more threads' were judged against 8 threads on a 4-core A72 (estimate counts them as the cores)."""
    from edgekit.estimate.boards import BOARDS

    board = next((b for b in BOARDS.values() if b.emulated_device == device), None)
    if board is not None and threads > board.cores:
        raise UsageError(
            f"--threads {threads}: {target} stands for a {board.title}, {board.cores} cores; a profile at more "
            "threads than the board has cores splits layers in a way it cannot run",
            where="--threads",
            hint=f"give --threads {board.cores} or fewer (`edgekit estimate` counts more threads as the board's "
            "cores)",
        )


def _states_shape(artifact: Path, dims: list[int] | None) -> bool:
    """`dims` is the input shape the .tflite or fixed .onnx states (a .tflite's NHWC input also as the original
    model's NCHW): given "to be safe", it changes nothing and is taken."""
    if not dims:
        return False
    if artifact.suffix == ".tflite":
        from edgekit.runtimes.tflite import load_tflite

        try:
            stated = [int(d) for d in load_tflite(artifact).get_input_details()[0]["shape"]]
        except Exception:  # noqa: BLE001 - a file TFLite cannot load is refused where it is loaded
            return False
        nchw = [stated[0], stated[3], stated[1], stated[2]] if len(stated) == 4 else stated
        return list(dims) in (stated, nchw)
    from edgekit.cli.bench_inputs import _onnx_static_shape

    stated_onnx = _onnx_static_shape(artifact)
    return stated_onnx is not None and tuple(dims) == stated_onnx


def _free_onnx(artifact: Path) -> bool:
    """An .onnx whose input has free dimensions other than the batch: --input-shape sets them."""
    if artifact.suffix != ".onnx":
        return False
    from edgekit.profile_onnx import free_axes, read_model

    return bool(free_axes(read_model(artifact)))


def _free_tflite(artifact: Path) -> bool:
    """A .tflite whose input has free dimensions other than the batch (shape_signature -1): --input-shape sets
    them; its stated shape is only the converter's placeholder (1x1)."""
    if artifact.suffix != ".tflite":
        return False
    from edgekit.runtimes.tflite import load_tflite

    try:
        detail = load_tflite(artifact).get_input_details()[0]
    except Exception:  # noqa: BLE001 - a file TFLite cannot load is refused where it is loaded
        return False
    return any(int(d) < 0 for d in detail.get("shape_signature", detail["shape"])[1:])


def _say(line: str) -> None:
    """Progress on stderr: stdout stays the table (or the JSON)."""
    typer.echo(line, err=True)


def _refuse_other_onnx_runtime(artifact: Path) -> None:
    """An .onnx edgekit made for OpenCV DNN (opencv-fp32) runs in cv2, not onnxruntime: its per-node counts under
    onnxruntime would describe another runtime's kernels."""
    from edgekit.cli.bench_inputs import sidecar_format

    fmt = sidecar_format(artifact)
    if fmt is not None and fmt.runtime != "onnxruntime":
        raise InputDataError(
            f"this .onnx is edgekit's {fmt.value} artifact, run by {fmt.runtime.value}; `edgekit profile` counts .onnx "
            "files node by node under onnxruntime only",
            where=str(artifact),
            hint=f"count its whole inference with `edgekit bench {artifact} --target pi4-emu`",
        )


def register(app: typer.Typer) -> None:
    app.command("profile")(profile_cmd)
