"""Default OCR backend: PP-OCRv6 small (shipped inside PyPI rapidocr 3.10.0), run offline."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from lens.config import Settings
from lens.ocr.ppocr import PpOcrLines
from lens.registry import BackendOptions
from lens.threads import one_at_a_time_threads
from lens.types import TextLine

# PP-OCRv6's one recogniser: Chinese, Japanese, English and the Latin-script languages of its
# dictionary. Vietnamese is listed upstream but the dictionary lacks 41 of its 44 own letters,
# so it is not claimed here; there is no Hangul or Cyrillic at all.
PPOCR_LANGUAGES = frozenset(
    ["zh", "ja", "en", "af", "az", "bs", "ca", "cs", "cy", "da", "de", "es", "et", "eu", "fi", "fr", "ga", "gl", "hr", "hu", "id", "is", "it", "ku", "la", "lb", "lt", "lv", "mi", "ms", "mt", "nl", "no", "oc", "pl", "pt", "qu", "rm", "ro", "sk", "sl", "sq", "sv", "sw", "tl", "tr", "uz"]
)


class RapidOcrOptions(BackendOptions):
    # The recognition floor for PP-OCRv6 (Tesseract's scores are on another scale and keep
    # ocr.min_confidence). It reads texture, icons and half-seen letters as junk ("m4s",
    # "DA4", "CZOHU") at 0.55-0.8, while a word it reads right mostly scores 0.9+. ICDAR
    # tuning half, word F: 0.680 at 0.5, 0.686 at 0.7, 0.689 at 0.8, 0.700 at 0.88, with
    # recall 0.623 -> 0.619.
    min_confidence: float = Field(0.88, ge=0.0, le=1.0)


class RapidOcr:
    name = "rapidocr"
    models = ("pp-ocrv6-small",)
    version = "rapidocr-3.10.0:PP-OCRv6-small"
    languages = PPOCR_LANGUAGES
    Options = RapidOcrOptions

    def __init__(self, settings: Settings) -> None:
        options = RapidOcrOptions.parse(settings.ocr.options)
        self.min_confidence = max(settings.ocr.min_confidence, options.min_confidence)
        self.cjk_context_confidence = settings.ocr.cjk_context_confidence
        self._lines = PpOcrLines.from_config(settings.ocr, one_at_a_time_threads(settings))

    def warm_up(self) -> None:
        self._lines.warm_up()

    def read(self, rgb: np.ndarray) -> list[TextLine]:
        bgr = np.ascontiguousarray(rgb[..., ::-1])
        return self._lines.read(bgr, min_confidence=self.min_confidence, cjk_context_confidence=self.cjk_context_confidence)
