"""Reductions over several axes rewritten as a chain of one-axis reductions, for a tool that mishandles them.

MNN 3.6.1's quantization tool dies of SIGSEGV calibrating any graph with a ReduceMean, ReduceSum or ReduceMax over
more than one axis (`x.mean((2, 3))` as a classifier head's global pool; `mean((1, 2, 3))`) with its KL method,
right after "fake quant weights done"; the same graph with the reduction over one axis at a time calibrates. A
mean of means over whole axes is the mean, a sum of sums the sum, a max of maxima the maximum (equal up to float
rounding), so the chain computes what the node did. The ONNX file itself is not touched: the rewritten copy goes
to the tool only, and the artifact is checked against the original model as any other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# reductions where reducing one axis after the other gives the same result
CHAINABLE = frozenset({"ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin"})


def split_reductions(model: Any) -> int:
    """Rewrite MODEL (an onnx.ModelProto, in place): every CHAINABLE node over 2+ known axes becomes one node per
    axis, last axis first (so the lower axes keep their index when dims are dropped). Returns how many nodes were
    rewritten. A node whose axes are not constants, or negative with no known rank, is left as it is."""
    from onnx import helper, numpy_helper

    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    ranks = _ranks(model)
    nodes: list[Any] = []
    rewritten = 0
    for node in graph.node:
        axes = _axes(node, initializers, ranks) if node.op_type in CHAINABLE else None
        if axes is None or len(axes) < 2:
            nodes.append(node)
            continue
        keepdims = next((a.i for a in node.attribute if a.name == "keepdims"), 1)
        axes_as_input = len(node.input) > 1
        current = node.input[0]
        for k, axis in enumerate(sorted(axes, reverse=True)):
            last = k == len(axes) - 1
            out = node.output[0] if last else f"{node.output[0]}__edgekit_axis{axis}"
            name = f"{node.name or node.output[0]}__edgekit_axis{axis}"
            if axes_as_input:
                const = f"{name}__axes"
                graph.initializer.append(numpy_helper.from_array(_int64([axis]), const))
                nodes.append(
                    helper.make_node(node.op_type, [current, const], [out], name=name, keepdims=keepdims)
                )
            else:
                nodes.append(
                    helper.make_node(
                        node.op_type, [current], [out], name=name, axes=[axis], keepdims=keepdims
                    )
                )
            current = out
        rewritten += 1
    if rewritten:
        del graph.node[:]
        graph.node.extend(nodes)
    return rewritten


def split_reductions_file(source: Path, dest: Path) -> int:
    """SOURCE's graph with its multi-axis reductions split, written to DEST when there were any (returns how many;
    0: DEST not written, use SOURCE). External weights are loaded and written inside DEST (MNN reads one file)."""
    import onnx

    model = onnx.load(str(source))
    rewritten = split_reductions(model)
    if rewritten:
        onnx.save(model, str(dest))
    return rewritten


def _axes(node: Any, initializers: dict[str, Any], ranks: dict[str, int]) -> list[int] | None:
    from onnx import numpy_helper

    if len(node.input) > 1 and node.input[1]:
        init = initializers.get(node.input[1])
        if init is None:
            return None
        axes = [int(a) for a in numpy_helper.to_array(init).reshape(-1)]
    else:
        attr = next((a for a in node.attribute if a.name == "axes"), None)
        if attr is None:
            return None  # every axis (or none, with noop_with_empty_axes): left to the tool as it is
        axes = list(attr.ints)
    if any(a < 0 for a in axes):
        rank = ranks.get(node.input[0])
        if rank is None:
            return None
        axes = [a + rank if a < 0 else a for a in axes]
    return sorted(set(axes))


def _ranks(model: Any) -> dict[str, int]:
    """Each tensor's rank where ONNX's shape inference knows it."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - no ranks: negative axes are then left alone
        return {}
    ranks = {}
    for info in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        tensor = info.type.tensor_type
        if tensor.HasField("shape"):
            ranks[info.name] = len(tensor.shape.dim)
    return ranks


def _int64(values: list[int]) -> Any:
    import numpy as np

    return np.asarray(values, dtype=np.int64)
