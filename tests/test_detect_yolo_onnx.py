"""The prepared YOLOv3-tiny ONNX run with plain onnxruntime gives ultralytics' own boxes, on real
photos (ultralytics' assets, COCO and OSIE photos at the pipeline's work size and odd sizes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lens.config import load_settings
from lens.detect.yolo_onnx import YoloOnnx, letterbox_params, nms
from lens.image import load_image_file, resize_max_side
from lens.models import require

COCO_IMAGES = sorted((Path(__file__).resolve().parents[2] / "shared" / "data" / "coco128" / "images").rglob("*.jpg"))


@pytest.fixture(scope="module")
def model_path():
    return require("yolov3-tiny-coco", load_settings())


@pytest.fixture(scope="module")
def photos(bus_jpg, zidane_jpg, osie_photos):
    images = [load_image_file(p).rgb for p in [bus_jpg, zidane_jpg, *osie_photos[::140], *COCO_IMAGES[::8]]]
    work = [resize_max_side(rgb, 1600)[0] for rgb in images]
    return [*work, work[0][:333, :517], work[1][::3, ::2]]  # odd sizes: padding on both axes


def test_same_boxes_as_the_ultralytics_predictor(model_path, photos, tmp_path, monkeypatch):
    monkeypatch.setenv("YOLO_CONFIG_DIR", str(tmp_path))
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    from ultralytics import YOLO

    fast = YoloOnnx(model_path)
    reference = YOLO(str(model_path), task="detect")
    compared = 0
    for rgb in photos:
        got = fast.predict(rgb, confidence=0.25, iou=0.45)
        want = reference.predict(np.ascontiguousarray(rgb[:, :, ::-1]), imgsz=fast.image_size, conf=0.25,
                                 iou=0.45, verbose=False)[0].boxes
        assert len(got) == len(want), f"{rgb.shape}: {len(got)} boxes vs ultralytics {len(want)}"
        np.testing.assert_allclose(got[:, :4], want.xyxy.numpy(), atol=0.05)
        np.testing.assert_allclose(got[:, 4], want.conf.numpy(), atol=1e-4)
        np.testing.assert_array_equal(got[:, 5], want.cls.numpy())
        compared += len(got)
    assert compared >= 20, "too few boxes to compare on these photos"


def test_backend_takes_the_onnx_path_without_importing_ultralytics(settings, bus_jpg):
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from lens.config import load_settings\nfrom lens.detect import create_detector\n"
        "from lens.image import load_image_file\n"
        "d = create_detector(load_settings(detect={'backend': 'ultralytics'}))\n"
        f"found = d.detect(load_image_file({str(bus_jpg)!r}).rgb)\n"
        "print(sorted({x.label for x in found}), 'ultralytics' in sys.modules, 'torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    labels, ultralytics_loaded, torch_loaded = out.stdout.rsplit(" ", 2)
    assert "person" in labels and "bus" in labels
    assert (ultralytics_loaded, torch_loaded.strip()) == ("False", "False")


def test_letterbox_is_the_minimum_rectangle():
    gain, (w, h), (top, bottom, left, right) = letterbox_params(600, 800, 416)
    assert (w, h) == (416, 312) and w + left + right == 416 and (h + top + bottom) % 32 == 0
    assert gain == pytest.approx(0.52)


def test_nms_keeps_best_of_overlapping_boxes():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]], dtype=np.float32)
    assert nms(boxes, np.array([0.5, 0.9, 0.3], dtype=np.float32), 0.45).tolist() == [1, 2]
