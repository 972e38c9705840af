"""Machine translation of recognised text, chosen per (source, target) language pair."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from lens.config import Settings

if TYPE_CHECKING:
    from lens.translate.service import TranslationService

BACKENDS = {
    "bergamot": "lens.translate.bergamot:BergamotTranslator",
    "marian": "lens.translate.marian:MarianTranslator",
}


class Translator(Protocol):
    name: str
    version: str

    def pairs(self) -> set[tuple[str, str]]:
        """The (source, target) pairs this backend has a model for."""
        ...

    def translate(self, texts: list[str], src: str, dst: str) -> list[str]:
        ...


def create_translation_service(settings: Settings) -> TranslationService:
    """Every installed backend behind one router; the configured backend is asked first."""
    from lens.translate.service import TranslationService

    return TranslationService(settings)
