"""`lens index tune`: a projection head trained on the operator's own items.

One class per catalog item; its samples are the item's reference images and synthetic views of
them (random crops and zoom-outs onto another catalog image, perspective, rotation, lighting,
blur, JPEG): what a dot cut from a shop photo looks like next to a clean catalog image. The
frozen embedder's vector of each view is computed once and cached beside the catalog
(<catalog_dir>/tune-cache/), so a second tune after adding items embeds only the new ones.

The head is W = I + R (dim x dim) on those vectors, trained with ArcFace (additive angular
margin) on the L2-normalised projections and a weight on ||R||^2 that keeps it near the
frozen space. Two views of every image are held out: the tune reports their top-1 item before
and after, so an operator sees whether it paid on their own items.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lens.config import Settings, TuneConfig
from lens.errors import BadInputError
from lens.index.head import ProjectionHead, save_head

log = logging.getLogger(__name__)

# Bump when synthetic_views changes: cached features of the old recipe are then not reused.
VIEW_RECIPE = 1
CACHE_DIR = "tune-cache"
HELD_OUT_VIEWS = 2
# Views are made from a copy of at most this side (a dot crop is embedded at 260 px anyway).
VIEW_SOURCE_SIDE = 512
BACKGROUND_POOL = 24


class NotEnoughItemsError(BadInputError):
    """A head needs at least two items to tell apart."""

    code = "not_enough_items"


@dataclass
class TuneReport:
    head: ProjectionHead
    items: int
    images: int
    samples: int
    held_out_top1_before: float
    held_out_top1_after: float
    features_s: float
    train_s: float


# -- synthetic views -----------------------------------------------------------------------
def _small(rgb: np.ndarray, side: int) -> np.ndarray:
    import cv2

    scale = side / max(rgb.shape[:2])
    if scale >= 1.0:
        return rgb
    return cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)


def synthetic_views(rgb: np.ndarray, count: int, rng: np.random.Generator,
                    backgrounds: list[np.ndarray] | None = None) -> list[np.ndarray]:
    """`count` RGB uint8 views of one reference image, as a shop photo's dot might show it."""
    import cv2

    source = _small(np.ascontiguousarray(rgb[..., :3]), VIEW_SOURCE_SIDE)
    views = []
    for _ in range(count):
        view = source
        h, w = view.shape[:2]
        if backgrounds and rng.random() < 0.5:
            # Zoom out: the item smaller, on a piece of another of the catalog's images.
            bg = backgrounds[int(rng.integers(len(backgrounds)))]
            fraction = rng.uniform(0.45, 0.9)
            side = int(max(h, w) / fraction)
            canvas = cv2.resize(bg, (side, side), interpolation=cv2.INTER_LINEAR)
            canvas = cv2.GaussianBlur(canvas, (0, 0), rng.uniform(0.5, 3.0))
            y, x = int(rng.integers(0, side - h + 1)), int(rng.integers(0, side - w + 1))
            canvas[y : y + h, x : x + w] = view
            view = canvas
        else:
            # Zoom in: a part of the item, as a tight or off-centre box cuts it.
            ch, cw = int(h * rng.uniform(0.55, 1.0)), int(w * rng.uniform(0.55, 1.0))
            y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
            view = view[y : y + ch, x : x + cw]
        h, w = view.shape[:2]
        if rng.random() < 0.6:
            jitter = 0.12 * np.array([w, h], np.float32)
            corners = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
            moved = corners + rng.uniform(-1, 1, (4, 2)).astype(np.float32) * jitter
            matrix = cv2.getPerspectiveTransform(corners, moved)
            view = cv2.warpPerspective(view, matrix, (w, h), borderMode=cv2.BORDER_REPLICATE)
        if rng.random() < 0.4:
            matrix = cv2.getRotationMatrix2D((w / 2, h / 2), rng.uniform(-12, 12), 1.0)
            view = cv2.warpAffine(view, matrix, (w, h), borderMode=cv2.BORDER_REPLICATE)
        pixels = view.astype(np.float32)
        gray = pixels.mean(axis=2, keepdims=True)
        pixels = gray + (pixels - gray) * rng.uniform(0.6, 1.3)  # saturation
        pixels = (pixels - 128) * rng.uniform(0.7, 1.3) + 128 * rng.uniform(0.65, 1.35)  # contrast, brightness
        pixels *= rng.uniform(0.9, 1.1, 3)  # colour cast of the shop's light
        view = np.clip(pixels, 0, 255).astype(np.uint8)
        if rng.random() < 0.4:
            view = cv2.GaussianBlur(view, (0, 0), rng.uniform(0.5, 2.0))
        elif rng.random() < 0.3:
            small = _small(view, int(rng.integers(64, 160)))
            view = cv2.resize(small, (view.shape[1], view.shape[0]), interpolation=cv2.INTER_LINEAR)
        if rng.random() < 0.5:
            ok, data = cv2.imencode(".jpg", view[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(30, 90))])
            if ok:
                view = cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1]
        views.append(np.ascontiguousarray(view))
    return views


