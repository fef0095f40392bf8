"""A Pad without a mode (tf2onnx's Keras ZeroPadding2D, on NHWC axes between Transposes) becomes ncnn's Padding;
a Pad pnnx still leaves is said as a Padding not produced, not as an operator ncnn lacks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgekit.convert.ncnn.converter import check_layers, convert_model
from edgekit.convert.ncnn.param import NcnnGraph, NcnnLayer, read_param
from edgekit.convert.ncnn.runtime import NcnnModel
from edgekit.errors import ConversionError
from edgekit.formats import Format

SHAPE = (1, 3, 16, 16)


def zero_padding_onnx(path: Path) -> Path:
    """Conv -> Transpose to NHWC -> Pad (pads on H and W, no mode attribute, as tf2onnx writes ZeroPadding2D)
    -> Transpose back -> Conv: the shape of Keras MobileNetV3's stride-2 depthwise blocks."""
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Conv", ["input", "w1"], ["c1"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Transpose", ["r1"], ["nhwc"], perm=[0, 2, 3, 1]),
        helper.make_node("Pad", ["nhwc", "pads"], ["padded"]),
        helper.make_node("Transpose", ["padded"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["nchw", "w2"], ["out"], kernel_shape=[3, 3], strides=[2, 2]),
    ]
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32), "w1"),
        numpy_helper.from_array(rng.normal(0, 0.3, (4, 8, 3, 3)).astype(np.float32), "w2"),
        numpy_helper.from_array(np.array([0, 1, 1, 0, 0, 2, 2, 0], np.int64), "pads"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, list(SHAPE))],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 4, 9, 9])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.mark.integration
def test_a_pad_without_a_mode_becomes_padding_and_matches_onnxruntime(tmp_path: Path) -> None:
    """Before: pnnx left a raw `Pad` and every ncnn format failed ('ncnn has no layer for: Pad')."""
    import onnxruntime as ort

    model = zero_padding_onnx(tmp_path / "model.onnx")
    files = convert_model(model, SHAPE, Format.NCNN_FP32, tmp_path / "ncnn")
    types = [layer.type for layer in read_param(files[0]).layers]
    assert "Pad" not in types and "Padding" in types, types
    x = np.random.default_rng(1).uniform(0, 1, SHAPE).astype(np.float32)
    want = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    with NcnnModel(files[0], files[1]) as ncnn_model:
        got = ncnn_model.run(x)[0]
    assert got.shape == want.shape and np.abs(got - want).max() < 1e-4
    assert onnx.load(str(model)).graph.node[3].attribute == []  # the user's file is left as it was


def test_a_raw_pad_is_said_as_padding_not_produced() -> None:
    graph = NcnnGraph(
        layers=[
            NcnnLayer("Input", "in0", [], ["in0"]),
            NcnnLayer("Pad", "Pad_6", ["in0"], ["p"]),
            NcnnLayer("Pad", "Pad_7", ["p"], ["out0"]),
        ],
        blob_count=3,
    )
    with pytest.raises(ConversionError) as info:
        check_layers(graph, Path("model.onnx"))
    said = str(info.value)
    assert "ncnn's Padding was not produced" in said and "no layer" not in said, said
    assert "rewrite those operations" not in said, said
