"""edgekit.convert.reductions: multi-axis reductions as chains of one-axis ones, run by onnxruntime against the
original graph (every opset form of the axes: attribute, constant input, negative axes, keepdims 0 and 1)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgekit.convert.reductions import split_reductions, split_reductions_file


def _model(op: str, axes: list[int], keepdims: int, opset: int, *, as_input: bool) -> onnx.ModelProto:
    inits = []
    inputs = ["x"]
    attrs: dict = {"keepdims": keepdims}
    if as_input:
        inits.append(numpy_helper.from_array(np.asarray(axes, np.int64), "axes"))
        inputs.append("axes")
    else:
        attrs["axes"] = axes
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"]), helper.make_node(op, ["r", *inputs[1:]], ["y"], **attrs)],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 5, 7])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


CASES = [
    ("ReduceMean", [2, 3], 0, 17, False),  # x.mean((2, 3)) as torch exports it
    ("ReduceMean", [1, 2, 3], 1, 17, False),
    ("ReduceMean", [-2, -1], 1, 18, True),  # opset 18: axes an input; negative
    ("ReduceSum", [2, 3], 0, 17, True),  # ReduceSum's axes are an input from opset 13
    ("ReduceMax", [1, 3], 0, 13, False),
    ("ReduceMin", [3, 1], 1, 18, True),
]


@pytest.mark.parametrize(("op", "axes", "keepdims", "opset", "as_input"), CASES)
def test_a_chain_of_one_axis_reductions_computes_the_same(
    op: str, axes: list[int], keepdims: int, opset: int, as_input: bool
) -> None:
    original = _model(op, axes, keepdims, opset, as_input=as_input)
    x = np.random.default_rng(0).normal(size=(1, 3, 5, 7)).astype(np.float32)
    expected = _run(original, x)
    split = onnx.ModelProto()
    split.CopyFrom(original)
    assert split_reductions(split) == 1
    reductions = [n for n in split.graph.node if n.op_type == op]
    assert len(reductions) == len(axes)
    for node in reductions:
        axis = (
            numpy_helper.to_array(next(i for i in split.graph.initializer if i.name == node.input[1]))
            if as_input
            else next(a.ints for a in node.attribute if a.name == "axes")
        )
        assert len(axis) == 1
    got = _run(split, x)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_one_axis_and_unknown_axes_are_left_alone(tmp_path: Path) -> None:
    one = _model("ReduceMean", [3], 0, 17, as_input=False)
    assert split_reductions(one) == 0
    # axes from a graph input (not a constant): nothing to split on
    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["x", "axes"], ["y"], keepdims=0)],
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 5, 7]),
            helper.make_tensor_value_info("axes", TensorProto.INT64, [2]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    dynamic = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    assert split_reductions(dynamic) == 0
    onnx.save(one, tmp_path / "one.onnx")
    assert split_reductions_file(tmp_path / "one.onnx", tmp_path / "out.onnx") == 0
    assert not (tmp_path / "out.onnx").exists()
