"""Procedural shapes: images with 1-4 filled shapes and exact boxes, so detector mAP is a real number.

Three classes: 0 circle, 1 rotated square, 2 triangle, drawn anti-aliased on a noisy colour gradient. Boxes come
from the geometry (circle: centre +- radius; polygons: the extent of their vertices), in pixels, xyxy.
Every image is a pure function of (seed, index), so a training stream, the calibration images and the test set
are reproducible and disjoint by seed. Images are uint8 (N, H, W, 3) RGB; labels follow
edgekit.convert.calibration / edgekit.fidelity.metrics: one (k, 5) float32 array per image, rows (class, x1, y1, x2, y2).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

CLASSES = ("circle", "square", "triangle")
NUM_CLASSES = len(CLASSES)
SIZE = 320
TEST_SEED = 10_000  # seeds of test images start here; training uses seeds below it
CALIBRATION_SEED = 20_000

Sdf = Callable[[np.ndarray, np.ndarray], np.ndarray]  # signed distance at pixel centres (x, y)
MIN_FRACTION, MAX_FRACTION = 0.08, 0.38  # shape extent as a fraction of the image side


def draw(
    seed: int, index: int, size: int = SIZE, reference: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """One image (size, size, 3) uint8 and its labels (k, 5) float32, a pure function of (seed, index).

    Shape sizes are fractions of `reference` (default: `size`): training draws a smaller canvas with the shapes
    of a 320 image by passing reference=320.
    """
    scale = reference or size
    rng = np.random.default_rng([seed, index])
    img = _background(rng, size)
    boxes: list[np.ndarray] = []
    rows: list[list[float]] = []
    for _ in range(int(rng.integers(1, 5))):
        for _try in range(20):
            cls = int(rng.integers(0, NUM_CLASSES))
            extent = min(rng.uniform(MIN_FRACTION, MAX_FRACTION) * scale, 0.9 * size)
            cx, cy = rng.uniform(extent / 2, size - extent / 2, 2)
            sdf, box = _shape(cls, cx, cy, extent, rng)
            if all(_overlap(box, b) < 0.15 for b in boxes):
                break
        else:
            continue
        _paint(img, sdf, box, _contrasting(img, box, rng))
        boxes.append(box)
        rows.append([cls, *box])
    img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(rng.uniform(2.0, 10.0))
    labels = np.asarray(rows, np.float32).reshape(-1, 5)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), labels


def batch(
    seed: int, start: int, n: int, size: int = SIZE, reference: int | None = None
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Images start..start+n-1 of the stream `seed`."""
    pairs = [draw(seed, start + i, size, reference) for i in range(n)]
    return np.stack([p[0] for p in pairs]), [p[1] for p in pairs]


def images(n: int = 100, seed: int = 0, size: int = SIZE) -> tuple[np.ndarray, list[np.ndarray]]:
    """Recipe data builder for calibration: n images of their own stream (never training or test images)."""
    return batch(CALIBRATION_SEED + seed, 0, n, size)


def test_set(n: int = 200, seed: int = 0, size: int = SIZE) -> tuple[np.ndarray, list[np.ndarray]]:
    """Recipe data builder for evaluation: n held-out images with labels (seed picks another test set)."""
    return batch(TEST_SEED + seed, 0, n, size)


# --- drawing --------------------------------------------------------------------------------------------------
def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    c0, c1 = rng.uniform(0, 255, 3).astype(np.float32), rng.uniform(0, 255, 3).astype(np.float32)
    ang = rng.uniform(0, 2 * np.pi)
    ramp = np.arange(size, dtype=np.float32) / size - np.float32(0.5)
    t = np.float32(0.5) + ramp[None, :] * np.float32(np.cos(ang)) + ramp[:, None] * np.float32(np.sin(ang))
    np.clip(t, 0, 1, out=t)
    return c0 + (c1 - c0) * t[..., None]


def _shape(cls: int, cx: float, cy: float, extent: float, rng: np.random.Generator) -> tuple[Sdf, np.ndarray]:
    """A signed-distance function (negative inside) and the exact box of one shape."""
    if cls == 0:
        r = extent / 2

        def circle(x: np.ndarray, y: np.ndarray) -> np.ndarray:
            return np.hypot(x - cx, y - cy) - r

        return circle, np.array([cx - r, cy - r, cx + r, cy + r], np.float32)
    n_vertices = 4 if cls == 1 else 3
    theta = rng.uniform(0, 2 * np.pi) + np.arange(n_vertices) * 2 * np.pi / n_vertices
    r = extent / 2
    verts = np.stack([cx + r * np.cos(theta), cy + r * np.sin(theta)], axis=1)
    box = np.array([*verts.min(0), *verts.max(0)], np.float32)
    return _polygon_sdf(verts), box


def _polygon_sdf(verts: np.ndarray) -> Sdf:
    """Max of signed distances to the edges of a convex polygon (counter-clockwise in image coordinates)."""
    edges = np.roll(verts, -1, axis=0) - verts
    normals = np.stack([edges[:, 1], -edges[:, 0]], axis=1)
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    offsets = np.sum(normals * verts, axis=1)
    if np.sum(normals * (verts.mean(0) - verts), axis=1).max() > 0:  # orient normals outwards
        normals, offsets = -normals, -offsets

    def sdf(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        d = x[..., None] * normals[:, 0] + y[..., None] * normals[:, 1] - offsets
        return d.max(axis=-1)

    return sdf


def _paint(img: np.ndarray, sdf: Sdf, box: np.ndarray, color: np.ndarray) -> None:
    """Anti-aliased fill: coverage of each pixel centre from the signed distance, only inside the box."""
    h, w = img.shape[:2]
    x0, y0 = max(int(box[0]) - 1, 0), max(int(box[1]) - 1, 0)
    x1, y1 = min(int(np.ceil(box[2])) + 1, w), min(int(np.ceil(box[3])) + 1, h)
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32) + 0.5
    alpha = np.clip(0.5 - sdf(xx, yy), 0.0, 1.0)[..., None]
    img[y0:y1, x0:x1] = img[y0:y1, x0:x1] * (1 - alpha) + color * alpha


def _contrasting(img: np.ndarray, box: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A colour at least 80 (RGB distance) away from the background's mean under the box."""
    x0, y0, x1, y1 = (int(v) for v in box)
    local = img[max(y0, 0) : max(y1, y0 + 1), max(x0, 0) : max(x1, x0 + 1)].reshape(-1, 3).mean(0)
    color = rng.uniform(0, 255, 3)
    for _ in range(20):
        if np.linalg.norm(color - local) >= 80:
            break
        color = rng.uniform(0, 255, 3)
    return color.astype(np.float32)


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over the smaller box's area: shapes may touch but never hide one another."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    small = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return float(iw * ih / max(small, 1e-9))
