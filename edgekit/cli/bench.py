"""`edgekit bench ARTIFACT --target NAME`: time one existing .tflite or ncnn .param/.bin on a target with the same
agent `deploy` uses, without a recipe (random or given input)."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import typer

from edgekit.cli.bench_inputs import bench_inputs, ncnn_shape, sample_shape, sidecar_format, sidecar_shape
from edgekit.cli.formats import agreeing_format
from edgekit.cli.inputs import check_model_file
from edgekit.cli.outputs import check_output_file
from edgekit.errors import Interrupted, UsageError
from edgekit.formats import Format
from edgekit.paths import write_atomic
from edgekit.recipe.schema import MAX_MIN_REPEAT_MS, MAX_NUMBER, MAX_REPEAT, MAX_WARMUP, Benchmark
from edgekit.terminal import Console, plain

if TYPE_CHECKING:
    from edgekit.deploy import AgentArtifact, Settings
    from edgekit.results import AgentResult, Measurement, TargetRun
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
# --timeout's upper bound is the recipe's benchmark.timeout_s one (a week): one limit for both
MAX_TIMEOUT_S = next(float(c.le) for c in Benchmark.model_fields["timeout_s"].metadata if hasattr(c, "le"))


def check_timeout(value: float) -> float:
    """typer callback for --timeout: a finite number of seconds above 0, at most the recipe's bound (nan, 0 or
    -5 failed the run after a second with a misleading error; inf ran unbounded)."""
    if not math.isfinite(value) or not 0 < value <= MAX_TIMEOUT_S:
        raise typer.BadParameter(
            f"{value:g} is not a number of seconds above 0 and at most {MAX_TIMEOUT_S:g} (a week), e.g. 600"
        )
    return value


def check_min_repeat_ms(value: float) -> float:
    """typer callback for --min-repeat-ms: nan passed the range check (every comparison with it is false)."""
    if not math.isfinite(value):
        raise typer.BadParameter(f"{value:g} is not a number of milliseconds from 0 to {MAX_MIN_REPEAT_MS:g}")
    return value


def bench_cmd(
    artifact: Path = typer.Argument(
        ...,
        callback=check_model_file,
        help="a model file: .tflite, an ncnn .param (its .bin beside it), .onnx, .mnn, .xml (OpenVINO), .pte",
    ),
    target: str = typer.Option(..., "--target", "-t", help="target name or file; `host` for this machine"),
    input_path: Path | None = typer.Option(None, "--input", help=".npy of inputs, first axis = sample"),
    shape: str | None = typer.Option(
        None, "--shape", "--input-shape", help="input shape for random input, e.g. 1,3,224,224"
    ),
    threads: str | None = typer.Option(None, "--threads", help="thread counts, e.g. 1,4 (default 1)"),
    repeat: int = typer.Option(10, "--repeat", min=1, max=MAX_REPEAT, help="timed samples per thread count"),
    warmup: int = typer.Option(2, "--warmup", min=0, max=MAX_WARMUP, help="discarded runs before timing"),
    number: int = typer.Option(1, "--number", min=1, max=MAX_NUMBER, help="invocations per sample"),
    min_repeat_ms: float = typer.Option(
        0.0,
        "--min-repeat-ms",
        min=0,
        max=MAX_MIN_REPEAT_MS,
        callback=check_min_repeat_ms,
        help="raise number until a sample lasts at least this long",
    ),
    fmt: Format | None = typer.Option(
        None,
        "--format",
        metavar="FORMAT",
        help="the file's format where no metadata beside it says (e.g. mnn-fp16: it decides how the runtime runs "
        "it, not only the label; `edgekit formats` lists them)",
    ),
    timeout: float = typer.Option(
        1800.0,
        "--timeout",
        callback=check_timeout,
        help=f"seconds before the agent is stopped (above 0, at most {MAX_TIMEOUT_S:g})",
    ),
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
    from edgekit.deploy import Settings, host_target
    from edgekit.deploy.expected_cpu import check_run
    from edgekit.deploy.plan import check_before_work
    from edgekit.report.bench_table import bench_table
    from edgekit.report.lines import timing_caveats
    from edgekit.target import load_target

    if set_ and target == "host":  # it was ignored without a word; profile refuses it in these words
        raise UsageError(
            "--set overrides a target's fields; host has none", where="--set", hint="leave --set out"
        )
    from edgekit.convert.cache import mark_used

    mark_used(artifact)  # a cache entry benched by path is in use: `cache prune` keeps it
    if artifact.suffix == ".param":  # a broken .param: named as bad input (exit 2) before anything reads it
        from edgekit.runtimes.ncnn import load_ncnn

        load_ncnn(artifact)
    art = _artifact_to_bench(artifact, fmt)
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
    check_before_work(tgt)  # a missing key file, a wrong emulated.cpu: exit 2, as deploy says them
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
    with run_folder("bench") as folder:  # held until the estimate has read its inputs
        inputs = bench_inputs(art, input_path, shape, folder)
        console.print(_timed_inputs(art, inputs, input_path, shape), highlight=False)
        run = run_one(art, tgt, settings, folder, inputs, console, f"bench {artifact.name}")
        if run.agent is not None:
            console.print(bench_table(as_deploy_names(run.agent), run.target))
            wrong_cpu = check_run(run, tgt)  # a wrong host reached another board: said, kept in --json
            if wrong_cpu is not None:
                console.print(f"[yellow]![/] {plain(run.target)}: {plain(wrong_cpu)}", highlight=False)
            if tgt.emulated is not None:
                _estimates(run, art, tgt.emulated.device, inputs)
            for line in timing_caveats(run):
                console.print(f"[yellow]![/] {plain(line)}", highlight=False)
    if json_path:
        write_atomic(json_path, run.model_dump_json(indent=1))
        console.print(f"results: {plain(json_path)}", highlight=False)
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
        raise typer.Exit(2 if run.bad_input else 1)


def _artifact_to_bench(artifact: Path, fmt: Format | None) -> AgentArtifact:
    """The file as the agent runs it, named as deploy names it, and which format it runs as, said with where that
    came from (the sidecar edgekit wrote, --format, the .tflite's tensors, or the suffix's default)."""
    from edgekit.deploy import AgentArtifact

    stated = sidecar_format(artifact)
    read = None
    theirs = stated is None and fmt is None and artifact.suffix == ".tflite" and artifact.is_file()
    if theirs:  # someone else's .tflite: what its tensors say
        from edgekit.estimate.runs_as import tflite_format

        read = tflite_format(artifact)
    art = AgentArtifact.from_path(artifact, agreeing_format(fmt, stated) or read)
    art = dataclasses.replace(art, id=art.format.value)  # named as deploy names it: tflite-fp32, not its stem
    source = (
        "as edgekit made it: its metadata beside it"
        if stated is not None
        else "from --format"
        if fmt is not None
        else "read from its tensors; --format sets another"
        if read is not None
        else f"the {artifact.suffix} default; --format sets another, e.g. a reduced-precision build"
    )
    if stated is None and fmt is None and artifact.suffix == ".mnn":
        # MNN's Python API does not say a .mnn's weight precision (fp16 weights read as float): not guessed
        art = dataclasses.replace(art, id=artifact.name)
        console.print(
            f"format mnn (precision not read from the file): run as {art.format.value}, MNN's precision high; "
            "--format mnn-fp16 or mnn-int8 runs it as one",
            highlight=False,
        )
    else:
        console.print(f"format {art.format.value} ({plain(source)})", highlight=False)
    return art


def as_deploy_names(agent: AgentResult) -> AgentResult:
    """The agent's result with each runtime named as deploy and `edgekit formats` name it (`tflite`, `opencv`,
    `mnn`), not by the Python module that ran it (`ai_edge_litert`, `cv2`, `MNN`): for the table only, the
    --json result keeps the module."""

    def runtime(m: Measurement) -> str:
        try:
            return Format(m.format).runtime.value
        except ValueError:
            return m.runtime

    return agent.model_copy(
        update={"measurements": [m.model_copy(update={"runtime": runtime(m)}) for m in agent.measurements]}
    )


@contextlib.contextmanager
def run_folder(kind: str) -> Iterator[Path]:
    """A fresh local folder for one command's run (bench-..., profile-...) under edgekit's runs dir, held while the
    command uses it (edgekit.run_files: no prune removes it; earlier runs' folders are pruned by the rule)."""
    from edgekit import run_files

    with run_files.run_folder(f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}") as folder:
        yield folder


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
    the shape the agent ran (the inputs file's sample: --shape, --input or the sidecar), batch first; so is one
    whose sidecar states another shape than the one timed (through a copy of the sidecar stating the shape timed:
    the graph's MACs, bytes and roofline are those of the model counted)."""
    from edgekit.convert.base import model_bytes
    from edgekit.estimate.attach import estimates_for_run
    from edgekit.estimate.of_measurement import board_for_device
    from edgekit.report.table_caption import NO_BOARD
    from edgekit.results import ArtifactInfo, interval_not_validated

    if run.agent is None:
        return
    if board_for_device(device) is None:  # phone-emu: said, as deploy's caption says it, and kept in --json
        run.caveats.append(f"no board estimate: {NO_BOARD}")
        console.print(f"[yellow]![/] {plain(run.caveats[-1])}", highlight=False)
        return
    if not any(m.instructions_per_invoke for m in run.agent.measurements):  # said: the estimate's absence too
        if any(m.status == "ok" for m in run.agent.measurements):
            console.print(
                "[yellow]![/] no board estimate: no instruction count came back (emulated.counting=false turns "
                "counting off); the figures above are emulated wall times only, not device latency",
                highlight=False,
            )
        return
    files = [*art.files, *([art.io] if art.io is not None else [])]
    info = ArtifactInfo(
        id=art.id,
        format=art.format.value,
        files=[str(f) for f in files],
        sha256=art.key,
        size_bytes=model_bytes(files),  # the model, not edgekit's sidecar
    )
    shape = None
    stated = sidecar_shape(art)
    if art.files[0].suffix == ".param":  # ncnn's graph is read at the shape timed, not the sidecar's
        timed = ncnn_shape(sample_shape(inputs), stated)
        if art.io is None:
            shape = timed
        elif stated is not None and timed != stated:
            graph = _graph_at(art.files, art.io, timed, inputs.parent)
            info = info.model_copy(update={"files": [str(f) for f in graph]})
            console.print(
                f"[dim]the estimate reads the graph (MACs, bytes, roofline) at the shape timed, {_dims(timed)}, "
                f"not {art.io.name}'s {_dims(stated)}[/]",
                highlight=False,
            )
    try:
        run.estimates = estimates_for_run(run, [info], device, input_shape=shape)
    except Exception as exc:  # noqa: BLE001 - an estimate must never cost the measurements
        console.print(f"[dim]no estimate: {type(exc).__name__}: {plain(exc)}[/]", highlight=False)
        return
    for key, est in run.estimates.items():
        if est.get("status") != "ok":
            console.print(
                f"[dim]{est['board']} ESTIMATE {plain(key)}: unavailable ({plain(est.get('reason'))})[/]",
                highlight=False,
            )
            continue
        why = interval_not_validated(est)
        trust = f", interval not validated: {why}" if why else ""
        console.print(
            f"{est['board']} ESTIMATE {plain(key)}: ~{est['estimate_ms']:.3g} ms ({est['low_ms']:.3g}-{est['high_ms']:.3g}, "
            f"{_level(est)}{trust}) [dim]estimate from the instruction count, "
            "not a measurement[/]",
            highlight=False,
        )
        for note in est["caveats"]:
            console.print(f"  [dim]note: {plain(note)}[/]", highlight=False)


def _level(est: dict[str, Any]) -> str:
    """'80 % interval', or 'interval' where it is not validated (no level backs it)."""
    level = est.get("interval_level")
    return f"{int(100 * level)} % interval" if level else "interval"


def _timed_inputs(art: AgentArtifact, inputs: Path, given: Path | None, shape: str | None) -> str:
    """The line saying what is timed: the samples' shape and where it came from (for an ncnn model, the shape it
    runs at, and the sidecar's when that differs: the estimate reads the graph at the one timed)."""
    sample = sample_shape(inputs)
    count = len(np.load(inputs, mmap_mode="r"))
    said = (
        f"{count} sample{'s' if count != 1 else ''} of shape {_dims(sample)} from {given.name}"
        if given is not None
        else f"1 random sample (uniform in [0, 1)) of shape {_dims(sample)} from "
        + ("--shape" if shape else art.io.name if art.io is not None else "the model file")
    )
    if art.files[0].suffix == ".param" and art.io is not None:
        stated = sidecar_shape(art)
        runs = ncnn_shape(sample, stated)
        if runs not in (sample, [1, *sample]):  # reshaped to the sidecar's shape, or leading 1s dropped
            said += f", run by ncnn at {_dims(runs)}"
        if stated is not None and runs != stated:
            said += f" (not the {_dims(stated)} {art.io.name} states)"
    return f"input: {said}"


def _dims(shape: list[int]) -> str:
    return ",".join(map(str, shape))


def _graph_at(files: tuple[Path, ...], sidecar: Path, shape: list[int], folder: Path) -> list[Path]:
    """An ncnn artifact's FILES beside a copy of its SIDECAR stating SHAPE (the shape timed), in FOLDER/graph: what
    the estimate reads the graph from, so its MACs, bytes and roofline are those of the model counted."""
    import json
    import shutil

    graph = folder / "graph"
    graph.mkdir(parents=True, exist_ok=True)
    links = []
    for f in files:
        link = graph / f.name
        try:
            link.symlink_to(f.resolve())
        except OSError:
            shutil.copyfile(f, link)
        links.append(link)
    io = {k: v for k, v in json.loads(sidecar.read_text()).items() if k != "output_shapes"}  # its shape's
    io["input_shapes"] = [shape]
    (graph / sidecar.name).write_text(json.dumps(io))
    return [*links, graph / sidecar.name]


def register(app: typer.Typer) -> None:
    app.command("bench", epilog=EPILOG)(bench_cmd)
