"""Which language a block of recognised text is in (ISO 639-1), with the script as a hint.

Lingua (PyPI lingua-language-detector, models inside the wheel) is used in its high-accuracy
mode because signs are short ("Proibido fumar"); it only knows the languages in
`translate.langid_languages`, because each one costs ~25 MB once loaded and a smaller set is
also right more often on two-word strings. Scripts that name their language outright (Hangul,
kana, Han) are decided by the script alone: it is exact and free.
"""

from __future__ import annotations

import threading
import unicodedata
from collections import Counter
from functools import lru_cache

from lens.errors import LensError

# Letters only Vietnamese uses among the Latin-script languages (after NFC).
_VIETNAMESE = set("ạảấầẩẫậắằẳẵặẹẻẽếềểễệỉịọỏốồổỗộớờởỡợụủứừửữựỳỵỷỹơưđ")
# Script of a character -> the language it names (None: the script alone does not say).
_SCRIPT_LANGUAGE = {"HANGUL": "ko", "HIRAGANA": "ja", "KATAKANA": "ja", "CJK": "zh", "THAI": "th",
                    "GREEK": "el", "HEBREW": "he", "ARABIC": "ar", "DEVANAGARI": "hi",
                    "CYRILLIC": "ru", "LATIN": None}

_lock = threading.Lock()


def script_of(ch: str) -> str | None:
    """The Unicode script family of a letter, from its name (LATIN, CJK, HANGUL...)."""
    try:
        name = unicodedata.name(ch)
    except ValueError:
        return None
    first = name.split(" ", 1)[0]
    if first == "CJK" or name.startswith("IDEOGRAPHIC"):
        return "CJK"
    if first in _SCRIPT_LANGUAGE:
        return first
    if first == "HALFWIDTH" and "KATAKANA" in name:
        return "KATAKANA"
    return None


def script_hint(text: str) -> tuple[str | None, float | None, Counter]:
    """(language, share of letters) when the script names the language; also the counts."""
    scripts = Counter(s for s in (script_of(ch) for ch in text if ch.isalpha()) if s)
    letters = sum(scripts.values())
    if not letters:
        return None, None, scripts
    if scripts["HIRAGANA"] or scripts["KATAKANA"]:
        share = (scripts["HIRAGANA"] + scripts["KATAKANA"] + scripts["CJK"]) / letters
        return "ja", round(share, 3), scripts
    script, count = scripts.most_common(1)[0]
    language = _SCRIPT_LANGUAGE.get(script)
    return language, (round(count / letters, 3) if language else None), scripts


@lru_cache(maxsize=1)
def _detector(codes: tuple[str, ...]):
    from lingua import IsoCode639_1, LanguageDetectorBuilder

    iso = []
    for code in codes:
        member = getattr(IsoCode639_1, code.upper(), None)
        if member is None:
            raise LensError(f"translate.langid_languages: lingua does not know language '{code}'")
        iso.append(member)
    if len(iso) < 2:
        raise LensError("translate.langid_languages needs at least two languages")
    return LanguageDetectorBuilder.from_iso_codes_639_1(*iso).build()


def _configured_languages() -> tuple[str, ...]:
    from lens.config import get_settings

    return tuple(get_settings().translate.langid_languages)


def identify_language_candidates(text: str, limit: int = 3) -> list[tuple[str, float]]:
    """Up to `limit` (language, confidence) guesses, best first; [] when there are no letters."""
    text = unicodedata.normalize("NFC", text)
    language, share, scripts = script_hint(text)
    if not scripts:
        return []
    if language is not None:
        return [(language, share or 0.0)]
    # Latin (or unknown) script: ask lingua.
    with _lock:  # lingua loads a language's model on first use; one loader at a time
        values = _detector(_configured_languages()).compute_language_confidence_values(text)
    guesses = [(v.language.iso_code_639_1.name.lower(), round(float(v.value), 3)) for v in values[:limit] if v.value >= 0.005]
    # OCR of Vietnamese often loses the tone marks lingua relies on; its own letters still say it.
    vietnamese = sum(ch in _VIETNAMESE for ch in text.lower())
    if vietnamese >= 2 and (not guesses or guesses[0][0] != "vi"):
        guesses = [("vi", 0.5)] + [g for g in guesses if g[0] != "vi"][: limit - 1]
    return guesses


def identify_language(text: str) -> tuple[str | None, float | None]:
    """(ISO 639-1 code, confidence 0..1) of `text`, or (None, None) when it has no letters."""
    guesses = identify_language_candidates(text)
    return guesses[0] if guesses else (None, None)


def warm_up() -> None:
    """Load lingua's models for the configured languages now (~2 s) instead of on first text."""
    identify_language("Bem-vindo, welcome, willkommen, bienvenue")
