"""A tiny token model exported by torch (opset 20: LayerNormalization and Gelu as ops): a conv stem, its output
flattened into tokens, LayerNorm and a GELU MLP over them, back to a map, a 1x1 conv head, a mean. The layout
traps of converters (onnx2tf's layout check, MNN's KL calibration) show on it."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any


def token_mixer_onnx(path: Path, dim: int = 4, size: int = 16) -> Path:
    import torch
    from torch import nn

    class TokenMixer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Conv2d(3, dim, 4, stride=4)
            self.ln = nn.LayerNorm(dim)
            self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
            self.head = nn.Conv2d(dim, 5, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.stem(x)
            n, c, h, w = x.shape
            t = x.flatten(2).transpose(1, 2)
            t = t + self.mlp(self.ln(t))
            return self.head(t.transpose(1, 2).reshape(n, c, h, w)).mean(dim=(2, 3))

    torch.manual_seed(0)
    return _export(TokenMixer(), path, size, "logits", opset=20)


def _export(model: Any, path: Path, size: int, output: str, opset: int) -> Path:
    """The model (eval mode) as ONNX at input [1, 3, size, size], named input / `output`, by torch's TorchScript
    exporter (the one that honours the opset)."""
    import torch

    with warnings.catch_warnings():
        # attention in torch.nn.functional compares traced sizes: TracerWarnings torch itself ignores from its
        # own modules with a filter it adds when imported, which pytest drops after the test that imported it
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(
            model.eval(),
            (torch.zeros(1, 3, size, size),),
            str(path),
            input_names=["input"],
            output_names=[output],
            opset_version=opset,
            dynamo=False,
        )
    return path


def attention_onnx(path: Path, dim: int = 32, size: int = 32) -> Path:
    """A small transformer's arithmetic in every form a converter writes it: self-attention (ncnn's
    MultiHeadAttention), attention written by hand (MatMuls of two activations, one with B transposed), learned
    queries attending the tokens (cross-attention: 4-D MatMuls against a constant) and Linear layers (Gemm)."""
    import torch
    from torch import nn

    class Attention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Conv2d(3, dim, 4, stride=4)
            self.self_attn = nn.MultiheadAttention(dim, 2, batch_first=True)
            self.cross = nn.MultiheadAttention(dim, 4, batch_first=True)
            self.query = nn.Parameter(torch.randn(1, 5, dim))
            self.qk = nn.Linear(dim, 2 * dim)
            self.ln = nn.LayerNorm(dim)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            t = self.embed(x).flatten(2).transpose(1, 2)
            t = t + self.self_attn(t, t, t, need_weights=False)[0]
            q, k = self.qk(self.ln(t)).chunk(2, dim=-1)
            t = t + torch.softmax(q @ k.transpose(1, 2), -1) @ t
            return self.cross(self.query, t, t, need_weights=False)[0].mean(1)

    torch.manual_seed(0)
    return _export(Attention(), path, size, "y", opset=17)
