"""End to end in real headless Chromium against the real one-process server
(`lens serve --embedded`, real models, a catalog of real Tux Paint photo stamps, the demo
catalog's source, in a temporary data dir).

Each step's screenshot goes to test-artifacts/ui/e2e-*.png.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from ui_server import (
    ARTIFACTS,
    SIGN_COLOUR,
    VIEWPORTS,
    EmbeddedServer,
    build_stamp_catalog,
    lens_has_command,
    sign_photo,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

pytest.importorskip("playwright.sync_api")  # the browser fixture (conftest.py) needs it

XSS_TEXT = "<img src=x onerror=alert(1)>"
ANALYSIS_TIMEOUT_MS = 240_000


# -- fixtures ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lens_server(tmp_path_factory):
    for command in ("serve", "index"):
        if not lens_has_command(command):
            pytest.skip(f"`lens {command}` does not exist yet")
    data_dir = tmp_path_factory.mktemp("ui-e2e")
    build_stamp_catalog(data_dir, tmp_path_factory.mktemp("ui-stamps"))
    server = EmbeddedServer(data_dir).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def text_photos(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("ui-text-photos")
    return {
        "pt": sign_photo(folder / "pt.jpg", "1001.jpg", ["Bem-vindo ao mercado"], "DejaVuSans-Bold.ttf", 40),
        "en": sign_photo(folder / "en.jpg", "1002.jpg", ["Fresh bread every morning"], "DejaVuSans-Bold.ttf", 36),
        "xss": sign_photo(folder / "xss.jpg", "1003.jpg", [XSS_TEXT], "DejaVuSansMono-Bold.ttf", 32),
    }


# -- helpers -----------------------------------------------------------------------------------
class Session:
    """One page on the real server that remembers the API's answers."""

    def __init__(self, browser, server: EmbeddedServer, viewport: str, locale: str = "en-US") -> None:
        self.server = server
        self.viewport = viewport
        self.context = browser.new_context(viewport=VIEWPORTS[viewport], locale=locale)
        self.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url.rstrip("/"))
        self.page = self.context.new_page()
        self.results: list[dict] = []
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        self.page.on("response", self._remember)
        self.streamed_jobs: list[tuple[str, int]] = []  # job URL, results seen when it began
        self.page.on("request", self._remember_stream)
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.page.on("console", lambda msg: "Content Security Policy" in msg.text and self.errors.append(msg.text))
        self.page.goto(server.url)

    def _remember_stream(self, request) -> None:
        # The page follows a job over its event stream (/api/v1/jobs/<id>/events); the stream's
        # body may be cut when the page closes it after `end`, so the job is read afterwards.
        if request.url.endswith("/events"):
            self.streamed_jobs.append((request.url.removesuffix("/events"), len(self.results)))

    def _remember(self, response) -> None:
        if response.url.endswith("/events"):
            return
        if "/api/v1/analyze" in response.url or "/api/v1/jobs/" in response.url:
            try:
                body = response.json()
            except Exception:
                return
            if isinstance(body, dict) and isinstance(body.get("result"), dict):
                self.results.append(body["result"])

    def analyze(self, photo: Path) -> dict:
        before = len(self.results)
        self.page.set_input_files("#file-input", str(photo))
        self.wait_for_result(before)
        return self.results[-1]

    def wait_for_result(self, before: int) -> None:
        page = self.page
        page.wait_for_selector("#result:not([hidden]), #error:not([hidden])", timeout=ANALYSIS_TIMEOUT_MS)
        if page.is_visible("#error"):
            pytest.fail(f"the page shows an error: {page.text_content('#error-text')}\n{self.server.log()}")
        if len(self.results) == before and self.streamed_jobs and self.streamed_jobs[-1][1] >= before:
            import json
            import urllib.request

            with urllib.request.urlopen(self.streamed_jobs[-1][0], timeout=30) as response:
                job = json.loads(response.read())
            if job.get("status") == "done" and isinstance(job.get("result"), dict):
                self.results.append(job["result"])
        assert len(self.results) > before, "the page shows a result the API did not send"

    def shot(self, step: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"e2e-{step}-{self.viewport}.png"))

    def close(self) -> None:
        assert self.errors == [], self.errors
        self.context.close()


