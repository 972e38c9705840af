"""Hardening round 2 (issue 13), bad input through the real Flask app (embedded, test client):
item ids beyond SQLite's integers, JSON nested deeper than the limit, lone surrogates, over-long
metadata and `extra`, and language tags are 4xx JSON errors, never a 500. None of these requests
reaches a model: the checks come before any work.
"""

from __future__ import annotations

import io
import json

import pytest
from malformed import seeds
from test_security_gateway import make_client

KEY = "s3cret-key-for-tests"
AUTH = {"Authorization": f"Bearer {KEY}"}
PNG = seeds()[2]
HUGE_ID = 2**63  # one past SQLite's largest integer
DEEP = "[" * 5000 + "]" * 5000


@pytest.fixture
def client(lens_env, monkeypatch):
    client, _ = make_client(lens_env, monkeypatch, LENS_SERVER__RATE_LIMIT_PER_MINUTE="0", LENS_API_KEY=KEY)
    return client


def assert_json_error(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)[:300]
    body = response.get_json()
    assert body["error"]["message"], body
    if code:
        assert body["error"]["code"] == code, body
    return body


@pytest.mark.parametrize("item_id", [HUGE_ID, 2**64, 10**30])
@pytest.mark.parametrize(("method", "suffix"), [("get", ""), ("get", "/thumbnail"), ("put", ""), ("delete", "")])
def test_item_ids_beyond_sqlite_integers_are_404(client, method, suffix, item_id):
    response = getattr(client, method)(f"/api/v1/items/{item_id}{suffix}", headers=AUTH,
                                       json={"title": "x"} if method == "put" else None)
    assert_json_error(response, 404, "item_not_found")


def test_huge_item_id_without_the_key_is_still_401(client):
    assert_json_error(client.delete(f"/api/v1/items/{HUGE_ID}"), 401, "unauthorized")


@pytest.mark.parametrize(("method", "path", "headers"), [
    ("post", "/api/v1/analyze", {}),  # no key needed: anyone could send it
    ("post", "/api/v1/search", {}),
    ("post", "/api/v1/items", AUTH),
    ("put", "/api/v1/items/1", AUTH),
])
@pytest.mark.parametrize("body", [DEEP, '{"a":' * 5000 + "1" + "}" * 5000, '{"title": ' + DEEP + "}"])
def test_deeply_nested_json_is_400_on_every_json_endpoint(client, method, path, headers, body):
    response = getattr(client, method)(path, data=body, content_type="application/json", headers=headers)
    assert_json_error(response, 400)


def test_nesting_just_past_the_limit_is_400_and_within_it_is_read(client):
    nested = {"k": 1}
    for _ in range(30):
        nested = {"k": nested}  # 31 levels of objects inside `extra`, 32 with the body
    ok = client.post("/api/v1/items", json={"image": "", "extra": nested}, headers=AUTH)
    assert_json_error(ok, 400, "empty_file")  # got past the depth check: the empty image is the complaint
    too_deep = client.post("/api/v1/items", json={"image": "", "extra": {"k": nested}}, headers=AUTH)
    assert_json_error(too_deep, 400, "json_too_deep")


def test_deep_extra_as_a_form_field_is_400(client):
    form = {"image": (io.BytesIO(PNG), "a.png", "image/png"), "extra": '{"a":' * 3000 + "1" + "}" * 3000}
    response = client.post("/api/v1/items", data=form, content_type="multipart/form-data", headers=AUTH)
    assert_json_error(response, 400, "json_too_deep")


def test_deep_box_as_a_form_field_is_400(client):
    form = {"image": (io.BytesIO(PNG), "a.png", "image/png"), "box": DEEP}
    response = client.post("/api/v1/search", data=form, content_type="multipart/form-data")
    assert_json_error(response, 400, "bad_box")


@pytest.mark.parametrize("field", ["title", "url", "external_id"])
@pytest.mark.parametrize(("method", "path"), [("post", "/api/v1/items"), ("put", "/api/v1/items/1")])
def test_lone_surrogates_are_400(client, method, path, field):
    raw = '{"image": "", "' + field + '": "bad \\ud800 text"}'
    response = getattr(client, method)(path, data=raw, content_type="application/json", headers=AUTH)
    assert_json_error(response, 400, "bad_unicode")


def test_lone_surrogate_in_extra_keys_and_values_is_400(client):
    for raw in ('{"extra": {"\\udfff": 1}}', '{"extra": {"a": ["\\ud800"]}}'):
        response = client.put("/api/v1/items/1", data=raw, content_type="application/json", headers=AUTH)
        assert_json_error(response, 400, "bad_unicode")


