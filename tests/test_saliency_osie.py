"""The OSIE loader reads the shared fixation data in place."""

from __future__ import annotations

import numpy as np
import pytest

from lens.saliency import metrics as M
from lens.saliency.osie import (
    DEFAULT_ROOT,
    OSIE_SHAPE,
    OsieMissingError,
    density_map,
    fixation_map,
    load_osie,
    other_fixation_map,
)

pytestmark = pytest.mark.skipif(not DEFAULT_ROOT.is_dir(), reason=f"no OSIE data at {DEFAULT_ROOT}")


@pytest.fixture(scope="module")
def osie():
    return load_osie()


def test_all_700_photos_with_fixations_inside_the_image(osie):
    assert len(osie) == 700
    assert all(im.path.is_file() for im in osie[:20])
    for im in osie:
        assert im.fixations.ndim == 2 and im.fixations.shape[1] == 2 and len(im.fixations) > 20
        assert im.fixations[:, 0].max() < OSIE_SHAPE[1] and im.fixations[:, 1].max() < OSIE_SHAPE[0]
        assert im.viewers.shape == (len(im.fixations),)


def test_first_fixation_of_each_viewer_is_dropped(osie):
    with_first = load_osie(drop_first=False)
    viewers = len(np.unique(with_first[0].viewers))
    assert len(with_first[0].fixations) - len(osie[0].fixations) == viewers


def test_photo_size_matches(osie):
    assert osie[0].load_rgb().shape == (*OSIE_SHAPE, 3)


def test_maps_have_the_photo_shape(osie):
    im = osie[0]
    fix = im.fixation_map()
    dens = im.density_map()
    assert fix.shape == dens.shape == OSIE_SHAPE
    assert fix.sum() == len(im.fixations)
    assert dens.max() == pytest.approx(1.0)


def test_centre_prior_beats_chance_and_human_density_beats_centre(osie):
    h, w = OSIE_SHAPE
    yy, xx = np.mgrid[0:h, 0:w]
    centre = np.exp(-(((xx - w / 2) / (w / 4)) ** 2 + ((yy - h / 2) / (h / 4)) ** 2) / 2)
    centre_nss, human_nss = [], []
    for i in range(0, 700, 70):
        # Leave-one-viewer-out: the other viewers' density predicts the held-out viewer.
        im = osie[i]
        held = im.viewers == 0
        centre_nss.append(M.nss(centre, fixation_map(im.fixations[held], OSIE_SHAPE)))
        others = density_map(im.fixations[~held], OSIE_SHAPE)
        human_nss.append(M.nss(others, fixation_map(im.fixations[held], OSIE_SHAPE)))
    assert 0.3 < np.mean(centre_nss) < 1.5
    assert np.mean(human_nss) > np.mean(centre_nss) + 0.5


def test_other_fixation_map_excludes_the_image(osie):
    subset = osie[:5]
    other = other_fixation_map(subset, 0)
    assert other.sum() == sum(len(im.fixations) for im in subset[1:])


def test_missing_data_is_a_clear_error(tmp_path):
    with pytest.raises(OsieMissingError, match="OSIE data not found"):
        load_osie(tmp_path)
