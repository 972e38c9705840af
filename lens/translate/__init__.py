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


def installed_languages(settings: Settings, source: str | None = None) -> dict:
    """What the installed models can translate, found from the model files alone (nothing is
    loaded): every pair with a model, and per source language the targets reachable directly
    or through `translate.pivot_language`."""
    from lens.translate.service import TranslationService

    service = TranslationService(settings)
    pairs = sorted(service.pairs())
    reachable = service.languages()
    if source is not None:
        reachable = {source: reachable.get(source, [])}
    return {
        "pivot_language": service.pivot,
        "pairs": [{"source": a, "target": b} for a, b in pairs],
        "sources": reachable,
        "targets": sorted({t for ts in service.languages().values() for t in ts}),
    }
