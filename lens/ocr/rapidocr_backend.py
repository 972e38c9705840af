"""Default OCR backend: PP-OCRv6 small (shipped inside PyPI rapidocr 3.10.0), run offline."""

from __future__ import annotations

import numpy as np

from lens.config import Settings
from lens.ocr.ppocr import PpOcrLines
from lens.types import TextLine

# PP-OCRv6's one recogniser: Chinese, Japanese, English and the Latin-script languages of its
# dictionary. Vietnamese is listed upstream but the dictionary lacks 41 of its 44 own letters,
# so it is not claimed here; there is no Hangul or Cyrillic at all.
PPOCR_LANGUAGES = frozenset(
    ["zh", "ja", "en", "af", "az", "bs", "ca", "cs", "cy", "da", "de", "es", "et", "eu", "fi", "fr", "ga", "gl", "hr", "hu", "id", "is", "it", "ku", "la", "lb", "lt", "lv", "mi", "ms", "mt", "nl", "no", "oc", "pl", "pt", "qu", "rm", "ro", "sk", "sl", "sq", "sv", "sw", "tl", "tr", "uz"]
)


class RapidOcr:
    name = "rapidocr"
    version = "rapidocr-3.10.0:PP-OCRv6-small"
    languages = PPOCR_LANGUAGES

    def __init__(self, settings: Settings) -> None:
        self.min_confidence = max(settings.ocr.min_confidence, settings.ocr.rapidocr_min_confidence)
        self.cjk_context_confidence = settings.ocr.cjk_context_confidence
        self._lines = PpOcrLines.from_config(settings.ocr)

    def warm_up(self) -> None:
        self._lines.warm_up()

    def read(self, rgb: np.ndarray) -> list[TextLine]:
        bgr = np.ascontiguousarray(rgb[..., ::-1])
        return self._lines.read(bgr, min_confidence=self.min_confidence, cjk_context_confidence=self.cjk_context_confidence)
