"""Tiny models and procedural images for tests and quick demos (32x32 inputs, convert in seconds).

`build` is a tiny classifier, `build_detector` a tiny detector with the same two-output contract as the
YOLOv5-Lite-style detector (`boxes` [1, N, 4] xyxy in input pixels, `scores` [1, N, num_classes]).
`images(n, seed, size)` draws procedural RGB images (gradients, shapes, noise): a calibration source that
looks more like photographs than uniform noise does. torch is imported only inside the builders.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def build(num_classes: int = 10, width: int = 8) -> Any:
    """Conv-BN-ReLU, depthwise-separable block, max pool, global pool, linear: every op kind we convert."""
    import torch
    from torch import nn

    def cbr(cin: int, cout: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride, 1, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )

    class TinyNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(
                cbr(3, width, 2),
                cbr(width, width, 1, groups=width),
                nn.Conv2d(width, 2 * width, 1),
                nn.ReLU6(),
                nn.MaxPool2d(2),
                cbr(2 * width, 4 * width, 2),
            )
            self.head = nn.Linear(4 * width, num_classes)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.features(x)
            return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))

    return TinyNet().eval()


def build_detector(num_classes: int = 3, width: int = 8, size: int = 32) -> Any:
    """A tiny one-scale detector whose outputs follow the YOLOv5-Lite contract (see zoo/yolov5_lite.py)."""
    from torch import nn

    from edgekit.zoo.yolov5_lite import Detect

    def cbr(cin: int, cout: int, stride: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())

    class TinyDetector(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = nn.Sequential(
                cbr(3, width, 2), cbr(width, 2 * width, 2), cbr(2 * width, 2 * width, 1)
            )
            self.detect = Detect(
                num_classes,
                (2 * width,),
                strides=(4,),
                anchors=(((6, 6), (12, 10)),),
                size=size,
                prior_bias=False,
            )  # untrained, it still finds boxes to compare

        def forward(self, x: Any) -> Any:
            return self.detect([self.backbone(x)])

    return TinyDetector().eval()


def images(n: int, seed: int = 0, size: int = 32) -> np.ndarray:
    """n procedural RGB images (n, size, size, 3) uint8: a colour gradient, 1-3 filled shapes, mild noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / max(size - 1, 1)
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        t = (xx * rng.uniform(-1, 1) + yy * rng.uniform(-1, 1)) % 1.0
        img = c0 + (c1 - c0) * t[..., None]
        for _ in range(rng.integers(1, 4)):
            cx, cy, r = rng.uniform(0, size), rng.uniform(0, size), rng.uniform(size / 10, size / 3)
            mask = (
                (np.abs(xx * size - cx) < r) & (np.abs(yy * size - cy) < r)
                if rng.random() < 0.5
                else (xx * size - cx) ** 2 + (yy * size - cy) ** 2 < r * r
            )
            img[mask] = rng.uniform(0, 255, 3)
        img += rng.normal(0, 6, img.shape)
        out[i] = np.clip(img, 0, 255).astype(np.uint8)
    return out
