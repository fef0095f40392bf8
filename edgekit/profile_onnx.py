"""Where an ONNX Runtime artifact's instructions go: guest instructions per node on an emulated core, by prefixes.

onnxruntime runs a whole graph per `InferenceSession.run` from Python: there is no per-node hook to mark. As for
TFLite (profile_tflite.py), the host writes one prefix model per cut, the graph's nodes up to the cut with every
tensor still needed after it (or a graph output) as the prefix's outputs, so that no node of a prefix is dead and
each prefix's work contains the one before it. Each is counted for one inference on the emulated core in one guest
process; a group's own instructions are its prefix's count minus the previous prefix's.

Cuts follow what onnxruntime fuses. In a QDQ model (onnx-int8) a DequantizeLinear -> Conv -> QuantizeLinear
chain runs as one QLinearConv; a cut after the Conv would count a float convolution that the whole model never
runs. So no prefix holds an operator without the QuantizeLinear that reads its output (directly, or through a Relu
or Clip onnxruntime folds into it; wherever that Q sits in the node order), and no cut falls right after a
DequantizeLinear or a Constant (they belong to the node that reads them): a group is then one quantized operator
as onnxruntime runs it, or one float node (cuts(): yolov5-lite's onnx-int8 summed to 131 % of the whole before the
Q's place in the order and the folded Relu were followed, 100.25 % after). Float fusions (Conv + Relu) stay exact in the other direction:
a tensor that is a prefix's output is not fused away, so the Relu's group is what fusing it costs or saves.
Weights are written once, beside the prefixes, as external data every prefix points into.
Instruction counts, not cycles; control-flow nodes (If, Loop) are counted as one node each.
"""

from __future__ import annotations

import tempfile
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgekit.emu.specs import device_spec
from edgekit.errors import InputDataError
from edgekit.profile import Profile, count_prefix_models

# nodes that are never the end of a group: they belong to the node that reads them
JOINS_NEXT = frozenset({"DequantizeLinear", "Constant"})
# activations between a quantized operator and its QuantizeLinear that onnxruntime removes (ReluQuantFusion,
# ClipQuantFusion): the Q's range does their clamping
FOLDED = frozenset({"Relu", "Clip"})
QDQ = frozenset({"QuantizeLinear", "DequantizeLinear"})
# onnx.TensorProto element types, as the profile table names a row's precision
PRECISION = {1: "fp32", 10: "fp16", 3: "int8", 2: "int8", 5: "int16", 11: "fp64"}
LABEL = (
    "guest instructions per node on the emulated core, 1 inference, by prefix models (exact counts, "
    "differenced; a QDQ group counted as the one operator onnxruntime fuses it into; not cycles)"
)


def read_model(path: Path) -> Any:
    """The ModelProto (weights included), refusing what prefix models cannot be made of."""
    import onnx

    try:
        model = onnx.load(str(path))
    except Exception as exc:  # noqa: BLE001 (a protobuf that does not parse raises anything)
        raise InputDataError(
            f"not a readable ONNX model: {type(exc).__name__}: {str(exc)[:200]}",
            where=str(path),
            hint="re-create it with `edgekit convert`, or check the file is complete",
        ) from None
    inputs = _graph_inputs(model)
    if len(inputs) != 1:
        raise InputDataError(
            f"{len(inputs)} graph inputs ({', '.join(inputs) or 'none'}): the counting runner feeds one",
            where=str(path),
            hint="count the whole model with `edgekit bench FILE --target pi4-emu` once it has one input",
        )
    if not model.graph.node:
        raise InputDataError(
            "the graph has no node", where=str(path), hint="give the model a node to profile"
        )
    return model


def free_axes(model: Any) -> list[int]:
    """The axes of the graph input with no fixed size, but the batch (axis 0 runs as 1: one sample)."""
    (name,) = _graph_inputs(model)
    inp = next(i for i in model.graph.input if i.name == name)
    dims = inp.type.tensor_type.shape.dim
    return [axis for axis, d in enumerate(dims) if axis > 0 and not d.HasField("dim_value")]


