"""A PyTorch model whose own outputs are NaN (x.mean() / 0 * 0) is refused as such, an InputDataError (exit 2)
naming the evaluation input, the output and how many values: it was reported as an export that does not
reproduce the model ("differ from PyTorch's by nan"), with the hint about control flow frozen by tracing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

BUILDER = """
import torch


class Nan(torch.nn.Module):
    def forward(self, x):
        return x.mean((2, 3)) / 0 * 0


def nan():
    return Nan()
"""


def test_model_computing_nan_is_named_not_blamed_on_the_export(tmp_path: Path) -> None:
    (tmp_path / "nanmods.py").write_text(BUILDER)
    recipe = tmp_path / "nan.yaml"
    recipe.write_text(
        "name: nan\n"
        'model: {kind: torch, builder: "nanmods:nan"}\n'
        "input: {name: x, shape: [1, 3, 4, 4]}\n"
        "outputs: [logits]\n"
        "evaluation:\n  data: {kind: random, samples: 2}\n"
        "formats: [onnx-fp32]\n"
    )
    path = os.pathsep.join(p for p in (str(tmp_path), os.environ.get("PYTHONPATH", "")) if p)
    proc = subprocess.run(
        [sys.executable, "-m", "edgekit", "convert", str(recipe)],
        cwd=tmp_path,
        env={**os.environ, "EDGEKIT_HOME": str(tmp_path / "home"), "PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert "error (InputDataError)" in out, out
    assert "the model's own outputs are not finite: on evaluation input 1 of 2" in out, out
    assert "output `logits` [1, 3] holds 3 NaN of its 3 values" in out, out
    assert "check the weights" in out and "torch.onnx.export records" not in out, out
    assert not list((tmp_path / "home").rglob("model.onnx")), "a model that failed its check is not cached"
