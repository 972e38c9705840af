"""`lens index tune` at operator scale: 1,000 items (GroZi-120 in-store crops, each crop its own
item, one image each), on this machine's cores as the CLI runs it (one intra-op thread per
core), from an empty feature cache; plus what the head adds to one
search (10 dot vectors, the usual analysis) against the same catalog without it.

GroZi-120's products are not GroceryStore's: nothing here touches the grocery benchmark.
"""

from __future__ import annotations

import tempfile
import time

import numpy as np

from bench import REPO_ROOT, SHARED, BenchContext, Table

GROZI = SHARED / "data" / "grozi120"
ITEMS = 1000


def grozi_crops(count: int) -> list:
    """`count` crops spread over the 120 products (round-robin over their folders)."""
    folders = sorted((p for p in GROZI.iterdir() if p.is_dir()), key=lambda p: int(p.name) if p.name.isdigit() else 0)
    per_product = [sorted(f.glob("*.jpg")) for f in folders]
    chosen = []
    for depth in range(max(len(files) for files in per_product)):
        for files in per_product:
            if depth < len(files):
                chosen.append(files[depth])
                if len(chosen) == count:
                    return chosen
    return chosen


def run(ctx: BenchContext) -> list[Table]:
    from lens.config import load_settings
    from lens.embed import create_embedder
    from lens.index import open_catalog
    from lens.index.catalog import NewItem
    from lens.index.tune import tune_catalog
    from lens.threads import apply_settings_policy, cpu_count

    count = 100 if ctx.quick else ITEMS
    rows, search_rows = [], []
    with tempfile.TemporaryDirectory(dir=ctx.work_dir) as tmp:
        settings = load_settings(data_dir=tmp, models_dir=REPO_ROOT / "var" / "models",
                                 ocr={"backend": "none"}, translate={"backend": "none"})
        apply_settings_policy(settings, bulk=True)
        embedder = create_embedder(settings)
        catalog = open_catalog(settings, embedder, create=True)
        start = time.perf_counter()
        catalog.add_images([NewItem(p, title=f"{p.parent.name}/{p.stem}") for p in grozi_crops(count)])
        catalog.save()
        add_s = time.perf_counter() - start
        done = {"images": 0, "epochs": 0}
        start = time.perf_counter()

        def tick(kind: str, every: int):
            def call(n: int) -> None:
                done[kind] += n
                if done[kind] % every == 0:
                    print(f"  {kind}: {done[kind]} after {time.perf_counter() - start:.0f} s", flush=True)
            return call

        cpu_start = time.process_time()
        report = tune_catalog(catalog, settings, tick("images", 50), tick("epochs", 5))
        total = time.perf_counter() - start
        cpu = time.process_time() - cpu_start
        rows.append([report.items, settings.tune.views, report.samples, round(add_s, 1),
                     round(report.features_s, 1), round(report.train_s, 1), round(total / 60, 2),
                     round(cpu / 60, 1), round(cpu / 60 / cpu_count(), 1),
                     round(report.held_out_top1_before, 3), round(report.held_out_top1_after, 3)])
        apply_settings_policy(settings)  # one query, one thread, as a worker serves it
        queries = np.asarray(catalog.all_vectors()[1][:10])
        ms = {"plain": [], "head": []}
        head = catalog.active_head()
        for _ in range(50 if not ctx.quick else 5):
            for name, use in (("plain", False), ("head", True)):
                catalog.settings = settings.model_copy(update={"tune": settings.tune.model_copy(update={"use_head": use})})
                start = time.perf_counter()
                catalog.search(queries, k=10)
                ms[name].append((time.perf_counter() - start) * 1000)
        start = time.perf_counter()
        for _ in range(100):
            head.project(queries)
        project_ms = (time.perf_counter() - start) * 10
        catalog.close()
    plain, tuned = float(np.median(ms["plain"])), float(np.median(ms["head"]))
    search_rows = [["plain vectors", round(plain, 2), 1.0], ["tuned head (project + search)", round(tuned, 2),
                   round(tuned / max(plain, 1e-9), 2)]]
    return [
        Table(
            f"lens index tune on {count} items (GroZi-120 crops, one image each), {cpu_count()} cores",
            ["items", "views per image", "training views", "index add s", "features s",
             "training s", "tune minutes (wall)", "CPU minutes", "CPU minutes / cores", "held-out views top-1 without head", "with head"],
            rows,
            notes="Features: each image and its synthetic views embedded once (EfficientNet-Lite2, onnxruntime, "
            "one thread per core) from an empty cache; a second tune reads them back and pays the training only. Held-out: the "
            "last 2 views of every image, searched against the items' own image vectors. Shared machine: "
            "other processes' load inflates the wall seconds; CPU minutes / cores is what the tune takes on "
            "an otherwise idle machine with these cores.",
        ),
        Table(
            "Catalog search with the tuned head: 10 dot vectors, k=10, 1 thread",
            ["search", "median ms", "vs plain"],
            search_rows,
            notes=f"The head's matmul alone: {project_ms:.2f} ms for the 10 vectors. The catalog's own vectors "
            "are re-projected once per catalog state (on the first search after a change).",
        ),
    ]
