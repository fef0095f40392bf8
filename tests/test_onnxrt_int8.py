"""onnx-int8 (onnxruntime's static QDQ quantizer) on a model whose calibrated input range is tiny: the int32 bias
of its Gemm (scale = input scale x weight scale) saturates, and onnxruntime's fused QGemm wraps around there.
Found on torchvision's random-weight shufflenet_v2 (pooled features ~1e-5: cosine 0.929, its fc bias clamped at
int32's limits); the artifact now says so under the convert table. Real quantizer, real recipe loading."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import yaml
from onnx import TensorProto, helper, numpy_helper

from edgekit.convert.pipeline import convert_recipe
from edgekit.formats import Format
from edgekit.recipe import load_recipe


def _recipe(tmp_path: Path, scale: float) -> Path:
    rng = np.random.default_rng(0)
    weights = numpy_helper.from_array(rng.normal(size=(8, 16)).astype(np.float32), "w")
    bias = numpy_helper.from_array(rng.uniform(-0.03, 0.03, size=8).astype(np.float32), "b")
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1)],
        "fc",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])],
        initializer=[weights, bias],
    )
    onnx.save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8),
        tmp_path / "m.onnx",
    )
    np.save(tmp_path / "x.npy", (np.abs(rng.normal(size=(8, 16))) * scale).astype(np.float32))
    path = tmp_path / "r.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "fc",
                "task": "generic",
                "model": {"kind": "onnx", "path": "m.onnx"},
                "input": {"name": "x", "shape": [1, 16]},
                "outputs": ["y"],
                "calibration": {"data": {"kind": "npy", "path": "x.npy"}},
                "evaluation": {"data": {"kind": "npy", "path": "x.npy"}},
                "formats": ["onnx-int8"],
            }
        )
    )
    return path


def _findings(path: Path) -> list[str]:
    (art,) = convert_recipe(load_recipe(path), (Format.ONNX_INT8,), keep_going=True)
    assert art.files, art.error
    return list((art.provenance or {}).get("findings", []))


def test_a_saturated_int32_bias_is_a_finding(tmp_path: Path) -> None:
    found = _findings(_recipe(tmp_path, scale=1e-8))
    assert any("onnx-int8: the int32 bias of b saturates" in f for f in found), found


def test_an_ordinary_range_has_no_such_finding(tmp_path: Path) -> None:
    assert not any("saturates" in f for f in _findings(_recipe(tmp_path, scale=1.0)))
