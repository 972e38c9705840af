"""The page in the viewer's language: every word from a message catalog per language
(web/static/i18n/<lang>.json), chosen from the browser's languages, with a visible switch that
is remembered. Catalog checks in Python; the page in real headless Chromium under the strict
CSP (the static server of test_ui_page.py). Screenshots: test-artifacts/ui/i18n-*.png.
"""

from __future__ import annotations

import json
import re

import pytest
from ui_server import ARTIFACTS, STATIC_DIR, VIEWPORTS

I18N = STATIC_DIR / "i18n"
LANGUAGES = ("en", "vi", "pt", "es", "fr", "zh", "ja")
PLACEHOLDER = re.compile(r"\{(\w+)\}")


def catalog(lang: str) -> dict[str, str]:
    return json.loads((I18N / f"{lang}.json").read_text(encoding="utf-8"))


def keys_used() -> set[str]:
    script = (STATIC_DIR / "app.js").read_text()
    html = (STATIC_DIR / "index.html").read_text()
    used = set(re.findall(r"""\bt\(\s*["']([a-z_]+\.[a-z_.]+)["']""", script))
    used |= {f"{k}_{form}" for k in re.findall(r"""\btn\(\s*["']([a-z_]+\.[a-z_.]+)["']""", script)
             for form in ("one", "other")}
    # Keys built from a stage name: `stage.${stage}` and `step.${name}`.
    stages = ("uploaded", "detecting", "searching", "reading_text", "translating")
    used |= {f"stage.{s}" for s in (*stages, "done")} | {f"step.{s}" for s in stages}
    used |= set(re.findall(r'data-i18n(?:-[a-z-]+)?="([^"]+)"', html))
    return used


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_catalog_has_every_key_with_the_same_placeholders(lang):
    english, other = catalog("en"), catalog(lang)
    assert set(other) == set(english)
    for key, text in english.items():
        assert other[key].strip(), (lang, key)
        assert set(PLACEHOLDER.findall(other[key])) == set(PLACEHOLDER.findall(text)), (lang, key)
    if lang != "en":  # translated, not copied (a few words are the same in some languages)
        same = [k for k in english if other[k] == english[k]]
        assert len(same) <= 0.1 * len(english), (lang, same)


def test_every_key_the_page_uses_is_in_the_catalog_and_no_words_are_hard_coded():
    missing = keys_used() - set(catalog("en"))
    assert not missing, missing
    script = (STATIC_DIR / "app.js").read_text()
    code = "\n".join(line for line in script.splitlines() if not line.strip().startswith("//"))
    # Words shown to people go through t(): no English sentence as a literal to a text sink.
    for pattern in (r'UserError\(\s*["`][A-Z]', r'toast\(\s*["`][A-Z]', r'make\([^)]*,\s*["`][A-Z][a-z]+ ',
                    r'textContent\s*=\s*["`][A-Z]', r'setAttribute\("aria-label",\s*["`][A-Z]'):
        assert not re.search(pattern, code), pattern


pytest.importorskip("playwright.sync_api")  # the browser fixture (conftest.py) needs it


def open_page(browser, url: str, locale: str, viewport: str):
    context = browser.new_context(viewport=VIEWPORTS[viewport], locale=locale)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.goto(url)
    page.wait_for_selector("body.ready", state="attached")
    return page, problems


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


@pytest.mark.browser
@pytest.mark.parametrize("viewport", ["phone", "desktop"])
def test_portuguese_browser_gets_the_page_in_portuguese(browser, static_ui, bus_jpg, viewport):
    pt = catalog("pt")
    page, problems = open_page(browser, static_ui.url, "pt-BR", viewport)
    assert page.evaluate("document.documentElement.lang") == "pt"
    assert page.input_value("#ui-lang") == "pt"
    assert page.text_content("#picker-title") == pt["picker.title"]
    assert page.text_content("label[for='file-input']").strip() == pt["picker.choose_file"]
    assert page.title() == pt["page.title"]
    assert page.get_attribute("#target-lang", "aria-label") == pt["target_lang.aria"]
    # Language names in the target picker are in Portuguese too.
    assert page.evaluate("document.querySelector('#target-lang option[value=en]').textContent") == "inglês (en)"
    assert page.evaluate("document.documentElement.scrollWidth") <= VIEWPORTS[viewport]["width"]
    shot(page, f"i18n-pt-start-{viewport}")
    page.set_input_files("#file-input", str(bus_jpg))
    page.wait_for_selector("#error:not([hidden])")
    assert page.text_content("#retry-button") == pt["error.retry"]
    assert page.text_content("#error-new-photo") == pt["error.new_photo"]
    shot(page, f"i18n-pt-error-{viewport}")
    assert problems == []
    page.context.close()


@pytest.mark.browser
def test_japanese_browser_then_the_switch_to_vietnamese_is_remembered(browser, static_ui):
    ja, vi = catalog("ja"), catalog("vi")
    page, problems = open_page(browser, static_ui.url, "ja-JP", "phone")
    assert page.text_content("#picker-title") == ja["picker.title"]
    assert page.evaluate("document.documentElement.lang") == "ja"
    shot(page, "i18n-ja-start-phone")
    page.select_option("#ui-lang", "vi")
    page.wait_for_selector("html[lang='vi']", state="attached")
    assert page.text_content("#picker-title") == vi["picker.title"]
    assert page.text_content("label[for='camera-input']").strip() == vi["picker.take_photo"]
    page.reload()
    page.wait_for_selector("body.ready", state="attached")
    assert page.input_value("#ui-lang") == "vi", "the choice is remembered"
    assert page.text_content("#picker-title") == vi["picker.title"]
    shot(page, "i18n-vi-start-phone")
    assert problems == []
    page.context.close()


@pytest.mark.browser
def test_a_browser_language_without_a_catalog_gets_english(browser, static_ui):
    page, problems = open_page(browser, static_ui.url, "de-DE", "desktop")
    assert page.input_value("#ui-lang") == "en"
    assert page.text_content("#picker-title") == catalog("en")["picker.title"]
    assert problems == []
    page.context.close()
