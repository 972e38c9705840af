"""Catalog index speed: search latency and recall@10 of flat / HNSW / IVF over random unit
vectors, single query, faiss on 1 thread (as in a worker); and catalog build images/s."""

from __future__ import annotations

import time

import numpy as np

from bench import BenchContext, Table

DIM = 256  # the 1280-d product vectors would need 5 GB at 1M; flat search time scales with dim


def _unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):
        block = rng.standard_normal((min(100_000, n - start), dim), dtype=np.float32)
        out[start : start + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def search_table(ctx: BenchContext) -> Table:
    import faiss

    from lens.config import IndexConfig
    from lens.index.vectors import VectorIndex

    faiss.omp_set_num_threads(1)
    rng = np.random.default_rng(0)
    sizes = [10_000, 100_000] if ctx.quick else [10_000, 100_000, 1_000_000]
    queries = 20 if ctx.quick else 100
    config = IndexConfig()
    rows = []
    for n in sizes:
        base = _unit(rng, n, DIM)
        # Queries near catalog items, as real queries are, not uniform noise.
        probe = base[rng.choice(n, queries, replace=False)] + 0.5 * _unit(rng, queries, DIM) / np.sqrt(DIM) * 4
        probe /= np.linalg.norm(probe, axis=1, keepdims=True)
        ids = np.arange(n, dtype=np.int64)
        exact = None
        for kind in ("flat", "ivf", "hnsw"):
            if kind == "hnsw" and n > 100_000:
                rows.append([n, kind, "-", "-", "-", "not run: HNSW build of 1M on 2 shared cores takes too long"])
                continue
            faiss.omp_set_num_threads(2)  # building may use both cores
            start = time.perf_counter()
            index = VectorIndex.build(DIM, kind, config, ids, base)
            build_s = time.perf_counter() - start
            faiss.omp_set_num_threads(1)
            latencies, found = [], []
            for q in probe:
                t = time.perf_counter()
                _, got = index.search(q[None], 10)
                latencies.append((time.perf_counter() - t) * 1e3)
                found.append(got[0])
            found = np.array(found)
            if kind == "flat":
                exact = found
            recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, exact, strict=True)]))
            rows.append([n, kind, round(build_s, 1), round(float(np.median(latencies)), 2),
                         round(float(np.percentile(latencies, 95)), 2), round(recall, 3)])
            del index
        del base
    return Table(
        f"Search latency, {DIM}-d random unit vectors, single query, faiss 1 thread",
        ["vectors", "index", "build s", "p50 ms", "p95 ms", "recall@10 vs exact"],
        rows,
        notes=f"IndexIDMap2 over inner product; HNSW M={config.hnsw_m} efSearch={config.hnsw_ef_search}, "
        f"IVF ~4 sqrt(n) lists nprobe={config.ivf_nprobe}. {queries} queries near catalog vectors.",
    )


def build_table(ctx: BenchContext) -> Table:
    import tempfile

    import torch

    from lens.config import load_settings
    from lens.embed import create_embedder
    from lens.index import open_catalog
    from lens.index.catalog import NewItem
    from lens.index.demo import tux_stamps

    torch.set_num_threads(2)
    stamps = tux_stamps()[: 32 if ctx.quick else 128]
    rows = []
    for backend in ("efficientnet-lite2", "mobilenetv2"):
        with tempfile.TemporaryDirectory(dir=ctx.work_dir) as tmp:
            settings = load_settings(data_dir=tmp, embed={"backend": backend})
            catalog = open_catalog(settings, create_embedder(settings), create=True)
            start = time.perf_counter()
            catalog.add_images([NewItem(s.path, title=s.title) for s in stamps])
            catalog.save()
            took = time.perf_counter() - start
            catalog.close()
        rows.append([backend, len(stamps), round(took, 1), round(len(stamps) / took, 1)])
    return Table(
        "Catalog build (decode, embed, SQLite, thumbnail, faiss, save), torch 2 threads",
        ["embedder", "images", "seconds", "images/s"],
        rows,
        notes="Tux Paint stamps; the shared 2-core machine was busy with other work, so treat as a lower bound.",
    )


def run(ctx: BenchContext) -> list[Table]:
    return [build_table(ctx), search_table(ctx)]
