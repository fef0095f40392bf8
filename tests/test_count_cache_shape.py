"""The count cache keys a count by the shape the counting runner runs, not by how --input-shape spelled it: a
.tflite of fixed input counted once serves `estimate` with no shape, the original model's NCHW and the file's own
NHWC (the runner runs the file's shape whatever is given); one with free height and width serves the same size
given NCHW or NHWC (the runner resizes it to the same NHWC tensor), and a different size is counted anew."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = """
import sys, numpy as np, tensorflow as tf
rng = np.random.default_rng(int(sys.argv[3]))  # weights of this run: no count of another test serves
w = tf.constant((rng.standard_normal((3, 3, 3, 4)) * 0.1).astype(np.float32))
for spec, path in (([1, 16, 16, 3], sys.argv[1]), ([1, None, None, 3], sys.argv[2])):
    @tf.function(input_signature=[tf.TensorSpec(spec, tf.float32)])
    def f(x):
        return tf.nn.relu(tf.nn.conv2d(x, w, 1, "SAME"))
    conv = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f)
    open(path, "wb").write(conv.convert())
"""


@pytest.fixture(scope="module")
def tflites(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A one-convolution .tflite of fixed input 1,16,16,3, and the same with free height and width."""
    folder = tmp_path_factory.mktemp("tflites")
    fixed, free = folder / "fixed.tflite", folder / "free.tflite"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    subprocess.run(
        [sys.executable, "-c", SCRIPT, str(fixed), str(free), str(os.getpid())],
        check=True,
        capture_output=True,
        env=env,
        timeout=300,
    )
    return fixed, free


def estimate(artifact: Path, *shape: str) -> dict:
    args = ["--input-shape", shape[0]] if shape else []
    done = subprocess.run(
        [sys.executable, "-m", "edgekit", "estimate", str(artifact), "--board", "pi4", *args, "--json"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)["count"]


@pytest.mark.integration
def test_a_fixed_tflite_is_counted_once_however_its_shape_is_written(tflites: tuple[Path, Path]) -> None:
    """`--input-shape 1,16,16,3` (the file's own NHWC shape) counted again: the raw shape was in the key."""
    fixed, _ = tflites
    first = estimate(fixed)
    assert first["cached"] is False
    for shape in ("1,16,16,3", "1,3,16,16"):
        again = estimate(fixed, shape)
        assert again["cached"] is True, shape
        assert again["instructions"] == first["instructions"], shape


@pytest.mark.integration
def test_a_free_tflite_is_counted_once_per_size_whichever_layout_names_it(tflites: tuple[Path, Path]) -> None:
    _, free = tflites
    nhwc = estimate(free, "1,16,16,3")
    assert nhwc["cached"] is False
    nchw = estimate(free, "1,3,16,16")
    assert nchw["cached"] is True and nchw["instructions"] == nhwc["instructions"]
    larger = estimate(free, "1,3,24,24")  # another size runs another tensor: counted, and more
    assert larger["cached"] is False and larger["instructions"] > nhwc["instructions"]
