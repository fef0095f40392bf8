"""The kernels an ncnn layer runs, as far as the calibration set tells them apart: what `estimate` checks a model
against to say its kernels' speed is calibrated.

A layer is its type, plus
- a convolution's or inner product's fused activation (`fused hardswish`: ncnn runs it inside the layer's output
  loop, not as a layer of its own; ncnnoptimize fuses a MobileNetV3's HardSwish, ReLU6 and Mish this way),
- a dilated convolution (`Convolution dilated`: ncnn runs it through another kernel than the dense one),
- an Interp's resize mode (`Interp bicubic`: nearest, bilinear and bicubic are three kernels).

Review r19: a model with only the calibration models' layer types, but a fused HardSwish, a dilated convolution
and a bicubic upsample (none of which a calibration model runs), was estimated with the ordinary interval and
called validated, while the same HardSwish as a layer of its own widened it. With these kernels the same six
calibration models as by type alone have one no other calibration model has (groups.novel_layer_models), so the
held-out figures behind the wide interval are unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

# ncnn's activation_type (param 9 of Convolution*, Deconvolution*, InnerProduct)
ACTIVATIONS = {1: "relu", 2: "leakyrelu", 3: "clip", 4: "sigmoid", 5: "mish", 6: "hardswish"}
# Interp's resize_type (param 0)
RESIZE_MODES = {1: "nearest", 2: "bilinear", 3: "bicubic"}
_DILATING = {
    f"{base}{dims}"
    for base in ("Convolution", "ConvolutionDepthWise", "Deconvolution", "DeconvolutionDepthWise")
    for dims in ("", "1D", "3D")
}
_FUSING = _DILATING | {"InnerProduct"}


def _int(text: object, default: int) -> int:
    try:
        return int(float(str(text)))
    except ValueError:
        return default


def layer_kernels(kind: str, params: Mapping[str, object]) -> set[str]:
    """The kernels one layer of type `kind` with these .param values (id as written -> value) runs."""
    kernels = {kind}
    activation = _int(params.get("9", 0), 0) if kind in _FUSING else 0
    if activation:
        kernels.add(f"fused {ACTIVATIONS.get(activation, f'activation {activation}')}")
    if kind in _DILATING:  # 2: dilation_w; 12: dilation_h, 22: dilation_d (each defaults to the one before)
        width = _int(params.get("2", 1), 1)
        height = _int(params.get("12", width), width)
        if max(width, height, _int(params.get("22", height), height)) > 1:
            kernels.add(f"{kind} dilated")
    if kind == "Interp":
        mode = _int(params.get("0", 0), 0)
        kernels.add(f"Interp {RESIZE_MODES.get(mode, f'mode {mode}')}")
    return kernels


def graph_kernels(param: Path) -> tuple[str, ...]:
    """Every kernel an ncnn .param's layers run, sorted."""
    from edgekit.runtimes.ncnn import parse_param

    found: set[str] = set()
    for kind, _, _, params in parse_param(param):
        found |= layer_kernels(kind, params)
    return tuple(sorted(found))
