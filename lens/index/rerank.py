"""Second stage of catalog search: geometric verification of the shortlist with local features.

The global descriptor (one vector per crop) finds the right kind of thing; whether it is *that*
printed carton is better told by local features: RootSIFT keypoints of the query crop matched
against each shortlisted item's reference images (Lowe's ratio test), then a RANSAC homography
counts the matches that agree on one plane (inliers). Printed packaging gives tens of inliers
with the right item and a handful with others; fruit and vegetables give a few spurious inliers
with every candidate. So only a candidate whose inlier count *stands out* earns a bonus: the
one with the most inliers, when it has at least `standout` times the runner-up's, and then for
its lead over the runner-up, never for inliers every candidate has. A fixed weight on raw
inliers lost on produce (research notes: vegetables top-1 0.61 -> 0.23); so did a bonus for
inliers above the shortlist's median (GroceryStore tuning half: vegetables 0.26 -> 0.19).

Reference images' features are computed on first use and kept per process (they are derived
from files the catalog already stores).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lens.config import RerankConfig
from lens.types import Match


@dataclass(frozen=True)
class LocalFeatures:
    points: np.ndarray  # (N, 2) float32 keypoint positions
    descriptors: np.ndarray  # (N, 128) float32 RootSIFT

    def __len__(self) -> int:
        return len(self.points)


# SIFT's smallest keypoints cover about 16 px; a thinner image cannot hold one.
MIN_SIDE_PX = 16


def root_sift(rgb: np.ndarray, max_side: int, n_features: int) -> LocalFeatures:
    """SIFT keypoints of an RGB uint8 image downscaled to max_side, with RootSIFT descriptors
    (L1-normalised, square-rooted: Hellinger instead of Euclidean distance, Arandjelovic 2012)."""
    import cv2

    none = LocalFeatures(np.zeros((0, 2), np.float32), np.zeros((0, 128), np.float32))
    # A strip thinner than SIFT's smallest patch has no keypoints (and a 20000x20 strip scaled
    # to max_side would round its short side to 0 px, which cv2.resize refuses).
    if min(rgb.shape[:2]) * max_side / max(rgb.shape[:2]) < MIN_SIDE_PX:
        return none
    gray = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    # Up as well as down: a catalog's web images and a phone photo's crops are often ~200 px,
    # where SIFT finds a hundred keypoints; at a common size both sides find comparable ones.
    scale = max_side / max(gray.shape)
    if abs(scale - 1.0) > 0.05:
        interpolation = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
        gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=interpolation)
    keypoints, descriptors = cv2.SIFT_create(nfeatures=n_features).detectAndCompute(gray, None)
    if descriptors is None or not keypoints:
        return none
    descriptors = descriptors / np.maximum(descriptors.sum(axis=1, keepdims=True), 1e-7)
    return LocalFeatures(np.float32([k.pt for k in keypoints]), np.sqrt(descriptors).astype(np.float32))


def count_inliers(query: LocalFeatures, reference: LocalFeatures, ratio: float, ransac_px: float) -> int:
    """Ratio-test matches that fit one RANSAC homography (0 when fewer than 4 matches)."""
    import cv2

    if len(query) < 4 or len(reference) < 4:
        return 0
    pairs = cv2.BFMatcher(cv2.NORM_L2).knnMatch(query.descriptors, reference.descriptors, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < ratio * p[1].distance]
    if len(good) < 4:
        return 0
    src = query.points[[m.queryIdx for m in good]].reshape(-1, 1, 2)
    dst = reference.points[[m.trainIdx for m in good]].reshape(-1, 1, 2)
    _, mask = cv2.findHomography(src, dst, cv2.RANSAC, ransac_px)
    return int(mask.sum()) if mask is not None else 0


def fuse(scores: list[float], inliers: list[int], config: RerankConfig) -> list[float]:
    """Global scores; the candidate with the most inliers gains weight x its lead over the
    runner-up (capped) when it has at least min_inliers and standout x the runner-up's count."""
    out = [float(s) for s in scores]
    if len(inliers) < 2:
        return out
    order = np.argsort(-np.asarray(inliers), kind="stable")
    best, second = int(inliers[order[0]]), int(inliers[order[1]])
    if best >= config.min_inliers and best >= config.standout * max(second, 1):
        out[int(order[0])] += config.weight * min(best - second, config.inlier_cap)
    return out


class Reranker:
    """Re-orders a crop's shortlist by geometric verification against the items' images."""

    def __init__(self, config: RerankConfig) -> None:
        self.config = config
        self._cache: dict[str, LocalFeatures] = {}
        self._lock = threading.Lock()

    def reference_features(self, path: str) -> LocalFeatures:
        with self._lock:
            found = self._cache.get(path)
        if found is None:
            from lens.image import load_image_file

            try:
                rgb = load_image_file(Path(path)).rgb
            except Exception:  # a vanished or unreadable file: no verification for it
                rgb = np.zeros((8, 8, 3), np.uint8)
            found = root_sift(rgb, self.config.max_side, self.config.features)
            with self._lock:
                self._cache[path] = found
        return found

    def inliers(self, crop: np.ndarray, image_paths: list[list[str]]) -> list[int]:
        """For each candidate (its reference images' paths), its best image's inlier count."""
        query = root_sift(crop, self.config.max_side, self.config.features)
        c = self.config
        return [max((count_inliers(query, self.reference_features(p), c.ratio, c.ransac_px) for p in paths), default=0)
                for paths in image_paths]

    def rerank(self, crop: np.ndarray, matches: list[Match], catalog) -> list[Match]:
        """The first `shortlist` matches re-scored and re-sorted; the rest follow unchanged."""
        head, tail = matches[: self.config.shortlist], matches[self.config.shortlist :]
        if len(head) < 2:
            return matches
        counts = self.inliers(crop, [catalog.image_paths(m.item_id) for m in head])
        fused = fuse([m.score for m in head], counts, self.config)
        rescored = [m.model_copy(update={"score": round(s, 4)}) for m, s in zip(head, fused, strict=True)]
        return sorted(rescored, key=lambda m: -m.score) + tail
