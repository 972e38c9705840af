"""Gateway hardening through the real Flask app (embedded mode, Flask's test client):
security headers, the write key, upload limits before decoding, content type by magic bytes,
content-hash upload names whatever the client calls the file, rate limiting, upload retention,
disk full. Analyses here skip the model stages (regions/text off): they test the gateway.
"""

from __future__ import annotations

import errno
import io
import os
import time
from pathlib import Path

import pytest
from malformed import corpus, seeds

from web.ratelimit import MemoryBuckets, client_address
from web.retention import STALE_TEMP_AGE_S, sweep_uploads

NO_MODELS = {"regions": "false", "text": "false"}
PNG = seeds()[2]
JPEG = seeds()[0]


def forget_shared_lens_tasks() -> None:
    """Drop the lens tasks Celery keeps for *every later app* (`@app.task` is shared=True by
    default), so that each app made here runs its own tasks with its own settings, and none of
    ours leaks into another test module's app. Remove once workers/ registers with shared=False."""
    from celery import _state

    for callback in list(_state._on_app_finalizers):
        cells = [c.cell_contents for c in (getattr(callback, "__closure__", None) or ())]
        if any(getattr(f, "__module__", "").startswith("workers.") for f in cells if callable(f)):
            _state._on_app_finalizers.discard(callback)


def make_client(lens_env, monkeypatch, **env: str):
    from lens.config import load_settings
    from web.app import create_app
    from web.cli import embedded_settings

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = embedded_settings(load_settings())
    forget_shared_lens_tasks()
    app = create_app(settings)
    app.extensions["lens_gateway"].celery.finalize()
    forget_shared_lens_tasks()
    return app.test_client(), settings


@pytest.fixture
def client_and_settings(lens_env, monkeypatch):
    return make_client(lens_env, monkeypatch, LENS_SERVER__RATE_LIMIT_PER_MINUTE="0",
                       LENS_API_KEY="s3cret-key-for-tests")


@pytest.fixture
def client(client_and_settings):
    return client_and_settings[0]


def analyze(client, data: bytes, filename: str = "photo.jpg", mimetype: str = "image/jpeg", **fields):
    form = {"image": (io.BytesIO(data), filename, mimetype), **NO_MODELS, **fields}
    return client.post("/api/v1/analyze", data=form, content_type="multipart/form-data")


