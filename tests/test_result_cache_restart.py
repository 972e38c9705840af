"""The embedded server's result cache lives under the data dir: a restarted `lens serve
--embedded` answers a photo it analysed before from the cache (real server process, real
models), and a catalog change is not answered from an older cache entry."""

from __future__ import annotations

import json
import time
import urllib.request
import uuid

import pytest
from ui_server import EmbeddedServer

from workers.store import SqliteStore, WriteThroughStore


def analyze(server: EmbeddedServer, photo) -> tuple[int, dict, float]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"p.jpg\"\r\n"
            "Content-Type: image/jpeg\r\n\r\n").encode() + photo.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(server.url + "api/v1/analyze", data=body, method="POST",
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    start = time.monotonic()
    with urllib.request.urlopen(request, timeout=300) as response:
        return response.status, json.loads(response.read()), time.monotonic() - start


@pytest.mark.slow
def test_a_restarted_embedded_server_answers_a_photo_it_saw_from_the_cache(tmp_path, bus_jpg):
    data_dir = tmp_path / "data"
    server = EmbeddedServer(data_dir).start()
    try:
        status, first, _ = analyze(server, bus_jpg)
        assert status == 200 and first["status"] == "done" and not first.get("cached")
    finally:
        server.stop()
    assert (data_dir / "cache" / "results.sqlite3").is_file()

    server = EmbeddedServer(data_dir, log_name="serve-2.log").start()
    try:
        status, again, seconds = analyze(server, bus_jpg)
    finally:
        server.stop()
    assert status == 200 and again["cached"] is True, again
    assert again["result"] == first["result"]
    assert seconds < 2, f"answered from the cache, no model run: {seconds:.2f} s"


def test_sqlite_store_keeps_values_across_instances_and_expires_them(tmp_path):
    path = tmp_path / "cache" / "results.sqlite3"
    store = SqliteStore(path)
    store.set("result:a", "A", ttl_s=60)
    store.set("result:b", "B", ttl_s=0.2)
    assert store.set_if_absent("x", "1") and not store.set_if_absent("x", "2")
    assert store.incr("n") == 1 and store.incr("n") == 2
    reopened = SqliteStore(path)
    assert reopened.get("result:a") == "A" and reopened.get("x") == "1" and reopened.get("n") == "2"
    time.sleep(0.3)
    assert reopened.get("result:b") is None
    reopened.delete("result:a")
    assert store.get("result:a") is None


def test_a_broken_disk_copy_never_fails_the_job(tmp_path):
    from workers.store import MemoryStore

    path = tmp_path / "results.sqlite3"
    durable = SqliteStore(path)
    layered = WriteThroughStore(MemoryStore(), durable)
    durable._conn().execute("DROP TABLE kv")  # the disk copy breaks under it
    layered.set("result:k", "v", 60)
    assert layered.get("result:k") == "v"
    assert WriteThroughStore(MemoryStore(), durable).get("result:k") is None


def test_a_catalog_change_is_not_answered_from_an_older_cache_entry(tmp_path, bus_jpg, tux_stamps):
    from lens.config import REPO_ROOT, ServerConfig, load_settings
    from web.app import create_app
    from web.cli import embedded_settings

    key = "test-key-0123456789"
    server = {"rate_limit_per_minute": 0} if "rate_limit_per_minute" in ServerConfig.model_fields else {}
    settings = embedded_settings(load_settings(data_dir=tmp_path / "data", models_dir=REPO_ROOT / "var" / "models",
                                               api_key=key, server=server,
                                               # what is cached is tested, not the calibrated floor
                                               # (one stamp is no close match for a bus)
                                               index={"match_floor": -1.0}))
    client = create_app(settings).test_client()

    def post_bus():
        return client.post("/api/v1/analyze", data={"image": (bus_jpg.open("rb"), "bus.jpg")}).get_json()

    assert not post_bus().get("cached")
    assert post_bus().get("cached") is True
    added = client.post("/api/v1/items", headers={"Authorization": f"Bearer {key}"},
                        data={"image": (tux_stamps[0].path.open("rb"), "stamp.png"), "title": "a stamp"})
    assert added.status_code == 201, added.get_json()
    after = post_bus()
    assert not after.get("cached"), "the catalog changed: its matches must be searched again"
    assert any(m["title"] == "a stamp" for r in after["result"]["regions"] for m in r["matches"])
    assert post_bus().get("cached") is True
