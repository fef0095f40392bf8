"""Keep the layers that lose the most in float until the recipe's accuracy gate is met (`edgekit analyze --fix`).

The ranking comes from edgekit.analysis.analyze. Candidates keep the worst 1, 2, 4, 8, ... quantized layers in float
(NCNN: the quantizer leaves their scales out, `float_layers`; TFLite: TensorFlow's selective quantization,
`denylisted_nodes`, see edgekit.convert.tflite_selective). Each candidate is checked exactly as `edgekit convert` checks
an artifact (edgekit.fidelity.check against the ONNX model, the recipe's gates) and timed on this host, so the
price of the fix is known: bytes and host milliseconds against the plain INT8 and the fp32 artifacts. The host
timings are taken together at the end (edgekit.analysis.host_timing), in interleaved rounds (each candidate once
per round), so a load that comes and goes falls on each alike; other processes' share of the CPUs over them is
measured as the deploy agent does (each candidate timed alone, one after the other, measured 12.3 ms for the fp32
model and 5.3 ms for the same arithmetic in an INT8 file while the machine was busy).
"""

from __future__ import annotations

import gc
import shutil
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgekit import paths
from edgekit.analysis.analyze import Analysis, AnalysisError, Progress, artifacts_for, xnnpack_where
from edgekit.analysis.host_timing import HOST_ROUNDS, host_run, refusal, time_interleaved
from edgekit.convert.base import Artifact
from edgekit.errors import UsageError
from edgekit.formats import Format, Runtime
from edgekit.recipe import IOType, KerasSource, Recipe


@dataclass
class Candidate:
    """One INT8 artifact with some layers kept in float, and what it measured."""

    float_layers: list[str]
    files: list[str]
    size_bytes: int
    host_ms: float  # median latency on this host, 1 thread, over the interleaved rounds (not a device figure)
    numbers: dict[str, Any] = field(default_factory=dict)  # fidelity numbers (edgekit.fidelity.check)
    gates: dict[str, Any] = field(default_factory=dict)
    error: str | None = None  # the runtime refused the file (e.g. XNNPACK cannot prepare a mixed graph)
    label: str = ""  # what was kept in float, for a table ("output tail (81 ops) + 4 worst")
    # what a recipe says to build this artifact again: int8.ncnn_float_layers / tflite_float_ops names, and
    # whether the TFLite output tail is in float too (int8.tflite_float_tail)
    recipe_names: list[str] = field(default_factory=list)
    float_tail: bool = False
    host_spread: list[float] = field(default_factory=list)  # [p10, p90] of its host latencies (ms)

    @property
    def passed(self) -> bool:
        return self.error is None and bool(self.gates.get("passed"))


def host_differs(a: Candidate, b: Candidate) -> bool:
    """Whether two candidates' host latencies differ beyond the timing spread: their p10-p90 ranges, timed in the
    same rounds, do not overlap (False without spreads: nothing to tell a difference from noise with)."""
    if len(a.host_spread) != 2 or len(b.host_spread) != 2:
        return False
    return a.host_spread[1] < b.host_spread[0] or b.host_spread[1] < a.host_spread[0]


@dataclass
class FixResult:
    format: str
    fp32: Candidate  # the fp32 artifact of the same runtime: the cost comparison, judged by the INT8 gate
    steps: list[Candidate]  # steps[0] is the plain INT8 artifact (nothing kept in float)
    out_dir: str
    weighted: list[str] = field(default_factory=list)  # the quantized weighted layers: all of them is fp32
    # other processes' share of this machine's CPUs while the candidates were timed (None: not known)
    host_busy: float | None = None
    host_rounds: int = 0  # the interleaved rounds each candidate was timed in
    # the evaluation inputs the layers were ranked on (the analysis's first --samples): the gate is judged on all
    # of them, these among them, so the float set was chosen and judged on the same data
    ranked_on: int = 0
    # ncnn-int8: the plain artifact's speed-plan float layers, held in every candidate (not counted again)
    held_plan: list[str] | None = None

    @property
    def host_unreliable(self) -> bool:
        """Other processes used BUSY_SHARE or more of the CPUs while the candidates were timed (as deploy
        judges a measurement): their host latencies are not compared."""
        from edgekit.results import BUSY_SHARE

        return self.host_busy is not None and self.host_busy >= BUSY_SHARE

    @property
    def chosen(self) -> Candidate | None:
        """The first candidate that meets the gate (None: even the most float one did not)."""
        return next((c for c in self.steps if c.passed), None)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "chosen": asdict(self.chosen) if self.chosen else None}


