"""Vector stores at scale: faiss (the index kinds lens builds) against Milvus Lite (the embedded
build of the Milvus engine, through pymilvus' MilvusClient and a local file), on the same
clustered synthetic vectors as bench_index. Per store: build time (insert + index), p50/p95
single-query search ms, recall@10 against exact search (faiss flat over the same vectors).

100k vectors always; 1M only without --quick and with BENCH_SCALE_1M=1 (on 2 shared cores the
1M rows take tens of minutes and ~4 GB of memory, so a plain `make bench` leaves them out and
says so in its table). BENCH_SCALE_STORES=faiss measures faiss alone (Milvus Lite's Python engine
loads ~600 vectors/s here, so its 1M rows alone would take about an hour).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time

import numpy as np

from bench import BenchContext, Table
from bench.bench_index import DIM, _clustered

QUERIES = 200
# Milvus' insert RPC has a message size limit (64 MB by default): 20k x 256 x 4 B is 20 MB.
INSERT_BATCH = 20_000
# Operating points of Milvus' own index parameters next to lens' faiss defaults.
MILVUS_HNSW_EF = (64, 128)
MILVUS_IVF_NPROBE = (16, 64)


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "?"


def _percentiles(latencies: list[float]) -> tuple[float, float]:
    return round(float(np.median(latencies)), 2), round(float(np.percentile(latencies, 95)), 2)


def _recall(found: np.ndarray, exact: np.ndarray) -> float:
    return round(float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, exact, strict=True)])), 3)


def _faiss_rows(n: int, base: np.ndarray, probe: np.ndarray, kinds: tuple[str, ...]) -> tuple[list, np.ndarray]:
    import faiss

    from bench.bench_index import _timed_search
    from lens.config import IndexConfig
    from lens.index.vectors import VectorIndex, ivf_list_count

    config = IndexConfig()
    ids = np.arange(n, dtype=np.int64)
    rows, exact = [], None
    for kind in ("flat", *kinds):
        faiss.omp_set_num_threads(2)
        start = time.perf_counter()
        index = VectorIndex.build(DIM, kind, config, ids, base)
        build_s = round(time.perf_counter() - start, 1)
        faiss.omp_set_num_threads(1)
        found, latencies = _timed_search(index, probe)
        if kind == "flat":
            exact = found
        setting = {"flat": "exact", "hnsw": f"M {config.hnsw_m}, ef {config.hnsw_ef_search}",
                   "ivf": f"nprobe {config.ivf_nprobe} of {ivf_list_count(n)} lists"}[kind]
        rows.append([n, "faiss", kind, setting, build_s, *_percentiles(latencies), _recall(found, exact)])
        del index
    return rows, exact


def milvus_collection(folder: str, index_type: str, build_params: dict):
    """A Milvus Lite client on a new file in `folder` with an empty "scale" collection (int64 id,
    DIM-d vector) indexed by `index_type` on inner product, as lens.index.stores builds it."""
    from pymilvus import DataType, MilvusClient

    client = MilvusClient(os.path.join(folder, "scale.db"))
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=DIM)
    params = client.prepare_index_params()
    params.add_index(field_name="vector", index_type=index_type, metric_type="IP", params=build_params)
    client.create_collection("scale", schema=schema, index_params=params)
    return client


def _milvus_rows(n: int, base: np.ndarray, probe: np.ndarray, exact: np.ndarray, work_dir) -> list:
    from lens.config import IndexConfig
    from lens.index.vectors import ivf_list_count

    config = IndexConfig()
    rows = []
    indexes = {
        "hnsw": ("HNSW", {"M": config.hnsw_m, "efConstruction": config.hnsw_ef_construction},
                 "ef", MILVUS_HNSW_EF),
        "ivf": ("IVF_FLAT", {"nlist": ivf_list_count(n)}, "nprobe", MILVUS_IVF_NPROBE),
    }
    for kind, (index_type, build_params, knob, values) in indexes.items():
        folder = tempfile.mkdtemp(dir=work_dir)
        try:
            start = time.perf_counter()
            client = milvus_collection(folder, index_type, build_params)
            for lo in range(0, n, INSERT_BATCH):
                chunk = base[lo : lo + INSERT_BATCH]
                client.insert("scale", [{"id": lo + i, "vector": v} for i, v in enumerate(chunk)])
            client.flush("scale")
            # The build is over once every row is in the index and the collection is loaded.
            while client.describe_index("scale", "vector").get("pending_index_rows", 0):
                time.sleep(0.2)
            client.load_collection("scale")
            build_s = round(time.perf_counter() - start, 1)
            for value in values:
                found, latencies = [], []
                for q in probe:
                    start = time.perf_counter()
                    hits = client.search("scale", data=[q], limit=10, output_fields=["id"],
                                         search_params={"metric_type": "IP", "params": {knob: value}})
                    latencies.append((time.perf_counter() - start) * 1e3)
                    found.append([h["id"] for h in hits[0]] + [-1] * (10 - len(hits[0])))
                setting = (f"M {config.hnsw_m}, ef {value}" if kind == "hnsw"
                           else f"nprobe {value} of {build_params['nlist']} lists")
                rows.append([n, "milvus-lite", kind, setting, build_s, *_percentiles(latencies),
                             _recall(np.array(found), exact)])
            client.close()
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    return rows


def run(ctx: BenchContext) -> list[Table]:
    big = not ctx.quick and os.environ.get("BENCH_SCALE_1M") == "1"
    stores = set(os.environ.get("BENCH_SCALE_STORES", "faiss,milvus").split(","))
    sizes = [20_000] if ctx.quick else [100_000, *([1_000_000] if big else [])]
    queries = 20 if ctx.quick else QUERIES
    rng = np.random.default_rng(1)
    rows = []
    for n in sizes:
        points = _clustered(rng, n + queries)
        base, probe = points[:n], points[n:]
        del points
        # faiss HNSW at 1M is left out as in bench_index (its build alone is many minutes here).
        faiss_rows, exact = _faiss_rows(n, base, probe, ("ivf",) if n > 100_000 else ("ivf", "hnsw"))
        rows += faiss_rows
        if "milvus" in stores:
            rows += _milvus_rows(n, base, probe, exact, ctx.work_dir)
        del base
    if "milvus" not in stores:
        rows.append([", ".join(str(n) for n in sizes), "milvus-lite", "-", "not run: BENCH_SCALE_STORES=faiss",
                     "-", "-", "-", "-"])
    if not big and not ctx.quick:
        rows.append([1_000_000, "both", "-", "not run: set BENCH_SCALE_1M=1 (tens of minutes, ~4 GB on 2 shared cores)",
                     "-", "-", "-", "-"])
    return [Table(
        f"faiss vs Milvus Lite, {DIM}-d clustered synthetic vectors, single query",
        ["vectors", "store", "index", "setting", "build s", "p50 ms", "p95 ms", "recall@10 vs exact"],
        rows,
        notes=(f"Vectors and {queries} held-out queries as in bench_index (same generator, seed 1). "
               "Exact = faiss IndexFlatIP over the same vectors. faiss: lens.index.vectors.VectorIndex, "
               "built on 2 threads, searched on 1 (as in a worker), in-process. Milvus Lite "
               "(pymilvus MilvusClient on a local file, metric IP): build = insert in "
               f"{INSERT_BATCH // 1000}k batches + flush + index + load; each search is one MilvusClient.search "
               "call, so it includes the client's request encoding and result decoding; a Milvus standalone "
               "server adds a network round trip on top. Milvus Lite chooses its own threads. "
               f"milvus-lite {_version('milvus-lite')} is not Milvus' C++ engine: it is a Python engine behind "
               "Milvus' gRPC API (faiss indexes per sealed segment, brute force over the rest), so its latency "
               "says little about a Milvus server; recall 1.0 at every setting means its searches were exact. "
               "The 2-core machine is shared with other engineers' jobs: compare rows of one run."),
    )]
