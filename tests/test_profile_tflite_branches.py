"""`edgekit profile` of a branched, two-output .tflite: every prefix model returns the tensors still live after
its cut, so an op on a side branch is counted (it showed 0 instructions, its prefix returning its output alone
while XNNPACK dropped the main branch's ops, and the ops summed to 86 % of the inference)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from procs import keras_tflite

# logits from a conv stack, feat a 1x1 convolution on the input: TFLite runs feat's conv last, on a side branch
KERAS_SCRIPT = """
import sys, keras
x = keras.Input((16, 16, 3))
y = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
y = keras.layers.Conv2D(16, 3, strides=2, padding="same")(y)
logits = keras.layers.Dense(10)(keras.layers.GlobalAveragePooling2D()(y))
feat = keras.layers.Conv2D(4, 1)(x)
import tensorflow as tf
model = keras.Model(x, [logits, feat])
open(sys.argv[1], "wb").write(tf.lite.TFLiteConverter.from_keras_model(model).convert())
"""


@pytest.fixture(scope="module")
def two_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return keras_tflite(KERAS_SCRIPT, tmp_path_factory.mktemp("branches") / "two_out.tflite")


def test_every_prefix_returns_the_tensors_still_live_after_its_cut(two_out: Path) -> None:
    from edgekit.profile_tflite import live_outputs, read_model

    graph = read_model(two_out).subgraphs[0]
    ops = graph.operators
    produced_by = {t: k for k, op in enumerate(ops) for t in op.outputs}
    for k in range(len(ops)):
        outputs = live_outputs(graph, k)
        assert set(ops[k].outputs) <= set(outputs)
        later = {t for op in ops[k + 1 :] for t in op.inputs} | set(graph.outputs)
        assert {t for t in later if produced_by.get(t, k + 1) <= k} <= set(outputs)
    side = next(k for k, op in enumerate(ops) if graph.tensors[op.outputs[0]].shape[-1] == 4)
    assert set(live_outputs(graph, side)) == set(graph.outputs)  # both branches' results at the side conv


@pytest.mark.integration
def test_a_convolution_on_a_side_branch_gets_its_share(two_out: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "edgekit", "profile", str(two_out), "--target", "pi4-emu", "--json"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    (feat,) = [layer for layer in data["layers"] if layer["shape"] == [1, 16, 16, 4]]
    rest = data["total"] - data["fixed"]
    assert feat["type"] == "CONV_2D" and feat["instructions"] > 0.05 * rest, data
    assert 0.95 < data["coverage"] < 1.05, data
