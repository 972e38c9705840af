"""Hardening round 2 (issue 13): the result cache never serves a stale analysis. Its key holds
the catalog's state (embedder version, creation, count of committed writes) and, per stage, the
backend, a fingerprint of its model files and the settings that change its output. The embedded
app (Flask test client), real models on real Tux Paint stamps; the configuration tests share
one store between apps so that a second app would find the first one's cached result.
"""

from __future__ import annotations

import base64
import io
import shutil
import subprocess
import sys

import pytest
from test_security_gateway import forget_shared_lens_tasks

KEY = "s3cret-key-for-tests"
AUTH = {"Authorization": f"Bearer {KEY}"}
BASE_ENV = {"LENS_SERVER__RATE_LIMIT_PER_MINUTE": "0", "LENS_API_KEY": KEY}


def make_app(monkeypatch, store, **env: str):
    """An embedded app with these LENS_* settings on top of BASE_ENV, using `store`."""
    from lens.config import load_settings
    from web.app import create_app
    from web.cli import embedded_settings
    from workers.app import make_celery

    for key, value in {**BASE_ENV, **env}.items():
        monkeypatch.setenv(key, value)
    settings = embedded_settings(load_settings())
    for key in env:
        monkeypatch.delenv(key)
    forget_shared_lens_tasks()
    app = create_app(settings, make_celery(settings, store))
    app.extensions["lens_gateway"].celery.finalize()
    forget_shared_lens_tasks()
    return app.test_client()


def analyze(client, photo: bytes, **options):
    body = {"image": base64.b64encode(photo).decode(), "text": False, **options}
    response = client.post("/api/v1/analyze", json=body)
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    return response.get_json()


def listed(body) -> set[int]:
    return {m["item_id"] for r in body["result"]["regions"] for m in r["matches"]}


def add(client, path):
    form = {"image": (io.BytesIO(path.read_bytes()), path.name, "image/png"), "title": path.stem}
    response = client.post("/api/v1/items", data=form, content_type="multipart/form-data", headers=AUTH)
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()["item"]["id"]


def test_catalog_writes_give_a_fresh_analysis(lens_env, monkeypatch, tux_stamps, tmp_path):
    from workers.store import MemoryStore

    client = make_app(monkeypatch, MemoryStore())
    stamps = [s.path for s in tux_stamps[::50][:4]]
    ids = [add(client, p) for p in stamps[:3]]
    photo = stamps[0].read_bytes()
    first = analyze(client, photo)
    assert first.get("cached") is not True
    assert ids[0] in listed(first), "precondition: the photo finds its own catalog item"
    assert analyze(client, photo)["cached"] is True
    # DELETE: the repeated analysis is fresh and no longer lists the removed item.
    assert client.delete(f"/api/v1/items/{ids[0]}", headers=AUTH).status_code == 200
    after_delete = analyze(client, photo)
    assert after_delete.get("cached") is not True
    assert ids[0] not in listed(after_delete)
    assert analyze(client, photo)["cached"] is True
    # PUT (no vector changes, only a title): fresh too, with the new title.
    assert client.put(f"/api/v1/items/{ids[1]}", json={"title": "renamed"}, headers=AUTH).status_code == 200
    after_put = analyze(client, photo)
    assert after_put.get("cached") is not True
    titles = {m["item_id"]: m["title"] for r in after_put["result"]["regions"] for m in r["matches"]}
    assert titles.get(ids[1], "renamed") == "renamed"
    # A write by another process (`lens index add`), which never touches the server's store.
    folder = tmp_path / "more"
    folder.mkdir()
    shutil.copy(stamps[3], folder / stamps[3].name)
    assert analyze(client, photo)["cached"] is True
    out = subprocess.run([sys.executable, "-m", "lens.cli", "index", "add", str(folder)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert analyze(client, photo).get("cached") is not True


@pytest.mark.parametrize("env", [
    {"LENS_REGIONS__MIN_AREA": "0.01"},
    {"LENS_REGIONS__WEIGHT_CONTRAST": "3.0"},  # the default is 2.0
    {"LENS_SALIENCY__BLUR_SIGMA": "0.05"},
    {"LENS_SALIENCY__CENTRE_WEIGHT": "0.5"},
    {"LENS_DETECT__CONFIDENCE": "0.3"},
    {"LENS_INDEX__MIN_SCORE": "0.2"},
    {"LENS_LIMITS__WORK_MAX_SIDE": "1200"},
    {"LENS_OCR__MIN_CONFIDENCE": "0.6"},
])
def test_settings_that_change_the_output_give_a_fresh_analysis(lens_env, monkeypatch, env):
    from malformed import seeds

    from workers.store import MemoryStore

    store = MemoryStore()
    photo = seeds()[0]
    options = {"regions": False, "text": False}  # the key holds every stage; no model needs to run
    assert analyze(make_app(monkeypatch, store), photo, **options).get("cached") is not True
    assert analyze(make_app(monkeypatch, store), photo, **options)["cached"] is True
    assert analyze(make_app(monkeypatch, store, **env), photo, **options).get("cached") is not True
    assert analyze(make_app(monkeypatch, store, **env), photo, **options)["cached"] is True


def test_changed_model_file_bytes_give_a_fresh_analysis_never_loaded_here(lens_env, monkeypatch, tmp_path):
    """Same path, new bytes (a model replaced in place). Regions are off, so nothing loads it."""
    from malformed import seeds

    from workers.store import MemoryStore

    store = MemoryStore()
    weights = tmp_path / "detector.onnx"
    weights.write_bytes(b"first version of the weights")
    env = {"LENS_DETECT__BACKEND": "ultralytics", "LENS_DETECT__MODEL_PATH": str(weights)}
    photo, options = seeds()[0], {"regions": False, "text": False}
    assert analyze(make_app(monkeypatch, store, **env), photo, **options).get("cached") is not True
    assert analyze(make_app(monkeypatch, store, **env), photo, **options)["cached"] is True
    weights.write_bytes(b"second version of the weights, longer")
    assert analyze(make_app(monkeypatch, store, **env), photo, **options).get("cached") is not True


def test_catalog_state_names_the_embedder_version_and_every_write(settings, tux_stamps):
    """The embedder's own version (model and preprocessing, e.g. pad-white-260-v1) is part of
    the catalog state, so vectors of another preprocessing never share a cache entry."""
    from lens.embed import create_embedder
    from lens.index import open_catalog
    from web.catalog import catalog_state

    assert catalog_state(settings) == "none"
    embedder = create_embedder(settings)
    catalog = open_catalog(settings, embedder, create=True)
    states = [catalog_state(settings)]
    assert embedder.version in states[0]
    item = catalog.add_image(tux_stamps[0].path)
    catalog.save()
    states.append(catalog_state(settings))
    catalog.update(item, title="new title")
    catalog.save()
    states.append(catalog_state(settings))
    catalog.remove([item])
    catalog.save()
    states.append(catalog_state(settings))
    catalog.close()
    assert len(set(states)) == 4, states
