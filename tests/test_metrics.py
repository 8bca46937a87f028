"""Component matching and the comparison metrics built on it."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from mogsgd.metrics import (
    adjusted_rand_index,
    align_components,
    match_components,
    matched_accuracy,
    parameter_errors,
)
from mogsgd.params import MixtureParams

TRUE = MixtureParams.from_moments(
    [0.2, 0.3, 0.5], [[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]], [[1.0, 1.0], [4.0, 1.0], [1.0, 9.0]]
)


def _permuted(params, perm, shift=0.0):
    return MixtureParams(params.means[perm] + shift, params.log_sigma[perm], params.logits[perm])


@pytest.fixture(params=["scipy", "brute-force"])
def backend(request, monkeypatch):
    if request.param == "brute-force":
        monkeypatch.setitem(sys.modules, "scipy.optimize", None)
    return request.param


def test_match_components_undoes_a_permutation(backend):
    fitted = _permuted(TRUE, [2, 0, 1], shift=0.3)
    perm = match_components(TRUE.means, fitted.means)
    np.testing.assert_array_equal(fitted.means[perm] - 0.3, TRUE.means)


def test_match_components_with_extra_fitted_components(backend):
    fitted_means = np.vstack([TRUE.means[[1, 2, 0]], [[50.0, 50.0]]])
    np.testing.assert_array_equal(match_components(TRUE.means, fitted_means), [2, 0, 1])
    with pytest.raises(ValueError, match="only 2 fitted"):
        match_components(TRUE.means, TRUE.means[:2])


def test_brute_force_refuses_large_k_without_scipy(monkeypatch):
    monkeypatch.setitem(sys.modules, "scipy.optimize", None)
    with pytest.raises(ImportError, match="needs SciPy"):
        match_components(np.arange(9.0)[:, None], np.arange(9.0)[:, None])


def test_align_and_parameter_errors(backend):
    fitted = _permuted(TRUE, [1, 2, 0], shift=0.25)
    assert align_components(TRUE, fitted).allclose(
        MixtureParams(TRUE.means + 0.25, TRUE.log_sigma, TRUE.logits)
    )
    errors = parameter_errors(TRUE, fitted)
    assert errors == pytest.approx({"weights": 0.0, "means": 0.25, "sigmas": 0.0}, abs=1e-12)


def test_parameter_errors_need_same_shape():
    other = MixtureParams(np.zeros((2, 2)), np.zeros((2, 2)), np.zeros(2))
    with pytest.raises(ValueError, match="K=3, D=2 but fitted has K=2"):
        parameter_errors(TRUE, other)


def test_matched_accuracy_ignores_label_names(backend):
    y_true = np.array([0, 0, 1, 1, 2, 2])
    assert matched_accuracy(y_true, np.array([5, 5, 3, 3, 9, 9])) == 1.0
    assert matched_accuracy(y_true, np.array([1, 1, 0, 0, 2, 0])) == pytest.approx(5 / 6)
    # more predicted clusters than true ones, and fewer
    assert matched_accuracy(y_true, np.arange(6)) == pytest.approx(3 / 6)
    assert matched_accuracy(y_true, np.zeros(6)) == pytest.approx(2 / 6)
    with pytest.raises(ValueError, match="equal length"):
        matched_accuracy(y_true, y_true[:3])


def test_adjusted_rand_index():
    y = np.array([0, 0, 1, 1, 2, 2])
    assert adjusted_rand_index(y, (y + 1) % 3) == pytest.approx(1.0)
    assert adjusted_rand_index(y, [0, 1, 0, 1, 0, 1]) < 0.1
