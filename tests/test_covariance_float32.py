"""``dtype=np.float32`` with the full, tied and spherical covariance types.

The contract is the diagonal type's (``tests/test_robustness.py``,
``test_dtype_float32_computes_and_returns_float32``): ``params_``, the scikit-learn
attributes, ``score_samples``, ``predict_proba`` and the points ``sample`` draws are
float32 (the labels int64, as the diagonal type gives), and a model file round-trips bit
for bit.  These types train in float64 (their compiled passes are float64) and return
float32, so a float32 fit agrees with the float64 fit of the same rows to float32 rounding
of the data and parameters.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from mogsgd import SGDGaussianMixture, make_mixture
from mogsgd.errors import ConvergenceWarning

TYPES = ["full", "tied", "spherical"]
ATTRIBUTES = ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_")


def quiet_fit(X, **kwargs) -> SGDGaussianMixture:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return SGDGaussianMixture(n_components=2, random_state=0, **kwargs).fit(X)


def data(covariance_type: str, seed: int = 0) -> np.ndarray:
    return make_mixture(1500, 3, 2, separation=3.0, random_state=seed,
                        covariance_type=covariance_type)[0]


@pytest.fixture(scope="module")
def pairs():
    """Per type: ``(X, float32 fit, float64 fit, order)``; ``order`` permutes the float64
    fit's components onto the float32 fit's."""
    out = {}
    for ct in TYPES:
        X = data(ct)
        m32 = quiet_fit(X, covariance_type=ct, dtype=np.float32)
        m64 = quiet_fit(X, covariance_type=ct)
        cost = ((m32.means_[:, None, :] - m64.means_[None, :, :]) ** 2).sum(-1)
        order = linear_sum_assignment(cost)[1]
        out[ct] = X, m32, m64, order
    return out


@pytest.fixture(scope="module")
def diag_sample_dtypes():
    """The dtypes of ``sample()`` of a float32 diagonal model: the contract to match."""
    m = quiet_fit(data("diag"), dtype=np.float32)
    X, y = m.sample(5, random_state=0)
    assert X.dtype == np.float32   # the points in the dtype asked for
    return X.dtype, y.dtype


@pytest.mark.parametrize("what", ["fit", "score_samples", "predict_proba", "sample",
                                  "save_load"])
@pytest.mark.parametrize("covariance_type", TYPES)
def test_float32_fits_return_float32_and_agree_with_float64(pairs, diag_sample_dtypes,
                                                            covariance_type, what, tmp_path):
    X, m32, m64, order = pairs[covariance_type]
    if what == "fit":
        assert m32.params_.dtype == np.float32
        assert all(np.asarray(a).dtype == np.float32 for a in m32.params_)
        for name in ATTRIBUTES:
            a, b = getattr(m32, name), getattr(m64, name)
            assert a.dtype == np.float32 and a.shape == b.shape, name
            assert np.all(np.isfinite(a)), name
        np.testing.assert_allclose(m32.means_, m64.means_[order], atol=0.05)
        np.testing.assert_allclose(m32.weights_, m64.weights_[order], atol=0.02)
        cov64 = m64.covariances_ if covariance_type == "tied" else m64.covariances_[order]
        np.testing.assert_allclose(m32.covariances_, cov64, atol=0.05 * np.abs(cov64).max())
    elif what == "score_samples":
        for rows in (X, X.astype(np.float32)):
            s32, s64 = m32.score_samples(rows), m64.score_samples(X)
            assert s32.dtype == np.float32 and s32.shape == (len(X),)
            assert np.all(np.isfinite(s32))
            assert np.mean(np.abs(s32 - s64)) < 0.01 and np.max(np.abs(s32 - s64)) < 0.1
        assert isinstance(m32.score(X), float)
        assert abs(m32.score(X) - m64.score(X)) < 0.01
    elif what == "predict_proba":
        p32, p64 = m32.predict_proba(X), m64.predict_proba(X)[:, order]
        assert p32.dtype == np.float32 and p32.shape == (len(X), 2)
        np.testing.assert_allclose(p32.sum(axis=1), 1.0, atol=1e-5)
        assert np.mean(np.abs(p32 - p64)) < 0.01
        assert np.mean(m32.predict(X) == order[m64.predict(X)]) > 0.98
    elif what == "sample":
        Xs, ys = m32.sample(4000, random_state=1)
        assert (Xs.dtype, ys.dtype) == diag_sample_dtypes
        assert Xs.shape == (4000, X.shape[1]) and np.all(np.isfinite(Xs))
        for k in range(2):
            np.testing.assert_allclose(Xs[ys == k].mean(axis=0), m32.means_[k], atol=0.25)
    else:
        loaded = SGDGaussianMixture.load(m32.save(tmp_path / "model.json"))
        assert loaded.params_.dtype == np.float32
        for name in ATTRIBUTES:
            a, b = getattr(m32, name), getattr(loaded, name)
            assert b.dtype == np.float32 and a.tobytes() == b.tobytes(), name
        for method in ("score_samples", "predict_proba"):
            a, b = getattr(m32, method)(X), getattr(loaded, method)(X)
            assert b.dtype == np.float32 and a.tobytes() == b.tobytes(), method


@pytest.mark.parametrize("solver", ["em", "online_em"])
@pytest.mark.parametrize("covariance_type", TYPES)
def test_every_solver_returns_float32(covariance_type, solver):
    X = data(covariance_type, seed=1)[:600]
    m32 = quiet_fit(X, covariance_type=covariance_type, solver=solver, dtype=np.float32)
    m64 = quiet_fit(X, covariance_type=covariance_type, solver=solver)
    for name in ATTRIBUTES:
        assert getattr(m32, name).dtype == np.float32, name
    assert m32.score_samples(X).dtype == np.float32
    assert abs(m32.score(X) - m64.score(X)) < 0.01


@pytest.mark.parametrize("covariance_type", TYPES)
def test_float32_checkpoint_resume_equals_a_straight_run(covariance_type, tmp_path):
    X = data(covariance_type, seed=2)[:600]
    path = tmp_path / "ckpt.json"
    settings = dict(covariance_type=covariance_type, dtype=np.float32, max_epochs=4,
                    early_stopping=False)
    straight = quiet_fit(X, checkpoint_path=str(path), **settings)
    resumed = SGDGaussianMixture.from_checkpoint(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        resumed.fit(X, resume=path)
    assert resumed.params_.dtype == np.float32
    for name in ATTRIBUTES:
        assert getattr(straight, name).tobytes() == getattr(resumed, name).tobytes(), name


@pytest.mark.parametrize("covariance_type", TYPES)
def test_float32_partial_fit_stays_float32(covariance_type):
    X = data(covariance_type, seed=3)[:800]
    m = SGDGaussianMixture(2, covariance_type=covariance_type, dtype=np.float32,
                           random_state=0)
    m.partial_fit(X[:400]).partial_fit(X[400:])
    assert m.params_.dtype == np.float32 and m.covariances_.dtype == np.float32
    assert np.all(np.isfinite(m.score_samples(X)))