def plan(ranked: Sequence[str], max_float: int | None = None) -> list[list[str]]:
    """Float sets to try, smallest first: the worst 1, 2, 4, ... layers (and all of them, capped)."""
    limit = len(ranked) if max_float is None else min(max_float, len(ranked))
    counts, k = [], 1
    while k < limit:
        counts.append(k)
        k *= 2
    if limit:
        counts.append(limit)
    return [list(ranked[:k]) for k in counts]


def candidates(analysis: Analysis) -> list[str]:
    """The layers --fix may keep in float, worst own error first: every quantized weighted layer, even one whose
    own error by difference is 0 (its output nearer fp32 than its input: digits' /15/Conv, never tried, so a
    gate all seven weighted layers in float meet was called unreachable), and any other quantized layer that
    adds an error of its own (layout ops such as Squeeze add none)."""
    weighted = {x.name for x in analysis.weighted()}
    return [x.name for x in analysis.worst() if x.name in weighted or x.own_rel_error > 1e-6]


def check_fix_supported(recipe: Recipe, fmt: Format) -> None:
    """--fix for this recipe and format is possible, said before any analysis runs (a Keras recipe's tflite-int8
    printed 'gate met' after seconds of work, then refused)."""
    if fmt.runtime is Runtime.TFLITE and isinstance(recipe.model, KerasSource):
        # the selective build runs onnx2tf on the prepared ONNX, which for a Keras model is its NHWC export: the
        # layer names do not match the artifact's and TensorFlow died of SIGFPE on the wrong layout
        raise UsageError(
            f"--fix for {fmt.value} of a Keras model is not supported: TFLite with layers kept in float is built "
            "by onnx2tf from a PyTorch or ONNX model's graph",
            where=str(recipe.path),
            hint="the analysis itself (without --fix) works: it names the layers that lose accuracy; ncnn-int8's "
            "--fix works for a Keras model",
        )
    if fmt.runtime is Runtime.TFLITE and recipe.int8.io is IOType.INT8:
        # the candidates are TensorFlow's selective quantization with float input/output, the plain artifact has
        # int8 I/O: a table of unlike files, then an int8 line with tflite_float_ops the recipe loader refuses
        raise UsageError(
            f"--fix for {fmt.value} with int8.io: int8 is not supported: TFLite ops are kept in float by onnx2tf "
            "and TensorFlow's selective quantization with float input/output, so the int8 line --fix prints "
            "(int8.tflite_float_ops) would be refused with int8.io: int8",
            where=str(recipe.path),
            hint="the analysis itself (without --fix) works: it names the layers that lose accuracy; to keep layers "
            "in float, set int8.io: float (the model then takes and gives float32) and run --fix again",
        )


