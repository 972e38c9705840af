"""Conventional translations of standard sign notices (sign_phrases.tsv), asked before a model.

Models translate notices word by word ("Proibido fumar" -> "Forbidden smoking"); the wording
people expect on a sign is fixed ("No smoking"). A phrase is matched whole, case-folded and
with its end punctuation trimmed; capitals are restored by the caller. English only for now:
other targets go through the pivot (pt -> en from here, then en -> X by a model).
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache
from pathlib import Path

PHRASES_FILE = Path(__file__).with_name("sign_phrases.tsv")


def _key(text: str) -> str:
    text = unicodedata.normalize("NFC", text).casefold()
    return " ".join(text.split()).strip(" .!")


@lru_cache(maxsize=1)
def _table() -> dict[tuple[str, str, str], str]:
    table = {}
    for raw in PHRASES_FILE.read_text(encoding="utf-8").splitlines():
        if not raw.strip() or raw.startswith("#"):
            continue
        src, phrase, english = raw.split("\t")
        table[(src, "en", _key(phrase))] = english
    return table


def lookup(text: str, src: str, dst: str) -> str | None:
    """The conventional `dst` wording of the notice `text` in `src`, or None."""
    return _table().get((src, dst, _key(text)))
