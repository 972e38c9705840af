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
    """Pad to a white square, then resize to size x size (bilinear, antialiased).

    Shrinking never builds the whole padded square: only the band of it that holds the crop
    (plus the filter's reach) is resized into a white canvas, with the same sampling grid as
    the whole square. Memory and time follow the crop, not the square of its longest side (a
    24000x20 strip padded first was a 1.7 GB canvas), and the output is the same as padding
    first, pixel for pixel (tests/test_hardening_limits.py checks that on real photos).
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an H x W x 3 uint8 RGB crop, got {rgb.dtype} {rgb.shape}")
    h, w = rgb.shape[:2]
    side = max(h, w)
    if side <= size or h == w:  # nothing to pad, or a square no larger than the output
        square = pad_to_square(rgb)
        if side == size:
            return np.ascontiguousarray(square)
        return np.asarray(Image.fromarray(square).resize((size, size), Image.Resampling.BILINEAR))
    scale = side / size  # source pixels per output pixel
    short, offset = (h, (side - h) // 2) if h < w else (w, (side - w) // 2)
    # Output rows (columns, for a tall crop) whose bilinear support (+-scale source px) can
    # reach the crop; all others are white. One extra on each side for rounding.
    first = max(0, int(np.floor((offset - scale) / scale - 0.5)) - 1)
    last = min(size, int(np.ceil((offset + short + scale) / scale - 0.5)) + 2)
    # Source rows those outputs read, again with the support; the band is cut from them.
    low = max(0, int(np.floor(first * scale - scale)) - 2)
    high = min(side, int(np.ceil(last * scale + scale)) + 2)
    canvas = np.full((size, size, 3), 255, dtype=np.uint8)
    if h < w:
        band = np.full((high - low, w, 3), 255, dtype=np.uint8)
        band[offset - low : offset - low + h] = rgb
        box = (0.0, first * scale - low, float(w), last * scale - low)
        canvas[first:last] = np.asarray(Image.fromarray(band).resize((size, last - first), Image.Resampling.BILINEAR, box=box))
    else:
        band = np.full((h, high - low, 3), 255, dtype=np.uint8)
        band[:, offset - low : offset - low + w] = rgb
        box = (first * scale - low, 0.0, last * scale - low, float(h))
        canvas[:, first:last] = np.asarray(Image.fromarray(band).resize((last - first, size), Image.Resampling.BILINEAR, box=box))
    return canvas


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
