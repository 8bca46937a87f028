"""Property-based tests: shapes, scales and seeds drawn by hypothesis."""

import warnings

import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from mogsgd import MixtureParams, SGDGaussianMixture, log_prob, log_resp, nll, nll_grad
from mogsgd.density import responsibilities, weighted_log_prob
from mogsgd.train import TrainConfig, train

PROPS = settings(max_examples=30, deadline=None)

shapes = st.tuples(st.integers(1, 4), st.integers(1, 4), st.integers(1, 40))  # K, D, n
exponents = st.integers(-100, 100)  # data scale 10**e
seeds = st.integers(0, 2**32 - 1)


def draw_problem(k, d, n, exponent, seed, spread=5.0):
    """Parameters and data at scale ``10**exponent``; points up to ``spread`` sigmas away."""
    rng = np.random.default_rng(seed)
    scale = 10.0**exponent
    params = MixtureParams(
        means=rng.uniform(-3, 3, size=(k, d)) * scale,
        log_sigma=np.log(rng.uniform(0.3, 2.0, size=(k, d))) + np.log(scale),
        logits=rng.normal(scale=2.0, size=k),
    )
    X = rng.normal(scale=spread, size=(n, d)) * scale
    return params, X


@PROPS
@given(shapes, exponents, seeds)
def test_log_prob_is_finite_at_any_scale(shape, exponent, seed):
    params, X = draw_problem(*shape, exponent, seed)
    lp = log_prob(X, params)
    assert lp.shape == (X.shape[0],)
    assert np.all(np.isfinite(lp))


@PROPS
@given(shapes, exponents, seeds, st.floats(1.0, 1e4))
def test_responsibilities_are_non_negative_and_sum_to_one(shape, exponent, seed, spread):
    params, X = draw_problem(*shape, exponent, seed, spread=spread)
    resp = responsibilities(X, params)
    assert np.all(resp >= 0)
    # log_resp = wlp - logsumexp(wlp) carries the rounding of |wlp| (~spread^2 / 2)
    magnitude = 1.0 + np.abs(weighted_log_prob(X, params)).max()
    tol = 8 * np.finfo(float).eps * magnitude
    np.testing.assert_allclose(resp.sum(axis=1), 1.0, rtol=0, atol=tol)
    assert np.all(log_resp(X, params) <= tol)


@PROPS
@given(shapes, st.integers(-30, 30), seeds)
def test_gradients_are_finite_and_logit_gradient_sums_to_zero(shape, exponent, seed):
    params, X = draw_problem(*shape, exponent, seed)
    value, grad = nll_grad(X, params)
    assert np.isfinite(value)
    for g in grad:
        assert np.all(np.isfinite(g))
    # softmax is invariant to adding a constant to every logit
    assert abs(grad.logits.sum()) <= 1e-12 * max(1.0, np.abs(grad.logits).max())


@PROPS
@given(st.integers(1, 3), st.integers(1, 3), st.integers(1, 8), st.integers(1, 8), seeds)
def test_an_epoch_of_small_steps_lowers_the_nll_in_expectation(k, d, n_batches, batch_size,
                                                                seed):
    """With a small learning rate an epoch moves along minus the sum of its batch
    gradients; over the random order of the rows that sum is, in expectation, a multiple
    of the full gradient, so the expected NLL after the epoch is lower.  The expectation
    is estimated by averaging epochs over several shuffles."""
    params, X = draw_problem(k, d, n_batches * batch_size, 0, seed, spread=2.0)
    before, grad = nll_grad(X, params)
    assume(np.sqrt(sum(float((g * g).sum()) for g in grad)) > 1e-3)  # not at a stationary point
    config = TrainConfig(optimizer="sgd", schedule="constant", learning_rate=1e-4,
                         batch_size=batch_size, max_epochs=1, early_stopping=False,
                         min_variance=1e-12)
    after = [nll(X, train(X, params, config=config, rng=np.random.default_rng(r)).params)
             for r in range(8)]
    assert np.mean(after) < before


@PROPS
@given(shapes, st.lists(st.floats(-1e3, 1e3), min_size=4, max_size=4),
       st.lists(st.floats(0.01, 100.0), min_size=4, max_size=4),
       st.lists(st.booleans(), min_size=4, max_size=4), seeds)
def test_density_changes_by_the_log_determinant_under_affine_maps(shape, shift, scale, flip,
                                                                  seed):
    """p_Y(a x + b) = p_X(x) / prod |a| for the mapped parameters (eq. 33)."""
    k, d, n = shape
    params, X = draw_problem(k, d, n, 0, seed)
    a = np.where(flip[:d], -1.0, 1.0) * np.array(scale[:d])
    b = np.array(shift[:d])
    mapped = MixtureParams(params.means * a + b, params.log_sigma + np.log(np.abs(a)),
                           params.logits)
    np.testing.assert_allclose(log_prob(X * a + b, mapped),
                               log_prob(X, params) - np.log(np.abs(a)).sum(),
                               rtol=1e-9, atol=1e-9)


def fit_quietly(X, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return SGDGaussianMixture(**kwargs).fit(X)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 3), st.integers(-120, 120), st.floats(-1e6, 1e6),
       st.sampled_from([1.0, -1.0]), st.sampled_from(["sgd", "em", "online_em"]), seeds)
def test_fitted_likelihood_is_invariant_to_shifting_and_scaling_the_data(
        d, exponent, shift, sign, solver, seed):
    """Fitting ``a X + b`` gives the model of ``X`` in other units: the same fit, with
    every log-likelihood lower by ``D log |a|``."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(120, d))
    X[:60] += 4.0
    a = sign * 10.0**exponent
    b = shift * abs(a)
    kw = dict(n_components=2, max_epochs=3, max_iter=5, batch_size=32, solver=solver,
              random_state=seed)
    ref = fit_quietly(X, **kw)
    moved = fit_quietly(a * X + b, **kw)
    np.testing.assert_allclose(moved.score_samples(a * X + b),
                               ref.score_samples(X) - d * np.log(abs(a)), rtol=1e-6, atol=1e-6)


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 40), st.integers(1, 4), st.integers(1, 4), st.integers(-150, 150),
       st.integers(1, 40), st.sampled_from(["sgd", "em", "online_em"]), st.booleans(), seeds)
def test_any_legal_data_gives_a_finite_model(n, d, k, exponent, n_distinct, solver,
                                             float32_input, seed):
    """Random shapes, scales, duplicates (``n_distinct`` distinct rows) and seeds."""
    assume(k <= n)
    rng = np.random.default_rng(seed)
    rows = rng.normal(size=(min(n_distinct, n), d)) * 10.0**exponent
    X = rows[rng.integers(len(rows), size=n)]
    if float32_input:
        assume(abs(exponent) < 30)
        X = X.astype(np.float32)
    model = fit_quietly(X, n_components=k, solver=solver, max_epochs=3, max_iter=5,
                        random_state=seed)
    for a in (model.weights_, model.means_, model.covariances_, model.score_samples(X)):
        assert np.all(np.isfinite(a))
    assert model.means_.dtype == np.float64
    np.testing.assert_allclose(model.weights_.sum(), 1.0)
