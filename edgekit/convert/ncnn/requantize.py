"""Requantize fusion for ncnn INT8, as ncnn2int8's fuse_requantize (steps 5 and 6 of edgekit.convert.ncnn.int8):
which int8 convolutions may write int8 for the int8 convolutions they feed (their top scale is the consumer's
input scale), and the fused ReLU6 written as ReLU where the requantized output makes that exact.
"""

from __future__ import annotations

from edgekit.convert.ncnn.param import ARRAY_KEY_BASE, NcnnGraph, NcnnLayer


def requantize_fusions(graph: NcnnGraph, int8_inputs: dict[str, float]) -> dict[int, float]:
    """{layer index: top scale} for every int8 Convolution/ConvolutionDepthWise whose output feeds only int8
    Convolution/ConvolutionDepthWise layers, directly or through one Split (ncnn2int8's fuse_requantize).
    `int8_inputs` maps each int8 layer's name to its input scale."""
    convs = ("Convolution", "ConvolutionDepthWise")
    consumer = {b: layer for layer in graph.layers for b in layer.bottoms}  # ncnn: one consumer per blob

    def int8_conv(layer: NcnnLayer | None) -> bool:
        return (
            layer is not None
            and layer.type in convs
            and len(layer.bottoms) == 1
            and layer.name in int8_inputs
        )

    fusions = {}
    for index, layer in enumerate(graph.layers):
        if layer.type not in convs or layer.name not in int8_inputs or len(layer.tops) != 1:
            continue
        nxt = consumer.get(layer.tops[0])
        if nxt is not None and nxt.type == "Split":
            users = [consumer.get(t) for t in nxt.tops]
            if users and all(int8_conv(u) for u in users):
                fusions[index] = int8_inputs[users[0].name]  # type: ignore[union-attr]
        elif int8_conv(nxt):
            fusions[index] = int8_inputs[nxt.name]  # type: ignore[union-attr]
    return fusions


def relu_where_exact(layer: NcnnLayer, threshold: float) -> str:
    """clip(0, hi) -> ReLU on a requantized layer whose output threshold is <= hi (see step 6)."""
    if layer.get_int(9) != 3:
        return ""
    bounds = layer.get_array(10)
    if not bounds or len(bounds) != 2:
        return ""
    lo, hi = (float(v) for v in bounds)
    if lo != 0.0 or threshold > hi * (1 + 1e-6):
        return ""
    layer.set_param(9, 1)
    del layer.params[str(ARRAY_KEY_BASE - 10)]
    return f"clip(0,{hi:g}) -> relu (exact: output threshold {threshold:.4g} <= {hi:g})"
