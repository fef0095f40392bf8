"""NCNN INT8 post-training quantization, in Python, writing what ncnn's loader reads.

ncnn's own ncnn2table/ncnn2int8 are in no package we can install (see docs/notes/conversion.md), so this module
does their work on a pnnx fp32 export:
1. find the Convolution / ConvolutionDepthWise / InnerProduct layers (the layer types ncnn runs in int8);
2. run the fp32 model on the calibration inputs and take each such layer's input blob statistics
   (calib.py: KL as ncnn2table does, or absmax) -> one activation scale 127 / threshold per layer;
3. quantize the weights (int8_weights.py) per output channel (per group for depthwise; or per tensor), scale
   127 / absmax, or 31 / absmax for 3x3 stride-1 convolutions (ncnn's int8 Winograd F(4,3) needs 6-bit weights, as
   ncnn2table);
4. write each quantized layer in ncnn's layout (src/layer/convolution.cpp etc., load_model): `8=2` in the
   .param (`8=1` for per-group depthwise), and in the .bin the int8-tagged weights, the fp32 bias, the weight
   scales (num_output floats; group floats or 1 for depthwise) and the input scale (1 float).
Every other layer is copied byte for byte; layers named in `float_layers`, or whose input was always zero,
stay float, as do weight-carrying layers of other types (ncnn has no int8 kernel for them either).
5. requantize fusion (requantize.py), as ncnn2int8's fuse_requantize: an int8 Convolution/ConvolutionDepthWise
   whose output goes only into int8 Convolution/ConvolutionDepthWise layers (directly, or through a Split all of
   whose outputs do) writes int8 itself: `8=` + 100 in the .param and, after the input scale in the .bin, one more
   float, the top scale (the consumer's input scale). Without it every int8 layer dequantizes to float and
   the next one quantizes again.
6. activations as ncnn's fast kernels want them: a fused clip(0, hi) (ReLU6) on a requantized layer whose
   consumer's threshold T <= hi is written as ReLU. This is exact, not an approximation: the requantized
   output saturates at 127 = T anyway, so values above T (and so above hi) give 127 either way. It matters
   because ncnn's fast int8 depthwise kernels take activation none or ReLU only (convolutiondepthwise_arm).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edgekit.convert.ncnn import calib as ncnn_calib
from edgekit.convert.ncnn import weights as ncnn_bin
from edgekit.convert.ncnn.int8_weights import expand_scales, float_to_int8, weight_scales
from edgekit.convert.ncnn.param import NcnnGraph, NcnnLayer, read_param, write_param
from edgekit.convert.ncnn.requantize import relu_where_exact, requantize_fusions
from edgekit.convert.ncnn.runtime import NcnnIO, NcnnModel
from edgekit.errors import ConversionError, InputDataError, RecipeError

# cache key. 9: the A72's float profile is the fp32 model's (plan_counts.float_runs_as_fp32);
# 8: an all-float plan records the fp32 model it ships (kept "fp32");
# 7: grouped convolutions stay float (6 was a withdrawn in-context plan);
# 5: an all-float plan ships the fp32 model; 3: no core slower (strict plan); 2: fusion
QUANTIZER_VERSION = "9"
QUANTIZABLE = ("Convolution", "ConvolutionDepthWise", "InnerProduct")
METHODS = ("kl", "absmax")
GRANULARITIES = ("per-channel", "per-tensor")


@dataclass
class LayerResult:
    """What happened to one layer: int8 (with its activation threshold) or fp32 (with the reason)."""

    name: str
    type: str
    int8: bool
    reason: str = ""
    absmax: float = 0.0
    threshold: float = 0.0
    input_scale: float = 0.0
    top_scale: float = 0.0  # requantize fusion: the int8 output's scale (0: the output is dequantized)
    activation: str = ""  # what was done to the fused activation ("clip(0,6) -> relu (exact)")


@dataclass
class Int8Report:
    method: str
    granularity: str
    calibration_samples: int
    layers: list[LayerResult] = field(default_factory=list)
    other_weighted_layers: dict[str, int] = field(default_factory=dict)  # type -> count, left fp32

    @property
    def quantized(self) -> list[str]:
        return [r.name for r in self.layers if r.int8]

    @property
    def kept_float(self) -> list[LayerResult]:
        return [r for r in self.layers if not r.int8]

    def to_dict(self) -> dict:
        """Plain data for the sidecar: one row per layer, columns named by `layer_fields`."""
        data = asdict(self)
        data["layer_fields"] = [
            "name",
            "type",
            "int8",
            "reason",
            "absmax",
            "threshold",
            "input_scale",
            "top_scale",
            "activation",
        ]
        data["layers"] = [
            [
                r.name,
                r.type,
                r.int8,
                r.reason,
                *(float(f"{v:.6g}") for v in (r.absmax, r.threshold, r.input_scale, r.top_scale)),
                r.activation,
            ]
            for r in self.layers
        ]
        return data

    def notes(self) -> list[str]:
        fused = sum(1 for r in self.layers if r.top_scale > 0)
        relu = sum(1 for r in self.layers if r.activation)
        out = [
            (
                f"int8 ({self.method}, {self.granularity}, {self.calibration_samples} calibration samples): "
                f"{len(self.quantized)} of {len(self.layers)} {'/'.join(QUANTIZABLE)} layers; "
                f"{fused} write int8 for the next int8 layer (requantize fusion), {relu} ReLU6 written as "
                "ReLU (exact after requantization)"
            )
        ]
        out += [f"layer {r.name} ({r.type}) left in fp32: {r.reason}" for r in self.kept_float]
        if self.other_weighted_layers:
            kinds = ", ".join(f"{t} x{n}" for t, n in sorted(self.other_weighted_layers.items()))
            out.append(f"left in fp32 (ncnn has no int8 kernel for these layer types): {kinds}")
        return out


@dataclass
class _Plan:
    """A layer to quantize: where its bytes are and its float weights."""

    index: int
    layer: NcnnLayer
    span: tuple[int, int]
    weights: np.ndarray
    bias: np.ndarray | None


def quantize_ncnn(
    param: Path,
    bin_path: Path,
    inputs: np.ndarray,
    io: NcnnIO,
    out_param: Path,
    out_bin: Path,
    *,
    method: str = "kl",
    granularity: str = "per-channel",
    float_layers: set[str] | frozenset[str] = frozenset(),
    fuse: bool = True,
    stats_cache: dict[str, ncnn_calib.BlobStats] | None = None,
) -> Int8Report:
    """Quantize an fp32 ncnn model (param/bin, run with `io`) on calibration `inputs` (N, ...) and write it to
    out_param/out_bin (may be the same files). Layers named in `float_layers` stay fp32; `fuse` False leaves
    every int8 output dequantized (steps 5 and 6 off: for comparisons). `stats_cache` (blob -> statistics) keeps the
    calibration statistics between calls on the same model, inputs and method (a speed plan quantizes several
    times): blobs already in it are not run again."""
    _check_options(method, granularity, inputs)
    graph = read_param(param)
    _check_names(graph, float_layers, param)
    data = Path(bin_path).read_bytes()
    spans = ncnn_bin.layer_spans(param, data)
    report = Int8Report(method, granularity, len(inputs))
    plans = _plan(graph, data, spans, float_layers, report)
    source = _split_sources(graph)
    blobs = sorted({source(p.layer.bottoms[0]) for p in plans})
    stats = {} if stats_cache is None else stats_cache
    if missing := [b for b in blobs if b not in stats]:
        try:
            stats.update(_calibrate(param, bin_path, io, inputs, missing, method))
        except ncnn_calib.NonFiniteActivation as exc:
            layers = [p.layer for p in plans if source(p.layer.bottoms[0]) == exc.blob]
            raise _non_finite(exc, layers, len(inputs), param) from None
    segments = [data[start:end] for start, end in spans]
    for plan in plans:
        segment = _quantize_layer(plan, stats[source(plan.layer.bottoms[0])], method, granularity, report)
        if segment is not None:
            segments[plan.index] = segment
    if fuse:
        results = {r.name: r for r in report.layers}
        for index, top_scale in requantize_fusions(
            graph, {r.name: r.input_scale for r in report.layers if r.int8}
        ).items():
            layer = graph.layers[index]
            layer.set_param(8, layer.get_int(8) + 100)
            segments[index] += ncnn_bin.floats(np.array([top_scale], np.float32))
            results[layer.name].top_scale = top_scale
            results[layer.name].activation = relu_where_exact(layer, 127.0 / top_scale)
    Path(out_bin).write_bytes(b"".join(segments))
    write_param(graph, out_param)
    return report


def _check_options(method: str, granularity: str, inputs: np.ndarray) -> None:
    if method not in METHODS:
        raise ConversionError(f"unknown calibration method {method!r}; expected one of {', '.join(METHODS)}")
    if granularity not in GRANULARITIES:
        raise ConversionError(
            f"unknown int8 granularity {granularity!r}; expected {', '.join(GRANULARITIES)}"
        )
    if len(inputs) == 0:
        raise ConversionError("no calibration inputs", hint="give calibration.data at least one sample")


def _check_names(graph: NcnnGraph, float_layers: set[str] | frozenset[str], param: Path) -> None:
    names = {layer.name for layer in graph.layers}
    unknown = sorted(set(float_layers) - names)
    if unknown:
        candidates = [layer.name for layer in graph.layers if layer.type in QUANTIZABLE]
        raise RecipeError(  # the recipe's int8.ncnn_float_layers (analyze --fix names only the model's own)
            f"field `int8.ncnn_float_layers`: layers the model does not have: {unknown}",
            where=str(param),
            hint=f"quantizable layers are: {', '.join(candidates)} (`edgekit analyze RECIPE --format ncnn-int8` "
            "names them by their damage)",
        )


def _plan(
    graph: NcnnGraph,
    data: bytes,
    spans: list[tuple[int, int]],
    float_layers: set[str] | frozenset[str],
    report: Int8Report,
) -> list[_Plan]:
    plans = []
    for index, (layer, span) in enumerate(zip(graph.layers, spans)):
        if layer.type not in QUANTIZABLE:
            if span[1] > span[0]:
                report.other_weighted_layers[layer.type] = report.other_weighted_layers.get(layer.type, 0) + 1
            continue
        reason = _skip_reason(layer, float_layers)
        if reason is None:
            try:
                plans.append(_read_layer(index, layer, data, span))
                continue
            except ConversionError as exc:
                reason = exc.message
        report.layers.append(LayerResult(layer.name, layer.type, False, reason))
    return plans


def _skip_reason(layer: NcnnLayer, float_layers: set[str] | frozenset[str]) -> str | None:
    if layer.name in float_layers:
        return "kept in float on request (float_layers)"
    if layer.get_int(8):
        return "already quantized"
    if layer.type != "InnerProduct" and layer.get_int(19):
        return "its weights are an input blob (dynamic weight)"
    if layer.type == "ConvolutionDepthWise" and layer.get_int(0) // max(1, layer.get_int(7, 1)) > 1:
        # measured: regnet_y_400mf all-int8 cosine 0.81, these layers' own outputs garbage (errors ~1e38)
        return (
            "a grouped convolution with several outputs per group: ncnn runs it as one int8 Convolution per group "
            "and hands each one weight scale where it reads one per output (create_group_ops), so its outputs are "
            "garbage"
        )
    return None


def _read_layer(index: int, layer: NcnnLayer, data: bytes, span: tuple[int, int]) -> _Plan:
    is_fc = layer.type == "InnerProduct"
    num_output = layer.get_int(0)
    weight_size = layer.get_int(2 if is_fc else 6)
    bias_term = layer.get_int(1 if is_fc else 5)
    weights, offset = ncnn_bin.read_weights(data, span[0], weight_size)
    bias = None
    if bias_term:
        bias, offset = ncnn_bin.read_floats(data, offset, num_output)
    if offset != span[1]:
        raise ConversionError(
            f"unexpected weight layout ({span[1] - span[0]} bytes, expected {offset - span[0]})"
        )
    return _Plan(index, layer, span, weights, bias)


def _split_sources(graph: NcnnGraph) -> Callable[[str], str]:
    """Blob -> the blob it is a copy of: ncnn Split outputs share their input's data, so calibrating the
    source once gives every consumer the same statistics (ncnn2table does it per consumer, equal results)."""
    copied_from = {
        top: layer.bottoms[0] for layer in graph.layers if layer.type == "Split" for top in layer.tops
    }

    def source(blob: str) -> str:
        while blob in copied_from:
            blob = copied_from[blob]
        return blob

    return source


def _non_finite(
    exc: ncnn_calib.NonFiniteActivation, layers: list[NcnnLayer], inputs: int, param: Path
) -> InputDataError:
    """The calibration data or the model makes non-finite values where a layer takes its int8 scale from."""
    named = ", ".join(f"{layer.name} ({layer.type})" for layer in layers) or exc.blob
    values = " and ".join(f"{n} {what}" for n, what in ((exc.nan, "NaN"), (exc.inf, "infinite")) if n)
    return InputDataError(
        f"the input of layer{'s' if len(layers) > 1 else ''} {named} holds {values} values on calibration input {exc.index} of {inputs} "
        f"(blob {exc.blob!r}, run in fp32): the calibration data or the model produces non-finite values, "
        "so no int8 scale can be taken there",
        where=str(param),
        hint="check that the calibration data is what the model takes (its range and preprocessing), and the "
        "model's operations that can make NaN or infinity (log or sqrt of values <= 0, a division by 0, exp "
        "overflow) before that layer",
    )


def _calibrate(
    param: Path, bin_path: Path, io: NcnnIO, inputs: np.ndarray, blobs: list[str], method: str
) -> dict[str, ncnn_calib.BlobStats]:
    with NcnnModel(param, bin_path, io) as model:
        return ncnn_calib.collect(lambda x, names: model.extract([x], names), inputs, blobs, method)


def _quantize_layer(
    plan: _Plan, stats: ncnn_calib.BlobStats, method: str, granularity: str, report: Int8Report
) -> bytes | None:
    layer = plan.layer
    thr = ncnn_calib.threshold(stats, method)
    result = LayerResult(layer.name, layer.type, thr > 0, "", stats.absmax, thr)
    report.layers.append(result)
    if thr <= 0:
        result.reason = "its input was always zero on the calibration data"
        return None
    result.input_scale = 127.0 / thr
    rows, scales, scale_term = weight_scales(layer, plan.weights, granularity)
    quantized = float_to_int8(plan.weights.reshape(rows, -1) * expand_scales(scales, rows)[:, None])
    layer.set_param(8, scale_term)
    parts = [ncnn_bin.int8_weights(quantized.ravel())]
    if plan.bias is not None:
        parts.append(ncnn_bin.floats(plan.bias))
    parts += [ncnn_bin.floats(scales), ncnn_bin.floats(np.array([result.input_scale], np.float32))]
    return b"".join(parts)
