"""PP-OCRv6 finds and orients the lines; Tesseract reads each line crop (for vi, ko...).

Tesseract on a whole photo is poor (CER 0.5-0.9 measured), but given one clean, upright line
it reads Vietnamese and Korean exactly, which PP-OCRv6 cannot (its dictionary lacks most
Vietnamese letters and all of Hangul). Each line is read in every configured language and in
three binarisations (grey, Otsu, inverted Otsu); the reading Tesseract is surest of wins.
Tessdata comes from Debian's tesseract-ocr-<lang> packages (the pip wheel ships none).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import cv2
import numpy as np

from lens.config import Settings
from lens.errors import ModelMissingError
from lens.ocr.ppocr import PpOcrLines
from lens.registry import BackendOptions
from lens.threads import current_threads, one_at_a_time_threads
from lens.types import TextLine

# ISO 639-1 -> Tesseract traineddata name (and its Debian package suffix).
TESSERACT_CODES = {
    "en": "eng", "pt": "por", "vi": "vie", "ko": "kor", "fr": "fra", "de": "deu", "es": "spa",
    "it": "ita", "nl": "nld", "zh": "chi_sim", "ja": "jpn", "ru": "rus", "th": "tha", "ar": "ara",
}
LINE_HEIGHT = 64  # Tesseract's LSTM reads best at x-heights of ~20-30 px
BORDER = 12


def _variants(crop_bgr: np.ndarray) -> list[np.ndarray]:
    grey = cv2.cvtColor(crop_bgr, cv2.COLOR_BGR2GRAY)
    scale = LINE_HEIGHT / max(grey.shape[0], 1)
    grey = cv2.resize(grey, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    _, otsu = cv2.threshold(grey, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    out = []
    for img in (grey, otsu, 255 - otsu):
        fill = int(np.median(np.concatenate([img[0], img[-1]])))
        out.append(cv2.copyMakeBorder(img, BORDER, BORDER, BORDER, BORDER, cv2.BORDER_CONSTANT, value=fill))
    return out


class TesseractOptions(BackendOptions):
    # PP-OCRv6 finds and orients the lines, Tesseract reads each one in these languages
    # (ISO 639-1; Debian tesseract-ocr-<code> packs). It reads vi and ko, which PP-OCRv6 cannot.
    languages: list[str] = ["vi", "ko"]
    tessdata_dir: Path = Path("/usr/share/tesseract-ocr/5/tessdata")


class TesseractOcr:
    name = "tesseract"
    models = ("pp-ocrv6-small",)  # its detector; the language packs are Debian's, named in its options
    Options = TesseractOptions

    def __init__(self, settings: Settings) -> None:
        os.environ.setdefault("OMP_THREAD_LIMIT", str(current_threads()))
        import tesserocr

        options = TesseractOptions.parse(settings.ocr.options)
        self._tesserocr = tesserocr
        self.tessdata = options.tessdata_dir
        self.codes = []
        for lang in options.languages:
            code = TESSERACT_CODES.get(lang)
            if code is None:
                raise ModelMissingError(f"ocr.options.languages: no Tesseract language known for '{lang}'")
            if not (self.tessdata / f"{code}.traineddata").is_file():
                package = "tesseract-ocr-" + code.replace("_", "-")
                raise ModelMissingError(f"Tesseract data {self.tessdata}/{code}.traineddata is missing; apt-get install {package}")
            self.codes.append(code)
        self.languages = frozenset(options.languages)
        self.version = f"PP-OCRv6-det+tesseract-{tesserocr.tesseract_version().split()[1]}:{'+'.join(self.codes)}"
        self.min_confidence = settings.ocr.min_confidence
        self.cjk_context_confidence = settings.ocr.cjk_context_confidence
        self._lines = PpOcrLines.from_config(settings.ocr, one_at_a_time_threads(settings))
        # A PyTessBaseAPI is not safe to share between threads: one set per thread.
        self._local = threading.local()

    def _apis(self) -> dict:
        apis = getattr(self._local, "apis", None)
        if apis is None:
            psm = self._tesserocr.PSM.SINGLE_LINE
            apis = self._local.apis = {
                code: self._tesserocr.PyTessBaseAPI(path=str(self.tessdata) + "/", lang=code, psm=psm) for code in self.codes
            }
        return apis

    def warm_up(self) -> None:
        self._lines.warm_up()
        self._apis()

    def _read_line(self, crop_bgr: np.ndarray) -> tuple[str, float]:
        from PIL import Image

        best = ("", 0.0)
        for variant in _variants(crop_bgr):
            image = Image.fromarray(variant)
            for api in self._apis().values():
                api.SetImage(image)
                text = " ".join(api.GetUTF8Text().split())
                score = max(api.MeanTextConf(), 0) / 100.0
                if text and score > best[1]:
                    best = (text, score)
        return best

    def recognize(self, crops: list[np.ndarray]) -> list[tuple[str, float]]:
        return [self._read_line(c) for c in crops]

    def read(self, rgb: np.ndarray) -> list[TextLine]:
        bgr = np.ascontiguousarray(rgb[..., ::-1])
        return self._lines.read(bgr, recognize=self.recognize, min_confidence=self.min_confidence, cjk_context_confidence=self.cjk_context_confidence)
