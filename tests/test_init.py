import numpy as np
import pytest

from mogsgd.init import init_params, kmeans_plusplus, lloyd, sq_distances


def test_sq_distances_matches_broadcast(rng):
    X, C = rng.normal(size=(50, 3)), rng.normal(size=(4, 3))
    np.testing.assert_allclose(sq_distances(X, C), ((X[:, None] - C) ** 2).sum(-1), rtol=1e-12)


def test_kmeans_plusplus_picks_distinct_clusters(rng):
    centres = np.array([[0.0, 0.0], [50.0, 0.0], [0.0, 50.0]])
    X = np.concatenate([c + rng.normal(size=(100, 2)) for c in centres])
    seeds = kmeans_plusplus(X, 3, rng)
    found = np.argmin(sq_distances(seeds, centres), axis=1)
    assert sorted(found) == [0, 1, 2]
    refined = lloyd(X, seeds)
    assert np.max(np.min(sq_distances(refined, centres), axis=1)) < 0.1


@pytest.mark.parametrize("method", ["kmeans++", "kmeans", "random_points"])
def test_init_params_are_valid(rng, method):
    X = rng.normal(size=(300, 2))
    p = init_params(X, 4, method, rng)
    assert p.n_components == 4 and np.all(np.isfinite(p.ravel()))
    np.testing.assert_allclose(p.weights.sum(), 1.0)


def test_init_on_constant_data_is_finite(rng):
    X = np.ones((40, 2))
    p = init_params(X, 3, "kmeans++", rng)
    assert np.all(np.isfinite(p.ravel())) and np.all(p.variances > 0)


def test_init_is_reproducible():
    X = np.random.default_rng(0).normal(size=(200, 3))
    a = init_params(X, 3, "kmeans++", np.random.default_rng(5))
    b = init_params(X, 3, "kmeans++", np.random.default_rng(5))
    assert np.array_equal(a.ravel(), b.ravel())
