"""Search by words: GroceryStore product names as a shopper would type them, against the
catalog's text (Klasson et al., WACV 2019).

Catalog: the 80 GroceryStore products, each an item with its iconic image, its name as the
title ("Arla-Standard-Milk" -> "Arla Standard Milk") and its English description file as
`extra.description`; built with the real Catalog, searched through the real text index
(lens.index.text: MiniLM sentence vectors + the typo-tolerant keyword match).
Queries, generated from each product's name with a fixed seed (SEED), QUERIES_PER_KIND each:
- typo: lower-cased, one character edit per 8 letters (at least one): a deletion, a doubled
  letter, two neighbours swapped, or a letter replaced by a keyboard neighbour;
- short: words dropped (at least one kept) and long words cut to a prefix of 4+ letters;
- short+typo: a shortened name with one edit.
A query that comes out twice for a product counts once.
Products are split by class id: even ids are the tuning half (the fusion weight
text_search.embedding_weight is chosen on their queries), odd ids the report half (never used
for a choice). Every query searches all 80 items; top-1/top-5 = the query's product is first /
among the first five. Rows: embedding only, keyword only, fused at the tuned weight, fused at the
configured default.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench import REPO_ROOT, SHARED, BenchContext, Table, single_thread

GROCERY = SHARED / "data" / "grocery"
SEED = 17
QUERIES_PER_KIND = 2
KINDS = ("typo", "short", "short+typo")
WEIGHTS = tuple(round(w, 2) for w in np.linspace(0.0, 1.0, 11))
KEYBOARD_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")


@dataclass(frozen=True)
class Product:
    class_id: int
    title: str
    description: str
    iconic: Path
    coarse: str  # GroceryStore's coarse class ("Apple", "Oat-Milk"), the multisearch words

    @property
    def half(self) -> str:
        return "tune" if self.class_id % 2 == 0 else "report"


@dataclass(frozen=True)
class Query:
    text: str
    kind: str
    product: Product


def products() -> list[Product]:
    import csv

    with (GROCERY / "classes.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    out = []
    for row in rows:
        description = GROCERY / row["Product Description Path (str)"].strip().lstrip("/")
        out.append(Product(int(row["Class ID (int)"]), row["Class Name (str)"].strip().replace("-", " "),
                           description.read_text(encoding="utf-8").strip(),
                           GROCERY / row["Iconic Image Path (str)"].strip().lstrip("/"),
                           row["Coarse Class Name (str)"].strip().replace("-", " ").lower()))
    return out


def _neighbours(letter: str) -> str:
    for row in KEYBOARD_ROWS:
        i = row.find(letter)
        if i >= 0:
            return row[max(0, i - 1) : i] + row[i + 1 : i + 2]
    return letter


def with_typos(text: str, rng: np.random.Generator, edits: int | None = None) -> str:
    """`text` with `edits` single-character edits (default: one per 8 letters, at least one),
    never at a word's first letter (people rarely mistype that one)."""
    chars = list(text)
    edits = edits or max(1, sum(c.isalpha() for c in text) // 8)
    for _ in range(edits):
        spots = [i for i, c in enumerate(chars) if c.isalpha() and i > 0 and chars[i - 1].isalpha()]
        if not spots:
            break
        i = int(rng.choice(spots))
        kind = int(rng.integers(4))
        if kind == 0:
            del chars[i]
        elif kind == 1:
            chars.insert(i, chars[i])
        elif kind == 2 and i + 1 < len(chars) and chars[i + 1].isalpha():
            chars[i], chars[i + 1] = chars[i + 1], chars[i]
        else:
            options = _neighbours(chars[i])
            chars[i] = options[int(rng.integers(len(options)))]
    return "".join(chars)


def shortened(text: str, rng: np.random.Generator) -> str:
    """Some words dropped (at least one kept, in order) and long words cut to a prefix."""
    words = text.split()
    if len(words) > 1:
        keep = max(1, int(rng.integers(1, len(words))))
        chosen = sorted(rng.choice(len(words), size=keep, replace=False))
        words = [words[i] for i in chosen]
    out = []
    for word in words:
        if len(word) > 6 and rng.random() < 0.7:
            word = word[: int(rng.integers(4, len(word) - 1))]
        out.append(word)
    return " ".join(out)


def make_queries(items: list[Product], seed: int = SEED) -> list[Query]:
    rng = np.random.default_rng(seed)
    queries = []
    for product in items:
        name = product.title.lower()
        for _ in range(QUERIES_PER_KIND):
            queries.append(Query(with_typos(name, rng), "typo", product))
            queries.append(Query(shortened(name, rng), "short", product))
            queries.append(Query(with_typos(shortened(name, rng), rng, edits=1), "short+typo", product))
    # A one-word name often shortens to the same query twice: each distinct query counts once.
    return list(dict.fromkeys(queries))


def _hits(ranked_ids: list[np.ndarray], wanted: list[int], k: int) -> float:
    return float(np.mean([w in r[:k] for r, w in zip(ranked_ids, wanted, strict=True)])) if wanted else 0.0


def _rank(ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
    return ids[np.argsort(-scores, kind="stable")]


def run(ctx: BenchContext) -> list[Table]:
    single_thread()
    from lens.config import load_settings
    from lens.embed import create_embedder
    from lens.index import open_catalog
    from lens.index.text import TextIndex
    from lens.textembed import create_text_embedder

    items = products()
    queries = make_queries(items)
    if ctx.quick:
        queries = queries[::6]
    with tempfile.TemporaryDirectory(dir=ctx.work_dir) as tmp:
        settings = load_settings(data_dir=Path(tmp), models_dir=REPO_ROOT / "var" / "models")
        catalog = open_catalog(settings, create_embedder(settings), create=True)
        item_of: dict[int, int] = {}
        for product in items:
            item_of[product.class_id] = catalog.add_image(
                product.iconic, title=product.title, extra={"description": product.description})
        catalog.save()
        index = TextIndex(settings.catalog_dir, create_text_embedder(settings), settings.text_search)
        index.sync(catalog)
        scored = [(query, *index.score_all(query.text)) for query in queries]
        catalog.close()
        multi = multisearch_table(ctx, settings, {p.class_id: p for p in items}, item_of)

    def evaluate(half: str, kind: str | None, method) -> tuple[float, float, int]:
        chosen = [s for s in scored if s[0].product.half == half and (kind is None or s[0].kind == kind)]
        ranked = [_rank(ids, method(cos, kw)) for _, ids, cos, kw in chosen]
        wanted = [item_of[q.product.class_id] for q, *_ in chosen]
        return _hits(ranked, wanted, 1), _hits(ranked, wanted, 5), len(chosen)

    def fused(weight: float):
        return lambda cos, kw: weight * cos + (1 - weight) * kw

    tuning = []
    for weight in WEIGHTS:
        top1, top5, _ = evaluate("tune", None, fused(weight))
        tuning.append((top1, top5, weight))
    best_weight = max(tuning)[2]
    default_weight = settings.text_search.embedding_weight
    methods = [("embedding only (MiniLM cosine)", lambda cos, kw: cos),
               ("keyword only (trigram word match)", lambda cos, kw: kw),
               (f"fused, weight {best_weight} (tuned)", fused(best_weight))]
    if default_weight != best_weight:
        methods.append((f"fused, weight {default_weight} (configured default)", fused(default_weight)))

    rows = []
    for label, method in methods:
        row: list[object] = [label]
        for kind in (None, *KINDS):
            top1, top5, n = evaluate("report", kind, method)
            row += [top1, top5]
        rows.append(row)
    n_report = evaluate("report", None, methods[0][1])[2]
    # The listing floor (text_search.min_score): how often it would hide the query's product.
    floor = settings.text_search.min_score
    report_scored = [s for s in scored if s[0].product.half == "report"]
    under_floor = np.mean([fused(default_weight)(cos, kw)[list(ids).index(item_of[q.product.class_id])] < floor
                           for q, ids, cos, kw in report_scored])
    examples = [next(q for q in queries if q.kind == kind) for kind in KINDS]
    columns = ["method", "top-1", "top-5"] + [f"{k} {m}" for k in KINDS for m in ("top-1", "top-5")]
    report = Table(
        f"Report half: {n_report} queries for the 40 odd-id products, each searched among all 80 items",
        columns, rows,
        notes=(f"Queries: {QUERIES_PER_KIND} per kind per product, seed {SEED}, e.g. "
               + "; ".join(f"'{q.text}' ({q.kind}, {q.product.title})" for q in examples)
               + ". Fusion weight = share of the embedding score, chosen on the tuning half (ties: the "
               f"largest weight, which keeps the most of the meaning match). The listing floor "
               f"(min_score {floor}) hides the query's product for {under_floor:.1%} of these queries."))
    tune_table = Table(
        "Tuning half: fused top-1 / top-5 by embedding weight (even-id products)",
        ["embedding weight", "top-1", "top-5"], [[w, t1, t5] for t1, t5, w in tuning])
    return [report, tune_table, multi]


def multisearch_table(ctx: BenchContext, settings, by_class: dict[int, Product], item_of: dict[int, int]) -> Table:
    """Multisearch on real shop photos: GroceryStore's val photos (the whole photo as the box),
    each with its product's coarse class as the words a shopper adds ("apple", "oat milk",
    "yoghurt"), against the same 80-item catalog. The image search's shortlist is re-scored by
    lens.pipeline.combine_multisearch; text_search.multisearch_text_weight is chosen on the
    even lines of val.txt (the tuning half of bench_grocery too) and reported on the odd lines."""
    from bench.bench_grocery import split
    from lens.image import decode_image
    from lens.pipeline import Pipeline, combine_multisearch

    photos = split("val")
    if ctx.quick:
        photos = photos[::7]  # both halves (odd and even lines)
    pipeline = Pipeline(settings)
    config = settings.text_search
    runs = []
    for photo in photos:
        image = decode_image(photo.path.read_bytes())
        frame = (0.0, 0.0, float(image.width), float(image.height))
        shortlist = pipeline.search_boxes(image, [frame], k=config.multisearch_shortlist)[0]
        words = by_class[photo.class_id].coarse
        index = pipeline.text_index
        index.sync(pipeline.catalog)
        text_scores = {h.item_id: h.score for h in index.search(words, len(shortlist), restrict=[m.item_id for m in shortlist])}
        text_only = [h.item_id for h in index.search(words, 5)]
        runs.append((photo, item_of[photo.class_id], shortlist, text_scores, text_only))

    def shares(half: str, weight: float | None) -> tuple[float, float]:
        chosen = [r for r in runs if r[0].half == half]
        if not chosen:
            return 0.0, 0.0
        ranked = [r[4] if weight is None else [m.item_id for m in combine_multisearch(r[2], r[3], weight)]
                  for r in chosen]
        return (float(np.mean([rank[:1] == [r[1]] for rank, r in zip(ranked, chosen, strict=True)])),
                float(np.mean([r[1] in rank[:5] for rank, r in zip(ranked, chosen, strict=True)])))

    best = max((*shares("tune", w), w) for w in WEIGHTS)[2]
    default = config.multisearch_text_weight
    rows = [["photo only (text weight 0)", *shares("report", 0.0)],
            ["words only (the coarse class, text search)", *shares("report", None)],
            [f"photo + words, text weight {best} (tuned)", *shares("report", best)]]
    if default != best:
        rows.append([f"photo + words, text weight {default} (configured default)", *shares("report", default)])
    tuning = ", ".join(f"{w}: {shares('tune', w)[0]:.3f}" for w in WEIGHTS)
    n_report = sum(1 for r in runs if r[0].half == "report")
    return Table(
        f"Multisearch, report half: {n_report} GroceryStore val photos (odd lines), whole photo + its coarse class as words",
        ["query", "top-1", "top-5"], rows,
        notes=(f"Shortlist {config.multisearch_shortlist} items from the image search (re-ranking on, as served); "
               f"top-1 on the tuning half by text weight: {tuning}."))
