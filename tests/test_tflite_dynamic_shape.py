"""A user's .tflite whose input has free dimensions (Keras Input((None, None, 3)): shape_signature [-1,-1,-1,3],
placeholder shape [1,1,1,3]) was measured at the 1x1 placeholder without a word, and --input-shape was refused.
Now it needs --input-shape, as an .onnx with free dimensions does, and the MACs, the count and the per-op profile
are made at that shape (the interpreter's input resized)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from procs import keras_tflite

from edgekit.errors import InputDataError

KERAS_SCRIPT = """
import sys, keras, tensorflow as tf
x = keras.Input((None, None, 3))
y = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
y = keras.layers.Dense(10)(keras.layers.GlobalAveragePooling2D()(y))
open(sys.argv[1], "wb").write(tf.lite.TFLiteConverter.from_keras_model(keras.Model(x, y)).convert())
"""
CONV_MACS = 8 * 3 * 3 * 3  # per output pixel of the 3x3 convolution, 3 -> 8 channels


@pytest.fixture(scope="module")
def dyn(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return keras_tflite(KERAS_SCRIPT, tmp_path_factory.mktemp("dynamic") / "dyn.tflite")


def test_free_height_and_width_need_an_input_shape_and_the_macs_follow_it(dyn: Path) -> None:
    from edgekit.estimate.graph import analyze

    with pytest.raises(InputDataError) as refused:
        analyze(dyn)
    assert "free dimensions (axis 1, 2: height, width)" in refused.value.message
    assert "--input-shape 1,224,224,3" in (refused.value.hint or "")
    for shape, side in (([1, 16, 16, 3], 16), ([1, 3, 32, 32], 32)):  # NHWC as the file, or NCHW
        assert analyze(dyn, shape).macs == side * side * CONV_MACS + 8 * 10
    for wrong in ([1, 16, 16, 4], [2, 16, 16, 3]):  # its channels are fixed; one sample
        with pytest.raises(InputDataError, match="does not fit its input"):
            analyze(dyn, wrong)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgekit", *args], capture_output=True, text=True, timeout=600
    )


def test_roofline_refuses_without_an_input_shape(dyn: Path) -> None:
    done = run("roofline", str(dyn), "--board", "pi4")
    assert done.returncode == 2 and "free dimensions" in done.stderr, done.stdout + done.stderr


@pytest.mark.integration
def test_the_count_runs_at_the_input_shape_given(dyn: Path) -> None:
    """The counting runner resizes the interpreter's input (estimate passes --input-shape to it)."""
    from edgekit.emu.plugin.counting import CountJob, count_artifacts

    small, large = count_artifacts(
        [CountJob(dyn, input_shape=shape, repeat=1) for shape in ([1, 16, 16, 3], [1, 3, 32, 32])], "pi4-emu"
    )
    assert small.instructions > 30_000  # the 1x1 placeholder counted 11.5 k
    assert large.instructions > 3 * small.instructions  # 4x the pixels


@pytest.mark.integration
def test_profile_counts_every_op_at_the_input_shape_given(dyn: Path) -> None:
    done = run("profile", str(dyn), "--target", "pi4-emu")
    assert done.returncode == 2 and "free dimensions (axis 1, 2" in done.stderr, done.stderr
    done = run("profile", str(dyn), "--target", "pi4-emu", "--input-shape", "1,16,16,3", "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["layers"][0]["type"] == "CONV_2D" and data["layers"][0]["shape"] == [1, 16, 16, 8]
    assert 0.9 < data["coverage"] < 1.1, data  # the whole inference counted at the same size as its ops
