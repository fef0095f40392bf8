"""Task metrics of a model's outputs against labels: top-1 for classifiers, mAP for detectors.

Detector conventions (shared with edgekit.convert.calibration and the zoo data builders):
- labels: one array per image, shape (k, 5), rows (class, x1, y1, x2, y2) in input pixels;
- raw model outputs: `boxes` (N, 4) xyxy in input pixels and `scores` (N, num_classes) in 0..1, per image;
- detections: one array per image, shape (m, 6), rows (x1, y1, x2, y2, score, class), after `nms`.
mAP is COCO-style: per class, greedy matching in score order to the best-IoU unmatched box of that class,
101-point interpolated precision; classes without a labelled box are skipped; mAP@0.5:0.95 averages ten IoUs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

COCO_IOUS = tuple(np.round(np.arange(0.5, 0.951, 0.05), 2).tolist())


def top1(logits: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of samples whose highest-scoring class is the label."""
    logits = np.asarray(logits).reshape(len(labels), -1)
    return float(np.mean(np.argmax(logits, axis=1) == np.asarray(labels)))


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (len(a), len(b)) of xyxy boxes."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    iou = np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)
    # Two identical degenerate (zero-area) boxes are the same box: IoU 1, not 0. Quantized detectors can emit
    # such boxes, and a bit-identical pair must count as agreement.
    same = np.all(a[:, None, :] == b[None, :, :], axis=2)
    return np.where(same & (union <= 0), 1.0, iou)


def nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    *,
    conf: float = 0.001,
    iou: float = 0.6,
    max_det: int = 100,
    max_candidates: int = 3000,
) -> np.ndarray:
    """Class-aware greedy NMS of one image's raw outputs -> detections (m, 6) sorted by score."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    scores = np.asarray(scores, np.float32).reshape(len(boxes), -1)
    idx, cls = np.nonzero(scores > conf)
    if len(idx) == 0:
        return np.zeros((0, 6), np.float32)
    sc = scores[idx, cls]
    order = np.argsort(-sc, kind="stable")[:max_candidates]
    idx, cls, sc = idx[order], cls[order], sc[order]
    # offset boxes by class so one pass suppresses only within a class
    off = boxes[idx] + (cls[:, None] * (float(np.abs(boxes).max()) + 1.0))
    keep = _greedy(off, iou, max_det)
    return np.concatenate([boxes[idx[keep]], sc[keep, None], cls[keep, None].astype(np.float32)], axis=1)


def _greedy(boxes: np.ndarray, iou: float, max_det: int) -> list[int]:
    """Indices kept by greedy NMS; `boxes` already sorted by descending score."""
    keep: list[int] = []
    alive = np.ones(len(boxes), bool)
    for i in range(len(boxes)):
        if not alive[i]:
            continue
        keep.append(i)
        if len(keep) >= max_det:
            break
        rest = np.nonzero(alive[i + 1 :])[0] + i + 1
        if len(rest):
            alive[rest[box_iou(boxes[i], boxes[rest])[0] > iou]] = False
    return keep


def detections(boxes: np.ndarray, scores: np.ndarray, **nms_args: float) -> list[np.ndarray]:
    """Batched raw outputs (B, N, 4) and (B, N, C) -> one detections array per image."""
    boxes = np.asarray(boxes).reshape(-1, *np.shape(boxes)[-2:])
    scores = np.asarray(scores).reshape(len(boxes), -1, np.shape(scores)[-1])
    return [nms(b, s, **nms_args) for b, s in zip(boxes, scores)]  # type: ignore[arg-type]


def mean_average_precision(
    dets: Sequence[np.ndarray], labels: Sequence[np.ndarray], ious: Sequence[float] = (0.5,)
) -> float:
    """COCO-style mAP over classes that have labelled boxes, averaged over the IoU thresholds `ious`."""
    if len(dets) != len(labels):
        raise ValueError(f"{len(dets)} detection arrays for {len(labels)} labelled images")
    labels = [np.asarray(lab, np.float64).reshape(-1, 5) for lab in labels]
    dets = [np.asarray(d, np.float64).reshape(-1, 6) for d in dets]
    classes = sorted({int(c) for lab in labels for c in lab[:, 0] if c >= 0})
    if not classes:
        return 0.0
    return float(np.mean([[_class_ap(dets, labels, c, t) for c in classes] for t in ious]))


def map50(dets: Sequence[np.ndarray], labels: Sequence[np.ndarray]) -> float:
    return mean_average_precision(dets, labels, (0.5,))


def map50_95(dets: Sequence[np.ndarray], labels: Sequence[np.ndarray]) -> float:
    return mean_average_precision(dets, labels, COCO_IOUS)


def detection_metrics(
    boxes: np.ndarray, scores: np.ndarray, labels: Sequence[np.ndarray]
) -> dict[str, float]:
    """mAP@0.5 and mAP@0.5:0.95 of batched raw detector outputs (NMS applied here)."""
    dets = detections(boxes, scores)
    return {"map50": map50(dets, labels), "map50_95": map50_95(dets, labels)}


def _class_ap(dets: list[np.ndarray], labels: list[np.ndarray], cls: int, thr: float) -> float:
    records: list[tuple[float, bool]] = []
    n_gt = 0
    for d, lab in zip(dets, labels):
        gt = lab[lab[:, 0] == cls, 1:5]
        n_gt += len(gt)
        d = d[d[:, 5] == cls]
        d = d[np.argsort(-d[:, 4], kind="stable")]
        taken = np.zeros(len(gt), bool)
        iou = box_iou(d[:, :4], gt) if len(gt) and len(d) else np.zeros((len(d), len(gt)))
        for k in range(len(d)):
            cand = np.where(taken, -1.0, iou[k]) if len(gt) else np.zeros(0)
            j = int(np.argmax(cand)) if len(cand) else -1
            hit = j >= 0 and cand[j] >= thr
            if hit:
                taken[j] = True
            records.append((float(d[k, 4]), hit))
    if n_gt == 0:
        return 0.0
    if not records:
        return 0.0
    records.sort(key=lambda r: -r[0])
    tp = np.cumsum([r[1] for r in records])
    fp = np.cumsum([not r[1] for r in records])
    recall = tp / n_gt
    precision = tp / np.maximum(tp + fp, 1e-12)
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    points = np.linspace(0, 1, 101)
    pos = np.searchsorted(recall, points, side="left")
    return float(np.mean([envelope[p] if p < len(envelope) else 0.0 for p in pos]))
