"""Numerical checks of equations 39-51 of ``docs/derivations.md`` (section 7).

One test (or more) per equation, named for it, in the manner of ``test_derivations.py``:
references are written here from the equations with NumPy and SciPy
(``scipy.stats.multivariate_normal``, explicit inverses, central differences) and
compared with ``mogsgd.covariance``.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from scipy import special, stats
from sklearn.mixture import GaussianMixture

import mogsgd.covariance
from mogsgd.covariance import DIAG, FULL, SPHERICAL, TIED, FullParams, TiedParams
from mogsgd.covariance import cholesky as chol

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "derivations.md"


# --------------------------------------------------------------------------- helpers
def rel_err(actual, expected) -> float:
    """max |actual - expected| over the larger array's scale (as in test_derivations.py,
    which imports the estimator layer; this file depends on the core only)."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    scale = max(float(np.max(np.abs(expected))), float(np.max(np.abs(actual))), 1e-300)
    return float(np.max(np.abs(actual - expected))) / scale


def assert_close(actual, expected, rtol: float, what: str) -> None:
    err = rel_err(actual, expected)
    assert err <= rtol, f"{what}: relative error {err:.3e} exceeds {rtol:.1e}"


def central_diff(f, x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """Central differences of the scalar ``f`` at every entry of the array ``x``."""
    x = np.asarray(x, dtype=np.float64)
    g = np.empty_like(x)
    for idx in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[idx] = h
        g[idx] = (f(x + e) - f(x - e)) / (2.0 * h)
    return g


def random_spd(rng, d: int, lo: float = 0.3, hi: float = 3.0) -> np.ndarray:
    Q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    return (Q * rng.uniform(lo, hi, size=d)) @ Q.T


def factor_of(A: np.ndarray) -> np.ndarray:
    """U from the stored A, written from eq. 39."""
    return np.triu(A, 1) + np.diag(np.exp(np.diag(A)))


def cov_of(A: np.ndarray) -> np.ndarray:
    U = factor_of(A)
    return np.linalg.inv(U @ U.T)


def setup_full(seed: int = 0, k: int = 3, d: int = 3, n: int = 40):
    rng = np.random.default_rng(seed)
    means = rng.normal(0.0, 2.0, size=(k, d))
    A = np.triu(rng.normal(0.0, 0.4, size=(k, d, d)))
    logits = rng.normal(size=k)
    X = rng.normal(0.0, 2.5, size=(n, d))
    return X, FullParams.create(means, A, logits)


def scipy_wlp(X, means, covs, logits) -> np.ndarray:
    """``log pi_k + log N(x_i | mu_k, Sigma_k)`` with scipy, (n, K)."""
    comp = np.stack([stats.multivariate_normal.logpdf(X, m, c) for m, c in
                     zip(means, covs, strict=True)], axis=1).reshape(len(X), len(means))
    return comp + special.log_softmax(logits)


def scipy_resp(X, means, covs, logits) -> np.ndarray:
    wlp = scipy_wlp(X, means, covs, logits)
    return np.exp(wlp - special.logsumexp(wlp, axis=1, keepdims=True))


def loglik_full(X, means, A_stack, logits) -> float:
    covs = [cov_of(A) for A in A_stack]
    return float(special.logsumexp(scipy_wlp(X, means, covs, logits), axis=1).sum())


# ---------------------------------------------------------------------------- eq. 39
def test_eq39_log_cholesky_factor_is_the_inverse_transpose_of_the_covariance_cholesky():
    rng = np.random.default_rng(1)
    covs = np.stack([random_spd(rng, 4) for _ in range(3)])
    params = FULL.init_from_moments([0.2, 0.3, 0.5], rng.normal(size=(3, 4)), covs, 1e-12)
    for k in range(3):
        U = factor_of(params.log_chol[k])
        assert np.all(np.tril(params.log_chol[k], -1) == 0)
        assert_close(U, np.linalg.inv(np.linalg.cholesky(covs[k])).T, 1e-12, "eq. 39 U = L^-T")
        assert_close(U @ U.T, np.linalg.inv(covs[k]), 1e-12, "eq. 39 U U^T = Sigma^-1")
        assert_close(np.exp(np.diag(params.log_chol[k])), np.diag(U), 1e-15,
                     "eq. 39 U_dd = exp(A_dd)")


def test_eq39_every_stored_array_gives_a_positive_definite_precision_and_back():
    rng = np.random.default_rng(2)
    for _ in range(50):
        A = np.triu(rng.normal(0.0, 2.0, size=(5, 5)))
        U = chol.factor(A)
        assert_close(U, factor_of(A), 1e-15, "eq. 39 factor")
        assert np.linalg.eigvalsh(U @ U.T).min() > 0
        assert_close(chol.log_factor(U), A, 1e-14, "eq. 39 the map is invertible")
        U = chol.factor(A / 4.0)  # a moderately conditioned one: Sigma -> U loses cond(U)^2 eps
        cov = chol.cov_from_factor(U)
        assert_close(cov, np.linalg.inv(U @ U.T), 1e-10, "eq. 39 Sigma = U^-T U^-1")
        assert_close(chol.factor_from_cov(cov), U, 1e-10, "eq. 39 Sigma -> U -> Sigma")


# ---------------------------------------------------------------------------- eq. 40
def test_eq40_log_density_matches_scipy_and_log_det_is_the_trace_of_A():
    X, params = setup_full(3)
    covs = [cov_of(A) for A in params.log_chol]
    assert_close(FULL.log_prob_components(X, params),
                 scipy_wlp(X, params.means, covs, params.logits), 1e-12, "eq. 40 vs scipy")
    for k, A in enumerate(params.log_chol):
        sign, logdet = np.linalg.slogdet(np.linalg.inv(covs[k]))
        assert sign > 0
        assert_close(np.trace(A), 0.5 * logdet, 1e-12, "eq. 40 log det Lambda^(1/2) = tr A")
        U = factor_of(A)
        z = (X - params.means[k]) @ U
        formula = -0.5 * X.shape[1] * np.log(2 * np.pi) + np.trace(A) - 0.5 * (z * z).sum(1)
        assert_close(FULL.log_prob_components(X, params)[:, k]
                     - special.log_softmax(params.logits)[k], formula, 1e-13, "eq. 40 as written")


def test_eq40_is_eq09_for_one_feature():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(20, 1))
    sigma = np.array([0.7, 1.9])
    params = FULL.init_from_moments([0.4, 0.6], [[0.0], [1.0]], (sigma**2)[:, None, None], 0.0)
    assert_close(params.log_chol[:, 0, 0], -np.log(sigma), 1e-14, "eq. 40: A = -log sigma")
    ref = stats.norm.logpdf(X, [0.0, 1.0], sigma) + np.log([0.4, 0.6])
    assert_close(FULL.log_prob_components(X, params), ref, 1e-13, "eq. 40 = eq. 9 at D = 1")


