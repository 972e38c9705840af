"""Embedders: real weights on real photos; CLIP only through its loading path (tiny random model)."""

from __future__ import annotations

import numpy as np
import pytest

from lens.config import load_settings
from lens.embed import create_embedder
from lens.embed.preprocess import pad_to_square, square_resize
from lens.errors import ModelMissingError
from lens.image import load_image_file

torch = pytest.importorskip("torch")
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def stamps(tux_stamps):
    return tux_stamps


@pytest.fixture(scope="session", params=["efficientnet-lite2", "mobilenetv2"])
def embedder(request):
    return create_embedder(load_settings(embed={"backend": request.param}))


@pytest.mark.parametrize(
    ("shape", "square"),
    [((30, 10, 3), 30), ((10, 30, 3), 30), ((7, 7, 3), 7), ((1, 200, 3), 200)],
)
def test_pad_to_square_keeps_every_pixel_on_white(shape, square):
    crop = np.zeros(shape, dtype=np.uint8)
    padded = pad_to_square(crop)
    assert padded.shape == (square, square, 3)
    assert (padded == 0).sum() == crop.size  # the crop's black pixels, all of them
    assert (padded == 255).sum() == padded.size - crop.size


def test_square_resize_rejects_non_rgb():
    with pytest.raises(ValueError, match="RGB"):
        square_resize(np.zeros((5, 5), dtype=np.uint8), 32)


def test_embedder_vectors_are_unit_float32(embedder, bus_jpg):
    rgb = load_image_file(bus_jpg).rgb
    vectors = embedder.embed([rgb, rgb[100:400, 50:300], rgb[:3, :2]])
    assert vectors.shape == (3, embedder.dim) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert embedder.embed([]).shape == (0, embedder.dim)


def test_embedder_is_deterministic_and_batch_independent(embedder, bus_jpg, zidane_jpg):
    crops = [load_image_file(bus_jpg).rgb, load_image_file(zidane_jpg).rgb]
    together = embedder.embed(crops)
    alone = np.concatenate([embedder.embed([c]) for c in crops])
    np.testing.assert_allclose(together, alone, atol=1e-4)


def test_stamp_pasted_on_white_margin_finds_itself(embedder, stamps):
    """A query crop with extra white margin (as a region crop has) still matches its stamp."""
    sample = stamps[::20][:20]
    catalog = embedder.embed([load_image_file(s.path).rgb for s in sample])
    hits = 0
    for row, stamp in enumerate(sample):
        rgb = load_image_file(stamp.path).rgb
        h, w = rgb.shape[:2]
        framed = np.full((h + h // 5, w + w // 5, 3), 255, dtype=np.uint8)
        framed[h // 10 : h // 10 + h, w // 10 : w // 10 + w] = rgb
        hits += int(np.argmax(catalog @ embedder.embed([framed])[0]) == row)
    assert hits >= 18, f"only {hits}/20 framed stamps found themselves"


@pytest.fixture(scope="module")
def tiny_clip_folders(tmp_path_factory):
    from transformers import CLIPConfig, CLIPModel, CLIPVisionConfig, CLIPVisionModelWithProjection

    root = tmp_path_factory.mktemp("clip")
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                  image_size=32, patch_size=8)
    torch.manual_seed(0)
    CLIPVisionModelWithProjection(CLIPVisionConfig(**vision, projection_dim=16)).save_pretrained(root / "vision")
    full = CLIPModel(CLIPConfig(
        text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                         vocab_size=100, bos_token_id=0, eos_token_id=1, pad_token_id=1),
        vision_config=vision, projection_dim=24,
    ))
    full.save_pretrained(root / "full")
    return root, full


@pytest.mark.parametrize(("folder", "dim"), [("vision", 16), ("full", 24)])
def test_clip_loads_tiny_random_weights(tiny_clip_folders, folder, dim, bus_jpg):
    root, _ = tiny_clip_folders
    embedder = create_embedder(load_settings(embed={"backend": "clip", "model_path": str(root / folder)}))
    vectors = embedder.embed([load_image_file(bus_jpg).rgb])
    assert embedder.dim == dim and vectors.shape == (1, dim)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert embedder.version.startswith(folder)


def test_clip_tiny_random_weights_match_transformers_image_features(tiny_clip_folders, bus_jpg):
    from lens.embed.preprocess import batch_tensor

    root, full = tiny_clip_folders
    embedder = create_embedder(load_settings(embed={"backend": "clip", "model_path": str(root / "full")}))
    rgb = load_image_file(bus_jpg).rgb
    with torch.inference_mode():
        features = full.get_image_features(pixel_values=batch_tensor([rgb], 32, embedder._mean, embedder._std))
    features = getattr(features, "pooler_output", features).numpy()
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    np.testing.assert_allclose(embedder.embed([rgb]), features, atol=1e-5)


@pytest.mark.parametrize("model_path", [None, "/nonexistent/clip"])
def test_clip_without_weights_names_the_setting(model_path):
    with pytest.raises(ModelMissingError, match="LENS_EMBED__MODEL_PATH"):
        create_embedder(load_settings(embed={"backend": "clip", "model_path": model_path}))


def test_gem_pooling_lies_between_mean_and_max_and_equals_mean_at_p1():
    from lens.embed.preprocess import pool_feature_map

    rng = np.random.default_rng(0)
    fmap = rng.uniform(0, 6, size=(2, 4, 5, 5)).astype(np.float32)
    mean = pool_feature_map(fmap, "mean")
    gem = pool_feature_map(fmap, "gem", 3.0)
    assert np.all(gem >= mean - 1e-5) and np.all(gem <= fmap.max(axis=(2, 3)) + 1e-5)
    np.testing.assert_allclose(pool_feature_map(fmap, "gem", 1.0), mean, rtol=1e-5)
    with pytest.raises(ValueError, match="pooling"):
        pool_feature_map(fmap, "max")
