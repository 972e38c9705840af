"""catalog.backend = "postgres" against the real PostgreSQL at 127.0.0.1:5432 (database `test`,
trust auth; `make test` starts one where none answers: scripts/ensure-postgres.sh). Each test
makes its own schema and drops it. Real MobileNetV2 vectors of Tux Paint stamps.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from lens.config import load_settings
from lens.embed import create_embedder
from lens.index import catalog_state, open_catalog
from lens.index.catalog import CatalogBusyError, CatalogMismatchError, ItemNotFoundError, NewItem

psycopg = pytest.importorskip("psycopg")
torch = pytest.importorskip("torch")
torch.set_num_threads(1)

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _postgres_answers() -> bool:
    try:
        psycopg.connect(POSTGRES_URL, connect_timeout=3).close()
        return True
    except psycopg.OperationalError:
        return False


pytestmark = pytest.mark.skipif(not _postgres_answers(), reason=f"no PostgreSQL at {POSTGRES_URL} (make test starts one)")


@pytest.fixture(scope="module")
def stamps(tux_stamps):
    return tux_stamps[::14][:12]


@pytest.fixture
def schema():
    from lens.index.postgres import close_pools

    name = f"lens_test_{uuid.uuid4().hex[:12]}"
    yield name
    close_pools()
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def pg_settings(tmp_path, schema, worker="a", **catalog):
    # Each "worker" has its own data dir: nothing is shared but the database.
    return load_settings(data_dir=tmp_path / worker, embed={"backend": "mobilenetv2"},
                         catalog={"backend": "postgres", "options": {"url": POSTGRES_URL, "schema": schema, **catalog}})


def ranked(results):
    return [[(m.item_id, round(m.score, 4), m.title) for m in row] for row in results]


def test_db_migrate_is_idempotent_and_an_unmigrated_database_has_no_catalog(tmp_path, schema, embedder):
    settings = pg_settings(tmp_path, schema)
    assert open_catalog(settings, embedder) is None
    assert catalog_state(settings) is None
    env = {**os.environ, "PYTHONPATH": os.getcwd(), "LENS_DATA_DIR": str(tmp_path / "cli"),
           "LENS_CATALOG__BACKEND": "postgres", "LENS_CATALOG__OPTIONS__URL": POSTGRES_URL,
           "LENS_CATALOG__OPTIONS__SCHEMA": schema}
    cli = [sys.executable, "-m", "lens.cli", "db", "migrate"]
    first = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    assert f"schema {schema}: applied 0001_catalog" in first.stdout
    again = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and f"schema {schema}: up to date" in again.stdout
    # Migrated but empty: still no catalog until the first write creates it.
    assert open_catalog(settings, embedder) is None


def test_db_migrate_refuses_the_sqlite_backend(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.getcwd(), "LENS_DATA_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-m", "lens.cli", "db", "migrate"], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode != 0 and "catalog.backend is 'sqlite'" in out.stderr and "Traceback" not in out.stderr


def test_postgres_answers_as_sqlite_does(tmp_path, schema, embedder, stamps, stamp_vectors):
    sqlite = open_catalog(load_settings(data_dir=tmp_path / "sqlite", embed={"backend": "mobilenetv2"}),
                          embedder, create=True)
    postgres = open_catalog(pg_settings(tmp_path, schema), embedder, create=True)
    for cat in (sqlite, postgres):
        cat.add_images([NewItem(s.path, title=s.title, extra={"class": s.label}) for s in stamps])
        cat.add_images([NewItem(stamps[0].path, title="a duplicate")])
        cat.update(2, title="renamed", extra={"k": 1})
        cat.remove([3])
        cat.save()
    assert ranked(postgres.search(stamp_vectors, k=5)) == ranked(sqlite.search(stamp_vectors, k=5))
    assert postgres.get(2) .model_dump(exclude={"added_at", "image_path"}) == \
        sqlite.get(2).model_dump(exclude={"added_at", "image_path"})
    assert [i.id for i in postgres.items()] == [i.id for i in sqlite.items()]
    assert postgres.count() == sqlite.count() == len(stamps) - 1
    sqlite.close()
    postgres.close()


def test_thumbnails_and_images_come_from_the_database(tmp_path, schema, embedder, stamps):
    from lens.index.postgres import read_thumbnail

    writer = open_catalog(pg_settings(tmp_path, schema, "writer"), embedder, create=True)
    item = writer.add_image(stamps[0].path, title="one")
    writer.add_reference_image(item, stamps[1].path.read_bytes())
    writer.save()
    # Another worker, with an empty data dir of its own.
    reader = open_catalog(pg_settings(tmp_path, schema, "reader"), embedder)
    jpeg = reader.thumbnail_bytes(item)
    assert jpeg[:3] == b"\xff\xd8\xff"
    # What the gateway serves, without a catalog or an embedder of its own.
    assert read_thumbnail(pg_settings(tmp_path, schema, "gateway"), item) == jpeg
    assert reader.thumbnail_path(item).read_bytes() == jpeg
    paths = reader.image_paths(item)
    assert len(paths) == 2 and all(p.startswith(str(tmp_path / "reader")) for p in paths)
    assert Path(paths[0]).read_bytes() == stamps[0].path.read_bytes()
    writer.remove([item])
    writer.save()
    with pytest.raises(ItemNotFoundError):
        reader.thumbnail_bytes(item)
    assert read_thumbnail(pg_settings(tmp_path, schema, "gateway"), item) is None
    writer.close()
    reader.close()


def test_a_second_worker_sees_each_save_and_the_cache_key_moves(tmp_path, schema, embedder, stamps, stamp_vectors):
    a = open_catalog(pg_settings(tmp_path, schema, "a"), embedder, create=True)
    a.add_images([NewItem(s.path, title=s.title) for s in stamps[:6]])
    a.save()
    b = open_catalog(pg_settings(tmp_path, schema, "b"), embedder)
    assert ranked(b.search(stamp_vectors, k=3)) == ranked(a.search(stamp_vectors, k=3))
    _, writes = catalog_state(a.settings)
    # b writes too: any worker may.
    b.add_images([NewItem(s.path, title=s.title) for s in stamps[6:]])
    b.save()
    assert catalog_state(a.settings)[1] == writes + 1
    # What the text index follows: the same counter, read through the catalog.
    assert a.committed_writes() == b.committed_writes() == writes + 1
    assert a.count() == len(stamps)
    assert ranked(a.search(stamp_vectors, k=3)) == ranked(b.search(stamp_vectors, k=3))
    a.close()
    b.close()


def test_writers_queue_on_one_lock_and_a_rollback_leaves_nothing(tmp_path, schema, embedder, stamps, stamp_vectors):
    a = open_catalog(pg_settings(tmp_path, schema, "a"), embedder, create=True)
    a.add_images([NewItem(s.path) for s in stamps[:4]])
    a.save()
    expected = ranked(a.search(stamp_vectors, k=4))
    b = open_catalog(pg_settings(tmp_path, schema, "b", timeout_s=1), embedder)
    a.add_images([NewItem(s.path) for s in stamps[4:8]])  # a holds the write lock now
    start = time.monotonic()
    with pytest.raises(CatalogBusyError, match="another worker is writing"):
        b.update(1, title="b")
    assert time.monotonic() - start < 10
    a.discard()
    assert ranked(b.search(stamp_vectors, k=4)) == expected
    assert b.count() == 4
    b.update(1, title="b")
    b.save()
    assert a.get(1).title == "b"
    a.close()
    b.close()


def test_another_embedder_is_refused(tmp_path, schema, embedder, stamps):
    cat = open_catalog(pg_settings(tmp_path, schema), embedder, create=True)
    cat.add_image(stamps[0].path)
    cat.save()
    cat.close()
    other = create_embedder(load_settings(embed={"backend": "efficientnet-lite2"}))
    with pytest.raises(CatalogMismatchError, match="built with embedder mobilenetv2"):
        open_catalog(pg_settings(tmp_path, schema), other)


KILLED_WRITER = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    from lens.config import load_settings
    from lens.embed import create_embedder
    from lens.index import open_catalog
    from lens.index.catalog import NewItem

    url, schema, data_dir, *paths = sys.argv[1:]
    settings = load_settings(data_dir=data_dir, embed={"backend": "mobilenetv2"},
                             catalog={"backend": "postgres", "options": {"url": url, "schema": schema}})
    cat = open_catalog(settings, create_embedder(settings))
    cat.add_images([NewItem(Path(p), title="half") for p in paths])
    cat.update(1, title="half")
    os._exit(9)  # killed mid-write: rows inserted, nothing committed
""")