# ---------------------------------------------------------------------------- eq. 41
def test_eq41_mean_gradient_is_precision_times_residual():
    X, params = setup_full(5)
    covs = [cov_of(A) for A in params.log_chol]
    gamma = scipy_resp(X, params.means, covs, params.logits)
    expected = np.stack([np.linalg.inv(covs[k]) @ (gamma[:, k] @ (X - params.means[k]))
                         for k in range(3)])
    sums = FULL.nll_grad_sums(X, params)
    assert_close(-sums.means, expected, 1e-11, "eq. 41 sum gamma Lambda (x - mu)")
    numeric = central_diff(lambda m: loglik_full(X, m, params.log_chol, params.logits),
                           np.array(params.means))
    assert_close(-sums.means, numeric, 1e-7, "eq. 41 vs finite differences")


# ---------------------------------------------------------------------------- eq. 42
def test_eq42_derivative_with_respect_to_the_triangular_factor():
    rng = np.random.default_rng(6)
    d = 4
    x, mu = rng.normal(size=d), rng.normal(size=d)
    U = factor_of(np.triu(rng.normal(0.0, 0.4, size=(d, d))))

    def log_n(Uvar):  # eq. 40 written in U itself (log |det U| = sum log U_dd)
        z = Uvar.T @ (x - mu)
        return np.log(np.diag(Uvar)).sum() - 0.5 * z @ z - 0.5 * d * np.log(2 * np.pi)

    r = x - mu
    z = U.T @ r
    analytic = np.triu(np.diag(1.0 / np.diag(U)) - np.outer(r, z))
    numeric = np.triu(central_diff(log_n, U))
    assert_close(analytic, numeric, 1e-8, "eq. 42 d log N / dU")