# -- cached features -----------------------------------------------------------------------
def cache_folder(catalog_dir: Path, embedder, config: TuneConfig) -> Path:
    """Features depend on the embedder, the view recipe and the seed only: view i of an image is
    the same whatever the view count (one generator, drawn view after view), so a cached file
    with more views serves a tune that asks for fewer."""
    key = f"{embedder.name}|{embedder.version}|{VIEW_RECIPE}|{config.seed}"
    return catalog_dir / CACHE_DIR / hashlib.sha256(key.encode()).hexdigest()[:16]


def view_features(catalog, config: TuneConfig, progress: Callable[[int], None] | None = None) -> dict[str, np.ndarray]:
    """content hash -> (1 + views, dim) float32: the image's own vector, then its views'.
    Computed once per image and kept in the cache folder."""
    from lens.image import load_image_file

    rows = catalog.image_rows()
    folder = cache_folder(catalog.folder, catalog.embedder, config)
    folder.mkdir(parents=True, exist_ok=True)
    features: dict[str, np.ndarray] = {}
    missing = []
    for _, _, content_hash, path in rows:
        cached = folder / f"{content_hash}.npy"
        if cached.is_file():
            try:
                vectors = np.load(cached)
            except (OSError, ValueError):
                vectors = np.zeros((0, 0), np.float32)  # a torn file: compute it again
            if len(vectors) >= 1 + config.views:
                features[content_hash] = vectors[: 1 + config.views]
                if progress:
                    progress(1)
                continue
        missing.append((content_hash, path))
    if not missing:
        return features
    # Backgrounds for zoom-outs: a fixed sample of the catalog's own images.
    pool = np.random.default_rng(config.seed).permutation(len(rows))[:BACKGROUND_POOL]
    backgrounds = []
    for i in pool:
        try:
            backgrounds.append(_small(load_image_file(Path(rows[i][3])).rgb, 256))
        except Exception:  # an unreadable image is skipped here and reported below
            continue
    from lens.files import atomic_write_bytes

    for content_hash, path in missing:
        try:
            rgb = load_image_file(Path(path)).rgb
        except Exception as exc:
            log.warning("tune: cannot read %s (%s); its image is left out", path, exc)
            if progress:
                progress(1)
            continue
        seed = int.from_bytes(hashlib.sha256(f"{config.seed}:{content_hash}".encode()).digest()[:8], "little")
        others = [b for b in backgrounds if b.shape != rgb.shape] or backgrounds
        views = [rgb, *synthetic_views(rgb, config.views, np.random.default_rng(seed), others)]
        vectors = np.asarray(catalog.embedder.embed(views), dtype=np.float32)
        buffer = _npy_bytes(vectors)
        atomic_write_bytes(folder / f"{content_hash}.npy", buffer)
        features[content_hash] = vectors
        if progress:
            progress(1)
    return features


def _npy_bytes(array: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


# -- training ------------------------------------------------------------------------------
def train_head(features: np.ndarray, labels: np.ndarray, config: TuneConfig,
               progress: Callable[[int], None] | None = None) -> np.ndarray:
    """W (dim, dim) = I + R minimising ArcFace loss of normalize(x W) against one learned
    centre per class, plus identity_weight x mean(R^2) x dim."""
    import torch

    torch.manual_seed(config.seed)
    x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    dim, classes = x.shape[1], int(y.max()) + 1
    residual = torch.zeros(dim, dim, requires_grad=True)
    centres0 = torch.zeros(classes, dim).index_add_(0, y, x)
    centres = torch.nn.functional.normalize(centres0, dim=1).clone().requires_grad_(True)
    optimiser = torch.optim.Adam([residual, centres], lr=config.learning_rate)
    eye = torch.eye(dim)
    cos_m, sin_m = float(np.cos(config.margin)), float(np.sin(config.margin))
    generator = torch.Generator().manual_seed(config.seed)
    batch = 256
    for _ in range(config.epochs):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), batch):
            rows = order[start : start + batch]
            embedded = torch.nn.functional.normalize(x[rows] @ (eye + residual), dim=1)
            cosine = embedded @ torch.nn.functional.normalize(centres, dim=1).T
            target = cosine.gather(1, y[rows, None]).clamp(-1 + 1e-6, 1 - 1e-6)
            # cos(theta + m), only where theta + m stays below pi (the usual ArcFace guard).
            with_margin = torch.where(target > -cos_m, target * cos_m - torch.sqrt(1 - target**2) * sin_m, target)
            logits = config.scale * cosine.scatter(1, y[rows, None], with_margin)
            loss = torch.nn.functional.cross_entropy(logits, y[rows])
            loss = loss + config.identity_weight * residual.pow(2).mean() * dim
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        if progress:
            progress(1)
    return (eye + residual).detach().numpy().astype(np.float32)


