"""Milvus Lite's load rate on a subset of bench_scale's 1M vectors (same generator, seed 1), for
the 1M extrapolation in bench/RESULTS.md (scale): insert the first 200k in 20k batches (the rate
of each batch is printed), flush, index (HNSW as lens builds it), load, then 50 single queries.

    nice -n 10 .venv/bin/python -m bench.milvus_load_rate
"""

from __future__ import annotations

import shutil
import tempfile
import time

import numpy as np

from bench.bench_index import _clustered
from bench.bench_scale import milvus_collection
from lens.config import IndexConfig

TOTAL, SUBSET, BATCH, QUERIES = 1_000_000, 200_000, 20_000, 50


def main() -> None:
    points = _clustered(np.random.default_rng(1), TOTAL + 200)
    base, probe = points[:SUBSET].copy(), points[TOTAL : TOTAL + QUERIES].copy()
    del points
    config = IndexConfig()
    folder = tempfile.mkdtemp(prefix="milvus-load-")
    try:
        started = time.perf_counter()
        client = milvus_collection(folder, "HNSW", {"M": config.hnsw_m, "efConstruction": config.hnsw_ef_construction})
        for lo in range(0, SUBSET, BATCH):
            batch_start = time.perf_counter()
            client.insert("scale", [{"id": lo + i, "vector": v} for i, v in enumerate(base[lo : lo + BATCH])])
            took = time.perf_counter() - batch_start
            print(f"insert rows {lo}-{lo + BATCH}: {took:.1f} s ({BATCH / took:.0f} rows/s)", flush=True)
        inserted = time.perf_counter() - started
        client.flush("scale")
        while client.describe_index("scale", "vector").get("pending_index_rows", 0):
            time.sleep(0.2)
        client.load_collection("scale")
        built = time.perf_counter() - started
        latencies = []
        for query in probe:
            query_start = time.perf_counter()
            client.search("scale", data=[query], limit=10, search_params={"metric_type": "IP", "params": {"ef": 64}})
            latencies.append((time.perf_counter() - query_start) * 1e3)
        print(f"rows {SUBSET}: insert {inserted:.1f} s, build {built:.1f} s ({SUBSET / built:.0f} vectors/s), "
              f"search p50 {np.median(latencies):.1f} ms, p95 {np.percentile(latencies, 95):.1f} ms", flush=True)
        client.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
