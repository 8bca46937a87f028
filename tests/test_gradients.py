"""Analytic gradients against central finite differences, per-sample means and sums, for
both backends of the public functions (the NumPy reference and the compiled kernels)."""

import numpy as np
import pytest
from conftest import random_params, sample_mixture

import mogsgd
from mogsgd import MixtureParams
from mogsgd.gradients import combine_sums, finalize, nll_grad_sums

GROUPS = ("means", "log_sigma", "logits")


@pytest.fixture(params=["numpy", "numba"])
def backend(request):
    return request.param


def central_differences(X, p, h=1e-3, sample_weight=None, backend="numpy"):
    """Five-point central stencil, error O(h^4): accurate to ~1e-10 even for large NLLs."""
    theta = p.ravel()
    k, d = p.n_components, p.n_features

    def f(t):
        return mogsgd.nll(X, MixtureParams.unravel(t, k, d), sample_weight, backend=backend)

    out = np.empty_like(theta)
    for j in range(theta.size):
        e = np.zeros_like(theta)
        e[j] = h
        out[j] = (f(theta - 2 * e) - 8 * f(theta - e) + 8 * f(theta + e)
                  - f(theta + 2 * e)) / (12 * h)
    return MixtureParams.unravel(out, k, d)


def assert_grad_close(analytic, numeric, tol):
    for name in GROUPS:
        a, n = getattr(analytic, name), getattr(numeric, name)
        rel = np.max(np.abs(a - n)) / max(np.max(np.abs(n)), 1e-6)  # K=1: logits grad is 0
        assert rel < tol, f"{name}: relative error {rel:.3e} >= {tol:g}"


@pytest.mark.parametrize("k, d", [(1, 1), (2, 1), (3, 2), (3, 3), (4, 5)])
def test_grad_matches_central_differences(rng, k, d, backend):
    p = random_params(rng, k, d)
    X, _ = sample_mixture(rng, p, 64)
    value, grad = mogsgd.nll_grad(X, p, backend=backend)
    assert value == pytest.approx(mogsgd.nll(X, p, backend=backend), rel=1e-14)
    assert_grad_close(grad, central_differences(X, p, backend=backend), 1e-6)


def test_grad_with_far_outliers_matches_central_differences(rng, backend):
    p = random_params(rng, 3, 2)
    X, _ = sample_mixture(rng, p, 30)
    X[0] = p.means[0] + 60 * p.sigma.max()          # 60+ standard deviations from all
    X[1] = -p.means[1] - 80 * p.sigma.max()
    value, grad = mogsgd.nll_grad(X, p, backend=backend)
    assert np.isfinite(value) and np.all(np.isfinite(grad.ravel()))
    assert_grad_close(grad, central_differences(X, p, backend=backend), 1e-6)


def test_weighted_grad_matches_central_differences(rng, backend):
    p = random_params(rng, 3, 2)
    X, _ = sample_mixture(rng, p, 40)
    w = rng.uniform(0, 3, size=40)
    _, grad = mogsgd.nll_grad(X, p, w, backend=backend)
    assert_grad_close(grad, central_differences(X, p, sample_weight=w, backend=backend), 1e-6)


def test_minibatch_grad_is_mean_of_per_sample_grads(rng, backend):
    p = random_params(rng, 3, 3)
    X, _ = sample_mixture(rng, p, 17)
    _, grad = mogsgd.nll_grad(X, p, backend=backend)
    per_sample = np.mean([mogsgd.nll_grad(X[i:i + 1], p, backend=backend)[1].ravel()
                          for i in range(17)], axis=0)
    np.testing.assert_allclose(grad.ravel(), per_sample, rtol=1e-12, atol=1e-15)


def test_sums_over_chunks_combine_exactly(rng):
    p = random_params(rng, 4, 3)
    X, _ = sample_mixture(rng, p, 1000)
    whole = finalize(nll_grad_sums(X, p))
    parts = finalize(combine_sums(nll_grad_sums(c, p) for c in np.array_split(X, 7)))
    assert parts[0] == pytest.approx(whole[0], rel=1e-13)
    np.testing.assert_allclose(parts[1].ravel(), whole[1].ravel(), rtol=1e-12, atol=1e-15)


def test_logit_grad_is_softmax_chain_rule_not_unconstrained_pi(rng, backend):
    p = random_params(rng, 3, 2)
    X, _ = sample_mixture(rng, p, 50)
    _, grad = mogsgd.nll_grad(X, p, backend=backend)
    gamma = mogsgd.responsibilities(X, p, backend=backend)
    expected = (p.weights - gamma).mean(axis=0)          # (1/|B|) sum_i (pi_k - gamma_ik)
    np.testing.assert_allclose(grad.logits, expected, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(grad.logits.sum(), 0.0, atol=1e-15)


def test_grad_at_true_parameters_is_small_on_large_sample(rng, backend):
    p = random_params(rng, 2, 2)
    X, _ = sample_mixture(rng, p, 200_000)
    _, grad = mogsgd.nll_grad(X, p, backend=backend)
    assert np.max(np.abs(grad.ravel())) < 0.02
