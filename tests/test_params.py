import numpy as np
import pytest

from mogsgd import MixtureParams
from mogsgd.params import log_softmax, softmax, tree_map


def test_derived_views_are_softmax_and_exp():
    p = MixtureParams(means=np.zeros((2, 3)), log_sigma=np.log(np.full((2, 3), 2.0)),
                      logits=np.array([0.0, np.log(3.0)]))
    np.testing.assert_allclose(p.weights, [0.25, 0.75])
    np.testing.assert_allclose(p.variances, 4.0)
    np.testing.assert_allclose(p.sigma, 2.0)
    assert p.n_components == 2 and p.n_features == 3


def test_from_moments_round_trips():
    w, m, v = np.array([0.2, 0.8]), np.array([[1.0], [-2.0]]), np.array([[0.5], [3.0]])
    p = MixtureParams.from_moments(w, m, v)
    np.testing.assert_allclose(p.weights, w, rtol=1e-15)
    np.testing.assert_allclose(p.variances, v, rtol=1e-14)
    np.testing.assert_array_equal(p.means, m)


@pytest.mark.parametrize("kwargs, msg", [
    (dict(means=np.zeros(3), log_sigma=np.zeros(3), logits=np.zeros(1)), "shape"),
    (dict(means=np.zeros((2, 3)), log_sigma=np.zeros((3, 2)), logits=np.zeros(2)), "log_sigma"),
    (dict(means=np.zeros((2, 3)), log_sigma=np.zeros((2, 3)), logits=np.zeros(3)), "logits"),
    (dict(means=np.full((1, 1), np.nan), log_sigma=np.zeros((1, 1)), logits=np.zeros(1)), "NaN"),
])
def test_bad_shapes_and_values_are_refused(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        MixtureParams(**kwargs)


@pytest.mark.parametrize("w, v, msg", [
    ([0.5, 0.6], [[1.0], [1.0]], "sum to 1"),
    ([1.5, -0.5], [[1.0], [1.0]], "> 0"),
    ([0.5, 0.5], [[1.0], [0.0]], "variances"),
])
def test_from_moments_validates(w, v, msg):
    with pytest.raises(ValueError, match=msg):
        MixtureParams.from_moments(w, [[0.0], [1.0]], v)


def test_arrays_are_read_only_copies():
    m = np.zeros((1, 2))
    p = MixtureParams(m, np.zeros((1, 2)), np.zeros(1))
    m[0, 0] = 5
    assert p.means[0, 0] == 0
    with pytest.raises(ValueError):
        p.means[0, 0] = 1


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int64])
def test_unravel_gives_read_only_copies_like_the_constructor(dtype):
    """unravel (one copy, one check: the compiled epoch's path) makes what the constructor
    makes of the slices: read-only arrays that no write to the vector reaches, the
    constructor's dtype, and NaN refused."""
    v = np.arange(3 * (2 * 2 + 1)).astype(dtype)
    p = MixtureParams.unravel(v, 3, 2)
    q = MixtureParams(v[:6].reshape(3, 2), v[6:12].reshape(3, 2), v[12:])
    assert p.dtype == q.dtype and all(np.array_equal(a, b) for a, b in zip(p, q, strict=True))
    v[0] = 99
    assert p.means[0, 0] == 0
    for a in p:
        with pytest.raises(ValueError):
            a[...] = 1
    if dtype is not np.int64:
        v[13] = np.nan
        with pytest.raises(ValueError, match="logits contains NaN"):
            MixtureParams.unravel(v, 3, 2)


def test_float32_is_kept_and_others_become_float64():
    p32 = MixtureParams(*(np.zeros(s, np.float32) for s in [(1, 2), (1, 2), (1,)]))
    assert p32.dtype == np.float32
    p = MixtureParams(np.zeros((1, 2), int), np.zeros((1, 2), np.float32), np.zeros(1))
    assert p.dtype == np.float64


def test_ravel_unravel_and_dict_round_trip(rng):
    from conftest import random_params

    p = random_params(rng, 3, 2)
    q = MixtureParams.unravel(p.ravel(), 3, 2)
    assert all(np.array_equal(a, b) for a, b in zip(p, q, strict=True))
    r = MixtureParams.from_dict(p.to_dict())
    assert all(np.array_equal(a, b) for a, b in zip(p, r, strict=True))
    s = tree_map(lambda a, b: a - b, p, r)
    assert np.all(s.ravel() == 0)


def test_softmax_is_stable_for_huge_logits():
    a = np.array([1000.0, 1000.0, -1000.0])
    np.testing.assert_allclose(softmax(a), [0.5, 0.5, 0.0])
    assert np.isfinite(log_softmax(a)[:2]).all()