@pytest.fixture
def session_factory(browser, lens_server):
    sessions: list[Session] = []

    def make(viewport: str, locale: str = "en-US") -> Session:
        sessions.append(Session(browser, lens_server, viewport, locale))
        return sessions[-1]

    yield make
    for s in sessions:
        s.close()


def screen_box(page, image_box, width: int, height: int) -> tuple[float, float, float, float]:
    frame = page.locator("#photo-frame").bounding_box()
    sx, sy = frame["width"] / width, frame["height"] / height
    x1, y1, x2, y2 = image_box
    return frame["x"] + x1 * sx, frame["y"] + y1 * sy, frame["x"] + x2 * sx, frame["y"] + y2 * sy


def panel_scores(page) -> list[float]:
    return [float(t.split()[-1]) for t in page.locator("#panel .match-score").all_text_contents()]


# -- tests -------------------------------------------------------------------------------------
@pytest.mark.parametrize("viewport", ["phone", "desktop"])
def test_bus_photo_shows_dots_and_a_dot_opens_its_matches(session_factory, bus_jpg, viewport):
    s = session_factory(viewport)
    page = s.page
    result = s.analyze(bus_jpg)
    dots = page.locator("#overlay .dot")
    assert dots.count() == len(result["regions"]) >= 4
    for i in range(dots.count()):
        assert dots.nth(i).text_content() == str(i + 1)
        assert dots.nth(i).get_attribute("aria-label").startswith(f"Region {i + 1}: ")
    assert page.evaluate("document.documentElement.scrollWidth") <= VIEWPORTS[viewport]["width"]
    s.shot("bus-dots")

    dots.first.click()
    page.wait_for_selector("#panel:not([hidden]) .match", timeout=10_000)
    expected = sorted(result["regions"][0]["matches"], key=lambda m: -m["score"])
    titles = page.locator("#panel .match-title").all_text_contents()
    assert titles == [m["title"] or f"Item {m['item_id']}" for m in expected]
    assert all(t.strip() for t in titles)
    link = page.locator("#panel a.match-link").first
    assert link.get_attribute("href") == expected[0]["url"]
    assert link.get_attribute("rel") == "noopener noreferrer"
    scores = panel_scores(page)
    assert scores == sorted(scores, reverse=True), "best match first"
    # Thumbnails are real images served by the gateway.
    page.wait_for_function(
        "() => { const img = document.querySelector('#panel .match-thumb');"
        " return img && img.complete && img.naturalWidth > 0; }", timeout=10_000)
    assert page.locator("#panel").is_visible()
    s.shot("bus-matches")

    # The keyboard reaches every dot; Enter opens it.
    dots.nth(1).focus()
    page.keyboard.press("Enter")
    page.wait_for_function("document.querySelector('#panel-title').textContent.startsWith('2.')")
    page.keyboard.press("Escape")
    assert page.locator("#panel").is_hidden()


@pytest.mark.parametrize("viewport", ["phone", "desktop"])
def test_dragging_a_box_searches_that_crop(session_factory, bus_jpg, viewport):
    s = session_factory(viewport)
    page = s.page
    result = s.analyze(bus_jpg)
    width, height = result["width"], result["height"]
    target = result["regions"][0]["box"]
    x1, y1, x2, y2 = screen_box(page, target, width, height)
    # A drag starts on the photo itself, not on a dot or a text outline lying in that corner.
    assert page.evaluate("([x, y]) => !document.elementFromPoint(x, y).closest('button')", [x1 + 2, y1 + 2])
    with page.expect_request("**/api/v1/search") as request_info:
        page.mouse.move(x1 + 2, y1 + 2)
        page.mouse.down()
        page.mouse.move((x1 + x2) / 2, (y1 + y2) / 2, steps=4)
        page.mouse.move(x2 - 2, y2 - 2, steps=4)
        page.mouse.up()
    request = request_info.value
    page.wait_for_selector("#panel:not([hidden]) .match", timeout=60_000)
    assert page.text_content("#panel-title") == "Selected area"
    assert len(panel_scores(page)) >= 1
    assert panel_scores(page) == sorted(panel_scores(page), reverse=True)
    sent = request.post_data_json if "json" in (request.headers.get("content-type") or "") else None
    if sent is not None:  # by job id; otherwise the photo was sent again with the box
        tolerance = 0.03 * max(width, height)
        assert all(abs(a - b) <= tolerance for a, b in zip(sent["box"], target, strict=True)), sent
    s.shot("drag-box")


