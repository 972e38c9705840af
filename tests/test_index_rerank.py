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

    class TwoItems:  # what Reranker asks of a catalog: the reference images of an item (none stored)
        def reference_images(self, item_id):
            path = MILK if item_id == 2 else next((GROCERY / "iconic-images-and-descriptions/Fruit").rglob("*_Iconic.jpg"))
            return [(f"hash-{item_id}", str(path), None, None)]

    milk = load_image_file(MILK).rgb
    view = np.asarray(Image.fromarray(milk).rotate(-6, expand=True, fillcolor=(90, 90, 90)))
    shortlist = [Match(item_id=1, score=0.62), Match(item_id=2, score=0.60)]
    reranked = Reranker(RerankConfig()).rerank(view, shortlist, TwoItems())
    assert [m.item_id for m in reranked] == [2, 1] and reranked[0].score == pytest.approx(0.70)


@pytest.mark.parametrize("shape", [(20, 20000, 3), (20000, 20, 3), (1, 1, 3), (3, 400, 3)])
def test_thin_or_tiny_crops_have_no_local_features_instead_of_an_opencv_error(shape):
    features = root_sift(np.full(shape, 128, np.uint8), 256, 400)
    assert len(features) == 0


@needs_data
def test_the_matrix_ratio_test_finds_the_pairs_bfmatcher_finds():
    import cv2

    from lens.image import load_image_file
    from lens.index.rerank import ratio_matches

    config = RerankConfig()
    milk = load_image_file(MILK).rgb
    query = root_sift(milk[20:-20, 30:-10], config.max_side, config.features)
    reference = root_sift(milk, config.max_side, config.features)
    pairs = cv2.BFMatcher(cv2.NORM_L2).knnMatch(query.descriptors, reference.descriptors, k=2)
    expected = {(p[0].queryIdx, p[0].trainIdx) for p in pairs if p[0].distance < config.ratio * p[1].distance}
    query_idx, reference_idx = ratio_matches(query, reference, config.ratio)
    found = set(zip(query_idx.tolist(), reference_idx.tolist(), strict=True))
    # Float rounding may flip a pair sitting exactly on the ratio; nothing more.
    assert len(expected) > 50 and len(found ^ expected) <= 2


@needs_data
def test_stored_features_survive_encoding_and_count_the_same_inliers():
    from PIL import Image

    from lens.image import load_image_file
    from lens.index.rerank import decode, encode

    config = RerankConfig()
    milk = load_image_file(MILK).rgb
    view = np.asarray(Image.fromarray(milk).rotate(8, expand=True, fillcolor=(120, 110, 100)).resize((260, 290)))
    query = root_sift(view, config.max_side, config.features)
    reference = root_sift(milk, config.max_side, config.features)
    stored = decode(encode(reference))
    assert np.array_equal(stored.points, reference.points)
    assert np.abs(stored.descriptors - reference.descriptors).max() <= 0.5 / 255 + 1e-6
    exact = count_inliers(query, reference, config.ratio, config.ransac_px)
    assert abs(count_inliers(query, stored, config.ratio, config.ransac_px) - exact) <= max(2, exact // 10)


@needs_data
def test_the_catalog_computes_local_features_when_it_adds_an_image(settings, tmp_path):
    """The reference features come from the catalog, not from re-reading the image file."""
    import shutil

    from lens.embed import create_embedder
    from lens.index import open_catalog
    from lens.index.rerank import stored_params

    copy = tmp_path / "milk.jpg"
    shutil.copy(MILK, copy)
    catalog = open_catalog(settings, create_embedder(settings), create=True)
    item = catalog.add_image(copy, title="milk")
    catalog.save()
    ((content_hash, path, params, data),) = catalog.reference_images(item)
    assert path == str(copy.resolve()) and params == stored_params(settings.rerank) and data
    copy.unlink()  # a query must not need the file
    features = Reranker(settings.rerank).reference_features(content_hash, path, params, data)
    assert len(features) > 100
    catalog.remove([item])
    catalog.save()
    assert catalog._conn.execute("SELECT COUNT(*) FROM local_features").fetchone()[0] == 0
    catalog.close()


@needs_data
def test_a_crop_that_cannot_reach_the_match_floor_is_not_verified_and_answers_the_same(settings, monkeypatch):
    from lens.embed import create_embedder
    from lens.image import load_image_file
    from lens.index import open_catalog
    from lens.index.rerank import max_bonus
    from lens.pipeline import Pipeline, honest_matches
    from lens.types import Region

    fruit = sorted((GROCERY / "iconic-images-and-descriptions/Fruit").rglob("*_Iconic.jpg"))[:3]
    catalog = open_catalog(settings, create_embedder(settings), create=True)
    for path in [MILK, *fruit]:
        catalog.add_image(path, title=path.stem)
    catalog.save()
    catalog.close()
    pipeline = Pipeline(settings)
    image = load_image_file(MILK)
    box = (0.0, 0.0, float(image.width), float(image.height))
    (unfloored,) = pipeline.search_boxes(image, [box])
    verified = []
    monkeypatch.setattr(pipeline.reranker, "rerank", lambda crop, matches, catalog: verified.append(1) or matches)
    above_reach = unfloored[0].score + max_bonus(settings.rerank) + 0.01
    (floored,) = pipeline.search_boxes(image, [box], floor=above_reach)
    assert not verified  # nothing of this crop can be shown, so nothing was verified
    region = Region(id=0, box=box, kind="object", label="bottle", score=1.0)
    index = settings.index.model_copy(update={"match_floor": above_reach})
    assert honest_matches(region, floored, index) == honest_matches(region, unfloored, index)
    pipeline.search_boxes(image, [box], floor=unfloored[0].score)  # reachable: verified
    assert verified == [1]
