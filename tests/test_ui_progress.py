"""The progress screen follows the job's stages, in real headless Chromium against the real
one-process server with real models, two stages slowed down (tests/slow_serve.py) so that each
lasts long enough to be seen. Once over server-sent events, once by polling (EventSource
removed from the page). Screenshots: test-artifacts/ui/progress-*.png.
"""

from __future__ import annotations

import pytest
from ui_server import ARTIFACTS, VIEWPORTS, EmbeddedServer

pytestmark = [pytest.mark.browser, pytest.mark.slow]

pytest.importorskip("playwright.sync_api")  # the browser fixture (conftest.py) needs it

# Both branches start at once and the page shows the dots branch first, so OCR is slowed
# longer than detection: "reading text" must still be going on when the dots are done.
SLOW_S = 2.0
RECORD_LABELS = """() => {
  window.__labels = [];
  const text = document.querySelector('#progress-text');
  new MutationObserver(() => {
    const words = text.textContent;
    if (window.__labels[window.__labels.length - 1] !== words) window.__labels.push(words);
  }).observe(text, {childList: true, characterData: true, subtree: true});
}"""


@pytest.fixture(scope="module")
def slow_server(tmp_path_factory):
    # No catalog is needed to watch detection and OCR; the result cache is off so that the same
    # photo is analysed (not answered from the cache) each time.
    server = EmbeddedServer(tmp_path_factory.mktemp("ui-progress"), slow_stages={"detect": SLOW_S, "ocr": 3 * SLOW_S},
                            env={"LENS_SERVER__RESULT_CACHE_TTL_S": "0"}).start()
    yield server
    server.stop()


@pytest.mark.parametrize(("transport", "viewport"), [("events", "phone"), ("polling", "desktop")])
def test_progress_shows_each_stage_as_the_job_enters_it(browser, slow_server, bus_jpg, transport, viewport):
    context = browser.new_context(viewport=VIEWPORTS[viewport], locale="en-US")
    if transport == "polling":
        context.add_init_script("delete window.EventSource;")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    urls: list[str] = []
    page.on("request", lambda r: urls.append(r.url))
    page.goto(slow_server.url)
    page.wait_for_selector("body.ready", state="attached")
    page.evaluate(RECORD_LABELS)

    page.set_input_files("#file-input", str(bus_jpg))
    page.wait_for_selector("#progress[data-stage='detecting']", timeout=120_000)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"progress-detecting-{viewport}.png"))
    detecting_bar = page.evaluate("document.querySelector('#progress-bar').value")
    page.wait_for_selector("#progress[data-stage='reading_text']", timeout=60_000)
    page.screenshot(path=str(ARTIFACTS / f"progress-reading-{viewport}.png"))
    # Forward only: both branches run at once, so the bar may already count the text branch's
    # stages while the dots branch is shown; it never goes back.
    assert page.evaluate("document.querySelector('#progress-bar').value") >= detecting_bar
    page.wait_for_selector("#result:not([hidden])", timeout=120_000)
    # No catalog here: a dot says so instead of listing unrelated items.
    page.locator("#overlay .dot").first.click()
    page.wait_for_selector("#panel:not([hidden]) .empty-title")
    assert page.text_content("#panel .empty-title") == "No close match in the catalog"
    page.screenshot(path=str(ARTIFACTS / f"no-close-match-{viewport}.png"))

    labels = page.evaluate("window.__labels")
    assert "Finding objects…" in labels and "Reading text…" in labels, labels
    # No order between the two: the branches start together, and a poll that comes before the
    # dots branch has recorded its first stage sees the text branch's.
    events = [u for u in urls if u.endswith("/events")]
    polls = [u for u in urls if "/api/v1/jobs/" in u and not u.endswith("/events")]
    if transport == "events":
        assert events and not polls, urls
    else:
        assert polls and not events, urls
    assert errors == []
    context.close()
