"""Vectors in a Milvus collection (pymilvus MilvusClient): one copy that every worker searches,
instead of a faiss index in each worker's memory.

`vectors.options.uri` names the server (`http://milvus:19530` in a fleet) or a Milvus Lite file
(a path ending in .db; empty = `<catalog_dir>/vectors.milvus.db`, for one process and tests).
The collection has an INT64 primary key (the catalog's image id) and one FLOAT_VECTOR field,
inner-product metric (vectors are L2-normalised, so scores are the cosine similarities faiss
gives), and an HNSW, IVF_FLAT or FLAT index (`vectors.options.index`).

Writes follow the catalog's transaction: add/remove only buffer; `prepare_save` upserts the
added vectors before the metadata commits (an upsert by id, so a retried or repeated write
lands once), `finish_save` deletes the removed ones after it. A writer killed in between
leaves extra vectors only (ids the metadata no longer or not yet has), which searches drop
when they join against the metadata; the next writer, holding the write lock, compares the
collection's count with the metadata's and repairs the difference from the vectors the
metadata holds (`begin`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, SecretStr

from lens.config import Settings
from lens.index.stores import VectorSource, VectorStoreUnavailableError
from lens.registry import BackendOptions

log = logging.getLogger(__name__)

VECTOR_FIELD = "vector"
# Rows per insert/upsert call: gRPC messages are limited to 64 MB by default (2000 x 1280-d
# float32 is 10 MB).
WRITE_BATCH = 2000
# Milvus refuses a topk above this.
MAX_TOPK = 16384
INDEX_TYPES = {"hnsw": "HNSW", "ivf": "IVF_FLAT", "flat": "FLAT"}
KINDS = {v: k for k, v in INDEX_TYPES.items()}


class MilvusOptions(BackendOptions):
    """`[vectors.options]` / LENS_VECTORS__OPTIONS__<NAME> for vectors.backend = "milvus"."""

    # A Milvus server (http://milvus:19530) or a Milvus Lite file (*.db); empty = the Milvus
    # Lite file <catalog_dir>/vectors.milvus.db, which one process at a time may open.
    uri: str = ""
    token: SecretStr | None = None
    # One collection per catalog: name another one to keep two catalogs on one server.
    collection: str = Field("lens_catalog", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
    # The collection's index, built per segment by Milvus: HNSW (M / efConstruction / efSearch
    # from the index section, as for faiss), IVF_FLAT (ivf_nlist lists per segment, nprobe from
    # index.ivf_nprobe) or FLAT (exact).
    index: Literal["hnsw", "ivf", "flat"] = "hnsw"
    ivf_nlist: int = Field(1024, ge=1, le=65536)
    # "Strong": a search sees every save committed before it, from any process (it waits for
    # the server's time tick); "Bounded"/"Eventually" answer sooner but may miss a write of
    # the last seconds.
    consistency: Literal["Strong", "Bounded", "Session", "Eventually"] = "Strong"
    # Seconds a Milvus call may take before it fails (503 vectors_unavailable).
    timeout_s: float = Field(10.0, gt=0)


class MilvusStore:
    name = "milvus"
    Options = MilvusOptions

    def __init__(self, settings: Settings, folder: Path, dim: int, source: VectorSource) -> None:
        self.settings = settings
        self.config = MilvusOptions.parse(settings.vectors.options)
        self.dim = dim
        self.source = source
        self.uri = self.config.uri or str(folder / "vectors.milvus.db")
        self.collection = self.config.collection
        self._pending_add: dict[int, np.ndarray] = {}
        self._pending_remove: set[int] = set()
        self._count = 0
        self.kind = self.config.index
        self._client = self._call("connect", self._connect)
        self._ensure_collection()

    # -- plumbing --------------------------------------------------------------------------
    def _connect(self):
        from pymilvus import MilvusClient

        token = self.config.token.get_secret_value() if self.config.token else ""
        return MilvusClient(self.uri, token=token, timeout=self.config.timeout_s)

    def _call(self, what: str, fn, *args, **kwargs) -> Any:
        from pymilvus.exceptions import MilvusException

        try:
            return fn(*args, **kwargs)
        except MilvusException as exc:
            raise VectorStoreUnavailableError(
                f"the vector store (Milvus at {_redacted(self.uri)}) failed to {what}: {exc.message}"
            ) from None

    def _ensure_collection(self) -> None:
        from pymilvus import DataType, MilvusClient

        client = self._client
        if not self._call("list collections", client.has_collection, self.collection):
            schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field("id", DataType.INT64, is_primary=True)
            schema.add_field(VECTOR_FIELD, DataType.FLOAT_VECTOR, dim=self.dim)
            params = client.prepare_index_params()
            params.add_index(field_name=VECTOR_FIELD, index_type=INDEX_TYPES[self.kind], metric_type="IP",
                             params=self._build_params())
            self._call("create the collection", client.create_collection, self.collection, schema=schema,
                       index_params=params, consistency_level=self.config.consistency)
            log.info("created Milvus collection %s (%s, dim %d)", self.collection, INDEX_TYPES[self.kind], self.dim)
        else:
            description = self._call("describe the collection", client.describe_collection, self.collection)
            dims = [f.get("params", {}).get("dim") for f in description.get("fields", []) if f.get("name") == VECTOR_FIELD]
            if dims and int(dims[0]) != self.dim:
                from lens.index.catalog import CatalogMismatchError

                raise CatalogMismatchError(
                    f"Milvus collection {self.collection} at {_redacted(self.uri)} holds {dims[0]}-d vectors, but the "
                    f"catalog's embedder makes {self.dim}-d ones; set vectors.options.collection to another name")
            index = self._call("describe the index", client.describe_index, self.collection, VECTOR_FIELD)
            existing = KINDS.get(str(index.get("index_type", "")).upper())
            if existing and existing != self.kind:
                log.warning("Milvus collection %s has a %s index, not the configured %s; searching it as %s "
                            "(drop the collection to rebuild it)", self.collection, existing, self.kind, existing)
                self.kind = existing
        self._call("load the collection", client.load_collection, self.collection)

    def _build_params(self) -> dict[str, int]:
        index = self.settings.index
        if self.kind == "hnsw":
            return {"M": index.hnsw_m, "efConstruction": index.hnsw_ef_construction}
        if self.kind == "ivf":
            return {"nlist": self.config.ivf_nlist}
        return {}

    def _search_params(self, k: int) -> dict[str, Any]:
        index = self.settings.index
        if self.kind == "hnsw":
            return {"metric_type": "IP", "params": {"ef": max(index.hnsw_ef_search, k)}}
        if self.kind == "ivf":
            return {"metric_type": "IP", "params": {"nprobe": min(index.ivf_nprobe, self.config.ivf_nlist)}}
        return {"metric_type": "IP", "params": {}}

    def _server_count(self) -> int:
        rows = self._call("count vectors", self._client.query, self.collection, filter="",
                          output_fields=["count(*)"], consistency_level="Strong")
        return int(rows[0]["count(*)"]) if rows else 0

    def _write(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        for lo in range(0, len(ids), WRITE_BATCH):
            rows = [{"id": int(i), VECTOR_FIELD: np.asarray(v, dtype=np.float32).tolist()}
                    for i, v in zip(ids[lo : lo + WRITE_BATCH], vectors[lo : lo + WRITE_BATCH], strict=True)]
            self._call("write vectors", self._client.upsert, self.collection, rows)

    def _delete(self, ids: list[int]) -> None:
        for lo in range(0, len(ids), WRITE_BATCH):
            self._call("delete vectors", self._client.delete, self.collection, ids=ids[lo : lo + WRITE_BATCH])

    def _server_ids(self) -> set[int]:
        iterator = self._call("list vectors", self._client.query_iterator, self.collection, batch_size=WRITE_BATCH,
                              filter="", output_fields=["id"])
        found: set[int] = set()
        try:
            while True:
                batch = self._call("list vectors", iterator.next)
                if not batch:
                    return found
                found.update(int(r["id"]) for r in batch)
        finally:
            iterator.close()

    # -- the VectorStore protocol ----------------------------------------------------------
    @property
    def size(self) -> int:
        return self._count

    def load(self, generation: int, meta: dict) -> None:
        self._pending_add.clear()
        self._pending_remove.clear()
        self._count = self.source.image_count()

    def begin(self) -> None:
        """The catalog took its write lock: repair what a writer killed mid-save left behind
        (vectors of uncommitted adds, or of committed removals not yet deleted)."""
        live = self.source.image_count()
        if self._server_count() == live:
            return
        ids, vectors = self.source.all_vectors()
        held = self._server_ids()
        extra = sorted(held - set(ids.tolist()))
        missing = np.array([i not in held for i in ids.tolist()], dtype=bool)
        log.warning("Milvus collection %s differs from the catalog (%d extra, %d missing vectors); repairing it",
                    self.collection, len(extra), int(missing.sum()))
        self._write(ids[missing], vectors[missing])
        self._delete(extra)
        self._count = live

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        vectors = np.asarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        for i, v in zip(np.asarray(ids, dtype=np.int64).tolist(), vectors, strict=True):
            self._pending_add[i] = v
            self._pending_remove.discard(i)

    def remove(self, ids: list[int]) -> None:
        for i in ids:
            self._pending_add.pop(int(i), None)
            self._pending_remove.add(int(i))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        fetch = min(k, MAX_TOPK)
        hits = self._call("search", self._client.search, self.collection, data=[q.tolist() for q in queries],
                          limit=fetch, output_fields=["id"], search_params=self._search_params(fetch),
                          consistency_level=self.config.consistency)
        scores = np.full((len(queries), fetch), -np.inf, dtype=np.float32)
        ids = np.full((len(queries), fetch), -1, dtype=np.int64)
        for row, found in enumerate(hits):
            for col, hit in enumerate(found[:fetch]):
                scores[row, col], ids[row, col] = hit["distance"], hit["id"]
        return scores, ids

    def prepare_save(self, generation: int, meta: dict) -> None:
        if self._pending_add:
            ids = np.fromiter(self._pending_add, dtype=np.int64, count=len(self._pending_add))
            self._write(ids, np.stack(list(self._pending_add.values())))
        meta["milvus"] = {"collection": self.collection, "index": self.kind}

    def finish_save(self, generation: int) -> None:
        removed = sorted(self._pending_remove)
        self._pending_add.clear()
        self._pending_remove.clear()
        self._count = self.source.image_count()
        if removed:
            try:
                self._delete(removed)
            except VectorStoreUnavailableError as exc:
                # Committed already: the leftover vectors are dropped by every search's join
                # and deleted by the next writer's repair (begin).
                log.warning("removed vectors stay in Milvus until the next write: %s", exc.message)

    def discard(self, generation: int, meta: dict) -> None:
        self.load(generation, meta)

    def close(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        try:
            client.close()
            if _is_lite(self.uri):
                # Milvus Lite serves its file from a thread of this process until released:
                # only then may another process (the next writer) open it.
                from milvus_lite.server_manager import server_manager_instance

                server_manager_instance.release_server(self.uri)
        except Exception as exc:  # closing a dead connection must not hide the real error
            log.debug("closing the Milvus client: %s", exc)


def _is_lite(uri: str) -> bool:
    return "://" not in uri


def _redacted(uri: str) -> str:
    if "@" not in uri:
        return uri
    scheme, _, rest = uri.partition("://")
    return f"{scheme}://***@{rest.split('@', 1)[1]}"