@pytest.mark.parametrize("viewport", ["phone", "desktop"])
def test_portuguese_sign_is_read_translated_drawn_in_place_and_copied(session_factory, text_photos, viewport):
    s = session_factory(viewport)
    page = s.page
    assert page.input_value("#target-lang") == "en", "follows the browser's language"
    result = s.analyze(text_photos["pt"])
    blocks = result["text_blocks"]
    assert page.locator("#overlay .text-box").count() == len(blocks) >= 1
    index, block = next((i, b) for i, b in enumerate(blocks) if "mercado" in b["text"].lower())
    assert block["language"] == "pt"
    assert block["translation"], block
    assert any(word in block["translation"].lower() for word in ("welcome", "market")), block
    s.shot("pt-text-outlines")

    page.locator("#overlay .text-box").nth(index).click()
    page.wait_for_selector("#panel:not([hidden]) .text-original")
    assert page.text_content("#panel .text-original") == block["text"]
    assert "Portuguese" in page.text_content("#panel .text-meta")
    assert page.text_content("#panel .text-translation") == block["translation"]
    s.shot("pt-text-panel")

    page.click("#panel button:has-text('Copy text')")
    page.wait_for_selector("#toast:not([hidden])")
    assert page.evaluate("navigator.clipboard.readText()") == block["text"]

    page.click("#mode-translate")
    assert page.get_attribute("#mode-translate", "aria-pressed") == "true"
    drawn = page.locator("#translations-layer .translation")
    assert drawn.count() == sum(1 for b in blocks if b["translation"])
    fit = page.evaluate(
        """() => [...document.querySelectorAll('#translations-layer .translation')].map(n => ({
            text: n.textContent, bg: getComputedStyle(n).backgroundColor,
            size: parseFloat(getComputedStyle(n.firstChild).fontSize),
            fits: n.firstChild.scrollWidth <= n.clientWidth + 1 && n.firstChild.offsetHeight <= n.clientHeight + 1,
            visible: n.offsetWidth > 0 }))""")
    ours = next(f for f in fit if f["text"] == block["translation"])
    assert ours["visible"] and ours["fits"] and ours["size"] >= 6, ours
    # Filled with the sign's own colour, sampled from the photo.
    rgb = [int(v) for v in ours["bg"].removeprefix("rgb(").rstrip(")").split(",")]
    assert all(abs(a - b) <= 30 for a, b in zip(rgb, SIGN_COLOUR, strict=True)), ours["bg"]
    s.shot("pt-translated-in-place")


def test_english_sign_is_translated_into_the_language_the_user_picks(session_factory, text_photos):
    s = session_factory("desktop")
    page = s.page
    result = s.analyze(text_photos["en"])
    block = next(b for b in result["text_blocks"] if "bread" in b["text"].lower())
    assert block["language"] == "en"
    before = len(s.results)
    page.select_option("#target-lang", "pt")  # re-analyses for the new target
    s.wait_for_result(before)
    block = next(b for b in s.results[-1]["text_blocks"] if "bread" in b["text"].lower())
    assert block["translation"] and block["translation"] != block["text"], block
    assert any(word in block["translation"].lower() for word in ("pão", "pao", "manhã", "fresco")), block
    page.locator("#overlay .text-box").first.click()
    page.wait_for_selector("#panel:not([hidden]) .text-translation")
    assert "Portuguese" in page.text_content("#panel .text-heading")
    page.click("#copy-all-button")
    page.wait_for_selector("#toast:not([hidden])")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied == "\n\n".join(b["text"] for b in s.results[-1]["text_blocks"] if b["text"])
    s.shot("en-to-pt")


