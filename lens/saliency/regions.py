"""Choose the few regions a person would want to ask about: the dots.

Candidates come from three sources, because each misses what the others find:
- the detector's boxes (things it has a class for);
- colour segments of a downscaled copy at a few scales (Felzenszwalb graph segmentation): tight
  boxes around things with a boundary, whatever their class (a lotus, a lamp, a toy);
- blobs of the saliency map at a few thresholds, both of the whole map and of each local peak
  (a peak off-centre is weaker than a central one once the map carries a centre prior).
Each candidate is scored by
    w_conf * confidence + w_mass * saliency mass + w_mean * saliency mean
    + w_centre * centrality + w_contrast * colour contrast with its surround
    + w_saliency_contrast * the map's contrast with the same surround
    + w_size * sqrt(area share)
(colour contrast is a classic objectness cue: an object's colours differ from those just around
it; the main subjects of a photo are its big things).
Small boxes cut by the photo's edge are left out. Then, best first, near-duplicates (IoU) and
parts of a better detection are dropped, a confident detection replaces better-ranked parts of
it, a dot too close to a better one is dropped, and the top K within a fraction of the best
are kept. Every threshold lives in RegionConfig with its reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from lens.config import RegionConfig
from lens.geometry import box_area, intersection, iou
from lens.types import Box, Detection, Region

# Colour quantisation for the contrast cue: 4 levels per channel, 64 bins, coarse enough that
# texture inside one object falls into few bins.
_COLOUR_LEVELS = 4


def _integral(m: np.ndarray, dtype=np.float64) -> np.ndarray:
    """Summed-area table with a zero first row/column; works on (H, W) and (H, W, C)."""
    out = np.zeros((m.shape[0] + 1, m.shape[1] + 1, *m.shape[2:]), dtype=dtype)
    np.cumsum(m, axis=0, dtype=dtype, out=out[1:, 1:])
    np.cumsum(out[1:, 1:], axis=1, out=out[1:, 1:])
    return out


def _clip_box(box: Box, w: int, h: int) -> tuple[int, int, int, int]:
    """Integer pixel bounds of `box` inside a w x h grid, at least one pixel wide."""
    x1, y1, x2, y2 = box
    left = min(max(math.floor(x1), 0), w - 1)
    top = min(max(math.floor(y1), 0), h - 1)
    right = min(max(math.ceil(x2), left + 1), w)
    bottom = min(max(math.ceil(y2), top + 1), h)
    return left, top, right, bottom


def _box_sum(integral: np.ndarray, bounds: tuple[int, int, int, int]):
    left, t, r, b = bounds
    return integral[b, r] - integral[t, r] - integral[b, left] + integral[t, left]


class _BoxStats:
    """Sums of the saliency map over boxes in O(1) each, via an integral image of a copy of at
    most `side` px (means and shares barely change; the full-size table costs ~10 ms)."""

    def __init__(self, saliency: np.ndarray, side: int = 256) -> None:
        import cv2

        h, w = saliency.shape
        self.scale = min(1.0, side / max(h, w))
        if self.scale < 1:
            size = (max(1, round(w * self.scale)), max(1, round(h * self.scale)))
            saliency = cv2.resize(saliency, size, interpolation=cv2.INTER_AREA)
        self.h, self.w = saliency.shape
        self.integral = _integral(saliency)
        self.total = float(self.integral[-1, -1])
        self.peak = float(saliency.max()) if saliency.size else 0.0

    def pixels(self, box: Box) -> tuple[int, int, int, int]:
        return _clip_box(tuple(v * self.scale for v in box), self.w, self.h)

    def sum(self, box: Box) -> float:
        return float(_box_sum(self.integral, self.pixels(box)))

    def mass(self, box: Box) -> float:
        """Share of the whole map's saliency inside the box."""
        return self.sum(box) / self.total if self.total > 0 else 0.0

    def mean(self, box: Box) -> float:
        """Mean of the map inside the box, relative to the map's maximum (1 = all peak)."""
        left, t, r, b = self.pixels(box)
        inside = self.sum(box) / max(1, (r - left) * (b - t))
        return inside / self.peak if self.peak > 0 else 0.0

    def contrast(self, box: Box, ring: float) -> float:
        """(inside - around) / (inside + around) of the map's means over the box and a ring
        around it, in [-1, 1]. A ratio, so a smooth factor on the map (its centre prior) nearly
        cancels: an off-centre object that stands out from its surroundings still scores."""
        x1, y1, x2, y2 = box
        gx, gy = (x2 - x1) * ring, (y2 - y1) * ring
        inner = self.pixels(box)
        outer = self.pixels((x1 - gx, y1 - gy, x2 + gx, y2 + gy))
        area_in = (inner[2] - inner[0]) * (inner[3] - inner[1])
        area_around = (outer[2] - outer[0]) * (outer[3] - outer[1]) - area_in
        if area_around < 0.1 * area_in:
            return 0.0
        sum_in = float(_box_sum(self.integral, inner))
        mean_in = sum_in / area_in
        mean_around = (float(_box_sum(self.integral, outer)) - sum_in) / area_around
        total = mean_in + mean_around
        return (mean_in - mean_around) / total if total > 0 else 0.0


