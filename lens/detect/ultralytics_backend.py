"""Any YOLO file ultralytics loads (.pt, .onnx); default: the prepared YOLOv3-tiny ONNX.

An ONNX file in ultralytics' export layout runs with onnxruntime directly (lens.detect.yolo_onnx:
the same boxes, without the ultralytics predictor); anything else goes through ultralytics.

Ultralytics downloads fonts, weights and pip packages on demand; here nothing may be fetched, so
its environment is fixed before it is first imported (it reads these variables at import time).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
from pydantic import Field

from lens.config import Settings
from lens.detect.merge import merge_duplicates
from lens.detect.yolo_onnx import YoloOnnx
from lens.errors import ModelMissingError
from lens.geometry import clip_box
from lens.models import require
from lens.registry import BackendOptions
from lens.types import Detection

DEFAULT_MODEL = "yolov3-tiny-coco"
FALLBACK_IMAGE_SIZE = 640  # ultralytics' own default, for a model whose metadata names none


def configure_ultralytics_environment(settings: Settings) -> None:
    """Offline, no auto-install, settings written under our data dir (not ~/.config)."""
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_AUTOINSTALL"] = "False"
    config_dir = settings.data_dir / "ultralytics"
    config_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("YOLO_CONFIG_DIR", str(config_dir))
    os.environ.setdefault("YOLO_VERBOSE", "False")
    import sys

    utils = sys.modules.get("ultralytics.utils")
    if utils is not None:  # imported earlier by someone else: switch the flags it already read
        utils.AUTOINSTALL = False
        utils.ONLINE = False


class UltralyticsOptions(BackendOptions):
    # Network input size (longest side); empty = the model's own size from its metadata (416
    # for YOLOv3-tiny, which was trained at 416; 640 for yolo11n).
    image_size: int | None = Field(None, ge=32)


class UltralyticsDetector:
    name = "ultralytics"
    Options = UltralyticsOptions
    models = (DEFAULT_MODEL,)  # or detect.model_path

    def __init__(self, settings: Settings, options: UltralyticsOptions | None = None) -> None:
        self.config = settings.detect
        self.options = options or UltralyticsOptions.parse(settings.detect.options)
        path = Path(self.config.model_path) if self.config.model_path else require(DEFAULT_MODEL, settings)
        if not path.is_file():
            raise ModelMissingError(f"detection model {path} does not exist (settings detect.model_path)")
        self.path = path
        self.version = f"ultralytics:{path.name}"
        self._onnx = None
        if YoloOnnx.is_ultralytics_export(path):
            # An ultralytics-layout ONNX file (the prepared YOLOv3-tiny, a yolo export): run it
            # with onnxruntime directly; same boxes, a fraction of the time (yolo_onnx.py).
            self._onnx = YoloOnnx(path, self.options.image_size)
            self.image_size = self._onnx.image_size
            return
        configure_ultralytics_environment(settings)
        from ultralytics import YOLO

        self.model = YOLO(str(path), task="detect")
        self._lock = threading.Lock()  # an ultralytics predictor is not thread-safe
        self.image_size = self.options.image_size or self._model_image_size()
        # Warm up once at load so that the first photo does not pay for building the predictor.
        self.detect(np.zeros((64, 64, 3), dtype=np.uint8))

    def _model_image_size(self) -> int:
        size = getattr(self.model, "overrides", {}).get("imgsz")
        if size is None and self.path.suffix == ".onnx":
            from ultralytics.nn.backends.base import BaseBackend

            size = BaseBackend.read_metadata(self.path).get("imgsz")
            if isinstance(size, str):
                import ast

                size = ast.literal_eval(size)
        if isinstance(size, (list, tuple)):
            size = max(size)
        return int(size) if size else FALLBACK_IMAGE_SIZE

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        h, w = rgb.shape[:2]
        if self._onnx is not None:
            boxes = self._onnx.predict(np.ascontiguousarray(rgb), self.config.confidence, self.config.iou)
            names = self._onnx.names
            detections = [
                Detection(box=clip_box(tuple(map(float, b[:4])), w, h), label=str(names[int(b[5])]),
                          score=float(b[4]), class_id=int(b[5]))
                for b in boxes
            ]
            return merge_duplicates(detections, self.config.merge_iou)
        return self._detect_ultralytics(rgb)

    def _detect_ultralytics(self, rgb: np.ndarray) -> list[Detection]:
        h, w = rgb.shape[:2]
        with self._lock:
            # ultralytics takes numpy images as BGR (OpenCV order).
            result = self.model.predict(
                np.ascontiguousarray(rgb[:, :, ::-1]),
                imgsz=self.image_size,
                conf=self.config.confidence,
                iou=self.config.iou,
                verbose=False,
            )[0]
        boxes = result.boxes
        names = result.names
        detections = [
            Detection(box=clip_box(tuple(map(float, xyxy)), w, h), label=str(names[int(c)]), score=float(s), class_id=int(c))
            for xyxy, s, c in zip(boxes.xyxy.tolist(), boxes.conf.tolist(), boxes.cls.tolist(), strict=True)
        ]
        return merge_duplicates(detections, self.config.merge_iou)
