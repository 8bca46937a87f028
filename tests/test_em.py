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


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("extrapolate", [False, True])
@pytest.mark.parametrize("k, d", [(1, 1), (3, 2), (4, 7)])
def test_compiled_em_loop_follows_the_python_loop(k, d, extrapolate, weighted):
    """mogsgd.fast.batch_em.em_loop is em_loop over an array, compiled: the same number of
    iterations, log-likelihoods and parameters (to rounding), with and without weights,
    floor, regularisation, extrapolated stopping and a warm start's prior log-likelihood."""
    from mogsgd.em import em_loop
    from mogsgd.fast import batch_em

    rng = np.random.default_rng(10 * k + d)
    truth = random_params(rng, k, d)
    X, _ = sample_mixture(rng, truth, 700)
    w = rng.uniform(0, 3, len(X)) if weighted else None
    start = random_params(rng, k, d)
    for options in ({"reg_covar": 0.0, "floor": 1e-6}, {"reg_covar": 1e-3},
                    {"reg_covar": 0.0, "prior_loglik": -50.0}):
        kw = {"max_iter": 60, "tol": 1e-9, "extrapolate": extrapolate, **options}
        ref = em_loop(lambda p: em_stats(X, p, w),
                      lambda p: float(np.average(mogsgd.density.log_prob(X, p), weights=w)),
                      start, **kw)
        got = batch_em.em_loop(X, w, start, **kw)
        assert (got.n_iter, got.converged) == (ref.n_iter, ref.converged)
        np.testing.assert_allclose(got.log_likelihoods, ref.log_likelihoods, rtol=1e-11)
        for a, b in zip(got.params, ref.params, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-10)


def test_remaining_gain_is_exact_on_a_geometric_approach():
    """Aitken's extrapolation: for ``ll_t = L - c r^t`` the remaining gain after three
    iterates is exactly ``L - ll_2``; 0 when the last step gained nothing, inf while the
    gains grow."""
    from mogsgd.em import remaining_gain

    for r in (0.1, 0.5, 0.99):
        ll = [3.0 - 2.0 * r ** t for t in range(3)]
        assert remaining_gain(*ll) == pytest.approx(3.0 - ll[2], rel=1e-9)
    assert remaining_gain(1.0, 2.0, 2.0) == 0.0
    assert remaining_gain(1.0, 1.5, 2.5) == np.inf


def test_extrapolated_stop_lands_within_its_tolerance_of_the_fixed_point(rng):
    """With ``extrapolate=True`` EM stops when the estimated remaining gain is below tol;
    on an overlapping mixture (slow, linear convergence) the true remaining gain to the
    fixed point is then within a few times tol."""
    from mogsgd.em import em_loop

    truth = mogsgd.MixtureParams.from_moments([0.5, 0.5], [[0.0, 0.0], [1.0, 0.5]],
                                              [[1.0, 1.0], [1.0, 1.0]])
    X, _ = sample_mixture(rng, truth, 3000)
    start = mogsgd.MixtureParams.from_moments([0.5, 0.5], [[-1.0, 0.0], [2.0, 0.0]],
                                              [[1.0, 1.0], [1.0, 1.0]])

    def run(**kw):
        return em_loop(lambda p: em_stats(X, p),
                       lambda p: float(mogsgd.density.log_prob(X, p).mean()), start,
                       reg_covar=0.0, max_iter=100_000, **kw)

    fixed = run(tol=1e-14).log_likelihoods[-1]
    stopped = run(tol=1e-7, extrapolate=True)
    plain = run(tol=1e-7)
    assert stopped.converged and fixed - stopped.log_likelihoods[-1] < 5e-7
    assert fixed - plain.log_likelihoods[-1] > fixed - stopped.log_likelihoods[-1]


def test_compiled_em_from_several_starts_equals_one_call_each():
    """fast.batch_em.em_loops (every start in one compiled call, the initial candidates'
    polish) gives each start exactly what em_loop gives it alone."""
    from mogsgd.fast import batch_em
    from mogsgd.init import params_from_centre_sets

    rng = np.random.default_rng(3)
    X = np.concatenate([rng.normal(c, 1.0, size=(70, 3)) for c in (0.0, 4.0, 9.0)])
    w = rng.choice([1.0, 2.0, 0.5], size=len(X))
    starts = params_from_centre_sets(X, X[rng.choice(len(X), size=(6, 3))], 1e-6, w)
    options = {"max_iter": 50, "tol": 1e-3, "reg_covar": 0.0, "floor": 1e-6}
    together = batch_em.em_loops(X, w, starts, **options)
    for start, result in zip(starts, together, strict=True):
        alone = batch_em.em_loop(X, w, start, **options)
        assert result.n_iter == alone.n_iter and result.converged == alone.converged
        assert result.log_likelihoods == alone.log_likelihoods
        for a, b in zip(result.params, alone.params, strict=True):
            np.testing.assert_array_equal(a, b)
def test_compiled_em_on_many_rows_sums_parts_as_the_e_step_statistics_do():
    """Above one part of rows the compiled EM sums parts of rows and adds them in order, as
    the compiled E-step statistics do: the Python loop over :func:`mogsgd.fast.em_stats`
    gives the same iterates to rounding."""
    import mogsgd.fast
    from mogsgd.covariance.ops import m_step as family_m_step
    from mogsgd.em import em_loop
    from mogsgd.fast import batch_em
    from mogsgd.fast.kernels import CHUNK_ROWS

    rng = np.random.default_rng(3)
    truth = random_params(rng, 3, 2)
    X, _ = sample_mixture(rng, truth, 2 * CHUNK_ROWS + 123)
    start = random_params(rng, 3, 2)
    kw = {"max_iter": 5, "tol": 0.0, "reg_covar": 0.0, "floor": 1e-6}
    got = batch_em.em_loop(X, None, start, **kw)
    ref = em_loop(lambda p: mogsgd.fast.em_stats(X, p), lambda p: -mogsgd.fast.nll(X, p), start,
                  update=family_m_step, **kw)
    np.testing.assert_allclose(got.log_likelihoods, ref.log_likelihoods, rtol=1e-12)
    for a, b in zip(got.params, ref.params, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
