"""A YOLOv5-Lite-style detector: ShuffleNetV2 backbone (channel shuffle), light PAN neck, 3-scale YOLO head.

No weights can be downloaded here, so the network is built in code; a trained state_dict (for example from
edgekit/zoo/shapes_train.py) is loaded by the recipe's `model.weights`.

Output contract (what edgekit.fidelity.check and the on-device agent rely on), for input [1, 3, S, S]:
- `boxes`  [1, N, 4]: decoded boxes, **xyxy in input pixels** (x1, y1, x2, y2 on the S x S input).
- `scores` [1, N, num_classes]: sigmoid(objectness) * sigmoid(class), in 0..1.
Rows are ordered by scale (stride 8, 16, 32), then anchor, then grid row, then grid column;
N = 3 * ((S/8)^2 + (S/16)^2 + (S/32)^2) = 6300 at S = 320. NMS is left to the caller (edgekit.fidelity.metrics.nms).
Boxes are clipped to the input. Boxes and scores are separate outputs so that INT8 gives each its own scale
(pixels vs probabilities).

The decode keeps every tensor 3-D ([1, C, N] until one final transpose) and uses no 5-D reshapes, which
onnx2tf and pnnx both convert; only the channel shuffle uses a 5-D view, a pattern both tools recognise.
torch is imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import numpy as np

# YOLOv5 default anchors (pixels) for strides 8, 16, 32; fine for 320 inputs too.
ANCHORS = (
    ((10, 13), (16, 30), (33, 23)),
    ((30, 61), (62, 45), (59, 119)),
    ((116, 90), (156, 198), (373, 326)),
)
STRIDES = (8, 16, 32)


def build(num_classes: int = 3, width: float = 1.0, size: int = 320, neck: int = 96) -> Any:
    """The detector as an nn.Module in eval mode. `width` scales every channel count (1.0: 116/232/464)."""
    import torch
    from torch import nn

    stages = [max(8, int(round(c * width / 4)) * 4) for c in (116, 232, 464)]
    stem = max(8, int(round(32 * width / 4)) * 4)
    neck = max(8, int(round(neck * width / 4)) * 4)
    if size % 32:
        raise ValueError(f"size must be a multiple of 32, got {size}")

    def cbr(cin: int, cout: int, k: int = 1, s: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
        layers: list[nn.Module] = [
            nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
        ]
        return nn.Sequential(*layers, nn.ReLU(inplace=True)) if act else nn.Sequential(*layers)

    class ShuffleBlock(nn.Module):
        """ShuffleNetV2 unit: split (stride 1) or two branches (stride 2), concat, channel shuffle."""

        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.stride = stride
            half = cout // 2
            if stride == 2:
                self.branch1 = nn.Sequential(cbr(cin, cin, 3, 2, groups=cin, act=False), cbr(cin, half))
            b2_in = cin if stride == 2 else half
            self.branch2 = nn.Sequential(
                cbr(b2_in, half), cbr(half, half, 3, stride, groups=half, act=False), cbr(half, half)
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if self.stride == 1:
                a, b = x.chunk(2, dim=1)
                out = torch.cat((a, self.branch2(b)), dim=1)
            else:
                out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
            n, c, h, w = out.shape
            return out.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)

    def stage(cin: int, cout: int, repeats: int) -> nn.Sequential:
        return nn.Sequential(
            ShuffleBlock(cin, cout, 2), *[ShuffleBlock(cout, cout, 1) for _ in range(repeats)]
        )

    class CSP(nn.Module):
        """A light C3 block (YOLOv5): two 1x1 paths, one with a 3x3 bottleneck, merged by a 1x1."""

        def __init__(self, cin: int, cout: int) -> None:
            super().__init__()
            mid = cout // 2
            self.a, self.b = cbr(cin, mid), cbr(cin, mid)
            self.m = nn.Sequential(cbr(mid, mid), cbr(mid, mid, 3))
            self.out = cbr(2 * mid, cout)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.out(torch.cat((self.m(self.a(x)), self.b(x)), dim=1))

    class YoloV5Lite(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Sequential(cbr(3, stem, 3, 2), nn.MaxPool2d(3, 2, 1))
            self.s3, self.s4, self.s5 = (
                stage(stem, stages[0], 3),
                stage(stages[0], stages[1], 7),
                stage(stages[1], stages[2], 3),
            )
            self.lat5, self.lat4 = cbr(stages[2], neck), cbr(neck, neck)
            self.up = nn.Upsample(scale_factor=2, mode="nearest")
            self.td4, self.td3 = CSP(neck + stages[1], neck), CSP(neck + stages[0], neck)
            self.down3, self.down4 = cbr(neck, neck, 3, 2), cbr(neck, neck, 3, 2)
            self.bu4, self.bu5 = CSP(2 * neck, neck), CSP(2 * neck, neck)
            self.detect = Detect(num_classes, (neck, neck, neck), STRIDES, ANCHORS, size)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            c3 = self.s3(self.stem(x))
            c4 = self.s4(c3)
            p5 = self.lat5(self.s5(c4))
            p4 = self.lat4(self.td4(torch.cat((self.up(p5), c4), 1)))
            n3 = self.td3(torch.cat((self.up(p4), c3), 1))
            n4 = self.bu4(torch.cat((self.down3(n3), p4), 1))
            n5 = self.bu5(torch.cat((self.down4(n4), p5), 1))
            return self.detect([n3, n4, n5])

    return YoloV5Lite().eval()


def Detect(
    num_classes: int,
    channels: Sequence[int],
    strides: Sequence[int],
    anchors: Sequence[Sequence[Sequence[float]]],
    size: int,
    prior_bias: bool = True,
) -> Any:
    """The YOLO head as an nn.Module: 1x1 conv per scale, YOLOv5 decode, outputs (boxes xyxy, scores).
    `prior_bias` starts objectness low as YOLOv5 does for training (an untrained net then finds no box).

    Each scale is decoded on its own and its boxes clipped to the image before the scales are joined: every
    tensor then spans a small range (a stride-8 box never needs the 1500 px a stride-32 anchor can reach), so
    INT8 keeps about 1.3 px resolution on the clipped [0, size] boxes instead of several pixels.

    The half size is (sigmoid * sqrt(2 * anchor))^2, not 0.5 * (2 * sigmoid)^2 * anchor (same value): TFLite's
    INT8 calibration gives the result of a multiply that feeds a multiply by a constant the consumer's range,
    so the 0..4 square got the 0..220 px range of w, h (steps of 0.9 where 0.016 was needed: zero-area boxes,
    mAP@0.5 0.58). Here the square is the last multiply and its input keeps its own 0..27 range.
    """
    import torch
    from torch import nn

    no = 5 + num_classes

    class _Detect(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.num_anchors = [len(a) for a in anchors]
            self.strides = [float(s) for s in strides]
            self.convs = nn.ModuleList(nn.Conv2d(c, na * no, 1) for c, na in zip(channels, self.num_anchors))
            for k, (s, scale_anchors) in enumerate(zip(strides, anchors)):
                grid, wh = _decode_constants(s, scale_anchors, size)
                self.register_buffer(f"grid{k}", torch.from_numpy(grid), persistent=False)
                self.register_buffer(f"anchor{k}", torch.from_numpy(wh), persistent=False)
            for conv, s in zip(self.convs, strides) if prior_bias else ():  # YOLOv5: few objects, even cls
                b = cast(torch.Tensor, conv.bias).data.view(-1, no)
                b[:, 4] += float(np.log(8 / (640 / s) ** 2))
                b[:, 5:] += float(np.log(0.6 / (num_classes - 0.99)))

        def forward(self, feats: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
            boxes, scores = [], []
            for k, (conv, f) in enumerate(zip(self.convs, feats)):
                p = torch.cat([t.flatten(2) for t in conv(f).split(no, dim=1)], dim=2).sigmoid()  # [1, no, n]
                xy = p[:, 0:2] * (2 * self.strides[k]) + getattr(self, f"grid{k}")
                half = p[:, 2:4] * getattr(self, f"anchor{k}")  # sqrt(2 * anchor), so half * half = wh / 2
                half = half * half
                boxes.append(torch.cat((xy - half, xy + half), dim=1).clamp(0.0, float(size)))
                scores.append(p[:, 4:5] * p[:, 5:])
            return torch.cat(boxes, dim=2).transpose(1, 2), torch.cat(scores, dim=2).transpose(1, 2)

    return _Detect()


def _decode_constants(
    stride: int, anchors: Sequence[Sequence[float]], size: int
) -> tuple[np.ndarray, np.ndarray]:
    """One scale's per-row decode constants: (grid - 0.5) * stride and sqrt(2 * anchor w, h), [1, 2, n]."""
    g = size // stride
    yy, xx = np.mgrid[0:g, 0:g]
    cell = np.stack([xx.ravel(), yy.ravel()]).astype(np.float32)  # [2, g*g]
    grids = [(cell - 0.5) * stride for _ in anchors]
    whs = [np.tile(np.sqrt(2 * np.array([[aw], [ah]], np.float32)), (1, g * g)) for aw, ah in anchors]
    return np.concatenate(grids, 1)[None], np.concatenate(whs, 1)[None]


def num_boxes(size: int = 320, strides: Sequence[int] = STRIDES, anchors_per_scale: int = 3) -> int:
    return sum(anchors_per_scale * (size // s) ** 2 for s in strides)
