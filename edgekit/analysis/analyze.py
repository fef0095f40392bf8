"""Where INT8 loses accuracy: the quantized model's intermediate tensors compared with fp32's, layer by layer.

For every layer the quantized artifact runs, two numbers against the fp32 artifact of the same runtime on the
same evaluation inputs (relative error = ||q - f|| / ||f|| over all samples; cosine = mean per sample):
- **propagated** (`cosine`, `rel_error`): the quantized model's tensor vs the fp32 model's, errors of earlier
  layers included: what the network downstream actually sees;
- **own** (`own_rel_error`): what this layer adds. NCNN: the layer alone, run in the INT8 model on the fp32
  model's input blob (ncnn lets any blob be fed in), so nothing upstream counts. TFLite (no way to feed an
  intermediate tensor): the propagated error at the output minus the worst propagated error of its inputs.
Layers are ranked by their own error: that is where to spend float precision (edgekit.analysis.float_fallback).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekit import paths
from edgekit.analysis.tensors import LayerError
from edgekit.convert.base import Artifact
from edgekit.errors import EdgekitError, RecipeError
from edgekit.formats import Format, Precision, Runtime
from edgekit.recipe import Recipe

if TYPE_CHECKING:
    import numpy as np

Progress = Callable[[str], None]

# layer types that hold weights, as each runtime names them (ncnn, ONNX, TFLite): what int8 quantizes to compute
# with, and so what --fix can always keep in float, whatever its own error (by difference it can round to 0)
WEIGHTED = frozenset(
    {
        *("Convolution", "ConvolutionDepthWise", "Deconvolution", "DeconvolutionDepthWise", "InnerProduct"),
        *("Conv", "ConvTranspose", "Gemm", "MatMul"),
        *("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "BATCH_MATMUL"),
    }
)


class AnalysisError(EdgekitError):
    """The layer analysis cannot run (wrong format, an artifact failed to convert)."""


@dataclass
class Analysis:
    recipe: str
    format: str
    samples: int
    method: str  # "isolated" (ncnn) or "difference" (tflite), how own_rel_error was measured
    layers: list[LayerError]
    fidelity: dict[str, Any] = field(default_factory=dict)  # the artifact's whole-model numbers and gates
    reference: str = ""  # the fp32 format every layer is compared with
    reference_fidelity: dict[str, Any] = field(default_factory=dict)  # its own numbers and gates vs ONNX
    notes: list[str] = field(default_factory=list)  # what the table cannot show (printed under the summary)
    # TFLite: the output's cosine vs fp32 with the builtin kernels the table is read with and with XNNPACK (as
    # deployed), when XNNPACK loses much more: the loss is in its int8 kernels, and --fix has nothing to rank
    kernel_loss: dict[str, Any] | None = None

    def reference_warning(self, recipe_path: str = "RECIPE") -> str | None:
        """When the fp32 artifact itself misses the recipe's gates against the original model: every layer is
        compared with that float model, so what the float conversion loses shows in no layer here, and keeping
        int8 layers in float (--fix) cannot win it back."""
        gates = self.reference_fidelity.get("gates")
        if not isinstance(gates, dict) or gates.get("passed") is not False:
            return None
        from edgekit.fidelity.check import describe_failures

        return (
            f"{self.reference} itself misses the recipe's gates against the original model "
            f"({describe_failures(gates)}): every layer below is compared with that float model, so what the "
            "float conversion loses shows in no layer, and no int8 layer kept in float wins it back; look at the "
            f"float conversion first (`edgekit convert {recipe_path} --format {self.reference}` prints its check)"
        )

    def worst(self, n: int | None = None) -> list[LayerError]:
        """Quantized layers, most damaging first."""
        ranked = sorted((x for x in self.layers if x.quantized), key=lambda x: -x.own_rel_error)
        return ranked if n is None else ranked[:n]

    def weighted(self) -> list[LayerError]:
        """Quantized layers that hold weights (Conv, Gemm, InnerProduct, ...), most damaging first: every one of
        them in float is the fp32 model's arithmetic (a TFLite row not compared, 'CONV_2D (not compared: ...)',
        counts by its op)."""
        return [x for x in self.worst() if x.type.split(" ")[0] in WEIGHTED]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def write_json(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=1, default=str) + "\n")


# runtimes whose intermediate tensors edgekit can read
LAYER_READERS = (Runtime.NCNN, Runtime.TFLITE, Runtime.ONNXRUNTIME)
# the formats analyze reads, one rule for --format and for a recipe without it (edgekit.cli.analyze): every INT8
# format of a runtime whose layers edgekit reads; the onnx2tf route (a Keras source's, beside its tflite-int8) last
READABLE = tuple(
    sorted(
        (f for f in Format if f.precision is Precision.INT8 and f.runtime in LAYER_READERS),
        key=lambda f: "onnx2tf" in f.value,
    )
)


def one_of(formats: tuple[Format, ...] | list[Format], last: str = "or") -> str:
    """'a, b, c or d': the format names as a sentence lists them."""
    names = [f.value for f in formats]
    return f"{', '.join(names[:-1])} {last} {names[-1]}" if len(names) > 1 else "".join(names)


def check_format(fmt: Format) -> None:
    if fmt.precision is not Precision.INT8:
        raise AnalysisError(
            f"analyze compares an INT8 artifact with fp32; {fmt.value} is not INT8",
            where="--format",  # the user's argument: exit 2
            hint=f"use --format {one_of(READABLE)}",
        )
    if fmt not in READABLE:
        raise AnalysisError(
            f"analyze cannot read the layers of {fmt.runtime.value} artifacts ({fmt.value})",
            where="--format",
            hint=f"use --format {one_of(READABLE)}",
        )


def artifacts_for(recipe: Recipe, fmt: Format, progress: Progress) -> tuple[Artifact, Artifact]:
    """The fp32 and INT8 artifacts of one runtime (converted or from the cache), fidelity-checked."""
    from edgekit.convert.pipeline import convert_recipe

    ref_fmt = fmt.fp32_reference
    try:  # not keep_going: that folds a RecipeError into a failed artifact, said as an AnalysisError (exit 1)
        made = convert_recipe(recipe, [ref_fmt, fmt], progress=progress)
    except RecipeError as err:  # the recipe's mistake (a float layer it names the model lacks): exit 2, at it
        if not err.where or Path(err.where).is_relative_to(paths.cache_dir() / "work"):
            err.where = str(recipe.path)  # not a converter's scratch file, deleted by now
        raise
    except EdgekitError as err:  # a failed conversion or a missed gate: the artifacts, judged below
        if getattr(err, "artifacts", None) is None:
            raise
        made = err.artifacts  # type: ignore[attr-defined]
    arts = {a.format: a for a in made}
    for f in (ref_fmt, fmt):
        if not arts[f].files:
            raise AnalysisError(f"{f.value} could not be converted: {arts[f].error}", where=str(recipe.path))
    return arts[ref_fmt], arts[fmt]


def analyze(recipe: Recipe, fmt: Format, samples: int = 16, progress: Progress | None = None) -> Analysis:
    """Compare every layer of the recipe's `fmt` artifact with its fp32 counterpart on evaluation inputs."""
    from edgekit.convert.calibration import evaluation_inputs

    say = progress or (lambda _m: None)
    check_format(fmt)
    fp32, int8 = artifacts_for(recipe, fmt, say)
    inputs, _ = evaluation_inputs(recipe)
    held = len(inputs)
    inputs = inputs[:samples]
    said = f" (--samples {samples}: the evaluation data holds {held})" if samples > held else ""
    say(f"analyze: comparing every layer on {len(inputs)} evaluation inputs{said}")
    from edgekit.analysis.ncnn_layers import ncnn_layers
    from edgekit.analysis.onnx_layers import fused_loss, onnx_layers
    from edgekit.analysis.tflite_layers import tflite_compared

    kernel_loss = None
    if fmt.runtime is Runtime.NCNN:
        layers, method = ncnn_layers(fp32.files, int8.files, inputs), "isolated"
    elif fmt.runtime is Runtime.TFLITE:
        layouts = (fp32.provenance.get("layout"), int8.provenance.get("layout"))
        layers, kernel_loss = tflite_compared(fp32.main_file, int8.main_file, inputs, layouts, delegated=True)
        method = "difference"
    elif fmt.runtime is Runtime.ONNXRUNTIME:
        layers, method = onnx_layers(fp32.main_file, int8.main_file, inputs), "difference"
    else:  # check_format refused it above
        raise AnalysisError(f"analyze cannot read the layers of {fmt.value}")
    return Analysis(
        recipe.name,
        fmt.value,
        len(inputs),
        method,
        layers,
        int8.fidelity,
        reference=fp32.format.value,
        reference_fidelity=fp32.fidelity,
        notes=[
            *(fused_loss(layers, int8, fp32) if fmt.runtime is Runtime.ONNXRUNTIME else []),
            *([xnnpack_note(kernel_loss, len(inputs))] if kernel_loss else []),
            *random_calibration_note(recipe, inputs),
        ],
        kernel_loss=kernel_loss,
    )


