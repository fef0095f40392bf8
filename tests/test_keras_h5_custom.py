"""A custom layer in a legacy .h5 file whose code is not loaded is named as in a .keras file: the class, the
name it was registered under, and what to do (custom_objects, or a SavedModel), not Keras's raw 'Unknown layer'
with the hint for a file that is no model at all."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "", "PATH": "/usr/bin:/bin"}
CUSTOM_LAYER = (
    "@keras.saving.register_keras_serializable(package='mine')\n"
    "class Swish2(keras.layers.Layer):\n"
    "    def call(self, x):\n"
    "        return x * keras.ops.sigmoid(x)\n"
)


def _convert(
    model: Path, home: Path, custom_objects: list[str] | None, code: Path
) -> subprocess.CompletedProcess[str]:
    source: dict[str, object] = {"kind": "keras", "path": model.name}
    if custom_objects:
        source["custom_objects"] = custom_objects
    recipe = model.with_suffix(".yaml")
    recipe.write_text(
        yaml.safe_dump(
            {
                "name": model.stem,
                "task": "generic",
                "model": source,
                "input": {"name": "x", "shape": [1, 4]},
                "formats": ["onnx-fp32"],
            }
        )
    )
    env = {**os.environ, "EDGEKIT_HOME": str(home)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(code), env.get("PYTHONPATH", "")]))
    return subprocess.run(
        [sys.executable, "-m", "edgekit", "convert", str(recipe)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )


@pytest.mark.integration
def test_a_custom_layer_of_an_h5_file_without_its_code_is_named_with_what_to_do(tmp_path: Path) -> None:
    code = tmp_path / "code"
    (code / "mylayers").mkdir(parents=True)
    (code / "mylayers" / "__init__.py").write_text("")
    (code / "mylayers" / "act.py").write_text(f"import keras\n\n\n{CUSTOM_LAYER}")
    model = tmp_path / "custom.h5"
    build = (
        "import keras\nfrom mylayers.act import Swish2\ni = keras.Input((4,), name='x')\n"
        f"keras.Model(i, Swish2()(keras.layers.Dense(3)(i))).save(r'{model}')\n"
    )
    subprocess.run(
        [sys.executable, "-c", build], check=True, capture_output=True, env={**ENV, "PYTHONPATH": str(code)}
    )
    home = tmp_path / "home"
    out = _convert(model, home, None, tmp_path / "nothing")
    assert out.returncode == 2 and "error (InputDataError)" in out.stderr, out.stdout[-1500:] + out.stderr
    said = (
        "Keras cannot load this file: the custom class 'Swish2' (registered as 'mine>Swish2') could not be "
    )
    assert said in out.stderr, out.stderr
    assert "Unknown layer" not in out.stderr and "custom_object_scope" not in out.stderr, out.stderr
    assert "custom_objects: [mypackage.layers:Swish2]" in out.stderr and "model.export(" in out.stderr
    assert "or a SavedModel folder with one input" not in out.stderr  # the hint of a file that is no model
    # what the hint says works: the class named in the recipe, its package on PYTHONPATH
    out = _convert(model, home, ["mylayers.act:Swish2"], code)
    assert out.returncode == 0, out.stdout[-1500:] + out.stderr[-1500:]


def test_keras_unknown_object_messages_name_the_custom_class() -> None:
    """Keras's legacy (.h5) deserializer says 'Unknown layer/activation/...: NAME'; each is named as a custom
    class or function with the custom_objects hint."""
    from edgekit.convert.keras_child import _keras_load_error

    cases = {
        "Unknown layer: 'mine>Swish2'. Please ensure you are using a `keras.utils.custom_object_scope`": (
            "the custom class 'Swish2' (registered as 'mine>Swish2')",
            "mypackage.layers:Swish2",
        ),
        "Unknown activation function: 'swish3'. Please ensure this object is passed": (
            "the custom function 'swish3' could",
            "mypackage.layers:swish3",
        ),
        "Unknown object: 'Thing'": ("the custom class 'Thing' could", "mypackage.layers:Thing"),
    }
    for text, (said, example) in cases.items():
        message, hint = _keras_load_error(ValueError(text))
        assert said in message, message
        assert hint is not None and example in hint, hint
