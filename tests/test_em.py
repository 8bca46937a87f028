import numpy as np
import pytest
from conftest import random_params, sample_mixture

import mogsgd
from mogsgd.em import combine_stats, em_stats, fit_em, m_step
from mogsgd.gradients import nll_grad


@pytest.mark.parametrize("k, d, seed", [(2, 1, 0), (3, 2, 1), (3, 3, 2), (5, 4, 3)])
def test_em_log_likelihood_never_decreases(k, d, seed):
    rng = np.random.default_rng(seed)
    true = random_params(rng, k, d)
    X, _ = sample_mixture(rng, true, 800)
    start = random_params(rng, k, d)
    result = fit_em(X, start, max_iter=100, tol=0.0)
    ll = np.array(result.log_likelihoods)
    assert np.all(np.diff(ll) >= -1e-12 * np.abs(ll[1:])), np.diff(ll).min()


def test_em_matches_sklearn_from_same_start(rng):
    from sklearn.mixture import GaussianMixture

    true = random_params(rng, 3, 2)
    X, _ = sample_mixture(rng, true, 2000)
    start = random_params(rng, 3, 2)
    ours = fit_em(X, start, max_iter=500, tol=1e-12, reg_covar=1e-6).params
    gm = GaussianMixture(3, covariance_type="diag", weights_init=start.weights,
                         means_init=start.means, precisions_init=1 / start.variances,
                         tol=1e-12, max_iter=500, reg_covar=1e-6).fit(X)
    np.testing.assert_allclose(ours.weights, gm.weights_, atol=1e-6)
    np.testing.assert_allclose(ours.means, gm.means_, atol=1e-5)
    np.testing.assert_allclose(ours.variances, gm.covariances_, atol=1e-5)


def test_m_step_is_zero_of_the_gradient(rng):
    """Given fixed responsibilities, the M-step zeroes the mean and log-sigma gradients."""
    true = random_params(rng, 3, 2)
    X, _ = sample_mixture(rng, true, 500)
    p = random_params(rng, 3, 2)
    new = m_step(em_stats(X, p), p, reg_covar=0.0)
    gamma = mogsgd.responsibilities(X, p)
    nk = gamma.sum(0)
    np.testing.assert_allclose(new.weights, nk / len(X), rtol=1e-12)
    np.testing.assert_allclose(new.means, gamma.T @ X / nk[:, None], rtol=1e-10)
    var = np.stack([gamma[:, k] @ (X - new.means[k]) ** 2 / nk[k] for k in range(3)])
    np.testing.assert_allclose(new.variances, var, rtol=1e-10)


def test_em_fixed_point_has_zero_nll_gradient(rng):
    true = random_params(rng, 2, 2)
    X, _ = sample_mixture(rng, true, 1000)
    result = fit_em(X, true, max_iter=2000, tol=1e-14, reg_covar=0.0)
    _, grad = nll_grad(X, result.params)
    assert np.max(np.abs(grad.ravel())) < 1e-6


def test_stats_combine_over_chunks(rng):
    p = random_params(rng, 3, 3)
    X, _ = sample_mixture(rng, p, 900)
    whole = em_stats(X, p)
    parts = combine_stats(em_stats(c, p) for c in np.array_split(X, 4))
    for a, b in zip(whole, parts, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_em_survives_a_component_with_no_points(rng):
    X = rng.normal(size=(200, 2))
    start = mogsgd.MixtureParams(means=np.array([[0.0, 0.0], [1e3, 1e3]]),
                                 log_sigma=np.zeros((2, 2)), logits=np.zeros(2))
    result = fit_em(X, start, max_iter=20)
    assert np.all(np.isfinite(result.params.ravel()))
    assert result.params.weights[1] < 1e-10
