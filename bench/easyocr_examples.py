"""EasyOCR's published example photos (JaidedAI/EasyOCR v1.7.2, examples/): word recall of an OCR.

The photos are not in ../shared/data; point BENCH_EASYOCR_EXAMPLES (or the test's
EASYOCR_EXAMPLES_DIR) at the examples/ folder of a checkout of github.com/JaidedAI/EasyOCR.
The transcriptions below are ours, read off the photos: every legible word, except the
superscript "er" of "1er" on the French sign and the logo's small print on the Japanese one.
korean.png and thai.jpg are left out: PP-OCRv6 reads neither script.

Units: Latin words case-folded with punctuation trimmed from both ends, of 2+ characters (single
letters such as the compass W / E are not counted), and each CJK character on its own (Chinese
and Japanese have no spaces to cut words at). What is scored is what the user gets: lines
grouped into blocks, untappable blocks dropped.
"""

from __future__ import annotations

import os
import unicodedata
from collections import Counter
from pathlib import Path

import numpy as np

TRANSCRIPTIONS = {
    "english.png": (
        "Reduce your risk of coronavirus infection: Clean hands with soap and water or alcohol-based "
        "hand rub Cover nose and mouth when coughing and sneezing with tissue or flexed elbow Avoid "
        "close contact with anyone with cold or flu-like symptoms Thoroughly cook meat and eggs No "
        "unprotected contact with live wild or farm animals World Health Organization"
    ),
    "french.jpg": "Mairie du Palais du LOUVRE LES ARTS DÉCORATIFS Musée du LOUVRE Théâtre du PALAIS-ROYAL",
    "chinese.jpg": "西 315 愚园路 东 309 W Yuyuan Rd. E",
    "japanese.jpg": "ポイ捨て禁止! NO LITTER 清潔できれいな港区を 港区 MINATO CITY",
}


def examples_dir() -> Path | None:
    folder = os.environ.get("BENCH_EASYOCR_EXAMPLES") or os.environ.get("EASYOCR_EXAMPLES_DIR")
    if not folder or not all((Path(folder) / name).exists() for name in TRANSCRIPTIONS):
        return None
    return Path(folder)


def _cjk(ch: str) -> bool:
    code = ord(ch)
    return 0x3040 <= code <= 0x30FF or 0x3400 <= code <= 0x9FFF


def units(text: str) -> Counter:
    text = unicodedata.normalize("NFKC", text).casefold()
    found = [ch for ch in text if _cjk(ch)]
    for word in "".join(" " if _cjk(ch) else ch for ch in text).split():
        word = word.strip("".join(ch for ch in set(word) if not ch.isalnum()))
        if len(word) >= 2:
            found.append(word)
    return Counter(found)


def evaluate(ocr, settings, folder: Path) -> list[tuple[str, int, int, int, list[str]]]:
    """(photo, units found, units in the photo, units read, missed units) per photo."""
    from PIL import Image

    from lens.ocr.blocks import drop_untappable, group_lines

    rows = []
    for name, truth in TRANSCRIPTIONS.items():
        rgb = np.asarray(Image.open(folder / name).convert("RGB"))
        blocks = drop_untappable(group_lines(ocr.read(rgb)), rgb.shape[1], rgb.shape[0], settings.ocr)
        got, want = units(" ".join(b.text.replace("\n", " ") for b in blocks)), units(truth)
        rows.append((name, sum((got & want).values()), sum(want.values()), sum(got.values()), sorted((want - got).elements())))
    return rows
