"""Which language a block of recognised text is in (ISO 639-1), with the script as a hint.

Lingua (PyPI lingua-language-detector, models inside the wheel) is used in its high-accuracy
mode because signs are short ("Proibido fumar"); it only knows the languages in
`translate.langid_languages`, because each one costs ~25 MB once loaded and a smaller set is
also right more often on two-word strings. Scripts that name their language outright (Hangul,
kana, Han) are decided by the script alone: it is exact and free.
"""

from __future__ import annotations

import re
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

# Every ISO 639-1 code: a target language outside it is a typo, not a missing model.
ISO_639_1 = frozenset(
    ["aa", "ab", "ae", "af", "ak", "am", "an", "ar", "as", "av", "ay", "az", "ba", "be", "bg", "bh", "bi", "bm", "bn", "bo", "br", "bs", "ca", "ce", "ch", "co", "cr", "cs", "cu", "cv", "cy", "da", "de", "dv", "dz", "ee", "el", "en", "eo", "es", "et", "eu", "fa", "ff", "fi", "fj", "fo", "fr", "fy", "ga", "gd", "gl", "gn", "gu", "gv", "ha", "he", "hi", "ho", "hr", "ht", "hu", "hy", "hz", "ia", "id", "ie", "ig", "ii", "ik", "io", "is", "it", "iu", "ja", "jv", "ka", "kg", "ki", "kj", "kk", "kl", "km", "kn", "ko", "kr", "ks", "ku", "kv", "kw", "ky", "la", "lb", "lg", "li", "ln", "lo", "lt", "lu", "lv", "mg", "mh", "mi", "mk", "ml", "mn", "mr", "ms", "mt", "my", "na", "nb", "nd", "ne", "ng", "nl", "nn", "no", "nr", "nv", "ny", "oc", "oj", "om", "or", "os", "pa", "pi", "pl", "ps", "pt", "qu", "rm", "rn", "ro", "ru", "rw", "sa", "sc", "sd", "se", "sg", "si", "sk", "sl", "sm", "sn", "so", "sq", "sr", "ss", "st", "su", "sv", "sw", "ta", "te", "tg", "th", "ti", "tk", "tl", "tn", "to", "tr", "ts", "tt", "tw", "ty", "ug", "uk", "ur", "uz", "ve", "vi", "vo", "wa", "wo", "xh", "yi", "yo", "za", "zh", "zu"]
)
# A price or a quantity: digits with separators and a currency or unit beside them.
_PRICE = re.compile(
    r"^[\s\-+~]*(?:[$€£¥₩₫]|R\$|US\$|EUR|USD|GBP|JPY|RMB|CNY|VND|kr)?\s*\d[\d\s.,:/\-]*"
    r"\s*(?:[$€£¥₩₫%]|EUR|USD|GBP|VND|đ|kr|kg|g|ml|l|cm|mm|km|h|min|x)?[\s.!]*$",
    re.IGNORECASE,
)
# Street and place abbreviations: a Title-case phrase holding one is an address.
_ADDRESS_WORDS = frozenset(
    ["rd", "st", "ave", "av", "blvd", "dr", "ln", "hwy", "sq", "pl", "rte", "rue", "str", "jl", "jln", "mrt", "stn"]
)


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
    # Latin (or unknown) script: ask lingua, about a sentence-cased copy of capitals (lingua's
    # models are of ordinary text; "SAÍDA" reads as it would in a sentence).
    if is_all_caps(text):
        text = sentence_case(text)
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


def is_all_caps(text: str) -> bool:
    """At least two cased letters, all upper case ("SAÍDA DE EMERGÊNCIA")."""
    cased = [ch for ch in text if ch.isalpha() and ch.lower() != ch.upper()]
    return len(cased) >= 2 and all(ch.isupper() for ch in cased)


def sentence_case(text: str) -> str:
    """"SAÍDA DE EMERGÊNCIA" -> "Saída de emergência": the case models and detectors saw."""
    lower = text.lower()
    for i, ch in enumerate(lower):
        if ch.isalpha():
            return lower[:i] + ch.upper() + lower[i + 1 :]
    return lower


def looks_like_a_name(text: str) -> bool:
    """Title-case words with a number or an address abbreviation ("Yuyuan Rd.", "Hougang Ave
    4"), or two or more Title-case words ("Starbucks Coffee")."""
    words = re.findall(r"[^\W\d_]+", text)
    if not words or is_all_caps(text):
        return False
    titled = all(w[0].isupper() for w in words)
    if not titled:
        return False
    address = any(w.lower() in _ADDRESS_WORDS for w in words) or any(ch.isdigit() for ch in text)
    return address or len(words) >= 2


# Why a block is not translated, as a code (TextBlock.translation_status, which the UI words
# in the viewer's language) and in English words (TextBlock.translation_note).
UNTRANSLATABLE = {
    "number": "a number or a price",
    "no_words": "no words to translate",
    "too_short": "too short to translate",
    "unknown_language": "its language could not be identified",
    "name": "looks like a name",
}


def untranslatable_code(text: str, confidence: float | None, settings=None) -> str | None:
    """Why a block should not be translated (a key of UNTRANSLATABLE: a number, a price, a
    name, too short, language unknown); None when it should be."""
    if settings is None:
        from lens.config import get_settings

        settings = get_settings()
    cfg = settings.translate
    text = unicodedata.normalize("NFC", text).strip()
    letters = [ch for ch in text if ch.isalpha()]
    if not letters or _PRICE.match(text):
        return "number" if any(ch.isdigit() for ch in text) else "no_words"
    _, _, scripts = script_hint(text)
    latin = scripts.most_common(1)[0][0] == "LATIN" if scripts else False
    if not latin:
        return None
    if len(letters) < cfg.langid_min_letters:
        return "too_short"
    if confidence is None or confidence < cfg.langid_min_confidence:
        return "unknown_language"
    if confidence < cfg.langid_name_confidence and looks_like_a_name(text):
        return "name"
    return None


def untranslatable_reason(text: str, confidence: float | None, settings=None) -> str | None:
    """untranslatable_code in words a viewer understands; None when the block should be translated."""
    code = untranslatable_code(text, confidence, settings)
    return None if code is None else UNTRANSLATABLE[code]


def warm_up() -> None:
    """Load lingua's models for the configured languages now (~2 s) instead of on first text."""
    identify_language("Bem-vindo, welcome, willkommen, bienvenue")