# ---------------------------------------------------------------------------- eq. 43
def test_eq43_log_cholesky_gradient_matches_formula_and_finite_differences():
    X, params = setup_full(7)
    covs = [cov_of(A) for A in params.log_chol]
    gamma = scipy_resp(X, params.means, covs, params.logits)
    sums = FULL.nll_grad_sums(X, params)
    for k in range(3):
        U = factor_of(params.log_chol[k])
        R = X - params.means[k]
        M = (gamma[:, k, None] * R).T @ (R @ U)
        expected = np.triu(-M, 1) + np.diag(gamma[:, k].sum() - np.diag(M) * np.diag(U))
        assert_close(-sums.log_chol[k], expected, 1e-11, f"eq. 43 formula, component {k}")
    numeric = np.triu(central_diff(
        lambda A: loglik_full(X, params.means, np.triu(A), params.logits),
        np.array(params.log_chol)))
    assert_close(-sums.log_chol, numeric, 1e-7, "eq. 43 vs finite differences")


def test_eq43_is_eq15_for_one_feature_and_averages_to_zero_at_the_truth():
    rng = np.random.default_rng(8)
    X = rng.normal(size=(30, 1)) * 1.3
    params = FULL.init_from_moments([1.0], [[0.2]], [[[1.7]]], 0.0)
    sigma = np.sqrt(1.7)
    z = (X[:, 0] - 0.2) / sigma
    g = FULL.nll_grad_sums(X, params).log_chol[0, 0, 0]
    # A = -log sigma, so dL/dA = -dL/dlog sigma = -sum (z^2 - 1)
    assert_close(-g, -np.sum(z**2 - 1.0), 1e-12, "eq. 43 = -(eq. 15) at D = 1")
    # E[r z^T] = Sigma U = U^-T, whose diagonal times U_dd is 1: the expected gradient is 0
    cov = random_spd(rng, 4)
    U = np.linalg.inv(np.linalg.cholesky(cov)).T
    assert_close(np.diag(cov @ U) * np.diag(U), np.ones(4), 1e-12, "eq. 43 E[r_d z_d U_dd] = 1")


# ---------------------------------------------------------------------------- eq. 44
def test_eq44_tied_gradient_is_the_sum_over_components():
    rng = np.random.default_rng(9)
    X = rng.normal(0.0, 2.0, size=(30, 3))
    A = np.triu(rng.normal(0.0, 0.4, size=(3, 3)))
    tied = TiedParams.create(rng.normal(size=(3, 3)), A, rng.normal(size=3))
    as_full = FullParams.create(tied.means, np.stack([A] * 3), tied.logits)
    s_tied, s_full = TIED.nll_grad_sums(X, tied), FULL.nll_grad_sums(X, as_full)
    assert_close(s_tied.log_chol, s_full.log_chol.sum(axis=0), 1e-13, "eq. 44 sum over k")
    assert_close(s_tied.means, s_full.means, 1e-13, "eq. 44 means as eq. 41")
    numeric = np.triu(central_diff(
        lambda B: loglik_full(X, tied.means, [np.triu(B)] * 3, tied.logits), A))
    assert_close(-s_tied.log_chol, numeric, 1e-7, "eq. 44 vs finite differences")
    # the diagonal has |B| - (sum_k M_k)_dd U_dd
    covs = [cov_of(A)] * 3
    gamma = scipy_resp(X, tied.means, covs, tied.logits)
    U = factor_of(A)
    M = sum((gamma[:, k, None] * (X - tied.means[k])).T @ ((X - tied.means[k]) @ U)
            for k in range(3))
    assert_close(-np.diag(s_tied.log_chol), len(X) - np.diag(M) * np.diag(U), 1e-11,
                 "eq. 44 diagonal")