def test_a_worker_killed_mid_write_leaves_nothing_half_written(tmp_path, schema, embedder, stamps, stamp_vectors):
    settings = pg_settings(tmp_path, schema)
    cat = open_catalog(settings, embedder, create=True)
    cat.add_images([NewItem(s.path, title=s.title) for s in stamps[:6]])
    cat.save()
    before = ranked(cat.search(stamp_vectors, k=5))
    child = subprocess.run([sys.executable, "-c", KILLED_WRITER, POSTGRES_URL, schema, str(tmp_path / "child"),
                            *[str(s.path) for s in stamps[6:]]],
                           env={**os.environ, "PYTHONPATH": os.getcwd()}, capture_output=True, text=True, timeout=300)
    assert child.returncode == 9, child.stderr
    assert cat.count() == 6 and cat.get(1).title == stamps[0].title
    assert ranked(cat.search(stamp_vectors, k=5)) == before
    # The server rolled the dead writer's transaction back and freed its lock.
    cat.update(1, title="after")
    cat.save()
    assert cat.get(1).title == "after"
    cat.close()


def test_an_unreachable_database_fails_clearly(tmp_path, embedder):
    from lens.index.postgres import CatalogDatabaseUnavailableError, close_pools

    settings = load_settings(data_dir=tmp_path, embed={"backend": "mobilenetv2"},
                             catalog={"backend": "postgres", "options": {"url": "postgresql://postgres@127.0.0.1:1/test",
                                                                       "timeout_s": 2}})
    start = time.monotonic()
    with pytest.raises(CatalogDatabaseUnavailableError, match=r"PostgreSQL at postgresql://postgres@127.0.0.1:1/test\) is unavailable") as info:
        open_catalog(settings, embedder, create=True)
    close_pools()
    assert info.value.http_status == 503
    assert time.monotonic() - start < 15


