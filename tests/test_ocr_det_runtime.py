"""The text detector on OpenVINO (the default) and on onnxruntime: the same network, the same map."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `bench` lives at the repo root

from bench.icdar import icdar_available, load_photo  # noqa: E402
from lens.config import load_settings  # noqa: E402
from lens.ocr.ppocr import PpOcrLines, detector_file, text_map_runner  # noqa: E402
from lens.threads import one_at_a_time_threads  # noqa: E402


def test_openvino_text_map_matches_onnxruntime():
    rng = np.random.default_rng(0)
    tensor = rng.normal(0, 1, (1, 3, 320, 480)).astype(np.float32)
    maps = [text_map_runner(detector_file(), runtime, 1)(tensor) for runtime in ("openvino", "onnxruntime")]
    assert maps[0].shape == maps[1].shape == (1, 1, 320, 480)
    assert float(np.abs(maps[0] - maps[1]).max()) < 1e-4


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
