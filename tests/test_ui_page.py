"""The page itself in real headless Chromium, served under the gateway's strict CSP by a static
server whose API always answers one error (no results are produced here; those come from the
real server in test_ui_e2e.py). Checks: no CSP violations or script errors, nothing wider than
a phone, every way of bringing a photo in, downscaling with EXIF orientation, error words and
retry, the target language following the browser.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from ui_server import ARTIFACTS, STATIC_DIR, VIEWPORTS

pytestmark = pytest.mark.browser

pytest.importorskip("playwright.sync_api")  # the browser fixture (conftest.py) needs it


def new_page(browser, viewport: str, locale: str = "en-US"):
    context = browser.new_context(viewport=VIEWPORTS[viewport], locale=locale)
    page = context.new_page()
    page.problems = []  # CSP violations, uncaught errors, failed loads of our own files
    page.on("pageerror", lambda exc: page.problems.append(f"pageerror: {exc}"))
    page.on("console", lambda msg: msg.type == "error" and "status of 503" not in msg.text
            and page.problems.append(f"console: {msg.text}"))
    return page


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def jpeg_bytes(image: Image.Image, **save_args) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90, **save_args)
    return buffer.getvalue()


def test_static_files_have_no_inline_script_style_or_handlers():
    html = (STATIC_DIR / "index.html").read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "inline <script> would be blocked by the CSP"
    assert "<style" not in html and " style=" not in html
    assert not re.search(r"\son[a-z]+\s*=", html), "inline event handler attribute"
    script = (STATIC_DIR / "app.js").read_text()
    # Untrusted text must never be parsed as HTML.
    for sink in (".innerHTML", ".outerHTML", "insertAdjacentHTML(", "document.write(", "eval(", "new Function("):
        assert sink not in script, sink


@pytest.mark.parametrize("viewport", ["phone", "desktop"])
def test_page_loads_under_strict_csp_and_fits_the_screen(browser, static_ui, viewport):
    page = new_page(browser, viewport)
    page.goto(static_ui.url)
    page.wait_for_selector("body.ready", state="attached")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= VIEWPORTS[viewport]["width"], f"page is {width}px wide, wider than the screen"
    for selector in ("#camera-input", "#file-input"):
        assert page.get_attribute(selector, "accept") == "image/*"
    assert page.get_attribute("#camera-input", "capture") == "environment"
    # The visible buttons open the hidden inputs; keyboard users reach them with Tab.
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") in {"ui-lang", "target-lang", "camera-input", "file-input"}
    shot(page, f"page-start-{viewport}")
    assert page.problems == []
    page.context.close()


@pytest.mark.parametrize("viewport", ["phone", "desktop"])
def test_server_error_is_shown_in_words_with_a_retry_that_resends(browser, static_ui, bus_jpg, viewport):
    page = new_page(browser, viewport)
    page.goto(static_ui.url)
    page.set_input_files("#file-input", str(bus_jpg))
    page.wait_for_selector("#error:not([hidden])")
    assert page.text_content("#error-text") == "The analysis service is not running."
    shot(page, f"page-error-{viewport}")
    assert len(static_ui.requests) == 1
    page.click("#retry-button")
    page.wait_for_selector("#error:not([hidden])")
    assert len(static_ui.requests) == 2
    assert static_ui.requests[1].form()["image"] == static_ui.requests[0].form()["image"]
    page.click("#error-new-photo")
    assert page.is_visible("#picker")
    assert page.problems == []
    page.context.close()


def test_large_exif_rotated_photo_is_downscaled_upright_before_upload(browser, static_ui, tmp_path):
    # Stored 3000x2000, left half red and right half blue, EXIF orientation 6 ("rotate 90°
    # clockwise to view"): viewed upright it is 2000x3000 with red on top.
    pixels = np.zeros((2000, 3000, 3), np.uint8)
    pixels[:, :1500] = (220, 30, 30)
    pixels[:, 1500:] = (30, 30, 220)
    exif = Image.Exif()
    exif[0x0112] = 6
    photo = tmp_path / "rotated.jpg"
    photo.write_bytes(jpeg_bytes(Image.fromarray(pixels), exif=exif.tobytes()))

    page = new_page(browser, "desktop")
    page.goto(static_ui.url)
    page.set_input_files("#file-input", str(photo))
    page.wait_for_selector("#error:not([hidden])")
    sent = Image.open(io.BytesIO(static_ui.requests[0].form()["image"]))
    assert sent.size == (1365, 2048)  # longest side 2048, portrait
    upright = np.asarray(sent.convert("RGB"), dtype=int)
    top, bottom = upright[200, 680], upright[1850, 680]
    assert top[0] > 150 and top[2] < 90, f"top should be red, got {top}"
    assert bottom[2] > 150 and bottom[0] < 90, f"bottom should be blue, got {bottom}"
    page.context.close()


def test_small_photo_is_sent_unchanged(browser, static_ui, bus_jpg):
    page = new_page(browser, "desktop")
    page.goto(static_ui.url)
    page.set_input_files("#file-input", str(bus_jpg))
    page.wait_for_selector("#error:not([hidden])")
    assert static_ui.requests[0].form()["image"] == Path(bus_jpg).read_bytes()
    page.context.close()


@pytest.mark.parametrize("how", ["drop", "paste"])
def test_photo_can_be_dropped_or_pasted(browser, static_ui, bus_jpg, how):
    page = new_page(browser, "desktop")
    page.goto(static_ui.url)
    data = list(Path(bus_jpg).read_bytes())
    page.evaluate(
        """([how, data]) => {
            const file = new File([new Uint8Array(data)], 'bus.jpg', {type: 'image/jpeg'});
            const transfer = new DataTransfer();
            transfer.items.add(file);
            if (how === 'drop') {
              document.querySelector('#drop-zone').dispatchEvent(
                new DragEvent('drop', {dataTransfer: transfer, bubbles: true, cancelable: true}));
            } else {
              document.dispatchEvent(
                new ClipboardEvent('paste', {clipboardData: transfer, bubbles: true, cancelable: true}));
            }
        }""",
        [how, data],
    )
    page.wait_for_selector("#error:not([hidden])")
    assert len(static_ui.requests) == 1
    assert static_ui.requests[0].path == "/api/v1/analyze"
    assert static_ui.requests[0].form()["image"] == bytes(data)
    page.context.close()


@pytest.mark.parametrize(("locale", "expected"), [("pt-BR", "pt"), ("en-GB", "en"), ("de-DE", "de")])
def test_target_language_follows_the_browser_and_can_be_changed(browser, static_ui, bus_jpg, locale, expected):
    page = new_page(browser, "desktop", locale=locale)
    page.goto(static_ui.url)
    assert page.input_value("#target-lang") == expected
    page.set_input_files("#file-input", str(bus_jpg))
    page.wait_for_selector("#error:not([hidden])")
    assert static_ui.requests[-1].form()["target_lang"] == expected.encode()
    page.select_option("#target-lang", "fr")
    page.reload()
    assert page.input_value("#target-lang") == "fr", "the choice is remembered"
    page.set_input_files("#file-input", str(bus_jpg))
    page.wait_for_selector("#error:not([hidden])")
    assert static_ui.requests[-1].form()["target_lang"] == b"fr"
    page.context.close()
