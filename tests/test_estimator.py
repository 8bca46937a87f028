import warnings

import numpy as np
import pytest
from conftest import sample_mixture
from scipy.optimize import linear_sum_assignment

import mogsgd
from mogsgd import MixtureParams, SGDGaussianMixture


def make_data(weights, means, sds, n, seed):
    true = MixtureParams.from_moments(np.array(weights), np.array(means, float),
                                      np.array(sds, float) ** 2)
    return sample_mixture(np.random.default_rng(seed), true, n)[0], true


def match(true_means, fitted_means):
    cost = ((true_means[:, None] - fitted_means[None]) ** 2).sum(-1)
    return linear_sum_assignment(cost)[1]


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
def test_sgd_recovers_generating_parameters(optimizer):
    X, true = make_data([0.5, 0.3, 0.2], [[0, 0, 0], [5, 5, 0], [-5, 4, 3]],
                        [[1, 1, 1], [0.7, 1.2, 1], [1.5, 0.5, 1]], 20_000, 0)
    est = SGDGaussianMixture(3, optimizer=optimizer, random_state=0).fit(X)
    perm = match(true.means, est.means_)
    n_k = true.weights * len(X)
    # within ~5 standard errors of the truth (SGD noise included)
    se_mean = true.sigma / np.sqrt(n_k)[:, None]
    assert np.all(np.abs(est.means_[perm] - true.means) < 5 * se_mean + 0.01)
    se_w = np.sqrt(true.weights * (1 - true.weights) / len(X))
    assert np.all(np.abs(est.weights_[perm] - true.weights) < 5 * se_w + 0.005)
    rel_var = np.abs(est.covariances_[perm] / true.variances - 1)
    assert np.all(rel_var < 5 * np.sqrt(2 / n_k)[:, None] + 0.02)


def heldout_gap(X, n_components=3, seed=0, **kwargs):
    """Mean over 5 folds of (sklearn EM held-out LL - ours), nats per point."""
    from sklearn.mixture import GaussianMixture
    from sklearn.model_selection import KFold

    gaps = []
    for train, test in KFold(5, shuffle=True, random_state=seed).split(X):
        gm = GaussianMixture(n_components, covariance_type="diag", n_init=5,
                             random_state=seed).fit(X[train])
        est = SGDGaussianMixture(n_components, random_state=seed, **kwargs).fit(X[train])
        gaps.append(gm.score(X[test]) - est.score(X[test]))
    return float(np.mean(gaps))


DATASETS = {
    "separated": ([0.3, 0.3, 0.4], [[0, 0, 0], [6, 6, 0], [-6, 4, 3]],
                  [[1, 1, 1], [0.7, 1.2, 1], [1.5, 0.5, 1]]),
    "overlapping": ([0.4, 0.35, 0.25], [[0, 0], [2, 1], [-1, 2]], [[1, 1], [1, 1.5], [0.8, 1]]),
    "imbalanced": ([0.8, 0.15, 0.05], [[0, 0, 0], [4, 0, 1], [0, 5, -2]],
                   [[1, 1, 1], [1, 2, 1], [0.5, 0.5, 0.5]]),
    "units": ([0.4, 0.35, 0.25], [[0, 0], [2e3, 1e-3], [-1e3, 2e-3]],
              [[5e2, 1e-3], [1e3, 1e-3], [3e2, 1e-3]]),
}


@pytest.mark.parametrize("name", sorted(DATASETS))
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_defaults_match_sklearn_heldout_loglik(name, optimizer):
    X, _ = make_data(*DATASETS[name], 3000, 1)
    gap = heldout_gap(X, optimizer=optimizer)
    assert gap < 0.02, f"{name}/{optimizer}: held-out gap {gap:.4f} nats/point"


def test_defaults_match_sklearn_on_iris():
    from sklearn.datasets import load_iris

    gap = heldout_gap(load_iris().data)
    assert gap < 0.02, f"iris: held-out gap {gap:.4f} nats/point"


def test_fitted_attributes_and_shapes():
    X, _ = make_data([0.5, 0.5], [[0, 0], [5, 5]], [[1, 1], [1, 1]], 2000, 2)
    est = SGDGaussianMixture(2, random_state=0).fit(X)
    assert est.weights_.shape == (2,) and est.means_.shape == (2, 2)
    assert est.covariances_.shape == (2, 2) and est.n_features_in_ == 2
    assert est.converged_ and est.n_iter_ == len(est.history_["epoch"])
    assert set(est.history_) >= {"epoch", "train_nll", "val_nll", "lr", "time"}
    proba = est.predict_proba(X)
    np.testing.assert_allclose(proba.sum(1), 1.0)
    np.testing.assert_array_equal(est.predict(X), proba.argmax(1))
    assert est.score(X) == pytest.approx(est.score_samples(X).mean())
    assert est.score(X) == pytest.approx(-mogsgd.nll(X, est.params_))
    n_params = 2 * (2 * 2 + 1) - 1
    assert est.bic(X) == pytest.approx(-2 * est.score(X) * len(X) + n_params * np.log(len(X)))
    assert est.aic(X) == pytest.approx(-2 * est.score(X) * len(X) + 2 * n_params)
    Xs, ys = est.sample(500)
    assert Xs.shape == (500, 2) and set(np.unique(ys)) <= {0, 1}