def fix(
    recipe: Recipe,
    fmt: Format,
    analysis: Analysis,
    *,
    max_float: int | None = None,
    progress: Progress | None = None,
) -> FixResult:
    """Try the float sets of `plan` in order, stopping at the first that meets the recipe's gate."""
    from edgekit.convert.calibration import evaluation_inputs
    from edgekit.convert.onnx import prepare_onnx
    from edgekit.runtimes import run_onnx

    say = progress or (lambda _m: None)
    check_fix_supported(recipe, fmt)
    if analysis.kernel_loss:  # the layers are fine: what misses the gate is XNNPACK's int8 arithmetic
        loss = analysis.kernel_loss
        raise AnalysisError(
            f"{recipe.name} {fmt.value}: --fix cannot help, the loss is in XNNPACK's int8 kernels, not in the "
            f"quantization (output cosine {loss['cosine_xnnpack']:.6f} with XNNPACK, "
            f"{loss['cosine_builtin']:.6f} with TFLite's builtin kernels the layers are read with), so the layer "
            f"ranking says nothing of where it is lost; {xnnpack_where(loss)}",
            where=str(recipe.path),
            hint="no layer kept in float is sure to win it back: compare the other INT8 formats' checks "
            f"(`edgekit convert {recipe.path}` prints each) or ship tflite-fp16 / tflite-dynamic",
        )
    # the analysis before it said how these were made (converted, from the cache): the cache answers in silence
    fp32_art, int8_art = artifacts_for(recipe, fmt, lambda _m: None)
    onnx = prepare_onnx(recipe)
    inputs, labels = evaluation_inputs(recipe)
    ref = run_onnx(onnx.path, inputs)
    out_dir = paths.runs_dir() / "analyze" / f"{recipe.name}-{fmt.value}-{time.strftime('%Y%m%d-%H%M%S')}"
    # judged by the INT8 gate: what no float set can beat (a gate the fp32 model misses is out of --fix's reach)
    runs: list[Callable[[], None] | None] = []  # each candidate's host run, timed together at the end
    fp32 = _measure(fp32_art, [], recipe, inputs, labels, ref, gates_of=fmt, runs=runs)
    weighted = [x.name for x in analysis.weighted()]
    steps = [_measure(int8_art, [], recipe, inputs, labels, ref, runs=runs)]
    own = _recipe_float(recipe, fmt)
    if own or (fmt is Format.TFLITE_INT8 and recipe.int8.tflite_float_tail):
        steps[0].label = "as the recipe keeps it" + (
            f" ({len(own)} float)" if own else " (output tail float)"
        )
    say(f"fix: plain {fmt.value}: gate {'met' if steps[0].passed else 'missed'}")
    if steps[0].passed:  # nothing built: no folder left behind
        return _timed(FixResult(fmt.value, fp32, steps, "", weighted, ranked_on=analysis.samples), runs, say)
    out_dir.mkdir(parents=True, exist_ok=True)
    sets = plan(candidates(analysis), max_float)  # the last holds every candidate (unless capped)
    labels_of = {tuple(s): f"{len(s)} worst" for s in sets}
    tail = output_tail(fmt, int8_art)
    if tail:  # the output tail first, then the tail with the worst layers
        with_tail = [tail] + [list(dict.fromkeys(tail + s)) for s in sets]
        # --max-float bounds what the fix keeps in float, the tail's ops included: a tail longer than it is not
        # tried (--max-float 1 tried the tail's 3 ops, then 4, and said to raise --max-float)
        fits = [w for w in with_tail if max_float is None or len(w) <= max_float]
        if fits:
            labels_of = {tuple(tail): f"output tail ({len(tail)} ops)"} | {
                tuple(w): f"output tail + {len(s)} worst" for w, s in zip(with_tail[1:], sets)
            }
            sets = fits
    if own:  # what the recipe keeps in float already stays so in every candidate, as in its own artifact
        labels_of = {
            tuple(dict.fromkeys(own + s)): f"the recipe's {len(own)} + {labels_of[tuple(s)]}" for s in sets
        }
        sets = [list(dict.fromkeys(own + s)) for s in sets]
    sets = [
        list(t) for t in dict.fromkeys(tuple(s) for s in sets)
    ]  # the tail can swallow a worst layer: once
    held = _held_plan(fmt, int8_art)
    build = _builder(fmt, recipe, onnx.path, out_dir, sets, say, held)
    tail_names: set[str] = set()
    for i, float_layers in enumerate(sets):
        say(f"fix: keeping in float: {labels_of[tuple(float_layers)]}")
        art, names = build(float_layers)
        steps.append(_measure(art, float_layers, recipe, inputs, labels, ref, runs=runs))
        steps[-1].label = labels_of[tuple(float_layers)]
        if (
            tail and i == 0
        ):  # the tail (with the recipe's own): the others hold it; the recipe names it by the flag
            tail_names = {n for n in names if n not in own}
        steps[-1].float_tail = bool(tail)
        steps[-1].recipe_names = [n for n in names if n not in tail_names] if tail else names
        if steps[-1].passed:
            break
    result = FixResult(
        fmt.value, fp32, steps, str(out_dir), weighted, ranked_on=analysis.samples, held_plan=held
    )
    return _timed(result, runs, say)


