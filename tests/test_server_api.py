"""The JSON API in embedded mode (Celery eager, in-process store): real models on real photos,
a real catalog built through the write API, every response checked against the OpenAPI
document the server publishes."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import jsonschema
import pytest
from PIL import Image

from lens.config import REPO_ROOT, ServerConfig, load_settings

API_KEY = "test-key-0123456789"
# These tests send many requests from one address; the rate limit has its own tests.
NO_RATE_LIMIT = {"rate_limit_per_minute": 0} if "rate_limit_per_minute" in ServerConfig.model_fields else {}
STAMPS = Path("/usr/share/tuxpaint/stamps")


@pytest.fixture(scope="session")
def server_settings(tmp_path_factory):
    from web.cli import embedded_settings

    data = tmp_path_factory.mktemp("server-data")
    return embedded_settings(load_settings(
        data_dir=data, models_dir=REPO_ROOT / "var" / "models", api_key=API_KEY, server=NO_RATE_LIMIT))


@pytest.fixture(scope="session")
def app(server_settings):
    from web.app import create_app

    return create_app(server_settings)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(scope="session")
def openapi(app):
    return app.test_client().get("/api/v1/openapi.json").get_json()


def check_schema(openapi, response, path: str, method: str = "post") -> dict:
    """The response's JSON validates against the document's schema for that status."""
    spec = openapi["paths"][path][method]["responses"][str(response.status_code)]
    schema = spec["content"]["application/json"]["schema"]
    body = response.get_json()
    jsonschema.Draft202012Validator({"components": openapi["components"], **schema}).validate(body)
    return body


def photo_bytes(path: Path) -> bytes:
    return path.read_bytes()


def png_of_size(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(out, "PNG")
    return out.getvalue()


def stamps(n: int) -> list[Path]:
    found = sorted(STAMPS.rglob("*.png"))
    if len(found) < n:
        pytest.skip(f"tux stamps not found under {STAMPS} (Debian tuxpaint-stamps-default)")
    return found[:: max(1, len(found) // n)][:n]


def test_healthz_and_json_errors_for_unknown_paths_and_methods(client, openapi):
    assert check_schema(openapi, client.get("/healthz"), "/healthz", "get") == {"status": "ok"}
    for response, status in ((client.get("/api/v1/nope"), 404), (client.get("/api/v1/analyze"), 405)):
        assert response.status_code == status
        assert response.is_json and set(response.get_json()["error"]) == {"code", "message"}
    assert client.get("/").status_code == 200
    assert "unsafe-inline" not in client.get("/").headers["Content-Security-Policy"]


def test_openapi_document_is_valid_openapi_31(openapi):
    assert openapi["openapi"].startswith("3.1")
    for name, schema in openapi["components"]["schemas"].items():
        jsonschema.Draft202012Validator.check_schema(schema), name
    assert {"/api/v1/analyze", "/api/v1/jobs/{job_id}", "/api/v1/search", "/readyz"} <= set(openapi["paths"])


@pytest.mark.slow
def test_analyze_bus_multipart_finds_bus_and_people_and_the_second_time_runs_nothing(app, client, openapi, bus_jpg):
    gw = app.extensions["lens_gateway"]
    response = client.post("/api/v1/analyze", data={"image": (io.BytesIO(photo_bytes(bus_jpg)), "bus.jpg")},
                           content_type="multipart/form-data")
    body = check_schema(openapi, response, "/api/v1/analyze")
    assert response.status_code == 200 and body["status"] == "done", body  # eager: done at once
    result = body["result"]
    assert (result["width"], result["height"]) == (810, 1080)
    labels = {r["label"] for r in result["regions"]}
    assert {"bus", "person"} <= labels, labels
    assert set(result["timings_ms"]) >= {"detect", "ocr", "total"}
    job = check_schema(openapi, client.get(body["status_url"]), "/api/v1/jobs/{job_id}", "get")
    assert job["status"] == "done" and job["result"] == result

    runs = {name: gw.jobs.task_count(name) for name in ("regions", "text", "merge")}
    assert runs == {"regions": 1, "text": 1, "merge": 1}
    again = client.post("/api/v1/analyze", json={"image": base64.b64encode(photo_bytes(bus_jpg)).decode()})
    body2 = check_schema(openapi, again, "/api/v1/analyze")
    assert again.status_code == 200 and body2["cached"] is True
    assert body2["result"] == result
    assert {name: gw.jobs.task_count(name) for name in runs} == runs, "a cached photo ran a task"
    # Different options are a different result: the cache key includes them.
    third = client.post("/api/v1/analyze", json={"image": base64.b64encode(photo_bytes(bus_jpg)).decode(),
                                                 "max_regions": 1, "text": False})
    assert third.get_json()["result"]["regions"].__len__() == 1
    assert gw.jobs.task_count("regions") == 2


@pytest.mark.parametrize(("header", "field", "expected"), [
    ("pt-BR,pt;q=0.9,en;q=0.8", None, "pt"),
    ("de", "ko", "ko"),
    (None, None, None),
    ("*", None, None),
])
def test_target_language_comes_from_the_field_else_accept_language(client, header, field, expected):
    payload = {"image": base64.b64encode(png_of_size(64, 48)).decode(), "regions": False, "text": False}
    if field:
        payload["target_lang"] = field
    headers = {"Accept-Language": header} if header else {}
    body = client.post("/api/v1/analyze", json=payload, headers=headers).get_json()
    assert body["result"]["options"]["target_lang"] == expected


TINY = base64.b64encode(png_of_size(8, 8)).decode()


@pytest.mark.parametrize(("kwargs", "status", "code"), [
    ({"data": {}, "content_type": "multipart/form-data"}, 400, "missing_image"),
    ({"data": {"image": (io.BytesIO(b""), "x.jpg")}, "content_type": "multipart/form-data"}, 400, "empty_file"),
    ({"data": {"image": (io.BytesIO(b"<svg xmlns='http://www.w3.org/2000/svg'/>"), "x.jpg")},
      "content_type": "multipart/form-data"}, 415, "not_an_image"),
    ({"data": {"image": (io.BytesIO(b"\xff\xd8\xff\xe0garbage"), "x.jpg")},
      "content_type": "multipart/form-data"}, 400, "truncated"),
    ({"json": {"image": "not base64!"}}, 400, "bad_base64"),
    ({"json": {"image": 12}}, 400, "bad_base64"),
    ({"json": ["a list"]}, 400, "bad_json"),
    ({"data": b"{not json", "content_type": "application/json"}, 400, "bad_json"),
    ({"data": b"raw bytes", "content_type": "image/jpeg"}, 415, "unsupported_media_type"),
    ({"json": {"image": TINY, "max_regions": 0}}, 400, "bad_request"),
    ({"json": {"image": TINY, "max_regions": "many"}}, 400, "bad_request"),
    ({"json": {"image": TINY, "target_lang": "english please"}}, 400, "bad_request"),
    ({"json": {"image": TINY, "text": "maybe"}}, 400, "bad_request"),
])
def test_bad_analyze_requests_get_a_4xx_json_error(client, openapi, kwargs, status, code):
    response = client.post("/api/v1/analyze", **kwargs)
    assert response.status_code == status, response.get_json()
    assert check_schema(openapi, response, "/api/v1/analyze")["error"]["code"] == code


def test_upload_over_the_limit_is_413_json(client, server_settings):
    big = b"\xff\xd8\xff" + b"0" * (server_settings.limits.max_upload_bytes * 2)
    response = client.post("/api/v1/analyze", data={"image": (io.BytesIO(big), "big.jpg")},
                           content_type="multipart/form-data")
    assert response.status_code == 413 and response.get_json()["error"]["code"]


def test_unknown_job_is_404_json(client, openapi):
    for job_id in ("0" * 32, "x" * 500, "..%2F..%2Fetc%2Fpasswd"):
        response = client.get(f"/api/v1/jobs/{job_id}")
        assert response.status_code == 404
        assert check_schema(openapi, response, "/api/v1/jobs/{job_id}", "get")["error"]["code"] in (
            "job_not_found", "not_found")


def test_catalog_writes_are_disabled_without_a_configured_key(tmp_path):
    from web.app import create_app
    from web.cli import embedded_settings

    app = create_app(embedded_settings(load_settings(data_dir=tmp_path)))
    response = app.test_client().delete("/api/v1/items/1", headers={"Authorization": "Bearer x"})
    assert response.status_code == 503
    assert "no API key is configured" in response.get_json()["error"]["message"]


@pytest.mark.parametrize("authorization", [None, "Bearer wrong", f"Basic {API_KEY}", f"Bearer {API_KEY}x", "Bearer"])
def test_catalog_writes_need_the_right_bearer_key(client, openapi, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    response = client.put("/api/v1/items/1", json={"title": "x"}, headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    check_schema(openapi, response, "/api/v1/items/{item_id}", "put")


@pytest.mark.slow
def test_catalog_items_through_the_api_then_search_finds_them(client, openapi):
    auth = {"Authorization": f"Bearer {API_KEY}"}
    added = []
    for path in stamps(4):
        response = client.post("/api/v1/items", headers=auth, content_type="multipart/form-data", data={
            "image": (io.BytesIO(path.read_bytes()), path.name), "title": path.stem,
            "extra": '{"source": "tuxpaint"}'})
        item = check_schema(openapi, response, "/api/v1/items", "post")["item"]
        assert response.status_code == 201 and item["title"] == path.stem
        added.append((path, item))
    path, item = added[1]
    got = check_schema(openapi, client.get(f"/api/v1/items/{item['id']}"), "/api/v1/items/{item_id}", "get")
    assert got["item"]["extra"] == {"source": "tuxpaint"}
    thumb = client.get(got["item"]["thumbnail_url"])
    assert thumb.status_code == 200 and thumb.mimetype == "image/jpeg"

    # The stamp itself as the query: its own item is the best match, by image or by job id.
    response = client.post("/api/v1/search", content_type="multipart/form-data",
                           data={"image": (io.BytesIO(path.read_bytes()), path.name), "k": "3"})
    body = check_schema(openapi, response, "/api/v1/search")
    assert body["matches"][0]["item_id"] == item["id"] and body["matches"][0]["score"] > 0.95
    assert len(body["matches"]) == 3
    job = client.post("/api/v1/analyze", json={"image": base64.b64encode(path.read_bytes()).decode(),
                                               "regions": False, "text": False}).get_json()
    with Image.open(path) as im:
        width, height = im.size
    by_job = client.post("/api/v1/search", json={"job_id": job["job_id"], "box": [0, 0, width, height]})
    assert check_schema(openapi, by_job, "/api/v1/search")["matches"][0]["item_id"] == item["id"]

    changed = client.put(f"/api/v1/items/{item['id']}", json={"title": "renamed"}, headers=auth)
    assert check_schema(openapi, changed, "/api/v1/items/{item_id}", "put")["item"]["title"] == "renamed"
    assert client.delete(f"/api/v1/items/{item['id']}", headers=auth).status_code == 200
    gone = client.get(f"/api/v1/items/{item['id']}")
    assert gone.status_code == 404 and check_schema(openapi, gone, "/api/v1/items/{item_id}", "get")
    assert client.delete(f"/api/v1/items/{item['id']}", headers=auth).status_code == 404
    after = client.post("/api/v1/search", json={"job_id": job["job_id"]}).get_json()
    assert item["id"] not in [m["item_id"] for m in after["matches"]]


@pytest.mark.parametrize(("payload", "status", "code"), [
    ({}, 400, "missing_image"),
    ({"job_id": "f" * 32}, 404, "job_not_found"),
    ({"job_id": 5}, 400, "bad_request"),
    ({"image": TINY, "box": [1, 2, 3]}, 400, "bad_box"),
    ({"image": TINY, "box": [50, 50, 60, 60]}, 400, "bad_box"),
    ({"image": TINY, "box": "a,b,c,d"}, 400, "bad_box"),
    ({"image": TINY, "k": 1000}, 400, "bad_request"),
])
def test_bad_search_requests_get_a_4xx_json_error(client, openapi, payload, status, code):
    response = client.post("/api/v1/search", json=payload)
    assert response.status_code == status, response.get_json()
    assert check_schema(openapi, response, "/api/v1/search")["error"]["code"] == code


def test_readyz_reports_each_check(client, openapi):
    response = client.get("/readyz")
    body = check_schema(openapi, response, "/readyz", "get")
    assert set(body["checks"]) == {"redis", "models", "index"}
    assert body["checks"]["redis"]["ok"] is True  # embedded: no Redis needed
    assert (response.status_code == 200) == body["ready"]
    assert body["ready"] or body["reasons"]


def test_embedded_mode_works_with_redis_unreachable(tmp_path):
    import socket

    from web.app import create_app
    from web.cli import embedded_settings

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"redis://127.0.0.1:{s.getsockname()[1]}/0"
    app = create_app(embedded_settings(load_settings(data_dir=tmp_path, redis_url=dead, server=NO_RATE_LIMIT)))
    client = app.test_client()
    body = client.post("/api/v1/analyze", json={"image": TINY, "regions": False, "text": False}).get_json()
    assert body["status"] == "done"
    assert client.get("/readyz").get_json()["checks"]["redis"]["ok"] is True


@pytest.mark.slow
def test_several_images_per_item_through_the_api(client, openapi):
    auth = {"Authorization": f"Bearer {API_KEY}"}
    first, second, third = stamps(60)[40:43]
    path = "/api/v1/items/{item_id}/images"

    def post_image(item_id, data, headers=auth):
        return client.post(f"/api/v1/items/{item_id}/images", headers=headers, content_type="multipart/form-data",
                           data=data)

    made = client.post("/api/v1/items", headers=auth, content_type="multipart/form-data", data={
        "image": (io.BytesIO(first.read_bytes()), first.name), "title": "two views"})
    item = made.get_json()["item"]
    other = client.post("/api/v1/items", headers=auth, content_type="multipart/form-data", data={
        "image": (io.BytesIO(third.read_bytes()), third.name)}).get_json()["item"]

    added = post_image(item["id"], {"image": (io.BytesIO(second.read_bytes()), second.name)})
    body = check_schema(openapi, added, path)
    assert added.status_code == 201 and body["item"]["images"] == 2 and body["image_id"] != item["id"]
    again = post_image(item["id"], {"image": (io.BytesIO(second.read_bytes()), second.name)})
    assert again.status_code == 200 and check_schema(openapi, again, path)["item"]["images"] == 2

    # The second view finds the item, once, at its best image's score.
    found = client.post("/api/v1/search", content_type="multipart/form-data",
                        data={"image": (io.BytesIO(second.read_bytes()), second.name), "k": "5"}).get_json()
    ids = [m["item_id"] for m in found["matches"]]
    assert ids[0] == item["id"] and ids.count(item["id"]) == 1 and found["matches"][0]["score"] > 0.95

    bad = [
        (post_image(item["id"], {"image": (io.BytesIO(second.read_bytes()), second.name)}, headers={}), 401),
        (post_image(987654, {"image": (io.BytesIO(second.read_bytes()), second.name)}), 404),
        (post_image(item["id"], {"image": (io.BytesIO(b"not an image"), "x.jpg")}), 415),
        (post_image(item["id"], {}), 400),
        (post_image(item["id"], {"image": (io.BytesIO(second.read_bytes()), "x.png"), "title": "x"}), 400),
        (post_image(other["id"], {"image": (io.BytesIO(second.read_bytes()), second.name)}), 409),
    ]
    for response, status in bad:
        assert response.status_code == status, response.get_json()
        assert set(check_schema(openapi, response, path)["error"]) == {"code", "message"}
    for added_item in (item, other):
        assert client.delete(f"/api/v1/items/{added_item['id']}", headers=auth).status_code == 200
