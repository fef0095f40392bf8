"""Small ONNX models written by hand for tests (onnx.helper, IR 10 so onnxruntime 1.23 reads them)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


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
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10), path)
    return path
