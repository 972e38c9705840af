"""OCR quality (character error rate) and speed on signs rendered with real fonts over OSIE photos.

Each case draws 2-3 lines of a real sign/menu sentence set in one language with a Debian font
(DejaVu, Noto, Noto CJK) onto a real OSIE photo, either on a plate or straight on the photo
with an outline, then applies one condition: straight, rotated 90/180/270 (the whole photo),
small (14-16 px text) or tilted. The tests reuse `make_case`.
"""

from __future__ import annotations

import os
import random
import resource
import statistics
import time
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from bench import OSIE_DIR, BenchContext, Table

FONT_DIRS = (Path("/usr/share/fonts/truetype"), Path("/usr/share/fonts/opentype"))
LATIN_FONTS = (
    "dejavu/DejaVuSans.ttf",
    "dejavu/DejaVuSerif.ttf",
    "dejavu/DejaVuSans-Bold.ttf",
    "noto/NotoSans-Regular.ttf",
    "noto/NotoSerif-Regular.ttf",
)
# Noto CJK collections hold one face per region; the face is picked by its family name.
CJK_FONTS = ("noto/NotoSansCJK-Regular.ttc", "noto/NotoSerifCJK-Regular.ttc", "noto/NotoSansCJK-Bold.ttc")
CJK_FAMILY = {"zh": " SC", "ja": " JP", "ko": " KR"}

# Real sign / menu / notice sentences, one list per language (each case takes 2-3 of them).
SENTENCES: dict[str, list[str]] = {
    "en": ["Welcome to the Central Market", "Open daily from 9 am to 7 pm", "Please do not touch",
           "Fresh coffee and pastries", "Emergency exit on the left", "Keep refrigerated after opening"],
    "pt": ["Bem-vindo ao Mercado Central", "Proibido fumar nesta área", "Saída de emergência à esquerda",
           "Pão de queijo e café fresco", "Não toque, por favor", "Aberto de segunda a sábado"],
    "vi": ["Phở bò tái chín giá 45.000 đồng", "Cẩn thận sàn ướt dễ trơn trượt", "Lối ra ga tàu điện ngầm",
           "Cửa hàng mở cửa lúc tám giờ", "Không hút thuốc trong nhà", "Nhà vệ sinh ở tầng hai"],
    "fr": ["Bienvenue au marché couvert", "Défense de fumer à l'intérieur", "Sortie de secours à gauche",
           "Plat du jour : poulet rôti", "Fermé le dimanche et lundi", "Attention, sol glissant"],
    "de": ["Willkommen im Bahnhofsgebäude", "Rauchen ist hier verboten", "Notausgang für Fußgänger",
           "Frische Brötchen und Kaffee", "Bitte nicht berühren", "Öffnungszeiten: täglich ab 8 Uhr"],
    "zh": ["欢迎光临北京饭店", "营业时间上午九点至晚上十点", "请勿在此处吸烟", "小心地滑注意安全",
           "安全出口在左边", "开封后请冷藏保存"],
    "ja": ["東京駅へようこそ", "足元にご注意ください", "お手洗いは二階です", "本日のおすすめ醤油ラーメン",
           "立入禁止関係者以外", "開封後は冷蔵庫で保存"],
    "ko": ["오늘의 특가 김치찌개", "미끄러우니 조심하세요", "화장실은 2층에 있습니다", "비상구는 왼쪽입니다",
           "금연 구역입니다", "영업시간 오전 아홉시부터"],
}
CONDITIONS = ("straight", "rot90", "rot180", "rot270", "small", "tilt")
PHOTO_NAMES = ("1001.jpg", "1010.jpg", "1023.jpg", "1050.jpg", "1100.jpg", "1200.jpg", "1300.jpg",
               "1400.jpg", "1500.jpg", "1600.jpg", "1700.jpg")
NO_SPACE_LANGS = {"zh", "ja"}


