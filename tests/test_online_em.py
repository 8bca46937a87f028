"""Online EM (eq. 36-37): the recursion, its fixed point, and the estimator's solver."""

import numpy as np
import pytest
from conftest import random_params, sample_mixture

import mogsgd
from mogsgd.datasets import make_mixture
from mogsgd.em import em_stats, fit_em, m_step
from mogsgd.init import init_params
from mogsgd.online_em import online_em_init, online_em_step, step_size
from mogsgd.train import TrainConfig


def test_step_sizes_follow_the_power_law():
    assert step_size(1, 0.6, 2.0) == pytest.approx(3.0 ** -0.6)
    assert step_size(100, 1.0, 0.0) == pytest.approx(0.01)
    assert step_size(1, 0.7, 0.0) == 1.0  # capped at one


def test_init_statistics_reproduce_the_parameters(rng):
    p = random_params(rng, 3, 2)
    state = online_em_init(p, reg_covar=1e-6)
    q = m_step(state.stats, p, reg_covar=1e-6)
    for a, b in [(q.weights, p.weights), (q.means, p.means), (q.variances, p.variances)]:
        np.testing.assert_allclose(a, b, rtol=1e-10)


def test_full_step_size_equals_a_batch_em_step(rng):
    """With g_t = 1 the recursion forgets the past: one step is one EM iteration."""
    true = random_params(rng, 3, 2)
    X, _ = sample_mixture(rng, true, 500)
    p = random_params(rng, 3, 2)
    new, _, batch_nll = online_em_step(X, p, online_em_init(p, 1e-6), alpha=1.0, t0=0.0)
    expected = m_step(em_stats(X, p), p, 1e-6)
    np.testing.assert_allclose(new.ravel(), expected.ravel(), rtol=1e-10)
    assert batch_nll == pytest.approx(mogsgd.nll(X, p), rel=1e-12)


def test_online_em_approaches_the_batch_em_optimum(rng):
    X, _, _ = make_mixture(20_000, 2, 3, separation=1.0, random_state=4)
    start = init_params(X, 3, "kmeans++", rng)
    em = fit_em(X, start, tol=1e-10, max_iter=1000)
    p, state = start, online_em_init(start, 1e-6)
    for _ in range(4):
        order = rng.permutation(len(X))
        for s in range(0, len(X), 256):
            p, state, _ = online_em_step(X[order[s:s + 256]], p, state, average_after=80)
    best = -em.log_likelihoods[-1]
    assert mogsgd.nll(X, state.average) < best + 0.01
    assert mogsgd.nll(X, p) < best + 0.02


def test_estimator_online_em_solver_matches_em(rng):
    true = random_params(rng, 3, 3)
    X, _ = sample_mixture(rng, true, 8000)
    oem = mogsgd.SGDGaussianMixture(3, solver="online_em", random_state=0).fit(X)
    em = mogsgd.SGDGaussianMixture(3, solver="em", random_state=0).fit(X)
    assert oem.score(X) > em.score(X) - 0.01
    assert oem.history_["lr"][-1] < oem.history_["lr"][0]


@pytest.mark.parametrize("kwargs, msg", [({"oem_alpha": 0.5}, "alpha"),
                                         ({"oem_alpha": 1.5}, "alpha"),
                                         ({"oem_t0": -1.0}, "t0")])
def test_bad_online_em_settings(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        TrainConfig(solver="online_em", **kwargs)
