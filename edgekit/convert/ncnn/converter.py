"""ONNX (or TorchScript) -> NCNN fp32 / fp16 / int8, through pnnx, with a sidecar that says how to run it.

pnnx is run as a subprocess in a temporary folder (pnnx.py; it writes a dozen files next to its input); only the ncnn
.param/.bin are kept, renamed model.param/model.bin, plus model.io.json (see runtime.py): the blob names
of the inputs and outputs in the original model's order, their shapes, and the ncnn options a runner must set
so that "fp32" really runs in fp32 on ARMv8.2 cores. ncnn-fp16 stores weights in fp16 (pnnx `fp16=1`);
ncnn-int8 starts from the fp32 export (`fp16=0`) and is quantized (int8_artifact.py, int8.py), because ncnn's own
ncnn2table/ncnn2int8 are in no package we can install. That fp32 export is the ncnn-fp32 artifact's .param/.bin:
where the conversion cache holds it (converted earlier in the same run, or by an earlier one), ncnn-int8 takes
its files and pnnx is not run again (_cached_fp32).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from edgekit.convert.base import Converter
from edgekit.convert.ncnn.int8_artifact import quantize_artifact
from edgekit.convert.ncnn.param import NcnnGraph, read_param
from edgekit.convert.ncnn.pnnx import run_pnnx
from edgekit.convert.ncnn.runtime import IO_VERSION, NcnnIO, NcnnModel, io_path_for, options_for
from edgekit.errors import ConversionError
from edgekit.formats import Format, Precision
from edgekit.recipe import Recipe


class NcnnConverter(Converter):
    """pnnx for fp32/fp16; pnnx fp32 + edgekit's post-training quantizer for int8."""

    formats = (Format.NCNN_FP32, Format.NCNN_FP16, Format.NCNN_INT8)
    dists = ("pnnx", "ncnn")

    @classmethod
    def tool_versions(cls) -> dict[str, str]:
        from edgekit.convert.ncnn.int8 import QUANTIZER_VERSION

        return {
            **cls.dist_versions(),
            "edgekit-ncnn-int8": QUANTIZER_VERSION,
            "edgekit-ncnn-io": str(IO_VERSION),
        }

    @classmethod
    def format_tools(cls, fmt: Format) -> dict[str, str]:
        """ncnn-int8's key also says whether the speed plan is counted: an int8 artifact planned on the emulated
        cores differs from one that was not. Only its key: ncnn-fp32 and fp16 never run the plan, and keyed on it
        they converted again when EDGEKIT_NCNN_SPEED_PLAN (or finding the cores) changed, beside their own entry,
        which ncnn-int8's fp32 lookup (_cached_fp32) then missed."""
        if fmt is not Format.NCNN_INT8:
            return cls.tool_versions()
        from edgekit.convert.ncnn import plan as ncnn_plan

        counted = f"counted, rules {ncnn_plan.PLAN_RULES}" if ncnn_plan.enabled() else "off"
        return {**cls.tool_versions(), "edgekit-ncnn-speed-plan": counted}

    def convert(self, onnx_path: Path, recipe: Recipe, fmt: Format, out_dir: Path) -> list[Path]:
        self.findings: dict[Format, list[str]] = getattr(self, "findings", {})
        self.key_tools: dict[Format, dict[str, str]] = getattr(self, "key_tools", {})

        def plan_failed(reason: str) -> None:
            """The speed plan could not be counted (a qemu guest timed out): the artifact is all-int8, not what
            the key's "counted" says, so the pipeline keys it as not counted (a later run counts again)."""
            self.key_tools[fmt] = {"edgekit-ncnn-speed-plan": "failed"}
            warning = (
                f"WARNING: the speed plan's {reason}: {fmt.value} is all-int8 this time (no layer kept "
                "float for speed); it is not cached as counted, so the next convert counts again"
            )
            self.findings.setdefault(fmt, []).append(warning)
            if self.progress is not None:
                self.progress(warning)

        def plan_not_counted(reason: str) -> None:
            """No plan could be counted here (the emulated cores not found): the artifact is all-int8, which the
            same convert with the cores found may not ship (it keeps layers float, or the fp32 model)."""
            warning = (
                f"WARNING: no speed plan, {reason}: {fmt.value} is all-int8 (no layer kept float for speed; "
                "with the cores found the plan may keep layers float, or ship the fp32 model)"
            )
            self.findings.setdefault(fmt, []).append(warning)
            if self.progress is not None:
                self.progress(warning)

        calibration = None
        if fmt.precision is Precision.INT8:
            from edgekit.convert.calibration import calibration_inputs

            calibration = calibration_inputs(recipe)
        return convert_model(
            Path(onnx_path),
            tuple(recipe.input.shape),
            fmt,
            Path(out_dir),
            calibration=calibration,
            recipe=recipe,
            float_layers=frozenset(recipe.int8.ncnn_float_layers) if fmt is Format.NCNN_INT8 else frozenset(),
            progress=self.progress,
            on_plan_failure=plan_failed,
            on_plan_not_counted=plan_not_counted,
        )


