"""onnx-int8's nodes for analyze: every node output of the QDQ model against the fp32 model's tensor of the same
name, the error each node adds by difference, and what onnxruntime's fused kernels lose beyond that (fused_loss)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekit.analysis.tensors import LayerError, RunningError
from edgekit.convert.base import Artifact


def onnx_layers(fp32_file: Path, int8_file: Path, inputs: np.ndarray) -> list[LayerError]:
    """Propagated errors of every node output of a QDQ model against the fp32 model, and the error each node
    adds (the difference method, as for TFLite). The quantizer keeps the float graph's tensor names: a node's
    output T is re-quantized as T -> QuantizeLinear -> DequantizeLinear, and the dequantized value is what the
    nodes after it read, so that is the value compared. A node computes in int8 when an input comes through a
    DequantizeLinear (onnxruntime then fuses it into an integer kernel). Both run with graph optimisations off,
    so every tensor keeps its name: the QDQ model's own arithmetic, not a fused kernel's."""
    import onnx

    qmodel = onnx.load(str(int8_file))
    dq_of = {n.input[0]: n.output[0] for n in qmodel.graph.node if n.op_type == "DequantizeLinear"}
    q_of = {n.input[0]: n.output[0] for n in qmodel.graph.node if n.op_type == "QuantizeLinear"}
    dequantized = {n.output[0] for n in qmodel.graph.node if n.op_type == "DequantizeLinear"}
    source = {dq_of[q_of[t]]: t for t in q_of if q_of[t] in dq_of}  # a dequantized copy -> the float tensor
    nodes = [
        n for n in qmodel.graph.node if n.op_type not in ("QuantizeLinear", "DequantizeLinear", "Constant")
    ]
    outputs = [n.output[0] for n in nodes if n.output and n.output[0]]
    fp32_names = _onnx_tensor_names(fp32_file)
    seen = {t: dq_of.get(q_of.get(t, ""), t) for t in outputs}  # what downstream reads of T
    # a graph output keeps its name on the dequantized copy: the node writes `logits_QuantizeLinear_Input`
    named = {t: t if t in fp32_names else seen[t] for t in outputs}
    compared = [t for t in outputs if named[t] in fp32_names]
    ref = _onnx_values(fp32_file, list(dict.fromkeys(named[t] for t in compared)), inputs)
    got = _onnx_values(int8_file, list(dict.fromkeys(seen[t] for t in compared)), inputs)
    prop: dict[str, RunningError] = {}
    for t in compared:
        acc = RunningError()
        for r, g in zip(ref[named[t]], got[seen[t]]):
            acc.add(r, g)
        prop[t] = acc
    out = []
    for node in nodes:
        t = node.output[0] if node.output else ""
        if t not in prop:
            continue
        ins = [prop[source.get(i, i)].rel for i in node.input if source.get(i, i) in prop]
        acc = prop[t]
        out.append(
            LayerError(
                node.name or t,
                node.op_type,
                named[t],
                any(i in dequantized for i in node.input),
                acc.cosine,
                acc.rel,
                max(0.0, acc.rel - max(ins, default=0.0)),
            )
        )
    return out


def _onnx_tensor_names(path: Path) -> set[str]:
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return {o for n in graph.node for o in n.output}


def _onnx_values(path: Path, names: list[str], inputs: np.ndarray) -> dict[str, list[np.ndarray]]:
    """The named tensors of an ONNX model per sample (made graph outputs; optimisations off so none is fused)."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(path))
    present = {o.name for o in model.graph.output}
    model.graph.output.extend(onnx.ValueInfoProto(name=n) for n in names if n not in present)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    feed = session.get_inputs()[0].name
    values: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for sample in inputs:
        results = session.run(names, {feed: sample[None].astype(np.float32)})
        for n, v in zip(names, results):
            values[n].append(np.asarray(v, dtype=np.float32))
    return values


def fused_loss(layers: list[LayerError], int8: Artifact, fp32: Artifact) -> list[str]:
    """onnx-int8's layers are compared with graph optimisations off (the QDQ arithmetic); onnxruntime as deployed
    fuses them into integer kernels. When the whole model's check (as deployed) is much worse than the table's
    last output, the loss is in a fused kernel, which no row shows (a saturated int32 bias wraps around in QGemm:
    torchvision's random-weight shufflenet_v2, 0.917 deployed, 0.99 in the QDQ arithmetic)."""
    outputs = set((fp32.fidelity or {}).get("outputs") or [])
    last = [x for x in layers if x.output in outputs] or layers[-1:]
    deployed = (int8.fidelity or {}).get("cosine")
    if not last or not isinstance(deployed, (int, float)):
        return []
    qdq = min(x.cosine for x in last)
    if (1.0 - deployed) <= 2.0 * max(1.0 - qdq, 1e-6) + 1e-4:
        return []
    return [
        f"the whole model as onnxruntime runs it (cosine {deployed:.6f}) loses much more than its QDQ arithmetic "
        f"layer by layer (cosine {qdq:.6f} at the output, graph optimisations off): the loss is in a kernel "
        "onnxruntime fuses, which no row below shows; see the conversion's findings (a saturated int32 bias "
        "wraps around in a fused QGemm) and keep that node in float (int8.onnx_float_nodes)"
    ]
