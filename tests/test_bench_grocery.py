"""bench_grocery's bookkeeping: halves, shelf photos and the shares it reports."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `bench` lives at the repo root

from bench.bench_grocery import GROCERY, PhotoResult, products, shelf_photos, split, summarise  # noqa: E402

needs_data = pytest.mark.skipif(not (GROCERY / "val.txt").is_file(), reason="GroceryStore not in ../shared/data")


def test_summarise_counts_first_dot_any_dot_and_whole_photo_hits():
    results = [
        PhotoResult("tune", 7, first_dot=[7, 1], dots=[[7, 1], [2]], whole=[3, 7]),
        PhotoResult("tune", 7, first_dot=[1, 2, 3, 4, 5, 7], dots=[[1, 2, 3, 4, 5, 7], [9, 7]], whole=[7]),
        PhotoResult("tune", 7, first_dot=[], dots=[], whole=[]),
    ]
    assert summarise(results) == {"first dot top-1": 0.333, "first dot top-5": 0.333, "any dot top-5": 0.667,
                                  "whole top-1": 0.333, "whole top-5": 0.667}
    assert summarise([]) == {}


@needs_data
def test_val_halves_and_shelf_photos_are_deterministic_and_disjoint():
    photos = split("val")
    assert len(photos) == 296 and len(products()) == 81
    tune = [p for p in photos if p.half == "tune"]
    assert len(tune) == 148 and all(p.index % 2 == 0 for p in tune)
    three, one = shelf_photos(3), shelf_photos(1)
    assert set(three) == {p.class_id for p in products()} and all(len(v) == 3 for v in three.values())
    assert all(p.parent.parts[-4:-1] != () and "train" in p.parts for v in three.values() for p in v)
    assert shelf_photos(3) == three and all(len(v) == 1 for v in one.values())
    assert not {p.path for p in photos} & {q for v in three.values() for q in v}
