"""Search by words in real headless Chromium against the real one-process server: the start
screen's "search the catalog" field, and "add words to this search" in a result panel
(multisearch), over a catalog of real GroceryStore products (iconic photo, name, description)
indexed with `lens index add --meta`. Screenshots: test-artifacts/ui/textsearch-*.png.
"""

from __future__ import annotations

import csv
import subprocess

import pytest
from ui_server import ARTIFACTS, VIEWPORTS, EmbeddedServer, lens_command, lens_env

from lens.config import REPO_ROOT

pytestmark = [pytest.mark.browser, pytest.mark.slow]

pytest.importorskip("playwright.sync_api")  # the browser fixture (conftest.py) needs it

GROCERY = REPO_ROOT.parent / "shared" / "data" / "grocery"
PRODUCTS = ("Granny-Smith", "Royal-Gala", "Pink-Lady", "Banana", "Oatly-Oat-Milk", "Arla-Standard-Milk",
            "Tropicana-Apple-Juice", "Yellow-Onion", "Zucchini", "Alpro-Vanilla-Soyghurt",
            "Yoggi-Strawberry-Yoghurt", "Red-Bell-Pepper")
ANSWER_TIMEOUT_MS = 240_000


@pytest.fixture(scope="module")
def grocery_server(tmp_path_factory):
    if not (GROCERY / "classes.csv").is_file():
        pytest.skip(f"GroceryStore data not found at {GROCERY}")
    data_dir = tmp_path_factory.mktemp("ui-text-data")
    work = tmp_path_factory.mktemp("ui-text-products")
    folder = work / "products"
    folder.mkdir()
    iconic = {}
    with (GROCERY / "classes.csv").open(newline="") as fh, (work / "items.csv").open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["file", "title", "description"])
        for row in csv.DictReader(fh):
            name = row["Class Name (str)"]
            if name not in PRODUCTS:
                continue
            image = GROCERY / row["Iconic Image Path (str)"].lstrip("/")
            description = (GROCERY / row["Product Description Path (str)"].lstrip("/")).read_text().strip()
            (folder / image.name).symlink_to(image)
            iconic[name] = image
            writer.writerow([image.name, name.replace("-", " "), description])
    done = subprocess.run(lens_command() + ["index", "add", str(folder), "--meta", str(work / "items.csv")],
                          env=lens_env(data_dir), cwd=data_dir, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    server = EmbeddedServer(data_dir).start()
    server.iconic = iconic
    yield server
    server.stop()


@pytest.fixture
def open_page(browser, grocery_server):
    contexts = []
    problems: list[str] = []

    def make(viewport: str, locale: str = "en-US"):
        context = browser.new_context(viewport=VIEWPORTS[viewport], locale=locale)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda exc: problems.append(str(exc)))
        page.goto(grocery_server.url)
        page.wait_for_selector("body.ready", state="attached")
        return page

    yield make
    for context in contexts:
        context.close()
    assert problems == []


def shot(page, name: str) -> None:
    # Thumbnails load lazily: wait for those in view, so the picture shows what a person sees.
    page.wait_for_function("""() => [...document.querySelectorAll('.match-thumb')].every((img) =>
        img.complete || img.getBoundingClientRect().top > window.innerHeight)""", timeout=30_000)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


@pytest.mark.parametrize("viewport", ["phone", "desktop"])
def test_the_search_field_finds_a_product_by_a_misspelt_name(open_page, viewport):
    page = open_page(viewport)
    field = page.locator("#catalog-search-input")
    assert field.is_visible() and field.get_attribute("placeholder").startswith("Search the catalog")
    # Empty: says what to do, sends nothing.
    sent = []
    page.on("request", lambda r: "/api/v1/search" in r.url and sent.append(r))
    page.click("#catalog-search-button")
    assert "Type a few words" in page.text_content("#catalog-results")
    assert sent == []

    with page.expect_request("**/api/v1/search") as request_info:
        field.fill("grany smth")
        field.press("Enter")
    assert request_info.value.post_data_json == {"text": "grany smth"}
    page.wait_for_selector("#catalog-results .match", timeout=ANSWER_TIMEOUT_MS)
    titles = page.locator("#catalog-results .match-title").all_text_contents()
    assert titles[0] == "Granny Smith", titles
    assert "grany smth" in page.text_content("#catalog-results-title")
    # Every result row and the field itself are comfortable tap targets.
    for selector in ("#catalog-search-input", "#catalog-search-button", "#catalog-results .match-link"):
        box = page.locator(selector).first.bounding_box()
        assert box["height"] >= 24 and box["width"] >= 24, selector
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    shot(page, f"textsearch-field-{viewport}")