def test_postgres_with_milvus_vectors(tmp_path, schema, embedder, stamps, stamp_vectors):
    pytest.importorskip("milvus_lite")
    settings = load_settings(data_dir=tmp_path / "m", embed={"backend": "mobilenetv2"},
                             catalog={"backend": "postgres", "options": {"url": POSTGRES_URL, "schema": schema}},
                             vectors={"backend": "milvus", "options": {"uri": str(tmp_path / "milvus.db")}})
    cat = open_catalog(settings, embedder, create=True)
    cat.add_images([NewItem(s.path, title=s.title) for s in stamps])
    cat.save()
    assert [row[0].title for row in cat.search(stamp_vectors, k=1)] == [s.title for s in stamps]
    cat.remove([1])
    cat.save()
    assert 1 not in [m.item_id for row in cat.search(stamp_vectors, k=5) for m in row]
    assert cat.stats()["index_vectors"] == len(stamps) - 1
    cat.close()


def test_a_connection_lost_mid_write_fails_clearly_and_the_next_write_goes_through(
        tmp_path, schema, embedder, stamps, stamp_vectors):
    """What a PostgreSQL restart does to a writer: its server process goes away mid-transaction
    (pg_terminate_backend, so that the shared test server keeps running for everyone else)."""
    from lens.index.postgres import CatalogDatabaseUnavailableError

    cat = open_catalog(pg_settings(tmp_path, schema), embedder, create=True)
    cat.add_images([NewItem(s.path, title=s.title) for s in stamps[:6]])
    cat.save()
    before = ranked(cat.search(stamp_vectors, k=5))
    cat.add_images([NewItem(s.path, title="lost") for s in stamps[6:]])
    writer_pid = cat._conn._txn.info.backend_pid
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (writer_pid,))
    with pytest.raises(CatalogDatabaseUnavailableError, match="is unavailable"):
        cat.update(1, title="lost too")
    cat.discard()
    assert cat.count() == 6 and cat.get(1).title == stamps[0].title
    assert ranked(cat.search(stamp_vectors, k=5)) == before
    cat.update(1, title="after")
    cat.save()
    assert cat.get(1).title == "after"
    cat.close()


def test_reranking_reads_reference_images_and_their_features_from_the_database(tmp_path, schema, embedder, stamps):
    writer = open_catalog(pg_settings(tmp_path, schema, "writer"), embedder, create=True)
    item = writer.add_image(stamps[0].path.read_bytes(), title="one")
    writer.save()
    reader = open_catalog(pg_settings(tmp_path, schema, "reader"), embedder)
    ((content_hash, path, params, data),) = reader.reference_images(item)
    assert path.startswith(str(tmp_path / "reader")) and Path(path).read_bytes() == stamps[0].path.read_bytes()
    assert params and data  # computed at add time, stored beside the item
    writer.remove([item])
    writer.save()
    assert reader.reference_images(item) == []
    writer.close()
    reader.close()
