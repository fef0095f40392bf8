"""`edgekit bench ARTIFACT --target NAME`: time one existing .tflite or ncnn .param/.bin on a target with the same
agent `deploy` uses, without a recipe (random or given input)."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import typer

from edgekit.agent.agent import fit_shape
from edgekit.cli.formats import agreeing_format
from edgekit.cli.inputs import check_model_file
from edgekit.cli.outputs import check_output_file
from edgekit.cli.shapes import parse_shape
from edgekit.errors import InputDataError, Interrupted, UsageError
from edgekit.formats import Format
from edgekit.paths import write_atomic
from edgekit.recipe.schema import MAX_MIN_REPEAT_MS, MAX_NUMBER, MAX_REPEAT, MAX_WARMUP
from edgekit.terminal import Console, plain

if TYPE_CHECKING:
    from edgekit.deploy import AgentArtifact, Settings
    from edgekit.results import TargetRun
    from edgekit.target import Target

console = Console()
if not console.is_terminal:
    console.width = max(console.width, 160)

EPILOG = """Examples:

  edgekit bench model.tflite --target pi4-emu

  edgekit bench model.param --target pi4 --input sample.npy --threads 1,4 --repeat 50

  edgekit bench model.tflite --target host     (this machine's CPU)

An ncnn model needs its input shape: from model.io.json beside it (edgekit convert writes one), --input, or
--shape 1,3,224,224. Random inputs are uniform in [0, 1)."""


def bench_cmd(
    artifact: Path = typer.Argument(
        ...,
        callback=check_model_file,
        help="a model file: .tflite, an ncnn .param (its .bin beside it), .onnx, .mnn, .xml (OpenVINO), .pte",
    ),
    target: str = typer.Option(..., "--target", "-t", help="target name or file; `host` for this machine"),
    input_path: Path | None = typer.Option(None, "--input", help=".npy of inputs, first axis = sample"),
    shape: str | None = typer.Option(None, "--shape", help="input shape for random input, e.g. 1,3,224,224"),
    threads: str | None = typer.Option(None, "--threads", help="thread counts, e.g. 1,4 (default 1)"),
    repeat: int = typer.Option(10, "--repeat", min=1, max=MAX_REPEAT, help="timed samples per thread count"),
    warmup: int = typer.Option(2, "--warmup", min=0, max=MAX_WARMUP, help="discarded runs before timing"),
    number: int = typer.Option(1, "--number", min=1, max=MAX_NUMBER, help="invocations per sample"),
    min_repeat_ms: float = typer.Option(
        0.0,
        "--min-repeat-ms",
        min=0,
        max=MAX_MIN_REPEAT_MS,
        help="raise number until a sample lasts at least this long",
    ),
    fmt: Format | None = typer.Option(
        None,
        "--format",
        metavar="FORMAT",
        help="the file's format where no metadata beside it says (e.g. mnn-fp16: it decides how the runtime runs "
        "it, not only the label; `edgekit formats` lists them)",
    ),
    timeout: float = typer.Option(1800.0, "--timeout", help="seconds before the agent is stopped"),
    json_path: Path | None = typer.Option(
        None, "--json", callback=check_output_file, help="write the agent's full result here"
    ),
    set_: list[str] | None = typer.Option(
        None,
        "--set",
        help="override a field of the target, e.g. --set emulated.counting=false (repeatable), as in deploy",
    ),
) -> None:
    """Time one existing model file on a target: load time, p50/p90/p99, every sample, peak memory.

    Wall times on emulated targets are labelled `emulated`: they are not device latency.
    """
    from edgekit.cli.deploy import parse_threads
    from edgekit.deploy import AgentArtifact, Settings, host_target
    from edgekit.report.lines import timing_caveats
    from edgekit.report.table import bench_table
    from edgekit.target import load_target

    if artifact.suffix == ".param":  # a broken .param: named as bad input (exit 2) before anything reads it
        from edgekit.runtimes.ncnn import load_ncnn

        load_ncnn(artifact)
    stated = _sidecar_format(artifact)
    art = AgentArtifact.from_path(artifact, agreeing_format(fmt, stated))
    source = (
        "as edgekit made it (its metadata beside it)"
        if stated is not None
        else "--format"
        if fmt is not None
        else f"the {artifact.suffix} default; --format sets another (e.g. a reduced-precision build)"
    )
    console.print(f"format {art.format.value}: {source}", highlight=False)
    from edgekit.runtimes import spec_for

    spec = spec_for(art.format)
    if target == "host" and spec.host_module() is None:
        raise UsageError(
            f"{spec.runtime.value} (which runs {art.format.value}) is not installed on this machine",
            where=str(artifact),
            hint=f"`edgekit formats` shows which runtimes this machine has; try another target, or install "
            f"{spec.packages[0].pip if spec.packages else spec.runtime.value} in edgekit's environment",
        )
    spec.check_file(art.files)  # a model its runtime cannot read: named here, exit 2
    tgt = host_target() if target == "host" else load_target(target, list(set_ or ()))
    if (
        spec.host_only and not tgt.is_this_host
    ):  # as deploy: such a format is a host reference, sent to no board
        raise UsageError(
            f"{art.format.value} runs on the host only ({spec.runtime.value} is a reference edgekit sends to no "
            "board)",
            where=f"{artifact} --target {target}",
            hint="bench it with --target host, or bench a format a board runs (`edgekit formats --target "
            f"{target}`)",
        )
    settings = Settings(
        warmup=warmup,
        repeat=repeat,
        number=number,
        min_repeat_ms=min_repeat_ms,
        threads=parse_threads(threads) or (1,),
        timeout_s=timeout,
    )
    folder = run_folder("bench")
    inputs = _inputs(art, input_path, shape, folder)
    run = run_one(art, tgt, settings, folder, inputs, console, f"bench {artifact.name}")
    if run.agent is not None:
        console.print(bench_table(run.agent, run.target))
        if tgt.emulated is not None:
            _estimates(run, art, tgt.emulated.device, inputs)
        for line in timing_caveats(run):
            console.print(f"[yellow]![/] {plain(line)}", highlight=False)
    if json_path:
        write_atomic(json_path, run.model_dump_json(indent=1))
        console.print(f"results: {json_path}", highlight=False)
    if run.error:
        console.print(f"[red]x[/] {run.target}: {plain(run.error)}", highlight=False)
    if run.interrupted:
        kept = sum(m.status == "ok" for m in run.agent.measurements) if run.agent else 0
        raise Interrupted(
            f"interrupted (Ctrl-C); kept {kept} measurements" + (f" in {json_path}" if json_path else ""),
            where=run.target,
        )
    ok = (
        run.status == "ok" and run.agent is not None and all(m.status == "ok" for m in run.agent.measurements)
    )
    if not ok:
        raise typer.Exit(1)


def run_folder(kind: str) -> Path:
    """A fresh local folder for one command's run (bench-..., profile-...) under edgekit's runs dir."""
    from edgekit.paths import runs_dir

    return runs_dir() / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


def run_one(
    art: AgentArtifact,
    tgt: Target,
    settings: Settings,
    folder: Path,
    inputs: Path,
    out: Console,
    label: str,
) -> TargetRun:
    """One artifact through the agent on one target (push, run, pull), with live progress on `out`."""
    from edgekit.deploy import TargetSession
    from edgekit.progress import live_progress

    with live_progress(out, label) as progress:  # measured / planned, elapsed, ETA
        session = TargetSession(
            tgt, run_id=folder.name, local_dir=folder / tgt.name, settings=settings, progress=progress
        )
        return session.execute([art], inputs)


def _estimates(run: TargetRun, art: AgentArtifact, device: str, inputs: Path) -> None:
    """On an emulated target, the real board's estimate from the counts (as deploy's table leads with): printed,
    and kept in the run (--json). Never fatal: the measurements stand without it. A bare .param's graph is read at
    the shape the agent ran (the inputs file's sample: --shape, --input or the sidecar), batch first."""
    from edgekit.estimate.attach import board_for_device, estimates_for_run
    from edgekit.results import ArtifactInfo, interval_not_validated

    if (
        run.agent is None
        or board_for_device(device) is None
        or not any(m.instructions_per_invoke for m in run.agent.measurements)
    ):
        return
    files = [*art.files, *([art.io] if art.io is not None else [])]
    info = ArtifactInfo(
        id=art.id,
        format=art.format.value,
        files=[str(f) for f in files],
        sha256=art.key,
        size_bytes=sum(f.stat().st_size for f in files),
    )
    bare = art.files[0].suffix == ".param" and art.io is None
    try:
        run.estimates = estimates_for_run(
            run, [info], device, input_shape=_batch_first(inputs) if bare else None
        )
    except Exception as exc:  # noqa: BLE001 - an estimate must never cost the measurements
        console.print(f"[dim]no estimate: {type(exc).__name__}: {plain(exc)}[/]", highlight=False)
        return
    for key, est in run.estimates.items():
        if est.get("status") != "ok":
            console.print(
                f"[dim]{est['board']} ESTIMATE {key}: unavailable ({est.get('reason')})[/]", highlight=False
            )
            continue
        why = interval_not_validated(est)
        trust = f", interval not validated: {why}" if why else ""
        console.print(
            f"{est['board']} ESTIMATE {key}: ~{est['estimate_ms']:.3g} ms ({est['low_ms']:.3g}-{est['high_ms']:.3g}, "
            f"{int(100 * est['interval_level'])} % interval{trust}) [dim]estimate from the instruction count, "
            "not a measurement[/]",
            highlight=False,
        )
        for note in est["caveats"]:
            console.print(f"  [dim]note: {plain(note)}[/]", highlight=False)


def _sidecar_format(path: Path) -> Format | None:
    """The format edgekit made the file as: an ncnn model's model.io.json, or the artifact.json of the cache entry
    holding it (an mnn-fp16 .mnn runs at MNN's low precision, an opencv-fp32 .onnx in OpenCV: not as the
    suffix's fp32 default)."""
    path = Path(path)
    io = path.with_suffix(".io.json")
    if path.suffix in (".param", ".bin") and io.is_file():
        try:
            return Format(json.loads(io.read_text()).get("format"))
        except (ValueError, OSError):
            return None
    meta = path.parent / "artifact.json"  # edgekit.convert.cache.META
    try:
        made = json.loads(meta.read_text()) if meta.is_file() else {}
        return Format(made["format"]) if path.name in made.get("files", []) else None
    except (ValueError, OSError, KeyError, TypeError, AttributeError):
        return None


def _inputs(art: AgentArtifact, given: Path | None, shape: str | None, folder: Path) -> Path:
    """The inputs file the agent gets: the user's .npy, or one seeded uniform sample of the model's shape."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "inputs.npy"
    onnx = art.files[0].suffix == ".onnx"
    agent_shape = (
        _onnx_agent_shape(art.files[0])[0] if onnx else None
    )  # one input, or refused (bench feeds one)
    if given is not None:
        if not given.is_file():
            raise UsageError("input file not found", where=str(given))
        try:
            data = np.load(given)  # no pickles: an object array is refused
        except (ValueError, OSError, EOFError) as exc:
            raise InputDataError(
                f"not a numeric .npy array: {exc}", where=str(given), hint="save one with numpy.save"
            ) from None
        if data.ndim < 2 or data.shape[0] == 0 or not np.issubdtype(data.dtype, np.number):
            raise InputDataError(
                f"an array of shape {list(data.shape)} and type {data.dtype} holds no input samples",
                where=str(given),
                hint="numbers, first axis = sample, e.g. shape [8, 1, 3, 224, 224] for 8 samples",
            )
        known = agent_shape or _file_shape(art)  # an .onnx: its fixed dimensions, a dynamic one run at 1
        if known:  # checked here, not after the agent started on the target (the agent applies the same fit)
            try:
                fit_shape(data[0], known)
            except ValueError as exc:
                raise UsageError(
                    f"{exc} (the first axis of the array is the sample)",
                    where="--input",
                    hint=f"samples of shape {list(known)} (an NHWC TFLite model also takes NCHW samples)",
                ) from None
        np.save(path, data.astype(np.float32))
        return path
    dims = _shape(art, shape)
    np.save(path, np.random.default_rng(0).uniform(0.0, 1.0, (1, *dims)).astype(np.float32))
    return path


def _batch_first(inputs: Path) -> list[int]:
    """The shape of one sample of the inputs file as N,C,H,W with N = 1: the agent hands a C,H,W sample to ncnn
    as it hands 1,C,H,W (no batch axis), so both count the same model."""
    dims = [int(d) for d in np.load(inputs, mmap_mode="r").shape[1:]]
    return [1, *dims] if len(dims) == 3 else dims


def _shape(art: AgentArtifact, text: str | None) -> tuple[int, ...]:
    if text:
        dims = tuple(parse_shape(text, "--shape") or ())
        _check_given_shape(art, dims)
        return dims
    if art.io is not None:
        shapes = json.loads(art.io.read_text()).get("input_shapes") or []
        if shapes:
            return tuple(shapes[0])
    known = _file_shape(art)
    if known:
        return known
    raise UsageError(
        f"the input shape of this {art.files[0].suffix or 'suffix-less'} model is unknown (no model.io.json "
        "sidecar beside it, and the file does not state a fixed one)",
        where=str(art.files[0]),
        hint="pass --shape 1,3,224,224 (batch first, as the original model) or --input x.npy",
    )


def _check_given_shape(art: AgentArtifact, dims: tuple[int, ...]) -> None:
    """A --shape the model cannot take is bad input, refused here before the agent starts (as --input is): an
    ncnn model's rank and first layer's channels, a shape a .tflite states itself, an .onnx's fixed dimensions."""
    if art.files[0].suffix == ".param":
        from edgekit.estimate.ncnn_model import check_input_shape

        check_input_shape(art.files[0], list(dims))
        return
    if art.files[0].suffix == ".onnx":
        _check_onnx_shape(art.files[0], dims)
        return
    known = _file_shape(art)
    if known:
        try:
            fit_shape(np.broadcast_to(np.float32(0), dims), known)
        except ValueError as exc:
            raise UsageError(
                str(exc), where="--shape", hint=f"this model takes {','.join(map(str, known))} (batch first)"
            ) from None


def _file_shape(art: AgentArtifact) -> tuple[int, ...] | None:
    """The input shape a .tflite, or a fixed-shape .onnx, .mnn or OpenVINO .xml, states itself, else None (also
    where this host lacks the runtime that reads it)."""
    path = art.files[0]
    if path.suffix == ".tflite":
        from edgekit.runtimes.tflite import load_tflite

        detail = load_tflite(path).get_input_details()[0]
        return tuple(int(d) for d in detail["shape"])
    if path.suffix == ".onnx":
        return _onnx_static_shape(path)
    if path.suffix == ".mnn":  # MNN ran a shape it cannot take as an empty forward, timed as if it worked
        return _static(_mnn_input_shape(path))
    if path.suffix == ".xml":
        return _static(_openvino_input_shape(path))
    return None


def _static(shape: list[int] | None) -> tuple[int, ...] | None:
    return tuple(shape) if shape and all(d > 0 for d in shape) else None


def _mnn_input_shape(path: Path) -> list[int] | None:
    try:
        import MNN
    except ImportError:
        return None
    try:
        inputs = MNN.nn.load_module_from_file(str(path), [], []).get_info()["inputs"]
    except Exception:  # noqa: BLE001 - a file MNN cannot read is named when the agent loads it
        return None
    return [int(d) for d in inputs[0].shape] if inputs else None


def _openvino_input_shape(path: Path) -> list[int] | None:
    try:
        import openvino as ov
    except ImportError:
        return None
    try:
        shape = ov.Core().read_model(str(path)).inputs[0].get_partial_shape()
    except Exception:  # noqa: BLE001 - as for MNN: the agent names what it cannot load
        return None
    return [int(d.get_length()) for d in shape] if shape.is_static else None


def _onnx_static_shape(path: Path) -> tuple[int, ...] | None:
    """The graph input's shape when every dimension is a number, else None (a free batch too: --shape says it).
    A model of more than one input is refused (UsageError): bench feeds one."""
    shape, dynamic = _onnx_agent_shape(path)
    return shape if shape and not dynamic else None


def _onnx_agent_shape(path: Path) -> tuple[tuple[int, ...], list[int]]:
    """The shape the agent feeds the .onnx's graph input (every dynamic dimension 1: onnxruntime's runner in
    edgekit.agent does so) and the axes that are dynamic; a model with no input or more than one is a UsageError."""
    from edgekit.convert.onnx import read_onnx

    graph = read_onnx(path, str(path)).graph
    weights = {init.name for init in graph.initializer}
    inputs = [i for i in graph.input if i.name not in weights]
    if len(inputs) != 1:
        names = ", ".join(repr(i.name) for i in inputs)
        raise UsageError(
            f"this model has {len(inputs)} inputs{f' ({names})' if names else ''}: bench feeds one input",
            where=str(path),
            hint="bench times a model on one input of random data: export one with a single input (the others "
            "folded in as constants) to bench it",
        )
    dims = inputs[0].type.tensor_type.shape.dim
    shape = tuple(d.dim_value if d.dim_value > 0 else 1 for d in dims)
    return shape, [axis for axis, d in enumerate(dims) if d.dim_value <= 0]


def _check_onnx_shape(path: Path, dims: tuple[int, ...]) -> None:
    """--shape against what the agent feeds the .onnx (its fixed dimensions; a dynamic one runs at 1)."""
    shape, dynamic = _onnx_agent_shape(path)
    try:
        fit_shape(np.broadcast_to(np.float32(0), dims), shape)
    except ValueError as exc:
        said = ", ".join(map(str, dynamic))
        runs = f"; its dynamic dimension(s) (axis {said}) run at size 1 in edgekit's agent" if dynamic else ""
        raise UsageError(
            str(exc),
            where="--shape",
            hint=f"this model takes {','.join(map(str, shape))} (batch first{runs})",
        ) from None


def register(app: typer.Typer) -> None:
    app.command("bench", epilog=EPILOG)(bench_cmd)