# ---------------------------------------------------------------------------- eq. 45
def test_eq45_spherical_density_and_gradients():
    rng = np.random.default_rng(10)
    X = rng.normal(0.0, 2.0, size=(30, 3))
    params = SPHERICAL.params_type.create(rng.normal(size=(2, 3)), rng.normal(0, 0.3, 2),
                                          rng.normal(size=2))
    var = np.exp(2 * params.log_sigma)
    covs = [v * np.eye(3) for v in var]
    assert_close(SPHERICAL.log_prob_components(X, params),
                 scipy_wlp(X, params.means, covs, params.logits), 1e-12, "eq. 45 vs scipy")
    gamma = scipy_resp(X, params.means, covs, params.logits)
    sums = SPHERICAL.nll_grad_sums(X, params)
    for k in range(2):
        R = X - params.means[k]
        assert_close(-sums.means[k], gamma[:, k] @ R / var[k], 1e-12, "eq. 45 means")
        assert_close(-sums.log_sigma[k], gamma[:, k] @ ((R * R).sum(1) / var[k] - 3), 1e-12,
                     "eq. 45 log sigma")

    def loglik(ls):
        return special.logsumexp(scipy_wlp(X, params.means, [np.exp(2 * s) * np.eye(3)
                                                             for s in ls], params.logits),
                                 axis=1).sum()

    numeric = central_diff(loglik, np.array(params.log_sigma))
    assert_close(-sums.log_sigma, numeric, 1e-7, "eq. 45 vs finite differences")


# ---------------------------------------------------------------------------- eq. 46
def test_eq46_floor_clips_eigenvalues_and_is_the_frobenius_projection():
    rng = np.random.default_rng(11)
    v_min = 0.4
    Q, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    cov = (Q * [0.01, 0.2, 1.0, 2.0]) @ Q.T
    lam, Q = np.linalg.eigh(cov)
    expected = Q @ np.diag(np.maximum(lam, v_min)) @ Q.T
    projected = chol.floor_eigenvalues(cov, v_min)
    assert_close(projected, expected, 1e-12, "eq. 46 clipped eigenvalues")
    best = np.linalg.norm(cov - projected)
    for _ in range(300):  # no feasible matrix is closer
        T = random_spd(rng, 4, lo=v_min, hi=3.0)
        assert np.linalg.norm(cov - T) >= best - 1e-12
    # Hoffman-Wielandt bound attained
    assert_close(best, np.linalg.norm(lam - np.maximum(lam, v_min)), 1e-12, "eq. 46 distance")


def test_eq46_floor_on_a_diagonal_covariance_is_eq26():
    rng = np.random.default_rng(12)
    variances = rng.uniform(0.01, 2.0, size=(3, 4))
    v_min = 0.3
    params = FULL.init_from_moments([0.3, 0.3, 0.4], rng.normal(size=(3, 4)),
                                    np.stack([np.diag(v) for v in variances]), 1e-12)
    projected = FULL.project_floor(params, v_min)
    assert_close(FULL.covariances(projected),
                 np.stack([np.diag(np.maximum(v, v_min)) for v in variances]), 1e-12,
                 "eq. 46 = eq. 26 for diagonal Sigma")
    diag = DIAG.project_floor(DIAG.init_from_moments([0.3, 0.3, 0.4], params.means, variances,
                                                     1e-12), v_min)
    assert_close(diag.variances, np.maximum(variances, v_min), 1e-12, "eq. 26")


def test_eq46_floor_bounds_the_density_and_the_box_alternative_does_not_bound_lambda_min():
    rng = np.random.default_rng(13)
    v_min = 0.1
    X, params = setup_full(14, k=2, d=3)
    squeezed = np.array(params.log_chol)
    squeezed[:, 0, 0] += 5.0
    projected = FULL.project_floor(params._replace(log_chol=squeezed), v_min)
    bound = -1.5 * np.log(2 * np.pi * v_min)
    at_means = FULL.log_prob_components(projected.means, projected) \
        - special.log_softmax(projected.logits)
    assert np.all(at_means <= bound + 1e-9)
    # the counterexample of section 7: both conditional variances are v, lambda_min << v
    v, b = 0.1, 30.0
    cov = np.array([[v, b], [b, b**2 / v + v]])
    L = np.linalg.cholesky(cov)
    assert_close(np.diag(L) ** 2, [v, v], 1e-9, "conditional variances")
    assert np.linalg.eigvalsh(cov)[0] < 1e-3 * v
    del rng


# -------------------------------------------------------------------------- eqs. 47-49
def one_component(family, params, k: int):
    """Component ``k`` alone (weight 1), as a full or spherical one-component model."""
    if family is SPHERICAL:
        return SPHERICAL, SPHERICAL.params_type(params.means[k:k + 1],
                                                params.log_sigma[k:k + 1], np.zeros(1))
    A = params.log_chol[k] if family is FULL else params.log_chol
    return FULL, FullParams(params.means[k:k + 1], A[None], np.zeros(1))