def fix_input_shape(model: Any, path: Path, shape: list[int] | None) -> Any:
    """The model with its input's free dimensions set to `shape` (and shapes inferred from it), so that every
    prefix model and the counting runner run that size; a model with none free is returned as it is (its own
    shape is checked by the caller). Free dimensions without a shape were counted at size 1, a 1x1 image."""
    free = free_axes(model)
    if not free:
        return model
    (name,) = _graph_inputs(model)
    inp = next(i for i in model.graph.input if i.name == name)
    dims = inp.type.tensor_type.shape.dim
    stated = ",".join(str(d.dim_value) if d.HasField("dim_value") else (d.dim_param or "?") for d in dims)
    if shape is None:
        raise InputDataError(
            f"its input {name!r} ({stated}) has free dimensions (axis {', '.join(map(str, free))}): the prefix "
            "models are counted at one fixed size",
            where=str(path),
            hint="give --input-shape, e.g. "
            + ",".join(
                "1" if a == 0 else ("224" if a in free else str(d.dim_value)) for a, d in enumerate(dims)
            ),
        )
    fixed_ok = len(shape) == len(dims) and all(
        (a == 0 and n == 1) or a in free or n == d.dim_value for a, (n, d) in enumerate(zip(shape, dims))
    )
    if not fixed_ok:
        raise InputDataError(
            f"--input-shape {','.join(map(str, shape))} does not fit its input {name!r} ({stated}): batch 1, the "
            "fixed dimensions as they are",
            where=str(path),
            hint="give a shape of the input's rank, batch 1, with its fixed dimensions",
        )
    import onnx

    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    inp = next(i for i in fixed.graph.input if i.name == name)
    for d, n in zip(inp.type.tensor_type.shape.dim, shape):
        d.Clear()
        d.dim_value = n
    del fixed.graph.value_info[:]  # inferred again from the fixed input: no symbolic H left in a prefix
    return fixed


def _graph_inputs(model: Any) -> list[str]:
    initializers = {t.name for t in model.graph.initializer}
    return [i.name for i in model.graph.input if i.name not in initializers]


def cuts(model: Any) -> list[int]:
    """Indices k (in the graph's node order, which ONNX requires to be topological) after which a prefix ends;
    the last node's index always (the whole graph). No prefix holds an operator without the QuantizeLinear that
    reads it (through a Relu or Clip onnxruntime folds into it), wherever that Q sits in the order: the prefix would
    run the operator in float where the model runs one quantized kernel. No prefix ends at a DequantizeLinear or a
    Constant (they belong to their readers; a DQ left as a prefix's output costs one elementwise pass)."""
    nodes = model.graph.node
    readers: dict[str, list[int]] = defaultdict(list)  # tensor -> indices of the nodes that read it
    for k, node in enumerate(nodes):
        for name in node.input:
            if name:
                readers[name].append(k)

    def q_reached(name: str) -> list[int]:
        """Indices of the QuantizeLinear nodes that read NAME, and of the folded activations on the way to one."""
        found = []
        for r in readers[name]:
            if nodes[r].op_type == "QuantizeLinear":
                found.append(r)
            elif nodes[r].op_type in FOLDED:
                further = [i for o in nodes[r].output if o for i in q_reached(o)]
                if further:
                    found += [r, *further]
        return found

    out = []
    joined_until = -1  # the last index some node before the cut must share a prefix with
    for k, node in enumerate(nodes):
        quantized = [i for name in node.output if name for i in q_reached(name)]
        joined_until = max([joined_until, *quantized])
        if node.op_type not in JOINS_NEXT and not quantized and joined_until <= k:
            out.append(k)
    if not out or out[-1] != len(nodes) - 1:
        out.append(len(nodes) - 1)
    return out


def frontier(model: Any, k: int) -> list[str]:
    """Tensors made by nodes 0..k that a later node reads or that are graph outputs, in the order made."""
    nodes = model.graph.node
    later = {name for node in nodes[k + 1 :] for name in node.input if name}
    outputs = {o.name for o in model.graph.output}
    made = [name for node in nodes[: k + 1] for name in node.output if name]
    live = [name for name in made if name in later or name in outputs]
    return live or [name for name in nodes[k].output if name]


