"""The default fit on large in-memory data (issue 15 item 3): a short stochastic phase
(:func:`mogsgd.solvers.runs.refined_epochs`), then the EM refinement stopped at the fit's
statistical resolution (:func:`mogsgd.solvers.runs.refine_tol`), whose last pass is the
fit's lower bound."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from mogsgd import SGDGaussianMixture, make_mixture
from mogsgd.errors import ConvergenceWarning
from mogsgd.solvers.runs import REFINE_TOL, RESOLUTION_ROWS, refine_tol


def test_refine_tol_is_the_statistical_resolution_on_large_data_only():
    assert refine_tol(RESOLUTION_ROWS - 1, 20) == REFINE_TOL        # small data: fixed point
    assert refine_tol(1_000_000, 20) == pytest.approx(1e-5)          # p / (2 n)
    assert refine_tol(1_000_000, 263) == pytest.approx(1.315e-4)
    assert refine_tol(10**12, 20) == REFINE_TOL                      # never below REFINE_TOL


@pytest.fixture(scope="module")
def large():
    X, _, _ = make_mixture(230_000, 2, 3, separation=1.5, random_state=4)
    return X[:200_000], X[200_000:]


def test_default_fit_on_large_data_reaches_converged_em_quality(large):
    """1 SGD epoch's budget at batch 32 (as 1e6 rows have at batch 256), then EM to the
    statistical resolution: held-out LL within 0.01 nats per row of EM run to
    convergence, a fit that EM to convergence improves by less than a few resolutions, and
    the lower bound of the refinement's last pass equal to the data's score."""
    X, X_test = large
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)   # the refinement settles
        est = SGDGaussianMixture(3, batch_size=32, random_state=0).fit(X)
    em = SGDGaussianMixture(3, solver="em", tol=1e-10, max_iter=5000,
                            random_state=0).fit(X)
    assert est.n_iter_ == 1 and est.refine_iter_ > 0 and est.converged_
    assert est.score(X_test) >= em.score(X_test) - 0.01
    assert est.lower_bound_ == pytest.approx(est.score(X), rel=1e-10)
    onwards = SGDGaussianMixture(3, solver="em", tol=1e-10, max_iter=5000,
                                 means_init=est.means_, weights_init=est.weights_,
                                 precisions_init=est.precisions_).fit(X)
    resolution = refine_tol(len(X), est.n_parameters())
    assert onwards.lower_bound_ - est.lower_bound_ < 10 * resolution


def test_large_data_refinement_compares_start_and_end_on_the_validation_rows():
    """On large in-memory data the refinement starts from whichever of the run's start and
    end has the higher validation log-likelihood, without scoring either on every row."""
    from types import SimpleNamespace

    from mogsgd.em import EMResult
    from mogsgd.params import MixtureParams
    from mogsgd.solvers.runs import SOLVERS, Run, refine

    rng = np.random.default_rng(0)
    val = rng.normal(size=(2000, 2))
    near = MixtureParams(np.array([[0.0, 0.0]]), np.zeros((1, 2)), np.zeros(1))
    far = MixtureParams(near.means + 3.0, near.log_sigma, near.logits)   # worse on val
    started = []

    def em_fit(params, **options):
        started.append(params)
        return EMResult(params, [-1.0, -1.0], [0.0, 0.0], True, 1)

    def every_row(params):
        raise AssertionError("scored on every row")

    prepared = SimpleNamespace(all_loglik=every_row, train_loglik=every_row, em_fit=em_fit,
                               em_stats=object(), in_memory=True, cheap_passes=True,
                               n_features=2, train=np.empty((RESOLUTION_ROWS, 2)), val=val,
                               val_weight=None, scaler=SimpleNamespace(log_det=0.0))
    settings = SimpleNamespace(refine="auto", min_variance=1e-6, covariance_type="diag",
                               n_components=1, backend="auto",
                               config=SimpleNamespace(early_stopping=True))
    for start, end, chosen in ((near, far, near), (far, near, near)):
        started.clear()
        refine(Run(end, None, n_iter=2, start=start), SOLVERS["sgd"], prepared, settings)
        assert started == [chosen]
