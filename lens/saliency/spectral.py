"""Spectral residual saliency (Hou & Zhang, CVPR 2007) from OpenCV contrib, blurred, times a
centre prior. No weights; a few milliseconds per photo."""

from __future__ import annotations

import numpy as np

from lens.config import SaliencyConfig, Settings


def centre_prior(shape: tuple[int, int], sigma: float) -> np.ndarray:
    """A float32 Gaussian bump at the image centre, 1 at the peak; sigma is a fraction of W/H."""
    h, w = shape
    ys = (np.arange(h, dtype=np.float32) + 0.5 - h / 2) / max(h * sigma, 1e-6)
    xs = (np.arange(w, dtype=np.float32) + 0.5 - w / 2) / max(w * sigma, 1e-6)
    return np.exp(-0.5 * (ys[:, None] ** 2 + xs[None, :] ** 2)).astype(np.float32)


# The map is blurred on a copy of at most this longest side, then stretched to the photo's
# size: it comes from a 64 px thumbnail and the blur is 3% of the photo, so nothing finer is
# lost, while the blur on the full-size map cost ~250 ms at 1024 px (~900 ms at 1600).
MAP_SIDE = 256


def spectral_residual(rgb: np.ndarray, blur_sigma: float = 0.0) -> np.ndarray:
    """OpenCV's spectral residual map at the image's size, optionally blurred, scaled to [0, 1]."""
    import cv2

    h, w = rgb.shape[:2]
    # A featureless image (less than one grey level of spread) has nothing salient; the FFT of a
    # constant image yields rounding noise that min-max scaling would blow up into fake peaks.
    if h < 2 or w < 2 or float(np.asarray(rgb, dtype=np.float32).std()) < 1.0:
        return np.zeros((h, w), dtype=np.float32)
    detector = cv2.saliency.StaticSaliencySpectralResidual_create()
    ok, raw = detector.computeSaliency(np.ascontiguousarray(rgb[:, :, ::-1]))
    if not ok or raw is None:
        return np.zeros((h, w), dtype=np.float32)
    sal = np.nan_to_num(np.asarray(raw, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    if sal.shape != (h, w):
        sal = cv2.resize(sal, (w, h), interpolation=cv2.INTER_LINEAR)
    if blur_sigma > 0:
        # OpenCV's thumbnail is still taken from the full image; only the blur runs small.
        small = sal
        if max(h, w) > MAP_SIDE:
            f = MAP_SIDE / max(h, w)
            small = cv2.resize(sal, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
        sigma = blur_sigma * max(small.shape)
        small = cv2.GaussianBlur(small, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REPLICATE)
        sal = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR) if small.shape != (h, w) else small
    return _unit(sal)


def _unit(a: np.ndarray) -> np.ndarray:
    lo, hi = float(a.min()), float(a.max())
    if hi - lo <= 1e-12:
        return np.zeros_like(a, dtype=np.float32)
    return ((a - lo) / (hi - lo)).astype(np.float32)


def combined_map(rgb: np.ndarray, config: SaliencyConfig) -> np.ndarray:
    """spectral residual x centre prior ** weight, in [0, 1]; a featureless image gives the prior."""
    h, w = rgb.shape[:2]
    sal = spectral_residual(rgb, config.blur_sigma)
    if config.centre_weight <= 0:
        return sal
    prior = centre_prior((h, w), config.centre_sigma) ** config.centre_weight
    if not sal.any():
        return _unit(prior) if h > 1 or w > 1 else np.ones((h, w), dtype=np.float32)
    return _unit(sal * prior)


class SpectralResidualSaliency:
    name = "spectral-residual"
    models = ()  # computed, no file

    def __init__(self, settings: Settings) -> None:
        self.config = settings.saliency
        c = self.config
        self.version = f"spectral-residual:blur{c.blur_sigma}:centre{c.centre_sigma}^{c.centre_weight}"

    def map(self, rgb: np.ndarray) -> np.ndarray:
        return combined_map(rgb, self.config)
