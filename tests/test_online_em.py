"""Online EM (eq. 36-37): the recursion, its fixed point, and the estimator's solver."""

import numpy as np
import pytest
from conftest import random_params, sample_mixture

import mogsgd
from mogsgd.datasets import make_mixture
from mogsgd.em import em_stats, fit_em, m_step
from mogsgd.errors import ConvergenceWarning
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


def _oem_runs(X, p, cfg, epochs, w=None, seed=1, **kwargs):
    """(compiled epochs, NumPy Python loop) from the same seed."""
    from mogsgd.train import train

    return [train(X, p, config=cfg, rng=np.random.default_rng(seed), max_epochs=epochs,
                  sample_weight=w, backend=b, **kwargs) for b in ("numba", "numpy")]


def _assert_states_agree(a, b, tol=1e-10):
    for x, y in ((a.params, b.params), (a.last_params, b.last_params)):
        np.testing.assert_allclose(x.ravel(), y.ravel(), rtol=tol, atol=tol)
    sa, sb = a.opt_state, b.opt_state
    assert (sa.count, sa.n_averaged) == (sb.count, sb.n_averaged)
    assert (sa.average is None) == (sb.average is None)
    if sa.average is not None:
        np.testing.assert_allclose(sa.average.ravel(), sb.average.ravel(), rtol=tol, atol=tol)
    for f in sa.stats._fields:
        np.testing.assert_allclose(getattr(sa.stats, f), getattr(sb.stats, f), rtol=tol,
                                   atol=tol)
    np.testing.assert_allclose(a.history["train_nll"], b.history["train_nll"], rtol=tol)
    assert a.rng_state == b.rng_state


@pytest.mark.skipif(not mogsgd.fast.available(), reason="numba kernels unavailable")
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("average", [True, False])
@pytest.mark.parametrize("k, d, batch", [(3, 2, 64), (1, 5, 100), (9, 3, 5000)])
def test_compiled_online_em_equals_the_numpy_loop(rng, weighted, average, k, d, batch):
    """The compiled batch loop (fast.epoch.CompiledOnlineEM) gives the NumPy online EM's
    iterates, average, running statistics and history to 1e-10 (eqs. 36, 37)."""
    from mogsgd import fast

    true = random_params(rng, k, d)
    X, _ = sample_mixture(rng, true, 12_000)
    w = rng.uniform(0.2, 3, size=len(X)) if weighted else None
    cfg = TrainConfig(solver="online_em", batch_size=batch, early_stopping=False,
                      oem_average=average, min_variance=1e-3)
    assert fast.compiled_epoch(cfg, len(X), fast.nll_grad_sums, X, w,
                               random_params(rng, k, d)) is not None
    compiled, loop = _oem_runs(X, random_params(rng, k, d), cfg, epochs=3, w=w)
    _assert_states_agree(compiled, loop)


@pytest.mark.skipif(not mogsgd.fast.available(), reason="numba kernels unavailable")
def test_compiled_online_em_resumes_where_the_numpy_loop_left_off(rng):
    """A state from the NumPy loop continues in compiled epochs (and the other way round)
    as if one loop had run throughout."""
    from mogsgd.train import train

    true = random_params(rng, 3, 3)
    X, _ = sample_mixture(rng, true, 5000)
    start = random_params(rng, 3, 3)
    cfg = TrainConfig(solver="online_em", batch_size=128, early_stopping=False)
    straight = train(X, start, config=cfg, rng=np.random.default_rng(2), max_epochs=4,
                     backend="numpy")
    first = train(X, start, config=cfg, rng=np.random.default_rng(2), max_epochs=2,
                  backend="numpy")
    rest = train(X, config=cfg, rng=np.random.default_rng(0), state=first, max_epochs=2,
                 backend="numba")
    _assert_states_agree(rest, straight)


@pytest.mark.skipif(not mogsgd.fast.available(), reason="numba kernels unavailable")
def test_estimator_online_em_backends_agree(rng):
    true = random_params(rng, 3, 2)
    X, _ = sample_mixture(rng, true, 4000)
    fits = [mogsgd.SGDGaussianMixture(3, solver="online_em", backend=b, random_state=0,
                                      max_epochs=4, refine="none").fit(X)
            for b in ("numba", "numpy")]
    np.testing.assert_allclose(fits[0].means_, fits[1].means_, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(fits[0].covariances_, fits[1].covariances_, rtol=1e-9)
    assert fits[0].n_iter_ == fits[1].n_iter_


@pytest.mark.parametrize("solver, label", [("sgd", "SGD stopped"),
                                           ("online_em", "online EM stopped")])
def test_budget_warning_names_the_solver_that_ran(solver, label):
    """A stochastic run that uses up its epochs says which solver stopped (not "SGD" for
    online EM)."""
    X, _, _ = make_mixture(2000, 3, 2, random_state=0)
    est = mogsgd.SGDGaussianMixture(3, solver=solver, max_epochs=1, refine="none",
                                    random_state=0)
    with pytest.warns(ConvergenceWarning, match=label):
        est.fit(X)
