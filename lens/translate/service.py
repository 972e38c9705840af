"""Routes each text block to a translator for its (source, target) pair.

Per pair, the first backend with a model wins (the configured one first); with no direct model
the pair goes through `translate.pivot_language` when both hops exist. A block whose pair has
no model, whose language is unknown, or which is already in the target language keeps
`translation: null` with a note saying why: one untranslatable sign never fails the photo.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

from lens.config import Settings
from lens.errors import LensError
from lens.registry import load_backend
from lens.types import TextBlock

log = logging.getLogger(__name__)

# A candidate language this unsure (or less) is not worth translating from when a likelier
# one has a model: two-word signs ("Wet floor") split lingua's vote between neighbours.
_MIN_CANDIDATE_CONFIDENCE = 0.1
_UNSURE_BELOW = 0.5
_NO_SPACE_LANGUAGES = {"zh", "ja", "th"}
_LANGUAGE_TAG = re.compile(r"^([a-zA-Z]{2,3})(?:[-_][a-zA-Z0-9]+)*$")


def normalize_language(tag: str | None) -> str | None:
    """'pt-BR' -> 'pt', 'EN' -> 'en'; None for anything that is not a language tag."""
    if not tag:
        return None
    m = _LANGUAGE_TAG.match(tag.strip())
    return m.group(1).lower() if m else None


class TranslationService:
    def __init__(self, settings: Settings, backends: Sequence[object] | None = None) -> None:
        from lens.translate import BACKENDS

        self.pivot = normalize_language(settings.translate.pivot_language)
        if backends is None:
            preferred = settings.translate.backend
            names = [preferred] + [n for n in BACKENDS if n != preferred]
            backends = []
            for name in names:
                try:
                    backends.append(load_backend("translate", name, BACKENDS)(settings))
                except ImportError as exc:  # an optional backend whose package is absent
                    log.warning("translation backend %s unavailable: %s", name, exc)
        self.backends = list(backends)

    def pairs(self) -> set[tuple[str, str]]:
        return {pair for b in self.backends for pair in b.pairs()}

    def warm_up(self) -> None:
        for backend in self.backends:
            warm_up = getattr(backend, "warm_up", None)
            if warm_up is not None:
                warm_up()

    def route(self, src: str, dst: str) -> list[tuple[object, str, str]] | None:
        """The hops (translator, from, to) for a pair, or None when no model serves it."""
        direct = self.route_direct(src, dst)
        if direct:
            return [direct]
        pivot = self.pivot
        if pivot and pivot not in (src, dst):
            first, second = self.route_direct(src, pivot), self.route_direct(pivot, dst)
            if first and second:
                return [first, second]
        return None

    def route_direct(self, src: str, dst: str) -> tuple[object, str, str] | None:
        for backend in self.backends:
            if (src, dst) in backend.pairs():
                return (backend, src, dst)
        return None

    def translate(self, texts: list[str], src: str, dst: str) -> list[str]:
        hops = self.route(src, dst)
        if hops is None:
            raise LensError(f"no translation model for {src}->{dst}")
        for backend, a, b in hops:
            texts = backend.translate(texts, a, b)
        return texts

    def _choose_source(self, block: TextBlock, target: str) -> tuple[str | None, float | None]:
        language, confidence = block.language, block.language_confidence
        if language is None or confidence is None or confidence >= _UNSURE_BELOW:
            return language, confidence
        from lens.langid import identify_language_candidates

        for candidate, value in identify_language_candidates(block.text):
            if value < _MIN_CANDIDATE_CONFIDENCE:
                break
            if candidate == target or self.route(candidate, target):
                return candidate, value
        return language, confidence

    def translate_blocks(self, blocks: Sequence[TextBlock], target: str | None) -> list[TextBlock]:
        """Blocks with translation / translation_language / translation_note filled in."""
        dst = normalize_language(target)
        out: list[TextBlock] = list(blocks)
        if dst is None:
            note = f"unknown target language {target!r}"
            return [b.model_copy(update={"translation": None, "translation_note": note}) for b in out]
        work: dict[tuple[str, str], list[int]] = {}
        for i, block in enumerate(out):
            src, confidence = self._choose_source(block, dst)
            if src != block.language:
                block = out[i] = block.model_copy(update={"language": src, "language_confidence": confidence})
            if src is None:
                out[i] = block.model_copy(update={"translation": None, "translation_note": "language not identified"})
            elif src == dst:
                out[i] = block.model_copy(update={"translation": None, "translation_note": f"already in {dst}"})
            elif self.route(src, dst) is None:
                note = f"no translation model for {src}->{dst}"
                out[i] = block.model_copy(update={"translation": None, "translation_note": note})
            else:
                work.setdefault((src, dst), []).append(i)
        for (src, dst_), indices in work.items():
            joiner = "" if src in _NO_SPACE_LANGUAGES else " "
            texts = [joiner.join(out[i].text.split("\n")) for i in indices]
            try:
                translations = self.translate(texts, src, dst_)
            except LensError as exc:
                for i in indices:
                    out[i] = out[i].model_copy(update={"translation": None, "translation_note": f"translation failed: {exc.message}"})
                continue
            for i, text in zip(indices, translations, strict=True):
                out[i] = out[i].model_copy(
                    update={"translation": text, "translation_language": dst_, "translation_note": None}
                )
        return out
