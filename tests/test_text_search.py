"""Search by words and multisearch: the keyword match, the real MiniLM sentence model, the text
index kept in step with catalog writes, and POST /api/v1/search with `text` in embedded mode
against a catalog of real GroceryStore products (iconic photo, name, description)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from lens.config import REPO_ROOT, ServerConfig, load_settings
from lens.index.keywords import KeywordIndex, normalise

API_KEY = "test-key-text-0123456789"
GROCERY = REPO_ROOT.parent / "shared" / "data" / "grocery"
NO_RATE_LIMIT = {"rate_limit_per_minute": 0} if "rate_limit_per_minute" in ServerConfig.model_fields else {}
PRODUCTS = ("Granny-Smith", "Royal-Gala", "Banana", "Oatly-Oat-Milk", "Arla-Standard-Milk",
            "Tropicana-Apple-Juice", "Yellow-Onion", "Zucchini")


def grocery_products(names=PRODUCTS) -> list[dict]:
    """Name, description and iconic photo of GroceryStore products, read in place."""
    classes = GROCERY / "classes.csv"
    if not classes.is_file():
        pytest.skip(f"GroceryStore data not found at {GROCERY}")
    out = {}
    with classes.open(newline="") as fh:
        for row in csv.DictReader(fh):
            name = row["Class Name (str)"]
            if name in names:
                out[name] = {"title": name.replace("-", " "),
                             "description": (GROCERY / row["Product Description Path (str)"].lstrip("/")).read_text().strip(),
                             "image": GROCERY / row["Iconic Image Path (str)"].lstrip("/")}
    return [out[n] for n in names]


# -- keyword match ----------------------------------------------------------------------------
def test_normalise_drops_accents_case_and_punctuation():
    assert normalise("Crème-Fraîche, 35% FAT!") == ["creme", "fraiche", "35", "fat"]
    assert normalise("  ") == []


@pytest.mark.parametrize(("query", "expected"), [
    ("granny smith", 0), ("grany smtih", 0), ("royal gal", 1), ("tropic aple juice", 3),
    ("oat milk", 2), ("BANANA", 4),
])
def test_keyword_match_forgives_typos_and_shortened_words(query, expected):
    index = KeywordIndex(["Granny Smith", "Royal Gala", "Oatly Oat Milk", "Tropicana Apple Juice", "Banana"],
                         ["green apple", "red apple", "oat drink", "juice of apples", "yellow fruit"])
    scores = index.scores(query)
    assert int(np.argmax(scores)) == expected, scores
    assert scores.min() >= 0.0 and scores.max() <= 1.0


def test_keyword_match_title_words_outweigh_description_words():
    index = KeywordIndex(["Apple Juice", "Orange Juice"], ["", "made without apple"])
    scores = index.scores("apple")
    assert scores[0] > scores[1] > 0


def test_keyword_match_of_unrelated_words_is_zero():
    index = KeywordIndex(["Banana"], ["yellow"])
    assert index.scores("qqqq xyzzy")[0] == 0.0
    assert index.scores("")[0] == 0.0


# -- the sentence model -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def text_embedder():
    from lens.textembed import create_text_embedder

    return create_text_embedder(load_settings(models_dir=REPO_ROOT / "var" / "models"))


def test_minilm_loads_offline_from_its_wheel_and_embeds_by_meaning(text_embedder, monkeypatch):
    vectors = text_embedder.embed_texts(["a green sour apple", "Granny Smith apples", "semi-skimmed milk", ""])
    assert vectors.shape == (4, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.1
    assert text_embedder.embed_texts([]).shape == (0, 384)
    assert text_embedder.name == "minilm" and text_embedder.version.startswith("53aa5117")


# -- the text index beside the catalog --------------------------------------------------------
@pytest.fixture(scope="module")
def grocery_catalog(tmp_path_factory):
    """A catalog of eight real products built through the library (images embedded for real)."""
    from lens.embed import create_embedder
    from lens.index import open_catalog

    settings = load_settings(data_dir=tmp_path_factory.mktemp("text-catalog"), models_dir=REPO_ROOT / "var" / "models")
    catalog = open_catalog(settings, create_embedder(settings), create=True)
    for product in grocery_products():
        catalog.add_image(product["image"], title=product["title"], extra={"description": product["description"]})
    catalog.save()
    yield settings, catalog
    catalog.close()


def test_text_index_follows_catalog_writes_and_rebuilds_when_missing(grocery_catalog, text_embedder):
    from lens.index.text import TEXT_INDEX_FILE, TextIndex

    settings, catalog = grocery_catalog
    embedded: list[int] = []

    class Counting:
        name, version, dim = text_embedder.name, text_embedder.version, text_embedder.dim

        def embed_texts(self, texts):
            embedded.append(len(texts))
            return text_embedder.embed_texts(texts)

    index = TextIndex(settings.catalog_dir, Counting(), settings.text_search)
    assert index.sync(catalog) and embedded == [len(PRODUCTS)]
    assert not index.sync(catalog), "no catalog write since: nothing to do"
    top = index.search("granny smth", 3)
    by_title = {i.id: i.title for i in catalog.items()}
    assert by_title[top[0].item_id] == "Granny Smith"

    # An update re-embeds that item only; a removal drops it; an add embeds only the new one.
    zucchini = next(i for i, t in by_title.items() if t == "Zucchini")
    catalog.update(zucchini, title="Courgette", extra={"description": "a green summer squash"})
    catalog.save()
    embedded.clear()
    assert index.sync(catalog) and embedded == [1]
    hits = index.search("courgette", 1)
    assert hits[0].item_id == zucchini
    banana = next(i for i, t in by_title.items() if t == "Banana")
    catalog.remove([banana])
    catalog.save()
    embedded.clear()
    index.sync(catalog)
    assert embedded == []
    assert banana not in [h.item_id for h in index.search("banana", 8)]

    # The file gone (or another process's fresh index): rebuilt from the catalog.
    fresh = TextIndex(settings.catalog_dir, Counting(), settings.text_search)
    (settings.catalog_dir / TEXT_INDEX_FILE).unlink()
    embedded.clear()
    assert fresh.sync(catalog) and embedded == [len(PRODUCTS) - 1]
    reopened = TextIndex(settings.catalog_dir, Counting(), settings.text_search)
    embedded.clear()
    reopened.sync(catalog)
    assert embedded == [], "a second process reads the vectors, it does not embed them again"


def test_text_index_of_another_embedder_is_rebuilt(grocery_catalog, text_embedder):
    from lens.index.text import TextIndex

    settings, catalog = grocery_catalog
    TextIndex(settings.catalog_dir, text_embedder, settings.text_search).sync(catalog)
    embedded: list[int] = []

    class Other:
        name, version, dim = "minilm", "another-version", text_embedder.dim

        def embed_texts(self, texts):
            embedded.append(len(texts))
            return text_embedder.embed_texts(texts)

    TextIndex(settings.catalog_dir, Other(), settings.text_search).sync(catalog)
    assert embedded == [catalog.count()]
    TextIndex(settings.catalog_dir, text_embedder, settings.text_search).sync(catalog)  # back, for other tests


# -- the API ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from web.app import create_app
    from web.cli import embedded_settings

    data = tmp_path_factory.mktemp("text-server")
    return create_app(embedded_settings(load_settings(
        data_dir=data, models_dir=REPO_ROOT / "var" / "models", api_key=API_KEY, server=NO_RATE_LIMIT)))


@pytest.fixture(scope="module")
def client(app):
    return app.test_client()


@pytest.fixture(scope="module")
def openapi(app):
    return app.test_client().get("/api/v1/openapi.json").get_json()


def check_schema(openapi, response, path="/api/v1/search", method="post") -> dict:
    spec = openapi["paths"][path][method]["responses"][str(response.status_code)]
    schema = spec["content"]["application/json"]["schema"]
    body = response.get_json()
    jsonschema.Draft202012Validator({"components": openapi["components"], **schema}).validate(body)
    return body


def test_text_search_with_no_catalog_is_a_409_that_says_what_to_do(client, openapi):
    response = client.post("/api/v1/search", json={"text": "banana"})
    assert response.status_code == 409
    error = check_schema(openapi, response)["error"]
    assert error["code"] == "no_catalog" and "lens index add" in error["message"]


@pytest.fixture(scope="module")
def products_in_api(client):
    auth = {"Authorization": f"Bearer {API_KEY}"}
    added = {}
    for product in grocery_products():
        response = client.post("/api/v1/items", headers=auth, content_type="multipart/form-data", data={
            "image": (io.BytesIO(product["image"].read_bytes()), product["image"].name),
            "title": product["title"], "extra": json.dumps({"description": product["description"]})})
        assert response.status_code == 201, response.get_json()
        added[product["title"]] = response.get_json()["item"]["id"]
    return added


@pytest.mark.parametrize(("text", "title"), [
    ("granny smith", "Granny Smith"), ("oatly oat mlk", "Oatly Oat Milk"), ("tropicana aple", "Tropicana Apple Juice"),
    ("vegetable for a stew", "Zucchini"), ("drink made from oats", "Oatly Oat Milk"),
])
def test_search_by_words_finds_the_product(client, openapi, products_in_api, text, title):
    response = client.post("/api/v1/search", json={"text": text, "k": 3})
    body = check_schema(openapi, response)
    assert response.status_code == 200 and body["text"] == text
    assert body["matches"][0]["item_id"] == products_in_api[title], [m["title"] for m in body["matches"]]
    assert len(body["matches"]) <= 3 and "image_id" not in body


def test_search_by_words_follows_an_update_and_a_delete(client, openapi, products_in_api):
    auth = {"Authorization": f"Bearer {API_KEY}"}
    onion = products_in_api["Yellow Onion"]
    assert client.put(f"/api/v1/items/{onion}", json={"title": "Shallot bulb"}, headers=auth).status_code == 200
    found = check_schema(openapi, client.post("/api/v1/search", json={"text": "shallot"}))
    assert found["matches"][0]["item_id"] == onion
    assert client.put(f"/api/v1/items/{onion}", json={"title": "Yellow Onion"}, headers=auth).status_code == 200
    banana = products_in_api["Banana"]
    assert check_schema(openapi, client.post("/api/v1/search", json={"text": "banana"}))["matches"][0]["item_id"] == banana
    image = next(p for p in grocery_products() if p["title"] == "Banana")["image"]
    assert client.delete(f"/api/v1/items/{banana}", headers=auth).status_code == 200
    after = check_schema(openapi, client.post("/api/v1/search", json={"text": "banana"}))
    assert banana not in [m["item_id"] for m in after["matches"]]
    response = client.post("/api/v1/items", headers=auth, content_type="multipart/form-data", data={
        "image": (io.BytesIO(image.read_bytes()), image.name), "title": "Banana"})
    products_in_api["Banana"] = response.get_json()["item"]["id"]


def test_multisearch_words_re_rank_the_photo_shortlist(client, openapi, products_in_api):
    """The Granny Smith photo alone ranks it first; with the words 'royal gala' the shortlist
    (the same items) is re-ranked so that Royal Gala comes first."""
    photo = next(p for p in grocery_products() if p["title"] == "Granny Smith")["image"]
    alone = check_schema(openapi, client.post("/api/v1/search", content_type="multipart/form-data", data={
        "image": (io.BytesIO(photo.read_bytes()), photo.name), "k": "5"}))
    assert alone["matches"][0]["item_id"] == products_in_api["Granny Smith"]
    response = client.post("/api/v1/search", content_type="multipart/form-data", data={
        "image": (io.BytesIO(photo.read_bytes()), photo.name), "k": "5", "text": "royal gala"})
    both = check_schema(openapi, response)
    assert response.status_code == 200 and both["text"] == "royal gala" and "image_id" in both
    assert both["matches"][0]["item_id"] == products_in_api["Royal Gala"]
    assert {m["item_id"] for m in both["matches"]} <= {m["item_id"] for m in check_schema(openapi, client.post(
        "/api/v1/search", content_type="multipart/form-data",
        data={"image": (io.BytesIO(photo.read_bytes()), photo.name), "k": "50"}))["matches"]}


@pytest.mark.parametrize(("payload", "code"), [
    ({"text": ""}, "empty_text"),
    ({"text": "   \n "}, "empty_text"),
    ({"text": "x" * 201}, "text_too_long"),
    ({"text": 5}, "bad_text"),
    ({"text": ["apple"]}, "bad_text"),
    ({"text": "apple", "box": [0, 0, 10, 10]}, "box_without_image"),
])
def test_bad_text_searches_get_a_400_that_names_the_problem(client, openapi, payload, code):
    response = client.post("/api/v1/search", json=payload)
    assert response.status_code == 400
    assert check_schema(openapi, response)["error"]["code"] == code


def test_analyze_never_loads_the_text_model(grocery_catalog, bus_jpg):
    from lens.image import decode_image
    from lens.pipeline import AnalyzeOptions, Pipeline

    settings, _ = grocery_catalog
    pipeline = Pipeline(settings)
    result = pipeline.analyze(decode_image(Path(bus_jpg).read_bytes()), AnalyzeOptions(text=False))
    assert result.regions and "catalog" in pipeline._stages
    assert "textembed" not in pipeline._stages and "text_index" not in pipeline._stages


def test_minilm_options_name_a_model_folder_and_a_typo_is_refused(text_embedder):
    from lens.config import ConfigError
    from lens.models import require
    from lens.textembed import create_text_embedder

    with pytest.raises(ConfigError, match="textembed backend 'minilm' options: model_folder"):
        load_settings(text_search={"options": {"model_folder": "/tmp"}})
    folder = require("all-minilm-l6-v2", load_settings()).parent
    other = create_text_embedder(load_settings(text_search={"options": {"model_dir": str(folder)}}))
    assert other.version == f"{folder}:mean-pool-l2-v1"
    assert np.allclose(other.embed_texts(["oat milk"]), text_embedder.embed_texts(["oat milk"]), atol=1e-5)
