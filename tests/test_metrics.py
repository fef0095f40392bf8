"""Task metrics: top-1, NMS and COCO-style mAP, checked against cases whose answer is known by construction."""

from __future__ import annotations

import numpy as np
import pytest

from edgekit.fidelity import metrics
from edgekit.zoo import shapes


def _perfect(labels: list[np.ndarray], score: float = 0.9) -> list[np.ndarray]:
    return [np.c_[lab[:, 1:5], np.full(len(lab), score), lab[:, 0]] for lab in labels]


@pytest.fixture(scope="module")
def labels() -> list[np.ndarray]:
    return shapes.test_set(24, size=160)[1]


def test_top1_counts_argmax_hits() -> None:
    logits = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    assert metrics.top1(logits, np.array([1, 0, 0, 0])) == pytest.approx(0.75)


def test_perfect_detections_score_one(labels: list[np.ndarray]) -> None:
    dets = _perfect(labels)
    assert metrics.map50(dets, labels) == pytest.approx(1.0)
    assert metrics.map50_95(dets, labels) == pytest.approx(1.0)


def test_low_score_duplicates_do_not_lower_map(labels: list[np.ndarray]) -> None:
    dets = [np.r_[d, d * [1, 1, 1, 1, 0, 1] + [2, 2, 2, 2, 0.1, 0]] for d in _perfect(labels)]
    assert metrics.map50(dets, labels) == pytest.approx(1.0)


def test_wrong_classes_score_zero(labels: list[np.ndarray]) -> None:
    dets = [d.copy() for d in _perfect(labels)]
    for d in dets:
        d[:, 5] = (d[:, 5] + 1) % shapes.NUM_CLASSES
    assert metrics.map50(dets, labels) == pytest.approx(0.0)


def test_shifted_boxes_lose_at_strict_iou_first(labels: list[np.ndarray]) -> None:
    dets = [d + [6, 6, 6, 6, 0, 0] for d in _perfect(labels)]
    m50, m5095 = metrics.map50(dets, labels), metrics.map50_95(dets, labels)
    assert 0.2 < m50 < 1.0
    assert m5095 < m50


def test_missing_half_the_boxes_halves_recall(labels: list[np.ndarray]) -> None:
    dets = [d[: (len(d) + 1) // 2] if i % 2 else d[:0] for i, d in enumerate(_perfect(labels))]
    assert 0.1 < metrics.map50(dets, labels) < 0.75


def test_nms_keeps_one_box_per_object_and_class() -> None:
    boxes = np.array([[10, 10, 50, 50], [12, 11, 51, 49], [100, 100, 140, 150], [10, 10, 50, 50]], np.float32)
    scores = np.array([[0.9, 0.0], [0.8, 0.0], [0.0, 0.7], [0.0, 0.6]], np.float32)
    dets = metrics.nms(boxes, scores, conf=0.05, iou=0.5)
    assert dets.shape == (3, 6)
    assert dets[:, 4].tolist() == pytest.approx([0.9, 0.7, 0.6])
    assert dets[:, 5].tolist() == [0, 1, 1]  # same box, other class: kept


def test_detection_metrics_from_raw_outputs(labels: list[np.ndarray]) -> None:
    n = max(len(lab) for lab in labels) + 5
    boxes = np.zeros((len(labels), n, 4), np.float32)
    scores = np.zeros((len(labels), n, shapes.NUM_CLASSES), np.float32)
    for i, lab in enumerate(labels):
        boxes[i, : len(lab)] = lab[:, 1:5]
        scores[i, np.arange(len(lab)), lab[:, 0].astype(int)] = 0.8
    out = metrics.detection_metrics(boxes, scores, labels)
    assert out == {"map50": pytest.approx(1.0), "map50_95": pytest.approx(1.0)}


@pytest.mark.parametrize("cls", range(shapes.NUM_CLASSES))
def test_shapes_boxes_are_exact_from_geometry(cls: int) -> None:
    """A painted shape's pixels (coverage >= 1/2) span its box to within one pixel on every side."""
    rng = np.random.default_rng(cls)
    for _ in range(5):
        canvas = np.zeros((160, 160, 3), np.float32)
        sdf, box = shapes._shape(cls, 80.0, 80.0, float(rng.uniform(20, 120)), rng)
        shapes._paint(canvas, sdf, box, np.array([255.0, 255.0, 255.0], np.float32))
        ys, xs = np.nonzero(canvas[..., 0] >= 127.5)
        painted = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)
        assert np.abs(painted - box).max() <= 1.0, (painted, box)


def test_shapes_images_are_pure_functions_of_seed_and_index() -> None:
    img, lab = shapes.draw(7, 3, size=160)
    again, lab2 = shapes.draw(7, 3, size=160)
    other, _ = shapes.draw(8, 3, size=160)
    assert np.array_equal(img, again) and np.array_equal(lab, lab2)
    assert not np.array_equal(img, other)
    assert img.dtype == np.uint8 and img.shape == (160, 160, 3)
    assert lab.dtype == np.float32 and lab.shape[1] == 5 and 1 <= len(lab) <= 4


def test_identical_zero_area_boxes_have_iou_one() -> None:
    from edgekit.fidelity.metrics import box_iou

    flat = np.array([[10.0, 20.0, 10.0, 40.0]])  # zero width, as an INT8 detector can emit
    assert box_iou(flat, flat)[0, 0] == 1.0
    assert box_iou(flat, flat + [1.0, 0, 1.0, 0])[0, 0] == 0.0
