"""make_mixture / sample_mixture: shapes, seeds, fidelity to the truth, separation, errors."""

from __future__ import annotations

import numpy as np
import pytest

from mogsgd._random import check_random_state
from mogsgd.datasets import make_mixture, pairwise_separation, sample_mixture
from mogsgd.params import MixtureParams


def test_shapes_and_dtypes():
    X, y, truth = make_mixture(200, n_features=4, n_components=5, random_state=0)
    assert X.shape == (200, 4) and X.dtype == np.float64
    assert y.shape == (200,) and y.dtype == np.int64
    assert set(np.unique(y)) <= set(range(5))
    assert isinstance(truth, MixtureParams)
    assert (truth.n_components, truth.n_features) == (5, 4)


def test_float32_dtype_is_kept():
    X, _, truth = make_mixture(50, random_state=0, dtype=np.float32)
    assert X.dtype == np.float32 and truth.dtype == np.float32


def test_same_seed_same_data_and_different_seed_different_data():
    a = make_mixture(100, random_state=3)
    b = make_mixture(100, random_state=3)
    c = make_mixture(100, random_state=4)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert a[2].allclose(b[2], rtol=0)
    assert not np.array_equal(a[0], c[0])


def test_generator_is_consumed_not_copied():
    rng = np.random.default_rng(0)
    X1, _, _ = make_mixture(50, random_state=rng)
    X2, _, _ = make_mixture(50, random_state=rng)
    assert not np.array_equal(X1, X2)


def test_global_numpy_rng_is_untouched():
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    make_mixture(50, random_state=None)
    np.testing.assert_array_equal(np.random.get_state()[1], before)


def test_labels_match_true_parameters_within_statistical_error():
    n = 20_000
    X, y, truth = make_mixture(n, n_features=3, n_components=3, separation=2.0, random_state=1)
    w, mu, var = truth.weights, truth.means, truth.variances
    counts = np.bincount(y, minlength=3)
    # multinomial counts: sd of a proportion is sqrt(w(1-w)/n); allow 5 sd
    assert np.all(np.abs(counts / n - w) < 5 * np.sqrt(w * (1 - w) / n))
    for k in range(3):
        Xk = X[y == k]
        nk = len(Xk)
        se_mean = np.sqrt(var[k] / nk)
        assert np.all(np.abs(Xk.mean(axis=0) - mu[k]) < 5 * se_mean)
        # sd of a sample variance of normal data is var * sqrt(2 / (n - 1))
        se_var = var[k] * np.sqrt(2.0 / (nk - 1))
        assert np.all(np.abs(Xk.var(axis=0, ddof=1) - var[k]) < 5 * se_var)


def test_given_parameters_are_used_exactly():
    weights = [0.2, 0.3, 0.5]
    means = [[0.0, 0.0], [5.0, 5.0], [-5.0, 5.0]]
    variances = [[1.0, 4.0], [0.25, 0.25], [2.0, 1.0]]
    _, _, truth = make_mixture(
        30, weights=weights, means=means, variances=variances, random_state=0
    )
    np.testing.assert_allclose(truth.weights, weights, rtol=1e-12)
    np.testing.assert_array_equal(truth.means, means)
    np.testing.assert_allclose(truth.variances, variances, rtol=1e-12)


def test_random_weights_are_never_degenerate():
    for seed in range(20):
        _, _, truth = make_mixture(10, n_components=6, random_state=seed)
        assert truth.weights.min() >= 0.5 / 6 - 1e-12
        assert truth.weights.sum() == pytest.approx(1.0)


def test_random_sigmas_and_means_stay_in_their_ranges():
    _, _, truth = make_mixture(
        10, n_features=3, n_components=4, mean_range=(1.0, 2.0), sigma_range=(0.1, 0.2),
        random_state=0,
    )
    assert np.all((truth.means >= 1.0) & (truth.means <= 2.0))
    assert np.all((truth.sigma >= 0.1 - 1e-12) & (truth.sigma <= 0.2 + 1e-12))