def xnnpack_note(loss: dict[str, Any], samples: int) -> str:
    """What analyze says when the INT8 file loses much more as deployed (XNNPACK) than with the builtin kernels its
    layers are read with: no row shows that loss, and no layer kept in float is sure to win it back."""
    return (
        f"the loss is in XNNPACK's int8 kernels, not in the quantization: at the output "
        f"({loss['output']}, {samples} inputs) the INT8 file reads cosine {loss['cosine_xnnpack']:.6f} against "
        f"fp32 with XNNPACK (as fidelity, deploy and the agent run it) and {loss['cosine_builtin']:.6f} with "
        "TFLite's builtin kernels, which every row below is read with (XNNPACK hides the tensors inside what it "
        f"delegates), so they cannot show it and --fix has nothing to rank; {xnnpack_where(loss)}: compare the "
        "other INT8 formats' checks (`edgekit convert` prints each) or ship tflite-fp16 / tflite-dynamic"
    )


def xnnpack_where(loss: dict[str, Any]) -> str:
    """Which op XNNPACK departs from the builtin kernels at most, when the run with every op output read found
    one (edgekit.analysis.tflite_layers.xnnpack_op)."""
    if not loss.get("op"):
        return "which op XNNPACK loses it in could not be read"
    of = f" (the requantization of {loss['op_input']})" if loss.get("op_input") else ""
    return (
        f"XNNPACK departs most from the builtin kernels at {loss['op_type']} {loss['op']}{of} (relative error "
        f"{loss['op_rel_error_vs_builtin']:.3f} added there, all its ops' outputs read)"
    )


def random_calibration_note(recipe: Recipe, inputs: np.ndarray) -> list[str]:
    """With `kind: random` calibration data, the loss below is the random data's first: the layers that lose most
    are those whose real inputs the random ones least resemble, and --fix's "more calibration data" of that kind
    cannot help."""
    from edgekit.convert.calibration import random_calibration_warning

    warning = random_calibration_warning(recipe, inputs)
    if warning is None:
        return []
    return [
        f"{warning}. The loss in the layers below is that data's first: calibrate on real samples before "
        "keeping layers in float (--fix)"
    ]
