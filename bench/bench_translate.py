"""Translation quality (chrF) on short sign/menu phrases, speed, and a worker's memory with OCR +
language id + translation loaded.

Phrases: bench/data/phrases_en_pt.tsv (written for lens, >= 30 per direction, with references).
chrF is computed here (character 1-6-grams, beta 2, corpus-level statistics, whitespace
removed), the definition sacrebleu uses for its default chrF.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from bench import REPO_ROOT, BenchContext, Table

PHRASES = Path(__file__).resolve().parent / "data" / "phrases_en_pt.tsv"
CHRF_ORDER = 6
CHRF_BETA = 2.0


def load_phrases() -> dict[tuple[str, str], list[tuple[str, str]]]:
    pairs: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for row in PHRASES.read_text().splitlines():
        if not row.strip() or row.startswith("#"):
            continue
        direction, source, reference = row.split("\t")
        src, dst = direction.split("-")
        pairs.setdefault((src, dst), []).append((source, reference))
    return pairs


def _ngrams(text: str, n: int) -> Counter:
    text = "".join(text.split())
    return Counter(text[i : i + n] for i in range(len(text) - n + 1))


def chrf(hypotheses: list[str], references: list[str]) -> float:
    """Corpus chrF (0-100)."""
    precisions, recalls = [], []
    for n in range(1, CHRF_ORDER + 1):
        match = hyp_total = ref_total = 0
        for hyp, ref in zip(hypotheses, references, strict=True):
            h, r = _ngrams(hyp, n), _ngrams(ref, n)
            match += sum((h & r).values())
            hyp_total += sum(h.values())
            ref_total += sum(r.values())
        if hyp_total and ref_total:
            precisions.append(match / hyp_total)
            recalls.append(match / ref_total)
    if not precisions:
        return 0.0
    p, r = statistics.mean(precisions), statistics.mean(recalls)
    if p + r == 0:
        return 0.0
    b2 = CHRF_BETA**2
    return 100 * (1 + b2) * p * r / (b2 * p + r)


# Runs in a fresh interpreter so that the RSS is that of a worker, not of this bench.
_WORKER_PROBE = r"""
import json, os, time
os.environ.setdefault("OMP_THREAD_LIMIT", "1")
def rss(field="VmRSS"):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) / 1024
out = {"python": rss()}
from lens.config import load_settings
from lens.ocr import create_ocr
from lens.translate import create_translation_service
from lens import langid
import numpy as np
settings = load_settings(ocr={"backend": BACKEND})
t = time.perf_counter(); ocr = create_ocr(settings); ocr.warm_up(); out["ocr_load_s"] = time.perf_counter() - t
ocr.read(np.full((480, 640, 3), 200, np.uint8))
out["ocr"] = rss()
t = time.perf_counter(); langid.warm_up(); out["langid_load_s"] = time.perf_counter() - t
out["langid"] = rss()
t = time.perf_counter(); svc = create_translation_service(settings)
for b in svc.backends:
    getattr(b, "warm_up", lambda: None)()
out["translate_load_s"] = time.perf_counter() - t
out["translate"] = rss()
out["peak"] = rss("VmHWM")  # ru_maxrss would carry the parent's peak across exec
print(json.dumps(out))
"""


def worker_memory(backend: str) -> dict:
    code = _WORKER_PROBE.replace("BACKEND", repr(backend))
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(ctx: BenchContext) -> list[Table]:
    from lens.config import load_settings
    from lens.translate import create_translation_service

    service = create_translation_service(load_settings())
    quality_rows, sample_rows = [], []
    for (src, dst), rows in sorted(load_phrases().items()):
        if ctx.quick:
            rows = rows[:8]
        sources = [s for s, _ in rows]
        references = [r for _, r in rows]
        start = time.perf_counter()
        service.translate(sources[:1], src, dst)  # model load, not counted below
        load_s = time.perf_counter() - start
        per_phrase = []
        hypotheses = []
        for text in sources:
            start = time.perf_counter()
            hypotheses.extend(service.translate([text], src, dst))
            per_phrase.append((time.perf_counter() - start) * 1000)
        backend = service.route(src, dst)[0][0].name
        quality_rows.append([f"{src}->{dst}", backend, len(rows), round(chrf(hypotheses, references), 1),
                             round(statistics.median(per_phrase), 2), round(load_s, 2)])
        for text, hyp, ref in list(zip(sources, hypotheses, references, strict=True))[:6]:
            sample_rows.append([f"{src}->{dst}", text, hyp, ref])
    tables = [
        Table("Translation quality on sign/menu phrases (chrF, higher is better)",
              ["pair", "backend", "phrases", "chrF", "median ms/phrase", "first call s"], quality_rows,
              notes="bench/data/phrases_en_pt.tsv; one phrase per call, as the UI asks. 'first call' includes "
                    "building the model on its thread."),
        Table("Translation samples", ["pair", "source", "output", "reference"], sample_rows),
    ]
    memory_rows = []
    for backend in (["rapidocr"] if ctx.quick else ["rapidocr", "tesseract"]):
        try:
            m = worker_memory(backend)
        except Exception as exc:
            memory_rows.append([backend, "-", "-", "-", "-", f"failed: {exc}"])
            continue
        memory_rows.append([backend, round(m["python"]), round(m["ocr"]), round(m["langid"]), round(m["translate"]),
                            f"loads: OCR {m['ocr_load_s']:.1f} s, langid {m['langid_load_s']:.1f} s, translation {m['translate_load_s']:.2f} s; peak {m['peak']:.0f} MB"])
    tables.append(Table("Worker RSS (MB) after loading each part of the text branch, cumulative",
                        ["OCR backend", "python", "+ OCR", "+ lingua", "+ en<->pt Bergamot", "notes"], memory_rows,
                        notes="A fresh interpreter loads and warms each part in turn; RSS from /proc/self/status."))
    return tables
