"""A model holding an operator some converters lack (ONNX DFT): each failed conversion names the operator and
suggests nothing that failed in the same run. Real MNN converter, real pnnx, real TensorFlow; the model is built
here."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml
from onnx import TensorProto, helper, numpy_helper

from edgekit.convert.pipeline import convert_recipe
from edgekit.formats import Format
from edgekit.recipe import load_recipe


def _dft_recipe(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["m"]),
            helper.make_node("Unsqueeze", ["m", "axes"], ["u"]),
            helper.make_node("DFT", ["u"], ["d"], axis=1),
            helper.make_node("Relu", ["m"], ["y"]),
        ],
        "dft",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16]),
            helper.make_tensor_value_info("d", TensorProto.FLOAT, [1, 16, 2]),
        ],
        initializer=[
            numpy_helper.from_array(rng.normal(size=(16, 16)).astype(np.float32), "w"),
            numpy_helper.from_array(np.array([2], dtype=np.int64), "axes"),
        ],
    )
    onnx.save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8),
        tmp_path / "m.onnx",
    )
    path = tmp_path / "r.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "dft",
                "task": "generic",
                "model": {"kind": "onnx", "path": "m.onnx"},
                "input": {"name": "x", "shape": [1, 16]},
                "evaluation": {"data": {"kind": "random", "samples": 2}},
                "formats": ["onnx-fp32"],
            }
        )
    )
    return path


@pytest.mark.skipif(importlib.util.find_spec("MNN") is None, reason="needs the MNN package")
def test_mnn_names_the_operator_it_does_not_support(tmp_path: Path) -> None:
    """Its error said only its last line, `Converted Failed!`; the cause is a line above it."""
    (art,) = convert_recipe(load_recipe(_dft_recipe(tmp_path)), (Format.MNN_FP32,), keep_going=True)
    assert art.status == "failed" and art.error is not None
    message, hint = art.error.split("\n  hint: ", 1)
    assert "MNN's converter wrote no model; it says: These Op Not Support: ONNX::DFT" in message, message
    assert "(its last line: Converted Failed!)" in message
    assert "rewrite those operations in the model" in hint


def test_ncnn_hint_suggests_no_format_that_failed_too(tmp_path: Path) -> None:
    """The ncnn failure's hint said "(or use a TFLite format)" while TFLite failed on the same model, in the same
    run."""
    arts = convert_recipe(
        load_recipe(_dft_recipe(tmp_path)), (Format.TFLITE_FP32, Format.NCNN_FP32), keep_going=True
    )
    tflite, ncnn = arts
    assert tflite.status == "failed" and ncnn.status == "failed", (tflite.error, ncnn.error)
    assert ncnn.error is not None and "DFT" in ncnn.error.split("\n  hint: ")[0], ncnn.error
    hint = ncnn.error.split("\n  hint: ", 1)[1]
    assert "TFLite" not in hint and "rewrite those operations in the model" in hint, hint
