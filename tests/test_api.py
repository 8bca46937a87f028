"""The public functions (``mogsgd.nll_grad``, ``nll``, ``log_prob``, ``responsibilities``):
the compiled kernels by default, equal to the NumPy reference to 1e-12, the reference one
``backend="numpy"`` away, and one clear error for a wrong shape."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mogsgd
from mogsgd import MixtureParams, api, density, fast, gradients

PROPS = settings(max_examples=40, deadline=None)
needs_numba = pytest.mark.skipif(not fast.available(), reason="numba kernels unavailable")

shapes = st.tuples(st.integers(1, 9), st.integers(1, 11), st.integers(1, 300))  # K, D, n
seeds = st.integers(0, 2**32 - 1)


def problem(k, d, n, seed, exponent=0, spread=4.0):
    rng = np.random.default_rng(seed)
    scale = 10.0**exponent
    params = MixtureParams(means=rng.uniform(-3, 3, size=(k, d)) * scale,
                           log_sigma=np.log(rng.uniform(0.3, 2.0, size=(k, d))) + np.log(scale),
                           logits=rng.normal(scale=2.0, size=k))
    X = rng.normal(scale=spread, size=(n, d)) * scale
    return params, X, rng


def assert_agree(got, ref, tol=1e-12):
    """``|got - ref| <= tol * max(1, max |ref|)`` elementwise: 1e-12 relative to the scale
    of the result."""
    got, ref = np.asarray(got, dtype=float), np.asarray(ref, dtype=float)
    assert got.shape == ref.shape
    scale = max(1.0, float(np.max(np.abs(ref)))) if ref.size else 1.0
    assert np.max(np.abs(got - ref), initial=0.0) <= tol * scale, (got, ref)


def both(name, *args, **kwargs):
    fn = getattr(mogsgd, name)
    return fn(*args, backend="numba", **kwargs), fn(*args, backend="numpy", **kwargs)


@needs_numba
@PROPS
@given(shapes, seeds, st.integers(-20, 20), st.booleans())
def test_public_functions_agree_with_the_reference(shape, seed, exponent, weighted):
    params, X, rng = problem(*shape, seed, exponent)
    w = rng.uniform(0, 3, size=len(X)) if weighted else None
    (v, g), (v_ref, g_ref) = both("nll_grad", X, params, w)
    assert_agree(v, v_ref)
    for field in ("means", "log_sigma", "logits"):
        assert_agree(getattr(g, field), getattr(g_ref, field))
    assert_agree(*both("nll", X, params, w))
    assert_agree(*both("log_prob", X, params))
    assert_agree(*both("responsibilities", X, params))


@needs_numba
@pytest.mark.parametrize("n", [1, 33_000, 70_001])   # one block; the parallel chunks
def test_agreement_holds_across_the_parallel_chunking(n):
    params, X, rng = problem(4, 3, n, seed=n)
    w = rng.uniform(0, 2, size=n)
    assert_agree(*both("log_prob", X, params))
    assert_agree(*both("responsibilities", X, params))
    assert_agree(*both("nll", X, params, w))
    (v, g), (v_ref, g_ref) = both("nll_grad", X, params, w)
    assert_agree(v, v_ref)
    assert_agree(g.ravel(), g_ref.ravel())


@needs_numba
def test_float32_rows_agree_with_the_reference_on_the_same_rows():
    params, X, _ = problem(3, 4, 500, seed=1)
    X32 = X.astype(np.float32)
    assert_agree(*both("log_prob", X32, params))
    assert_agree(*both("nll", X32, params))


def test_missing_values_are_marginalised_under_either_backend():
    """NaN (eq. 34) is handed to the reference, so both backends give its exact values."""
    params, X, _ = problem(3, 4, 200, seed=2)
    X[::7, 1] = np.nan
    X[3, :2] = np.nan
    for name in ("nll", "log_prob", "responsibilities"):
        got, ref = both(name, X, params)
        np.testing.assert_array_equal(got, ref)
    assert np.isfinite(mogsgd.nll(X, params))
    (v, g), (v_ref, g_ref) = both("nll_grad", X, params)
    assert v == v_ref
    np.testing.assert_array_equal(g.ravel(), g_ref.ravel())


@needs_numba
@pytest.mark.parametrize("name, fast_name", [("nll_grad", "nll_grad"), ("nll", "nll"),
                                             ("log_prob", "log_prob"),
                                             ("responsibilities", "responsibilities")])
def test_the_default_is_the_compiled_path_and_numpy_the_reference(monkeypatch, name,
                                                                   fast_name):
    params, X, _ = problem(2, 2, 50, seed=3)
    calls = []
    real = getattr(fast, fast_name)

    def spy(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(fast, fast_name, spy)
    getattr(mogsgd, name)(X, params)
    assert calls == [1]
    getattr(mogsgd, name)(X, params, backend="numpy")
    assert calls == [1]


def test_the_package_names_are_the_api_functions():
    for name in ("nll_grad", "nll", "log_prob", "responsibilities"):
        assert getattr(mogsgd, name) is getattr(api, name)
    # the reference stays importable under its own module
    assert density.nll is not mogsgd.nll and gradients.nll_grad is not mogsgd.nll_grad


@pytest.mark.parametrize("backend", ["numpy", "numba", "auto"])
def test_a_wrong_shape_is_one_clear_error(backend):
    params, X, _ = problem(2, 3, 10, seed=4)
    for bad in (X[:, :2], X[0], X[None]):
        with pytest.raises(ValueError, match=r"X must have shape \(n_samples, 3\)"):
            mogsgd.log_prob(bad, params, backend=backend)
    with pytest.raises(ValueError, match="backend"):
        mogsgd.nll(X, params, backend="gpu")
    with pytest.raises(TypeError, match="MixtureParams"):
        mogsgd.nll(X, (params.means, params.log_sigma, params.logits))


@needs_numba
def test_estimator_inference_follows_its_backend(monkeypatch):
    """``score_samples``, ``predict_proba``, ``predict`` and ``score`` run the kernels under
    the default backend and agree with ``backend="numpy"`` to 1e-12."""
    params, X, _ = problem(3, 4, 3000, seed=5)
    est = mogsgd.SGDGaussianMixture(3, max_epochs=3, random_state=0).fit(X)
    calls = []
    for name in ("log_prob", "responsibilities"):
        real = getattr(fast, name)
        monkeypatch.setattr(fast, name, lambda *a, _real=real, _n=name: (calls.append(_n),
                                                                          _real(*a))[1])
    got = [est.score_samples(X), est.predict_proba(X), est.predict(X), est.score(X)]
    assert set(calls) == {"log_prob", "responsibilities"}
    calls.clear()
    est.set_params(backend="numpy")
    ref = [est.score_samples(X), est.predict_proba(X), est.predict(X), est.score(X)]
    assert calls == []
    for a, b in zip(got[:2], ref[:2], strict=True):
        assert_agree(a, b)
    np.testing.assert_array_equal(got[2], ref[2])
    assert got[3] == pytest.approx(ref[3], rel=1e-12)
