"""A tuned head's own floors replace index.match_floor for an analysis's dots, unless
index.use_head_floors is off (bench_grocery's unfloored measures)."""

from __future__ import annotations

import numpy as np
import pytest

from lens.image import DecodedImage
from lens.pipeline import AnalyzeOptions, Pipeline, Timer
from lens.types import Match


class _Head:
    floors = {"match_floor": 0.3, "label_floor": 0.4}


class _Catalog:
    def active_head(self):
        return _Head()


@pytest.mark.parametrize(("use_head_floors", "kept"), [(True, [0.35]), (False, [])])
def test_head_floors_apply_only_when_asked(lens_env, monkeypatch, use_head_floors, kept):
    from lens.config import load_settings

    settings = load_settings(detect={"backend": "none"}, saliency={"backend": "none"},
                             index={"match_floor": 0.59, "use_head_floors": use_head_floors})
    pipeline = Pipeline(settings)
    pipeline._stages["catalog"] = _Catalog()
    seen_floors = []

    def search_boxes(image, boxes, k=None, timer=None, floor=None):
        seen_floors.append(floor)
        return [[Match(item_id=1, score=0.35, title="milk")] for _ in boxes]

    monkeypatch.setattr(pipeline, "search_boxes", search_boxes)
    image = DecodedImage(rgb=np.full((64, 64, 3), 128, np.uint8), sha256="0" * 64, format="PNG")
    regions = pipeline.find_regions(image, AnalyzeOptions(text=False), Timer())
    assert regions and seen_floors == [0.3 if use_head_floors else 0.59]
    assert [m.score for m in regions[0].matches] == kept
