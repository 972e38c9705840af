"""Saliency maps and the choice of regions a person would want to ask about."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from lens.config import Settings
from lens.registry import load_backend

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


def create_saliency(settings: Settings) -> Saliency:
    return load_backend("saliency", settings.saliency.backend, BACKENDS)(settings)
