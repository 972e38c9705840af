"""Detections of one photo made one list: cross-class duplicate merging, and fusion of two
detectors' boxes."""

from __future__ import annotations

import numpy as np

from lens.geometry import iou
from lens.types import Box, Detection


def merge_duplicates(detections: list[Detection], iou_threshold: float) -> list[Detection]:
    """Greedy NMS across classes: a box overlapping a higher-scoring one by more than
    `iou_threshold` is the same object seen under another label (a car also called a truck),
    so only the best-scoring label survives. Result is sorted by score, best first."""
    kept: list[Detection] = []
    for det in sorted(detections, key=lambda d: d.score, reverse=True):
        if all(iou(det.box, k.box) <= iou_threshold for k in kept):
            kept.append(det)
    return kept


def fuse(
    groups: list[list[Detection]], iou_threshold: float, weights: list[float] | None = None
) -> list[Detection]:
    """Weighted box fusion of several detectors' outputs.

    Boxes of the same object from different detectors (IoU above the threshold) are averaged,
    weighted by score; the fused score is the weighted mean over all detectors, counting a
    detector that missed the object as 0 — so agreement raises a box and a lone detection is
    kept at a reduced score rather than dropped.
    """
    weights = weights or [1.0] * len(groups)
    total = sum(weights)
    clusters: list[list[tuple[int, Detection]]] = []
    pooled = [(g, d) for g, dets in enumerate(groups) for d in dets]
    for g, det in sorted(pooled, key=lambda p: p[1].score * weights[p[0]], reverse=True):
        best, best_iou = None, iou_threshold
        for cluster in clusters:
            if any(member_g == g for member_g, _ in cluster):
                continue  # one box per detector per object
            overlap = iou(det.box, _weighted_box(cluster))
            if overlap > best_iou:
                best, best_iou = cluster, overlap
        if best is None:
            clusters.append([(g, det)])
        else:
            best.append((g, det))
    fused = []
    for cluster in clusters:
        lead = max(cluster, key=lambda p: p[1].score * weights[p[0]])[1]
        score = sum(weights[g] * d.score for g, d in cluster) / total
        fused.append(Detection(box=_weighted_box(cluster), label=lead.label, score=score, class_id=lead.class_id))
    return sorted(fused, key=lambda d: d.score, reverse=True)


def _weighted_box(cluster: list[tuple[int, Detection]]) -> Box:
    scores = np.array([d.score for _, d in cluster], dtype=np.float64)
    boxes = np.array([d.box for _, d in cluster], dtype=np.float64)
    if scores.sum() <= 0:
        scores = np.ones_like(scores)
    x1, y1, x2, y2 = (scores[:, None] * boxes).sum(axis=0) / scores.sum()
    return (float(x1), float(y1), float(x2), float(y2))
