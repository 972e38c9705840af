"""`lens index tune`: a projection head trained on the catalog's own items, saved beside it,
used by search while it can serve the catalog. Real embedder (EfficientNet-Lite2) on real
Tux Paint stamps, except where a test's name says its head has random weights."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest

from lens.cli import main
from lens.index.demo import tux_stamps


@pytest.fixture
def shop(tmp_path):
    stamps = tux_stamps()
    if not stamps:
        pytest.skip("Debian tuxpaint-stamps-default is not installed")
    root = tmp_path / "shop"
    root.mkdir()
    for i, stamp in enumerate(stamps[::50][:5]):
        shutil.copy(stamp.path, root / f"item{i}.png")
    return root


def _open_catalog():
    from lens.config import get_settings
    from lens.embed import create_embedder
    from lens.index import open_catalog

    settings = get_settings()
    return open_catalog(settings, create_embedder(settings))


def test_tune_without_a_catalog_or_with_one_item_says_why_and_exits_2(lens_env, shop, capsys):
    assert main(["index", "tune"]) == 2
    assert "no catalog" in capsys.readouterr().err
    single = shop.parent / "single"
    single.mkdir()
    shutil.copy(shop / "item0.png", single / "only.png")
    assert main(["index", "add", str(single)]) == 0
    capsys.readouterr()
    assert main(["index", "tune"]) == 2
    err = capsys.readouterr().err
    assert "holds 1 item(s)" in err and "at least 2" in err
    assert main(["index", "tune", "--views", "0"]) == 2
    assert "--views" in capsys.readouterr().err


def test_tune_real_model_saves_a_head_search_uses_until_an_image_is_added(lens_env, shop, capsys, caplog):
    from lens.image import load_image_file
    from lens.index.catalog import committed_writes

    images = sorted(shop.glob("*.png"))
    first = shop.parent / "first"
    first.mkdir()
    for path in images[:4]:
        shutil.copy(path, first / path.name)
    assert main(["index", "add", str(first)]) == 0
    catalog_dir = lens_env / "data" / "catalog"
    writes = committed_writes(catalog_dir)
    capsys.readouterr()

    assert main(["index", "tune", "--views", "4", "--epochs", "3"]) == 0
    out = capsys.readouterr().out
    assert "tuned head" in out and "4 items, 4 images, 12 training views" in out
    meta = json.loads((catalog_dir / "head.json").read_text())
    assert meta["embedder"]["name"] == "efficientnet-lite2" and meta["catalog"]["items"] == 4
    assert set(meta["held_out_top1"]) == {"before", "after"}
    assert set(meta["floors"]) == {"match_floor", "label_floor"}
    # A new head is a committed write: cached analyses of the old state are not served.
    assert committed_writes(catalog_dir) == writes + 1
    cached = list((catalog_dir / "tune-cache").rglob("*.npy"))
    assert len(cached) == 4 and all(np.load(p).shape == (5, 1280) for p in cached)

    catalog = _open_catalog()
    try:
        head = catalog.active_head()
        assert head is not None and head.version == meta["version"]
        assert catalog.stats()["tuned_head"] == head.version
        query = catalog.embedder.embed([load_image_file(images[2]).rgb])
        (matches,) = catalog.search(query, k=2)
        assert matches[0].title == images[2].stem and matches[0].score > 0.99
    finally:
        catalog.close()

    # One more image: a class the head never saw, so search falls back to the plain vectors.
    assert main(["index", "add", str(shop)]) == 0
    catalog = _open_catalog()
    try:
        with caplog.at_level(logging.WARNING, logger="lens.index.catalog"):
            assert catalog.active_head() is None
        assert "1 catalog image(s) were added after it was trained" in caplog.text
        assert catalog.stats()["tuned_head"] is None
    finally:
        catalog.close()

    # Tuning again embeds only the new image's views (the others come from the cache).
    capsys.readouterr()
    assert main(["index", "tune", "--views", "4", "--epochs", "3"]) == 0
    assert "5 items, 5 images" in capsys.readouterr().out
    assert len(list((catalog_dir / "tune-cache").rglob("*.npy"))) == 5
    catalog = _open_catalog()
    try:
        assert catalog.active_head() is not None
        # Removing an item leaves a head that can still serve the rest.
        catalog.remove([catalog.items()[0].id])
        catalog.save()
        assert catalog.active_head() is not None
    finally:
        catalog.close()

    assert main(["index", "tune", "--remove"]) == 0
    assert "tuned head removed" in capsys.readouterr().out
    assert not (catalog_dir / "head.json").exists()


def test_random_weight_head_is_applied_to_queries_and_catalog_and_ignored_when_inconsistent(lens_env, shop, caplog):
    """A head with random weights (not a trained one) written beside a real catalog: search
    projects both sides with it; one from another embedder, or torn files, are ignored."""
    from lens.index.head import HEAD_WEIGHTS, save_head

    assert main(["index", "add", str(shop)]) == 0
    catalog = _open_catalog()
    try:
        ids = np.array([r[0] for r in catalog.image_rows()])
        query = np.asarray(catalog.all_vectors()[1][:1])
        (plain,) = catalog.search(query, k=5)
        # An orthogonal head keeps every cosine: the same ranking and scores.
        rotation, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(catalog.dim, catalog.dim)))
        embedder = {"name": catalog.embedder.name, "version": catalog.embedder.version}
        save_head(catalog.folder, rotation, ids, {"embedder": embedder})
        assert catalog.active_head() is not None
        (rotated,) = catalog.search(query, k=5)
        assert [m.item_id for m in rotated] == [m.item_id for m in plain]
        assert [m.score for m in rotated] == pytest.approx([m.score for m in plain], abs=2e-4)
        # A head that keeps 16 random directions only changes the scores.
        squeeze = np.random.default_rng(1).normal(size=(catalog.dim, 16)).astype(np.float32)
        save_head(catalog.folder, squeeze, ids, {"embedder": embedder})
        assert catalog.active_head().out_dim == 16
        (squeezed,) = catalog.search(query, k=5)
        assert [m.score for m in squeezed] != pytest.approx([m.score for m in plain], abs=2e-4)

        save_head(catalog.folder, squeeze, ids, {"embedder": {**embedder, "version": "another"}})
        with caplog.at_level(logging.WARNING):
            assert catalog.active_head() is None
            assert "trained on vectors of embedder" in caplog.text
            (fallback,) = catalog.search(query, k=5)
            assert [m.score for m in fallback] == [m.score for m in plain]
            # head.json of one tune beside head.npz of another (a tune killed between the two): ignored.
            save_head(catalog.folder, rotation, ids, {"embedder": embedder})
            np.savez(catalog.folder / HEAD_WEIGHTS, weights=squeeze, trained_image_ids=ids)
            assert catalog.active_head() is None
            assert "does not describe head.npz" in caplog.text
    finally:
        catalog.close()


def test_synthetic_views_are_seeded_and_keep_the_image_recognisable(tux_stamps):
    from lens.image import load_image_file
    from lens.index.tune import synthetic_views

    rgb = load_image_file(tux_stamps[0].path).rgb[..., :3]
    background = load_image_file(tux_stamps[1].path).rgb[..., :3]
    first = synthetic_views(rgb, 6, np.random.default_rng(3), [background])
    again = synthetic_views(rgb, 6, np.random.default_rng(3), [background])
    assert len(first) == 6 and all(v.dtype == np.uint8 and v.ndim == 3 and v.shape[2] == 3 for v in first)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not np.array_equal(first[0], first[1])
    # View i does not depend on how many are asked for: a cache of 6 serves a tune asking for 3.
    fewer = synthetic_views(rgb, 3, np.random.default_rng(3), [background])
    assert all(np.array_equal(a, b) for a, b in zip(fewer, first[:3], strict=True))


def test_floors_move_into_the_heads_score_space_at_the_same_quantile():
    """A head spreads its scores lower; a floor calibrated on frozen features becomes the head's
    score that keeps the same share of held-out views, not the same number."""
    from lens.index.tune import mapped_floors

    before = np.linspace(0.5, 0.9, 101)  # a floor of 0.6 keeps the top 75%
    after = before - 0.2
    floors = mapped_floors(before, after, {"match_floor": 0.6, "label_floor": 0.8})
    assert floors == pytest.approx({"match_floor": 0.4, "label_floor": 0.6}, abs=0.005)
    assert mapped_floors(before[:0], after[:0], {"match_floor": 0.6}) == {}