@dataclass
class Case:
    lang: str
    condition: str
    rgb: np.ndarray
    lines: list[str]  # ground truth, in reading order
    box: tuple[float, float, float, float] | None = None  # the rendered sign's bounds, final pixels

    @property
    def name(self) -> str:
        return f"{self.lang}-{self.condition}"


def font_path(name: str) -> Path:
    for root in FONT_DIRS:
        if (root / name).exists():
            return root / name
    raise FileNotFoundError(f"font {name} not found; install fonts-dejavu-core fonts-noto-core fonts-noto-cjk")


@lru_cache(maxsize=64)
def load_font(lang: str, variant: int, size: int) -> ImageFont.FreeTypeFont:
    if lang in CJK_FAMILY:
        path = font_path(CJK_FONTS[variant % len(CJK_FONTS)])
        for index in range(10):
            font = ImageFont.truetype(str(path), size, index=index)
            if font.getname()[0].endswith(CJK_FAMILY[lang]):
                return font
        raise FileNotFoundError(f"no{CJK_FAMILY[lang]} face in {path}")
    return ImageFont.truetype(str(font_path(LATIN_FONTS[variant % len(LATIN_FONTS)])), size)


@lru_cache(maxsize=32)
def load_photo(name: str) -> np.ndarray:
    path = OSIE_DIR / "stimuli" / name
    if not path.exists():  # the OSIE set is numbered; fall back to whatever is there
        path = sorted((OSIE_DIR / "stimuli").glob("*.jpg"))[hash(name) % 700]
    return np.asarray(Image.open(path).convert("RGB"))