@pytest.mark.parametrize(("field", "length"), [("title", 501), ("url", 2049), ("external_id", 257)])
def test_over_long_fields_are_400(client, field, length):
    response = client.put("/api/v1/items/1", json={field: "x" * length}, headers=AUTH)
    body = assert_json_error(response, 400, "too_long")
    assert field in body["error"]["message"]
    huge = client.post("/api/v1/items", json={"image": "", field: "x" * 1_000_000}, headers=AUTH)
    assert_json_error(huge, 400, "too_long")


def test_extra_over_its_limit_is_413(client):
    big = {"blob": "x" * 8200}
    assert_json_error(client.put("/api/v1/items/1", json={"extra": big}, headers=AUTH), 413, "extra_too_large")
    form = {"image": (io.BytesIO(PNG), "a.png", "image/png"), "extra": json.dumps({"x": "y" * 100_000})}
    response = client.post("/api/v1/items", data=form, content_type="multipart/form-data", headers=AUTH)
    assert_json_error(response, 413, "extra_too_large")


def test_limits_come_from_config(lens_env, monkeypatch):
    client, _ = make_client(lens_env, monkeypatch, LENS_API_KEY=KEY, LENS_LIMITS__MAX_TITLE_CHARS="3",
                            LENS_LIMITS__MAX_JSON_DEPTH="3")
    assert_json_error(client.put("/api/v1/items/1", json={"title": "four"}, headers=AUTH), 400, "too_long")
    response = client.put("/api/v1/items/1", json={"extra": {"a": {"b": {}}}}, headers=AUTH)
    assert_json_error(response, 400, "json_too_deep")


@pytest.mark.parametrize("value", ["xx-INVALID", "en-", "pt_BRAZIL", "12", "e n"])
def test_an_invalid_target_lang_is_400_naming_it(client, value):
    response = client.post("/api/v1/analyze", json={"image": "", "target_lang": value})
    body = assert_json_error(response, 400, "bad_request")
    assert repr(value) in body["error"]["message"]


def test_openapi_documents_the_answers_the_api_gives(client):
    doc = client.get("/api/v1/openapi.json").get_json()
    paths = doc["paths"]
    assert "429" in paths["/api/v1/analyze"]["post"]["responses"]
    assert "429" in paths["/api/v1/search"]["post"]["responses"]
    assert {"201", "400", "401", "413", "415"} <= set(paths["/api/v1/items"]["post"]["responses"])
    put = paths["/api/v1/items/{item_id}"]["put"]["responses"]
    assert {"400", "404", "413"} <= set(put)
    assert paths["/api/v1/items/{item_id}"]["put"]["requestBody"]["content"]["application/json"]["schema"]["minProperties"] == 1
    # The empty PUT is that documented 400.
    empty = client.put("/api/v1/items/1", json={}, headers=AUTH)
    assert_json_error(empty, 400, "bad_request")
    item_id = paths["/api/v1/items/{item_id}"]["get"]["parameters"][0]["schema"]
    assert item_id["maximum"] == 2**63 - 1


def test_null_title_clears_it_rather_than_failing_the_write(client):
    # Found by Schemathesis: {"title": null} reached SQLite's NOT NULL constraint (a 500).
    from web.api import _item_fields

    with client.application.test_request_context():
        assert _item_fields({"title": None, "url": None})["title"] == ""


@pytest.mark.parametrize(("line", "complaint"), [
    ('{"file": "a.png", "title": "bad \\ud800"}', "not valid Unicode"),
    ('{"file": "a.png", "title": "' + "x" * 501 + '"}', "'title' is longer than 500"),
    ('{"file": "a.png", "notes": "' + "x" * 9000 + '"}', "exceed 8192 bytes"),
    ('{"file": "a.png", "deep": ' + "[" * 5000 + "]" * 5000 + "}", "nested too deep"),
])
def test_index_add_meta_rows_get_the_api_limits(lens_env, tmp_path, capsys, line, complaint):
    from lens.cli import main

    folder = tmp_path / "shop"
    folder.mkdir()
    (folder / "a.png").write_bytes(PNG)
    meta = tmp_path / "items.jsonl"
    meta.write_text(line + "\n")
    assert main(["index", "add", str(folder), "--meta", str(meta)]) == 2
    assert complaint in capsys.readouterr().err


@pytest.mark.parametrize(("method", "path"), [
    ("post", "/api/v1/items/1/images"), ("post", "/api/v1/items"), ("put", "/api/v1/items/1"),
    ("post", "/api/v1/analyze"), ("post", "/api/v1/search"),
])
def test_a_form_part_without_a_name_is_400(client, method, path):
    # Found by Schemathesis: werkzeug keys a nameless part None, and sorting the field names
    # for the error message raised TypeError (a 500).
    boundary = "lens-test-boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data\r\n\r\nvalue\r\n--{boundary}--\r\n").encode()
    response = getattr(client, method)(path, data=body, headers=AUTH,
                                       content_type=f"multipart/form-data; boundary={boundary}")
    assert_json_error(response, 400, "bad_form")
