"""Which converter makes each format of a convert run: the registry's (TensorFlow's own for TFLite of a Keras
source), the formats refused before any work is done (int8 input and output a converter cannot make, a Keras-only
route, ExecuTorch of a model that is not PyTorch), the formats grouped per converter, and the tool a progress line
names for a converter.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

from edgekit.convert.base import Converter
from edgekit.errors import ConversionError, RecipeError
from edgekit.formats import Format, int8_io_refusal
from edgekit.recipe import IOType, KerasSource, Recipe
from edgekit.recipe.schema import keras_only_route, torch_only_route
from edgekit.runtimes import spec_for


def refuse_int8_io(fmts: Sequence[Format], recipe: Recipe) -> None:
    """int8.io: int8 with an INT8 format whose converter has no int8 input and output: the formats a command was
    given (`-f`) refused by the rule the recipe's own formats are (formats.int8_io_refusal), never an artifact
    that takes float32 in silence."""
    refused = int8_io_refusal(fmts) if recipe.int8.io is IOType.INT8 else None
    if refused:
        message, _, hint = refused.partition("; ")
        raise RecipeError(message, where=str(recipe.path), hint=hint)


def converters_for(fmts: Sequence[Format], recipe: Recipe) -> dict[Format, type[Converter]]:
    """Each format's converter: the registry's, except TFLite of a Keras source (TensorFlow's own converter)."""
    problems: dict[str, str] = {}
    keras_source = isinstance(recipe.model, KerasSource)
    refused = keras_only_route(fmts, recipe.model)  # as the recipe's own `formats` are refused: -f comes here
    if refused:
        route = [f.value for f in fmts if f.value.startswith("tflite-onnx2tf-")]
        raise RecipeError(
            refused,
            where=str(recipe.path),
            hint=f"ask for {', '.join(r.replace('tflite-onnx2tf-', 'tflite-') for r in route)} instead",
        )
    torch_only = torch_only_route(fmts, recipe.model)  # likewise, before any format is converted
    if torch_only:
        raise RecipeError(torch_only[0], where=str(recipe.path), hint=torch_only[1])
    if keras_source:
        importlib.import_module("edgekit.convert.keras")  # registers the tflite-onnx2tf-* route
    for module in dict.fromkeys(
        spec_for(f).converter for f in fmts
    ):  # each runtime module names its converter
        try:
            importlib.import_module(module)
        except ImportError as exc:
            problems[module] = str(exc)
    out = {}
    for f in fmts:
        if keras_source:
            from edgekit.convert.keras import converter_for

            special = converter_for(f)
            if special is not None:
                out[f] = special
                continue
        try:
            out[f] = Converter.for_format(f)
        except KeyError:
            raise ConversionError(
                f"no converter for {f.value} is available ({'; '.join(problems.values())})",
                hint="check that the conversion toolchain is installed (make setup)",
            ) from None
    return out


# the tools each converter runs, as a user knows them (progress lines named the Python class: TfliteConverter)
TOOLS = {
    "TfliteConverter": "onnx2tf + TensorFlow",
    "Onnx2tfRouteConverter": "onnx2tf + TensorFlow",
    "KerasTfliteConverter": "TensorFlow's TFLiteConverter",
    "NcnnConverter": "pnnx",
    "MnnConverter": "MNN's converter",
    "OnnxRuntimeConverter": "no tool (the ONNX model as prepared)",
    "OpenCvConverter": "no tool (the ONNX model as prepared)",
    "OpenVinoConverter": "OpenVINO (convert_model)",
    "ExecuTorchConverter": "torch.export + ExecuTorch (XNNPACK)",
}
INT8_TOOLS = {  # what an INT8 format adds (quantization) to the converter's own tool
    "NcnnConverter": "pnnx + edgekit's INT8 quantizer",
    "MnnConverter": "MNN's converter + quantization tool",
    "OnnxRuntimeConverter": "onnxruntime's quantization tool",
    "OpenVinoConverter": "OpenVINO + NNCF",
    "ExecuTorchConverter": "torch.export + ExecuTorch's PT2E quantizer (XNNPACK)",
}


def tool_name(conv_cls: type[Converter], batch: Sequence[Format]) -> str:
    """What a progress line says converts `batch`: the tool (a class's `tool` attribute, else TOOLS), never the
    class name unless the converter is unknown here."""
    name = conv_cls.__name__
    if any(f.value.endswith("-int8") for f in batch) and name in INT8_TOOLS:
        return INT8_TOOLS[name]
    return str(getattr(conv_cls, "tool", None) or TOOLS.get(name, name))


def by_converter(
    fmts: Sequence[Format], converters: dict[Format, type[Converter]]
) -> list[tuple[type[Converter], list[Format]]]:
    """The formats by converter, each converter's fp32 formats first: ncnn-int8 starts from the ncnn-fp32 artifact
    the cache holds (one pnnx run for both), which it found only when ncnn-fp32 was listed before it. The artifacts
    are still returned in the order asked for."""
    groups: dict[type[Converter], list[Format]] = {}
    for f in fmts:
        groups.setdefault(converters[f], []).append(f)
    return [(conv, sorted(group, key=lambda f: f.fp32_reference is not f)) for conv, group in groups.items()]
