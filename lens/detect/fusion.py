"""Both offline detectors, boxes fused: where they agree the score rises, a box only one found
is kept at half its score (see lens.detect.merge.fuse)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import Field

from lens.config import Settings
from lens.detect.merge import fuse, merge_duplicates
from lens.detect.openvino_ssd import OpenVinoSsdDetector
from lens.detect.ultralytics_backend import UltralyticsDetector, UltralyticsOptions
from lens.registry import backend_model_files
from lens.types import Detection


class FusionOptions(UltralyticsOptions):
    # Boxes of the two detectors with IoU above this are the same object.
    fusion_iou: float = Field(0.55, ge=0.0, le=1.0)


class FusionDetector:
    name = "fusion"
    Options = FusionOptions

    @staticmethod
    def model_files(settings: Settings) -> list[Path]:
        return [path for member in (UltralyticsDetector, OpenVinoSsdDetector)
                for path in backend_model_files("detect", member, settings)]

    def __init__(self, settings: Settings) -> None:
        self.config = settings.detect
        self.options = FusionOptions.parse(settings.detect.options)
        yolo = UltralyticsDetector(settings, UltralyticsOptions(image_size=self.options.image_size))
        # The SSD as openvino-ssd runs it (the same boxes as opencv-ssd, in ~0.6x the time).
        self.members = [yolo, OpenVinoSsdDetector(settings)]
        self.version = "fusion:" + "+".join(m.version for m in self.members)

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        fused = fuse([m.detect(rgb) for m in self.members], self.options.fusion_iou)
        return merge_duplicates(fused, self.config.merge_iou)