def convert_model(
    model_path: Path,
    input_shape: tuple[int, ...],
    fmt: Format,
    out_dir: Path,
    *,
    calibration: np.ndarray | None = None,
    recipe: Recipe | None = None,
    float_layers: frozenset[str] | set[str] = frozenset(),
    progress: Callable[[str], None] | None = None,
    on_plan_failure: Callable[[str], None] | None = None,
    on_plan_not_counted: Callable[[str], None] | None = None,
    held_plan: Sequence[str] | None = None,
) -> list[Path]:
    """Convert one ONNX/TorchScript file to `fmt` in out_dir: [model.param, model.bin, model.io.json].

    `float_layers` names ncnn layers the int8 quantizer must leave in float (edgekit analyze --fix);
    `on_plan_failure` hears why the int8 speed plan could not be counted (the artifact is then all-int8),
    `on_plan_not_counted` why it was not tried (the emulated cores not found; not when switched off);
    `held_plan` (analyze --fix): no plan counted, these layers (the plain artifact's plan) stay float too."""
    if fmt.runtime.value != "ncnn":
        raise ConversionError(f"the ncnn converter cannot produce {fmt.value}")
    if not input_shape or input_shape[0] != 1:
        where = str(recipe.path) if recipe else str(model_path)
        raise ConversionError(
            f"ncnn models have no batch axis; input.shape must start with 1, got {list(input_shape)}",
            where=where,
            hint="set input.shape: [1, ...]",
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    param, bin_path = out_dir / "model.param", out_dir / "model.bin"
    cached = _cached_fp32(model_path, input_shape, recipe) if fmt is Format.NCNN_INT8 else None
    if cached is not None:  # the fp32 model pnnx would write: this run's (or an earlier one's) ncnn-fp32
        try:  # copies: the quantizer rewrites these files, never the cache's
            shutil.copyfile(cached[0], param)
            shutil.copyfile(cached[1], bin_path)
        except OSError:  # the entry went between lookup and copy (`cache prune --all` beside this run): pnnx
            cached = None
        if cached is not None and progress is not None:
            progress(f"fp32 model from the cached ncnn-fp32 artifact {cached[2][:12]} (pnnx not run again)")
    if cached is None:
        run_pnnx(model_path, input_shape, fp16=fmt is Format.NCNN_FP16, param=param, bin_path=bin_path)
    graph = read_param(param)
    check_layers(graph, model_path)
    io = describe_io(model_path, graph, input_shape, fmt)
    if fmt.precision is Precision.INT8:
        if calibration is None:
            raise ConversionError("ncnn-int8 needs calibration inputs", where=str(model_path))
        io = quantize_artifact(
            param,
            bin_path,
            io,
            calibration,
            recipe,
            float_layers,
            progress,
            on_plan_failure,
            on_plan_not_counted,
            held_plan=held_plan,
        )
    io.write(io_path_for(param))
    check_outputs(param, bin_path, io)
    return [param, bin_path, io_path_for(param)]


def _cached_fp32(
    model_path: Path, input_shape: tuple[int, ...], recipe: Recipe | None
) -> tuple[Path, Path, str] | None:
    """The .param/.bin (and cache key) of the ncnn-fp32 artifact of this model in the conversion cache, or None:
    the fp32 model ncnn-int8 starts from is that artifact's files (pnnx `fp16=0`; the sidecar and the output check
    add nothing to them), so an int8 conversion after ncnn-fp32 (in the same run, or from the cache) does not run
    pnnx again. The key is ncnn-fp32's own (the model's sha256, the input, pnnx's and ncnn's versions): a change to
    any of them, or a damaged entry (cache.lookup checks every file's sha256), is a miss and pnnx runs."""
    if recipe is None or tuple(recipe.input.shape) != tuple(input_shape) or not model_path.is_file():
        return None
    from edgekit.convert import cache
    from edgekit.convert.onnx_export import file_sha256

    key = cache.artifact_key(file_sha256(model_path), recipe, Format.NCNN_FP32, NcnnConverter)
    hit = cache.lookup(
        key, then="ncnn-int8 runs pnnx itself (ncnn-fp32 converts again when it is next asked for)"
    )
    if hit is None:
        return None
    by_suffix = {f.suffix: f for f in hit.files}
    if ".param" not in by_suffix or ".bin" not in by_suffix:
        return None
    return by_suffix[".param"], by_suffix[".bin"], key


# operators pnnx leaves raw when it cannot read them, though ncnn has a layer that does the same
_NCNN_LAYER_FOR = {"Pad": "Padding"}


def check_layers(graph: NcnnGraph, model_path: Path) -> None:
    """pnnx writes operators it could not map (torch.where, pnnx.Expression, ...) as layers ncnn does not
    have; ncnn would refuse the model at load time. Say which ones, before anything else is done."""
    import ncnn

    unknown = sorted({layer.type for layer in graph.layers if ncnn.layer_to_index(layer.type) < 0})
    if not unknown:
        return
    missing = [op for op in unknown if op not in _NCNN_LAYER_FOR]
    said = [f"pnnx left operators that ncnn has no layer for: {', '.join(missing)}"] if missing else []
    said += [
        f"pnnx left {op} as it is: ncnn's {_NCNN_LAYER_FOR[op]} was not produced"
        for op in unknown
        if op not in missing
    ]
    raise ConversionError(
        "; ".join(said),
        where=str(model_path),
        hint=(
            "rewrite those operations in the model with ones ncnn has"
            if missing
            else "pnnx converts a Pad "
            "whose pads are constants (its mode, if named, constant, reflect or edge); make them so"
        )
        + ", or leave the ncnn formats out of the recipe's formats (the other formats' conversions say whether "
        "their converters take them)",
    )


# --- inputs and outputs -------------------------------------------------------------------------------------
def describe_io(model_path: Path, graph: NcnnGraph, input_shape: tuple[int, ...], fmt: Format) -> NcnnIO:
    """Map pnnx's blobs (in0.., out0..) to the original model's names, in the original order."""
    in_blobs = _numbered(graph.input_blobs(), "in")
    out_blobs = _numbered(graph.output_blobs(), "out")
    in_names, out_names, out_shapes = _model_io(model_path)
    in_names = in_names or in_blobs
    out_names = out_names or out_blobs
    if len(in_blobs) != len(in_names) or len(out_blobs) != len(out_names):
        raise ConversionError(
            f"pnnx produced inputs {in_blobs} and outputs {out_blobs}, but the model has "
            f"inputs {in_names} and outputs {out_names}",
            where=str(model_path),
        )
    shapes: list[list[int] | None] = list(out_shapes) if out_shapes else [None] * len(out_blobs)
    return NcnnIO(
        format=fmt.value,
        inputs=in_blobs,
        outputs=out_blobs,
        options=options_for(fmt),
        input_names=in_names,
        input_shapes=[list(input_shape)] * len(in_blobs),
        output_names=out_names,
        output_shapes=shapes,
    )


def _numbered(blobs: list[str], prefix: str) -> list[str]:
    """pnnx numbers blobs in the model's order (out0 = first output); file order can differ."""
    named = [b for b in blobs if re.fullmatch(rf"{prefix}\d+", b)]
    return sorted(named, key=lambda b: int(b[len(prefix) :])) if len(named) == len(blobs) else blobs


def _model_io(model_path: Path) -> tuple[list[str], list[str], list[list[int]] | None]:
    """Input names, output names and static output shapes of an ONNX file (empty for TorchScript)."""
    if model_path.suffix.lower() != ".onnx":
        return [], [], None
    import onnx

    model = onnx.load(str(model_path), load_external_data=False)
    inits = {i.name for i in model.graph.initializer}
    ins = [i.name for i in model.graph.input if i.name not in inits]
    outs = [o.name for o in model.graph.output]
    shapes: list[list[int]] = []
    for o in model.graph.output:
        dims = [d.dim_value if d.HasField("dim_value") else 0 for d in o.type.tensor_type.shape.dim]
        if not dims or 0 in dims:
            return ins, outs, None
        shapes.append(dims)
    return ins, outs, shapes


def check_outputs(param: Path, bin_path: Path, io: NcnnIO) -> None:
    """Run the artifact once on zeros: it must load, and each output must have its ONNX shape's element count
    (a mismatch means the blob-to-output mapping is wrong). Fills shapes that ONNX left dynamic."""
    zeros = [np.zeros(shape, np.float32) for shape in io.input_shapes]
    with NcnnModel(param, bin_path, io) as model:
        raw = model.extract(zeros, io.outputs)
    changed = False
    for k, (blob, name, arr) in enumerate(zip(io.outputs, io.output_names, raw)):
        shape = io.output_shapes[k]
        if shape is None:
            io.output_shapes[k], changed = [1, *arr.shape], True
        elif int(np.prod(shape)) != arr.size:
            raise ConversionError(
                f"ncnn output {blob} has shape {list(arr.shape)}, but the model's output "
                f"{name!r} has shape {shape}",
                where=str(param),
            )
    if changed:
        io.notes.append("output shapes were dynamic in the model; taken from an ncnn run at the input shape")
        io.write(io_path_for(param))
