"""`edgekit analyze --format tflite-int8` reads the layers with TFLite's builtin kernels (XNNPACK hides the tensors
it delegates), while fidelity, deploy and the agent run XNNPACK. On a small ViT XNNPACK's int8 kernels lose what the
builtin ones do not (output cosine 0.96 against 0.9995): every row read >= 0.997, and --fix kept 1, 2, 4, ... 64
layers in float, each missing the gate. analyze now measures the output both ways and says where the loss is, and
--fix refuses to rank layers for it."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("ai_edge_litert")

BUILDER = """
import torch
from torch import nn


class Block(nn.Module):
    def __init__(self, d=32, h=4):
        super().__init__()
        self.ln1 = nn.LayerNorm(d)
        self.att = nn.MultiheadAttention(d, h, batch_first=True)
        self.ln2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))

    def forward(self, x):
        y = self.ln1(x)
        x = x + self.att(y, y, y, need_weights=False)[0]
        return x + self.mlp(self.ln2(x))


class TinyViT(nn.Module):
    def __init__(self, size=32, patch=8, d=32, depth=2, num_classes=10):
        super().__init__()
        self.pe = nn.Conv2d(3, d, patch, patch)
        self.pos = nn.Parameter(torch.randn(1, (size // patch) ** 2, d) * 0.02)
        self.blocks = nn.Sequential(*[Block(d) for _ in range(depth)])
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, num_classes)

    def forward(self, x):
        x = self.pe(x).flatten(2).transpose(1, 2) + self.pos
        return self.head(self.ln(self.blocks(x)).mean(1))


def vit():
    torch.manual_seed(0)
    return TinyViT().eval()
"""

RECIPE = """name: xnn-vit
task: classify
model: {kind: torch, builder: "xnnvit:vit"}
input: {name: input, shape: [1, 3, 32, 32], layout: NCHW, preprocess: {scale: 0.00392156862745098, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225]}}
outputs: [logits]
calibration:
  data: {kind: builder, builder: "edgekit.zoo.tiny:images", args: {size: 32}, samples: 16, seed: 0}
  method: kl
evaluation:
  data: {kind: builder, builder: "edgekit.zoo.tiny:images", args: {size: 32}, samples: 8, seed: 1}
  gates:
    int8: {min_cosine: 0.99}
formats: [tflite-fp32, tflite-int8]
int8: {granularity: per-channel, io: float}
"""


def test_a_loss_in_xnnpacks_int8_kernels_is_said_and_fix_refuses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgekit.analysis.analyze import AnalysisError, analyze
    from edgekit.analysis.float_fallback import fix
    from edgekit.formats import Format
    from edgekit.recipe import load_recipe

    (tmp_path / "xnnvit.py").write_text(BUILDER)
    monkeypatch.syspath_prepend(str(tmp_path))  # the recipe's builder is imported when it is read
    monkeypatch.delitem(sys.modules, "xnnvit", raising=False)
    path = tmp_path / "vit.yaml"
    path.write_text(RECIPE)
    recipe = load_recipe(path)
    result = analyze(recipe, Format.TFLITE_INT8, samples=8)
    loss = result.kernel_loss
    assert loss is not None, (result.fidelity, result.layers)
    # the whole model as checked (XNNPACK) is the figure the table could not show
    assert loss["cosine_xnnpack"] == pytest.approx(result.fidelity["cosine"], abs=2e-3), (
        loss,
        result.fidelity,
    )
    assert loss["cosine_xnnpack"] < 0.99 < loss["cosine_builtin"], loss
    assert min(x.cosine for x in result.layers if not np.isnan(x.cosine)) > loss["cosine_xnnpack"]
    # found by reading every op's output under XNNPACK: the requantization after the first GELU's division wraps
    assert loss.get("op_type") == "QUANTIZE" and "truediv" in loss.get("op_input", ""), loss
    (note,) = [n for n in result.notes if "XNNPACK" in n]
    assert "the loss is in XNNPACK's int8 kernels, not in the quantization" in note, note
    assert f"{loss['cosine_xnnpack']:.6f}" in note and f"{loss['cosine_builtin']:.6f}" in note, note
    assert f"at QUANTIZE {loss['op']} (the requantization of {loss['op_input']})" in note, note
    with pytest.raises(AnalysisError, match="--fix cannot help") as err:
        fix(recipe, Format.TFLITE_INT8, result)
    assert err.value.exit_code == 1 and not (tmp_path / "runs").exists()
    # the CLI: the analysis was done, so `--json` holds it and why --fix refused (it wrote nothing: the refusal
    # raised before the JSON); the conversions come from the cache the call above filled
    import json
    import os
    import subprocess

    out = subprocess.run(
        [sys.executable, "-m", "edgekit", "analyze", str(path), "--format", "tflite-int8", "--fix"]
        + ["--samples", "8", "--json", str(tmp_path / "a.json")],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])},
    )
    assert out.returncode == 1 and "--fix cannot help" in out.stderr, out.stdout + out.stderr
    record = json.loads((tmp_path / "a.json").read_text())
    assert record["analysis"]["kernel_loss"]["op_type"] == "QUANTIZE", record["analysis"]["kernel_loss"]
    assert "--fix cannot help" in record["fix"]["error"] and record["fix"]["hint"], record["fix"]


def test_kernel_loss_is_none_when_xnnpack_agrees_with_the_builtin_kernels() -> None:
    from edgekit.analysis.tflite_layers import kernel_loss

    rng = np.random.default_rng(0)
    ref = [rng.normal(size=(1, 10)).astype(np.float32) for _ in range(4)]
    near = [r + 0.01 * rng.normal(size=r.shape).astype(np.float32) for r in ref]
    far = [r + 0.3 * rng.normal(size=r.shape).astype(np.float32) for r in ref]
    assert kernel_loss({"out": (ref, near, near)}) is None
    assert kernel_loss({"out": (ref, far, far)}) is None  # a loss both kernels share: the quantization's
    loss = kernel_loss({"out": (ref, near, far)})
    assert loss is not None and loss["output"] == "out"
    assert loss["cosine_xnnpack"] < 0.99 < loss["cosine_builtin"]
