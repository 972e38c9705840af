"""The catalog: add/update/remove/search by id, persistence, index kinds, embedder checks.

Real MobileNetV2 vectors (the fastest real backend) of Debian's Tux Paint photo stamps.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from lens.config import load_settings
from lens.embed import create_embedder
from lens.errors import BadInputError
from lens.image import load_image_file
from lens.index import open_catalog
from lens.index.catalog import CatalogMismatchError, ItemNotFoundError, NewItem

torch = pytest.importorskip("torch")
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def stamps(tux_stamps):
    return tux_stamps[::14][:24]


class MemoisedEmbedder:
    """The real MobileNetV2, remembering each crop's vector: every test re-adds the same stamps,
    and on 2 shared cores re-embedding them per test took minutes."""

    def __init__(self, inner) -> None:
        self.inner, self.name, self.version, self.dim = inner, inner.name, inner.version, inner.dim
        self.memo: dict[bytes, np.ndarray] = {}

    def embed(self, crops):
        keys = [c.tobytes() + bytes(str(c.shape), "ascii") for c in crops]
        todo = [c for c, key in zip(crops, keys, strict=True) if key not in self.memo]
        if todo:
            for c, v in zip(todo, self.inner.embed(todo), strict=True):
                self.memo[c.tobytes() + bytes(str(c.shape), "ascii")] = v
        return np.stack([self.memo[key] for key in keys]) if keys else self.inner.embed([])


@pytest.fixture(scope="session")
def mobilenet():
    return MemoisedEmbedder(create_embedder(load_settings(embed={"backend": "mobilenetv2"})))


@pytest.fixture(scope="session")
def query_vectors(mobilenet, stamps):
    return mobilenet.embed([load_image_file(s.path).rgb for s in stamps[:5]])


def make_settings(tmp_path, **index):
    return load_settings(data_dir=tmp_path / "data", embed={"backend": "mobilenetv2"}, index=index)


@pytest.fixture
def catalog(tmp_path, mobilenet, stamps):
    cat = open_catalog(make_settings(tmp_path), mobilenet, create=True)
    cat.add_images([NewItem(s.path, title=s.title, extra={"class": s.label}) for s in stamps])
    cat.save()
    yield cat
    cat.close()


def ids_and_scores(results):
    return [[(m.item_id, m.score) for m in row] for row in results]


def test_no_catalog_is_none(tmp_path, mobilenet):
    assert open_catalog(make_settings(tmp_path), mobilenet) is None


def test_each_stamp_finds_itself_first(catalog, query_vectors, stamps):
    results = catalog.search(query_vectors, k=3, min_score=0.0)
    for stamp, row in zip(stamps[:5], results, strict=True):
        assert row[0].title == stamp.title and row[0].score == pytest.approx(1.0, abs=1e-3)
        assert row[0].thumbnail_url == f"/api/v1/items/{row[0].item_id}/thumbnail"
        assert row[0].metadata == {"class": stamp.label}
        assert [m.score for m in row] == sorted((m.score for m in row), reverse=True)


def test_re_adding_is_idempotent_by_content_hash(catalog, stamps):
    before = catalog.count()
    first = catalog.find(content_hash=catalog.get(1).content_hash)
    assert catalog.add_image(stamps[0].path) == first
    assert catalog.add_image(stamps[0].path.read_bytes(), title="other") == first
    outcomes = catalog.add_images([NewItem(stamps[1].path), NewItem(stamps[1].path)])
    assert [o.status for o in outcomes] == ["duplicate", "duplicate"]
    assert catalog.count() == before


@pytest.mark.parametrize("data", [b"", b"not an image", b"\x89PNG\r\n\x1a\n" + b"\0" * 20, b"<svg></svg>"])
def test_undecodable_images_are_reported_not_raised(catalog, data):
    (outcome,) = catalog.add_images([NewItem(data)])
    assert outcome.status == "failed" and outcome.message
    with pytest.raises(BadInputError):
        catalog.add_image(data)


def test_same_image_twice_in_one_batch_is_added_once(tmp_path, mobilenet, stamps):
    cat = open_catalog(make_settings(tmp_path), mobilenet, create=True)
    outcomes = cat.add_images([NewItem(stamps[0].path), NewItem(stamps[0].path.read_bytes())])
    assert [o.status for o in outcomes] == ["added", "duplicate"]
    assert outcomes[0].item_id == outcomes[1].item_id and cat.count() == 1


def test_update_get_and_remove(catalog, query_vectors):
    item = catalog.update(2, title="Red kettle", url="https://shop.example/kettle", extra={"price": 12})
    assert (item.title, item.url, item.extra) == ("Red kettle", "https://shop.example/kettle", {"price": 12})
    with pytest.raises(BadInputError, match="vector"):
        catalog.update(2, vector=[1.0])
    top = catalog.search(query_vectors[:1], k=1, min_score=0.0)[0][0].item_id
    assert catalog.remove([top, 999_999]) == [top]
    assert top not in [m.item_id for m in catalog.search(query_vectors[:1], k=10, min_score=0.0)[0]]
    with pytest.raises(ItemNotFoundError):
        catalog.get(top)
    with pytest.raises(ItemNotFoundError):
        catalog.thumbnail_path(top)
    assert catalog.thumbnail_path(2).read_bytes()[:2] == b"\xff\xd8"


def test_min_score_drops_weak_matches(catalog, query_vectors):
    everything = catalog.search(query_vectors, k=24, min_score=-1.0)
    strong = catalog.search(query_vectors, k=24, min_score=0.6)
    for all_row, strong_row in zip(everything, strong, strict=True):
        assert [m for m in all_row if m.score >= 0.6] == strong_row


def test_reopening_restores_exactly_the_same_results(catalog, query_vectors, mobilenet):
    catalog.remove([3])
    catalog.update(4, title="renamed")
    catalog.save()
    expected = catalog.search(query_vectors, k=10, min_score=0.0)
    catalog.close()
    reopened = open_catalog(catalog.settings, mobilenet)
    assert reopened.search(query_vectors, k=10, min_score=0.0) == expected
    assert reopened.get(4).title == "renamed"
    reopened.close()


def test_unsaved_changes_are_discarded_on_close(catalog, query_vectors, mobilenet):
    expected = catalog.search(query_vectors, k=5, min_score=0.0)
    catalog.remove([1, 2, 3])
    catalog.close()
    reopened = open_catalog(catalog.settings, mobilenet)
    assert reopened.search(query_vectors, k=5, min_score=0.0) == expected
    reopened.close()


def test_reader_process_sees_a_writers_save(catalog, mobilenet, query_vectors, stamps):
    reader = open_catalog(catalog.settings, mobilenet)
    catalog.remove([1])
    assert 1 in [m.item_id for row in reader.search(query_vectors, k=24, min_score=-1) for m in row]
    catalog.save()
    assert 1 not in [m.item_id for row in reader.search(query_vectors, k=24, min_score=-1) for m in row]
    reader.close()


def test_a_different_embedder_is_refused_with_a_clear_message(catalog, tmp_path):
    other = create_embedder(load_settings(embed={"backend": "efficientnet-lite2"}))
    with pytest.raises(CatalogMismatchError, match="built with embedder mobilenetv2"):
        open_catalog(catalog.settings, other)


def test_missing_vector_file_is_rebuilt_from_sqlite(catalog, query_vectors, mobilenet):
    expected = catalog.search(query_vectors, k=5, min_score=0.0)
    catalog.close()
    for path in catalog.folder.glob("vectors-*.faiss"):
        path.unlink()
    reopened = open_catalog(catalog.settings, mobilenet)
    assert ids_and_scores(reopened.search(query_vectors, k=5, min_score=0.0)) == ids_and_scores(expected)
    reopened.close()


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_index_kinds_agree_on_a_small_catalog(tmp_path, mobilenet, stamps, query_vectors, kind):
    cat = open_catalog(make_settings(tmp_path, kind=kind, ivf_nprobe=64), mobilenet, create=True)
    cat.add_images([NewItem(s.path, title=s.title) for s in stamps])
    cat.save()
    assert cat.stats()["index_kind"] == kind
    first = [row[0].title for row in cat.search(query_vectors, k=3, min_score=0.0)]
    assert first == [s.title for s in stamps[:5]]
    removed = cat.search(query_vectors[:1], k=1, min_score=0.0)[0][0].item_id
    cat.remove([removed])
    cat.save()
    assert removed not in [m.item_id for m in cat.search(query_vectors[:1], k=5, min_score=0.0)[0]]
    assert len(cat.search(query_vectors[:1], k=5, min_score=-1.0)[0]) == 5
    cat.close()


def test_auto_kind_switches_to_hnsw_above_the_threshold(tmp_path, mobilenet, stamps):
    cat = open_catalog(make_settings(tmp_path, hnsw_threshold=10), mobilenet, create=True)
    cat.add_images([NewItem(s.path) for s in stamps[:5]])
    cat.save()
    assert cat.stats()["index_kind"] == "flat"
    cat.add_images([NewItem(s.path) for s in stamps[5:15]])
    cat.save()
    assert cat.stats()["index_kind"] == "hnsw"
    assert json.loads((cat.folder / "catalog.json").read_text())["index_kind"] == "hnsw"
    cat.close()


def test_search_rejects_wrong_dimension(catalog):
    with pytest.raises(BadInputError, match="1280"):
        catalog.search(np.zeros((1, 7), np.float32), k=3, min_score=0.0)


# -- several reference images per item -------------------------------------------------------
def test_rows_sharing_an_external_id_become_one_item_scored_by_its_best_image(tmp_path, mobilenet, stamps, query_vectors):
    cat = open_catalog(make_settings(tmp_path), mobilenet, create=True)
    # Stamps 0 and 1 are two photos of "sku-a"; stamp 2 is its own item.
    outcomes = cat.add_images([
        NewItem(stamps[0].path, title="A", external_id="sku-a", extra={"n": 1}),
        NewItem(stamps[1].path, title="ignored", external_id="sku-a"),
        NewItem(stamps[2].path, title="B", external_id="sku-b"),
    ], join_external_id=True)
    cat.save()
    assert [o.status for o in outcomes] == ["added"] * 3
    item_a = outcomes[0].item_id
    assert outcomes[1].item_id == item_a and outcomes[1].image_id != item_a
    assert cat.count() == 2 and cat.image_count() == 3 and cat.stats()["images"] == 3
    assert cat.get(item_a).images == 2 and cat.get(item_a).title == "A"
    # The second photo of A finds A at score ~1 (its best image), listed once.
    (row,) = cat.search(query_vectors[1:2], k=5, min_score=-1.0)
    assert row[0].item_id == item_a and row[0].score == pytest.approx(1.0, abs=1e-3)
    assert row[0].metadata == {"n": 1} and [m.item_id for m in row].count(item_a) == 1
    assert len(row) == 2
    # A further image is not an item of its own.
    with pytest.raises(ItemNotFoundError):
        cat.get(outcomes[1].image_id)
    assert [i.id for i in cat.items()] == [item_a, outcomes[2].item_id]
    # Re-adding an extra image is a duplicate of its item.
    assert cat.add_image(stamps[1].path) == item_a
    cat.close()


def test_add_reference_image_and_remove_takes_all_images(tmp_path, mobilenet, stamps, query_vectors):
    cat = open_catalog(make_settings(tmp_path), mobilenet, create=True)
    item = cat.add_image(stamps[0].path, title="A")
    other = cat.add_image(stamps[3].path, title="C")
    outcome = cat.add_reference_image(item, stamps[1].path)
    assert (outcome.status, outcome.item_id) == ("added", item)
    assert cat.add_reference_image(item, stamps[1].path).status == "duplicate"
    with pytest.raises(ItemNotFoundError):
        cat.add_reference_image(999, stamps[2].path)
    with pytest.raises(ItemNotFoundError):  # an image row is not an item to add to
        cat.add_reference_image(outcome.image_id, stamps[2].path)
    with pytest.raises(BadInputError):
        cat.add_reference_image(item, b"not an image")
    cat.save()
    assert len(cat.image_paths(item)) == 2
    assert cat.remove([item]) == [item]
    cat.save()
    assert cat.image_count() == 1
    assert [m.item_id for m in cat.search(query_vectors[:2], k=5, min_score=-1.0)[1]] == [other]
    cat.close()


def test_a_schema_1_catalog_is_upgraded_in_place(tmp_path, mobilenet, stamps, query_vectors):
    import sqlite3

    cat = open_catalog(make_settings(tmp_path), mobilenet, create=True)
    cat.add_images([NewItem(s.path, title=s.title) for s in stamps[:5]])
    cat.save()
    expected = ids_and_scores(cat.search(query_vectors, k=3, min_score=0.0))
    cat.close()
    # What lens wrote before items.parent_id existed.
    db = sqlite3.connect(cat.folder / "catalog.sqlite")
    db.execute("DROP INDEX items_parent")
    db.execute("ALTER TABLE items DROP COLUMN parent_id")
    db.execute("DELETE FROM meta WHERE key = 'schema'")
    db.commit()
    db.close()
    reopened = open_catalog(cat.settings, mobilenet)
    assert ids_and_scores(reopened.search(query_vectors, k=3, min_score=0.0)) == expected
    assert reopened.count() == 5
    assert reopened.add_reference_image(1, stamps[6].path).status == "added"
    reopened.save()
    assert reopened.get(1).images == 2
    reopened.close()


def test_a_failed_commit_leaves_no_file_of_the_generation_it_prepared(tmp_path):
    """faiss: the file a failed save wrote for the next generation is removed on discard, so
    that no process ever loads it as that generation (with a folder per worker, another worker
    may commit that number with other vectors, and an HNSW file is not checked by its size)."""
    from lens.index.stores.faiss_store import FaissStore

    rng = np.random.default_rng(3)
    committed = rng.standard_normal((8, 16)).astype(np.float32)

    class Rows:
        vectors = committed

        def image_count(self) -> int:
            return len(self.vectors)

        def all_vectors(self):
            return np.arange(1, len(self.vectors) + 1, dtype=np.int64), self.vectors

    rows = Rows()
    store = FaissStore(load_settings(data_dir=tmp_path), tmp_path, 16, rows)
    store.load(1, {})
    rows.vectors = np.vstack([committed, rng.standard_normal((1, 16)).astype(np.float32)])  # the open write
    store.add(np.array([9]), rows.vectors[-1:])
    store.prepare_save(2, {})
    assert (tmp_path / "vectors-2.faiss").is_file()
    rows.vectors = committed  # the COMMIT failed: rolled back
    store.discard(1, {})
    assert not (tmp_path / "vectors-2.faiss").exists()
    assert store.size == 8
