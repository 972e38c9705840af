"""The real HTTP API (`lens serve --embedded` in its own process) under hostile input:
the malformed-file corpus and hypothesis-generated requests get only 2xx/4xx answers, never a
5xx, every 4xx is a JSON error in words, and the server still answers a real photo afterwards.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from malformed import Case, corpus, seeds

from workers.local import stop_process, wait_until_healthy

REPO = Path(__file__).resolve().parents[1]
NO_MODELS = {"regions": "false", "text": "false"}
pytestmark = pytest.mark.slow


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One embedded server for the module: its own data dir, no rate limit, loopback only."""
    data = tmp_path_factory.mktemp("fuzz-api")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LENS_")}
    env.update(LENS_DATA_DIR=str(data), LENS_MODELS_DIR=str(REPO / "var" / "models"),
               LENS_SERVER__RATE_LIMIT_PER_MINUTE="0", LENS_API_KEY="fuzz-key",
               OMP_NUM_THREADS="1")
    log = (data / "server.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "lens.cli", "serve", "--embedded", "--host", "127.0.0.1",
         "--port", str(port)], cwd=data, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(base, proc, log_path=data / "server.log")
    except RuntimeError as exc:
        proc.kill()
        pytest.fail(str(exc))
    session = requests.Session()
    session.base = base  # type: ignore[attr-defined]
    build_small_catalog(session)
    yield session
    stop_process(proc)
    log.close()
    server_log = (data / "server.log").read_text(errors="replace")
    assert "Traceback" not in server_log, server_log[-3000:]


STAMPS = Path("/usr/share/tuxpaint/stamps")


def build_small_catalog(session) -> None:
    """A few real catalog items through the write API, so the fuzzed server is fully ready
    (a server with no catalog rightly answers item reads and /readyz with 503)."""
    photos = sorted(STAMPS.rglob("*.png"))[:4]
    if not photos:
        pytest.skip(f"no tux stamps under {STAMPS} (Debian tuxpaint-stamps-default)")
    for photo in photos:
        response = session.post(f"{session.base}/api/v1/items", files={"image": (photo.name, photo.read_bytes())},
                                data={"title": photo.stem}, headers={"Authorization": "Bearer fuzz-key"},
                                timeout=120)
        assert response.status_code in (200, 201), response.text[:300]
    ready = session.get(f"{session.base}/readyz", timeout=30)
    assert ready.status_code == 200, ready.text


def check(response: requests.Response) -> dict:
    """2xx, or a 4xx JSON error with a code and a sentence; never a 5xx."""
    assert response.status_code < 500, f"{response.status_code}: {response.text[:500]}"
    if response.request.method == "HEAD":
        return {}  # no body by definition
    if response.headers.get("Content-Type", "").startswith("application/json"):
        body = response.json()
    else:
        body = {}
    if response.status_code >= 400:
        assert body.get("error", {}).get("code"), response.text[:300]
        assert body["error"].get("message"), response.text[:300]
    return body


def post_file(server, data: bytes, filename: str = "upload.jpg", fields: dict | None = None):
    return server.post(f"{server.base}/api/v1/analyze", files={"image": (filename, data)},
                       data={**NO_MODELS, **(fields or {})}, timeout=120)


@pytest.mark.parametrize("case", corpus(), ids=lambda c: c.name)
def test_corpus_file_upload(server, case: Case):
    # Legitimate odd images go through every stage; the rest are refused before any stage.
    fields = {} if case.expect == "ok" else NO_MODELS
    body = check(post_file(server, case.data, fields=fields))
    if case.expect == "error":
        assert "error" in body
    if case.expect == "ok":
        assert body.get("status") == "done", body


@pytest.mark.parametrize("case", [c for c in corpus() if c.expect != "ok"][::3], ids=lambda c: c.name)
def test_corpus_as_base64_json(server, case: Case):
    image = base64.b64encode(case.data).decode()
    check(server.post(f"{server.base}/api/v1/analyze", json={"image": image, **NO_MODELS}, timeout=60))
    check(server.post(f"{server.base}/api/v1/search", json={"image": image}, timeout=60))


API_SETTINGS = settings(max_examples=150, deadline=None, derandomize=True,
                        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                               HealthCheck.data_too_large])


@API_SETTINGS
@given(st.one_of(st.binary(max_size=3000),
                 st.sampled_from(seeds()).flatmap(
                     lambda seed: st.integers(0, len(seed)).map(lambda n: seed[:n]))))
def test_fuzz_image_bytes(server, data: bytes):
    check(post_file(server, data))


FIELD_VALUES = st.one_of(
    st.text(max_size=40), st.integers(-10**12, 10**12).map(str), st.sampled_from(
        ["", "0", "-1", "51", "1e309", "NaN", "true", "[1,2,3,4]", "[0,0,1e308,1e308]",
         "../../etc/passwd", "en-US", "zz", "\x00", "{}", "null", "[\"a\",1,2,3]"]))


@API_SETTINGS
@given(st.dictionaries(st.sampled_from(["target_lang", "max_regions", "regions", "text", "search",
                                        "box", "k", "job_id", "options", "unknown"]),
                       FIELD_VALUES, max_size=5))
def test_fuzz_form_fields(server, fields: dict):
    check(post_file(server, seeds()[2], "x.png", {**fields, **NO_MODELS}))
    check(server.post(f"{server.base}/api/v1/search", data=fields, timeout=60))


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12)


@API_SETTINGS
@given(st.dictionaries(st.sampled_from(["image", "options", "target_lang", "max_regions", "box",
                                        "job_id", "k", "title", "metadata"]), JSON_VALUES, max_size=5))
def test_fuzz_json_bodies(server, body: dict):
    for path in ("/api/v1/analyze", "/api/v1/search"):
        check(server.post(f"{server.base}{path}", json=body, timeout=60))


@API_SETTINGS
@given(method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]),
       path=st.sampled_from(["/api/v1/analyze", "/api/v1/search", "/api/v1/jobs/", "/api/v1/items/",
                             "/api/v1/items", "/static/", "/", "/metrics", "/readyz"]),
       suffix=st.text(alphabet="abc019./%-_~", max_size=20),
       content_type=st.sampled_from(["application/json", "multipart/form-data", "text/plain",
                                     "application/x-www-form-urlencoded", "image/jpeg", ""]),
       payload=st.binary(max_size=500))
def test_fuzz_methods_paths_and_bodies(server, method, path, suffix, content_type, payload):
    headers = {"Content-Type": content_type} if content_type else {}
    response = server.request(method, f"{server.base}{path}{suffix}", data=payload,
                              headers=headers, timeout=60)
    check(response)


def test_server_still_analyses_a_real_photo(server, bus_jpg):
    # Runs after the fuzzing above (file order): the process is alive and every stage works.
    body = check(post_file(server, bus_jpg.read_bytes(), "bus.jpg", {"regions": "true", "text": "true"}))
    assert body["status"] == "done", body
    assert body["result"]["width"] == 810 and len(body["result"]["regions"]) >= 1
    assert check(server.get(f"{server.base}/healthz", timeout=10))["status"] == "ok"
