"""Re-ranking a shortlist by RootSIFT + RANSAC inliers, on real photos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lens.config import RerankConfig
from lens.index.rerank import Reranker, count_inliers, fuse, root_sift
from lens.types import Match

GROCERY = Path(__file__).resolve().parents[2] / "shared" / "data" / "grocery"
MILK = GROCERY / "iconic-images-and-descriptions/Packages/Milk/Arla-Standard-Milk/Arla-Standard-Milk_Iconic.jpg"
needs_data = pytest.mark.skipif(not MILK.is_file(), reason="GroceryStore not in ../shared/data")


def test_only_a_standing_out_inlier_count_earns_a_bonus():
    config = RerankConfig(weight=0.01, inlier_cap=10, min_inliers=6, standout=2.0)
    # Packaging: 40 inliers against 5 -> the third candidate gains 0.01 x min(35, 10) and wins.
    assert fuse([0.60, 0.58, 0.55], [5, 3, 40], config) == pytest.approx([0.60, 0.58, 0.65])
    # Produce: spurious inliers with every candidate -> nothing changes.
    assert fuse([0.60, 0.58, 0.55], [12, 9, 14], config) == [0.60, 0.58, 0.55]
    # Too few inliers to mean anything.
    assert fuse([0.60, 0.58], [5, 0], config) == [0.60, 0.58]
    assert fuse([0.6], [50], config) == [0.6]


@needs_data
def test_the_same_carton_photographed_again_has_many_more_inliers_than_another_product():
    from PIL import Image

    from lens.image import load_image_file

    config = RerankConfig()
    milk = load_image_file(MILK).rgb
    # A different view: rotated by 8 degrees, scaled, with a border, as a photo would be.
    view = np.asarray(Image.fromarray(milk).rotate(8, expand=True, fillcolor=(120, 110, 100)).resize((260, 290)))
    other = load_image_file(next((GROCERY / "iconic-images-and-descriptions/Fruit/Banana").rglob("*_Iconic.jpg"))).rgb
    query = root_sift(view, config.max_side, config.features)
    assert query.descriptors.shape[1] == 128 and len(query) > 50
    same = count_inliers(query, root_sift(milk, config.max_side, config.features), config.ratio, config.ransac_px)
    different = count_inliers(query, root_sift(other, config.max_side, config.features), config.ratio, config.ransac_px)
    assert same >= 30 and same >= 3 * max(different, 1)


@needs_data
def test_reranker_moves_the_verified_item_up(tmp_path):
    from PIL import Image

    from lens.image import load_image_file

    class TwoItems:  # what Reranker asks of a catalog: the reference images of an item
        def image_paths(self, item_id):
            return [str(MILK)] if item_id == 2 else [str(next((GROCERY / "iconic-images-and-descriptions/Fruit").rglob("*_Iconic.jpg")))]

    milk = load_image_file(MILK).rgb
    view = np.asarray(Image.fromarray(milk).rotate(-6, expand=True, fillcolor=(90, 90, 90)))
    shortlist = [Match(item_id=1, score=0.62), Match(item_id=2, score=0.60)]
    reranked = Reranker(RerankConfig()).rerank(view, shortlist, TwoItems())
    assert [m.item_id for m in reranked] == [2, 1] and reranked[0].score == pytest.approx(0.70)


@pytest.mark.parametrize("shape", [(20, 20000, 3), (20000, 20, 3), (1, 1, 3), (3, 400, 3)])
def test_thin_or_tiny_crops_have_no_local_features_instead_of_an_opencv_error(shape):
    features = root_sift(np.full(shape, 128, np.uint8), 256, 400)
    assert len(features) == 0
