import numpy as np
import pytest
from conftest import random_params, sample_mixture
from scipy import stats

import mogsgd
from mogsgd.density import log_gaussian, logsumexp


def naive_log_prob(X, p):
    """Independent reference: scipy's normal log-pdf summed over features, scipy logsumexp."""
    from scipy.special import logsumexp as sp_lse

    comp = np.stack([stats.norm.logpdf(X, p.means[k], p.sigma[k]).sum(axis=1)
                     for k in range(p.n_components)], axis=1)
    return sp_lse(comp + np.log(p.weights), axis=1)


@pytest.mark.parametrize("k, d", [(1, 1), (2, 1), (3, 2), (3, 3), (5, 7)])
def test_log_prob_matches_naive_scipy(rng, k, d):
    p = random_params(rng, k, d)
    X, _ = sample_mixture(rng, p, 200)
    np.testing.assert_allclose(mogsgd.log_prob(X, p), naive_log_prob(X, p), rtol=1e-12)


@pytest.mark.parametrize("k, d", [(2, 1), (3, 3), (6, 4)])
def test_resp_rows_sum_to_one_and_are_nonnegative(rng, k, d):
    p = random_params(rng, k, d)
    X = rng.normal(scale=5, size=(300, d))
    r = mogsgd.responsibilities(X, p)
    assert r.shape == (300, k) and np.all(r >= 0)
    np.testing.assert_allclose(r.sum(axis=1), 1.0, rtol=1e-12)


def test_nll_equals_minus_sklearn_score(rng):
    from sklearn.mixture import GaussianMixture

    p = random_params(rng, 3, 3)
    X, _ = sample_mixture(rng, p, 500)
    gm = GaussianMixture(3, covariance_type="diag")
    gm.weights_, gm.means_, gm.covariances_ = p.weights, p.means, p.variances
    gm.precisions_cholesky_ = 1.0 / p.sigma
    np.testing.assert_allclose(mogsgd.nll(X, p), -gm.score(X), rtol=1e-12)
    np.testing.assert_allclose(mogsgd.log_resp(X, p), gm._estimate_log_prob_resp(X)[1],
                               rtol=1e-9, atol=1e-9)


def test_far_outlier_has_finite_log_prob_and_resp(rng):
    p = random_params(rng, 3, 2)
    X = np.array([[60.0 * 2 + 3, -60.0 * 2 - 3], [1e4, 1e4]])
    lp = mogsgd.log_prob(X, p)
    assert np.all(np.isfinite(lp))
    np.testing.assert_allclose(lp, naive_log_prob(X, p), rtol=1e-12)
    r = mogsgd.responsibilities(X, p)
    assert np.all(np.isfinite(r))
    np.testing.assert_allclose(r.sum(axis=1), 1.0)


def test_logsumexp_edge_cases():
    assert logsumexp(np.array([1000.0, 1000.0])) == 1000.0 + np.log(2.0)
    assert logsumexp(np.array([-np.inf, -np.inf])) == -np.inf
    assert logsumexp(np.array([])) == -np.inf
    np.testing.assert_allclose(logsumexp(np.array([[0.0, np.log(3.0)], [-np.inf, 5.0]]), axis=1),
                               [np.log(4.0), 5.0])
    assert logsumexp(np.array([[1.0, 2.0]]), axis=1, keepdims=True).shape == (1, 1)


def test_log_gaussian_has_no_dependence_on_other_components(rng):
    p = random_params(rng, 3, 2)
    X = rng.normal(size=(10, 2))
    lg = log_gaussian(X, p)
    one = log_gaussian(X, mogsgd.MixtureParams(p.means[1:2], p.log_sigma[1:2], p.logits[1:2]))
    np.testing.assert_allclose(lg[:, 1], one[:, 0], rtol=1e-14)


def test_weighted_nll_equals_duplicated_rows(rng):
    p = random_params(rng, 2, 2)
    X = rng.normal(size=(20, 2))
    w = rng.integers(0, 4, size=20).astype(float)
    w[0] = 1
    dup = np.repeat(X, w.astype(int), axis=0)
    np.testing.assert_allclose(mogsgd.nll(X, p, w), mogsgd.nll(dup, p), rtol=1e-13)


def test_float32_inputs_stay_float32(rng):
    p = random_params(rng, 2, 3, dtype=np.float32)
    X = rng.normal(size=(50, 3)).astype(np.float32)
    assert mogsgd.log_prob(X, p).dtype == np.float32
    np.testing.assert_allclose(mogsgd.log_prob(X, p), mogsgd.log_prob(X.astype(float),
                               p.astype(np.float64)), rtol=2e-5)
