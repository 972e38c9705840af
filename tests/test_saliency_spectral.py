"""The default saliency map: OpenCV contrib's spectral residual x a centre prior."""

from __future__ import annotations

import numpy as np
import pytest

from lens.config import SaliencyConfig
from lens.saliency.spectral import (
    SpectralResidualSaliency,
    centre_prior,
    combined_map,
    spectral_residual,
)


def test_opencv_contrib_saliency_module_exists():
    import cv2

    assert hasattr(cv2, "saliency"), "plain OpenCV overwrote opencv-contrib-python-headless"


@pytest.mark.parametrize("shape", [(600, 800), (31, 7), (1, 1), (2, 500)])
def test_map_has_the_image_shape_and_unit_range(shape):
    rgb = np.random.default_rng(0).integers(0, 256, size=(*shape, 3), dtype=np.uint8)
    m = combined_map(rgb, SaliencyConfig())
    assert m.shape == shape and m.dtype == np.float32
    assert float(m.min()) >= 0.0 and float(m.max()) <= 1.0


def test_textured_patch_is_the_peak_of_spectral_residual():
    rgb = np.full((300, 400, 3), 120, dtype=np.uint8)
    rgb[40:100, 280:360] = np.random.default_rng(1).integers(0, 256, size=(60, 80, 3), dtype=np.uint8)
    sal = spectral_residual(rgb, blur_sigma=0.03)
    y, x = np.unravel_index(np.argmax(sal), sal.shape)
    assert 30 <= y <= 110 and 270 <= x <= 370


def test_centre_prior_peaks_in_the_middle():
    prior = centre_prior((60, 80), 0.25)
    assert np.unravel_index(np.argmax(prior), prior.shape) in {(29, 39), (29, 40), (30, 39), (30, 40)}
    assert prior[0, 0] < 0.05


def test_backend_through_settings(settings):
    from lens.saliency import create_saliency

    saliency = create_saliency(settings)
    assert isinstance(saliency, SpectralResidualSaliency)
    assert saliency.map(np.zeros((10, 10, 3), dtype=np.uint8)).shape == (10, 10)
