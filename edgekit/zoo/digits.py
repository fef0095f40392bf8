"""Handwritten digits: a small CNN and its data, so classifier accuracy of every artifact is a real number.

The data is scikit-learn's `load_digits` (1797 real 8x8 scans, shipped inside the package, nothing downloaded),
upsampled to 16x16 and scaled to 0..1, split 80/20 stratified with a fixed seed. Model input is NCHW
float32 [N, 1, 16, 16]; labels are int64 class ids 0..9. The builders `calibration` and `test_split` are what
recipes name as data (`edgekit.zoo.digits:calibration`), so calibration never sees a test image.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any, cast

import numpy as np

if TYPE_CHECKING:
    import torch

SPLIT_SEED = 0  # fixed: the split is part of the dataset's definition, not of an experiment
TEST_FRACTION = 0.2
SIZE = 16
NUM_CLASSES = 10
DEFAULT_WIDTHS = (
    8,
    16,
    32,
)  # narrower than needed for 99%: keeps INT8 differences visible (see weights JSON)


@lru_cache(maxsize=1)
def _splits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from scipy.ndimage import zoom
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = digits.images.astype(np.float32) / 16.0
    images = zoom(images, (1, SIZE / 8, SIZE / 8), order=1, grid_mode=True, mode="nearest")
    images = np.clip(images, 0.0, 1.0).astype(np.float32)[:, None]  # [N,1,16,16]
    labels = digits.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(
        images, labels, test_size=TEST_FRACTION, stratify=labels, random_state=SPLIT_SEED
    )
    for arr in (x_tr, x_te, y_tr, y_te):
        arr.setflags(write=False)
    return x_tr, y_tr, x_te, y_te


def train_data() -> tuple[np.ndarray, np.ndarray]:
    """The training split (1437 images): what the model and the calibration may see."""
    x_tr, y_tr, _, _ = _splits()
    return x_tr, y_tr


def test_data() -> tuple[np.ndarray, np.ndarray]:
    """The held-out test split (360 images), in a fixed order."""
    _, _, x_te, y_te = _splits()
    return x_te, y_te


def _subset(x: np.ndarray, y: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n samples drawn without replacement by `seed`; all of them (fixed order) when n >= the split's size."""
    if n >= len(x):
        return x.copy(), y.copy()
    idx = np.sort(np.random.default_rng(seed).choice(len(x), size=n, replace=False))
    return x[idx], y[idx]


def calibration(n: int = 100, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Recipe data builder: n training-split images (inputs [n,1,16,16] float32, labels [n] int64)."""
    x, y = train_data()
    return _subset(x, y, n, seed)


def test_split(n: int = 360, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Recipe data builder: n test-split images with labels (the whole split when n >= 360)."""
    x, y = test_data()
    return _subset(x, y, n, seed)


def build(
    widths: tuple[int, ...] | list[int] = DEFAULT_WIDTHS, num_classes: int = NUM_CLASSES, **_: Any
) -> torch.nn.Module:
    """The classifier: per width two Conv-BN-ReLU (the first of later stages strided), GAP, linear.

    Exported it is Conv/ReLU/GlobalAveragePool/Gemm only (BN folds into conv), which every target format runs.
    """
    import torch
    from torch import nn

    layers: list[nn.Module] = []
    cin = 1
    for i, width in enumerate(widths):
        for j in range(2):
            stride = 2 if (i > 0 and j == 0) else 1
            layers += [nn.Conv2d(cin, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
            cin = width
    model = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes))
    torch.nn.init.zeros_(cast(nn.Linear, model[-1]).bias)
    return model


def shift_augment(x: torch.Tensor, generator: torch.Generator, max_shift: int = 1) -> torch.Tensor:
    """Random +-max_shift pixel translations with zero fill, drawn from `generator` (deterministic)."""
    import torch

    n = x.shape[0]
    pad = torch.nn.functional.pad(x, (max_shift,) * 4)
    span = 2 * max_shift + 1
    shift = torch.randint(0, span * span, (n,), generator=generator)
    h, w = x.shape[-2:]
    out = torch.empty_like(x)
    for s in range(span * span):  # one slice per offset, not per image
        dy, dx = divmod(s, span)
        sel = shift == s
        out[sel] = pad[sel, :, dy : dy + h, dx : dx + w]
    return out
