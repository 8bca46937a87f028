"""The fit path of the non-diagonal covariance families on large data: the compiled epoch
runs, the stochastic phase before the EM refinement has ~``target_steps`` optimiser steps
(no 20-epoch minimum), and the refined end point does not depend on that budget."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from mogsgd import SGDGaussianMixture, make_mixture
from mogsgd.errors import ConvergenceWarning
from mogsgd.solvers.runs import refined_epochs
from mogsgd.train import TrainConfig


def test_refined_budget_is_about_target_steps_without_the_20_epoch_minimum():
    """The nearest whole number of epochs to target_steps steps, at least one, for every
    covariance type; small data keep their budget."""
    config = TrainConfig()
    assert refined_epochs(config, 1_000_000) == 1          # 3907 steps per epoch
    assert refined_epochs(config, 100_000) == 10           # 391 steps
    assert refined_epochs(config, 3_000_000) == 1
    assert refined_epochs(config, 300_000) == 3            # 1172 steps: 3.4 epochs
    for n in (500, 20_000, 51_200):                        # small data: unchanged
        assert refined_epochs(config, n) == config.epochs_for(n)


@pytest.mark.parametrize("covariance_type", ["full", "tied", "spherical", "diag"])
def test_large_batch_count_fit_stops_sgd_early_and_refines_to_the_same_optimum(covariance_type):
    """With 2000 steps per epoch (batch 8 on 16,000 training rows) the stochastic phase has 2
    epochs, and its refined end point equals (to 1e-3 nats) a fit with the old 20-epoch
    budget; without the refinement the budget is unchanged."""
    X, _, _ = make_mixture(20_000, 3, 3, separation=2.5, random_state=0,
                           covariance_type=covariance_type)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        short = SGDGaussianMixture(3, covariance_type=covariance_type, batch_size=8,
                                   random_state=0).fit(X)
        long = SGDGaussianMixture(3, covariance_type=covariance_type, batch_size=8,
                                  max_epochs=20, random_state=0).fit(X)
        raw = SGDGaussianMixture(3, covariance_type=covariance_type, batch_size=8,
                                 refine="none", early_stopping=False, random_state=0,
                                 max_iter=None).fit(X[:2000])
    assert short.n_iter_ <= 2 < long.n_iter_
    assert short.refine_iter_ > 0
    assert abs(short.score(X) - long.score(X)) < 1e-3
    assert raw.n_iter_ == TrainConfig(batch_size=8).epochs_for(1800)   # no refinement: 20
    assert np.isfinite(short.score(X))