def _types(model: Any) -> dict[str, Any]:
    """Every tensor's TypeProto where ONNX's shape inference knows it (graph inputs, outputs, value_info)."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - without inference, the graph's own value_info is all there is
        inferred = model
    g = inferred.graph
    return {v.name: v.type for v in [*g.input, *g.value_info, *g.output] if v.type.HasField("tensor_type")}


def write_prefixes(model: Any, folder: Path) -> tuple[list[Path], Path]:
    """One model per cut (prefix_NNNN.onnx) and one with no work (empty.onnx: the input through an Identity), all
    in FOLDER, their weights in one external-data file there. Returns (prefixes, empty)."""
    import onnx
    from onnx import helper

    types = _types(model)
    shared = onnx.ModelProto()
    shared.CopyFrom(model)
    onnx.save(shared, str(folder / "full.onnx"), save_as_external_data=True, location="weights.bin")
    # the tensors now point into weights.bin (offset, length): every prefix below shares them
    base = onnx.load(str(folder / "full.onnx"), load_external_data=False)
    initializers = {t.name: t for t in base.graph.initializer}
    prefixes = []
    for n, k in enumerate(cuts(base)):
        nodes = list(base.graph.node[: k + 1])
        read = {name for node in nodes for name in _reads(node)}
        outputs = []
        for name in frontier(base, k):
            if name not in types:
                raise InputDataError(
                    f"ONNX shape inference does not know the type of tensor {name!r}: a prefix cannot end there",
                    where=str(name),
                    hint="count the whole model with `edgekit bench FILE --target pi4-emu`",
                )
            outputs.append(helper.make_value_info(name, types[name]))
        graph = helper.make_graph(
            nodes,
            f"prefix_{n}",
            list(base.graph.input),
            outputs,
            initializer=[initializers[name] for name in initializers if name in read],
            value_info=[v for v in base.graph.value_info if v.name in read],
        )
        prefixes.append(_save(base, graph, folder / f"prefix_{n:04d}.onnx"))
    (inp,) = [i for i in base.graph.input if i.name not in initializers]
    identity = helper.make_node("Identity", [inp.name], ["edgekit_empty_out"], name="edgekit_empty")
    out = helper.make_value_info("edgekit_empty_out", inp.type)
    empty = _save(base, helper.make_graph([identity], "empty", [inp], [out]), folder / "empty.onnx")
    return prefixes, empty


def _reads(node: Any) -> list[str]:
    """The tensors a node reads, those of its subgraphs (If, Loop, Scan bodies) included."""
    names = [name for name in node.input if name]
    for attr in node.attribute:
        for graph in [attr.g] if attr.HasField("g") else list(attr.graphs):
            for inner in graph.node:
                names.extend(_reads(inner))
    return names


def _save(base: Any, graph: Any, path: Path) -> Path:
    import onnx
    from onnx import helper

    model = helper.make_model(graph, opset_imports=list(base.opset_import), ir_version=base.ir_version)
    onnx.save(model, str(path))  # external tensors keep their location: weights.bin in the same folder
    return path


def group_rows(model: Any) -> list[dict[str, Any]]:
    """(name, type, shape, precision) of each cut's group: the node onnxruntime runs for it (the first that is not
    a Q/DQ or Constant), its output's precision as the group leaves it (int8 for a QDQ operator)."""
    types = _types(model)
    nodes = model.graph.node
    rows = []
    start = 0
    for k in cuts(model):
        group = nodes[start : k + 1]
        main = next((n for n in group if n.op_type not in QDQ | JOINS_NEXT), nodes[k])
        last = nodes[k].output[0] if nodes[k].output else ""
        shape_of = types.get(main.output[0]) if main.output else None
        elem = types[last].tensor_type.elem_type if last in types else 0
        rows.append(
            {
                "name": main.name or (main.output[0] if main.output else f"node{k}"),
                "type": main.op_type
                + ("+QDQ" if any(n.op_type in QDQ for n in group) and main.op_type not in QDQ else ""),
                "shape": _dims(shape_of),
                "precision": PRECISION.get(elem, "?"),
            }
        )
        start = k + 1
    return rows


def _dims(t: Any) -> list[int]:
    if t is None or not t.tensor_type.HasField("shape"):
        return []
    # a symbolic dimension (a batch "N") runs as 1: the counting runner feeds 1 there
    return [d.dim_value if d.HasField("dim_value") else 1 for d in t.tensor_type.shape.dim]


def profile_onnx(
    artifact: Path,
    device: str,
    threads: int = 1,
    timeout_s: float = 3600,
    say: Callable[[str], None] | None = None,
    input_shape: list[int] | None = None,
) -> Profile:
    """Per-node-group guest instruction counts of one .onnx artifact under onnxruntime on an emulated DEVICE;
    SAY (if given) hears how many models are counted before the guest runs. A model whose input has free
    dimensions other than the batch (a free H and W) is counted at `input_shape`, which it then needs."""
    artifact = Path(artifact)
    device_spec(device)  # an unknown device is named before any model is written
    given = read_model(artifact)
    model = fix_input_shape(given, artifact, input_shape)
    with tempfile.TemporaryDirectory(prefix="edgekit-onnx-profile-") as tmp:
        prefixes, empty = write_prefixes(model, Path(tmp))
        # the whole inference too at the fixed size: the file itself would run its free dimensions at 1
        whole = artifact if model is given else Path(tmp) / "full.onnx"
        result = count_prefix_models(
            whole,
            empty,
            prefixes,
            group_rows(model),
            device,
            label=LABEL,
            threads=threads,
            timeout_s=timeout_s,
            say=say,
        )
        result.artifact = str(artifact)
        return result
