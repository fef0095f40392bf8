"""A detector's fidelity numbers: the artifact's boxes after NMS matched to the reference's, and mAP with labels.

Outputs `boxes` [1,N,4] xyxy and `scores` [1,N,C] (see zoo/yolov5_lite.py); boxes after NMS (score >= DETECT_CONF,
IoU DETECT_NMS_IOU) matched to the reference's at IoU >= MATCH_IOU and same class (`box_match`, None when the
reference finds no box); with labels also mAP@0.5 and mAP@0.5:0.95 of both and the drop.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgekit.convert.calibration import Labels
from edgekit.fidelity import metrics
from edgekit.runtimes import Outputs

DETECT_CONF, DETECT_NMS_IOU, MATCH_IOU = 0.25, 0.45, 0.5
# A reference box scored just above the threshold that the artifact scores just below it is the same detection,
# not a lost one: the reference's boxes (score >= DETECT_CONF) are looked for among the artifact's boxes down to
# DETECT_CONF - MATCH_SCORE_MARGIN. Without it ncnn-fp16 on the Cortex-A76 (fp16 arithmetic: boxes within a pixel,
# scores within 0.02) missed min_box_match 0.95 on yolov5-lite: one box of 12, 0.253 in the reference, was 0.238.
MATCH_SCORE_MARGIN = 0.05


def detector_outputs(ref: Outputs) -> tuple[int, int]:
    """The indices of a detector's boxes and scores outputs (by name, else by the 4 at the end of a shape)."""
    names = [n for n, _ in ref]
    if "boxes" in names and "scores" in names:
        return names.index("boxes"), names.index("scores")
    fours = [k for k, (_, a) in enumerate(ref) if a.shape[-1] == 4]
    if len(ref) == 2 and len(fours) >= 1:
        return fours[0], 1 - fours[0]
    raise ValueError(
        "a detector needs two outputs, `boxes` [1, N, 4] and `scores` [1, N, classes] "
        "(see edgekit/zoo/yolov5_lite.py)"
    )


def detect_numbers(
    rb: np.ndarray, rs: np.ndarray, gb: np.ndarray, gs: np.ndarray, labels: Labels | None
) -> dict[str, Any]:
    """`box_match` and the box counts of the artifact's boxes/scores against the reference's; mAP with labels."""
    nms = {"conf": DETECT_CONF, "iou": DETECT_NMS_IOU}
    ref_dets, got_dets = metrics.detections(rb, rs, **nms), metrics.detections(gb, gs, **nms)
    # greedy NMS: boxes under the threshold suppress none above it, so this is got_dets plus the near misses
    near = metrics.detections(gb, gs, conf=DETECT_CONF - MATCH_SCORE_MARGIN, iou=DETECT_NMS_IOU)
    matched = sum(_matched(r, g) for r, g in zip(ref_dets, near))
    total = sum(len(r) for r in ref_dets)
    out: dict[str, Any] = {
        "boxes_reference": int(total),
        "boxes": int(sum(len(g) for g in got_dets)),
        "box_match": matched / total if total else None,
    }
    if isinstance(labels, list):
        ref_m, got_m = metrics.detection_metrics(rb, rs, labels), metrics.detection_metrics(gb, gs, labels)
        out.update(
            {
                "map50_reference": ref_m["map50"],
                "map50": got_m["map50"],
                "map50_95_reference": ref_m["map50_95"],
                "map50_95": got_m["map50_95"],
                "map50_drop": ref_m["map50"] - got_m["map50"],
                "map50_95_drop": ref_m["map50_95"] - got_m["map50_95"],
            }
        )
    return out


def _matched(ref: np.ndarray, got: np.ndarray) -> int:
    """Reference detections (score order) matched greedily to an unused same-class detection at IoU >= 0.5."""
    if len(ref) == 0 or len(got) == 0:
        return 0
    iou = metrics.box_iou(ref[:, :4], got[:, :4])
    iou[ref[:, 5][:, None] != got[:, 5][None, :]] = 0.0
    used = np.zeros(len(got), bool)
    count = 0
    for i in range(len(ref)):
        cand = np.where(used, -1.0, iou[i])
        j = int(np.argmax(cand))
        if cand[j] >= MATCH_IOU:
            used[j] = True
            count += 1
    return count