def test_fit_predict_equals_fit_then_predict():
    X, _ = make_data([0.5, 0.5], [[0, 0], [5, 5]], [[1, 1], [1, 1]], 1000, 3)
    a = SGDGaussianMixture(2, random_state=4).fit_predict(X)
    b = SGDGaussianMixture(2, random_state=4).fit(X).predict(X)
    np.testing.assert_array_equal(a, b)


def test_em_solver_matches_sklearn():
    from sklearn.mixture import GaussianMixture

    X, _ = make_data(*DATASETS["overlapping"], 3000, 5)
    ours = SGDGaussianMixture(3, solver="em", n_init=5, tol=1e-8, max_iter=2000,
                              random_state=0).fit(X)
    gm = GaussianMixture(3, covariance_type="diag", n_init=5, tol=1e-8, max_iter=2000,
                         random_state=0).fit(X)
    assert abs(ours.score(X) - gm.score(X)) < 1e-3


def test_user_initialisation_is_used():
    X, true = make_data([0.5, 0.5], [[0, 0], [5, 5]], [[1, 1], [1, 1]], 1000, 6)
    est = SGDGaussianMixture(2, weights_init=true.weights, means_init=true.means,
                             variances_init=true.variances, max_epochs=1,
                             learning_rate=1e-12, early_stopping=False, refine="none").fit(X)
    np.testing.assert_allclose(est.means_, true.means, atol=1e-8)


def test_partial_fit_improves_over_chunks():
    X, _ = make_data(*DATASETS["separated"], 6000, 7)
    est = SGDGaussianMixture(3, random_state=0)
    scores = []
    for chunk in np.array_split(X, 6):
        est.partial_fit(chunk)
        scores.append(est.score(X))
    assert scores[-1] > scores[0] and est.n_iter_ == 6


def test_predict_with_wrong_feature_count_names_both_counts():
    X, _ = make_data([0.5, 0.5], [[0, 0], [5, 5]], [[1, 1], [1, 1]], 300, 8)
    est = SGDGaussianMixture(2, random_state=0).fit(X)
    with pytest.raises(ValueError, match="X has 3 features, but SGDGaussianMixture is "
                                         "expecting 2 features"):
        est.predict(np.zeros((4, 3)))


@pytest.mark.parametrize("kwargs, msg", [
    ({"n_components": 0}, "n_components"), ({"batch_size": 0}, "batch_size"),
    ({"learning_rate": 0.0}, "learning_rate"), ({"learning_rate": float("nan")},
                                                 "learning_rate"),
    ({"optimizer": "rmsprop"}, "unknown optimizer"), ({"max_epochs": -3}, "max_epochs"),
    ({"solver": "vi"}, "unknown solver"), ({"init": "magic"}, "unknown init"),
])
def test_bad_hyperparameters_are_named(kwargs, msg):
    X = np.random.default_rng(0).normal(size=(50, 2))
    with pytest.raises(ValueError, match=msg):
        SGDGaussianMixture(**{"n_components": 2, **kwargs}).fit(X)


def test_core_does_not_import_sklearn():
    import subprocess
    import sys

    code = ("import sys, mogsgd, mogsgd.train, mogsgd.em, mogsgd.init, mogsgd.optim; "
            "print('sklearn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_no_warnings_on_easy_data():
    X, _ = make_data([0.5, 0.5], [[0, 0], [5, 5]], [[1, 1], [1, 1]], 3000, 9)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        SGDGaussianMixture(2, random_state=0).fit(X)


def test_small_data_refinement_runs_em_once(monkeypatch):
    """After a polished start (small data), which often beats SGD's end, one pass decides
    where the refinement starts, and EM runs once (it ran from SGD's end first, then again
    from the start)."""
    from sklearn.datasets import load_iris

    from mogsgd.fast import batch_em

    X = load_iris().data
    calls = []
    original = batch_em.em_loop

    def counted(*args, **kwargs):
        calls.append(kwargs.get("max_iter"))
        return original(*args, **kwargs)

    monkeypatch.setattr(batch_em, "em_loop", counted)
    est = SGDGaussianMixture(3, random_state=0).fit(X)
    assert len(calls) == 1 and est.refine_iter_ > 0 and est.converged_