def _held_plan(fmt: Format, int8_art: Artifact) -> list[str] | None:
    """ncnn-int8: the layers the plain artifact's speed plan keeps float ([] when it has no plan), held in every
    candidate instead of counting a plan for each (5 to 9 guest runs each: minutes a candidate on yolov5-lite);
    None for the other formats."""
    if fmt is not Format.NCNN_INT8:
        return None
    from edgekit.convert.ncnn.runtime import NcnnIO, io_path_for

    param = next(f for f in int8_art.files if f.suffix == ".param")
    speed_plan = (NcnnIO.read(io_path_for(param)).int8 or {}).get("speed_plan") or {}
    return [str(name) for name in speed_plan.get("float_layers", [])]


def _timed(result: FixResult, runs: list[Callable[[], None] | None], say: Progress) -> FixResult:
    """The result with each candidate's host latency (median, p10-p90) from interleaved rounds, and other
    processes' share of the CPUs while they ran. `runs` is in the order fp32, then steps; emptied once timed (each
    holds its model loaded). A run that fails while timed makes its candidate refused, as a first run's failure
    does (_measure): it was an internal error of the whole `analyze --fix`."""
    rows = [result.fp32, *result.steps]
    timed = [(row, run) for row, run in zip(rows, runs) if run is not None]
    runs.clear()
    say(f"fix: timing {len(timed)} models on this host, {HOST_ROUNDS} interleaved rounds")
    times, result.host_busy, failed = time_interleaved([run for _, run in timed])
    result.host_rounds = HOST_ROUNDS
    for k, ((row, _), ms) in enumerate(zip(timed, times)):
        if k in failed:
            row.error = f"{refusal(failed[k])} (while timed on this host)"
            what = row.label or ("the fp32 model" if row is result.fp32 else f"plain {result.format}")
            say(f"fix: {what} failed while timed: {row.error}")
        else:
            row.host_ms = statistics.median(ms)
            row.host_spread = [float(v) for v in np.percentile(ms, [10, 90])]
    timed.clear()  # the models are released here, not when the command ends
    gc.collect()
    return result


def _recipe_float(recipe: Recipe, fmt: Format) -> list[str]:
    """The layers (ncnn) or ops (TFLite) the recipe's `int8:` block already keeps in float for `fmt`."""
    if fmt is Format.NCNN_INT8:
        return list(dict.fromkeys(recipe.int8.ncnn_float_layers))
    if fmt is Format.TFLITE_INT8:
        return list(dict.fromkeys(recipe.int8.tflite_float_ops))
    if fmt is Format.ONNX_INT8:
        return list(dict.fromkeys(recipe.int8.onnx_float_nodes))
    return []


def output_tail(fmt: Format, art: Artifact) -> list[str]:
    """TFLite: the ops after the last weighted layers (tflite_selective.tflite_output_tail), tried in float first; int8
    there quantizes what the model outputs (box coordinates in pixels). ncnn quantizes weighted layers only."""
    if fmt.runtime is not Runtime.TFLITE:
        return []
    from edgekit.convert.tflite_selective import tflite_output_tail

    return tflite_output_tail(next(f for f in art.files if f.suffix == ".tflite"))


