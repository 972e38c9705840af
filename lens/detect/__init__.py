"""Object detection: photo -> boxes with COCO labels."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from lens.config import Settings
from lens.registry import load_backend
from lens.types import Detection

BACKENDS = {
    "ultralytics": "lens.detect.ultralytics_backend:UltralyticsDetector",
    "opencv-ssd": "lens.detect.opencv_ssd:OpenCvSsdDetector",
    "openvino-ssd": "lens.detect.openvino_ssd:OpenVinoSsdDetector",
    "fusion": "lens.detect.fusion:FusionDetector",
}


class Detector(Protocol):
    name: str
    version: str

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        """Boxes in the pixel coordinates of `rgb` (H x W x 3 uint8)."""
        ...


def create_detector(settings: Settings) -> Detector:
    return load_backend("detect", settings.detect.backend, BACKENDS)(settings)
