"""Saliency metrics on maps whose scores are known by construction, and on real OSIE fixations."""

from __future__ import annotations

import numpy as np
import pytest

from lens.saliency import metrics as M
from lens.saliency.osie import density_map, fixation_map

SHAPE = (60, 80)
POINTS = np.array([[20.0, 15.0], [60.0, 40.0], [61.0, 41.0], [10.0, 50.0]])


@pytest.fixture(scope="module")
def truth():
    return fixation_map(POINTS, SHAPE), density_map(POINTS, SHAPE, sigma=3.0)


def _random_map(seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).random(SHAPE)


@pytest.mark.parametrize(
    "name, perfect_is_better_than_random",
    [("NSS", True), ("CC", True), ("AUC-Judd", True), ("SIM", True), ("KLD", False)],
)
def test_density_itself_scores_better_than_noise(truth, name, perfect_is_better_than_random):
    fix, dens = truth
    perfect = M.evaluate(dens, fix, dens)[name]
    noise = M.evaluate(_random_map(), fix, dens)[name]
    assert (perfect > noise) == perfect_is_better_than_random


@pytest.mark.parametrize(
    "metric, expected",
    [(M.cc, 1.0), (M.sim, 1.0), (M.kld, 0.0)],
)
def test_distribution_metrics_of_identical_maps(truth, metric, expected):
    _, dens = truth
    assert metric(dens, dens) == pytest.approx(expected, abs=1e-6)


def test_auc_judd_of_a_map_peaked_on_every_fixation_is_one(truth):
    fix, _ = truth
    assert M.auc_judd(fix, fix) == pytest.approx(1.0, abs=1e-3)


def test_constant_map_scores_chance():
    fix = fixation_map(POINTS, SHAPE)
    flat = np.ones(SHAPE)
    assert M.nss(flat, fix) == 0.0
    assert M.auc_judd(flat, fix) == pytest.approx(0.5, abs=0.02)


def test_nss_is_the_zscore_at_fixations():
    sal = _random_map(3)
    fix = fixation_map(POINTS, SHAPE)
    z = (sal - sal.mean()) / sal.std()
    expected = np.mean([z[15, 20], z[40, 60], z[41, 61], z[50, 10]])
    assert M.nss(sal, fix) == pytest.approx(expected)


def test_shuffled_auc_gives_a_centre_prior_no_credit_when_negatives_share_its_bias():
    # Positives and negatives both cluster at the centre: a centre map cannot tell them apart.
    rng = np.random.default_rng(0)
    centre = np.array([40.0, 30.0])
    pos = centre + rng.normal(0, 6, size=(200, 2))
    neg = centre + rng.normal(0, 6, size=(400, 2))
    yy, xx = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]]
    prior = np.exp(-(((xx - 40) / 10.0) ** 2 + ((yy - 30) / 10.0) ** 2) / 2)
    fix, other = fixation_map(pos, SHAPE), fixation_map(neg, SHAPE)
    assert M.auc_judd(prior, fix) > 0.8
    assert M.auc_shuffled(prior, fix, other) == pytest.approx(0.5, abs=0.08)


def test_prediction_of_another_size_is_resized(truth):
    fix, dens = truth
    small = np.asarray(dens[::2, ::2])
    assert M.cc(small, dens) > 0.9
    assert M.nss(small, fix) > 1.0


def test_no_fixations_gives_nan():
    empty = np.zeros(SHAPE)
    assert np.isnan(M.nss(_random_map(), empty))
    assert np.isnan(M.auc_judd(_random_map(), empty))