@pytest.mark.parametrize("viewport", ["desktop"])
def test_text_that_looks_like_html_is_shown_as_text_and_never_runs(session_factory, text_photos, viewport):
    s = session_factory(viewport)
    page = s.page
    page.evaluate("() => { window.__alerts = 0; window.alert = () => { window.__alerts += 1; }; }")
    result = s.analyze(text_photos["xss"])
    block = next((b for b in result["text_blocks"] if "onerror" in b["text"].replace(" ", "")), None)
    assert block is not None, f"OCR did not read the markup: {[b['text'] for b in result['text_blocks']]}"
    index = result["text_blocks"].index(block)
    page.locator("#overlay .text-box").nth(index).click()
    page.wait_for_selector("#panel:not([hidden]) .text-original")
    assert page.text_content("#panel .text-original") == block["text"]
    if block.get("translation"):
        page.click("#mode-translate")
        drawn = page.locator("#translations-layer .translation").nth(0)
        assert drawn.text_content() == block["translation"]
        assert drawn.locator("img").count() == 0
    page.wait_for_timeout(500)  # an onerror handler would have fired by now
    assert s.dialogs == []
    assert page.evaluate("window.__alerts") == 0
    # The only images on the page are the photo and match thumbnails.
    stray = page.evaluate(
        "[...document.images].filter(i => i.id !== 'photo' && !i.classList.contains('match-thumb')).length")
    assert stray == 0
    assert page.locator("#panel .text-original img").count() == 0
    s.shot("html-text-is-text")


def test_gateway_page_has_no_inline_code_and_a_strict_csp_if_any(lens_server):
    import urllib.request

    with urllib.request.urlopen(lens_server.url) as response:
        csp = response.headers.get("Content-Security-Policy")
        html = response.read().decode()
    assert 'src="/static/app.js"' in html
    if csp:
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp, csp


# -- lens-like interaction ---------------------------------------------------------------------
@pytest.mark.parametrize("viewport", ["phone", "desktop"])
def test_selection_corners_resize_the_box_and_search_again_on_release(session_factory, bus_jpg, viewport):
    s = session_factory(viewport)
    page = s.page
    result = s.analyze(bus_jpg)
    page.locator("#overlay .dot").first.click()
    page.wait_for_selector("#selection:not([hidden]) .handle[data-corner='se']")
    first_box = result["regions"][0]["box"]
    handle = page.locator("#selection .handle[data-corner='se']").bounding_box()
    assert handle["width"] >= 24 and handle["height"] >= 24
    corner = page.locator("#selection").bounding_box()
    cx, cy = handle["x"] + handle["width"] / 2, handle["y"] + handle["height"] / 2
    with page.expect_request("**/api/v1/search") as request_info:
        page.mouse.move(cx, cy)
        page.mouse.down()
        page.mouse.move(cx - corner["width"] * 0.3, cy - corner["height"] * 0.3, steps=5)
        page.mouse.up()
    page.wait_for_selector("#panel:not([hidden]) .match, #panel:not([hidden]) .empty", timeout=60_000)
    assert page.text_content("#panel-title") == "Selected area"
    sent = request_info.value.post_data_json
    assert sent["box"][0] == pytest.approx(first_box[0], abs=0.02 * result["width"])
    assert sent["box"][2] < first_box[2] - 0.15 * (first_box[2] - first_box[0]), (sent, first_box)
    assert sent["box"][3] < first_box[3] - 0.15 * (first_box[3] - first_box[1]), (sent, first_box)
    assert page.is_visible("#selection"), "the box stays, to be adjusted again"
    s.shot("handles-resized")


