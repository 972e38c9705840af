"""The text detector on OpenVINO (the default) and on onnxruntime: the same network, the same map."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `bench` lives at the repo root

from bench.icdar import icdar_available, load_photo  # noqa: E402
from lens.config import load_settings  # noqa: E402
from lens.ocr.ppocr import (  # noqa: E402
    PpOcrLines,
    detector_file,
    detector_image,
    normalised_for_detector,
    text_map_runner,
)
from lens.threads import one_at_a_time_threads  # noqa: E402


def test_openvino_text_map_matches_onnxruntime():
    image = np.random.default_rng(0).integers(0, 256, (320, 480, 3), dtype=np.uint8)
    maps = [text_map_runner(detector_file(), runtime, 1)(image) for runtime in ("openvino", "onnxruntime")]
    assert maps[0].shape == maps[1].shape == (1, 1, 320, 480)
    assert float(np.abs(maps[0] - maps[1]).max()) < 1e-4


def test_openvinos_built_in_normalisation_gives_the_float_inputs_map():
    """OpenVINO takes the uint8 photo and normalises it itself; the same network fed the float
    tensor made beforehand gives the same map."""
    import openvino as ov

    image = np.ascontiguousarray(load_photo(2)[:320, :480, ::-1]) if icdar_available() else \
        np.random.default_rng(2).integers(0, 256, (320, 480, 3), dtype=np.uint8)
    built_in = text_map_runner(detector_file(), "openvino", 1, "f32")(image)
    core = ov.Core()
    plain = core.compile_model(core.read_model(str(detector_file())), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    beforehand = plain(normalised_for_detector(image))[0]
    assert built_in.shape == beforehand.shape == (1, 1, 320, 480)
    assert float(np.abs(built_in - beforehand).max()) < 1e-5


@pytest.mark.skipif(not icdar_available(), reason="ICDAR 2015 photos not in ../shared/data")
def test_both_runtimes_read_the_same_lines_on_a_real_photo():
    bgr = np.ascontiguousarray(load_photo(2)[..., ::-1])
    read = []
    for runtime in ("openvino", "onnxruntime"):
        lines = PpOcrLines(det_max_side=1600, det_upscale=True, det_runtime=runtime).read(bgr)
        read.append([(ln.text, [tuple(round(v) for v in p) for p in ln.polygon]) for ln in lines])
    assert read[0] and read[0] == read[1]


def test_the_detector_uses_the_cores_the_compute_pool_shares_it_with():
    embedded = load_settings(server={"embedded": True, "compute_threads": 3})
    assert one_at_a_time_threads(embedded) == 3
    fleet = load_settings(server={"embedded": False, "worker_threads": 1})
    assert one_at_a_time_threads(fleet) == 1


@pytest.mark.parametrize("shape", [(600, 800), (720, 1280), (37, 1900), (1700, 90)])
def test_detector_input_is_rapidocrs_preprocessing(shape):
    from rapidocr.ch_ppocr_det.utils import DetPreProcess

    bgr = np.random.default_rng(1).integers(0, 256, (*shape, 3), dtype=np.uint8)
    for side in (960, 1600):
        expected = DetPreProcess(side, "max")(bgr)
        got = normalised_for_detector(detector_image(bgr, side))
        assert got.shape == expected.shape and got.dtype == np.float32
        assert float(np.abs(got - expected).max()) < 1e-6
    assert detector_image(np.zeros((1, 900, 3), np.uint8), 960) is None  # a side rounds to 0


@pytest.mark.skipif(not icdar_available(), reason="ICDAR 2015 photos not in ../shared/data")
def test_bfloat16_detector_reads_the_same_lines_on_a_real_photo():
    """bf16 (det_precision "auto" on CPUs with native bfloat16) changes the text map by ~1e-2,
    not the lines read (ICDAR word F in bench/RESULTS.md, ocr)."""
    bgr = np.ascontiguousarray(load_photo(2)[..., ::-1])
    read = []
    for precision in ("f32", "bf16"):
        lines = PpOcrLines(det_max_side=1600, det_upscale=True, det_runtime="openvino", det_precision=precision).read(bgr)
        read.append([ln.text for ln in lines])
    assert read[0] and read[0] == read[1]


def test_enlargement_goes_straight_to_the_detectors_size_and_stops_at_the_cap():
    photo = np.zeros((600, 800, 3), np.uint8)
    uncapped = PpOcrLines(det_max_side=1600, det_upscale=True)._detection_copy(photo)
    capped = PpOcrLines(det_max_side=1600, det_upscale=True, det_max_enlargement=1.4)._detection_copy(photo)
    assert uncapped.shape == (1216, 1600, 3)  # sides rounded to multiples of 32 once
    assert capped.shape == (832, 1120, 3)