def complete_loglik_grads(family, X, params, new):
    """Gradients of ``sum_i gamma_ik log N_ik`` at ``new`` with ``gamma`` from ``params``.

    With one component and sample weights ``gamma_ik`` the weighted NLL gradient is
    exactly ``-sum_i gamma_ik d log N_ik``, so the library's own gradient (checked
    against finite differences above) evaluates it.  Returns [(means, cov) per k].
    """
    gamma = np.exp(mogsgd.covariance.log_prob_and_log_resp(family, X, params)[1])
    out = []
    for k in range(gamma.shape[1]):
        fam, one = one_component(family, new, k)
        g = fam.nll_grad_sums(X, one, gamma[:, k])
        out.append((g.means, g[3]))
    return out


def test_eq47_full_m_step_zeroes_the_gradient_and_equals_the_weighted_covariance():
    X, params = setup_full(15, n=60)
    X = X + 50.0
    params = params._replace(means=params.means + 50.0)
    new = FULL.m_step(FULL.em_stats(X, params), params, 0.0)
    gamma = np.exp(mogsgd.covariance.log_prob_and_log_resp(FULL, X, params)[1])
    nk = gamma.sum(0)
    for k in range(3):
        mu = gamma[:, k] @ X / nk[k]
        R = X - mu
        assert_close(new.means[k], mu, 1e-12, "eq. 29")
        assert_close(FULL.covariances(new)[k], (gamma[:, k, None] * R).T @ R / nk[k], 1e-10,
                     "eq. 47")
    for g_means, g_chol in complete_loglik_grads(FULL, X, params, new):
        assert np.max(np.abs(g_means)) < 1e-9 * len(X), "eq. 47 zero of eq. 41"
        assert np.max(np.abs(g_chol)) < 1e-9 * len(X), "eq. 47 zero of eq. 43"
    reg = FULL.m_step(FULL.em_stats(X, params), params, 0.25)
    assert_close(FULL.covariances(reg), FULL.covariances(new) + 0.25 * np.eye(3), 1e-10,
                 "eq. 47 reg_covar on the diagonal")


def test_eq48_tied_m_step_is_the_pooled_scatter_and_zeroes_eq44():
    X, full = setup_full(16, n=60)
    params = TiedParams.create(full.means, full.log_chol[0], full.logits)
    new = TIED.m_step(TIED.em_stats(X, params), params, 0.0)
    gamma = np.exp(mogsgd.covariance.log_prob_and_log_resp(TIED, X, params)[1])
    nk = gamma.sum(0)
    pooled = sum((gamma[:, k, None] * (X - gamma[:, k] @ X / nk[k])).T
                 @ (X - gamma[:, k] @ X / nk[k]) for k in range(3)) / len(X)
    assert_close(TIED.covariances(new), pooled, 1e-10, "eq. 48")
    grads = complete_loglik_grads(TIED, X, params, new)
    assert max(np.max(np.abs(g)) for g, _ in grads) < 1e-9 * len(X), "eq. 48 zero of eq. 41"
    total = sum(g for _, g in grads)  # eq. 44: the shared factor's gradient sums over k
    assert np.max(np.abs(total)) < 1e-9 * len(X), "eq. 48 zero of eq. 44"


def test_eq49_spherical_m_step_is_the_feature_average_of_eq30():
    rng = np.random.default_rng(17)
    X = rng.normal(0.0, 2.0, size=(50, 3))
    params = SPHERICAL.params_type.create(rng.normal(size=(2, 3)), np.zeros(2), np.zeros(2))
    new = SPHERICAL.m_step(SPHERICAL.em_stats(X, params), params, 0.0)
    gamma = np.exp(mogsgd.covariance.log_prob_and_log_resp(SPHERICAL, X, params)[1])
    for k in range(2):
        mu = gamma[:, k] @ X / gamma[:, k].sum()
        var_d = gamma[:, k] @ (X - mu) ** 2 / gamma[:, k].sum()          # eq. 30 per feature
        assert_close(SPHERICAL.covariances(new)[k], var_d.mean(), 1e-12, "eq. 49")
    for g_means, g_log_sigma in complete_loglik_grads(SPHERICAL, X, params, new):
        assert np.max(np.abs(g_means)) < 1e-9 * len(X), "eq. 49 zero of eq. 45 (means)"
        assert np.max(np.abs(g_log_sigma)) < 1e-9 * len(X), "eq. 49 zero of eq. 45"


