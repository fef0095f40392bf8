"""`edgekit analyze --format tflite-int8` of a two-output model compares every quantized layer: onnx2tf's fp32 and
INT8 files number the outputs in different orders (`PartitionedCall:0` is the feature map in one, the logits in the
other), and pairing by tensor name matched the INT8 conv with the fp32 fully-connected layer; the shapes differed
and both were dropped without a word ("worst of 1 quantized layers"). Ops are paired by the graph now, and a
quantized op that cannot be paired is listed as not compared, with why."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("ai_edge_litert")

BUILDER = """
import torch
from torch import nn


class Two(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        y = torch.relu(self.conv(x))
        return self.fc(y.mean((2, 3))), y


def two():
    torch.manual_seed(0)
    return Two()
"""


def test_every_quantized_layer_of_a_two_output_model_is_compared(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgekit.analysis.analyze import analyze
    from edgekit.formats import Format
    from edgekit.recipe import load_recipe

    (tmp_path / "twomods.py").write_text(BUILDER)
    monkeypatch.syspath_prepend(str(tmp_path))  # the recipe's builder is imported when it is read
    monkeypatch.delitem(sys.modules, "twomods", raising=False)
    recipe = tmp_path / "two.yaml"
    recipe.write_text(
        "name: two-out\n"
        'model: {kind: torch, builder: "twomods:two"}\n'
        "input: {name: input, shape: [1, 3, 8, 8], layout: NCHW}\n"
        "outputs: [logits, feat]\n"
        "calibration:\n  data: {kind: random, samples: 4}\n"
        "evaluation:\n  data: {kind: random, samples: 2}\n"
        "formats: [tflite-fp32, tflite-int8]\n"
    )
    result = analyze(load_recipe(recipe), Format.TFLITE_INT8, samples=2)
    types = sorted(x.type for x in result.layers if x.quantized)
    assert types == ["CONV_2D", "FULLY_CONNECTED", "MEAN"], result.layers
    for layer in result.layers:
        assert layer.cosine > 0.99, layer  # each against its own fp32 op: the conv with the conv


def _op(op: str, out: str, ins: list[str], int8: bool) -> dict[str, Any]:
    return {"op": op, "out": out, "index": 0, "ins": ins, "int8": int8}


def test_a_quantized_op_without_an_fp32_counterpart_is_listed_as_not_compared(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The INT8 file has a conv the fp32 one lacks (of another shape): listed, its type saying why, not dropped."""
    from edgekit.analysis import tflite_layers as module

    a, b = np.ones((1, 4, 4, 2), np.float32), np.ones((1, 2), np.float32)
    fp32 = ([_op("CONV_2D", "f_conv", ["in", "w"], False)], {"f_conv": [a]})
    int8 = (
        [
            _op("QUANTIZE", "q_in", ["in"], True),
            _op("CONV_2D", "q_conv", ["q_in", "qw"], True),
            _op("FULLY_CONNECTED", "q_fc", ["q_conv", "qw2"], True),
        ],
        {"q_in": [a], "q_conv": [a * 1.01], "q_fc": [b]},
    )
    files = {"f.tflite": fp32, "q.tflite": int8}
    monkeypatch.setattr(module, "_tflite_tensors", lambda path, *_: files[path.name])
    layers = module.tflite_layers(Path("f.tflite"), Path("q.tflite"), np.zeros((1, 4, 4, 2), np.float32))
    by_type = {x.type.split(" ")[0]: x for x in layers}
    assert by_type["CONV_2D"].cosine == pytest.approx(1.0)
    fc = by_type["FULLY_CONNECTED"]
    assert fc.quantized and np.isnan(fc.cosine) and fc.own_rel_error == 0.0
    assert (
        fc.type
        == "FULLY_CONNECTED (not compared: no FULLY_CONNECTED of output shape [1, 2] on the same inputs "
        "in the fp32 model)"
    ), fc
    from types import SimpleNamespace

    from rich.console import Console

    from edgekit.cli.analyze import layer_table

    shown = SimpleNamespace(
        recipe="r", format="tflite-int8", layers=layers, samples=1, method="added", worst=lambda top: layers
    )
    console = Console(width=400, record=True)
    console.print(layer_table(shown, 5))
    row = next(line for line in console.export_text().splitlines() if "not compared" in line)
    assert "nan" not in row and "0.0000" not in row and row.split()[-3:] == ["-", "-", "-"], row
