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


def test_auto_init_polishes_random_point_candidates_and_keeps_the_best(rng):
    """``init="auto"`` with a polish: AUTO_CANDIDATES random-point starts, each handed to
    ``polish`` on the distinct rows with their weights, and the one with the highest
    polished log-likelihood returned (the polished parameters, not the raw start)."""
    from mogsgd.init import AUTO_CANDIDATES, distinct_rows

    X = np.concatenate([rng.normal(c, 1.0, size=(60, 2)) for c in (0.0, 6.0)])
    X = np.concatenate([X, X[:10]])   # duplicates: polish sees them as weights
    scores = list(rng.permutation(AUTO_CANDIDATES).astype(float))
    seen = []

    def polish(rows, w, params):
        polished = params.replace(means=params.means + 1.0)
        seen.append((rows, w, polished, params))
        return polished, scores[len(seen) - 1]

    best = init_params(X, 2, "auto", rng, polish=polish)
    rows, weights = distinct_rows(X)
    assert len(seen) == AUTO_CANDIDATES
    for r, w, _, _ in seen:
        np.testing.assert_array_equal(r, rows)
        np.testing.assert_array_equal(w, weights)
    assert best is seen[int(np.argmax(scores))][2]
    starts = [raw.means for *_, raw in seen]   # the raw starts' means: rows of the data
    assert all(np.any(np.all(rows == c, axis=1)) for m in starts for c in m)


def test_auto_init_without_polish_is_kmeanspp():
    """``init="auto"`` where nothing is polished (streams, large data) is ``"kmeans++"``."""
    X = np.random.default_rng(0).normal(size=(300, 2))
    a = init_params(X, 3, "auto", np.random.default_rng(5))
    b = init_params(X, 3, "kmeans++", np.random.default_rng(5))
    assert a.allclose(b, rtol=0)


def test_sq_distances_of_far_rows_do_not_cancel(rng):
    # squared norms of 3e12: the expansion ||x||^2 - 2 x.c + ||c||^2 would lose the
    # distances of 0.75 to rounding; they are formed from differences instead
    X = rng.normal(size=(20, 3)) + 1e6
    C = X[:4] + 0.5
    np.testing.assert_allclose(sq_distances(X, C), ((X[:, None] - C) ** 2).sum(-1), rtol=1e-12)
    assert np.all(np.diag(sq_distances(X[:4], C)) == 0.75)
