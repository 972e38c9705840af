"""ICDAR 2015 word/detection scores and OCR CPU ms per detection size, each size read once and
scored at several recognition floors (the floor only filters lines, so one read serves all),
with each line's polygon as the crop that was read (det_unclip_ratio) or as its outline
(det_outline_unclip_ratio, what the OCR returns), and words split as ICDAR word spotting does
or only at spaces (the scoring before 2026-12-02).

    .venv/bin/python -m bench.icdar_sizes --half report --sizes 960,1280,1600 --floors 0.5,0.88

`ocr.det_max_side` is the size setting (LENS_OCR__DET_MAX_SIDE); photos smaller than it are
enlarged to it (ocr.det_upscale). Same scoring as bench_ocr (bench/icdar.py): lines grouped
into blocks, untappable blocks dropped. CPU ms: median process CPU time per photo of
detection + orientation + recognition on one onnxruntime thread.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from bench.icdar import (
    Counts,
    line_words,
    load_gt,
    load_photo,
    score_photo,
    scored_words,
    split_ids,
    whole_word,
)


def read_raw(size: int, ids: list[int]) -> dict[int, tuple[list, float]]:
    """Per photo: (crop polygon, outline polygon, text, score) of every line read, before any
    floor; CPU seconds."""
    from lens.config import load_settings
    from lens.ocr import create_ocr
    from lens.ocr.ppocr import reading_polygon, resolve_orientation

    ocr = create_ocr(load_settings(ocr={"backend": "rapidocr", "det_max_side": size}))
    ocr.warm_up()
    lines_of = ocr._lines  # the PP-OCRv6 line finder behind the backend
    out = {}
    for i in ids:
        bgr = np.ascontiguousarray(load_photo(i)[..., ::-1])
        start = time.process_time()
        read = resolve_orientation(lines_of.find(bgr), lines_of.recognize)
        seconds = time.process_time() - start
        out[i] = ([(reading_polygon(c.quad, c.vertical, flipped), reading_polygon(c.shown, c.vertical, flipped),
                    " ".join(text.split()), score) for c, flipped, text, score in read], seconds)
    return out


def score_at(raw: dict[int, tuple[list, float]], floor: float, outline: bool = True, icdar_words: bool = True) -> Counts:
    from lens.config import load_settings
    from lens.ocr.blocks import drop_untappable, group_lines
    from lens.ocr.ppocr import drop_stray_cjk
    from lens.types import TextLine

    settings = load_settings()
    total = Counts()
    for i, (lines, seconds) in raw.items():
        kept = [TextLine(polygon=o if outline else p, text=t, confidence=round(s, 4))
                for p, o, t, s in lines if t and s >= floor]
        kept = drop_stray_cjk(kept, settings.ocr.cjk_context_confidence)
        rgb_shape = load_photo(i).shape
        blocks = drop_untappable(group_lines(kept), rgb_shape[1], rgb_shape[0], settings.ocr)
        predicted = [(w, q) for b in blocks for ln in b.lines for w, q in line_words(ln.polygon, ln.text)]
        counts = score_photo(predicted, load_gt(i), scored_words if icdar_words else whole_word)
        counts.seconds.append(seconds)
        total.add(counts)
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.icdar_sizes")
    parser.add_argument("--half", default="report", choices=["tune", "report", "all"])
    parser.add_argument("--sizes", default="960,1280,1600")
    parser.add_argument("--floors", default="0.5,0.88")
    args = parser.parse_args(argv)
    ids = split_ids(args.half)
    print("| det_max_side | floor | polygon | words | word R | word P | word F | det R | det P | det F | CPU ms/photo |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for size in (int(s) for s in args.sizes.split(",")):
        raw = read_raw(size, ids)
        for floor in (float(f) for f in args.floors.split(",")):
            for outline in (False, True):
                for icdar_words in (False, True):
                    c = score_at(raw, floor, outline, icdar_words)
                    cells = [*c.words, *c.detection]
                    ms = statistics.median(c.seconds) * 1000
                    labels = f"{'outline' if outline else 'crop'} | {'ICDAR' if icdar_words else 'spaces'}"
                    print(f"| {size} | {floor} | {labels} | " + " | ".join(f"{v:.3f}" for v in cells) + f" | {ms:.0f} |",
                          flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