def _top1(queries: np.ndarray, query_items: np.ndarray, refs: np.ndarray, ref_items: np.ndarray) -> float:
    """Share of queries whose best-scoring reference image belongs to their item."""
    if len(queries) == 0:
        return float("nan")
    best = np.argmax(queries @ refs.T, axis=1)
    return float(np.mean(ref_items[best] == query_items))


def _best_scores(queries: np.ndarray, refs: np.ndarray) -> np.ndarray:
    return np.max(_normalise(queries) @ _normalise(refs).T, axis=1)


def mapped_floors(before: np.ndarray, after: np.ndarray, floors: dict[str, float]) -> dict[str, float]:
    """The index floors (calibrated on frozen-feature scores) carried into the head's space:
    a head spreads its scores differently, so the same number would hide most dots. Each floor
    becomes the head's score at the same quantile of the held-out views' best scores, so that
    the share of dots a floor keeps stays what it was calibrated for (and the head, being
    right more often, keeps them at a higher precision)."""
    if len(before) == 0:
        return {}
    return {name: round(float(np.quantile(after, float(np.mean(before < floor)))), 4)
            for name, floor in floors.items()}


def _normalise(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def require_items(catalog) -> None:
    """NotEnoughItemsError (exit 2) for a catalog with fewer than two items."""
    items = catalog.count()
    if items < 2:
        raise NotEnoughItemsError(
            f"the catalog in {catalog.folder} holds {items} item(s); tuning learns to tell items apart "
            "and needs at least 2 (add yours with `lens index add DIR`)")


def tune_catalog(catalog, settings: Settings, feature_progress=None, epoch_progress=None) -> TuneReport:
    """Train, save and return the catalog's head (see the module docstring)."""
    config = settings.tune
    require_items(catalog)
    all_rows = catalog.image_rows()
    start = time.perf_counter()
    features = view_features(catalog, config, feature_progress)
    features_s = time.perf_counter() - start
    # An unreadable image has its vector in the catalog still: the head serves it untrained.
    rows = [r for r in all_rows if r[2] in features]
    owners = sorted({r[1] for r in rows})
    label_of = {owner: i for i, owner in enumerate(owners)}
    train_x, train_y, held_x, held_y = [], [], [], []
    for _, owner, content_hash, _ in rows:
        vectors = features[content_hash]
        label = label_of[owner]
        # The image itself and all but HELD_OUT_VIEWS of its views train; the last views are held out.
        keep = max(1, len(vectors) - HELD_OUT_VIEWS)
        train_x.append(vectors[:keep])
        train_y += [label] * keep
        held_x.append(vectors[keep:])
        held_y += [label] * (len(vectors) - keep)
    x, y = np.concatenate(train_x), np.asarray(train_y)
    hx, hy = np.concatenate(held_x), np.asarray(held_y)
    refs = np.stack([features[r[2]][0] for r in rows])
    ref_items = np.asarray([label_of[r[1]] for r in rows])
    before = _top1(hx, hy, refs, ref_items)
    start = time.perf_counter()
    weights = train_head(x, y, config, epoch_progress)
    train_s = time.perf_counter() - start
    after = _top1(_normalise(hx @ weights), hy, _normalise(refs @ weights), ref_items)
    floors = mapped_floors(_best_scores(hx, refs), _best_scores(hx @ weights, refs @ weights),
                           {"match_floor": settings.index.match_floor, "label_floor": settings.index.label_floor})
    meta = {
        "embedder": {"name": catalog.embedder.name, "version": catalog.embedder.version},
        "catalog": {"generation": catalog.meta.get("generation"), "items": len(owners), "images": len(rows)},
        "trained_at": time.time(),
        "params": {**config.model_dump(mode="json"), "view_recipe": VIEW_RECIPE, "held_out_views": HELD_OUT_VIEWS},
        "samples": len(x),
        "held_out_top1": {"before": round(before, 4), "after": round(after, 4)},
        "floors": floors,
        "seconds": {"features": round(features_s, 1), "train": round(train_s, 1)},
    }
    head = save_head(catalog.folder, weights, np.asarray([r[0] for r in all_rows], dtype=np.int64), meta)
    catalog.mark_changed()
    return TuneReport(head, len(owners), len(rows), len(x), before, after, features_s, train_s)