def _builder(
    fmt: Format,
    recipe: Recipe,
    onnx_path: Path,
    out_dir: Path,
    sets: list[list[str]],
    say: Progress,
    held_plan: list[str] | None = None,
) -> Any:
    """A function float_layers -> (Artifact, the names a recipe gives to build it) for this runtime."""
    if fmt.runtime is Runtime.NCNN:
        from edgekit.convert.calibration import calibration_inputs
        from edgekit.convert.ncnn.converter import convert_model

        calib = calibration_inputs(recipe)

        def ncnn_build(float_layers: list[str]) -> tuple[Artifact, list[str]]:
            folder = out_dir / f"float-{len(float_layers)}"
            files = convert_model(
                onnx_path,
                tuple(recipe.input.shape),
                fmt,
                folder,
                calibration=calib,
                recipe=recipe,
                float_layers=frozenset(float_layers),
                held_plan=held_plan or [],
            )
            return _artifact(fmt, files), list(float_layers)

        return ncnn_build
    if fmt.runtime is Runtime.ONNXRUNTIME:
        from edgekit.convert.onnxrt import quantize_qdq

        def onnx_build(float_nodes: list[str]) -> tuple[Artifact, list[str]]:
            folder = out_dir / f"float-{len(float_nodes)}"
            folder.mkdir(parents=True, exist_ok=True)
            quantize_qdq(onnx_path, folder / "model.onnx", recipe, float_nodes=float_nodes)
            return _artifact(fmt, [folder / "model.onnx"]), list(float_nodes)

        return onnx_build
    if fmt.runtime is not Runtime.TFLITE:
        raise AnalysisError(
            f"keeping layers in float is not implemented for {fmt.runtime.value} ({fmt.value})"
        )
    from edgekit.convert.tflite_selective import build_selective

    built = build_selective(
        onnx_path, recipe, sets, out_dir, progress=say
    )  # one TensorFlow run for every set
    by_set = {tuple(s): b for s, b in zip(sets, built)}
    return lambda float_layers: (
        _artifact(fmt, [by_set[tuple(float_layers)].path]),
        by_set[tuple(float_layers)].kept,
    )


def _artifact(fmt: Format, files: list[Path]) -> Artifact:
    return Artifact(fmt, list(files), key="", size_bytes=sum(f.stat().st_size for f in files))


def _measure(
    art: Artifact,
    float_layers: list[str],
    recipe: Recipe,
    inputs: np.ndarray,
    labels: Any,
    ref: Any,
    check: bool = True,
    gates_of: Format | None = None,
    runs: list[Callable[[], None] | None] | None = None,
) -> Candidate:
    """`art` checked against the ONNX model by the recipe's gates for `gates_of` (default: its own format's), and
    loaded for its host timing: its run is appended to `runs` (None for a candidate the runtime refused), to be
    timed with the others (time_interleaved); its host_ms is NaN until then."""
    from edgekit.fidelity import check as fidelity

    model_files = [f for f in art.files if f.suffix in art.format.files]
    size = sum(f.stat().st_size for f in model_files)
    try:
        numbers, gates = {}, {}
        if check:
            numbers = fidelity.compare(ref, fidelity.run_artifact(art, inputs), recipe, labels)
            gates = fidelity.check_gates(numbers, recipe.gates_for(gates_of or art.format))
        run = host_run(art, inputs[:1])
        run()  # it runs: a refusal here is the candidate's, said in its row
    except Exception as exc:  # noqa: BLE001 - a candidate the runtime refuses is a failed candidate, not a crash
        if runs is not None:
            runs.append(None)
        return Candidate(
            float_layers,
            [str(f) for f in art.files],
            size,
            float("nan"),
            error=refusal(exc),
        )
    if runs is not None:
        runs.append(run)
    return Candidate(float_layers, [str(f) for f in art.files], size, float("nan"), numbers, gates)


def keep(result: FixResult, dest: Path) -> Path:
    """Copy the chosen candidate's files to `dest` (a folder)."""
    chosen = result.chosen
    if chosen is None:
        raise ValueError("no candidate met the gate")
    dest.mkdir(parents=True, exist_ok=True)
    for f in chosen.files:
        shutil.copyfile(f, dest / Path(f).name)
    return dest
