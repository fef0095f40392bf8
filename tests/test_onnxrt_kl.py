"""onnx-int8's activation ranges are min/max whatever `calibration.method` says (convert/onnxrt.py): `kl` gave
byte for byte MinMax's model until 2026-12-06 (quantize_static's Entropy calibrator had one candidate), then a real
KL search that measured worse with onnxruntime's uint8 QDQ activations (digits cosine 0.996 against 0.9999). A kl
recipe's onnx-int8 is min/max's, covers the calibration data's outliers, and convert says so as a finding."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
import yaml
from onnx import TensorProto, helper, numpy_helper

from edgekit.convert.pipeline import convert_recipe
from edgekit.formats import Format
from edgekit.recipe import load_recipe


def _model_and_data(folder: Path) -> None:
    """x (1, 64) -> Gemm -> y (1, 16); calibration inputs of N(0, 1) values with two outliers (40, -35)."""
    rng = np.random.default_rng(0)
    weights = numpy_helper.from_array(rng.normal(size=(16, 64)).astype(np.float32), "w")
    bias = numpy_helper.from_array(rng.normal(size=16).astype(np.float32), "b")
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1)],
        "fc",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16])],
        initializer=[weights, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(model, folder / "m.onnx")
    calib = rng.normal(size=(64, 64)).astype(np.float32)
    calib[3, 5], calib[40, 7] = 40.0, -35.0
    np.save(folder / "calib.npy", calib)
    np.save(folder / "eval.npy", rng.normal(size=(16, 64)).astype(np.float32))


def _recipe(folder: Path, method: str) -> Path:
    path = folder / f"{method}.yaml"
    recipe = {
        "name": f"fc-{method}",
        "task": "generic",
        "model": {"kind": "onnx", "path": "m.onnx"},
        "input": {"name": "x", "shape": [1, 64]},
        "outputs": ["y"],
        "calibration": {"data": {"kind": "npy", "path": "calib.npy"}, "method": method},
        "evaluation": {"data": {"kind": "npy", "path": "eval.npy"}, "gates": {"int8": {"min_cosine": 0.99}}},
        "formats": ["onnx-int8"],
        "int8": {"granularity": "per-tensor"},
    }
    path.write_text(yaml.safe_dump(recipe))
    return path


def _input_range(path: Path) -> tuple[float, float]:
    """The float range the uint8 QuantizeLinear of the model's input x covers: (0 - zp) * s .. (255 - zp) * s."""
    model = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    (node,) = [n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "x"]
    scale, zero = float(inits[node.input[1]]), int(inits[node.input[2]])
    return -zero * scale, (255 - zero) * scale


def test_a_kl_recipes_onnx_int8_is_min_max_and_says_so(tmp_path: Path) -> None:
    _model_and_data(tmp_path)
    made = {}
    for method in ("kl", "absmax"):
        (art,) = convert_recipe(load_recipe(_recipe(tmp_path, method)), (Format.ONNX_INT8,))
        assert art.status == "ok", art.error
        path = Path(art.files[0])
        made[method] = (
            hashlib.sha256(path.read_bytes()).hexdigest(),
            _input_range(path),
            art.provenance["findings"],
        )
    assert made["kl"][0] == made["absmax"][0]  # the same model
    low, high = made["kl"][1]
    assert low <= -34.9 and high >= 39.9, (low, high)  # the outliers' range, min/max's
    for method in ("kl", "absmax"):  # one cache entry: what it says holds for both
        said = " ".join(made[method][2])
        assert "min/max whatever calibration.method says" in said and "kl is for ncnn-int8" in said, said
