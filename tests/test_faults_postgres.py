"""PostgreSQL restarted in the middle of a catalog write, for real: a cluster of the test's own
(initdb + pg_ctl on a free port, never the machine's server), stopped at once (`-m immediate`,
as a crash or a failover would) while a write's transaction is open, and started again. The
write is rolled back, retried on a fresh connection and lands once; a write during an outage
longer than the retries answers 503 with nothing written; search answers are identical after.

The embedded server (tasks in this process) with the PostgreSQL catalog and faiss vectors, so
that the restart can be timed from inside the transaction.
"""

from __future__ import annotations

import base64
import contextlib
import glob
import logging
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from lens.config import load_settings

psycopg = pytest.importorskip("psycopg")
pytestmark = pytest.mark.slow
API_KEY = "pg-faults-key"
AUTH = {"Authorization": f"Bearer {API_KEY}"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivatePostgres:
    """A throw-away cluster: initdb (trust auth) under a temporary folder, run by the postgres
    user when the test runs as root (PostgreSQL refuses to run as root)."""

    def __init__(self) -> None:
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[-3]))
        if not bins:
            pytest.skip("no PostgreSQL server binaries under /usr/lib/postgresql (Debian's postgresql)")
        self.bin = Path(bins[-1]).parent
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                pytest.skip("running as root and there is no postgres user to run a cluster as")
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self.root = Path(tempfile.mkdtemp(prefix="lens-pg-"))
        if self.as_user:
            shutil.chown(self.root, "postgres")
        self.data, self.port = self.root / "data", free_port()

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *cmd: str) -> None:
        out = subprocess.run([*self.as_user, *cmd], capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {out.stdout[-1500:]} {out.stderr[-1500:]}")

    def init(self) -> PrivatePostgres:
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        return self

    def start(self) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "server.log"), "-w",
                  "-o", f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def remove(self) -> None:
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(RuntimeError):
                self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def postgres():
    server = PrivatePostgres().init()
    server.start()
    yield server
    server.remove()


@pytest.fixture(scope="module")
def stamps(tux_stamps):
    return [s.path for s in tux_stamps[::15][:8]]


@pytest.fixture(scope="module")
def app(postgres, tmp_path_factory):
    from lens.index.postgres import close_pools
    from web.app import create_app

    settings = load_settings(
        data_dir=tmp_path_factory.mktemp("pg-faults"), api_key=API_KEY, embed={"backend": "mobilenetv2"},
        catalog={"backend": "postgres", "options": {"url": postgres.url, "schema": "lens_faults", "timeout_s": 3},
                 "write_attempts": 4, "write_retry_backoff_s": 0.5},
        server={"embedded": True, "rate_limit_per_minute": 0})
    yield create_app(settings)
    close_pools()


def b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def add(client, path: Path):
    return client.post("/api/v1/items", headers=AUTH, json={"image": b64(path), "title": path.stem})


def rows_with_hash(postgres, path: Path) -> int:
    import hashlib

    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    with psycopg.connect(postgres.url) as conn:
        return conn.execute("SELECT count(*) FROM lens_faults.items WHERE content_hash = %s", (digest,)).fetchone()[0]


def answers(app, paths: list[Path]) -> list[list[tuple[int, float]]]:
    """What the catalog answers for each stamp's own vector: (item id, score) of the top 5."""
    runtime = app.extensions["lens_gateway"].runtime
    pipeline = runtime.pipeline()
    from lens.image import load_image_file

    vectors = pipeline.embedder.embed([load_image_file(p).rgb for p in paths])
    return [[(m.item_id, round(m.score, 4)) for m in row] for row in pipeline.catalog.search(np.asarray(vectors), 5)]


@pytest.fixture(scope="module")
def catalog(app, stamps):
    client = app.test_client()
    ids = []
    for path in stamps[:5]:
        response = add(client, path)
        assert response.status_code == 201, response.get_json()
        ids.append(response.get_json()["item"]["id"])
    return ids


