"""vectors.backend = "milvus": the catalog's vectors in a Milvus collection, tested against Milvus
Lite (the embedded build of the same engine, on a local file) with real MobileNetV2 vectors of
Tux Paint stamps. Same answers as faiss, writes that follow the catalog's transaction, a
writer killed mid-save repaired by the next one, and a server that is down failing clearly.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from lens.config import ConfigError, load_settings
from lens.index import open_catalog
from lens.index.catalog import NewItem
from lens.index.stores import VectorStoreUnavailableError

pytest.importorskip("pymilvus")
pytest.importorskip("milvus_lite")
torch = pytest.importorskip("torch")
torch.set_num_threads(1)


@pytest.fixture(scope="module")
def stamps(tux_stamps):
    return tux_stamps[::14][:16]


def milvus_settings(tmp_path, **vectors):
    return load_settings(data_dir=tmp_path / "data", embed={"backend": "mobilenetv2"},
                         vectors={"backend": "milvus", "options": vectors})


def ranked(results):
    return [[(m.item_id, round(m.score, 3)) for m in row] for row in results]


@pytest.mark.parametrize("index", ["hnsw", "ivf", "flat"])
def test_milvus_answers_as_faiss_does(tmp_path, embedder, stamps, stamp_vectors, index):
    faiss_catalog = open_catalog(load_settings(data_dir=tmp_path / "faiss", embed={"backend": "mobilenetv2"},
                                               index={"kind": "flat"}), embedder, create=True)
    milvus_catalog = open_catalog(milvus_settings(tmp_path, index=index, ivf_nlist=4), embedder,
                                  create=True)
    for cat in (faiss_catalog, milvus_catalog):
        cat.add_images([NewItem(s.path, title=s.title) for s in stamps])
        cat.save()
    assert milvus_catalog.stats()["index_kind"] == index
    assert milvus_catalog.stats()["index_vectors"] == len(stamps)
    queries = stamp_vectors[:5]
    assert ranked(milvus_catalog.search(queries, k=5)) == ranked(faiss_catalog.search(queries, k=5))
    assert [row[0].title for row in milvus_catalog.search(queries, k=1)] == [s.title for s in stamps[:5]]
    faiss_catalog.close()
    milvus_catalog.close()


def test_removal_update_and_reopening(tmp_path, embedder, stamps, stamp_vectors):
    settings = milvus_settings(tmp_path)
    cat = open_catalog(settings, embedder, create=True)
    cat.add_images([NewItem(s.path, title=s.title) for s in stamps])
    cat.save()
    first = cat.search(stamp_vectors[:1], k=1)[0][0].item_id
    cat.remove([first])
    cat.save()
    assert first not in [m.item_id for m in cat.search(stamp_vectors[:1], k=5)[0]]
    second = cat.search(stamp_vectors[1:2], k=1)[0][0].item_id
    cat.update(second, title="renamed")
    cat.save()
    expected = ranked(cat.search(stamp_vectors, k=5))
    assert cat.search(stamp_vectors[1:2], k=1)[0][0].title == "renamed"
    cat.close()
    reopened = open_catalog(settings, embedder)
    assert reopened.stats()["index_vectors"] == len(stamps) - 1
    assert ranked(reopened.search(stamp_vectors, k=5)) == expected
    reopened.close()


def test_discarded_changes_never_reach_milvus(tmp_path, embedder, stamps, stamp_vectors):
    cat = open_catalog(milvus_settings(tmp_path), embedder, create=True)
    cat.add_images([NewItem(s.path) for s in stamps[:8]])
    cat.save()
    expected = ranked(cat.search(stamp_vectors, k=5))
    cat.add_images([NewItem(s.path) for s in stamps[8:]])
    cat.remove([1, 2])
    cat.discard()
    assert ranked(cat.search(stamp_vectors, k=5)) == expected
    assert cat._vectors._server_count() == 8
    cat.close()


CRASHING_WRITER = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    from lens.config import load_settings
    from lens.embed import create_embedder
    from lens.index import open_catalog
    from lens.index.catalog import NewItem
    from lens.index.stores import milvus_store

    step, data_dir, *paths = sys.argv[1:]
    settings = load_settings(data_dir=data_dir, embed={"backend": "mobilenetv2"}, vectors={"backend": "milvus"})
    cat = open_catalog(settings, create_embedder(settings))
    hook = "prepare_save" if step == "add" else "finish_save"
    original = getattr(milvus_store.MilvusStore, hook)
    def die_after(self, *args):
        original(self, *args) if hook == "prepare_save" else None
        os._exit(9)  # killed: after the upsert and before the commit, or after the commit and before the delete
    setattr(milvus_store.MilvusStore, hook, die_after)
    if step == "add":
        cat.add_images([NewItem(Path(p)) for p in paths])
    else:
        cat.remove([1])
    cat.save()
""")


