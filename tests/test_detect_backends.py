"""Real detectors on real photos (ultralytics' bus.jpg and zidane.jpg)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lens.detect.merge import fuse, merge_duplicates
from lens.geometry import iou
from lens.types import Detection

pytestmark = pytest.mark.slow

# Hand-labelled people in bus.jpg (810x1080): left man, middle man, right man, and the one cut off
# at the left edge.
BUS_PEOPLE = [(50, 395, 245, 910), (215, 400, 350, 865), (670, 375, 810, 880), (0, 540, 80, 875)]
BUS_BUS = (0, 230, 810, 790)
ZIDANE_PEOPLE = [(120, 195, 1110, 715), (740, 40, 1150, 715)]


def _rgb(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def _matched(detections, truths, label, min_iou=0.4):
    found = 0
    for truth in truths:
        if any(d.label == label and iou(d.box, truth) >= min_iou for d in detections):
            found += 1
    return found


@pytest.fixture(scope="module")
def detectors(tmp_path_factory):
    import torch

    torch.set_num_threads(1)
    from lens.config import REPO_ROOT, load_settings
    from lens.detect import create_detector
    from lens.models import prepare

    data = tmp_path_factory.mktemp("data")
    made = {}
    for backend in ("ultralytics", "opencv-ssd", "openvino-ssd", "fusion"):
        settings = load_settings(data_dir=data, models_dir=REPO_ROOT / "var" / "models", detect={"backend": backend})
        assert not prepare(settings, ["yolov3-tiny-coco", "ssd-mobilenet-v2-coco-openvino"]), "model preparation failed"
        made[backend] = create_detector(settings)
    return made


@pytest.mark.parametrize("backend", ["ultralytics", "opencv-ssd", "openvino-ssd", "fusion"])
def test_bus_has_the_bus_and_at_least_three_people(detectors, bus_jpg, backend):
    detections = detectors[backend].detect(_rgb(bus_jpg))
    assert _matched(detections, [BUS_BUS], "bus", min_iou=0.5) == 1, detections
    assert _matched(detections, BUS_PEOPLE, "person") >= 3, detections


@pytest.mark.parametrize("backend", ["ultralytics", "opencv-ssd", "openvino-ssd", "fusion"])
def test_zidane_has_two_people(detectors, zidane_jpg, backend):
    detections = detectors[backend].detect(_rgb(zidane_jpg))
    assert _matched(detections, ZIDANE_PEOPLE, "person") == 2, detections


@pytest.mark.parametrize("backend", ["ultralytics", "opencv-ssd", "openvino-ssd", "fusion"])
def test_boxes_are_inside_the_image_and_sorted(detectors, bus_jpg, backend):
    rgb = _rgb(bus_jpg)
    h, w = rgb.shape[:2]
    detections = detectors[backend].detect(rgb)
    assert detections
    for d in detections:
        x1, y1, x2, y2 = d.box
        assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
    scores = [d.score for d in detections]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize("shape", [(1, 1, 3), (7, 500, 3), (64, 64, 3)])
def test_tiny_or_blank_images_do_not_crash(detectors, shape):
    for detector in detectors.values():
        assert isinstance(detector.detect(np.zeros(shape, dtype=np.uint8)), list)


def test_cross_class_duplicates_are_merged():
    dets = [
        Detection(box=(10, 10, 110, 60), label="car", score=0.6, class_id=2),
        Detection(box=(12, 11, 112, 62), label="truck", score=0.4, class_id=7),
        Detection(box=(300, 10, 400, 60), label="truck", score=0.3, class_id=7),
    ]
    merged = merge_duplicates(dets, iou_threshold=0.7)
    assert [d.label for d in merged] == ["car", "truck"]


def test_fusion_raises_agreement_and_halves_lone_boxes():
    a = [Detection(box=(0, 0, 100, 100), label="dog", score=0.8), Detection(box=(200, 0, 300, 100), label="cat", score=0.6)]
    b = [Detection(box=(5, 5, 100, 100), label="dog", score=0.6)]
    fused = fuse([a, b], iou_threshold=0.55)
    assert [d.label for d in fused] == ["dog", "cat"]
    assert fused[0].score == pytest.approx(0.7)
    assert fused[1].score == pytest.approx(0.3)
