"""Both offline detectors, boxes fused: where they agree the score rises, a box only one found
is kept at half its score (see lens.detect.merge.fuse)."""

from __future__ import annotations

import numpy as np

from lens.config import Settings
from lens.detect.merge import fuse, merge_duplicates
from lens.detect.openvino_ssd import OpenVinoSsdDetector
from lens.detect.ultralytics_backend import UltralyticsDetector
from lens.types import Detection


class FusionDetector:
    name = "fusion"

    def __init__(self, settings: Settings) -> None:
        self.config = settings.detect
        self.members = [UltralyticsDetector(settings), OpenVinoSsdDetector(settings)]  # the SSD as openvino-ssd runs it (same boxes as opencv-ssd)
        self.version = "fusion:" + "+".join(m.version for m in self.members)

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        fused = fuse([m.detect(rgb) for m in self.members], self.config.fusion_iou)
        return merge_duplicates(fused, self.config.merge_iou)