class _ColourContrast:
    """Chi-squared distance between a box's colour histogram and that of a ring around it,
    in O(bins) per box via an integral histogram of a downscaled, colour-quantised copy."""

    def __init__(self, small_rgb: np.ndarray, scale: float, ring: float) -> None:
        self.h, self.w = small_rgb.shape[:2]
        self.scale, self.ring = scale, ring
        step = 256 // _COLOUR_LEVELS
        q = (small_rgb // step).astype(np.int32)
        codes = (q[..., 0] * _COLOUR_LEVELS + q[..., 1]) * _COLOUR_LEVELS + q[..., 2]
        onehot = np.zeros((self.h, self.w, _COLOUR_LEVELS**3), dtype=np.int32)
        onehot[np.arange(self.h)[:, None], np.arange(self.w)[None, :], codes] = 1
        self.integral = _integral(onehot, np.int32)

    def __call__(self, box: Box) -> float:
        s = self.scale
        x1, y1, x2, y2 = (v * s for v in box)
        gx, gy = (x2 - x1) * self.ring, (y2 - y1) * self.ring
        inner = _clip_box((x1, y1, x2, y2), self.w, self.h)
        outer = _clip_box((x1 - gx, y1 - gy, x2 + gx, y2 + gy), self.w, self.h)
        inside = _box_sum(self.integral, inner)
        around = _box_sum(self.integral, outer) - inside
        n_in, n_around = int(inside.sum()), int(around.sum())
        # A box with (almost) no surround, e.g. the whole image, cannot stand out from it.
        if n_in <= 0 or n_around < 0.1 * n_in:
            return 0.0
        p, q = inside / np.float32(n_in), around / np.float32(n_around)
        denom = p + q
        mask = denom > 0
        return float(0.5 * np.sum((p[mask] - q[mask]) ** 2 / denom[mask]))


def centrality(box: Box, width: int, height: int) -> float:
    """1 at the image centre, 0 at a corner (distance normalised by the half-diagonal)."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    dx, dy = (cx - width / 2) / (width / 2), (cy - height / 2) / (height / 2)
    return float(max(0.0, 1.0 - np.hypot(dx, dy) / np.sqrt(2)))


def _padded(x: float, y: float, bw: float, bh: float, pad: float, w: int, h: int) -> Box:
    px, py = bw * pad, bh * pad
    return (max(0.0, x - px), max(0.0, y - py), min(float(w), x + bw + px), min(float(h), y + bh + py))


def salient_blobs(saliency: np.ndarray, config: RegionConfig) -> list[Box]:
    """Boxes around salient areas, each grown by `salient_padding`: connected areas above each
    of `salient_thresholds` x the map's maximum, and around each of the strongest local peaks
    the area above `peak_fraction` x that peak's own value (an off-centre object's peak is
    lower than a central one's once the map carries a centre prior)."""
    import cv2

    h, w = saliency.shape
    top = float(saliency.max())
    if top <= 0:
        return []
    # On a copy of at most 128 px: the map is blurred to object-sized blobs anyway, and
    # connected components on the full-size map cost ~5 ms per threshold.
    f = min(1.0, 128 / max(h, w))
    small = cv2.resize(saliency, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
    fx, fy = small.shape[1] / w, small.shape[0] / h
    top = float(small.max())

    def blob_box(stat: np.ndarray) -> Box:
        x, y, bw, bh = (float(v) for v in stat[:4])
        return _padded(x / fx, y / fy, bw / fx, bh / fy, config.salient_padding, w, h)

    boxes: list[Box] = []
    for threshold in config.salient_thresholds:
        mask = (small >= threshold * top).astype(np.uint8)
        count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        boxes += [blob_box(stats[i]) for i in range(1, count)]
    if config.max_peaks > 0:
        # Local maxima within ~1/10 of the image, strongest first.
        size = max(3, int(round(max(small.shape) / 10)) | 1)
        local_max = cv2.dilate(small, np.ones((size, size), np.uint8))
        ys, xs = np.nonzero((small >= local_max) & (small >= config.peak_floor * top))
        order = np.argsort(-small[ys, xs])[: config.max_peaks]
        for y, x in zip(ys[order], xs[order], strict=True):
            mask = (small >= config.peak_fraction * float(small[y, x])).astype(np.uint8)
            _, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
            boxes.append(blob_box(stats[labels[y, x]]))
    return boxes


def dithered(rgb: np.ndarray, seed: int) -> np.ndarray:
    """`rgb` with a fixed pseudo-random -1/0/+1 grey level added to every value: the size of the
    rounding differences between two downscales of one photo."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(-1, 2, size=rgb.shape, dtype=np.int16)
    return np.clip(rgb.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def segment_boxes(small_rgb: np.ndarray, scale: float, config: RegionConfig) -> list[Box]:
    """The boxes of `_segment_boxes` that are stable: found again, at IoU >= segment_stable_iou,
    in the segments of each of `segment_dithers` dithered copies. Felzenszwalb's greedy merging
    can turn a one-grey-level change into a different segment, and a camera photo's work copy
    differs from a 1024 px copy made by another resampler by that much; a dot should not hang
    on it."""
    boxes = _segment_boxes(small_rgb, scale, config)
    for seed in range(config.segment_dithers):
        others = _segment_boxes(dithered(small_rgb, seed), scale, config)
        boxes = [b for b in boxes if any(iou(b, o) >= config.segment_stable_iou for o in others)]
    return boxes


def _segment_boxes(small_rgb: np.ndarray, scale: float, config: RegionConfig) -> list[Box]:
    """Bounding boxes (full-image pixels) of colour segments of the downscaled copy, at each of
    `segment_scales`; segments that are too big (background: sky, wall, floor) or fill too
    little of their box (a thin or sprawling region is rarely one object) are left out."""
    import cv2

    sh, sw = small_rgb.shape[:2]
    if min(sh, sw) < 8:
        return []
    bgr = np.ascontiguousarray(small_rgb[:, :, ::-1])
    min_size = max(4, int(config.min_area * sh * sw))
    ys, xs = np.indices((sh, sw))
    boxes: list[Box] = []
    for k in config.segment_scales:
        segmenter = cv2.ximgproc.segmentation.createGraphSegmentation(sigma=0.8, k=float(k), min_size=min_size)
        labels = segmenter.processImage(bgr).ravel()
        n = int(labels.max()) + 1
        counts = np.bincount(labels, minlength=n)
        x0, y0 = np.full(n, sw), np.full(n, sh)
        x1, y1 = np.zeros(n, int), np.zeros(n, int)
        np.minimum.at(x0, labels, xs.ravel())
        np.minimum.at(y0, labels, ys.ravel())
        np.maximum.at(x1, labels, xs.ravel() + 1)
        np.maximum.at(y1, labels, ys.ravel() + 1)
        box_px = (x1 - x0) * (y1 - y0)
        for i in range(n):
            share = box_px[i] / (sh * sw)
            if counts[i] == 0 or share > config.salient_max_area or counts[i] < config.segment_min_fill * box_px[i]:
                continue
            boxes.append((x0[i] / scale, y0[i] / scale, x1[i] / scale, y1[i] / scale))
    return boxes


@dataclass
class _Candidate:
    box: Box
    kind: str
    label: str | None
    parts: dict[str, float]
    score: float = 0.0
    detected: bool = field(default=False)
    # The whole image, used only when no other candidate survives.
    fallback: bool = field(default=False)
    # Where it came from: "detection", "segment", "blob" or "whole".
    source: str = "detection"


def _touched_sides(box: Box, w: int, h: int) -> int:
    """How many image sides the box reaches (within 1% of the longest side)."""
    x1, y1, x2, y2 = box
    margin = 0.01 * max(w, h)
    return int(x1 <= margin) + int(y1 <= margin) + int(x2 >= w - margin) + int(y2 >= h - margin)


def _cut_by_edge(box: Box, w: int, h: int, config: RegionConfig) -> bool:
    """A small box at the photo's edge is most often a part cut off by the frame (a head, a
    pole, the end of a sign), not what the photo is of."""
    return _touched_sides(box, w, h) > 0 and box_area(box) < config.edge_min_area * w * h


def _object_shaped(box: Box, w: int, h: int, config: RegionConfig) -> bool:
    """Whether a box without a detection could be one object: not most of the image, not a
    thin strip, not touching several image sides (sky, sea, road and wall bands do)."""
    x1, y1, x2, y2 = box
    bw, bh = x2 - x1, y2 - y1
    if bw <= 0 or bh <= 0 or bw * bh > config.salient_max_area * w * h:
        return False
    if max(bw / bh, bh / bw) > config.max_aspect:
        return False
    return _touched_sides(box, w, h) <= config.max_border_sides


def _score(parts: dict[str, float], config: RegionConfig) -> float:
    return (
        config.weight_confidence * parts["confidence"]
        + config.weight_mass * parts["saliency_mass"]
        + config.weight_mean * parts["saliency_mean"]
        + config.weight_centre * parts["centre"]
        + config.weight_contrast * parts["contrast"]
        + config.weight_saliency_contrast * parts["saliency_contrast"]
        + config.weight_size * parts["size"]
    )


def _segment_copy(rgb: np.ndarray, config: RegionConfig) -> tuple[np.ndarray, float]:
    """The copy segments are found in (longest side segment_side), and its x scale factor."""
    import cv2

    h, w = rgb.shape[:2]
    scale = min(1.0, config.segment_side / max(h, w))
    small = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA) if scale < 1 else rgb
    return np.asarray(small), small.shape[1] / w  # exact per-axis factor after rounding


def _is_uniform(small: np.ndarray) -> bool:
    return float(np.asarray(small, dtype=np.float32).std()) < 1.0


def image_segments(rgb: np.ndarray, config: RegionConfig) -> list[Box]:
    """The stable colour segments' boxes of `rgb` (pixels of `rgb`): the part of the candidates
    that needs only the image, so it can run beside detection and saliency."""
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        return []
    small, scale_x = _segment_copy(rgb, config)
    # A featureless image has no object: the whole-image fallback answers it.
    return [] if _is_uniform(small) else segment_boxes(small, scale_x, config)


def candidates(
    rgb: np.ndarray,
    detections: list[Detection],
    saliency_map: np.ndarray | None,
    config: RegionConfig,
    segments: list[Box] | None = None,
) -> list[_Candidate]:
    """Every candidate box with the parts of its score (not yet ranked or de-duplicated).
    `segments`: image_segments(rgb, config) when computed already (beside detection)."""
    h, w = rgb.shape[:2]
    image_area = float(h * w)
    have_map = saliency_map is not None and saliency_map.shape[:2] == (h, w) and float(np.max(saliency_map)) > 0
    # Without a usable map every box is "average" on saliency and the ranking falls back on
    # confidence, contrast and centrality.
    sal = np.asarray(saliency_map, dtype=np.float32) if have_map else np.ones((h, w), dtype=np.float32)
    stats = _BoxStats(sal)
    small, scale_x = _segment_copy(rgb, config)
    contrast = _ColourContrast(small, scale_x, config.contrast_ring)
    uniform = _is_uniform(small)

    found: list[_Candidate] = []

    def add(box: Box, kind: str, label: str | None, confidence: float, source: str) -> None:
        detected, fallback = source == "detection", source == "whole"
        if not fallback and (
            box_area(box) < config.min_area * image_area
            or _cut_by_edge(box, w, h, config)
            or not (detected or _object_shaped(box, w, h, config))
        ):
            return
        parts = {
            "confidence": float(confidence),
            "saliency_mass": stats.mass(box),
            "saliency_mean": stats.mean(box),
            "centre": centrality(box, w, h),
            "contrast": contrast(box),
            "saliency_contrast": stats.contrast(box, config.contrast_ring),
            "size": math.sqrt(box_area(box) / image_area),
        }
        found.append(_Candidate(box, kind, label, parts, _score(parts, config), detected, fallback, source))

    for det in detections:
        add(det.box, "object", det.label, det.score, "detection")
    # A featureless image has no object: its map is at most the centre prior, whose blobs
    # would be nested rings around the middle; the whole-image fallback answers it.
    if segments is None:
        segments = [] if uniform else segment_boxes(small, scale_x, config)
    for box in segments:
        add(box, "salient", None, config.salient_confidence, "segment")
    if have_map and not uniform:
        for box in salient_blobs(sal, config):
            add(box, "salient", None, config.salient_confidence, "blob")

    add((0.0, 0.0, float(w), float(h)), "salient", None, config.salient_confidence, "whole")
    return found


def select_regions(
    rgb: np.ndarray,
    detections: list[Detection],
    saliency_map: np.ndarray | None,
    config: RegionConfig,
    segments: list[Box] | None = None,
) -> list[Region]:
    """Ranked regions (ids 1..N, best first) in the pixel coordinates of `rgb`; `segments` as
    for `candidates`."""
    h, w = rgb.shape[:2]
    if h == 0 or w == 0:
        return []
    return choose(candidates(rgb, detections, saliency_map, config, segments), config, w, h)


def choose(pool: list[_Candidate], config: RegionConfig, width: int, height: int) -> list[Region]:
    """Rank the candidates, drop duplicates, parts and crowded ones, keep the top K near the best."""
    for c in pool:
        c.score = _score(c.parts, config)
    ranked = sorted((c for c in pool if not c.fallback), key=lambda c: c.score, reverse=True)
    min_gap = config.min_dot_distance * math.hypot(width, height)
    # Nothing detected and nothing distinct: the whole image is the subject.
    kept = _deduplicate(ranked, config, min_gap) or [c for c in pool if c.fallback][:1]

    best = kept[0].score
    chosen = [c for c in kept if c.score >= config.min_relative_score * best][: config.max_regions]
    chosen = _keep_confident_detections(chosen, kept, config)
    return [
        Region(id=i, box=tuple(float(v) for v in c.box), kind=c.kind, label=c.label, score=round(c.score, 4),
               scores={k: round(v, 4) for k, v in c.parts.items()})
        for i, c in enumerate(chosen, start=1)
    ]


def _keep_confident_detections(
    chosen: list[_Candidate], kept: list[_Candidate], config: RegionConfig
) -> list[_Candidate]:
    """Swap the weakest undetected boxes in `chosen` for confident detections left out of it,
    never the first dot (swapping it moved the first dot off what people look at on OSIE)."""
    missing = [
        c for c in kept
        if c.detected and c.parts["confidence"] >= config.detection_keep_confidence and c not in chosen
    ]
    if not missing:
        return chosen
    chosen = list(chosen)
    for detection in missing:
        if len(chosen) < config.max_regions:
            chosen.append(detection)
            continue
        undetected = [c for c in chosen[1:] if not c.detected]
        if not undetected:
            break
        chosen.remove(min(undetected, key=lambda c: c.score))
        chosen.append(detection)
    return sorted(chosen, key=lambda c: c.score, reverse=True)


def _centre(box: Box) -> tuple[float, float]:
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


def _too_close(a: Box, b: Box, min_gap: float) -> bool:
    (ax, ay), (bx, by) = _centre(a), _centre(b)
    return math.hypot(ax - bx, ay - by) < min_gap


def _deduplicate(ranked: list[_Candidate], config: RegionConfig, min_gap: float) -> list[_Candidate]:
    """Best first, drop a candidate that
    - overlaps a kept one by more than `duplicate_iou` (the same thing found twice; two
      detections only above `detection_duplicate_iou`: people on a bench are two things),
    - is undetected and lies mostly inside a kept detection (a face blob or a shirt segment in
      a person; a detection inside another one is a thing of its own: a cat on a bed),
    - is a detection mostly inside, or mostly containing, a kept one of its own label (two boxes
      on one person: NMS keeps both when one is much smaller than the other), or
    - has its centre within `min_gap` px of a kept one's (two dots a finger cannot tell apart).
    A confident detection that mostly contains better-ranked undetected boxes is the whole they
    are parts of (a shirt segment, a face blob): it takes the place of the first of them and the
    others go. A segment inside a kept segment or blob stays: a small object on a table is not
    part of it. No two kept candidates are closer than `min_gap`."""
    kept: list[_Candidate] = []
    for cand in ranked:
        area = box_area(cand.box)
        if area <= 0:
            continue
        if cand.detected and cand.parts["confidence"] >= config.whole_min_confidence:
            parts = [k for k in kept if not k.detected
                     and intersection(cand.box, k.box) / max(box_area(k.box), 1e-9) > config.contained]
            if parts:
                others = [k for k in kept if k not in parts]
                if not any(iou(cand.box, k.box) > config.duplicate_iou or _too_close(cand.box, k.box, min_gap)
                           for k in others):
                    at = kept.index(parts[0])
                    cand.score = max(cand.score, parts[0].score)  # the whole ranks where its best part did
                    kept = [k for k in kept[:at] if k not in parts] + [cand] + [k for k in kept[at:] if k not in parts]
                continue
        duplicate = any(
            iou(cand.box, k.box) > (config.detection_duplicate_iou if cand.detected and k.detected else config.duplicate_iou)
            for k in kept
        )
        inside_detection = not cand.detected and any(
            k.detected and intersection(cand.box, k.box) / area > config.contained for k in kept
        )
        same_thing = cand.label is not None and any(
            k.label == cand.label
            and intersection(cand.box, k.box) / min(area, max(box_area(k.box), 1e-9)) > config.contained
            for k in kept
        )
        crowded = any(_too_close(cand.box, k.box, min_gap) for k in kept)
        if not (duplicate or inside_detection or same_thing or crowded):
            kept.append(cand)
        if len(kept) >= 4 * config.max_regions:
            break
    return kept
