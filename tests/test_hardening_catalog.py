"""Hardening round 2 (issue 13): a catalog write that fails mid-way (a bug, a full disk) is
rolled back and never leaves SQLite's write lock held: the next API write and `lens index add`
in another process both succeed, and the catalog has the same items and the same search
results as before the failed write. The embedded app (Flask test client) with the real default
embedder on real Tux Paint stamps; faults are injected into the running write.
"""

from __future__ import annotations

import errno
import io
import shutil
import sqlite3
import subprocess
import sys

import pytest
from test_security_gateway import make_client

KEY = "s3cret-key-for-tests"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
def stamps(tux_stamps):
    return [s.path for s in tux_stamps[::40][:6]]


@pytest.fixture
def app_client(lens_env, monkeypatch, stamps):
    client, settings = make_client(lens_env, monkeypatch, LENS_SERVER__RATE_LIMIT_PER_MINUTE="0", LENS_API_KEY=KEY)
    for path in stamps[:3]:
        assert add(client, path).status_code == 201
    return client, settings


def add(client, path, **fields):
    form = {"image": (io.BytesIO(path.read_bytes()), path.name, "image/png"), "title": path.stem, **fields}
    return client.post("/api/v1/items", data=form, content_type="multipart/form-data", headers=AUTH)


def snapshot(client, settings, queries) -> tuple[list, list]:
    """(items as stored in SQLite, search results for each query photo)."""
    with sqlite3.connect(settings.catalog_dir / "catalog.sqlite") as conn:
        items = conn.execute("SELECT id, content_hash, title, url, extra FROM items ORDER BY id").fetchall()
    searches = []
    for path in queries:
        response = client.post("/api/v1/search", data={"image": (io.BytesIO(path.read_bytes()), path.name)},
                               content_type="multipart/form-data")
        assert response.status_code == 200, response.get_data(as_text=True)
        searches.append([(m["item_id"], m["score"], m["title"]) for m in response.get_json()["matches"]])
    return items, searches


def fail(*_args, **_kwargs):
    raise OSError(errno.EIO, "injected I/O error")


def disk_full(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("where", ["add-mid-insert", "remove-at-save", "update-after-sql"])
def test_a_failed_write_rolls_back_and_never_blocks_the_next(app_client, stamps, monkeypatch, tmp_path, where):
    import lens.index.catalog as catalog_module

    client, settings = app_client
    before = snapshot(client, settings, stamps[:4])
    with monkeypatch.context() as patch:
        if where == "add-mid-insert":  # after the INSERT, inside the open transaction
            patch.setattr(catalog_module, "_write_thumbnail", fail)
            response = add(client, stamps[3])
        elif where == "remove-at-save":  # the new faiss generation cannot be written
            import lens.index.stores.faiss_store as faiss_store

            patch.setattr(faiss_store, "atomic_write_bytes", disk_full)
            response = client.delete(f"/api/v1/items/{before[0][0][0]}", headers=AUTH)
        else:  # a bug after the UPDATE ran
            patch.setattr(catalog_module.Catalog, "get", lambda *a: fail())
            response = client.put(f"/api/v1/items/{before[0][0][0]}", json={"title": "renamed"}, headers=AUTH)
    assert response.status_code in (500, 507), response.get_data(as_text=True)
    assert response.get_json()["error"]["code"] in ("index_write_failed", "storage_full")
    assert "rolled back" in response.get_json()["error"]["message"]
    # Nothing lost, nothing half-written: same items, same matches as before the failure.
    assert snapshot(client, settings, stamps[:4]) == before
    # The next write through the API succeeds...
    assert add(client, stamps[3]).status_code == 201
    # ...and so does another process's `lens index add` (it needs SQLite's write lock).
    folder = tmp_path / "more"
    folder.mkdir()
    for path in stamps[4:6]:
        shutil.copy(path, folder / path.name)
    out = subprocess.run([sys.executable, "-m", "lens.cli", "index", "add", str(folder)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "added 2" in out.stdout, out.stdout
    items, _ = snapshot(client, settings, [])
    assert [row[2] for row in items] == [row[2] for row in before[0]] + [p.stem for p in stamps[3:6]]


def test_an_os_error_in_an_embedded_read_is_not_called_a_queue_outage(app_client, monkeypatch):
    """Embedded, there is no queue: a task's own OSError is the server's (500), not a 503
    saying Redis is unreachable."""
    import lens.index.catalog as catalog_module

    client, _settings = app_client
    monkeypatch.setattr(catalog_module.Catalog, "thumbnail_path", lambda *a: fail())
    response = client.get("/api/v1/items/1/thumbnail")
    assert response.status_code == 500, response.get_data(as_text=True)
    assert response.get_json()["error"]["code"] == "internal"