# -- headers ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("method", "path"), [
    ("get", "/"), ("get", "/static/app.js"), ("get", "/healthz"), ("get", "/readyz"),
    ("get", "/api/v1/jobs/nope"), ("get", "/no/such/page"), ("post", "/api/v1/analyze"),
    ("delete", "/api/v1/items/1"), ("get", "/metrics"),
])
def test_security_headers_on_every_response(client, method, path):
    response = getattr(client, method)(path)
    csp = response.headers["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["script-src"] == "'self'" and "unsafe-inline" not in csp
    assert "unsafe-eval" not in csp
    assert directives["frame-ancestors"] == "'none'"
    assert directives["object-src"] == "'none'"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.status_code != 500


def test_api_answers_are_not_cached(client):
    assert client.get("/api/v1/jobs/nope").headers["Cache-Control"] == "no-store"


def test_page_has_no_inline_script_the_csp_would_block(client):
    import re

    html = client.get("/").get_data(as_text=True)
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "inline <script>"
    assert not re.search(r"\son[a-z]+\s*=", html, re.I), "inline event handler"
    assert "style=" not in html


# -- the write key ----------------------------------------------------------------------------

@pytest.mark.parametrize(("authorization", "status"), [
    (None, 401), ("", 401), ("Bearer", 401), ("Bearer wrong", 401), ("Basic s3cret-key-for-tests", 401),
    ("Bearer s3cret-key-for-test", 401), ("Bearer s3cret-key-for-testsX", 401),
])
def test_catalog_writes_need_the_bearer_key(client, authorization, status):
    headers = {"Authorization": authorization} if authorization is not None else {}
    for response in (
        client.post("/api/v1/items", data={"image": (io.BytesIO(JPEG), "a.jpg"), "title": "x"},
                    headers=headers),
        client.put("/api/v1/items/1", json={"title": "x"}, headers=headers),
        client.delete("/api/v1/items/1", headers=headers),
    ):
        assert response.status_code == status, response.get_json()
        assert response.get_json()["error"]["code"] == "unauthorized"


def test_write_api_refuses_without_a_configured_key_and_says_so(lens_env, monkeypatch):
    client, _ = make_client(lens_env, monkeypatch, LENS_SERVER__RATE_LIMIT_PER_MINUTE="0")
    response = client.delete("/api/v1/items/1", headers={"Authorization": "Bearer anything"})
    assert response.status_code == 503
    assert "LENS_API_KEY" in response.get_json()["error"]["message"]


def test_key_check_is_constant_time():
    import inspect

    import web.security

    source = inspect.getsource(web.security.bearer_key_matches)
    assert "hmac.compare_digest(" in source


# -- upload limits, content type, names ---------------------------------------------------------

def test_upload_over_the_byte_limit_is_refused_before_decoding(lens_env, monkeypatch):
    client, settings = make_client(lens_env, monkeypatch, LENS_LIMITS__MAX_UPLOAD_BYTES="50000",
                                   LENS_SERVER__RATE_LIMIT_PER_MINUTE="0")
    big = b"\xff\xd8\xff" + os.urandom(200_000)
    response = analyze(client, big)
    assert response.status_code == 413
    assert not any(settings.upload_dir.glob("*")) if settings.upload_dir.exists() else True


def test_too_many_pixels_refused_from_the_header(client):
    bomb = next(c for c in corpus() if c.name == "png_claims_100000x100000")
    response = analyze(client, bomb.data, "small.png", "image/png")
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "too_many_pixels"


@pytest.mark.parametrize(("data", "filename", "mimetype", "status"), [
    (PNG, "photo.jpg", "image/jpeg", 200),          # a PNG called .jpg is a PNG
    (JPEG, "photo.png", "application/octet-stream", 200),
    (JPEG, "no-extension", "text/plain", 200),
    (b"<svg onload=alert(1)></svg>", "photo.jpg", "image/jpeg", 415),
    (b"<?php system($_GET[c]); ?>", "photo.png", "image/png", 415),
    (b"MZ\x90\x00" + b"\0" * 60, "photo.gif", "image/gif", 415),
])
def test_content_type_comes_from_magic_bytes_not_the_name(client, data, filename, mimetype, status):
    response = analyze(client, data, filename, mimetype)
    assert response.status_code == status, response.get_json()


@pytest.mark.parametrize("filename", [
    "../../../../etc/passwd", "..\\..\\windows\\system32\\x.jpg", "/etc/cron.d/evil.jpg",
    "/tmp/absolute.png", "C:\\evil.jpg", "photo.jpg\x00.sh", "....//....//x.jpg",
    "%2e%2e%2f%2e%2e%2fx.jpg", ".hidden.jpg", "a" * 4000 + ".jpg",
])
def test_upload_names_never_reach_the_file_system(client_and_settings, filename):
    client, settings = client_and_settings
    data = seeds()[2]
    response = analyze(client, data, filename, "image/png")
    assert response.status_code == 200, response.get_json()
    image_id = response.get_json()["result"]["image_id"]
    stored = sorted(p.name for p in settings.upload_dir.iterdir())
    assert stored == [f"{image_id}.png"]  # the content hash, nothing the client chose
    for outside in ("/etc/passwd.jpg", "/etc/cron.d/evil.jpg", "/tmp/absolute.png"):
        assert not Path(outside).exists() or Path(outside).stat().st_mtime < time.time() - 60
    assert not any(settings.data_dir.parent.glob("*passwd*"))


def test_base64_upload_is_checked_like_a_file(client):
    import base64

    svg = base64.b64encode(b"<svg xmlns='http://www.w3.org/2000/svg'/>").decode()
    response = client.post("/api/v1/analyze", json={"image": svg, **NO_MODELS})
    assert response.status_code == 415
    response = client.post("/api/v1/analyze", json={"image": "not base64!!", **NO_MODELS})
    assert response.status_code == 400


# -- rate limit --------------------------------------------------------------------------------

def test_rate_limit_answers_429_with_retry_after(lens_env, monkeypatch):
    client, _ = make_client(lens_env, monkeypatch, LENS_SERVER__RATE_LIMIT_PER_MINUTE="6",
                            LENS_SERVER__RATE_LIMIT_BURST="3")
    statuses = [analyze(client, b"not an image").status_code for _ in range(3)]
    assert statuses == [415, 415, 415]
    limited = analyze(client, JPEG)
    assert limited.status_code == 429
    assert limited.get_json()["error"]["code"] == "rate_limited"
    assert 1 <= int(limited.headers["Retry-After"]) <= 10
    # Other endpoints are not limited, and another client has its own bucket.
    assert client.get("/healthz").status_code == 200
    other = client.post("/api/v1/analyze", data={"image": (io.BytesIO(b"x"), "x")},
                        environ_base={"REMOTE_ADDR": "10.1.2.3"})
    assert other.status_code == 415


def test_rate_limit_off_when_zero(client):
    assert all(analyze(client, b"nope").status_code == 415 for _ in range(40))


@pytest.mark.parametrize(("burst", "per_minute", "requests_at", "expected"), [
    (2, 60, [0, 0, 0], [True, True, False]),
    (2, 60, [0, 0, 0, 1.0], [True, True, False, True]),     # one token per second
    (1, 6, [0, 5, 10], [True, False, True]),                # one per 10 s
    (3, 60, [0, 0, 0, 0, 100, 100, 100, 100], [True, True, True, False, True, True, True, False]),
])
def test_token_bucket(burst, per_minute, requests_at, expected):
    now = [0.0]
    buckets = MemoryBuckets(clock=lambda: now[0])
    got = []
    for t in requests_at:
        now[0] = t
        got.append(buckets.take("client", per_minute / 60.0, burst).allowed)
    assert got == expected


@pytest.mark.parametrize(("hops", "forwarded", "expected"), [
    (0, "6.6.6.6", "192.0.2.1"),            # no trusted proxy: the header is ignored
    (1, "6.6.6.6, 203.0.113.9", "203.0.113.9"),  # the address our proxy saw, not the forged one
    (2, "6.6.6.6, 203.0.113.9, 10.0.0.2", "203.0.113.9"),
    (2, "203.0.113.9", "192.0.2.1"),        # fewer entries than proxies: do not trust it
])
def test_client_address_trusts_only_configured_proxies(hops, forwarded, expected):
    from werkzeug.test import EnvironBuilder
    from werkzeug.wrappers import Request

    environ = EnvironBuilder(headers={"X-Forwarded-For": forwarded}).get_environ()
    environ["REMOTE_ADDR"] = "192.0.2.1"
    assert client_address(Request(environ), hops) == expected


def test_redis_rate_limit_shared_between_gateways(lens_env, monkeypatch):
    import redis

    from web.ratelimit import REDIS_KEY_PREFIX, RedisBuckets

    url = "redis://127.0.0.1:6379/14"
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except (redis.RedisError, OSError):
        pytest.skip("no Redis at 127.0.0.1:6379 (make test starts one)")
    client_key = f"test-{os.getpid()}-{time.time()}"
    first, second = RedisBuckets(url), RedisBuckets(url)  # two gateway processes
    results = [b.take(client_key, 1.0, 3).allowed for b in (first, second, first, second)]
    assert results == [True, True, True, False]
    denied = second.take(client_key, 1.0, 3)
    assert not denied.allowed and 0 < denied.retry_after_s <= 1.0
    redis.Redis.from_url(url).delete(REDIS_KEY_PREFIX + client_key)


def test_redis_rate_limit_fails_open_when_redis_is_down():
    from web.ratelimit import RedisBuckets

    with socket_free_port() as port:
        buckets = RedisBuckets(f"redis://127.0.0.1:{port}/0")
        assert buckets.take("x", 1.0, 1).allowed


class socket_free_port:
    def __enter__(self) -> int:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    def __exit__(self, *exc) -> None:
        pass


# -- retention, disk full ----------------------------------------------------------------------

def test_retention_sweep_deletes_only_old_uploads(tmp_path):
    now = time.time()
    files = {"old.jpg": now - 7200, "fresh.jpg": now - 60, ".upload-stale": now - STALE_TEMP_AGE_S - 5,
             ".upload-writing": now - 5}
    for name, mtime in files.items():
        (tmp_path / name).write_bytes(b"x")
        os.utime(tmp_path / name, (mtime, mtime))
    (tmp_path / "sub").mkdir()
    assert sweep_uploads(tmp_path, retention_s=3600, now=now) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [".upload-writing", "fresh.jpg", "sub"]
    assert sweep_uploads(tmp_path, retention_s=0, now=now + 10**6) == 0  # 0 keeps them forever


def test_gateway_sweeps_expired_uploads_in_the_background(lens_env, monkeypatch):
    client, settings = make_client(lens_env, monkeypatch, LENS_SERVER__UPLOAD_RETENTION_S="60",
                                   LENS_SERVER__UPLOAD_SWEEP_INTERVAL_S="1",
                                   LENS_SERVER__RATE_LIMIT_PER_MINUTE="0")
    assert analyze(client, PNG).status_code == 200
    (stored,) = settings.upload_dir.iterdir()
    old = time.time() - 3600
    os.utime(stored, (old, old))
    time.sleep(1.1)
    client.get("/healthz")  # any request starts a due sweep
    deadline = time.time() + 5
    while stored.exists() and time.time() < deadline:
        time.sleep(0.05)
    assert not stored.exists()


def test_disk_full_on_upload_is_507_with_a_message(client_and_settings, monkeypatch):
    client, settings = client_and_settings
    real_write_bytes = Path.write_bytes

    def full_disk(path, data):
        if path.name.startswith(".upload-"):  # the upload's temporary file (workers.uploads.save_upload)
            with path.open("wb") as fh:
                fh.write(data[:100])
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write_bytes(path, data)

    monkeypatch.setattr(Path, "write_bytes", full_disk)
    response = analyze(client, PNG)
    assert response.status_code == 507
    assert "disk space" in response.get_json()["error"]["message"]
    leftovers = list(settings.upload_dir.iterdir()) if settings.upload_dir.exists() else []
    assert leftovers == []
    monkeypatch.undo()
    assert client.get("/healthz").status_code == 200
