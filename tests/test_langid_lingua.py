"""Language of short sign texts: lingua for Latin script, the script itself for CJK and Hangul."""

from __future__ import annotations

import pytest

from lens.langid import identify_language, identify_language_candidates, script_hint


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Saída de emergência", "pt"),
        ("Proibido fumar", "pt"),
        ("Fechado aos domingos", "pt"),
        ("Keep refrigerated after opening", "en"),
        ("Closed on Sundays", "en"),
        ("Notausgang für Fußgänger", "de"),
        ("Sortie de secours à gauche", "fr"),
        ("Phở bò tái chín giá 45.000 đồng", "vi"),
        # PP-OCRv6 drops most Vietnamese letters; the ones left still say it.
        ("Ph bò tái chín giá 45.000 đng Cn thn sàn ưt d trơn trưt", "vi"),
        ("欢迎光临北京饭店", "zh"),
        ("東京駅へようこそ", "ja"),
        ("오늘의 특가 김치찌개", "ko"),
        ("Москва", "ru"),
    ],
)
def test_identify_language_of_sign_text(text, expected):
    language, confidence = identify_language(text)
    assert language == expected
    assert 0.0 < confidence <= 1.0


@pytest.mark.parametrize("text", ["", "   ", "45.000", "12:30 - 18:00", "!!!"])
def test_text_without_letters_has_no_language(text):
    assert identify_language(text) == (None, None)
    assert identify_language_candidates(text) == []


def test_short_ambiguous_text_offers_several_candidates():
    candidates = identify_language_candidates("Wet floor")
    assert len(candidates) >= 2 and "en" in [c[0] for c in candidates]


def test_kanji_only_text_is_a_chinese_hint_and_kana_makes_it_japanese():
    assert script_hint("禁煙")[0] == "zh"
    assert script_hint("禁煙です")[0] == "ja"


@pytest.mark.parametrize(
    ("text", "reason"),
    [("Yuyuan Rd.", "looks like a name"), ("Hougang Ave 4", "looks like a name"), ("R$ 14,90", "a number or a price"),
     ("12:30 - 18:00", "a number or a price"), ("ab", "too short to translate"), ("Proibido fumar", None),
     ("SAÍDA DE EMERGÊNCIA", None), ("Closed on Sundays", None)],
)
def test_untranslatable_blocks_say_why(text, reason):
    from lens.langid import untranslatable_reason

    language, confidence = identify_language(text)
    assert untranslatable_reason(text, confidence) == reason


def test_capitals_are_identified_from_a_sentence_cased_copy():
    assert identify_language("PROIBIDO FUMAR")[0] == "pt"