def make_case(lang: str, condition: str, index: int) -> Case:
    """One photo with 2-3 lines of `lang` text under `condition`; deterministic in its inputs."""
    rng = random.Random(f"{lang}/{condition}/{index}")
    sentences = SENTENCES[lang]
    count = 2 + (index % 2)
    start = (index * 2) % len(sentences)
    lines = [sentences[(start + k) % len(sentences)] for k in range(count)]
    photo = Image.fromarray(load_photo(PHOTO_NAMES[index % len(PHOTO_NAMES)]))
    size = rng.randint(14, 16) if condition == "small" else rng.randint(28, 38)
    font = load_font(lang, index, size)
    draw = ImageDraw.Draw(photo)
    spacing = int(size * 0.5)
    widths = [draw.textbbox((0, 0), t, font=font)[2] for t in lines]
    block_w = max(widths)
    block_h = count * size + (count - 1) * spacing + int(size * 0.4)
    pad = int(size * 0.6)
    x0 = rng.randint(pad, max(pad, photo.width - block_w - pad - 1))
    y0 = rng.randint(pad, max(pad, photo.height - block_h - pad - 1))
    on_plate = index % 3 != 2
    if on_plate:
        plate = rng.choice([(250, 250, 245), (20, 60, 120), (200, 30, 30), (30, 30, 30)])
        ink = (20, 20, 20) if sum(plate) > 500 else (255, 255, 255)
        draw.rounded_rectangle((x0 - pad, y0 - pad, x0 + block_w + pad, y0 + block_h + pad), radius=pad // 2, fill=plate)
        stroke = 0
    else:
        ink, stroke = (255, 255, 255), max(1, size // 12)
    for k, text in enumerate(lines):
        draw.text((x0, y0 + k * (size + spacing)), text, font=font, fill=ink, stroke_width=stroke, stroke_fill=(0, 0, 0))
    corners = [(x0, y0), (x0 + block_w, y0), (x0 + block_w, y0 + block_h), (x0, y0 + block_h)]
    if condition == "tilt":
        degrees = rng.choice([-1, 1]) * rng.uniform(5, 10)
        photo = photo.rotate(degrees, resample=Image.BICUBIC, expand=False, fillcolor=(127, 127, 127))
        # PIL turns counter-clockwise on screen about the centre; move the corners with it.
        cx, cy, t = photo.width / 2, photo.height / 2, np.radians(degrees)
        corners = [(cx + (x - cx) * np.cos(t) + (y - cy) * np.sin(t), cy - (x - cx) * np.sin(t) + (y - cy) * np.cos(t)) for x, y in corners]
    rgb = np.asarray(photo)
    turns = {"rot90": 1, "rot180": 2, "rot270": 3}.get(condition, 0)
    for _ in range(turns):  # np.rot90 turns counter-clockwise: (x, y) -> (y, width - x)
        width = rgb.shape[1]
        rgb = np.rot90(rgb)
        corners = [(y, width - x) for x, y in corners]
    xs, ys = [c[0] for c in corners], [c[1] for c in corners]
    box = (float(min(xs)), float(min(ys)), float(max(xs)), float(max(ys)))
    return Case(lang=lang, condition=condition, rgb=np.ascontiguousarray(rgb), lines=lines, box=box)


def normalise(text: str, lang: str) -> str:
    text = unicodedata.normalize("NFC", text)
    text = " ".join(text.split())
    if lang in NO_SPACE_LANGS or lang == "ko":
        # CJK spacing is not part of what a sign says; PP-OCR inserts or drops it freely.
        text = text.replace(" ", "")
    return text


def levenshtein(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def cer(predicted: str, truth: str, lang: str) -> float:
    p, t = normalise(predicted, lang), normalise(truth, lang)
    return levenshtein(p, t) / max(len(t), 1)


def read_in_order(ocr, rgb: np.ndarray, box: tuple[float, float, float, float] | None = None) -> str:
    """The text the backend read, block by block in reading order (blocks are grouped lines);
    with `box`, only lines centred inside it (some OSIE photos show real signs of their own)."""
    from lens.ocr.blocks import group_lines

    lines = ocr.read(rgb)
    if box is not None:
        x1, y1, x2, y2 = box
        margin = 0.1 * min(x2 - x1, y2 - y1)
        lines = [ln for ln in lines if x1 - margin <= np.mean([p[0] for p in ln.polygon]) <= x2 + margin
                 and y1 - margin <= np.mean([p[1] for p in ln.polygon]) <= y2 + margin]
    return " ".join(b.text.replace("\n", " ") for b in group_lines(lines))


def cases(ctx: BenchContext, langs: list[str], per_cell: int | None = None) -> list[Case]:
    per_cell = 1 if ctx.quick else (per_cell or 2)
    return [make_case(lang, cond, i) for lang in langs for cond in CONDITIONS for i in range(per_cell)]


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(ctx: BenchContext) -> list[Table]:
    return run_rendered(ctx) + run_icdar(ctx) + run_easyocr_examples(ctx)


def run_easyocr_examples(ctx: BenchContext) -> list[Table]:
    from bench.easyocr_examples import evaluate, examples_dir
    from lens.config import load_settings
    from lens.ocr import create_ocr

    folder = examples_dir()
    title = "EasyOCR's published example photos: word recall (default OCR settings)"
    if folder is None:
        return [Table(title, ["note"], [["BENCH_EASYOCR_EXAMPLES (JaidedAI/EasyOCR examples/) not set"]])]
    settings = load_settings(ocr={})
    ocr = create_ocr(settings)
    ocr.warm_up()
    rows = [[name, found, wanted, round(found / wanted, 3), read, " ".join(missed) or "-"]
            for name, found, wanted, read, missed in evaluate(ocr, settings, folder)]
    found, wanted = sum(r[1] for r in rows), sum(r[2] for r in rows)
    rows.append(["all", found, wanted, round(found / wanted, 3), sum(r[4] for r in rows), "-"])
    return [Table(title, ["photo", "found", "in photo", "recall", "units read", "missed"], rows,
                  notes="bench/easyocr_examples.py: our transcriptions; Latin words of 2+ characters, CJK characters one by one.")]


# (label, backend, OCR settings): the settings before this bench existed, the detection sizes
# measured on the tuning half, and the default; other backends for comparison.
ICDAR_PLANS: list[tuple[str, str, dict]] = [
    ("rapidocr det 960, floor 0.5 (previous default)", "rapidocr",
     {"det_max_side": 960, "det_upscale": False, "options": {"min_confidence": 0.5}}),
    ("rapidocr det 1600 upscaled, floor 0.5", "rapidocr", {"options": {"min_confidence": 0.5}}),
    ("rapidocr det 1600 upscaled, floor 0.88 (default)", "rapidocr", {}),
]


def _blocks_reader(ocr, settings):
    """What a user sees: lines grouped into blocks, untappable ones dropped."""
    from lens.ocr.blocks import drop_untappable, group_lines

    def read(rgb: np.ndarray):
        blocks = drop_untappable(group_lines(ocr.read(rgb)), rgb.shape[1], rgb.shape[0], settings.ocr)
        return [line for b in blocks for line in b.lines]

    return read


def run_icdar(ctx: BenchContext) -> list[Table]:
    from bench.icdar import evaluate, icdar_available, split_ids, summary_row
    from lens.config import load_settings
    from lens.ocr import create_ocr

    if not icdar_available():
        return [Table("ICDAR 2015 scene text", ["note"], [["../shared/data/icdar2015 not found"]])]
    halves = {h: split_ids(h) for h in ("tune", "report")}
    if ctx.quick:
        halves = {h: ids[:10] for h, ids in halves.items()}
    columns = ["setting", "half", "word R", "word P", "word F", "det R", "det P", "det F", "CPU ms/photo"]
    rows, scale_rows, other_rows = [], [], []
    for label, backend, extra in ICDAR_PLANS:
        settings = load_settings(ocr={"backend": backend, **extra})
        ocr = create_ocr(settings)
        ocr.warm_up()
        read = _blocks_reader(ocr, settings)
        for half, ids in halves.items():
            row = summary_row(label, evaluate(read, ids))
            rows.append([row[0], half, *row[1:]])
        if label.endswith("(default)") or label.endswith("(previous default)"):
            # A camera-size copy (3x: 3840x2160) must not read worse than a 1024 px copy.
            for scale, name in ((0.8, "1024x576 copy"), (3.0, "3840x2160 (camera size)")):
                scale_rows.append(summary_row(f"{label}: {name}", evaluate(read, halves["report"], scale)))
    # Other backends on the first 15 report photos (EasyOCR takes seconds per photo).
    few = halves["report"][:15]
    for backend, extra in (("tesseract", {"options": {"languages": ["en"]}}), ("easyocr", {})):
        try:
            settings = load_settings(ocr={"backend": backend, **extra})
            ocr = create_ocr(settings)
            if hasattr(ocr, "warm_up"):
                ocr.warm_up()
        except Exception as exc:  # a backend whose package/weights are absent is reported, not fatal
            other_rows.append([backend, f"not available: {exc}"] + ["-"] * 7)
            continue
        other_rows.append(summary_row(f"{backend} (PP-OCRv6 det)" if backend == "tesseract" else backend, evaluate(_blocks_reader(ocr, settings), few)))
    notes = ("ICDAR 2015 Challenge 4 test photos 1-250 (1280x720, wearable camera, streets and shops); "
             "tune = odd ids (settings chosen there), report = even ids. Words: bag of words per photo, "
             "case-folded, punctuation trimmed, >= 3 characters, '###' not scored (predicted words mostly "
             "inside an illegible region ignored). Detection: word quads (lines cut in proportion to "
             "characters) matched one-to-one at IoU >= 0.5. What is scored is what the user gets: lines "
             "grouped into blocks, untappable blocks dropped. CPU ms: median process CPU time per photo "
             "(one onnxruntime thread).")
    return [
        Table("ICDAR 2015 scene text: word and detection scores per setting", columns, rows, notes=notes),
        Table("ICDAR 2015 report half at two sizes of the same photos (1280x720 originals: table above)",
              ["setting", "word R", "word P", "word F", "det R", "det P", "det F", "CPU ms/photo"], scale_rows,
              notes="Copies resized with area averaging (down) or bicubic (up); ground truth scaled with them."),
        Table(f"ICDAR 2015, other backends (first {len(few)} report photos)",
              ["backend", "word R", "word P", "word F", "det R", "det P", "det F", "CPU ms/photo"], other_rows),
    ]


def run_rendered(ctx: BenchContext) -> list[Table]:
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")
    from lens.config import load_settings
    from lens.ocr import create_ocr

    # (backend, languages measured): each backend on the languages it declares, plus the ones
    # the default cannot read, so that the table shows where the hybrid is needed.
    plans = [
        ("rapidocr", ["en", "pt", "fr", "de", "zh", "ja", "vi", "ko"], {}),
        ("tesseract", ["vi", "ko"], {"options": {"languages": ["vi", "ko"]}}),
        # 3-15 s a photo: English and Portuguese, one photo per condition.
        ("easyocr", ["en", "pt"], {"per_cell": 1}),
    ]
    if ctx.quick:
        plans = [(b, langs[:2], extra) for b, langs, extra in plans[:2]]
    cer_rows, cond_rows, speed_rows = [], [], []
    for backend, langs, extra in plans:
        per_cell = extra.pop("per_cell", None)
        settings = load_settings(ocr={"backend": backend, **extra})
        start = time.perf_counter()
        try:
            ocr = create_ocr(settings)
            if hasattr(ocr, "warm_up"):
                ocr.warm_up()
        except Exception as exc:  # a backend whose package/weights are absent is reported, not fatal
            speed_rows.append([backend, "-", "-", "-", f"not available: {exc}"])
            continue
        load_s = time.perf_counter() - start
        per_lang: dict[str, list[float]] = {}
        per_cond: dict[str, list[float]] = {}
        times = []
        for case in cases(ctx, langs, per_cell):
            start = time.perf_counter()
            text = read_in_order(ocr, case.rgb, case.box)
            times.append(time.perf_counter() - start)
            err = cer(text, " ".join(case.lines), case.lang)
            per_lang.setdefault(case.lang, []).append(err)
            if case.lang in getattr(ocr, "languages", ()):
                per_cond.setdefault(case.condition, []).append(err)
        cer_rows.append([backend] + [round(statistics.mean(per_lang[lang]), 3) if lang in per_lang else "-" for lang in SENTENCES])
        cond_rows.append([backend] + [round(statistics.mean(per_cond[c]), 3) if c in per_cond else "-" for c in CONDITIONS])
        times.sort()
        p95 = times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))]
        speed_rows.append([backend, round(load_s, 2), round(statistics.median(times), 2), round(p95, 2), f"{len(times)} photos, peak RSS so far {_rss_mb():.0f} MB"])
    n = "1" if ctx.quick else "2 (easyocr: 1)"
    return [
        Table("OCR character error rate per language (lower is better)", ["backend", *SENTENCES], cer_rows,
              notes=f"{n} photo(s) per language x condition ({', '.join(CONDITIONS)}); 800x600 OSIE photos, "
                    "2-3 lines of real sign text, DejaVu/Noto/Noto CJK fonts, on a plate or outlined. "
                    "CER = Levenshtein / reference length after NFC and whitespace normalisation (no spaces "
                    "for zh/ja/ko), over the lines read inside the rendered sign's bounds, block by block in "
                    "reading order (photo 1010 shows a real grocery sign, read too but not scored). vi/ko "
                    "for rapidocr show what the default cannot read."),
        Table("OCR character error rate per condition, languages each backend declares", ["backend", *CONDITIONS], cond_rows),
        Table("OCR speed per photo (seconds, 1 thread)", ["backend", "load s", "median s", "p95 s", "notes"], speed_rows,
              notes="Load = construct + load the ONNX/Tesseract/torch models. Peak RSS is of the whole bench process."),
    ]
