"""MobileNetV2 (Sandler et al. 2018), written here because torchvision is not installed.

Same layer layout and parameter count as torchvision's `mobilenet_v2` (3.5 M at width 1.0, 1000 classes), so a
torchvision state_dict loads into it with strict=True. Input [1, 3, 224, 224] NCHW, ImageNet normalisation;
output `logits` [1, num_classes]. torch is imported inside `build`, so importing this module is cheap.
"""

from __future__ import annotations

from typing import Any

# expansion t, output channels c, repeats n, first stride s (the paper's table 2)
SETTINGS = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def _divisible(value: float, divisor: int = 8) -> int:
    """Channel counts rounded to a multiple of 8, never below 90% of the request (as in the reference)."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * value else new


def build(
    num_classes: int = 1000, width: float = 1.0, dropout: float = 0.2, settle_bn: bool = True, size: int = 224
) -> Any:
    """MobileNetV2 in eval mode; `width` scales every layer's channels.

    With random weights and default BatchNorm statistics the activations shrink about 1e-9-fold over the 17
    blocks (every INT8 figure would then be meaningless), so `settle_bn` sets the statistics from 8 procedural
    images, as training would. Loading a state_dict afterwards replaces them.
    """
    import torch
    from torch import nn

    class ConvBNReLU(nn.Sequential):
        def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1) -> None:
            super().__init__(
                nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU6(inplace=True),
            )

    class InvertedResidual(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
            super().__init__()
            hidden = int(round(cin * expand))
            self.use_res_connect = stride == 1 and cin == cout
            layers: list[nn.Module] = [ConvBNReLU(cin, hidden, k=1)] if expand != 1 else []
            layers += [
                ConvBNReLU(hidden, hidden, stride=stride, groups=hidden),
                nn.Conv2d(hidden, cout, 1, bias=False),
                nn.BatchNorm2d(cout),
            ]
            self.conv = nn.Sequential(*layers)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.conv(x) if self.use_res_connect else self.conv(x)

    class MobileNetV2(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            cin = _divisible(32 * width)
            last = _divisible(1280 * max(1.0, width))
            features: list[nn.Module] = [ConvBNReLU(3, cin, stride=2)]
            for t, c, n, s in SETTINGS:
                cout = _divisible(c * width)
                for i in range(n):
                    features.append(InvertedResidual(cin, cout, s if i == 0 else 1, t))
                    cin = cout
            features.append(ConvBNReLU(cin, last, k=1))
            self.features = nn.Sequential(*features)
            self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(last, num_classes))
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out")
                elif isinstance(m, nn.BatchNorm2d):
                    nn.init.ones_(m.weight)
                    nn.init.zeros_(m.bias)
                elif isinstance(m, nn.Linear):
                    nn.init.normal_(m.weight, 0, 0.01)
                    nn.init.zeros_(m.bias)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = nn.functional.adaptive_avg_pool2d(self.features(x), 1)
            return self.classifier(torch.flatten(x, 1))

    model = MobileNetV2()
    if settle_bn:
        _settle_batchnorm(model, size)
    return model.eval()


def _settle_batchnorm(model: Any, size: int) -> None:
    """BatchNorm running statistics = the exact averages over 8 procedural ImageNet-normalised images."""
    import numpy as np
    import torch

    from edgekit.zoo.tiny import images

    x = images(8, seed=0, size=size).astype(np.float32) / 255.0
    x = (x - np.array([0.485, 0.456, 0.406], np.float32)) / np.array([0.229, 0.224, 0.225], np.float32)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average
    model.train()
    with torch.no_grad():
        model(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()))
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = 0.1
