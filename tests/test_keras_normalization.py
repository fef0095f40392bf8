"""A Keras model holding the built-in `Normalization` layer (every keras.applications EfficientNet B0-B7 has one)
converts: tf2onnx gets the frozen serving function, so the layer's mean and variance are constants in the ONNX,
not graph inputs nobody feeds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from edgekit.formats import Format
from edgekit.recipe import load_recipe

ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "", "PATH": "/usr/bin:/bin"}

# EfficientNet's own stem in miniature: Rescaling, then Normalization with fixed mean and variance (Keras 3 keeps
# them as captured tensors, not variables), then a convolution; Keras's outputs on 4 inputs saved beside it
NORMALIZED = """
import keras, numpy as np
keras.utils.set_random_seed(0)
i = keras.Input((8, 8, 3), name="input")
h = keras.layers.Rescaling(1.0 / 255.0)(i)
h = keras.layers.Normalization(axis=-1, mean=[0.485, 0.456, 0.406], variance=[0.052, 0.050, 0.051])(h)
h = keras.layers.Conv2D(4, 3, activation="relu")(h)
h = keras.layers.GlobalAveragePooling2D()(h)
m = keras.Model(i, keras.layers.Dense(3, name="predictions")(h))
m.save(MODEL)
x = np.random.default_rng(1).uniform(0, 255, (4, 1, 8, 8, 3)).astype(np.float32)
np.savez(PRED, x=x, y=np.stack([m.predict(s, verbose=0) for s in x]))
"""


@pytest.fixture(scope="module")
def normalized(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("keras-norm")
    script = f"MODEL = r'{folder / 'norm.keras'}'\nPRED = r'{folder / 'pred.npz'}'\n{NORMALIZED}"
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, env=ENV, timeout=300)
    return folder


def _recipe(path: Path, model: Path) -> Path:
    raw: dict[str, Any] = {
        "name": "keras-norm",
        "task": "generic",
        "model": {"kind": "keras", "path": str(model)},
        "input": {"name": "input", "shape": [1, 8, 8, 3], "layout": "NHWC"},
        "outputs": ["predictions"],
        "formats": ["onnx-fp32", "tflite-fp32"],
    }
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.integration
def test_a_keras_normalization_layer_converts_with_its_constants_inside(
    tmp_path: Path, normalized: Path
) -> None:
    """Was: exit 1 for every format, "tf2onnx: ValueError: Required inputs (['.../normalization_1/Sub/y:0',
    '.../normalization_1/Sqrt/x:0']) are missing from input feed (['input'])": tf2onnx made the layer's captured
    mean and variance graph inputs. Now the ONNX takes the one input and gives Keras's outputs, and TensorFlow's
    TFLite file matches it."""
    import onnxruntime as ort

    from edgekit.convert.pipeline import convert_recipe

    recipe = _recipe(tmp_path / "norm.yaml", normalized / "norm.keras")
    arts = {a.format: a for a in convert_recipe(load_recipe(recipe), keep_going=True)}
    onnx = arts[Format.ONNX_FP32]
    assert onnx.status == "ok", onnx.error
    sess = ort.InferenceSession(str(onnx.main_file), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["input"]
    assert [o.name for o in sess.get_outputs()] == ["predictions"]
    want = np.load(normalized / "pred.npz")
    for x, y in zip(want["x"], want["y"]):
        np.testing.assert_allclose(sess.run(["predictions"], {"input": x})[0], y, rtol=1e-4, atol=1e-4)
    tfl = arts[Format.TFLITE_FP32]
    assert tfl.status == "ok", tfl.error
    assert tfl.fidelity["max_abs_error"] < 1e-4, tfl.fidelity
