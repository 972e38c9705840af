"""A fleet with no shared disk, for real: two `celery worker` processes and the gateway (in this
process), each with its own data directory, sharing only engines reached over the network:
a private redis-server (queue, job state, and the photos: fleet.upload_store = "redis"), the
machine's PostgreSQL (the catalog, its own schema) and a Milvus Lite server (`milvus-lite
server`, the vectors; reached by URI as a compose Milvus would be; a Milvus Lite *file* can be
opened by one process only, so it cannot serve a fleet).

Run twice: the photos through Redis, then through an S3-compatible server (moto's, in its own
process: fleet.upload_store = "s3"), where only the gateway has S3 settings and credentials and
the workers read the presigned URLs a task carries with plain HTTP.

w1 serves the index queue (every catalog write) and text; w2 serves vision (analyze's regions,
crop searches, item reads) and text: whatever w2 finds, it found through the databases.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from lens.config import REPO_ROOT, load_settings
from workers.local import RedisServer, WorkerProcess, stop_process

psycopg = pytest.importorskip("psycopg")
pytest.importorskip("milvus_lite")
pytestmark = pytest.mark.slow

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
API_KEY = "no-shared-disk-key"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
SERVER = {"task_soft_time_limit_s": 100, "task_hard_time_limit_s": 120, "visibility_timeout_s": 150,
          "rate_limit_per_minute": 0, "sync_timeout_s": 120}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def postgres_or_skip() -> None:
    try:
        psycopg.connect(POSTGRES_URL, connect_timeout=3).close()
    except psycopg.OperationalError:
        pytest.skip(f"no PostgreSQL at {POSTGRES_URL} (make test starts one)")


class MotoS3Server:
    """moto's S3 API server (`python -m moto.server`) in its own process, with one bucket."""

    BUCKET = "lens-fleet-photos"
    KEYS = {"access_key_id": "fleet-key", "secret_access_key": "fleet-secret"}

    def __init__(self, log_path: Path) -> None:
        self.port = free_port()
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> MotoS3Server:
        import boto3

        self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=self.log_path.open("wb"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"moto server exited: {self.log_path.read_text()[-2000:]}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"moto server not listening after {timeout} s")
            time.sleep(0.2)
        boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                     aws_access_key_id=self.KEYS["access_key_id"],
                     aws_secret_access_key=self.KEYS["secret_access_key"]).create_bucket(Bucket=self.BUCKET)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            stop_process(self.proc)


