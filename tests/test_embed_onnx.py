"""EfficientNet-Lite2 on onnxruntime: exported by `lens models prepare`, the torch backend's vectors
on real photos (every descriptor setting), and catalogs interchangeable between the two."""

from __future__ import annotations

import numpy as np
import pytest

from lens.config import load_settings
from lens.embed import create_embedder
from lens.embed.efficientnet_lite_onnx import MODEL, SOURCE_KEY, source_tag
from lens.errors import ModelMissingError
from lens.image import load_image_file
from lens.models import get_spec, prepare

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

# float32 on both sides, different kernels: agreement to ~1e-6 was measured; 1e-4 is the bar.
MAX_ABS_DIFF = 1e-4


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    """A fresh models dir that `lens models prepare` exports the ONNX file into."""
    root = tmp_path_factory.mktemp("models")
    missing = prepare(load_settings(models_dir=root), names=[MODEL], log=lambda _: None)
    assert not missing
    return root


@pytest.fixture(scope="module")
def photos_and_crops(osie_photos, bus_jpg):
    images = [load_image_file(p).rgb for p in [bus_jpg, *osie_photos[:3]]]
    # Whole photos, off-centre crops of several aspect ratios, a sliver: as regions come.
    return [*images, images[0][100:700, 20:300], images[1][30:200, 40:560], images[2][:40, :3]]


def test_prepare_exports_once_and_is_idempotent(models_dir):
    path = get_spec(MODEL).expected_path(load_settings(models_dir=models_dir))
    assert path.is_file() and source_tag(path)
    before = path.stat().st_mtime_ns
    assert prepare(load_settings(models_dir=models_dir), names=[MODEL], log=lambda _: None) == []
    assert path.stat().st_mtime_ns == before

# float32 where vectors are compared to 1e-5 ("auto" is bfloat16 on CPUs that compute it natively;
# test_bfloat16_vectors_stay_within_cosine_0_99 covers that).
F32 = {"precision": "f32"}


@pytest.mark.parametrize(("size", "pooling"), [(None, "mean"), (260, "gem"), (384, "mean"), (384, "gem")])
def test_onnx_vectors_equal_torch_on_real_photos(models_dir, photos_and_crops, size, pooling):
    embed = {"input_size": size, "pooling": pooling}
    reference = create_embedder(load_settings(embed={**embed, "backend": "efficientnet-lite2"}))
    onnx = create_embedder(load_settings(models_dir=models_dir, embed={**embed, "backend": "efficientnet-lite2-onnx", "options": F32}))
    expected, got = reference.embed(photos_and_crops), onnx.embed(photos_and_crops)
    assert got.shape == expected.shape == (len(photos_and_crops), 1280) and got.dtype == np.float32
    assert np.abs(got - expected).max() < MAX_ABS_DIFF
    # Same vectors, so the same descriptor identity: catalogs need no rebuild when switching.
    assert (onnx.name, onnx.version) == (reference.name, reference.version)


def test_onnx_embedder_batches_like_single_calls(models_dir, photos_and_crops):
    onnx = create_embedder(load_settings(models_dir=models_dir, embed={"backend": "efficientnet-lite2-onnx", "options": F32}))
    together = onnx.embed(photos_and_crops)
    alone = np.concatenate([onnx.embed([c]) for c in photos_and_crops])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    assert onnx.embed([]).shape == (0, 1280)


def test_catalog_built_with_torch_is_searched_with_onnx(models_dir, tmp_path, tux_stamps):
    from lens.index import open_catalog
    from lens.index.catalog import NewItem

    sample = tux_stamps[::25][:12]
    torch_settings = load_settings(data_dir=tmp_path, embed={"backend": "efficientnet-lite2"})
    onnx_settings = load_settings(data_dir=tmp_path, models_dir=models_dir,
                                  embed={"backend": "efficientnet-lite2-onnx", "options": F32})
    torch_embedder, onnx_embedder = create_embedder(torch_settings), create_embedder(onnx_settings)
    with open_catalog(torch_settings, torch_embedder, create=True) as catalog:
        catalog.add_images([NewItem(s.path, title=s.title) for s in sample])
        catalog.save()
    queries = [load_image_file(s.path).rgb[5:-5, 5:-5] for s in sample]
    with open_catalog(torch_settings, torch_embedder) as catalog:
        expected = catalog.search(torch_embedder.embed(queries), k=3)
    with open_catalog(onnx_settings, onnx_embedder) as catalog:  # no mismatch error, no rebuild
        got = catalog.search(onnx_embedder.embed(queries), k=3)
    assert [[m.item_id for m in row] for row in got] == [[m.item_id for m in row] for row in expected]
    for row_got, row_expected in zip(got, expected, strict=True):
        np.testing.assert_allclose([m.score for m in row_got], [m.score for m in row_expected], atol=1e-4)


def test_stale_export_is_refused_then_prepare_exports_again(tmp_path):
    import onnx

    settings = load_settings(models_dir=tmp_path)
    assert prepare(settings, names=[MODEL], log=lambda _: None) == []
    path = get_spec(MODEL).expected_path(settings)
    proto = onnx.load(str(path))
    next(p for p in proto.metadata_props if p.key == SOURCE_KEY).value = "0ld0ld00"
    onnx.save(proto, str(path))
    with pytest.raises(ModelMissingError, match="exported from weights 0ld0ld00.*lens models prepare"):
        create_embedder(load_settings(models_dir=tmp_path, embed={"backend": "efficientnet-lite2-onnx", "options": F32}))
    assert prepare(settings, names=[MODEL], log=lambda _: None) == []  # sees it stale, exports
    assert source_tag(path) != "0ld0ld00"
    create_embedder(load_settings(models_dir=tmp_path, embed={"backend": "efficientnet-lite2-onnx", "options": F32}))


@pytest.mark.parametrize("runtime", ["openvino", "onnxruntime"])
def test_both_runtimes_give_the_torch_vectors_in_float32(models_dir, photos_and_crops, runtime):
    reference = create_embedder(load_settings(embed={"backend": "efficientnet-lite2"}))
    got = create_embedder(load_settings(models_dir=models_dir, embed={
        "backend": "efficientnet-lite2-onnx", "options": {"runtime": runtime, "precision": "f32"}}))
    assert got.runtime == runtime
    assert np.abs(got.embed(photos_and_crops) - reference.embed(photos_and_crops)).max() < MAX_ABS_DIFF


def test_bfloat16_vectors_stay_within_cosine_0_99(models_dir, photos_and_crops):
    """bf16 (OpenVINO, "auto" where the CPU computes it natively) is the same descriptor: every
    vector within cosine 0.99 of float32's (the bar bench/quantise_lite2.py set for int8, which
    failed it), so it keeps the version and catalogs built in float32 stay valid."""
    f32 = create_embedder(load_settings(models_dir=models_dir, embed={"backend": "efficientnet-lite2-onnx", "options": F32}))
    bf16 = create_embedder(load_settings(models_dir=models_dir, embed={
        "backend": "efficientnet-lite2-onnx", "options": {"precision": "bf16"}}))
    cosines = (f32.embed(photos_and_crops) * bf16.embed(photos_and_crops)).sum(axis=1)
    assert cosines.min() >= 0.99
    assert bf16.version == f32.version