def test_a_write_during_a_postgres_restart_is_retried_and_lands_once(app, postgres, stamps, catalog,
                                                                     monkeypatch, caplog):
    from lens.index.postgres import PostgresCatalog

    before = answers(app, stamps[:5])
    restarted = threading.Event()
    real = PostgresCatalog._put_thumbnail

    def restart_after_the_insert(self, item_id, rgb):
        real(self, item_id, rgb)  # the item row is in the open transaction
        if not restarted.is_set():
            restarted.set()
            postgres.stop("immediate")  # the server goes away mid-transaction
            threading.Timer(1.5, postgres.start).start()

    monkeypatch.setattr(PostgresCatalog, "_put_thumbnail", restart_after_the_insert)
    caplog.set_level(logging.WARNING, logger="workers.index_tasks")
    started = time.monotonic()
    response = add(app.test_client(), stamps[5])
    took = time.monotonic() - started
    assert restarted.is_set()
    assert response.status_code == 201, response.get_json()
    item = response.get_json()["item"]
    assert any("catalog write failed (attempt 1 of 4" in r.getMessage() for r in caplog.records), caplog.text
    assert rows_with_hash(postgres, stamps[5]) == 1
    assert item["id"] not in catalog and took < 60
    # The items written before are answered exactly as before (the new item aside, which may
    # now rank among them); the new one is found first for its own image.
    after = [[hit for hit in row if hit[0] != item["id"]] for row in answers(app, stamps[:5])]
    assert after == [row[: len(kept)] for row, kept in zip(before, after, strict=True)]
    assert answers(app, [stamps[5]])[0][0][0] == item["id"]
    thumb = app.test_client().get(item["thumbnail_url"])
    assert thumb.status_code == 200 and thumb.mimetype == "image/jpeg"


def test_a_write_during_a_longer_outage_answers_503_and_writes_nothing(app, postgres, stamps, catalog):
    before = answers(app, stamps[:6])
    with psycopg.connect(postgres.url) as conn:
        count = conn.execute("SELECT count(*) FROM lens_faults.items").fetchone()[0]
    postgres.stop("fast")
    try:
        started = time.monotonic()
        response = add(app.test_client(), stamps[6])
        took = time.monotonic() - started
    finally:
        postgres.start()
    assert response.status_code == 503, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == "catalog_db_unavailable" and "tried 4 times" in error["message"], error
    assert took < 60
    with psycopg.connect(postgres.url) as conn:
        assert conn.execute("SELECT count(*) FROM lens_faults.items").fetchone()[0] == count
    assert rows_with_hash(postgres, stamps[6]) == 0
    assert answers(app, stamps[:6]) == before
    # Back up: the same write now lands, once.
    again = add(app.test_client(), stamps[6])
    assert again.status_code == 201, again.get_json()
    assert rows_with_hash(postgres, stamps[6]) == 1


def test_a_delete_whose_commit_reply_was_lost_answers_deleted(app, postgres, stamps, catalog, monkeypatch):
    """The one write a retry cannot simply repeat: the server committed the delete, but the
    connection broke before its answer came back (simulated here, on the real server, by failing
    the call after COMMIT ran). The retry finds no item; it answers "deleted", not 404."""
    from lens.index.postgres import CatalogDatabaseUnavailableError, PgConnection

    real = PgConnection.execute
    lost: list[str] = []

    def commit_then_lose_the_answer(self, sql, params=()):
        out = real(self, sql, params)
        if sql.strip().upper() == "COMMIT" and not lost:
            lost.append(sql)
            raise CatalogDatabaseUnavailableError("the connection broke after COMMIT (simulated)")
        return out

    monkeypatch.setattr(PgConnection, "execute", commit_then_lose_the_answer)
    item_id = catalog[0]
    response = app.test_client().delete(f"/api/v1/items/{item_id}", headers=AUTH)
    assert lost, "the delete never reached its COMMIT"
    assert response.status_code == 200 and response.get_json() == {"deleted": item_id}, response.get_json()
    monkeypatch.undo()
    with psycopg.connect(postgres.url) as conn:
        assert conn.execute("SELECT count(*) FROM lens_faults.items WHERE id = %s", (item_id,)).fetchone()[0] == 0
    assert app.test_client().get(f"/api/v1/items/{item_id}").status_code == 404
    assert item_id not in [hit[0] for row in answers(app, stamps[:5]) for hit in row]
