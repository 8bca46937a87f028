"""Sample weights, missing values and warm starts through the estimator (issue: beyond the
peers).  The core formulas are checked in test_derivations.py (eqs. 31-35)."""

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

import mogsgd
from mogsgd import MixtureParams, SGDGaussianMixture
from mogsgd.datasets import make_mixture


def matched(true_means, fitted_means):
    cost = ((true_means[:, None] - fitted_means[None]) ** 2).sum(-1)
    return linear_sum_assignment(cost)[1]


@pytest.fixture(scope="module")
def weighted_data():
    X, _, true = make_mixture(3000, 2, 3, separation=3.0, random_state=11)
    w = np.random.default_rng(0).integers(0, 4, size=len(X))
    return X, w, true


def test_em_with_weights_equals_duplicated_rows(weighted_data):
    X, w, true = weighted_data
    start = dict(weights_init=true.weights, means_init=true.means, variances_init=true.variances)
    kw = dict(solver="em", tol=1e-12, max_iter=5000, **start)
    weighted = SGDGaussianMixture(3, **kw).fit(X, sample_weight=w)
    repeated = SGDGaussianMixture(3, **kw).fit(np.repeat(X, w, axis=0))
    for a, b in [(weighted.weights_, repeated.weights_), (weighted.means_, repeated.means_),
                 (weighted.covariances_, repeated.covariances_)]:
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-10)


def test_sgd_with_weights_matches_duplicated_rows_within_statistical_error(weighted_data):
    X, w, _ = weighted_data
    weighted = SGDGaussianMixture(3, random_state=0).fit(X, sample_weight=w)
    repeated = SGDGaussianMixture(3, random_state=0).fit(np.repeat(X, w, axis=0))
    perm = matched(repeated.means_, weighted.means_)
    # both estimate the same optimum; SGD's own noise (larger with weights 0..3, which
    # also make fewer steps per epoch) is a small fraction of each component's spread
    spread = np.sqrt(repeated.covariances_)
    assert np.all(np.abs(weighted.means_[perm] - repeated.means_) < 0.15 * spread)
    assert np.allclose(weighted.weights_[perm], repeated.weights_, atol=0.02)
    assert weighted.score(X, sample_weight=w) == pytest.approx(
        repeated.score(np.repeat(X, w, axis=0)), abs=0.01)


