"""The one preprocessing every embedder applies to a crop, at index time and at query time alike.

Catalog images are mostly product shots or cut-outs on white, while query crops come from
cluttered photos; padding both to a square on white (instead of stretching or centre-cropping)
keeps the object's aspect ratio and all of its pixels, so the two sides look alike to the model.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

WHITE = (255, 255, 255)


def pad_to_square(rgb: np.ndarray, fill: tuple[int, int, int] = WHITE) -> np.ndarray:
    """The crop centred on a square canvas of `fill`, side = its longest side."""
    h, w = rgb.shape[:2]
    side = max(h, w)
    if h == w:
        return rgb
    canvas = np.empty((side, side, 3), dtype=np.uint8)
    canvas[:] = fill
    top, left = (side - h) // 2, (side - w) // 2
    canvas[top : top + h, left : left + w] = rgb
    return canvas


def square_resize(rgb: np.ndarray, size: int) -> np.ndarray:
    """Pad to a white square, then resize to size x size (bilinear, antialiased)."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an H x W x 3 uint8 RGB crop, got {rgb.dtype} {rgb.shape}")
    square = pad_to_square(rgb)
    if square.shape[0] == size:
        return np.ascontiguousarray(square)
    return np.asarray(Image.fromarray(square).resize((size, size), Image.Resampling.BILINEAR))


def batch_array(crops: list[np.ndarray], size: int, mean, std) -> np.ndarray:
    """(N, 3, size, size) float32 array: square_resize, then (x - mean) / std per channel.

    `mean` and `std` are in 0..255 pixel units (one number or one per channel).
    """
    batch = np.stack([square_resize(c, size) for c in crops]).astype(np.float32)
    batch = (batch - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2))


def batch_tensor(crops: list[np.ndarray], size: int, mean, std):
    """batch_array as a torch tensor (same values, no copy)."""
    import torch

    return torch.from_numpy(batch_array(crops, size, mean, std))


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def embed_in_batches(crops: list[np.ndarray], batch_size: int, dim: int, run) -> np.ndarray:
    """Call run(list of crops) -> (n, dim) per batch; returns (N, dim) L2-normalised float32."""
    if not crops:
        return np.zeros((0, dim), dtype=np.float32)
    out = [run(crops[i : i + batch_size]) for i in range(0, len(crops), batch_size)]
    return l2_normalise(np.concatenate(out, axis=0))


def pool_feature_map(feature_map: np.ndarray, pooling: str = "mean", gem_p: float = 3.0) -> np.ndarray:
    """(N, C, H, W) feature map -> (N, C): average, or generalised mean with exponent gem_p."""
    fmap = np.asarray(feature_map, dtype=np.float32)
    if pooling == "mean":
        return fmap.mean(axis=(2, 3))
    if pooling == "gem":
        # Activations after ReLU6 are >= 0; the floor keeps the root defined for all-zero maps.
        return np.power(np.power(np.maximum(fmap, 1e-6), gem_p).mean(axis=(2, 3)), 1.0 / gem_p)
    raise ValueError(f"unknown pooling {pooling!r}; expected 'mean' or 'gem'")


def descriptor_version(size: int, pooling: str, gem_p: float) -> str:
    """The part of an embedder's version that its descriptor settings decide."""
    return f"{size}-{pooling}{f'{gem_p:g}' if pooling == 'gem' else ''}"
