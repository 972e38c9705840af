"""The dots benchmark's measures, on hand-made boxes and on the real coco128 labels."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.bench_dots import (
    COCO_DIR,
    DotCounts,
    LabelledPhoto,
    crowded_pairs,
    is_junk,
    load_coco128,
    main_objects,
    split,
)


def _photo(boxes) -> LabelledPhoto:
    return LabelledPhoto(Path("x.jpg"), 1000, 1000, boxes)


def test_main_objects_are_the_three_largest_over_three_percent():
    boxes = [(0, 0, 100, 100), (0, 0, 400, 400), (0, 0, 300, 300), (0, 0, 200, 200), (0, 0, 500, 500)]
    assert main_objects(_photo(boxes)) == [(0, 0, 500, 500), (0, 0, 400, 400), (0, 0, 300, 300)]
    assert main_objects(_photo([(0, 0, 150, 150)])) == []  # 2.25% of the photo: not a main object


def test_junk_crowding_and_recall_counts():
    photo = _photo([(100, 100, 500, 500), (600, 600, 900, 900)])
    assert not is_junk((120, 120, 480, 480), photo.boxes)
    assert not is_junk((250, 250, 350, 350), photo.boxes)  # small, but its centre is on the object
    assert is_junk((0, 600, 100, 700), photo.boxes)
    # 4% of the 1414 px diagonal is 56.6 px.
    assert crowded_pairs([(0, 0, 100, 100), (40, 0, 140, 100), (300, 300, 400, 400)], 1000, 1000) == 1
    counts = DotCounts()
    counts.add([(110, 110, 500, 500), (0, 600, 100, 700)], photo)
    assert (counts.main_found, counts.main_total, counts.junk, counts.dots) == (1, 2, 1, 2)
    assert counts.recall == 0.5 and counts.junk_rate == 0.5


@pytest.mark.skipif(not COCO_DIR.is_dir(), reason="needs ../shared/data/coco128")
def test_coco128_loads_with_pixel_boxes_and_splits_in_halves():
    photos = load_coco128()
    assert len(photos) == 64
    tuning, report = split(photos)
    assert len(tuning) == len(report) == 32 and not {p.path for p in tuning} & {p.path for p in report}
    for p in photos:
        for x1, y1, x2, y2 in p.boxes:
            assert -1 <= x1 < x2 <= p.width + 1 and -1 <= y1 < y2 <= p.height + 1
    assert sum(len(main_objects(p)) for p in photos) > 100
