"""A tiny token model exported by torch (opset 20: LayerNormalization and Gelu as ops): a conv stem, its output
flattened into tokens, LayerNorm and a GELU MLP over them, back to a map, a 1x1 conv head, a mean. The layout
traps of converters (onnx2tf's layout check, MNN's KL calibration) show on it."""

from __future__ import annotations

from pathlib import Path


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
    torch.onnx.export(
        TokenMixer().eval(),
        (torch.zeros(1, 3, size, size),),
        str(path),
        input_names=["input"],
        output_names=["logits"],
        opset_version=20,
        dynamo=False,
    )
    return path
