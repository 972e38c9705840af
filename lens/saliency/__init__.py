"""Saliency maps and the choice of regions a person would want to ask about."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from lens.config import RegionConfig, Settings
from lens.registry import load_backend
from lens.types import Box, Detection, Region

BACKENDS = {
    "spectral-residual": "lens.saliency.spectral:SpectralResidualSaliency",
    "learned": "lens.saliency.learned:LearnedSaliency",
}


class Saliency(Protocol):
    name: str
    version: str

    def map(self, rgb: np.ndarray) -> np.ndarray:
        """A float32 map in [0, 1] with the same height and width as `rgb`."""
        ...


def select_regions(
    rgb: np.ndarray,
    detections: list[Detection],
    saliency_map: np.ndarray | None,
    config: RegionConfig,
    segments: list[Box] | None = None,
) -> list[Region]:
    """Ranked regions, ids 1..N; see lens.saliency.regions (imported on first use: it needs OpenCV).
    `segments`: image_segments(rgb, config), when computed beforehand (beside detection)."""
    from lens.saliency.regions import select_regions as _select

    return _select(rgb, detections, saliency_map, config, segments)


def image_segments(rgb: np.ndarray, config: RegionConfig) -> list[Box]:
    """The candidates' part that needs only the image; see lens.saliency.regions.image_segments."""
    from lens.saliency.regions import image_segments as _segments

    return _segments(rgb, config)


def create_saliency(settings: Settings) -> Saliency:
    return load_backend("saliency", settings.saliency.backend, BACKENDS)(settings)