@pytest.mark.parametrize("viewport", ["phone", "desktop"])
def test_focus_returns_to_the_dot_and_the_panel_stays_in_the_window(session_factory, bus_jpg, viewport):
    s = session_factory(viewport)
    page = s.page
    s.analyze(bus_jpg)
    dot = page.locator("#overlay .dot").nth(1)
    before = page.locator("#photo-frame").bounding_box()
    dot.click()
    page.wait_for_selector("#panel:not([hidden]) .match", timeout=10_000)
    after = page.locator("#photo-frame").bounding_box()
    size = VIEWPORTS[viewport]
    panel = page.locator("#panel").bounding_box()
    assert panel["x"] >= 0 and panel["x"] + panel["width"] <= size["width"] + 0.5, panel
    assert panel["y"] + panel["height"] <= size["height"] + 0.5, panel
    if viewport == "desktop":  # on a phone the photo shrinks into the half above the sheet
        assert abs(after["x"] - before["x"]) <= 1 and abs(after["width"] - before["width"]) <= 1, (before, after)
    s.shot("panel-open")
    page.keyboard.press("Escape")
    assert page.locator("#panel").is_hidden()
    assert page.evaluate("document.activeElement.classList.contains('dot')")
    assert page.evaluate("document.activeElement.textContent") == "2"
    dot.click()
    page.wait_for_selector("#panel:not([hidden])")
    page.click("#panel-close")
    assert page.evaluate("document.activeElement.textContent") == "2", "the close button gives focus back too"


@pytest.mark.parametrize("viewport", ["phone", "desktop"])
def test_search_text_translate_modes_and_the_actions_of_a_text_block(session_factory, text_photos, viewport):
    s = session_factory(viewport)
    page = s.page
    result = s.analyze(text_photos["pt"])
    assert page.get_attribute("#mode-search", "aria-pressed") == "true"
    s.shot("mode-search")

    page.click("#mode-text")
    assert page.get_attribute("#mode-text", "aria-pressed") == "true"
    assert page.locator("#overlay .dot:visible").count() == 0
    boxes = page.locator("#overlay .text-box")
    assert boxes.count() == len(result["text_blocks"]) >= 1
    # Every outline takes taps over at least 24 x 24 px, however small the text is drawn.
    hits = page.evaluate("""() => [...document.querySelectorAll('#overlay .text-box')].map((box) => {
        const r = box.getBoundingClientRect(), cx = r.left + r.width / 2, cy = r.top + r.height / 2;
        const probes = [[cx, cy - 11.5], [cx, cy + 11.5], [cx - 11.5, cy], [cx + 11.5, cy]];
        return {w: r.width, h: r.height, ok: probes.every(([x, y]) => {
            const hit = document.elementFromPoint(x, y); return hit === box || (hit && hit.closest('.text-box') === box); })};
    })""")
    assert all(h["ok"] for h in hits), hits
    s.shot("mode-text")

    index = next(i for i, b in enumerate(result["text_blocks"]) if "mercado" in b["text"].lower())
    boxes.nth(index).click()
    page.wait_for_selector("#panel:not([hidden]) .text-original")
    assert page.locator("#panel button:has-text('Copy text')").is_enabled()
    listen = page.locator("#panel button.listen").first
    voices = page.evaluate("speechSynthesis.getVoices().filter(v => v.lang.startsWith('pt')).length")
    if voices:
        assert listen.is_enabled()
    else:  # headless Chromium has no voices: disabled, and it says why
        assert listen.is_disabled()
        assert "Portuguese" in page.text_content("#panel .action-note")
    search_text = page.locator("#panel button:has-text('Search this text')")
    assert search_text.count() == 1
    if search_text.is_disabled():
        assert page.is_visible("#panel .search-text-action .action-note")
    s.shot("text-actions")
    page.keyboard.press("Escape")
    assert page.evaluate("document.activeElement.classList.contains('text-box')")

    page.click("#mode-translate")
    assert page.get_attribute("#mode-translate", "aria-pressed") == "true"
    assert page.is_visible("#translations-layer")
    assert page.locator("#overlay .dot:visible").count() == 0
    s.shot("mode-translate")
    page.click("#mode-search")
    assert page.is_hidden("#translations-layer")
    assert page.locator("#overlay .dot:visible").count() == len(result["regions"])
