"""bench's onnxruntime check of a user's .onnx on the host (host only: real onnxruntime, no device): it loaded
the model in edgekit's own process with the default graph optimisations, so a 195-byte model whose constant
folding makes a 20000x20000 tensor (ConstantOfShape -> ReduceSum) took 34 s and 4.8 GB before anything was sent.
The check runs in a child process under a memory limit and a timeout; a valid model still passes."""

from __future__ import annotations

import resource
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgekit.errors import InputDataError
from edgekit.runtimes.ort import OnnxRuntime


def _bomb(path: Path, n: int) -> Path:
    shape = numpy_helper.from_array(np.array([n, n], dtype=np.int64), name="shp")
    value = helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0])
    nodes = [
        helper.make_node("ConstantOfShape", ["shp"], ["big"], value=value),
        helper.make_node("ReduceSum", ["big"], ["s"], keepdims=0),
        helper.make_node("Add", ["x", "s"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        initializer=[shape],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_a_model_that_folds_into_gigabytes_is_refused_without_edgekits_memory(tmp_path: Path) -> None:
    path = _bomb(tmp_path / "bomb.onnx", 20000)  # 1.6 GB of constant, for a 195-byte file
    assert path.stat().st_size < 1000
    before = _rss_mb()
    start = time.monotonic()
    with pytest.raises(InputDataError) as raised:
        OnnxRuntime.check_file([path])
    took = time.monotonic() - start
    assert _rss_mb() - before < 500, f"edgekit's own peak RSS grew by {_rss_mb() - before:.0f} MB"
    assert took < 30, f"the check took {took:.1f} s"
    said = str(raised.value)
    assert "bomb.onnx" in said + str(raised.value.where), said


def test_a_valid_model_still_passes_the_check_and_a_broken_one_is_named(tmp_path: Path) -> None:
    w = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Relu", ["h"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        initializer=[numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    good = tmp_path / "good.onnx"
    onnx.save(model, str(good))
    OnnxRuntime.check_file([good])  # no error
    model.graph.node.append(helper.make_node("MyOp", ["y"], ["z"], domain="com.me"))
    model.graph.output[0].name = "z"
    model.opset_import.append(helper.make_opsetid("com.me", 1))
    bad = tmp_path / "bad.onnx"
    onnx.save(model, str(bad))
    with pytest.raises(InputDataError) as raised:
        OnnxRuntime.check_file([bad])
    assert "com.me:MyOp" in str(raised.value), str(raised.value)
