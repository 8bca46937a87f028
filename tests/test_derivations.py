"""Numerical checks of the numbered equations in ``docs/derivations.md``.

Each test is named for the equation(s) it checks.  The references are written here
independently of the library, with NumPy and SciPy only (``scipy.stats`` densities,
``scipy.special.logsumexp``, central finite differences), and compared with mogsgd's
functions.  Every failure message prints the relative error.
"""

from __future__ import annotations

import copy
import decimal
import itertools
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy import integrate, optimize, special, stats

import mogsgd
import mogsgd.errors
from mogsgd import MixtureParams
from mogsgd.density import log_gaussian, log_prob, log_resp, logsumexp, nll, responsibilities
from mogsgd.em import em_step as mogsgd_em_step
from mogsgd.em import fit_em
from mogsgd.estimator import SGDGaussianMixture, Standardizer
from mogsgd.gradients import nll_grad, nll_grad_sums
from mogsgd.online_em import online_em_init, online_em_step, step_size
from mogsgd.optim import adam, apply_updates, cosine, inverse_time, momentum, sgd
from mogsgd.params import log_softmax, softmax
from mogsgd.train import project_variance_floor

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "derivations.md"
N_EQUATIONS = 53


# --------------------------------------------------------------------------- helpers
def rel_err(actual, expected) -> float:
    """max |actual - expected| / max(|expected|, |actual|), the scale of the larger array."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    scale = max(float(np.max(np.abs(expected))), float(np.max(np.abs(actual))), 1e-300)
    return float(np.max(np.abs(actual - expected))) / scale


def assert_close(actual, expected, rtol: float, what: str) -> None:
    err = rel_err(actual, expected)
    assert err <= rtol, f"{what}: relative error {err:.3e} exceeds {rtol:.1e}"


def central_diff(f, x: np.ndarray, h: float = 1e-5) -> np.ndarray:
    """Central finite differences of the scalar function ``f`` at the flat vector ``x``."""
    x = np.asarray(x, dtype=np.float64)
    grad = np.empty_like(x)
    for j in range(x.size):
        e = np.zeros_like(x)
        e[j] = h
        grad[j] = (f(x + e) - f(x - e)) / (2.0 * h)
    return grad


def random_params(rng, k: int = 3, d: int = 2) -> MixtureParams:
    return MixtureParams(
        means=rng.normal(0.0, 2.0, size=(k, d)),
        log_sigma=rng.normal(0.0, 0.3, size=(k, d)),
        logits=rng.normal(0.0, 0.5, size=k),
    )


def random_data(rng, n: int = 40, d: int = 2) -> np.ndarray:
    return rng.normal(0.0, 2.5, size=(n, d))


# An independent 1-D, two-component log-likelihood (section 1), written from eqs. 1-3.
def normal_pdf(x, mu, var):
    return np.exp(-((x - mu) ** 2) / (2.0 * var)) / np.sqrt(2.0 * np.pi * var)


def loglik_1d(x, pi, mu, var) -> float:
    dens = pi[None, :] * normal_pdf(x[:, None], mu[None, :], var[None, :])
    return float(np.sum(np.log(dens.sum(axis=1))))


def resp_1d(x, pi, mu, var) -> np.ndarray:
    dens = pi[None, :] * normal_pdf(x[:, None], mu[None, :], var[None, :])
    return dens / dens.sum(axis=1, keepdims=True)


def setup_1d(seed: int = 0):
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.normal(-1.0, 0.8, 12), rng.normal(2.0, 1.3, 18)])
    return x, np.array([0.35, 0.65]), np.array([-0.7, 1.6]), np.array([0.9, 1.7])


# An independent D-feature reference: scipy.stats.norm per coordinate, NaN = missing.
def ref_weighted_log_prob(X, means, log_sigma, logits) -> np.ndarray:
    comp = stats.norm.logpdf(X[:, None, :], loc=means[None], scale=np.exp(log_sigma)[None])
    comp = np.where(np.isnan(X)[:, None, :], 0.0, comp)
    return comp.sum(axis=2) + special.log_softmax(logits)


def ref_log_prob(X, means, log_sigma, logits) -> np.ndarray:
    return special.logsumexp(ref_weighted_log_prob(X, means, log_sigma, logits), axis=1)


def ref_nll_from_vector(X, k: int, d: int, sample_weight=None):
    """``theta -> mean NLL`` on the flat vector ``MixtureParams.ravel()``."""

    def f(theta):
        means = theta[: k * d].reshape(k, d)
        log_sigma = theta[k * d : 2 * k * d].reshape(k, d)
        logits = theta[2 * k * d :]
        lp = ref_log_prob(X, means, log_sigma, logits)
        if sample_weight is None:
            return -lp.mean()
        return -(sample_weight @ lp) / sample_weight.sum()

    return f


def ref_resp(X, params: MixtureParams) -> np.ndarray:
    wlp = ref_weighted_log_prob(X, params.means, params.log_sigma, params.logits)
    return np.exp(wlp - special.logsumexp(wlp, axis=1, keepdims=True))


def ref_grad_eq19(X, params: MixtureParams, sample_weight=None):
    """The three formulas of eq. 19 (eq. 32 with weights, eq. 35 with NaN)."""
    n = X.shape[0]
    w = np.ones(n) if sample_weight is None else sample_weight
    resp = ref_resp(X, params) * w[:, None]
    observed = ~np.isnan(X)
    sigma = params.sigma
    g_means = np.zeros(params.means.shape)
    g_log_sigma = np.zeros(params.means.shape)
    for k in range(params.n_components):
        z = np.where(observed, (X - params.means[k]) / sigma[k], 0.0)
        g_means[k] = -(resp[:, k] @ z) / sigma[k]
        g_log_sigma[k] = -(resp[:, k] @ np.where(observed, z**2 - 1.0, 0.0))
    g_logits = (w.sum() * params.weights - resp.sum(axis=0))
    scale = 1.0 / w.sum()
    return g_means * scale, g_log_sigma * scale, g_logits * scale


def em_step(X, params: MixtureParams, reg_covar: float = 0.0) -> MixtureParams:
    """One EM iteration written from eqs. 11 and 27-30 (independent of mogsgd.em)."""
    gamma = ref_resp(X, params)
    nk = gamma.sum(axis=0)                                             # eq. 27
    weights = nk / X.shape[0]                                          # eq. 28
    means = (gamma.T @ X) / nk[:, None]                                # eq. 29
    variances = np.stack(
        [gamma[:, k] @ (X - means[k]) ** 2 for k in range(len(nk))]
    ) / nk[:, None] + reg_covar                                        # eq. 30
    return MixtureParams.from_moments(weights, means, variances)


# ------------------------------------------------------------- section 1: eqs. 1-8
def test_eq01_eq02_mixture_density_1d_matches_scipy():
    x, pi, mu, var = setup_1d()
    sd = np.sqrt(var)
    for k in range(2):
        assert_close(normal_pdf(x, mu[k], var[k]), stats.norm.pdf(x, mu[k], sd[k]), 1e-13,
                     f"eq. 2, component {k}")
    p = pi[0] * stats.norm.pdf(x, mu[0], sd[0]) + pi[1] * stats.norm.pdf(x, mu[1], sd[1])
    params = MixtureParams.from_moments(pi, mu[:, None], var[:, None])
    assert_close(np.exp(log_prob(x[:, None], params)), p, 1e-12, "eq. 1 vs mogsgd.log_prob")
    # eq. 1 is a density: it integrates to one
    total, _ = integrate.quad(
        lambda t: pi @ stats.norm.pdf(t, mu, sd), -np.inf, np.inf, epsabs=1e-12
    )
    assert_close(total, 1.0, 1e-9, "eq. 1 integrates to 1")


def test_eq03_loglik_is_sum_of_log_densities():
    x, pi, mu, var = setup_1d()
    sd = np.sqrt(var)
    L = np.sum(np.log(pi[0] * stats.norm.pdf(x, mu[0], sd[0])
                      + pi[1] * stats.norm.pdf(x, mu[1], sd[1])))
    assert_close(loglik_1d(x, pi, mu, var), L, 1e-13, "eq. 3, test reference vs scipy")
    params = MixtureParams.from_moments(pi, mu[:, None], var[:, None])
    assert_close(-len(x) * nll(x[:, None], params), L, 1e-12, "eq. 3, -m * mogsgd.nll")


def test_eq04_responsibility_1d_is_bayes_rule():
    x, pi, mu, var = setup_1d()
    sd = np.sqrt(var)
    joint = pi[None, :] * stats.norm.pdf(x[:, None], mu[None, :], sd[None, :])
    gamma = joint / joint.sum(axis=1, keepdims=True)
    params = MixtureParams.from_moments(pi, mu[:, None], var[:, None])
    assert_close(responsibilities(x[:, None], params), gamma, 1e-12, "eq. 4 vs mogsgd")
    assert_close(gamma.sum(axis=1), np.ones(len(x)), 1e-14, "eq. 4 rows sum to one")


def test_eq05_dmu_1d_matches_finite_differences():
    x, pi, mu, var = setup_1d()
    gamma = resp_1d(x, pi, mu, var)
    analytic = (gamma * (x[:, None] - mu) / var).sum(axis=0)
    numeric = central_diff(lambda m_: loglik_1d(x, pi, m_, var), mu)
    assert_close(analytic, numeric, 1e-7, "eq. 5 dL/dmu_k")


def test_eq06_dsigma2_1d_matches_finite_differences():
    x, pi, mu, var = setup_1d()
    gamma = resp_1d(x, pi, mu, var)
    analytic = 0.5 * (gamma * ((x[:, None] - mu) ** 2 / var**2 - 1.0 / var)).sum(axis=0)
    numeric = central_diff(lambda v: loglik_1d(x, pi, mu, v), var)
    assert_close(analytic, numeric, 1e-7, "eq. 6 dL/dsigma_k^2")


def test_eq07_dpi_unconstrained_1d_matches_finite_differences():
    x, pi, mu, var = setup_1d()
    gamma = resp_1d(x, pi, mu, var)
    analytic = gamma.sum(axis=0) / pi
    # pi perturbed freely, off the simplex: the unconstrained gradient
    numeric = central_diff(lambda p: loglik_1d(x, p, mu, var), pi)
    assert_close(analytic, numeric, 1e-7, "eq. 7 dL/dpi_k (unconstrained)")
    assert_close(pi @ analytic, len(x), 1e-12, "sum_k pi_k dL/dpi_k = m")


def test_eq08_weight_update_is_the_simplex_maximiser():
    x, _, mu, var = setup_1d()
    res = optimize.minimize_scalar(
        lambda p1: -loglik_1d(x, np.array([p1, 1.0 - p1]), mu, var),
        bounds=(1e-9, 1.0 - 1e-9), method="bounded", options={"xatol": 1e-12},
    )
    pi_star = np.array([res.x, 1.0 - res.x])
    gamma = resp_1d(x, pi_star, mu, var)
    assert_close(gamma.mean(axis=0), pi_star, 1e-7, "eq. 8 pi_k = mean_i gamma_ik at the max")
    # the Lagrange multiplier: both unconstrained partial derivatives (eq. 7) equal m
    grad = gamma.sum(axis=0) / pi_star
    assert_close(grad, np.full(2, len(x)), 1e-6, "eq. 8 lambda = m")


# ------------------------------------------------------------ section 2: eqs. 9-17
def test_eq09_log_gaussian_matches_scipy():
    rng = np.random.default_rng(1)
    params = random_params(rng, k=3, d=4)
    X = random_data(rng, n=25, d=4)
    ours = log_gaussian(X, params)
    for k in range(3):
        ref = stats.multivariate_normal.logpdf(X, params.means[k], np.diag(params.variances[k]))
        assert_close(ours[:, k], ref, 1e-12, f"eq. 9 component {k} vs scipy")
    z = (X[:, None, :] - params.means[None]) / params.sigma[None]
    formula = -0.5 * np.sum(z**2 + 2.0 * params.log_sigma[None] + np.log(2 * np.pi), axis=2)
    assert_close(ours, formula, 1e-13, "eq. 9 as written")


def test_eq10_log_prob_matches_scipy():
    rng = np.random.default_rng(2)
    params = random_params(rng)
    X = random_data(rng)
    dens = sum(
        params.weights[k]
        * stats.multivariate_normal.pdf(X, params.means[k], np.diag(params.variances[k]))
        for k in range(3)
    )
    assert_close(log_prob(X, params), np.log(dens), 1e-12, "eq. 10 vs log sum_k pi_k N_k")
    ref = ref_log_prob(X, params.means, params.log_sigma, params.logits)
    assert_close(log_prob(X, params), ref, 1e-12, "eq. 10 vs scipy.special.logsumexp")


def test_eq11_log_resp_matches_definition():
    rng = np.random.default_rng(3)
    params = random_params(rng)
    X = random_data(rng)
    joint = np.stack(
        [params.weights[k]
         * stats.multivariate_normal.pdf(X, params.means[k], np.diag(params.variances[k]))
         for k in range(3)], axis=1)
    expected = np.log(joint) - np.log(joint.sum(axis=1, keepdims=True))
    assert_close(log_resp(X, params), expected, 1e-11, "eq. 11 log gamma")
    assert_close(np.exp(log_resp(X, params)).sum(axis=1), np.ones(len(X)), 1e-14,
                 "eq. 11 responsibilities sum to one")


def test_eq12_softmax_and_its_log_form():
    rng = np.random.default_rng(4)
    alpha = rng.normal(0.0, 3.0, size=5)
    assert_close(softmax(alpha), special.softmax(alpha), 1e-14, "eq. 12 softmax")
    assert_close(log_softmax(alpha), alpha - special.logsumexp(alpha), 1e-14,
                 "eq. 12 log pi = alpha - logsumexp(alpha)")
    assert_close(softmax(alpha + 123.4), softmax(alpha), 1e-14, "eq. 12 shift invariance")
    params = MixtureParams(np.zeros((5, 1)), np.zeros((5, 1)), alpha)
    assert_close(params.log_weights, alpha - special.logsumexp(alpha), 1e-14,
                 "eq. 12 MixtureParams.log_weights")


def test_eq16_softmax_jacobian_matches_finite_differences():
    rng = np.random.default_rng(5)
    alpha = rng.normal(size=4)
    pi = softmax(alpha)
    analytic = pi[:, None] * (np.eye(4) - pi[None, :])          # [j, k] = d pi_j / d alpha_k
    numeric = np.stack(
        [central_diff(lambda a, j=j: softmax(a)[j], alpha) for j in range(4)]
    )
    assert_close(analytic, numeric, 1e-9, "eq. 16 softmax Jacobian")


def test_eq17_logit_gradient_is_jacobian_times_unconstrained_pi_gradient():
    rng = np.random.default_rng(6)
    params = random_params(rng)
    X = random_data(rng, n=30)
    n = X.shape[0]
    pi = params.weights
    gamma = ref_resp(X, params)
    g_pi = gamma.sum(axis=0) / pi                                # eq. 7, unconstrained pi
    jac = pi[:, None] * (np.eye(3) - pi[None, :])                # eq. 16
    dL_dalpha = jac.T @ g_pi                                     # chain rule
    assert_close(dL_dalpha, (gamma - pi).sum(axis=0), 1e-12, "eq. 17 = J^T (eq. 7)")
    _, grad = nll_grad(X, params)
    assert_close(grad.logits, -dL_dalpha / n, 1e-12,
                 "mogsgd logits gradient = -(1/|B|) J^T dL/dpi")
    rel = abs(grad.logits.sum()) / np.max(np.abs(grad.logits))
    assert rel <= 1e-14, f"eq. 17 components must sum to zero (relative error {rel:.3e})"
    numeric = central_diff(
        lambda a: ref_log_prob(X, params.means, params.log_sigma, a).sum(), params.logits
    )
    assert_close(dL_dalpha, numeric, 1e-8, "eq. 17 vs finite differences in alpha")


def test_eq14_eq15_log_sigma_gradient_is_twice_log_variance_gradient():
    rng = np.random.default_rng(7)
    params = random_params(rng)
    X = random_data(rng, n=30)
    k, d = params.means.shape

    def loglik_of(log_sigma_flat):
        return ref_log_prob(X, params.means, log_sigma_flat.reshape(k, d), params.logits).sum()

    g_log_var = central_diff(lambda s: loglik_of(0.5 * s), 2.0 * params.log_sigma.ravel())
    g_log_sigma = central_diff(loglik_of, params.log_sigma.ravel())
    assert_close(g_log_sigma, 2.0 * g_log_var, 1e-8, "d/d log sigma = 2 d/d log sigma^2")

    gamma = ref_resp(X, params)
    z2 = ((X[:, None, :] - params.means[None]) / params.sigma[None]) ** 2   # (n, K, D)
    eq14 = 0.5 * np.einsum("ik,ikd->kd", gamma, z2 - 1.0)
    eq15 = np.einsum("ik,ikd->kd", gamma, z2 - 1.0)
    assert_close(eq14.ravel(), g_log_var, 1e-8, "eq. 14 vs finite differences")
    assert_close(eq15.ravel(), g_log_sigma, 1e-8, "eq. 15 vs finite differences")


def test_eq13_eq15_eq19_nll_grad_matches_finite_differences():
    rng = np.random.default_rng(8)
    params = random_params(rng, k=3, d=3)
    X = random_data(rng, n=35, d=3)
    value, grad = nll_grad(X, params)
    f = ref_nll_from_vector(X, 3, 3)
    assert_close(value, f(params.ravel()), 1e-13, "eq. 18 value")
    assert_close(grad.ravel(), central_diff(f, params.ravel()), 1e-7,
                 "eqs. 13, 15, 17, 19 nll_grad vs finite differences")
    for ours, ref, name in zip(grad, ref_grad_eq19(X, params), ("means", "log_sigma", "logits"),
                               strict=True):
        assert_close(ours, ref, 1e-12, f"eq. 19 {name} formula")


def test_eq13_means_gradient_is_sigma_inverse_times_residual():
    rng = np.random.default_rng(9)
    params = random_params(rng)
    X = random_data(rng, n=20)
    gamma = ref_resp(X, params)
    for k in range(3):
        cov_inv = np.linalg.inv(np.diag(params.variances[k]))
        eq13 = sum(gamma[i, k] * cov_inv @ (X[i] - params.means[k]) for i in range(len(X)))
        _, grad = nll_grad(X, params)
        assert_close(-len(X) * grad.means[k], eq13, 1e-12, f"eq. 13 component {k}")


# ------------------------------------------------------- section 3: eqs. 18-24
def test_eq18_nll_is_mean_negative_log_likelihood():
    rng = np.random.default_rng(10)
    params = random_params(rng)
    X = random_data(rng, n=50)
    ref = -ref_log_prob(X, params.means, params.log_sigma, params.logits)
    for size in (1, 7, 50):
        assert_close(nll(X[:size], params), ref[:size].mean(), 1e-13, f"eq. 18, |B| = {size}")


def test_eq19_mean_gradient_does_not_depend_on_batch_size():
    rng = np.random.default_rng(11)
    params = random_params(rng)
    X = random_data(rng, n=20)
    doubled = np.concatenate([X, X])
    _, g1 = nll_grad(X, params)
    _, g2 = nll_grad(doubled, params)
    assert_close(g2.ravel(), g1.ravel(), 1e-13, "eq. 19 mean gradient unchanged by doubling")
    s1, s2 = nll_grad_sums(X, params), nll_grad_sums(doubled, params)
    assert_close(s2.means, 2.0 * s1.means, 1e-13, "the summed gradient doubles")


def test_eq20_partition_average_equals_full_gradient_exactly():
    rng = np.random.default_rng(12)
    params = random_params(rng)
    X = random_data(rng, n=60)
    _, full = nll_grad(X, params)
    order = rng.permutation(60)
    equal = [nll_grad(X[b], params)[1].ravel() for b in np.split(order, 6)]
    assert_close(np.mean(equal, axis=0), full.ravel(), 1e-13,
                 "eq. 20 average over a partition into equal batches")
    uneven = np.split(order, [16, 32, 48, 59])                   # last batch holds one point
    weighted = sum(len(b) / 60 * nll_grad(X[b], params)[1].ravel() for b in uneven)
    assert_close(weighted, full.ravel(), 1e-13, "eq. 20 with |B|/m weights for uneven batches")


def test_eq20_average_over_all_batches_is_full_gradient_and_variance_formula():
    rng = np.random.default_rng(13)
    params = random_params(rng, k=2, d=2)
    m, b = 9, 3
    X = random_data(rng, n=m)
    _, full = nll_grad(X, params)
    batches = np.array([nll_grad(X[list(c)], params)[1].ravel()
                        for c in itertools.combinations(range(m), b)])
    assert_close(batches.mean(axis=0), full.ravel(), 1e-13,
                 "eq. 20 exact expectation over all C(m, b) batches")
    per_point = np.array([nll_grad(X[i : i + 1], params)[1].ravel() for i in range(m)])
    S = np.sum((per_point - full.ravel()) ** 2) / (m - 1)
    mse = np.mean(np.sum((batches - full.ravel()) ** 2, axis=1))
    assert_close(mse, S / b * (1 - b / m), 1e-12, "mini-batch variance (1/b)(1 - b/m) S")


def test_eq20_average_over_random_batches_is_close():
    rng = np.random.default_rng(14)
    params = random_params(rng)
    m, b, draws = 200, 10, 1000
    X = random_data(rng, n=m)
    _, full = nll_grad(X, params)
    total = np.zeros_like(full.ravel())
    for _ in range(draws):
        total += nll_grad(X[rng.choice(m, size=b, replace=False)], params)[1].ravel()
    per_point = np.array([nll_grad(X[i : i + 1], params)[1].ravel() for i in range(m)])
    # standard error of the average of `draws` independent batches, coordinate-wise
    se = np.sqrt(per_point.var(axis=0, ddof=1) / b * (1 - b / m) / draws)
    z = np.abs(total / draws - full.ravel()) / np.maximum(se, 1e-300)
    err = rel_err(total / draws, full.ravel())
    assert z.max() < 5.0, (f"eq. 20 random-batch average off by {z.max():.1f} standard errors "
                           f"(relative error {err:.3e})")


def test_eq21_small_sgd_step_decreases_batch_nll_to_first_order():
    rng = np.random.default_rng(15)
    params = random_params(rng)
    X = random_data(rng, n=30)
    value, grad = nll_grad(X, params)
    g = grad.ravel()
    for eta in (1e-3, 1e-4):
        stepped = MixtureParams.unravel(params.ravel() - eta * g, 3, 2)
        decrease = value - nll(X, stepped)
        assert decrease > 0, f"an SGD step along -g raised the batch NLL by {-decrease / value:.3e}"
        assert_close(decrease / (eta * g @ g), 1.0, 20 * eta,
                     f"eq. 21 first-order decrease, eta = {eta}")


def test_eq22_nesterov_form_equals_sutskever_lookahead_form():
    rng = np.random.default_rng(16)
    A = rng.normal(size=(3, 3))
    A = A @ A.T + np.eye(3)                                      # a convex quadratic

    def grad(theta):
        return A @ theta

    eta, beta = 0.05, 0.9
    theta0 = rng.normal(size=3)
    # Sutskever et al.: gradient at the look-ahead point theta + beta w
    theta, w = theta0.copy(), np.zeros(3)
    lookahead = []
    for _ in range(25):
        w = beta * w - eta * grad(theta + beta * w)
        theta = theta + w
        lookahead.append(theta + beta * w)
    # eq. 22, Nesterov line, on phi = theta + beta w
    phi, v = theta0.copy(), np.zeros(3)
    for t in range(25):
        g = grad(phi)
        v = beta * v + g
        phi = phi - eta * (g + beta * v)
        assert_close(phi, lookahead[t], 1e-12, f"eq. 22 Nesterov, step {t}")
    # heavy ball: the velocity is the exponentially weighted sum of past gradients
    theta, v, grads = theta0.copy(), np.zeros(3), []
    for _ in range(10):
        g = grad(theta)
        grads.append(g)
        v = beta * v + g
        theta = theta - eta * v
    unrolled = sum(beta ** (9 - s) * grads[s] for s in range(10))
    assert_close(v, unrolled, 1e-13, "eq. 22 v_t = sum_s beta^(t-s) g_s")


def _run(optimizer, params, grads):
    """Apply ``optimizer`` to the gradient sequence; returns the iterates after each step."""
    state = optimizer.init(params)
    out = []
    for g in grads:
        updates, state = optimizer.update(g, state)
        params = apply_updates(params, updates)
        out.append(params)
    return out


def _grad_sequence(rng, params, n_steps=4):
    X = random_data(rng, n=60)
    return [nll_grad(X[rng.choice(60, 10, replace=False)], params)[1] for _ in range(n_steps)]


def test_eq21_sgd_step_equals_formula():
    rng = np.random.default_rng(40)
    params = random_params(rng)
    grads = _grad_sequence(rng, params)
    theta = params.ravel()
    schedule = inverse_time(0.1, 2.0)
    for t, (g, new) in enumerate(zip(grads, _run(sgd(schedule), params, grads), strict=True)):
        theta = theta - 0.1 / (1 + t / 2.0) * g.ravel()
        assert_close(new.ravel(), theta, 1e-14, f"eq. 21 SGD, step {t}")


@pytest.mark.parametrize("nesterov", [False, True])
def test_eq22_momentum_steps_equal_formula(nesterov):
    rng = np.random.default_rng(41)
    params = random_params(rng)
    grads = _grad_sequence(rng, params)
    eta, beta = 0.05, 0.8
    theta, v = params.ravel(), np.zeros(params.ravel().size)
    iterates = _run(momentum(eta, beta, nesterov=nesterov), params, grads)
    for t, (g, new) in enumerate(zip(grads, iterates, strict=True)):
        v = beta * v + g.ravel()
        theta = theta - eta * (g.ravel() + beta * v if nesterov else v)
        kind = "Nesterov" if nesterov else "heavy ball"
        assert_close(new.ravel(), theta, 1e-14, f"eq. 22 {kind}, step {t}")


def test_eq23_adam_steps_equal_formula_with_defaults():
    rng = np.random.default_rng(42)
    params = random_params(rng)
    grads = _grad_sequence(rng, params, n_steps=5)
    eta, b1, b2, eps = 0.01, 0.9, 0.999, 1e-8
    theta = params.ravel()
    m = v = np.zeros(theta.size)
    for t, (g, new) in enumerate(zip(grads, _run(adam(eta), params, grads), strict=True),
                                 start=1):
        m = b1 * m + (1 - b1) * g.ravel()
        v = b2 * v + (1 - b2) * g.ravel() ** 2
        theta = theta - eta * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
        assert_close(new.ravel(), theta, 1e-13, f"eq. 23 Adam, step {t}")


def test_eq23_adam_bias_correction_and_scale_invariance():
    rng = np.random.default_rng(43)
    params = random_params(rng)
    g = MixtureParams.unravel(np.full(params.ravel().size, 0.37), 3, 2)
    # with a constant gradient the corrected moments are exactly g and g^2
    iterates = _run(adam(1e-3), params, [g] * 5)
    for t, new in enumerate(iterates, start=1):
        expected = params.ravel() - t * 1e-3 * 0.37 / (0.37 + 1e-8)
        assert_close(new.ravel(), expected, 1e-13, f"eq. 23 bias correction, step {t}")
    grads = _grad_sequence(rng, params, n_steps=6)
    big = [MixtureParams.unravel(1e4 * q.ravel(), 3, 2) for q in grads]
    small_steps = _run(adam(1e-3), params, grads)[-1].ravel() - params.ravel()
    big_steps = _run(adam(1e-3), params, big)[-1].ravel() - params.ravel()
    assert_close(big_steps, small_steps, 1e-6, "eq. 23 step invariant to gradient scale")


def test_eq24_learning_rate_schedules_match_formulas():
    eta0, tau, T, frac = 0.1, 50.0, 200, 0.01
    eta_min = frac * eta0
    steps = np.arange(0, T + 1)
    assert_close([inverse_time(eta0, tau)(t) for t in steps], eta0 / (1.0 + steps / tau), 1e-15,
                 "eq. 24 inverse time")
    expected = eta_min + (eta0 - eta_min) * (1.0 + np.cos(np.pi * steps / T)) / 2.0
    assert_close([cosine(eta0, T, frac)(t) for t in steps], expected, 1e-14, "eq. 24 cosine")
    assert_close(cosine(eta0, T, frac)(0), eta0, 1e-15, "eq. 24 cosine starts at eta_0")
    assert_close(cosine(eta0, T, frac)(T), eta_min, 1e-12, "eq. 24 cosine ends at eta_min")
    assert_close(inverse_time(eta0, tau)(tau), eta0 / 2, 1e-15, "inverse time halves at tau")


# ------------------------------------------------------- section 4: eqs. 25-26
def test_eq25_logsumexp_of_1000_1000_is_exact():
    with np.errstate(over="ignore"):
        naive = np.log(np.sum(np.exp(np.array([1000.0, 1000.0]))))
    assert naive == np.inf
    assert logsumexp(np.array([1000.0, 1000.0])) == 1000.0 + np.log(2.0)
    rng = np.random.default_rng(18)
    a = rng.normal(0, 50, size=(6, 9))
    assert_close(logsumexp(a, axis=1), special.logsumexp(a, axis=1), 1e-14,
                 "eq. 25 vs scipy.special.logsumexp")
    assert logsumexp(np.array([-np.inf, -np.inf])) == -np.inf


def test_eq25_point_sixty_sigma_away_stays_finite():
    params = MixtureParams.from_moments([0.5, 0.5], [[0.0], [1.0]], [[1.0], [1.0]])
    x = np.array([[60.0]])
    a = np.log(0.5) - 0.5 * (x[0, 0] - np.array([0.0, 1.0])) ** 2 - 0.5 * np.log(2 * np.pi)
    with np.errstate(divide="ignore", invalid="ignore"):
        p_naive = np.exp(a)
        assert np.all(p_naive == 0.0)
        assert np.log(p_naive.sum()) == -np.inf
        assert np.all(np.isnan(p_naive / p_naive.sum()))
    expected = a[1] + np.log1p(np.exp(-59.5))
    assert_close(log_prob(x, params), [expected], 1e-14, "eq. 25 log p of a 60-sigma point")
    assert_close(a, [-1801.6120857137646, -1742.1120857137646], 1e-14, "the doc's numbers")
    gamma = responsibilities(x, params)
    assert np.all(np.isfinite(gamma))
    assert_close(gamma[0], [np.exp(-59.5) / (1 + np.exp(-59.5)), 1.0], 1e-14,
                 "eq. 25 responsibilities of a 60-sigma point")
    _, grad = nll_grad(x, params)
    assert np.all(np.isfinite(grad.ravel()))


def test_eq26_likelihood_blows_up_without_a_variance_floor():
    rng = np.random.default_rng(19)
    X = rng.normal(0.0, 1.0, size=(30, 1))
    m = len(X)

    def loglik(s):
        params = MixtureParams.from_moments([0.5, 0.5], [[X[0, 0]], [0.0]], [[s * s], [1.0]])
        return -m * nll(X, params)

    c = np.log(0.5 * stats.norm.pdf(X[1:, 0], 0.0, 1.0)).sum()     # the other component
    values = []
    for s in (1e-3, 1e-6, 1e-9, 1e-12, 1e-15):
        values.append(loglik(s))
        bound = np.log(0.5 / (np.sqrt(2 * np.pi) * s)) + c
        gap = (bound - values[-1]) / abs(bound)
        assert gap <= 1e-9, f"L is below the spike lower bound (relative error {gap:.3e})"
    assert np.all(np.diff(values) > 0), f"L must grow without bound as s -> 0: {values}"
    # each factor 1000 off s adds log(1000) to L: it grows like -log s, without bound
    assert_close(np.diff(values)[1:], np.full(3, np.log(1000.0)), 1e-6, "L ~ -log s")

    # the gradient keeps pushing log sigma down: dNLL/dlog sigma_k = +1/m at the spike
    spike = MixtureParams.from_moments([0.5, 0.5], [[X[0, 0]], [0.0]], [[1e-12], [1.0]])
    _, grad = nll_grad(X, spike)
    # gamma_1k = 1 - O(s): the other component still claims a share of order s = 1e-6
    assert_close(grad.log_sigma[0, 0], 1.0 / m, 1e-5, "eq. 15 at the spike")

    # the projection of eq. 26 (mogsgd.train.project_variance_floor) and the bound it buys
    v_min = 1e-3
    floored = project_variance_floor(spike, v_min)
    expected = np.maximum(spike.log_sigma, 0.5 * np.log(v_min))
    assert_close(floored.log_sigma, expected, 0, "eq. 26 projection")
    assert np.all(floored.variances >= v_min * (1 - 1e-12))
    assert floored.log_sigma[1, 0] == spike.log_sigma[1, 0], "valid values are left alone"
    L = -m * nll(X, floored)
    cap = -0.5 * m * np.log(2 * np.pi * v_min)
    assert L <= cap, f"eq. 26: L exceeds its bound with the floor (relative {(L - cap) / cap:.3e})"


# ---------------------------------------------------------- section 5: eqs. 27-30
def test_eq27_eq30_m_step_is_zero_of_gradient_given_fixed_responsibilities():
    rng = np.random.default_rng(20)
    params = random_params(rng, k=3, d=2)
    X = random_data(rng, n=60)
    gamma = ref_resp(X, params)                                   # E-step, held fixed
    new = em_step(X, params)

    def expected_complete_loglik(theta):
        p = MixtureParams.unravel(theta, 3, 2)
        return np.sum(gamma * (log_gaussian(X, p) + p.log_weights))

    g_old = central_diff(expected_complete_loglik, params.ravel())
    g_new = central_diff(expected_complete_loglik, new.ravel())
    err = np.max(np.abs(g_new)) / np.max(np.abs(g_old))
    assert err < 1e-7, f"eqs. 27-30: gradient at the M-step is not zero (relative {err:.3e})"
    # the same with the analytic formulas (13), (15), (17) at fixed gamma
    z = (X[:, None, :] - new.means[None]) / new.sigma[None]
    g_means = np.einsum("ik,ikd->kd", gamma, z) / new.sigma
    g_log_sigma = np.einsum("ik,ikd->kd", gamma, z**2 - 1)
    g_logits = (gamma - new.weights).sum(axis=0)
    scale = np.max(np.abs(g_old))
    for name, g in (("29", g_means), ("30", g_log_sigma), ("28", g_logits)):
        rel = np.max(np.abs(g)) / scale
        assert rel < 1e-12, f"eq. {name}: analytic gradient not zero (relative {rel:.3e})"


def test_eq27_eq30_em_never_decreases_the_log_likelihood():
    rng = np.random.default_rng(21)
    X = np.concatenate([rng.normal(-2, 1, (40, 2)), rng.normal(2, 0.7, (40, 2))])
    params = random_params(rng, k=3, d=2)
    L = [-len(X) * nll(X, params)]
    for _ in range(30):
        params = em_step(X, params)
        L.append(-len(X) * nll(X, params))
    rel_drop = -np.diff(L).min() / abs(L[-1])
    assert rel_drop <= 1e-9, f"EM decreased L (relative error {rel_drop:.3e})"

    # Jensen's lower bound F(q, theta) <= L(theta), with equality at q = gamma(theta)
    def F(q):
        wlp = log_gaussian(X, params) + params.log_weights
        return np.sum(q * (wlp - np.log(q)))

    q = rng.dirichlet(np.ones(3), size=len(X))
    assert F(q) <= L[-1], f"Jensen bound violated (relative {(F(q) - L[-1]) / abs(L[-1]):.3e})"
    assert_close(F(ref_resp(X, params)), L[-1], 1e-12, "F(gamma, theta) = L(theta)")


def test_eq29_eq28_em_update_is_a_scaled_gradient_step():
    rng = np.random.default_rng(22)
    params = random_params(rng)
    X = random_data(rng, n=50)
    m = len(X)
    new = em_step(X, params)
    _, grad = nll_grad(X, params)
    dL_dmu, dL_dalpha = -m * grad.means, -m * grad.logits
    nk = ref_resp(X, params).sum(axis=0)
    assert_close(new.means, params.means + params.variances / nk[:, None] * dL_dmu, 1e-12,
                 "mu_new = mu + Sigma/N_k dL/dmu")
    assert_close(new.weights, params.weights + dL_dalpha / m, 1e-12,
                 "pi_new = pi + (1/m) dL/dalpha")


def test_eq27_eq30_em_fixed_point_is_a_stationary_point():
    rng = np.random.default_rng(23)
    X = np.concatenate([rng.normal(-3, 1, (50, 2)), rng.normal(3, 0.6, (30, 2))])
    params = MixtureParams.from_moments([0.5, 0.5], [[-1.0, 0.0], [1.0, 0.0]], np.ones((2, 2)))
    for _ in range(300):
        params = em_step(X, params)
    _, grad = nll_grad(X, params)
    _, grad0 = nll_grad(X, random_params(rng, k=2, d=2))
    rel = np.max(np.abs(grad.ravel())) / np.max(np.abs(grad0.ravel()))
    assert rel < 1e-8, f"gradient at the EM fixed point is not zero (relative {rel:.3e})"


def test_eq27_eq30_mogsgd_em_step_equals_the_formulas():
    rng = np.random.default_rng(44)
    params = random_params(rng)
    X = random_data(rng, n=50)
    for reg_covar in (0.0, 1e-3):
        ours, ll_old = mogsgd_em_step(X, params, reg_covar=reg_covar)
        ref = em_step(X, params, reg_covar=reg_covar)
        assert_close(ours.weights, ref.weights, 1e-12, f"eq. 28, reg_covar={reg_covar}")
        assert_close(ours.means, ref.means, 1e-12, f"eq. 29, reg_covar={reg_covar}")
        assert_close(ours.variances, ref.variances, 1e-10, f"eq. 30, reg_covar={reg_covar}")
        assert_close(ll_old, -nll(X, params), 1e-13, "em_step returns the old mean log-lik")


def test_eq27_eq30_fit_em_log_likelihood_never_decreases():
    rng = np.random.default_rng(45)
    X = np.concatenate([rng.normal(-2, 1, (40, 2)), rng.normal(2, 0.7, (40, 2))])
    result = fit_em(X, random_params(rng), max_iter=40, tol=0.0, reg_covar=0.0)
    ll = np.asarray(result.log_likelihoods)
    rel_drop = -np.diff(ll).min() / np.abs(ll).max()
    assert rel_drop <= 1e-12, f"fit_em decreased the log-likelihood (relative error {rel_drop:.3e})"


def test_eq35_em_with_missing_values_zeroes_the_gradient_given_fixed_responsibilities():
    rng = np.random.default_rng(46)
    params = random_params(rng, k=3, d=3)
    X = _with_missing(rng, n=60)
    gamma = ref_resp(X, params)                                   # from eq. 34
    new, _ = mogsgd_em_step(X, params, reg_covar=0.0)

    def expected_complete_loglik(theta):
        p = MixtureParams.unravel(theta, 3, 3)
        return np.sum(gamma * (log_gaussian(X, p) + p.log_weights))

    g_old = central_diff(expected_complete_loglik, params.ravel())
    g_new = central_diff(expected_complete_loglik, new.ravel())
    rel = np.max(np.abs(g_new)) / np.max(np.abs(g_old))
    assert rel < 1e-7, f"EM with NaN is not the zero of eq. 35 (relative {rel:.3e})"


# ---------------------------------------------------------- section 6: eqs. 31-38
def test_eq31_eq32_weight_two_equals_a_duplicated_row():
    rng = np.random.default_rng(24)
    params = random_params(rng)
    X = random_data(rng, n=15)
    w = np.ones(15)
    w[[2, 7]] = 2.0
    duplicated = np.concatenate([X, X[[2, 7]]])
    assert_close(nll(X, params, sample_weight=w), nll(duplicated, params), 1e-13,
                 "eq. 31 weight 2 = duplicated row")
    v_w, g_w = nll_grad(X, params, sample_weight=w)
    v_d, g_d = nll_grad(duplicated, params)
    assert_close(v_w, v_d, 1e-13, "eq. 31 value from nll_grad")
    assert_close(g_w.ravel(), g_d.ravel(), 1e-12, "eq. 32 weight 2 = duplicated row")
    _, g_scaled = nll_grad(X, params, sample_weight=3.5 * w)
    assert_close(g_scaled.ravel(), g_w.ravel(), 1e-13, "eq. 32 invariant to scaling w")


def test_eq32_weighted_gradient_matches_formula_and_finite_differences():
    rng = np.random.default_rng(25)
    params = random_params(rng)
    X = random_data(rng, n=25)
    w = rng.uniform(0.0, 3.0, size=25)
    value, grad = nll_grad(X, params, sample_weight=w)
    f = ref_nll_from_vector(X, 3, 2, sample_weight=w)
    assert_close(value, f(params.ravel()), 1e-13, "eq. 31 value")
    assert_close(grad.ravel(), central_diff(f, params.ravel()), 1e-7,
                 "eq. 32 vs finite differences")
    for ours, ref, name in zip(grad, ref_grad_eq19(X, params, w),
                               ("means", "log_sigma", "logits"), strict=True):
        assert_close(ours, ref, 1e-12, f"eq. 32 {name} formula")


def test_eq33_affine_change_of_variables_and_parameter_map():
    rng = np.random.default_rng(26)
    std_params = random_params(rng, k=3, d=3)
    X_std = random_data(rng, n=30, d=3) / 2.5
    c = rng.normal(0.0, 100.0, size=3)
    s = np.exp(rng.normal(0.0, 2.0, size=3))
    X = c + s * X_std
    raw = MixtureParams(
        means=c + s * std_params.means,
        log_sigma=std_params.log_sigma + np.log(s),
        logits=std_params.logits,
    )
    assert_close(log_prob(X, raw), log_prob(X_std, std_params) - np.log(s).sum(), 1e-12,
                 "eq. 33 log p_X(x) = log p_X'(x') - sum log s")
    ref = ref_log_prob(X, raw.means, raw.log_sigma, raw.logits)
    assert_close(log_prob(X, raw), ref, 1e-12, "eq. 33 raw-scale density vs scipy")
    assert_close(responsibilities(X, raw), responsibilities(X_std, std_params), 1e-10,
                 "eq. 33 responsibilities unchanged")
    _, g_raw = nll_grad(X, raw)
    _, g_std = nll_grad(X_std, std_params)
    assert_close(g_raw.means, g_std.means / s, 1e-10, "mean gradients scale like 1/s")
    assert_close(g_raw.log_sigma, g_std.log_sigma, 1e-10, "log-sigma gradients are scale-free")


def test_eq33_standardizer_maps_parameters_and_log_density():
    rng = np.random.default_rng(47)
    X = rng.normal(5.0, 30.0, size=(40, 3)) * np.array([1.0, 0.01, 100.0])
    scaler = Standardizer.fit(X)
    assert_close(scaler.center, X.mean(axis=0), 1e-13, "c = feature means")
    assert_close(scaler.scale, X.std(axis=0), 1e-13, "s = feature standard deviations")
    assert_close(scaler.log_det, np.log(X.std(axis=0)).sum(), 1e-13, "log det = sum log s")
    std_params = random_params(rng, k=3, d=3)
    raw = scaler.to_data(std_params)
    assert_close(raw.means, scaler.center + scaler.scale * std_params.means, 1e-14,
                 "eq. 33 mu = c + s mu'")
    assert_close(raw.log_sigma, std_params.log_sigma + np.log(scaler.scale), 1e-14,
                 "eq. 33 log sigma = log sigma' + log s")
    assert np.array_equal(raw.logits, std_params.logits), "eq. 33 logits unchanged"
    assert_close(scaler.from_data(raw).ravel(), std_params.ravel(), 1e-12, "round trip")
    assert_close(log_prob(X, raw), log_prob(scaler.transform(X), std_params) - scaler.log_det,
                 1e-12, "eq. 33 with the estimator's Standardizer")


def _with_missing(rng, n=30, d=3):
    X = random_data(rng, n=n, d=d)
    mask = rng.random((n, d)) < 0.3
    mask[mask.all(axis=1), 0] = False                       # keep one observed entry per row
    X[mask] = np.nan
    return X


def test_eq34_log_prob_with_nan_is_the_observed_marginal():
    rng = np.random.default_rng(27)
    params = random_params(rng, k=3, d=3)
    X = _with_missing(rng)
    ours = log_prob(X, params)
    for i, row in enumerate(X):
        obs = ~np.isnan(row)
        dens = sum(
            params.weights[k] * stats.multivariate_normal.pdf(
                row[obs], params.means[k, obs], np.diag(params.variances[k, obs]))
            for k in range(3)
        )
        assert_close(ours[i], np.log(dens), 1e-12, f"eq. 34 row {i} (observed {obs})")

    # integrating the full density over a missing coordinate gives the same number
    row = np.array([0.3, np.nan, -1.2])

    def joint(t):
        return np.exp(log_prob(np.array([[0.3, t, -1.2]]), params))[0]

    marginal, _ = integrate.quad(joint, -np.inf, np.inf, epsabs=0, epsrel=1e-12)
    assert_close(np.exp(log_prob(row[None, :], params))[0], marginal, 1e-9,
                 "eq. 34 vs numerical integration over the missing coordinate")


def test_eq35_gradient_with_nan_matches_finite_differences():
    rng = np.random.default_rng(28)
    params = random_params(rng, k=3, d=3)
    X = _with_missing(rng)
    value, grad = nll_grad(X, params)
    f = ref_nll_from_vector(X, 3, 3)
    assert_close(value, f(params.ravel()), 1e-13, "eq. 34 mean NLL with NaN")
    assert_close(grad.ravel(), central_diff(f, params.ravel()), 1e-7,
                 "eq. 35 vs finite differences")
    for ours, ref, name in zip(grad, ref_grad_eq19(X, params), ("means", "log_sigma", "logits"),
                               strict=True):
        assert_close(ours, ref, 1e-12, f"eq. 35 {name} formula")
    # a missing coordinate contributes nothing to its own mean and log-sigma
    _, one = nll_grad(np.array([[0.4, np.nan, 1.0]]), params)
    assert np.all(one.means[:, 1] == 0.0) and np.all(one.log_sigma[:, 1] == 0.0)


def test_eq36_sufficient_statistics_m_step_equals_eqs_27_30():
    rng = np.random.default_rng(29)
    params = random_params(rng)
    X = random_data(rng, n=40)
    gamma = ref_resp(X, params)
    s0 = gamma.mean(axis=0)
    s1 = gamma.T @ X / len(X)
    s2 = gamma.T @ (X * X) / len(X)
    weights, means = s0 / s0.sum(), s1 / s0[:, None]
    variances = s2 / s0[:, None] - means**2
    em = em_step(X, params)
    assert_close(weights, em.weights, 1e-12, "eq. 36 M-step map: weights")
    assert_close(means, em.means, 1e-12, "eq. 36 M-step map: means")
    assert_close(variances, em.variances, 1e-10, "eq. 36 M-step map: variances")


def test_eq36_step_size_one_over_t_gives_the_running_mean():
    rng = np.random.default_rng(30)
    stats_seq = rng.normal(size=(25, 4))
    s = np.zeros(4)
    for t, sbar in enumerate(stats_seq, start=1):
        rho = (t + 0) ** -1.0                                  # kappa = 1, t0 = 0
        s = (1 - rho) * s + rho * sbar
        assert_close(s, stats_seq[:t].mean(axis=0), 1e-13, f"eq. 36 running mean, t = {t}")


def _raw_stats(X, params):
    """Per-point averages of (gamma, gamma x, gamma x^2), the sufficient statistics of eq. 36."""
    gamma = ref_resp(X, params)
    n = len(X)
    return gamma.sum(axis=0) / n, gamma.T @ X / n, gamma.T @ (X * X) / n


def _m_step_from_raw(s0, s1, s2):
    means = s1 / s0[:, None]
    return MixtureParams.from_moments(s0 / s0.sum(), means, s2 / s0[:, None] - means**2)


def test_eq36_online_em_steps_equal_the_recursion():
    rng = np.random.default_rng(33)
    params = random_params(rng)
    X = random_data(rng, n=90)
    alpha, t0 = 0.7, 2.0
    # s_0: the statistics that reproduce the starting parameters
    w = params.weights
    s = [w, w[:, None] * params.means, w[:, None] * (params.variances + params.means**2)]
    state = online_em_init(params, reg_covar=0.0)
    current = params
    for t, batch in enumerate(np.split(X, 3), start=1):
        rho = (t + t0) ** -alpha
        assert_close(step_size(t, alpha, t0), rho, 1e-15, f"eq. 36 step size, t = {t}")
        sbar = _raw_stats(batch, current)
        s = [(1 - rho) * a + rho * b for a, b in zip(s, sbar, strict=True)]
        expected = _m_step_from_raw(*s)
        current, state, _ = online_em_step(batch, current, state, alpha=alpha, t0=t0,
                                           reg_covar=0.0)
        assert_close(current.weights, expected.weights, 1e-12, f"eq. 36 weights, t = {t}")
        assert_close(current.means, expected.means, 1e-12, f"eq. 36 means, t = {t}")
        assert_close(current.variances, expected.variances, 1e-10, f"eq. 36 variances, t = {t}")


def test_eq37_online_em_polyak_ruppert_average():
    rng = np.random.default_rng(34)
    params = random_params(rng)
    X = random_data(rng, n=120)
    state = online_em_init(params, reg_covar=1e-6)
    iterates = []
    for batch in np.split(X, 6):
        params, state, _ = online_em_step(batch, params, state, average_after=2)
        iterates.append(params)
    kept = iterates[2:]                                          # steps 3..6
    assert state.n_averaged == len(kept)
    mean_w = np.mean([p.weights for p in kept], axis=0)
    assert_close(state.average.weights, mean_w / mean_w.sum(), 1e-12, "eq. 37 weights")
    assert_close(state.average.means, np.mean([p.means for p in kept], axis=0), 1e-12,
                 "eq. 37 means")
    assert_close(state.average.variances, np.mean([p.variances for p in kept], axis=0), 1e-12,
                 "eq. 37 variances (online EM averages the natural parameters)")


def test_eq37_recursive_polyak_ruppert_average_equals_the_mean():
    rng = np.random.default_rng(31)
    iterates = rng.normal(size=(40, 5))
    t0 = 10
    avg = np.zeros(5)
    for t in range(t0 + 1, 41):
        avg = avg + (iterates[t - 1] - avg) / (t - t0)
    assert_close(avg, iterates[t0:].mean(axis=0), 1e-13, "eq. 37 recursive average")
    # averaging log sigma is the geometric mean of sigma
    assert_close(np.exp(iterates[t0:, 0].mean()), stats.gmean(np.exp(iterates[t0:, 0])),
                 1e-13, "averaged log sigma = geometric mean of sigma")


def test_eq38_parameter_count_and_information_criteria():
    rng = np.random.default_rng(32)
    for k, d in ((1, 1), (3, 2), (4, 5)):
        params = random_params(rng, k=k, d=d)
        p = k * (2 * d + 1) - 1
        assert params.ravel().size - 1 == p

        # p is the rank of the Jacobian of theta -> (pi, mu, sigma^2): the free parameters
        def natural(theta, k=k, d=d):
            q = MixtureParams.unravel(theta, k, d)
            return np.concatenate([q.weights, q.means.ravel(), q.variances.ravel()])

        theta = params.ravel()
        jac = np.stack([(natural(theta + h) - natural(theta - h)) / 2e-6
                        for h in 1e-6 * np.eye(theta.size)], axis=1)
        assert np.linalg.matrix_rank(jac, tol=1e-7) == p, f"K={k}, D={d}"
    assert 3 * (2 * 2 + 1) - 1 == 14                           # the doc's example

    X = random_data(rng, n=50)
    est = SGDGaussianMixture(n_components=3, solver="em", max_iter=5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mogsgd.errors.ConvergenceWarning)
        est.fit(X)
    assert est._n_parameters() == 14
    params = est.params_
    L = ref_log_prob(X, params.means, params.log_sigma, params.logits).sum()
    assert_close(est.bic(X), -2 * L + 14 * np.log(50), 1e-12, "eq. 38 estimator BIC")
    assert_close(est.aic(X), -2 * L + 28, 1e-12, "eq. 38 estimator AIC")
    bic = -2 * L + 14 * np.log(50)
    aic = -2 * L + 2 * 14
    assert_close(bic, 2 * 50 * nll(X, params) + 14 * np.log(50), 1e-13, "eq. 38 BIC")
    assert_close(aic, 2 * 50 * nll(X, params) + 28, 1e-13, "eq. 38 AIC")


# ------------------------------------------------------- section 8: eqs. 52-53
def _dec_context():
    ctx = decimal.Context(prec=60, Emin=-(10**9), Emax=10**9)
    return decimal.localcontext(ctx)


def dec_nll(X, means, log_sigma, logits) -> decimal.Decimal:
    """``-sum_i log p(x_i)`` of the saturated model (eq. 52) in 60-digit Decimal
    arithmetic, written from the formula alone (exponent range beyond any float)."""
    D = decimal.Decimal
    H = D(2) ** 64
    k_comp, d = len(means), len(means[0])
    with _dec_context():
        lse_logits = max(logits) + sum((a - max(logits)).exp() for a in logits).ln()
        total = D(0)
        for x in X:
            lw = []
            for k in range(k_comp):
                h = sum(((D(float(x[j])) - means[k][j]) / log_sigma[k][j].exp()) ** 2
                        for j in range(d)) / 2
                S = h if h <= H else H * (1 + (h / H).ln())
                lw.append(-S - sum(log_sigma[k]) - D(d) / 2 * D(float(np.log(2.0 * np.pi)))
                          + logits[k] - lse_logits)
            top = max(lw)
            total -= top + sum((a - top).exp() for a in lw).ln()
        return total


def _dec(params: MixtureParams):
    D = decimal.Decimal
    return ([[D(float(v)) for v in row] for row in params.means],
            [[D(float(v)) for v in row] for row in params.log_sigma],
            [D(float(v)) for v in params.logits])


def test_eq52_saturation_is_continuous_with_its_slope_and_finite_for_any_float():
    from mogsgd.density import H_SAT, saturate

    # h = H (1 + eps): both branches give H (1 + eps) to first order (value and slope 1)
    eps = np.array([-1e-7, -1e-9, 1e-9, 1e-7])
    S, log_slope = saturate(np.log(H_SAT) + np.log1p(eps))
    assert_close(S, H_SAT * (1.0 + eps), 1e-14, "S(h) = h + O(eps^2) on both sides of H")
    S, log_slope = saturate(np.log(H_SAT) + np.array([1.0, 100.0, 2000.0]))
    assert_close(S, H_SAT * np.array([2.0, 101.0, 2001.0]), 1e-15, "S(h) beyond H")
    assert_close(log_slope, [-1.0, -100.0, -2000.0], 1e-15, "log S'(h) = log H - log h")
    # the extreme case of the bound: x and mu at opposite ends, the smallest sigma
    params = MixtureParams(means=[[-1.7e308]], log_sigma=[[-744.0]], logits=[0.0])
    lg = log_gaussian(np.array([[1.7e308]]), params)[0, 0]
    assert np.isfinite(lg) and -1e23 < lg < -H_SAT


@pytest.mark.parametrize("x0, x1", [(1e10, 0.0), (1e30, -1e30), (1e154, 1e154), (1e300, 2.0),
                                    (-1.7e308, 1.7e308), (3.0, 1e-300)])
def test_eq52_log_density_of_far_points_matches_the_decimal_formula(x0, x1):
    params = MixtureParams(means=[[0.0, 1.0], [1e300, -1e300], [-1.0, 5.0]],
                           log_sigma=[[0.3, -2.0], [1.0, 1.0], [-700.0, 0.0]],
                           logits=[0.1, -0.4, 0.2])
    X = np.array([[x0, x1]])
    lp = log_prob(X, params)
    assert np.isfinite(lp).all()
    assert_close(lp, [-float(dec_nll(X, *_dec(params)))], 1e-13, "eq. 52 log p")
    gamma = responsibilities(X, params)
    assert np.all(np.isfinite(gamma)) and abs(gamma.sum() - 1.0) < 1e-12


def test_eq52_a_far_point_belongs_to_its_nearest_component():
    # unit components at 0 and 1e199 (weights favour the first); points 1e200 and more away
    params = MixtureParams.from_moments([0.9, 0.1], [[0.0], [1e199]], [[1.0], [1.0]])
    gamma = responsibilities(np.array([[1e200], [6e199], [-1e200]]), params)
    assert gamma.tolist() == [[0.0, 1.0], [0.0, 1.0], [1.0, 0.0]]
    # equally far in float64 (1e200 - 1e6 == 1e200): log-densities about -1.6e22 are equal
    # to the last bit, and the responsibilities still sum to one (eq. 11 from the shifted
    # values, not as wlp - log p)
    params = MixtureParams.from_moments([0.9, 0.1], [[0.0], [1e6]], [[1.0], [1.0]])
    gamma = responsibilities(np.array([[1e200]]), params)
    assert gamma.sum() == 1.0 and np.all(gamma > 0)


def test_eq53_far_point_gradient_matches_decimal_finite_differences():
    D = decimal.Decimal
    rng = np.random.default_rng(52)
    params = random_params(rng, k=2, d=2)
    X = np.array([[1e30, -3e29], [4e25, 1e26], [0.5, -1.0]])  # two far rows, one near
    value, grad = nll_grad(X, params)
    means, log_sigma, logits = _dec(params)
    theta = [means, log_sigma, [logits]]
    expected = []
    with _dec_context():
        step = D("1e-25")
        for g, block in enumerate(theta):
            for i in range(len(block)):
                for j in range(len(block[i])):
                    plus = copy.deepcopy(theta)
                    minus = copy.deepcopy(theta)
                    plus[g][i][j] += step
                    minus[g][i][j] -= step
                    f_plus = dec_nll(X, plus[0], plus[1], plus[2][0])
                    f_minus = dec_nll(X, minus[0], minus[1], minus[2][0])
                    expected.append(float((f_plus - f_minus) / (2 * step) / len(X)))
        assert_close(value, float(dec_nll(X, means, log_sigma, logits)) / len(X), 1e-13,
                     "eq. 52 mean NLL")
    assert_close(grad.ravel(), expected, 1e-12, "eq. 53 gradient of the saturated NLL")
    # the log-sigma force of a far row is at most 2H per unit weight
    _, g_far = nll_grad(X[:1], params)
    assert np.all(np.abs(g_far.log_sigma) <= 2.0**65 + 1.0)


def test_eq53_em_statistics_of_far_rows_are_the_gradient_statistics():
    from mogsgd.em import em_stats, stats_from_grad_sums

    rng = np.random.default_rng(53)
    params = random_params(rng, k=3, d=2)
    X = np.r_[random_data(rng, n=30), [[1e200, 0.0], [-1e40, 1e39], [1.7e308, -1.7e308]]]
    stats = em_stats(X, params)
    ref = stats_from_grad_sums(nll_grad_sums(X, params), params)
    for name in ("nk", "sx", "sxx"):
        got, want = getattr(stats, name), getattr(ref, name)
        assert np.all(np.isfinite(got)), name
        assert_close(got, want, 1e-12, f"eq. 53 EM statistic {name}")


# ------------------------------------------------------- the document and the code
def _tags(text: str) -> list[int]:
    return [int(t) for t in re.findall(r"\\tag\{(\d+)\}", text)]


def test_doc_numbers_equations_1_to_n_once_in_order():
    assert _tags(DOC.read_text(encoding="utf-8")) == list(range(1, N_EQUATIONS + 1))


def test_doc_math_avoids_markdown_escapes_that_break_github_rendering():
    text = DOC.read_text(encoding="utf-8")
    assert text.count("$$") % 2 == 0
    # CommonMark turns these backslash-punctuation pairs into bare punctuation before
    # MathJax sees them: use \cr, \lbrace, \rbrace, \quad, \lVert and spaces instead
    for bad in ("\\\\", "\\{", "\\}", "\\,", "\\;", "\\!", "\\_", "\\|"):
        assert bad not in text, f"{bad!r} in docs/derivations.md"


def _cited_equations(text: str) -> set[int]:
    cited: set[int] = set()
    for match in re.finditer(r"\beqs?\.\s*([0-9][0-9,\s\-–]*)", text):
        for part in re.split(r",\s*", match.group(1).strip(" ,")):
            bounds = [int(b) for b in re.split(r"\s*[-–]\s*", part) if b.strip().isdigit()]
            if len(bounds) == 2:
                cited.update(range(bounds[0], bounds[1] + 1))
            else:
                cited.update(bounds)
    return cited


def test_equation_numbers_cited_in_the_source_exist_in_the_doc():
    numbered = set(_tags(DOC.read_text(encoding="utf-8")))
    src = Path(mogsgd.__file__).resolve().parent
    for path in sorted(src.glob("*.py")):
        cited = _cited_equations(path.read_text(encoding="utf-8"))
        missing = sorted(cited - numbered)
        assert not missing, f"{path.name} cites equations {missing} that the doc does not number"


@pytest.mark.parametrize("text, expected", [
    ("(eq. 25)", {25}), ("(eqs. 13, 19)", {13, 19}), ("(eqs. 13-19)", set(range(13, 20))),
])
def test_citation_parser(text, expected):
    assert _cited_equations(text) == expected
