"""The learned saliency backend with its committed weights, on real photos."""

from __future__ import annotations

import numpy as np
import pytest

from lens.config import load_settings
from lens.errors import BadInputError
from lens.models import file_sha256, get_spec
from lens.saliency.learned import COMMITTED_WEIGHTS, MODEL_NAME, LearnedSaliency, work_size


@pytest.fixture(scope="session")
def learned(tmp_path_factory) -> LearnedSaliency:
    import torch

    torch.set_num_threads(1)
    # A fresh models dir: the backend must install its committed weights itself, offline.
    settings = load_settings(data_dir=tmp_path_factory.mktemp("data"))
    return LearnedSaliency(settings)


def _rgb(path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def test_committed_weights_match_the_manifest_checksum():
    spec = get_spec(MODEL_NAME)
    assert spec.stage == "saliency" and spec.prepare
    assert file_sha256(COMMITTED_WEIGHTS) == spec.sha256
    for key in ("data", "split", "command", "commit"):
        assert spec.extra.get(key), f"manifest entry lacks {key}"


@pytest.mark.parametrize("photo", ["bus_jpg", "zidane_jpg"])
def test_map_has_the_photo_shape_and_unit_range(learned, photo, request):
    rgb = _rgb(request.getfixturevalue(photo))
    m = learned.map(rgb)
    assert m.shape == rgb.shape[:2] and m.dtype == np.float32
    assert float(m.min()) >= 0.0 and float(m.max()) == pytest.approx(1.0)
    assert learned.settings.model_dir.joinpath(get_spec(MODEL_NAME).file).is_file()


def test_probability_sums_to_one_at_the_work_size(learned, bus_jpg):
    rgb = _rgb(bus_jpg)
    prob = learned.probability(rgb)
    assert prob.shape == work_size(*rgb.shape[:2])[::-1]
    assert float(prob.sum()) == pytest.approx(1.0, abs=1e-3)


def test_people_in_zidane_are_more_salient_than_the_background(learned, zidane_jpg):
    m = learned.map(_rgb(zidane_jpg))
    # zidane.jpg (1280x720): the two men stand in x 100-1150 below y 40; the top strip
    # right of the right man (x > 1150) is wall.
    people = m[100:700, 100:1150].mean()
    wall = m[:, 1180:].mean()
    assert people > 2 * wall


def test_beats_spectral_residual_on_held_out_osie_photos(learned):
    from lens.saliency import metrics
    from lens.saliency.spectral import SpectralResidualSaliency
    from lens.saliency.train import test_images

    images = test_images(limit=4)
    spectral = SpectralResidualSaliency(load_settings())
    learned_nss = [metrics.nss(learned.map(im.load_rgb()), im.fixation_map()) for im in images]
    spectral_nss = [metrics.nss(spectral.map(im.load_rgb()), im.fixation_map()) for im in images]
    assert np.mean(learned_nss) >= 1.8
    assert np.mean(learned_nss) > np.mean(spectral_nss) + 0.5


@pytest.mark.parametrize(
    "bad",
    [np.zeros((40, 60), np.uint8), np.zeros((40, 60, 3), np.float32), np.zeros((40, 60, 4), np.uint8)],
    ids=["grey", "float", "rgba"],
)
def test_bad_arrays_raise_bad_input(learned, bad):
    with pytest.raises(BadInputError):
        learned.map(bad)


@pytest.mark.parametrize("shape", [(1, 1), (2, 500), (600, 800)])
def test_odd_sizes_still_give_a_map(learned, shape):
    rgb = np.random.default_rng(0).integers(0, 256, size=(*shape, 3), dtype=np.uint8)
    assert learned.map(rgb).shape == shape
