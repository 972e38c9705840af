"""Saliency metrics with the MIT saliency benchmark's definitions (Bylinskii et al., TPAMI 2019).

Each function takes the predicted map `sal` (any non-negative or signed float map; it is resized
to the ground truth's shape when they differ) and one ground truth:
- a fixation map (`fixmap`): non-zero where a viewer fixated, zero elsewhere (location-based
  metrics: NSS, AUC-Judd, shuffled AUC);
- a density map (`density`): fixations blurred by about one degree of visual angle
  (distribution-based metrics: CC, KLD, SIM).
Only numpy and Pillow, so that training code can import this without OpenCV or torch.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

# MATLAB's eps, as in the benchmark code: keeps KLD finite where the prediction is zero.
EPS = 2.2204e-16


def _as_float(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


def match_shape(sal: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """`sal` resized (bilinear) to `shape` (H, W) when it differs, as the benchmark does."""
    sal = np.asarray(sal, dtype=np.float32)
    if sal.shape[:2] == tuple(shape):
        return sal.astype(np.float64)
    resized = Image.fromarray(sal, mode="F").resize((shape[1], shape[0]), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.float64)


def normalize_range(a: np.ndarray) -> np.ndarray:
    """Rescale to [0, 1]; a constant map becomes all zeros."""
    a = _as_float(a)
    lo, hi = a.min(), a.max()
    return np.zeros_like(a) if hi <= lo else (a - lo) / (hi - lo)


def _zscore(a: np.ndarray) -> np.ndarray:
    a = _as_float(a)
    std = a.std()
    return a - a.mean() if std == 0 else (a - a.mean()) / std


def nss(sal: np.ndarray, fixmap: np.ndarray) -> float:
    """Normalized scanpath saliency: mean of the z-scored map at fixated pixels (chance = 0)."""
    fix = np.asarray(fixmap) > 0
    if not fix.any():
        return float("nan")
    return float(_zscore(match_shape(sal, fix.shape))[fix].mean())


def cc(sal: np.ndarray, density: np.ndarray) -> float:
    """Pearson correlation between the map and the fixation density (chance = 0, best = 1)."""
    a = _zscore(match_shape(sal, np.shape(density)))
    b = _zscore(density)
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom > 0 else float("nan")


def kld(sal: np.ndarray, density: np.ndarray) -> float:
    """KL divergence of the prediction from the density, both as distributions (lower is better)."""
    p = match_shape(sal, np.shape(density))
    q = _as_float(density)
    p = p / p.sum() if p.sum() > 0 else p
    q = q / q.sum() if q.sum() > 0 else q
    return float((q * np.log(EPS + q / (p + EPS))).sum())


def sim(sal: np.ndarray, density: np.ndarray) -> float:
    """Histogram intersection of the two maps as distributions (best = 1)."""
    p = normalize_range(match_shape(sal, np.shape(density)))
    q = normalize_range(density)
    p = p / p.sum() if p.sum() > 0 else p
    q = q / q.sum() if q.sum() > 0 else q
    return float(np.minimum(p, q).sum())


def auc_judd(sal: np.ndarray, fixmap: np.ndarray, jitter: bool = True, seed: int = 0) -> float:
    """AUC-Judd: thresholds at the map's value at each fixation; false positives = all other pixels.

    `jitter` adds a tiny deterministic noise (1e-7, as the benchmark does with rand) so that flat
    regions of the map do not tie.
    """
    fix = np.asarray(fixmap) > 0
    if not fix.any():
        return float("nan")
    s = match_shape(sal, fix.shape)
    if jitter:
        s = s + np.random.default_rng(seed).random(s.shape) / 1e7
    s = normalize_range(s).ravel()
    fix = fix.ravel()
    fix_values = np.sort(s[fix])[::-1]
    n_fix, n_pixels = fix_values.size, s.size
    # Pixels above each threshold, counted with one sort instead of one pass per threshold.
    sorted_all = np.sort(s)
    above = n_pixels - np.searchsorted(sorted_all, fix_values, side="left")
    tp = np.concatenate([[0.0], np.arange(1, n_fix + 1) / n_fix, [1.0]])
    fp = np.concatenate([[0.0], (above - np.arange(1, n_fix + 1)) / (n_pixels - n_fix), [1.0]])
    return float(np.trapezoid(tp, fp))


def auc_shuffled(
    sal: np.ndarray,
    fixmap: np.ndarray,
    other_fixmap: np.ndarray,
    n_splits: int = 100,
    step: float = 0.1,
    seed: int = 0,
) -> float:
    """Shuffled AUC: negatives are fixations from other images, so a centre bias earns nothing.

    `other_fixmap` is non-zero at the fixations of other images (same shape as `fixmap`). As in
    the benchmark, each split samples as many negatives as there are fixations and sweeps
    thresholds in steps of `step` over the [0, 1]-normalised map; the result is the mean.
    """
    fix = np.asarray(fixmap) > 0
    if not fix.any():
        return float("nan")
    s = normalize_range(match_shape(sal, fix.shape)).ravel()
    positives = s[fix.ravel()]
    candidates = np.flatnonzero(np.asarray(other_fixmap).ravel() > 0)
    if candidates.size == 0:
        return float("nan")
    n_neg = min(positives.size, candidates.size)
    rng = np.random.default_rng(seed)
    scores = []
    for _ in range(n_splits):
        negatives = s[rng.choice(candidates, size=n_neg, replace=False)]
        top = max(positives.max(), negatives.max())
        thresholds = np.arange(0.0, top + 1e-12, step)[::-1]
        tp = np.concatenate([[0.0], [(positives >= t).mean() for t in thresholds], [1.0]])
        fp = np.concatenate([[0.0], [(negatives >= t).mean() for t in thresholds], [1.0]])
        scores.append(np.trapezoid(tp, fp))
    return float(np.mean(scores))


ALL_METRICS = ("NSS", "CC", "AUC-Judd", "sAUC", "KLD", "SIM")


def evaluate(
    sal: np.ndarray, fixmap: np.ndarray, density: np.ndarray, other_fixmap: np.ndarray | None = None
) -> dict[str, float]:
    """All six metrics for one map (sAUC only when `other_fixmap` is given)."""
    scores = {
        "NSS": nss(sal, fixmap),
        "CC": cc(sal, density),
        "AUC-Judd": auc_judd(sal, fixmap),
        "KLD": kld(sal, density),
        "SIM": sim(sal, density),
    }
    if other_fixmap is not None:
        scores["sAUC"] = auc_shuffled(sal, fixmap, other_fixmap)
    return scores