@pytest.mark.parametrize("viewport", ["phone", "desktop"])
def test_add_words_to_a_box_search_re_ranks_its_matches(open_page, grocery_server, viewport):
    """The Granny Smith photo, the whole of it boxed: Granny Smith first. Then the words
    'royal gala' are added: the same box is searched with them and Royal Gala comes first."""
    page = open_page(viewport)
    page.set_input_files("#file-input", str(grocery_server.iconic["Granny-Smith"]))
    page.wait_for_selector("#result:not([hidden]), #error:not([hidden])", timeout=ANSWER_TIMEOUT_MS)
    assert page.is_visible("#result"), page.text_content("#error-text")
    frame = page.locator("#photo-frame").bounding_box()
    x1, y1 = frame["x"] + 3, frame["y"] + 3
    x2, y2 = frame["x"] + frame["width"] - 3, frame["y"] + frame["height"] - 3
    # The drag starts on the photo, not on a dot (a dot may sit anywhere; pick a free corner).
    for x, y in ((x1, y1), (x2, y1), (x1, y2)):
        if page.evaluate("([x, y]) => !document.elementFromPoint(x, y).closest('button')", [x, y]):
            start = (x, y)
            break
    end = (x2 if start[0] == x1 else x1, y2 if start[1] == y1 else y1)
    with page.expect_request("**/api/v1/search"):
        page.mouse.move(*start)
        page.mouse.down()
        page.mouse.move((start[0] + end[0]) / 2, (start[1] + end[1]) / 2, steps=4)
        page.mouse.move(*end, steps=4)
        page.mouse.up()
    page.wait_for_selector("#panel:not([hidden]) .match", timeout=ANSWER_TIMEOUT_MS)
    assert page.locator("#panel .match-title").first.text_content() == "Granny Smith"
    refine = page.locator("#panel form.refine")
    assert refine.is_visible() and "Add words to this search" in refine.text_content()

    with page.expect_request("**/api/v1/search") as request_info:
        refine.locator("input").fill("royal gala")
        refine.locator("input").press("Enter")
    request = request_info.value
    if "json" in (request.headers.get("content-type") or ""):
        sent = request.post_data_json
        assert sent["text"] == "royal gala" and len(sent["box"]) == 4 and sent["job_id"]
    else:  # the photo went again with the box and the words
        assert b"royal gala" in (request.post_data_buffer or b"")
    page.wait_for_selector("#panel .refine-note:has-text('royal gala')", timeout=ANSWER_TIMEOUT_MS)
    titles = page.locator("#panel .match-title").all_text_contents()
    assert titles[0] == "Royal Gala", titles
    # The re-ranked first match is in view below the words (the form sits above the list).
    first = page.locator("#panel .match").first.bounding_box()
    assert first["y"] + first["height"] <= VIEWPORTS[viewport]["height"], first
    panel = page.locator("#panel").bounding_box()
    assert panel["x"] >= 0 and panel["x"] + panel["width"] <= VIEWPORTS[viewport]["width"] + 1
    shot(page, f"textsearch-refine-{viewport}")

    # A dot's panel offers the same.
    dots = page.locator("#overlay .dot:visible")
    if dots.count():
        page.keyboard.press("Escape")
        dots.first.click()
        page.wait_for_selector("#panel:not([hidden]) form.refine")


def test_the_search_field_speaks_the_viewers_language(open_page):
    page = open_page("phone", locale="pt-BR")
    assert page.get_attribute("#catalog-search-input", "placeholder").startswith("Pesquisar o catálogo")
    assert page.text_content("#catalog-search-button") == "Pesquisar"
    # The catalog's text is English (and so is the sentence model): a product name is the query.
    page.fill("#catalog-search-input", "oatly")
    page.press("#catalog-search-input", "Enter")
    page.wait_for_selector("#catalog-results .match", timeout=ANSWER_TIMEOUT_MS)
    assert page.text_content("#catalog-results-title") == "Itens do catálogo para “oatly”"
    assert page.locator("#catalog-results .match-title").first.text_content() == "Oatly Oat Milk"
    shot(page, "textsearch-field-pt-phone")
