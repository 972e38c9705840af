"""A catalog's tuned projection head (`lens index tune`): one matrix applied to the frozen
embedder's vectors, trained on the operator's own items, saved beside the catalog.

    <catalog_dir>/head.npz    weights (dim, out_dim) float32 and the image ids it was trained on
    <catalog_dir>/head.json   version, embedder, catalog state at training, training parameters

Serving it costs one (N, dim) x (dim, out_dim) matmul per query batch; the catalog's own
vectors are re-projected once per catalog state. A head serves a catalog only while it can:
built from the same embedder, and every image in the catalog was one it was trained on
(removed items and edited metadata are fine; an added item or image is a class the head has
never seen, so the catalog falls back to the plain vectors, says so in the log, and
`lens index tune` is to be run again).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lens.files import atomic_write_bytes, atomic_write_json

log = logging.getLogger(__name__)

HEAD_FORMAT = 1
HEAD_WEIGHTS = "head.npz"
HEAD_META = "head.json"


@dataclass(frozen=True)
class ProjectionHead:
    weights: np.ndarray  # (dim, out_dim) float32
    trained_image_ids: np.ndarray  # int64, sorted
    meta: dict[str, Any]

    @property
    def version(self) -> str:
        return str(self.meta["version"])

    @property
    def dim(self) -> int:
        return int(self.weights.shape[0])

    @property
    def out_dim(self) -> int:
        return int(self.weights.shape[1])

    @property
    def floors(self) -> dict[str, float]:
        """index.match_floor / label_floor in this head's score space (lens.index.tune.mapped_floors)."""
        return {k: float(v) for k, v in self.meta.get("floors", {}).items()}

    def project(self, vectors: np.ndarray) -> np.ndarray:
        """(N, dim) -> (N, out_dim) float32, L2-normalised (scores stay cosine similarities)."""
        projected = np.asarray(vectors, dtype=np.float32) @ self.weights
        norms = np.linalg.norm(projected, axis=1, keepdims=True)
        return np.ascontiguousarray(projected / np.maximum(norms, 1e-12), dtype=np.float32)

    def unseen_images(self, image_ids: np.ndarray) -> int:
        """How many of these catalog image ids the head was not trained on."""
        ids = np.asarray(image_ids, dtype=np.int64)
        return int(len(ids) - np.isin(ids, self.trained_image_ids, assume_unique=True).sum())


def weights_version(weights: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(weights, dtype=np.float32).tobytes()).hexdigest()[:16]


def save_head(folder: Path, weights: np.ndarray, trained_image_ids: np.ndarray, meta: dict[str, Any]) -> ProjectionHead:
    """Write head.npz then head.json (each atomically; the JSON names the weights' version, so
    a reader that meets new weights with old JSON, or the reverse, ignores the pair)."""
    weights = np.ascontiguousarray(weights, dtype=np.float32)
    ids = np.sort(np.asarray(trained_image_ids, dtype=np.int64))
    meta = {**meta, "format": HEAD_FORMAT, "version": weights_version(weights),
            "dim": int(weights.shape[0]), "out_dim": int(weights.shape[1])}
    buffer = io.BytesIO()
    np.savez(buffer, weights=weights, trained_image_ids=ids)
    atomic_write_bytes(folder / HEAD_WEIGHTS, buffer.getvalue())
    atomic_write_json(folder / HEAD_META, meta)
    return ProjectionHead(weights, ids, meta)


def head_signature(folder: Path) -> tuple[int, int] | None:
    """(mtime_ns, size) of head.json, or None without one: a cheap check for a new head."""
    try:
        stat = (folder / HEAD_META).stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


def load_head(folder: Path) -> ProjectionHead | None:
    """The saved head, or None (none saved, or unreadable/inconsistent files: logged)."""
    meta_path = folder / HEAD_META
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        with np.load(folder / HEAD_WEIGHTS) as data:
            weights = np.asarray(data["weights"], dtype=np.float32)
            ids = np.asarray(data["trained_image_ids"], dtype=np.int64)
    except (OSError, ValueError, KeyError) as exc:
        log.warning("tuned head in %s is unreadable (%s); searching without it", folder, exc)
        return None
    if meta.get("format") != HEAD_FORMAT or meta.get("version") != weights_version(weights):
        log.warning("tuned head in %s: head.json does not describe head.npz (a tune was interrupted?); "
                    "searching without it; run `lens index tune` again", folder)
        return None
    return ProjectionHead(weights, ids, meta)


def remove_head(folder: Path) -> bool:
    """Delete a saved head; True when there was one."""
    found = False
    for name in (HEAD_META, HEAD_WEIGHTS):
        path = folder / name
        if path.exists():
            path.unlink()
            found = True
    return found
