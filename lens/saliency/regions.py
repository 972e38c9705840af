"""Choose the few regions a person would want to ask about: the dots.

Candidates are the detector's boxes plus blobs of the saliency map that no detection covers
(things the detector has no class for: a lotus, a lamp). Each is scored by
    w_conf * confidence + w_mass * saliency mass + w_mean * saliency mean + w_centre * centrality
then tiny boxes and boxes mostly inside a better one are dropped, and the top K within a
fraction of the best are kept. Every threshold lives in RegionConfig with its reason.
"""

from __future__ import annotations

import numpy as np

from lens.config import RegionConfig
from lens.detect.merge import box_area, intersection
from lens.types import Box, Detection, Region


def _integral(m: np.ndarray) -> np.ndarray:
    out = np.zeros((m.shape[0] + 1, m.shape[1] + 1), dtype=np.float64)
    out[1:, 1:] = m.astype(np.float64).cumsum(0).cumsum(1)
    return out


class _BoxStats:
    """Sums of the saliency map over boxes in O(1) each, via an integral image."""

    def __init__(self, saliency: np.ndarray) -> None:
        self.h, self.w = saliency.shape
        self.integral = _integral(saliency)
        self.total = float(self.integral[-1, -1])
        self.peak = float(saliency.max()) if saliency.size else 0.0

    def pixels(self, box: Box) -> tuple[int, int, int, int]:
        x1, y1, x2, y2 = box
        left = int(np.clip(np.floor(x1), 0, self.w - 1))
        top = int(np.clip(np.floor(y1), 0, self.h - 1))
        right = int(np.clip(np.ceil(x2), left + 1, self.w))
        bottom = int(np.clip(np.ceil(y2), top + 1, self.h))
        return left, top, right, bottom

    def sum(self, box: Box) -> float:
        left, t, r, b = self.pixels(box)
        i = self.integral
        return float(i[b, r] - i[t, r] - i[b, left] + i[t, left])

    def mass(self, box: Box) -> float:
        """Share of the whole map's saliency inside the box."""
        return self.sum(box) / self.total if self.total > 0 else 0.0

    def mean(self, box: Box) -> float:
        """Mean of the map inside the box, relative to the map's maximum (1 = all peak)."""
        left, t, r, b = self.pixels(box)
        inside = self.sum(box) / max(1, (r - left) * (b - t))
        return inside / self.peak if self.peak > 0 else 0.0


def centrality(box: Box, width: int, height: int) -> float:
    """1 at the image centre, 0 at a corner (distance normalised by the half-diagonal)."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    dx, dy = (cx - width / 2) / (width / 2), (cy - height / 2) / (height / 2)
    return float(max(0.0, 1.0 - np.hypot(dx, dy) / np.sqrt(2)))


def salient_blobs(saliency: np.ndarray, config: RegionConfig) -> list[Box]:
    """Boxes around connected areas above `salient_threshold` x the map's maximum, biggest
    mass first, each grown by `salient_padding`."""
    import cv2

    h, w = saliency.shape
    top = float(saliency.max())
    if top <= 0:
        return []
    mask = (saliency >= config.salient_threshold * top).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    blobs = []
    for i in range(1, count):
        x, y, bw, bh, _area = stats[i]
        mass = float(saliency[labels == i].sum())
        px, py = bw * config.salient_padding, bh * config.salient_padding
        box = (max(0.0, x - px), max(0.0, y - py), min(float(w), x + bw + px), min(float(h), y + bh + py))
        blobs.append((mass, box))
    return [box for _, box in sorted(blobs, key=lambda b: b[0], reverse=True)]


def _score(parts: dict[str, float], config: RegionConfig) -> float:
    return (
        config.weight_confidence * parts["confidence"]
        + config.weight_mass * parts["saliency_mass"]
        + config.weight_mean * parts["saliency_mean"]
        + config.weight_centre * parts["centre"]
    )


def select_regions(
    rgb: np.ndarray,
    detections: list[Detection],
    saliency_map: np.ndarray | None,
    config: RegionConfig,
) -> list[Region]:
    """Ranked regions (ids 1..N, best first) in the pixel coordinates of `rgb`."""
    h, w = rgb.shape[:2]
    if h == 0 or w == 0:
        return []
    image_area = float(h * w)
    have_map = saliency_map is not None and saliency_map.shape[:2] == (h, w) and float(np.max(saliency_map)) > 0
    # Without a usable map every box is "average" on saliency and the ranking falls back on
    # confidence and centrality.
    sal = np.asarray(saliency_map, dtype=np.float32) if have_map else np.ones((h, w), dtype=np.float32)
    stats = _BoxStats(sal)

    candidates: list[tuple[float, Box, str, str | None, dict[str, float]]] = []

    def add(box: Box, kind: str, label: str | None, confidence: float) -> None:
        parts = {
            "confidence": float(confidence),
            "saliency_mass": stats.mass(box),
            "saliency_mean": stats.mean(box),
            "centre": centrality(box, w, h),
        }
        candidates.append((_score(parts, config), box, kind, label, parts))

    for det in detections:
        if box_area(det.box) >= config.min_area * image_area:
            add(det.box, "object", det.label, det.score)

    kept = _drop_contained(sorted(candidates, key=lambda c: c[0], reverse=True), config)

    if have_map:
        # Salient areas no kept detection explains get their own candidate.
        covered = np.zeros((h, w), dtype=bool)
        for _, (x1, y1, x2, y2), *_ in kept:
            covered[int(y1) : int(np.ceil(y2)), int(x1) : int(np.ceil(x2))] = True
        blob_candidates_before = len(candidates)
        for blob in salient_blobs(sal, config):
            if box_area(blob) < config.min_area * image_area:
                continue
            left, t, r, b = stats.pixels(blob)
            patch = sal[t:b, left:r]
            inside = float(patch[covered[t:b, left:r]].sum())
            if patch.sum() > 0 and inside / float(patch.sum()) < config.salient_covered:
                add(blob, "salient", None, config.salient_confidence)
        if len(candidates) > blob_candidates_before:
            kept = _drop_contained(sorted(kept + candidates[blob_candidates_before:], key=lambda c: c[0], reverse=True), config)

    if not kept:
        # Nothing detected and no distinct blob: the whole image is the subject.
        add((0.0, 0.0, float(w), float(h)), "salient", None, config.salient_confidence)
        kept = [candidates[-1]]

    best = kept[0][0]
    chosen = [c for c in kept if c[0] >= config.min_relative_score * best][: config.max_regions]
    return [
        Region(id=i, box=tuple(float(v) for v in box), kind=kind, label=label, score=round(score, 4),
               scores={k: round(v, 4) for k, v in parts.items()})
        for i, (score, box, kind, label, parts) in enumerate(chosen, start=1)
    ]


def _drop_contained(ranked: list, config: RegionConfig) -> list:
    """Drop each candidate whose area lies mostly inside a better-ranked kept one, or that
    mostly contains a better-ranked one of the same label (two boxes on one person: the
    detector's NMS keeps both when one is much smaller than the other)."""
    kept: list = []
    for cand in ranked:
        box, label = cand[1], cand[3]
        area = box_area(box)
        if area <= 0:
            continue
        inside_better = any(intersection(box, k[1]) / area > config.contained for k in kept)
        same_thing = label is not None and any(
            k[3] == label and intersection(box, k[1]) / max(box_area(k[1]), 1e-9) > config.contained
            for k in kept
        )
        if not (inside_better or same_thing):
            kept.append(cand)
    return kept