@pytest.mark.parametrize("seed", range(5))
def test_separation_is_guaranteed(seed):
    _, _, truth = make_mixture(10, n_features=2, n_components=6, separation=3.0, random_state=seed)
    assert pairwise_separation(truth.means, truth.sigma).min() >= 3.0


def test_pairwise_separation_definition():
    means = np.array([[0.0, 0.0], [3.0, 4.0]])
    sigma = np.array([[1.0, 1.0], [1.0, 7.0]])  # RMS sigmas 1 and 5
    sep = pairwise_separation(means, sigma)
    assert sep[0, 1] == pytest.approx(5.0 / 6.0)
    assert sep[1, 0] == sep[0, 1] and np.isinf(sep[0, 0])


def test_impossible_separation_raises_clear_error():
    with pytest.raises(ValueError, match="widen mean_range, lower separation"):
        make_mixture(10, n_components=4, separation=50.0, mean_range=(0, 1), random_state=0)


def test_given_means_violating_separation_raise():
    with pytest.raises(ValueError, match="components 0 and 1"):
        make_mixture(
            10, n_components=2, means=[[0, 0], [1, 0]], variances=np.ones((2, 2)), separation=3
        )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_samples": 2, "n_components": 3}, "at least n_components"),
        ({"n_samples": 0}, "n_samples must be an integer >= 1"),
        ({"n_features": 1.5}, "n_features must be an integer"),
        ({"n_components": True}, "n_components must be an integer"),
        ({"weights": [0.5, 0.5]}, r"weights must have shape \(n_components,\) = \(3,\)"),
        ({"weights": [0.5, 0.6, -0.1]}, "weights must all be > 0"),
        ({"weights": [0.2, 0.2, 0.2]}, "weights must sum to 1"),
        ({"weights": [0.5, np.nan, 0.5]}, "NaN or infinite"),
        ({"means": np.zeros((3, 3))}, r"means must have shape .* = \(3, 2\)"),
        ({"variances": np.zeros((3, 2))}, "variances must all be > 0"),
        ({"variances": np.ones((2, 2))}, "variances must have shape"),
        ({"mean_range": (1.0, 1.0)}, "low < high"),
        ({"mean_range": (1.0,)}, "pair"),
        ({"sigma_range": (0.0, 1.0)}, "positive"),
        ({"sigma_range": (2.0, 1.0)}, "low <= high"),
        ({"sigma_range": (1.0, np.inf)}, "finite"),
        ({"separation": -1.0}, "separation must be a finite number > 0"),
        ({"separation": "far"}, "separation must be a positive number"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_mixture(**{"n_samples": 100, **kwargs})


def test_bad_dtype_raises_type_error():
    with pytest.raises(TypeError, match="float32 or float64"):
        make_mixture(10, dtype=np.int64)


def test_sample_mixture_draws_from_params():
    truth = MixtureParams.from_moments([0.25, 0.75], [[-3.0], [4.0]], [[1.0], [0.25]])
    X, y = sample_mixture(truth, 40_000, random_state=0)
    assert X.shape == (40_000, 1)
    assert np.mean(y == 1) == pytest.approx(0.75, abs=0.01)
    assert X[y == 1].std() == pytest.approx(0.5, rel=0.02)
    with pytest.raises(TypeError, match="MixtureParams"):
        sample_mixture({"means": 0}, 10)


def test_check_random_state():
    rng = np.random.default_rng(0)
    assert check_random_state(rng) is rng
    assert isinstance(check_random_state(None), np.random.Generator)
    assert check_random_state(5).random() == np.random.default_rng(5).random()
    assert check_random_state(np.int64(5)).random() == np.random.default_rng(5).random()
    legacy = check_random_state(np.random.RandomState(0))
    assert legacy.random() == check_random_state(np.random.RandomState(0)).random()
    with pytest.raises(TypeError, match="random_state must be"):
        check_random_state(True)
    with pytest.raises(TypeError, match="random_state must be"):
        check_random_state("seed")
    with pytest.raises(ValueError, match="non-negative"):
        check_random_state(-1)
