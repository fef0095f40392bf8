"""ncnn's layers for analyze: each layer's output blob in the INT8 model against the fp32 model's (propagated), and
the layer alone, run in the INT8 model on the fp32 model's input blob (isolated: ncnn lets any blob be fed in)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.analysis.analyze import AnalysisError
from edgekit.analysis.tensors import LayerError, RunningError


def ncnn_layers(
    fp32_files: Sequence[Path], int8_files: Sequence[Path], inputs: np.ndarray
) -> list[LayerError]:
    """Propagated and isolated errors of every ncnn layer (see the module docstring)."""
    from edgekit.convert.ncnn.param import int8_scale_term, read_param
    from edgekit.convert.ncnn.runtime import NcnnIO, NcnnModel, io_path_for

    f_param, f_bin = _ncnn_pair(fp32_files)
    q_param, q_bin = _ncnn_pair(int8_files)
    graph = read_param(q_param)
    qio = NcnnIO.read(io_path_for(q_param))
    int8_names = {ly.name for ly in graph.layers if int8_scale_term(ly)}  # the layer runs in int8
    layers = [ly for ly in graph.layers if ly.type not in ("Input", "Split") and ly.tops]
    blobs = list(dict.fromkeys(b for ly in layers for b in (*ly.bottoms, *ly.tops)))
    inputs_set = set(qio.inputs)
    prop = {b: RunningError() for b in blobs}
    own = {ly.name: RunningError() for ly in layers if ly.name in int8_names}
    source = _ncnn_sources(graph)
    scale = _requantized_scales(graph, qio, source)
    with NcnnModel(f_param, f_bin) as fm, NcnnModel(q_param, q_bin) as qm:
        for x in inputs:
            ref = dict(zip(blobs, fm.extract([x[None]], blobs)))
            got = dict(zip(blobs, qm.extract([x[None]], blobs)))
            for b in blobs:
                prop[b].add(ref[b], got[b] / scale.get(b, 1.0))
            for ly in layers:
                if ly.name in own:
                    own[ly.name].add(ref[ly.tops[0]], _ncnn_alone(qm, ly, ref) / scale.get(ly.tops[0], 1.0))
    out = []
    for ly in layers:
        top = ly.tops[0]
        ins = [prop[source(b)].rel for b in ly.bottoms if source(b) not in inputs_set and source(b) in prop]
        alone = own.get(ly.name)
        out.append(
            LayerError(
                ly.name,
                ly.type,
                top,
                ly.name in int8_names,
                prop[top].cosine,
                prop[top].rel,
                alone.rel if alone else max(0.0, prop[top].rel - max(ins, default=0.0)),
                alone.cosine if alone else None,
            )
        )
    return out


def _requantized_scales(graph: Any, qio: Any, source: Callable[[str], str]) -> dict[str, float]:
    """Blob -> scale for the outputs of requantize-fused layers (and the Splits of them): ncnn hands those out
    as int8 values (x scale), not dequantized floats; dividing by the layer's top scale compares like with like."""
    report = qio.int8 or {}
    fields = report.get("layer_fields") or []
    if "top_scale" not in fields:
        return {}
    at_name, at_scale = fields.index("name"), fields.index("top_scale")
    by_layer = {row[at_name]: float(row[at_scale]) for row in report.get("layers", []) if row[at_scale]}
    producer = {top: ly.name for ly in graph.layers for top in ly.tops}
    out = {}
    for blob in producer:
        layer = producer.get(source(blob))
        if layer in by_layer:
            out[blob] = by_layer[layer]
    return out


def _ncnn_pair(files: Sequence[Path]) -> tuple[Path, Path]:
    return next(f for f in files if f.suffix == ".param"), next(f for f in files if f.suffix == ".bin")


def _ncnn_alone(model: Any, layer: Any, ref: dict[str, np.ndarray]) -> np.ndarray:
    """One layer of the INT8 model on the fp32 model's input blobs: its own quantization error only."""
    from edgekit.convert.ncnn.runtime import input_mat

    ex = model.net.create_extractor()
    for b in layer.bottoms:
        ex.input(b, input_mat(ref[b]))
    ret, mat = ex.extract(layer.tops[0])
    if ret != 0:
        raise AnalysisError(f"ncnn could not compute layer {layer.name} alone (error {ret})")
    return np.array(mat, dtype=np.float32)


def _ncnn_sources(graph: Any) -> Callable[[str], str]:
    copied = {top: ly.bottoms[0] for ly in graph.layers if ly.type == "Split" for top in ly.tops}

    def source(blob: str) -> str:
        while blob in copied:
            blob = copied[blob]
        return blob

    return source