@pytest.mark.parametrize("step", ["add", "remove"])
def test_a_writer_killed_mid_save_leaves_search_as_it_was_and_the_next_writer_repairs(
        tmp_path, embedder, stamps, stamp_vectors, step):
    settings = milvus_settings(tmp_path)
    cat = open_catalog(settings, embedder, create=True)
    cat.add_images([NewItem(s.path, title=s.title) for s in stamps[:10]])
    cat.save()
    before = ranked(cat.search(stamp_vectors, k=5))
    cat.close()  # Milvus Lite: one process at a time opens the file
    child = subprocess.run([sys.executable, "-c", CRASHING_WRITER, step, str(settings.data_dir),
                            *[str(s.path) for s in stamps[10:]]],
                           env={**os.environ, "PYTHONPATH": os.getcwd()}, capture_output=True, text=True, timeout=300)
    assert child.returncode == 9, child.stderr
    cat = open_catalog(settings, embedder)
    if step == "add":
        # The uncommitted images' vectors are in Milvus; the metadata has none of them.
        assert cat._vectors._server_count() == 10 + len(stamps[10:])
        assert ranked(cat.search(stamp_vectors, k=5)) == before
    else:
        # The removal committed; its vector is still in Milvus, but no search returns the item.
        assert cat._vectors._server_count() == 10
        assert 1 not in [m.item_id for row in cat.search(stamp_vectors, k=10) for m in row]
    expected = ranked(cat.search(stamp_vectors, k=5))
    cat.update(2, title="next write")
    cat.save()
    assert cat._vectors._server_count() == cat.image_count()
    assert ranked(cat.search(stamp_vectors, k=5)) == expected
    cat.close()


def test_an_unreachable_milvus_fails_clearly_and_quickly(tmp_path, embedder):
    settings = milvus_settings(tmp_path, uri="http://127.0.0.1:1", timeout_s=2)
    start = time.monotonic()
    with pytest.raises(VectorStoreUnavailableError, match=r"Milvus at http://127.0.0.1:1\) failed to connect") as info:
        open_catalog(settings, embedder, create=True)
    assert time.monotonic() - start < 30
    assert info.value.http_status == 503


def test_vectors_backend_is_checked_against_the_registry():
    with pytest.raises(ConfigError, match=r"unknown vectors backend 'qdrant' \(known: faiss, milvus\)"):
        load_settings(vectors={"backend": "qdrant"})
    assert load_settings().vectors.backend == "faiss"
    with pytest.raises(ConfigError, match="vectors backend 'milvus' options: urx"):
        load_settings(vectors={"backend": "milvus", "options": {"urx": "http://x"}})


def test_vector_search_pads_like_faiss(tmp_path, embedder, stamps, stamp_vectors):
    cat = open_catalog(milvus_settings(tmp_path), embedder, create=True)
    cat.add_images([NewItem(s.path) for s in stamps[:3]])
    cat.save()
    scores, ids = cat._vectors.search(stamp_vectors[:2], 5)
    assert ids.shape == (2, 5) and (ids[:, 3:] == -1).all() and np.isneginf(scores[:, 3:]).all()
    assert len(cat.search(stamp_vectors[:2], k=5)[0]) == 3
    cat.close()
