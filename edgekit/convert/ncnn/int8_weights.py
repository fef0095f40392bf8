"""INT8 weights as ncnn2table makes them (step 3 of edgekit.convert.ncnn.int8): the scales per output channel, per
group for depthwise, or per tensor (127 / absmax, or 31 / absmax where ncnn's int8 Winograd needs 6-bit weights),
and ncnn's float2int8 rounding.
"""

from __future__ import annotations

import numpy as np

from edgekit.convert.ncnn.param import NcnnLayer


def weight_scales(layer: NcnnLayer, weights: np.ndarray, granularity: str) -> tuple[int, np.ndarray, int]:
    """(rows the weights are split into, the scales to store, int8_scale_term) for one layer.

    Convolution/InnerProduct store num_output scales (equal ones when per-tensor) with 8=2; depthwise stores
    one scale per group with 8=1, or a single one with 8=2."""
    depthwise = layer.type == "ConvolutionDepthWise"
    rows = layer.get_int(7, 1) if depthwise else layer.get_int(0)
    levels = 31.0 if _needs_6bit(layer) else 127.0
    w = np.abs(weights.reshape(rows, -1))
    absmax = w.max(axis=1) if granularity == "per-channel" else np.full(rows, w.max())
    scales = np.where(absmax > 0, levels / np.where(absmax > 0, absmax, 1.0), 1.0).astype(np.float32)
    if depthwise:
        return (rows, scales, 1) if granularity == "per-channel" else (rows, scales[:1], 2)
    return rows, scales, 2


def _needs_6bit(layer: NcnnLayer) -> bool:
    """ncnn2table's rule: a 3x3 stride-1 dilation-1 Convolution may run int8 Winograd F(4,3): 6-bit weights"""
    if layer.type != "Convolution":
        return False
    kw, dw, sw = layer.get_int(1), layer.get_int(2, 1), layer.get_int(3, 1)
    kh, dh, sh = layer.get_int(11, kw), layer.get_int(12, dw), layer.get_int(13, sw)
    return (kw, kh, dw, dh, sw, sh) == (3, 3, 1, 1, 1, 1)


def expand_scales(scales: np.ndarray, rows: int) -> np.ndarray:
    return np.broadcast_to(scales, (rows,)) if scales.size == 1 else scales


def float_to_int8(x: np.ndarray) -> np.ndarray:
    """ncnn's float2int8: round half away from zero, clamp to [-127, 127]."""
    rounded = np.sign(x) * np.floor(np.abs(x) + 0.5)
    return np.clip(rounded, -127, 127).astype(np.int8)
