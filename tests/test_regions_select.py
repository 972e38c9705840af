"""Region selection on synthetic photos whose right answer is known by construction."""

from __future__ import annotations

import numpy as np
import pytest

from lens.config import RegionConfig, SaliencyConfig
from lens.saliency import select_regions
from lens.saliency.regions import candidates
from lens.saliency.spectral import combined_map
from lens.types import Detection

H, W = 480, 640


def _plain(value: int = 128) -> np.ndarray:
    return np.full((H, W, 3), value, dtype=np.uint8)


def _with_texture(rgb: np.ndarray, box: tuple[int, int, int, int], seed: int = 0) -> np.ndarray:
    """A patterned object: random colour cells of 10 px. (Per-pixel noise would not do: spectral
    residual looks at a 64 px thumbnail, where pixel noise averages out to flat grey.)"""
    x1, y1, x2, y2 = box
    out = rgb.copy()
    cells = np.random.default_rng(seed).integers(0, 256, size=((y2 - y1) // 10 + 1, (x2 - x1) // 10 + 1, 3))
    out[y1:y2, x1:x2] = np.kron(cells, np.ones((10, 10, 1)))[: y2 - y1, : x2 - x1].astype(np.uint8)
    return out


def _map(rgb: np.ndarray) -> np.ndarray:
    return combined_map(rgb, SaliencyConfig())


def test_off_centre_textured_object_beats_a_larger_plain_box():
    textured = (470, 60, 590, 180)
    rgb = _with_texture(_plain(), textured)
    plain_box = (120, 140, 420, 440)  # bigger, more central, nothing in it
    detections = [
        Detection(box=plain_box, label="table", score=0.5),
        Detection(box=textured, label="vase", score=0.5),
    ]
    regions = select_regions(rgb, detections, _map(rgb), RegionConfig())
    assert regions[0].label == "vase"
    # The plain box gets no dot of its own (it falls under the relative cut or under a salient
    # candidate); compare the two detections' scores before selection.
    pool = {c.label: c for c in candidates(rgb, detections, _map(rgb), RegionConfig()) if c.label}
    assert pool["vase"].score > pool["table"].score
    assert pool["vase"].parts["saliency_mean"] > pool["table"].parts["saliency_mean"]
    assert pool["vase"].parts["contrast"] > pool["table"].parts["contrast"]


def test_salient_object_without_detection_becomes_a_salient_region():
    obj = (60, 300, 180, 420)
    rgb = _with_texture(_plain(), obj)
    person = (350, 80, 560, 460)
    rgb[80:460, 350:560] = (200, 60, 60)  # a detected, flat-coloured object elsewhere
    regions = select_regions(rgb, [Detection(box=person, label="person", score=0.9)], _map(rgb), RegionConfig())
    kinds = {r.kind for r in regions}
    assert kinds == {"object", "salient"}
    salient = next(r for r in regions if r.kind == "salient")
    x1, y1, x2, y2 = salient.box
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    assert obj[0] <= cx <= obj[2] and obj[1] <= cy <= obj[3], salient.box


@pytest.mark.parametrize(
    "rgb",
    [_plain(0), _plain(255), _plain(128), np.zeros((1, 1, 3), dtype=np.uint8), np.zeros((3, 700, 3), dtype=np.uint8)],
    ids=["black", "white", "grey", "1x1", "3x700"],
)
def test_empty_or_uniform_image_gives_one_sensible_region(rgb):
    regions = select_regions(rgb, [], _map(rgb), RegionConfig())
    assert len(regions) == 1
    (region,) = regions
    assert region.id == 1 and region.kind == "salient"
    x1, y1, x2, y2 = region.box
    h, w = rgb.shape[:2]
    assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
    # A featureless image has no preferred spot: the region spans most of it.
    assert (x2 - x1) * (y2 - y1) >= 0.2 * w * h


def test_no_saliency_map_falls_back_to_confidence():
    dets = [Detection(box=(0, 0, 200, 200), label="cat", score=0.4), Detection(box=(300, 200, 500, 400), label="dog", score=0.9)]
    regions = select_regions(_plain(), dets, None, RegionConfig())
    assert [r.label for r in regions] == ["dog", "cat"]
    assert [r.id for r in regions] == [1, 2]


def test_no_detections_gives_the_main_salient_area():
    obj = (400, 100, 560, 260)
    rgb = _with_texture(_plain(), obj)
    regions = select_regions(rgb, [], _map(rgb), RegionConfig())
    assert regions[0].kind == "salient"
    x1, y1, x2, y2 = regions[0].box
    assert x1 < 480 < x2 and y1 < 180 < y2


def test_tiny_and_contained_boxes_are_dropped_and_top_k_kept():
    rgb = _with_texture(_plain(), (100, 100, 500, 400))
    dets = [
        Detection(box=(100, 100, 500, 400), label="person", score=0.9),
        Detection(box=(200, 150, 260, 210), label="face", score=0.95),  # inside the person
        Detection(box=(600, 10, 605, 15), label="dot", score=0.99),  # tiny
    ] + [Detection(box=(10 + 55 * i, 415, 60 + 55 * i, 465), label=f"thing{i}", score=0.8) for i in range(8)]
    config = RegionConfig(max_regions=3, min_relative_score=0.0)
    regions = select_regions(rgb, dets, _map(rgb), config)
    labels = [r.label for r in regions]
    assert len(regions) == 3 and labels[0] == "person"
    assert "face" not in labels and "dot" not in labels
    assert [r.id for r in regions] == [1, 2, 3]
    assert [r.score for r in regions] == sorted((r.score for r in regions), reverse=True)


def test_weak_regions_below_the_relative_cut_are_dropped():
    rgb = _with_texture(_plain(), (200, 120, 440, 360))
    dets = [Detection(box=(200, 120, 440, 360), label="dog", score=0.95), Detection(box=(0, 400, 60, 470), label="cup", score=0.05)]
    regions = select_regions(rgb, dets, _map(rgb), RegionConfig(min_relative_score=0.6))
    assert [r.label for r in regions] == ["dog"]
