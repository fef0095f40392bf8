"""A source model whose own outputs are NaN or infinite is the user's input (InputDataError, exit 2, naming the
input, the output and how many values), as a PyTorch builder's already was (test_torch_nan.py): an ONNX model
computing log(x - 0.5) had every artifact "miss" its gate with cosine nan (onnx-fp32, the user's own file, too)
and each converter blamed; a Keras model whose weights overflow to infinity passed its export check ("matches
the model within 0.0e+00", max(0.0, nan) being 0.0)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

RANDOM_EVAL = "evaluation: {data: {kind: random, samples: 4}}\n"


def _convert(recipe: Path, *formats: str) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, "-m", "edgekit", "convert", str(recipe)]
    for fmt in formats:
        args += ["-f", fmt]
    return subprocess.run(
        args,
        cwd=recipe.parent,
        env={**os.environ, "EDGEKIT_HOME": str(recipe.parent / "home"), "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_an_onnx_model_computing_nan_is_named_not_blamed_on_the_converters(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("Sub", ["x", "h"], ["s"]), helper.make_node("Log", ["s"], ["y"])],
        "log",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4, 4])],
        [numpy_helper.from_array(np.array(0.5, np.float32), "h")],
    )
    onnx.save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8),
        tmp_path / "log.onnx",
    )
    recipe = tmp_path / "log.yaml"
    recipe.write_text(
        "name: log\nmodel: {kind: onnx, path: log.onnx}\ninput: {name: x, shape: [1, 3, 4, 4]}\n"
        f"{RANDOM_EVAL}formats: [onnx-fp32, ncnn-fp32]\n"
    )
    proc = _convert(recipe)
    out = " ".join((proc.stdout + proc.stderr).split())
    assert proc.returncode == 2, out
    assert "error (InputDataError)" in out, out
    assert (
        "the model's own outputs are not finite: on evaluation input 1 of 4 (the first of 4 such inputs)"
        in out
    )
    # uniform 0..1 inputs: log of a negative where x < 0.5 (NaN), log(0) never drawn
    said = out.split("log.onnx's output `y` [1, 3, 4, 4] holds ", 1)[1]
    count = int(said.split(" NaN of its 48 values (onnxruntime's, before any conversion)")[0])
    assert 0 < count < 48, out
    assert "check the weights" in out, out
    assert "missed its fidelity gate" not in out and "that conversion differs" not in out, out
    # said before converting: no format was converted for a model that cannot be judged
    assert not list((tmp_path / "home").rglob("*.param")), out


def test_a_keras_model_computing_infinity_is_refused_by_its_export_check(tmp_path: Path) -> None:
    pytest.importorskip("tensorflow")
    script = (
        "import keras, numpy as np\n"
        "i = keras.Input((8,), name='v'); d = keras.layers.Dense(2, name='o'); m = keras.Model(i, d(i))\n"
        "d.set_weights([np.full((8, 2), 1e38, np.float32), np.zeros(2, np.float32)])\n"
        f"m.save(r'{tmp_path / 'inf.keras'}')\n"
    )
    env = {"TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "", "PATH": "/usr/bin:/bin"}
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, env=env, timeout=300)
    recipe = tmp_path / "inf.yaml"
    recipe.write_text(
        "name: inf\nmodel: {kind: keras, path: inf.keras}\ninput: {name: v, shape: [1, 8], layout: NHWC}\n"
        f"outputs: [o]\n{RANDOM_EVAL}formats: [onnx-fp32, tflite-fp32]\n"
    )
    proc = _convert(recipe)
    out = " ".join((proc.stdout + proc.stderr).split())
    assert proc.returncode == 2, out
    assert "error (InputDataError)" in out, out
    assert (
        "the model's own outputs are not finite: on the export check's input 1 of 4 (uniform 0..1), "
        "inf.keras's output `o` [1, 2] holds 2 infinite of its 2 values (Keras's, before any export)"
    ) in out, out
    assert "matches the model within" not in out and "missed its fidelity gate" not in out, out


def test_an_export_giving_nan_where_keras_is_finite_fails_its_check() -> None:
    """The export check's comparison itself (the TensorFlow child's): NaN in the ONNX's output is no pass."""
    from edgekit.convert.keras_child import ChildError, _export_difference

    want = {"o": np.ones((1, 4), np.float32)}
    assert _export_difference(want, {"o": want["o"] + 1e-6}, ["o"], 0) < 1e-5
    with pytest.raises(ChildError, match=r"input 2 of 4 .*output `o`: it holds 1 NaN of its 4 values where"):
        _export_difference(want, {"o": np.array([[1, np.nan, 1, 1]], np.float32)}, ["o"], 1)