# ---------------------------------------------------------------------------- eq. 50
@pytest.mark.parametrize("family", [FULL, TIED], ids=["full", "tied"])
def test_eq50_affine_map_of_the_factor_and_the_log_likelihood(family):
    rng = np.random.default_rng(18)
    X_std, full = setup_full(19)
    params = full if family is FULL else TiedParams.create(full.means, full.log_chol[1],
                                                           full.logits)
    c, s = rng.normal(0, 5, 3), rng.uniform(0.1, 20.0, 3)
    data = family.to_data(params, c, s)
    A_std, A_dat = np.asarray(params.log_chol), np.asarray(data.log_chol)
    idx = np.arange(3)
    assert_close(A_dat[..., idx, idx], A_std[..., idx, idx] - np.log(s), 1e-13, "eq. 50 diag")
    assert_close(np.triu(A_dat, 1), np.triu(A_std, 1) / s[:, None], 1e-13, "eq. 50 off-diagonal")
    S = np.diag(s)
    cov_std = family.covariances(params)
    assert_close(family.covariances(data), S @ cov_std @ S, 1e-11, "eq. 50 Sigma = S Sigma' S")
    X = c + X_std * s
    lp_data = special.logsumexp(family.log_prob_components(X, data), axis=1)
    lp_std = special.logsumexp(family.log_prob_components(X_std, params), axis=1)
    assert_close(lp_data, lp_std - np.log(s).sum(), 1e-12, "eq. 50 = eq. 33")


def test_eq50_spherical_needs_one_common_scale():
    s = SPHERICAL.admissible_scale(np.array([0.5, 2.0, 8.0]))
    assert_close(s, np.full(3, 2.0), 1e-15, "eq. 50 geometric mean")


# ---------------------------------------------------------------------------- eq. 51
@pytest.mark.parametrize("k, d", [(3, 2), (1, 1), (5, 7)])
def test_eq51_parameter_counts(k, d):
    formulas = {"full": k * d * (d + 1) // 2 + k * d + k - 1,
                "tied": d * (d + 1) // 2 + k * d + k - 1,
                "diag": 2 * k * d + k - 1, "spherical": 2 * k + k * d - 1}
    for name, family in mogsgd.covariance.FAMILIES.items():
        assert family.n_parameters(k, d) == formulas[name]
        gm = GaussianMixture(k, covariance_type=name)
        gm.means_ = np.zeros((k, d))
        assert family.n_parameters(k, d) == gm._n_parameters()
    if (k, d) == (3, 2):
        assert [formulas[t] for t in ("full", "tied", "diag", "spherical")] == [17, 11, 14, 11]
    # the stored full factor has exactly D(D+1)/2 parameters per component
    assert np.count_nonzero(np.triu(np.ones((d, d)))) == d * (d + 1) // 2


# ------------------------------------------------------- the document and the code
def _tags(text: str) -> list[int]:
    return [int(t) for t in re.findall(r"\\tag\{(\d+)\}", text)]


def test_doc_section_7_numbers_equations_39_to_51():
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("## 7. Full, tied and spherical covariances"):
                   text.index("## 8. Points beyond the float range")]
    assert _tags(section) == list(range(39, 52))


def test_every_equation_39_to_51_has_a_test_here():
    names = [n for n in globals() if n.startswith("test_eq")]
    covered = {int(m) for n in names for m in re.findall(r"eq(\d+)", n)}
    assert set(range(39, 52)) <= covered


def test_equation_numbers_cited_in_the_covariance_package_exist_in_the_doc():
    numbered = set(_tags(DOC.read_text(encoding="utf-8")))
    src = Path(mogsgd.covariance.__file__).resolve().parent
    for path in sorted(src.glob("*.py")):
        text = path.read_text(encoding="utf-8")
        cited: set[int] = set()
        for match in re.finditer(r"\beqs?\.\s*([0-9][0-9,\s\-–]*)", text):
            for part in re.split(r",\s*", match.group(1).strip(" ,")):
                bounds = [int(b) for b in re.split(r"\s*[-–]\s*", part) if b.strip().isdigit()]
                cited.update(range(bounds[0], bounds[1] + 1) if len(bounds) == 2 else bounds)
        assert cited, f"{path.name} cites no equation"
        assert not sorted(cited - numbered), f"{path.name} cites {sorted(cited - numbered)}"