class MilvusLiteServer:
    """`milvus-lite server` on its own port: one process owns the data, clients connect by URI."""

    def __init__(self, data_dir: Path, log_path: Path) -> None:
        self.port = free_port()
        self.data_dir, self.log_path = data_dir, log_path
        self.proc: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> MilvusLiteServer:
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "milvus_lite", "server", "--data-dir", str(self.data_dir),
                                      "--host", "127.0.0.1", "--port", str(self.port)],
                                     stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"milvus-lite server exited: {self.log_path.read_text()[-2000:]}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.2)
        raise RuntimeError(f"milvus-lite server not listening after {timeout} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            stop_process(self.proc)


def backends(schema: str, milvus_uri: str, s3: MotoS3Server | None) -> dict:
    uploads = {"upload_store": "redis"} if s3 is None else {
        "upload_store": "s3", "s3": {"endpoint_url": s3.endpoint, "bucket": s3.BUCKET, **s3.KEYS}}
    return {"catalog": {"backend": "postgres", "options": {"url": POSTGRES_URL, "schema": schema}},
            "vectors": {"backend": "milvus", "options": {"uri": milvus_uri, "collection": schema}},
            "fleet": uploads}


@pytest.fixture(scope="module", params=["redis", "s3"])
def fleet(request, tmp_path_factory):
    postgres_or_skip()
    if request.param == "s3":
        pytest.importorskip("boto3")
        pytest.importorskip("moto.server")
    from lens.index.postgres import close_pools

    root = tmp_path_factory.mktemp(f"no-shared-disk-{request.param}")
    schema = f"lens_fleet_{uuid.uuid4().hex[:10]}"
    redis_server = RedisServer(free_port(), root / "redis").start()
    milvus = MilvusLiteServer(root / "milvus", root / "milvus.log").start()
    s3 = MotoS3Server(root / "moto.log").start() if request.param == "s3" else None
    dirs = {name: root / name for name in ("gateway", "w1", "w2")}
    workers: dict[str, WorkerProcess] = {}
    try:
        for name, queues in (("w1", ("index", "text")), ("w2", ("vision", "text"))):
            # With s3 the workers have no S3 setting and no AWS credential: a URL is all they get.
            env = {k: v for k, v in os.environ.items() if not k.startswith(("LENS_", "AWS_"))}
            env.update({
                "LENS_REDIS_URL": redis_server.url, "LENS_DATA_DIR": str(dirs[name]),
                "LENS_MODELS_DIR": str(REPO_ROOT / "var" / "models"), "OMP_NUM_THREADS": "1",
                "LENS_CATALOG__BACKEND": "postgres", "LENS_CATALOG__OPTIONS__URL": POSTGRES_URL,
                "LENS_CATALOG__OPTIONS__SCHEMA": schema,
                "LENS_VECTORS__BACKEND": "milvus", "LENS_VECTORS__OPTIONS__URI": milvus.uri,
                "LENS_VECTORS__OPTIONS__COLLECTION": schema,
                **({"LENS_FLEET__UPLOAD_STORE": "redis"} if s3 is None else {}),
                # Plumbing, not calibration: every dot keeps its matches.
                "LENS_INDEX__MATCH_FLOOR": "-1", "LENS_INDEX__LABEL_FLOOR": "10",
                **{f"LENS_SERVER__{k.upper()}": str(v) for k, v in SERVER.items()},
            })
            workers[name] = WorkerProcess(name, env, queues, log_dir=root / "logs").start()
        for worker in workers.values():
            worker.wait_ready(180)
        from web.app import create_app

        settings = load_settings(redis_url=redis_server.url, data_dir=dirs["gateway"], api_key=API_KEY,
                                 models_dir=REPO_ROOT / "var" / "models", server=SERVER,
                                 **backends(schema, milvus.uri, s3))
        app = create_app(settings)
        yield {"client": app.test_client(), "workers": workers, "dirs": dirs, "schema": schema, "s3": s3,
               "gateway": app.extensions["lens_gateway"]}
    finally:
        for worker in workers.values():
            worker.stop()
        if s3 is not None:
            s3.stop()
        milvus.stop()
        redis_server.stop()
        close_pools()
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


@pytest.fixture(scope="module")
def items(fleet, tux_stamps):
    """Four stamps added through the API: (path, item) each."""
    client, added = fleet["client"], []
    for stamp in tux_stamps[::20][:4]:
        response = client.post("/api/v1/items", headers=AUTH, json={"image": b64(stamp.path), "title": stamp.title})
        assert response.status_code == 201, response.get_json()
        added.append((stamp.path, response.get_json()["item"]))
    return added


def wait_job(client, body: dict, timeout: float = 300.0) -> dict:
    deadline = time.monotonic() + timeout
    while body.get("status") not in ("done", "failed"):
        assert time.monotonic() < deadline, f"job not finished after {timeout} s: {body}"
        time.sleep(0.5)
        body = client.get(body["status_url"]).get_json()
    return body


def search_whole(client, job_id: str, width: int, height: int) -> list[dict]:
    response = client.post("/api/v1/search", json={"job_id": job_id, "box": [0, 0, width, height], "k": 5})
    assert response.status_code == 200, response.get_json()
    return response.get_json()["matches"]


def test_writes_run_on_w1_and_thumbnails_come_from_the_database(fleet, items):
    client = fleet["client"]
    for _, item in items:
        thumb = client.get(item["thumbnail_url"])
        assert thumb.status_code == 200 and thumb.mimetype == "image/jpeg", thumb.get_json()
        with psycopg.connect(POSTGRES_URL) as conn:
            stored = conn.execute(f'SELECT jpeg FROM "{fleet["schema"]}".thumbnails WHERE item_id = %s',
                                  (item["id"],)).fetchone()[0]
        assert thumb.data == bytes(stored)
        # Read by w2, which never wrote anything.
        got = client.get(f"/api/v1/items/{item['id']}")
        assert got.status_code == 200 and got.get_json()["item"]["title"] == item["title"]
    assert "Task lens.index.add[" in fleet["workers"]["w1"].log_tail(500_000)
    assert "Task lens.index.add[" not in fleet["workers"]["w2"].log_tail(500_000)
    assert client.get("/readyz").status_code == 200, client.get("/readyz").get_json()


def test_analyze_and_crop_search_on_w2_find_the_items_w1_wrote(fleet, items):
    client = fleet["client"]
    path, item = items[1]
    body = client.post("/api/v1/analyze", json={"image": b64(path)}).get_json()
    job = wait_job(client, body)
    assert job["status"] == "done", job
    result = job["result"]
    assert result["image_id"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert not result["warnings"], result["warnings"]
    assert any(m["item_id"] == item["id"] for r in result["regions"] for m in r["matches"]), result["regions"]
    # A crop search names the job; the photo comes out of Redis (or S3, by its URL) on w2.
    reference = fleet["gateway"].jobs.record(job["job_id"]).upload_ref
    if fleet["s3"] is None:
        assert reference == f"redis:{result['image_id']}.png"
    else:
        assert reference.startswith(f"{fleet['s3'].endpoint}/{fleet['s3'].BUCKET}/lens/uploads/{result['image_id']}.png?")
    matches = search_whole(client, job["job_id"], item["width"], item["height"])
    assert matches[0]["item_id"] == item["id"] and matches[0]["score"] > 0.99, matches
    assert "Task lens.search[" in fleet["workers"]["w2"].log_tail(500_000)
    assert "Task lens.regions[" in fleet["workers"]["w2"].log_tail(500_000)


def test_update_and_delete_on_w1_are_seen_by_w2(fleet, items):
    client = fleet["client"]
    path, item = items[2]
    renamed = client.put(f"/api/v1/items/{item['id']}", headers=AUTH, json={"title": "renamed on w1"})
    assert renamed.status_code == 200 and renamed.get_json()["item"]["title"] == "renamed on w1"
    assert client.get(f"/api/v1/items/{item['id']}").get_json()["item"]["title"] == "renamed on w1"
    searched = client.post("/api/v1/search", json={"image": b64(path), "k": 3}).get_json()
    assert searched["matches"][0]["item_id"] == item["id"], searched
    assert searched["matches"][0]["title"] == "renamed on w1"

    deleted = client.delete(f"/api/v1/items/{item['id']}", headers=AUTH)
    assert deleted.status_code == 200 and deleted.get_json() == {"deleted": item["id"]}
    assert client.get(f"/api/v1/items/{item['id']}").status_code == 404
    assert client.get(item["thumbnail_url"]).status_code == 404
    after = client.post("/api/v1/search", json={"image": b64(path), "k": 5}).get_json()
    assert item["id"] not in [m["item_id"] for m in after["matches"]], after
    assert after["matches"], "the other items are still found"


def test_no_photo_was_written_to_any_data_dir(fleet, items):
    for name, folder in fleet["dirs"].items():
        uploads = folder / "uploads"
        assert not uploads.exists() or not any(uploads.iterdir()), (name, list(uploads.iterdir()))
    # The gateway has no catalog of its own either: it read the database.
    assert not (fleet["dirs"]["gateway"] / "catalog").exists()
