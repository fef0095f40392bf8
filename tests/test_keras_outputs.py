"""A Keras model's outputs are taken by their own names: the recipe's `outputs` selects them by name, in the
recipe's order, whatever order the model returns them in; a name the model does not have is refused as the
SavedModel and ONNX sources refuse it."""

from __future__ import annotations

import os
import shutil
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

TWO_HEADS = """
import keras, numpy as np
keras.utils.set_random_seed(0)
i = keras.Input((4,), name="x")
h = keras.layers.Dense(8, activation="relu")(i)
aux = keras.layers.Dense(3, name="aux")(h)
logits = keras.layers.Dense(3, name="logits")(h)
m = keras.Model(i, [aux, logits])  # the model's order: aux first
m.save(MODEL)
x = np.random.default_rng(1).uniform(0, 1, (8, 4)).astype(np.float32)
a, lo = m.predict(x, verbose=0)
np.savez(PRED, x=x, aux=a, logits=lo)
"""


ONE_HEAD = """
i = keras.Input((4,), name='x')
m = keras.Model(i, keras.layers.Dense(3, name='logits')(i))
m.save(ONE)
"""


@pytest.fixture(scope="module")
def keras_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """two_heads.keras (with Keras's own outputs in pred.npz) and one.keras, made by ONE child (each child
    importing Keras took ~5 s); the tests only read them, each from its own copy."""
    folder = tmp_path_factory.mktemp("keras-files")
    script = (
        f"MODEL = r'{folder / 'two_heads.keras'}'\nPRED = r'{folder / 'pred.npz'}'\n"
        f"ONE = r'{folder / 'one.keras'}'\n{TWO_HEADS}{ONE_HEAD}"
    )
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, env=ENV, timeout=300)
    return folder


def _recipe(path: Path, model: Path, outputs: list[str], formats: list[str]) -> Path:
    raw: dict[str, Any] = {
        "name": path.stem,
        "task": "generic",
        "model": {"kind": "keras", "path": str(model)},
        "input": {"name": "x", "shape": [1, 4]},
        "outputs": outputs,
        "formats": formats,
    }
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.integration
def test_a_keras_models_outputs_are_taken_by_name_in_the_recipes_order(
    tmp_path: Path, keras_files: Path
) -> None:
    """Was: names given by position, so `outputs: [logits, aux]` on a model returning [aux, logits] named the aux
    head 'logits' in the ONNX (accuracy and gates judged on the wrong head). The ONNX's outputs now carry the
    values Keras gives under each name, in the recipe's order; TensorFlow's TFLite matches that ONNX."""
    import onnxruntime as ort

    from edgekit.convert.pipeline import convert_recipe

    model = Path(shutil.copy(keras_files / "two_heads.keras", tmp_path / "two_heads.keras"))
    pred = keras_files / "pred.npz"
    want = np.load(pred)
    assert np.abs(want["aux"] - want["logits"]).max() > 0.1  # two heads that differ: a swap would show
    recipe = _recipe(tmp_path / "two.yaml", model, ["logits", "aux"], ["onnx-fp32", "tflite-fp32"])
    arts = {a.format: a for a in convert_recipe(load_recipe(recipe), keep_going=True)}
    onnx = arts[Format.ONNX_FP32]
    assert onnx.status == "ok", onnx.error
    sess = ort.InferenceSession(str(onnx.main_file), providers=["CPUExecutionProvider"])
    assert sorted(o.name for o in sess.get_outputs()) == ["aux", "logits"]
    for k, x in enumerate(want["x"]):
        got = dict(zip(["logits", "aux"], sess.run(["logits", "aux"], {"x": x[None]})))
        for name in ("logits", "aux"):
            np.testing.assert_allclose(got[name][0], want[name][k], atol=1e-4, err_msg=name)
    tfl = arts[Format.TFLITE_FP32]
    assert tfl.status == "ok", tfl.error
    assert tfl.fidelity["max_abs_error"] < 1e-4, tfl.fidelity


@pytest.mark.integration
def test_a_recipe_output_a_keras_model_lacks_is_refused_naming_the_models_outputs(
    tmp_path: Path, keras_files: Path
) -> None:
    """Was: `outputs: [probs]` on a single-output model whose output is `logits` renamed it silently (by
    position); a SavedModel with the same mistake was refused. Now both: exit 2, RecipeError naming the model's
    outputs."""
    model = Path(shutil.copy(keras_files / "one.keras", tmp_path / "one.keras"))
    for outputs, missing in ((["probs"], "['probs']"), (["logits", "aux"], "['aux']")):
        recipe = _recipe(tmp_path / "wrong.yaml", model, outputs, ["onnx-fp32"])
        out = subprocess.run(
            [sys.executable, "-m", "edgekit", "convert", str(recipe)],
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, "EDGEKIT_HOME": str(tmp_path / "home")},
        )
        assert out.returncode == 2 and "error (RecipeError)" in out.stderr, out.stdout[-1500:] + out.stderr
        assert f"{missing} not among the model's outputs ['logits']" in out.stderr, out.stderr


def test_the_onnx_export_of_a_keras_source_is_keyed_by_the_childs_procedure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An ONNX written by the child that named outputs by position (swapped heads) is not found again in the
    cache: the export's key holds WORKER_VERSION as the TFLite files' does."""
    from edgekit.convert import keras
    from edgekit.recipe import KerasSource

    recipe = load_recipe(Path(__file__).resolve().parents[1] / "recipes" / "digits-keras.yaml")
    assert isinstance(recipe.model, KerasSource)
    before = keras.keras_key(recipe, recipe.model)
    monkeypatch.setattr(keras, "WORKER_VERSION", keras.WORKER_VERSION + 1)
    assert keras.keras_key(recipe, recipe.model) != before
