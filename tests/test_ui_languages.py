"""Honest translation UI (issue 16, point 6), in real headless Chromium against the real
one-process server (`lens serve --embedded`, real OCR, language identification and the packaged
en<->pt Firefox models; no catalog, so no search):

- the target picker offers the languages the server can translate into from the photo's
  language (from GET /api/v1/languages); the others are listed disabled, the reason in their
  label, in the viewer's language;
- an untranslatable block says why in the viewer's language and, when a model is missing,
  shows the command an operator runs to add the pair.

Screenshots: test-artifacts/ui/languages-*.png.
"""

from __future__ import annotations

import json
import urllib.request

import pytest
from ui_server import ARTIFACTS, STATIC_DIR, VIEWPORTS, EmbeddedServer, lens_has_command, sign_photo

pytestmark = [pytest.mark.browser, pytest.mark.slow]

pytest.importorskip("playwright.sync_api")  # the browser fixture (conftest.py) needs it

ANALYSIS_TIMEOUT_MS = 240_000


def catalog(lang: str) -> dict[str, str]:
    return json.loads((STATIC_DIR / "i18n" / f"{lang}.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def lens_server(tmp_path_factory):
    if not lens_has_command("serve"):
        pytest.skip("`lens serve` does not exist yet")
    server = EmbeddedServer(tmp_path_factory.mktemp("ui-languages")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def installed(lens_server) -> dict:
    with urllib.request.urlopen(lens_server.url + "api/v1/languages", timeout=30) as response:
        body = json.loads(response.read())
    pairs = {(p["source"], p["target"]) for p in body["pairs"]}
    if not {("pt", "en"), ("en", "pt")} <= pairs:
        pytest.skip(f"the packaged en<->pt models are not installed: {sorted(pairs)}")
    if ("fr", "en") in pairs or ("fr", "pt") in pairs:
        pytest.skip("a French model is installed here; the test needs a pair without one")
    return body


@pytest.fixture(scope="module")
def signs(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("ui-language-signs")
    return {
        # The sign: two notices stacked, the first in capitals.
        "pt": sign_photo(folder / "pt.jpg", "1001.jpg", ["SAÍDA DE EMERGÊNCIA", "Proibido fumar"], "DejaVuSans-Bold.ttf", 40),
        "fr": sign_photo(folder / "fr.jpg", "1002.jpg", ["Sortie de secours", "Défense de fumer"], "DejaVuSans-Bold.ttf", 40),
    }


def open_page(browser, server, viewport: str, locale: str, stored_target: str | None = None):
    context = browser.new_context(viewport=VIEWPORTS[viewport], locale=locale)
    if stored_target:
        context.add_init_script(f"localStorage.setItem('lens.targetLang', {json.dumps(stored_target)})")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: "Content Security Policy" in msg.text and errors.append(msg.text))
    with page.expect_response("**/api/v1/languages"):
        page.goto(server.url)
    page.wait_for_selector("body.ready", state="attached")
    page.wait_for_function("document.querySelector('#target-lang option[data-available=false]') !== null")
    return context, page, errors


def options(page) -> dict[str, tuple[bool, str]]:
    """Picker options: code -> (enabled, label)."""
    rows = page.evaluate(
        "Array.from(document.querySelectorAll('#target-lang option')).map(o => [o.value, !o.disabled, o.textContent])"
    )
    return {code: (enabled, label) for code, enabled, label in rows}


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"languages-{name}.png"), full_page=True)


def upload(page, server, photo) -> dict:
    """Bring the photo in as a viewer would; the result the page shows, as the API sent it
    (the job the page followed, read again)."""
    with page.expect_response("**/api/v1/analyze") as answer:
        page.set_input_files("#file-input", str(photo))
    page.wait_for_selector("#result:not([hidden]), #error:not([hidden])", timeout=ANALYSIS_TIMEOUT_MS)
    if page.is_visible("#error"):
        pytest.fail(f"the page shows an error: {page.text_content('#error-text')}\n{server.log()}")
    body = answer.value.json()
    if isinstance(body.get("result"), dict):
        return body["result"]
    with urllib.request.urlopen(server.url.rstrip("/") + body["status_url"], timeout=30) as response:
        job = json.loads(response.read())
    assert job["status"] == "done", job
    return job["result"]


def open_block(page, predicate: str) -> None:
    """Tap the first text outline whose aria-label passes the JS predicate (label => bool)."""
    index = page.evaluate(
        f"Array.from(document.querySelectorAll('#overlay .text-box')).findIndex(b => ({predicate})(b.getAttribute('aria-label')))"
    )
    assert index >= 0, page.evaluate("Array.from(document.querySelectorAll('#overlay .text-box')).map(b => b.getAttribute('aria-label'))")
    page.locator("#overlay .text-box").nth(index).click()
    page.wait_for_selector("#panel:not([hidden]) .text-original")


def test_picker_offers_what_the_server_translates_and_the_portuguese_sign_reads_right(browser, lens_server, installed, signs):
    en = catalog("en")
    context, page, errors = open_page(browser, lens_server, "desktop", "en-US")
    # Before a photo: a target counts when some installed model reaches it.
    before = options(page)
    reachable = set(installed["targets"])
    assert {code for code, (ok, _) in before.items() if ok} == reachable >= {"en", "pt"}
    assert before["de"] == (False, en["target.unavailable"].format(language="German (de)", reason=en["target.not_installed"]))

    blocks = upload(page, lens_server, signs["pt"])["text_blocks"]
    sign = next(b for b in blocks if "EMERG" in b["text"].upper())
    assert sign["language"] == "pt" and sign["translation_status"] == "translated", sign
    lines = [ln.strip().casefold() for ln in sign["translation"].split("\n")]
    assert "emergency exit" in lines and "no smoking" in lines, sign["translation"]
    # Only what the server reaches from Portuguese is offered now; the rest says why.
    after = options(page)
    assert {code for code, (ok, _) in after.items() if ok} == set(installed["sources"]["pt"]) == {"en"}
    assert after["pt"] == (False, en["target.unavailable"].format(language="Portuguese (pt)", reason=en["target.already"]))
    assert after["de"][1] == en["target.unavailable"].format(
        language="German (de)", reason=en["target.no_model_from"].format(source="Portuguese"))
    assert page.is_hidden("#target-note"), "English is available: nothing to explain"
    page.click("#mode-translate")
    # Drawn in place with the sign's two notices on two lines, as on the sign.
    drawn = page.evaluate("Array.from(document.querySelectorAll('#translations-layer .translation-text')).map(n => n.innerText)")
    assert any([ln.casefold() for ln in text.split("\n")] == lines for text in drawn), drawn
    shot(page, "pt-sign-translated-desktop")
    assert errors == [], errors
    context.close()


def test_a_target_without_a_model_says_so_and_shows_the_operator_command(browser, lens_server, installed, signs):
    en = catalog("en")
    # The viewer's remembered choice is German: nothing installed translates into it.
    context, page, errors = open_page(browser, lens_server, "phone", "en-US", stored_target="de")
    assert page.input_value("#target-lang") == "de"
    upload(page, lens_server, signs["pt"])
    assert page.is_hidden("#target-note"), "Search mode: the photo keeps the room"
    page.click("#mode-text")
    note = page.text_content("#target-note")
    assert page.is_visible("#target-note")
    assert note.startswith(en["target.note"].format(
        language="German", reason=en["target.no_model_from"].format(source="Portuguese")))
    assert en["target.note_available"].format(languages="English") in note
    assert page.is_disabled("#mode-translate")
    assert page.get_attribute("#mode-translate", "title") == en["hint.no_model"].format(source="Portuguese", target="German")

    open_block(page, "label => label.toUpperCase().includes('EMERG')")
    assert page.text_content("#panel .text-note") == en["status.no_model"].format(source="Portuguese", target="German")
    # pt -> en exists; en -> de is the hop to add.
    assert page.text_content("#panel .operator-command") == "lens models prepare --fetch translate:en-de"
    assert page.text_content("#panel .operator-title") == en["operator.how"]
    shot(page, "pt-sign-to-german-phone")
    assert errors == [], errors
    context.close()


def test_a_french_sign_for_a_portuguese_viewer_is_explained_in_portuguese(browser, lens_server, installed, signs):
    pt = catalog("pt")
    context, page, errors = open_page(browser, lens_server, "desktop", "pt-PT")
    assert page.input_value("#target-lang") == "pt"
    blocks = upload(page, lens_server, signs["fr"])["text_blocks"]
    sign = next(b for b in blocks if "secours" in b["text"].lower())
    assert sign["language"] == "fr" and sign["translation"] is None and sign["translation_status"] == "no_model", sign

    options_now = options(page)
    assert not any(ok for ok, _ in options_now.values()), "nothing translates French here"
    assert options_now["pt"][1] == pt["target.unavailable"].format(
        language="português (pt)", reason=pt["target.no_model_from"].format(source="francês"))
    page.click("#mode-text")
    assert page.text_content("#target-note").endswith(pt["target.note_none"].format(source="francês"))

    open_block(page, "label => label.toLowerCase().includes('secours')")
    assert page.text_content("#panel .text-note") == pt["status.no_model"].format(source="francês", target="português")
    # fr -> en is missing; en -> pt is installed: the operator adds one model.
    assert page.text_content("#panel .operator-command") == "lens models prepare --fetch translate:fr-en"
    assert page.text_content("#panel .operator-title") == pt["operator.how"]
    shot(page, "fr-sign-pt-viewer-desktop")
    assert errors == [], errors
    context.close()
