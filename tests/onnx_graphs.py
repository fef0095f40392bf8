"""Tiny ONNX graphs as users' exporters write them, built with onnx.helper (no torch): the traps of onnx2tf."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def _const(name: str, value: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value), name)


def _save(
    nodes: list[onnx.NodeProto],
    inits: list[onnx.TensorProto],
    c: int,
    size: int,
    classes: int,
    path: Path,
    batch: str | int = "N",
) -> Path:
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, c, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, classes])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _head(x: str, c: int, classes: int, rng: np.random.Generator) -> tuple[list[onnx.NodeProto], list]:
    nodes = [
        helper.make_node("GlobalAveragePool", [x], ["gap"]),
        helper.make_node("Flatten", ["gap"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], transB=1),
    ]
    inits = [
        _const("fc_w", rng.normal(0, 0.3, (classes, c)).astype(np.float32)),
        _const("fc_b", np.zeros(classes, np.float32)),
    ]
    return nodes, inits


def gelu_classifier(path: Path, c: int = 8, size: int = 16, classes: int = 10) -> Path:
    """Conv -> GELU written as 0.5 x (1 + Erf(x / sqrt 2)) (what torch exports) -> pool -> Gemm."""
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Conv", ["input", "w", "b"], ["c1"], pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
        helper.make_node("Div", ["c1", "sqrt2"], ["d"]),
        helper.make_node("Erf", ["d"], ["e"]),
        helper.make_node("Add", ["e", "one"], ["a"]),
        helper.make_node("Mul", ["c1", "a"], ["m"]),
        helper.make_node("Mul", ["m", "half"], ["g"]),
    ]
    inits = [
        _const("w", rng.normal(0, 0.3, (c, 3, 3, 3)).astype(np.float32)),
        _const("b", np.zeros(c, np.float32)),
        _const("sqrt2", np.float32(np.sqrt(2))),
        _const("one", np.float32(1)),
        _const("half", np.float32(0.5)),
    ]
    head, head_inits = _head("g", c, classes, rng)
    return _save(nodes + head, inits + head_inits, 3, size, classes, path)


def shuffle_classifier(path: Path, c: int = 8, size: int = 16, classes: int = 10, groups: int = 2) -> Path:
    """Conv -> channel shuffle as torchvision exports it (Shape/Gather of the runtime shape, Reshape, Transpose,
    Reshape) -> depthwise Conv -> pool -> Gemm; the batch dimension is dynamic ("N")."""
    rng = np.random.default_rng(1)
    nodes = [
        helper.make_node("Conv", ["input", "w", "b"], ["c1"], pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
        helper.make_node("Relu", ["c1"], ["r"]),
        helper.make_node("Shape", ["r"], ["shape"]),
    ]
    inits = [
        _const("w", rng.normal(0, 0.3, (c, 3, 3, 3)).astype(np.float32)),
        _const("b", np.zeros(c, np.float32)),
    ]
    for k in range(4):
        nodes.append(helper.make_node("Gather", ["shape", f"i{k}"], [f"s{k}"], axis=0))
        nodes.append(helper.make_node("Unsqueeze", [f"s{k}", "ax0"], [f"u{k}"]))
        inits.append(_const(f"i{k}", np.int64(k)))
    inits += [
        _const("ax0", np.array([0], np.int64)),
        _const("groups", np.array([groups], np.int64)),
        _const("per", np.array([c // groups], np.int64)),
        _const("minus1", np.array([-1], np.int64)),
    ]
    nodes += [
        helper.make_node("Concat", ["u0", "groups", "per", "u2", "u3"], ["shape5"], axis=0),
        helper.make_node("Reshape", ["r", "shape5"], ["v"]),
        helper.make_node("Transpose", ["v"], ["t"], perm=[0, 2, 1, 3, 4]),
        helper.make_node("Concat", ["u0", "minus1", "u2", "u3"], ["shape4"], axis=0),
        helper.make_node("Reshape", ["t", "shape4"], ["sh"]),
        helper.make_node("Conv", ["sh", "dw", "db"], ["c2"], pads=[1, 1, 1, 1], kernel_shape=[3, 3], group=c),
    ]
    inits += [
        _const("dw", rng.normal(0, 0.3, (c, 1, 3, 3)).astype(np.float32)),
        _const("db", np.zeros(c, np.float32)),
    ]
    head, head_inits = _head("c2", c, classes, rng)
    return _save(nodes + head, inits + head_inits, 3, size, classes, path)


def dynamic_hw_onnx(path: Path) -> Path:
    """x (N, 3, H, W) -> Conv 3x3 (4 channels, padded) -> Relu: y (N, 4, H, W); every dimension but the channels
    free, as a fully convolutional export leaves them."""
    weight = numpy_helper.from_array(np.random.default_rng(0).random((4, 3, 3, 3), np.float32), "W")
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "W"], ["c"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["c"], ["y"]),
        ],
        "dynhw",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, "H", "W"])],
        [weight],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=10), path)
    return path
