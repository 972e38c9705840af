"""The tuned head (`lens index tune`) on GroceryStore val photos, from each photo's dots as
Pipeline.find_regions selects them (default detector, saliency, RegionConfig), their crops
embedded once (mean 260, as bench_grocery's rows), searched with numpy against the catalog's
image vectors with and without the head. No re-ranking: this measures what the head does to
the global search; bench_grocery measures the whole path with re-ranking.

    .venv/bin/python -m bench.grocery_head --work /tmp/grocery-head

Catalogs: iconic-only (the head learns from the 81 iconic images and their synthetic views:
nothing from GroceryStore's photos) and protocol B k=3 (iconic + 3 train photos per product and
their views). Halves as in bench_grocery (even val lines = tuning half). The dots' vectors and
the views' features are cached under --work, so a second run only trains and searches.
"""

from __future__ import annotations

import argparse
import pickle
import time
from pathlib import Path

import numpy as np

from bench import REPO_ROOT, single_thread
from bench.bench_grocery import HALVES, catalog_items, split


def dot_vectors(work: Path, settings) -> list[dict]:
    """Per val photo: its class, half, the vectors of its dots (in order) and of the whole photo."""
    from lens.image import crop_box, load_image_file
    from lens.pipeline import AnalyzeOptions, Pipeline, Timer

    cached = work / "queries.pkl"
    if cached.is_file():
        return pickle.loads(cached.read_bytes())
    pipeline = Pipeline(settings)
    out = []
    for photo in split("val"):
        image = load_image_file(photo.path)
        regions = pipeline.find_regions(image, AnalyzeOptions(search=False, text=False), Timer())
        boxes = [r.box for r in regions] + [(0.0, 0.0, float(image.width), float(image.height))]
        vectors = pipeline.embedder.embed([crop_box(image.rgb, b, margin=0.05) for b in boxes])
        out.append({"index": photo.index, "half": photo.half, "cls": photo.class_id, "dots": vectors[:-1],
                    "whole": vectors[-1]})
    cached.write_bytes(pickle.dumps(out))
    return out


def _normalise(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def evaluate(queries: list[dict], ref: np.ndarray, ref_cls: np.ndarray, weights: np.ndarray | None, half: str) -> dict:
    """first-dot top-1/top-5, any-dot top-5, whole-photo top-1; an item scored by its best image."""
    refs = _normalise(ref @ weights) if weights is not None else ref

    def ranked(vector: np.ndarray) -> list[int]:
        if weights is not None:
            vector = _normalise(vector[None] @ weights)[0]
        seen: list[int] = []
        for i in np.argsort(-(refs @ vector)):
            if ref_cls[i] not in seen:
                seen.append(int(ref_cls[i]))
            if len(seen) == 5:
                break
        return seen

    hits: dict[str, list[bool]] = {"first dot top-1": [], "first dot top-5": [], "any dot top-5": [], "whole top-1": []}
    for q in queries:
        if q["half"] != half:
            continue
        dots = [ranked(d) for d in q["dots"]]
        hits["first dot top-1"].append(bool(dots) and dots[0][:1] == [q["cls"]])
        hits["first dot top-5"].append(bool(dots) and q["cls"] in dots[0])
        hits["any dot top-5"].append(any(q["cls"] in d for d in dots))
        hits["whole top-1"].append(ranked(q["whole"])[:1] == [q["cls"]])
    return {m: round(float(np.mean(v)), 3) for m, v in hits.items()}


def main() -> None:
    from lens.config import load_settings
    from lens.embed import create_embedder
    from lens.index import open_catalog
    from lens.index.tune import CACHE_DIR, train_head, view_features

    parser = argparse.ArgumentParser()
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--k", type=int, nargs="+", default=[0, 3], help="protocol B shelf photos per product")
    args = parser.parse_args()
    single_thread()
    args.work.mkdir(parents=True, exist_ok=True)
    base = {"models_dir": REPO_ROOT / "var" / "models", "embed": {"pooling": "mean", "input_size": None},
            "ocr": {"backend": "none"}, "translate": {"backend": "none"}}
    queries = dot_vectors(args.work, load_settings(data_dir=args.work / "pipeline", **base))
    (args.work / "views").mkdir(exist_ok=True)
    for k in args.k:
        settings = load_settings(data_dir=args.work / f"catalog-k{k}", **base)
        catalog = open_catalog(settings, create_embedder(settings), create=True)
        if catalog.count() == 0:
            (catalog.folder / CACHE_DIR).symlink_to(args.work / "views", target_is_directory=True)
            catalog.add_images(catalog_items(k), join_external_id=True)
            catalog.save()
        features = view_features(catalog, settings.tune)
        rows = catalog.image_rows()
        external = {item.id: int(item.external_id) for item in catalog.items(limit=100_000)}
        catalog.close()
        ref = np.stack([features[r[2]][0] for r in rows])
        ref_cls = np.array([external[r[1]] for r in rows])
        label = {owner: i for i, owner in enumerate(sorted({r[1] for r in rows}))}
        x = np.concatenate([features[r[2]] for r in rows])
        y = np.concatenate([[label[r[1]]] * len(features[r[2]]) for r in rows])
        start = time.perf_counter()
        weights = train_head(x, y, settings.tune)
        name = "iconic-only" if k == 0 else f"protocol B, k={k}"
        print(f"{name}: trained on {len(x)} views of {len(rows)} images in {time.perf_counter() - start:.0f} s")
        for half in HALVES:
            print(f"  {half}: without head {evaluate(queries, ref, ref_cls, None, half)}")
            print(f"  {half}: with head    {evaluate(queries, ref, ref_cls, weights, half)}", flush=True)


if __name__ == "__main__":
    main()