def test_small_data_weights_equal_repetitions_exactly():
    """In the full-batch regime training runs on distinct rows: bit-identical fits."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(40, 3))
    X[:20] += 3
    w = rng.integers(0, 4, size=40)
    a = SGDGaussianMixture(2, random_state=1).fit(X, sample_weight=w)
    b = SGDGaussianMixture(2, random_state=1).fit(np.repeat(X, w, axis=0)[::-1])
    assert np.array_equal(a.params_.ravel(), b.params_.ravel())


def test_weighted_scores_and_criteria(weighted_data):
    X, w, _ = weighted_data
    est = SGDGaussianMixture(3, random_state=0).fit(X)
    Xr = np.repeat(X, w, axis=0)
    assert est.score(X, sample_weight=w) == pytest.approx(est.score(Xr), rel=1e-12)
    assert est.bic(X, sample_weight=w) == pytest.approx(est.bic(Xr), rel=1e-12)
    assert est.aic(X, sample_weight=w) == pytest.approx(est.aic(Xr), rel=1e-12)


def test_partial_fit_accepts_weights(weighted_data):
    X, w, _ = weighted_data
    est = SGDGaussianMixture(3, random_state=0)
    for chunk, wc in zip(np.array_split(X, 3), np.array_split(w, 3), strict=True):
        est.partial_fit(chunk, sample_weight=wc)
    assert np.isfinite(est.score(X))


@pytest.mark.parametrize("bad, msg", [(-np.ones(5), "non-negative"), (np.zeros(5), "zero"),
                                      (np.ones(4), "shape"), (np.full(5, np.nan), "NaN")])
def test_bad_weights_are_refused(bad, msg):
    X = np.random.default_rng(0).normal(size=(5, 2))
    with pytest.raises(ValueError, match=msg):
        SGDGaussianMixture(1).fit(X, sample_weight=bad)


# ------------------------------------------------------------------ missing values
def test_missing_error_by_default_names_the_option():
    X = np.random.default_rng(0).normal(size=(30, 2))
    X[3, 1] = np.nan
    with pytest.raises(ValueError, match="missing='marginalize'"):
        SGDGaussianMixture(2).fit(X)


def test_marginal_log_density_equals_the_restricted_model(rng):
    p = MixtureParams.from_moments([0.3, 0.7], [[0, 1, 2], [3, -1, 0]], [[1, 2, 0.5], [2, 1, 1]])
    X = rng.normal(size=(50, 3)) * 2
    X[:, 1] = np.nan
    restricted = MixtureParams(p.means[:, [0, 2]], p.log_sigma[:, [0, 2]], p.logits)
    np.testing.assert_allclose(mogsgd.log_prob(X, p), mogsgd.log_prob(X[:, [0, 2]], restricted),
                               rtol=1e-13)


def test_fitting_with_20_percent_missing_recovers_the_parameters():
    X, _, true = make_mixture(20_000, 3, 3, separation=2.5, random_state=5)
    rng = np.random.default_rng(1)
    Xm = X.copy()
    Xm[rng.random(X.shape) < 0.2] = np.nan
    Xm = Xm[~np.isnan(Xm).all(axis=1)]
    for solver in ("sgd", "em"):
        est = SGDGaussianMixture(3, missing="marginalize", solver=solver,
                                 random_state=0).fit(Xm)
        perm = matched(true.means, est.means_)
        n_k = true.weights * len(Xm) * 0.8
        se = true.sigma / np.sqrt(n_k)[:, None]
        assert np.all(np.abs(est.means_[perm] - true.means) < 6 * se + 0.02), solver
        assert np.all(np.abs(est.weights_[perm] - true.weights) < 0.02), solver
        rel = np.abs(est.covariances_[perm] / true.variances - 1)
        assert np.all(rel < 0.08), solver
        assert np.all(np.isfinite(est.score_samples(Xm)))
        proba = est.predict_proba(Xm)
        np.testing.assert_allclose(proba.sum(1), 1.0)


def test_a_row_with_every_feature_missing_is_refused():
    X = np.random.default_rng(0).normal(size=(30, 2))
    X[7] = np.nan
    with pytest.raises(ValueError, match="row 7 has every feature missing"):
        SGDGaussianMixture(2, missing="marginalize").fit(X)


# ------------------------------------------------------------------------ warm start
@pytest.mark.parametrize("solver", ["sgd", "online_em"])
def test_fitting_twice_for_n_epochs_equals_once_for_2n(solver):
    X, _, _ = make_mixture(3000, 2, 3, separation=2.0, random_state=2)
    kw = dict(solver=solver, random_state=4, early_stopping=False)
    twice = SGDGaussianMixture(3, max_epochs=3, warm_start=True, **kw)
    twice.fit(X).fit(X)
    once = SGDGaussianMixture(3, max_epochs=6, **kw).fit(X)
    assert twice.n_iter_ == 3 and once.n_iter_ == 6     # per call, as in scikit-learn
    assert twice.history_["epoch"] == once.history_["epoch"] == list(range(1, 7))
    assert np.array_equal(twice.params_.ravel(), once.params_.ravel())
    assert twice.history_["train_nll"] == once.history_["train_nll"]


def test_warm_start_em_continues_from_the_previous_parameters():
    X, _, _ = make_mixture(2000, 2, 3, separation=1.0, random_state=6)
    est = SGDGaussianMixture(3, solver="em", max_iter=3, warm_start=True, random_state=0)
    first = est.fit(X).score(X)
    second = est.fit(X).score(X)
    assert second >= first - 1e-12
