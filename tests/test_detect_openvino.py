"""openvino-ssd against opencv-ssd: the same SSD graph, so the same numbers (max abs diff) and the
same boxes on real photos."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lens.detect.openvino_ssd import detection_output, nms

pytestmark = pytest.mark.slow

# Measured: raw maps differ by < 1e-4 (float32 summation order); the bound leaves room for
# other CPUs' kernels while any real mismatch (order of the encodings, scaling) is far above it.
MAX_ENCODING_DIFF = 1e-3
MAX_SCORE_DIFF = 1e-4


def _rgb(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.fixture(scope="module")
def detectors(tmp_path_factory):
    from lens.config import REPO_ROOT, load_settings
    from lens.detect import create_detector
    from lens.models import prepare

    data = tmp_path_factory.mktemp("data")
    made = {}
    for backend in ("opencv-ssd", "openvino-ssd"):
        # float32: the comparisons with cv2.dnn below are to 1e-4 (bf16 has its own test).
        options = {"precision": "f32"} if backend == "openvino-ssd" else {}
        settings = load_settings(data_dir=data, models_dir=REPO_ROOT / "var" / "models",
                                 detect={"backend": backend, "confidence": 0.05, "options": options})
        assert not prepare(settings, ["ssd-mobilenet-v2-coco-openvino"]), "OpenVINO conversion failed"
        made[backend] = create_detector(settings)
    made["openvino-ssd bf16"] = create_detector(load_settings(
        data_dir=data, models_dir=REPO_ROOT / "var" / "models",
        detect={"backend": "openvino-ssd", "confidence": 0.05, "options": {"precision": "bf16"}}))
    return made


@pytest.fixture(scope="module")
def photos(bus_jpg, zidane_jpg, osie_photos):
    from lens.image import resize_max_side

    return [_rgb(bus_jpg), _rgb(zidane_jpg)] + [resize_max_side(_rgb(p), 1024)[0] for p in osie_photos[:4]]


def _opencv_maps(detector, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """cv2.dnn's box encodings (its graph reorders them to tx, ty, tw, th) and sigmoid scores."""
    import cv2

    blob = cv2.dnn.blobFromImage(np.ascontiguousarray(rgb), size=(300, 300), swapRB=False, crop=False)
    with detector._lock:
        detector.net.setInput(blob)
        encodings = detector.net.forward("BoxEncodingPredictor/concat").reshape(-1, 4)
        detector.net.setInput(blob)
        scores = detector.net.forward("ClassPredictor/concat/sigmoid").reshape(-1, 91)
    return encodings, scores


def test_raw_outputs_match_opencv(detectors, photos):
    for rgb in photos:
        reference_encodings, reference_scores = _opencv_maps(detectors["opencv-ssd"], rgb)
        encodings, logits = detectors["openvino-ssd"].raw_outputs(rgb)
        assert encodings.shape == reference_encodings.shape and logits.shape == reference_scores.shape
        assert np.abs(encodings[:, [1, 0, 3, 2]] - reference_encodings).max() < MAX_ENCODING_DIFF
        assert np.abs(1 / (1 + np.exp(-logits)) - reference_scores).max() < MAX_SCORE_DIFF


def test_boxes_match_opencv(detectors, photos):
    for rgb in photos:
        reference = detectors["opencv-ssd"].detect(rgb)
        got = detectors["openvino-ssd"].detect(rgb)
        assert len(got) == len(reference) > 0
        for a, b in zip(got, reference, strict=True):
            assert a.label == b.label
            assert abs(a.score - b.score) < MAX_SCORE_DIFF
            assert np.abs(np.subtract(a.box, b.box)).max() < 0.5  # pixels


def test_detection_output_matches_opencv_layer(detectors, photos):
    """The numpy DetectionOutput gives cv2's rows (class, score, box) at the graph's own 0.01."""
    import cv2

    opencv, openvino = detectors["opencv-ssd"], detectors["openvino-ssd"]
    rgb = photos[0]
    blob = cv2.dnn.blobFromImage(np.ascontiguousarray(rgb), size=(300, 300), swapRB=False, crop=False)
    with opencv._lock:
        opencv.net.setInput(blob)
        reference = opencv.net.forward().reshape(-1, 7)[:, 1:]
    reference = reference[np.lexsort((reference[:, 0], -reference[:, 1]))]
    got = detection_output(*openvino.raw_outputs(rgb), openvino._priors)
    got = got[np.lexsort((got[:, 0], -got[:, 1]))]
    assert got.shape == reference.shape
    strong = reference[:, 1] > 0.05  # near-ties among the faintest rows may swap places
    assert np.array_equal(got[strong, 0], reference[strong, 0])
    assert np.abs(got[strong, 1:] - reference[strong, 1:]).max() < 1e-3


def test_nms_keeps_the_best_of_overlapping_boxes():
    boxes = np.array([[0, 0, 1, 1], [0, 0, 0.9, 1], [2, 2, 3, 3]], dtype=np.float32)
    scores = np.array([0.5, 0.9, 0.3], dtype=np.float32)
    assert nms(boxes, scores, 0.6, 100) == [1, 2]
    assert nms(boxes, scores, 0.95, 100) == [1, 0, 2]
    assert nms(boxes, scores, 0.6, 1) == [1]


@pytest.mark.parametrize("shape", [(1, 1, 3), (7, 500, 3), (64, 64, 3)])
def test_tiny_or_blank_images_do_not_crash(detectors, shape):
    assert isinstance(detectors["openvino-ssd"].detect(np.zeros(shape, dtype=np.uint8)), list)


def test_calls_from_several_threads_give_the_same_boxes(detectors, photos):
    """The compute pool calls one detector from several threads (one infer request each)."""
    from concurrent.futures import ThreadPoolExecutor

    detector = detectors["openvino-ssd"]
    alone = [detector.detect(rgb) for rgb in photos]
    with ThreadPoolExecutor(max_workers=3) as pool:
        together = list(pool.map(detector.detect, photos * 2))
    assert together == alone * 2


def test_bfloat16_finds_the_same_confident_objects(detectors, photos):
    """bf16 ("auto" on CPUs with native bfloat16) moves scores by a few hundredths (bench_dots:
    the same dots within one object either way), not the objects a photo clearly shows."""
    from lens.geometry import iou

    for rgb in photos:
        f32 = [d for d in detectors["openvino-ssd"].detect(rgb) if d.score >= 0.6]
        bf16 = detectors["openvino-ssd bf16"].detect(rgb)
        for d in f32:
            twin = max(bf16, key=lambda b: iou(b.box, d.box) if b.label == d.label else 0.0)
            assert twin.label == d.label and iou(twin.box, d.box) > 0.9 and abs(twin.score - d.score) < 0.1
