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
    """``init="auto"`` with a polish: AUTO_CANDIDATES random-point starts, handed to
    ``polish`` in one call on the distinct rows with their weights, and the one with the
    highest polished log-likelihood returned (the polished parameters, not the raw start)."""
    from mogsgd.init import AUTO_CANDIDATES, distinct_rows

    X = np.concatenate([rng.normal(c, 1.0, size=(60, 2)) for c in (0.0, 6.0)])
    X = np.concatenate([X, X[:10]])   # duplicates: polish sees them as weights
    scores = list(rng.permutation(AUTO_CANDIDATES).astype(float))
    seen = []

    def polish(rows, w, candidates):
        calls.append(len(candidates))
        out = []
        for params in candidates:
            polished = params.replace(means=params.means + 1.0)
            seen.append((rows, w, polished, params))
            out.append((polished, scores[len(seen) - 1]))
        return out

    calls = []
    best = init_params(X, 2, "auto", rng, polish=polish)
    rows, weights = distinct_rows(X)
    assert calls == [AUTO_CANDIDATES]
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


def _reference_distinct_rows(X, w):
    """distinct_rows by np.unique (the definition the fast one must reproduce)."""
    rows, inverse = np.unique(X, axis=0, return_inverse=True)
    weights = np.bincount(inverse.ravel(), weights=w, minlength=len(rows))
    return rows[weights > 0], weights[weights > 0]


@pytest.mark.parametrize("seed", range(40))
def test_distinct_rows_are_nps_unique_rows_with_summed_weights(seed):
    from mogsgd.init import distinct_rows

    rng = np.random.default_rng(seed)
    n, d = int(rng.integers(1, 80)), int(rng.integers(1, 5))
    X = rng.integers(-2, 3, size=(n, d)) * rng.choice([1.0, 0.1, 1e-300, 1e300])
    X[rng.random((n, d)) < 0.1] = -0.0          # equal to 0.0: one row, as np.unique has it
    w = None if seed % 2 else rng.choice([0.0, 1.0, 2.5, 0.3], size=n)
    if w is not None:
        w[0] = 1.0
    rows, weights = distinct_rows(X, w)
    ref_rows, ref_weights = _reference_distinct_rows(X, w)
    # the same set of rows with the same weights (bitwise: summed in the same order)
    key = np.lexsort(rows.T[::-1])
    np.testing.assert_array_equal(rows[key], ref_rows)
    np.testing.assert_array_equal(weights[key], ref_weights)
    assert len({tuple(r) for r in rows.tolist()}) == len(rows)


@pytest.mark.parametrize("seed", range(40))
def test_robust_variance_quartiles_are_nps_weighted_inverted_cdf(seed):
    import mogsgd.init as init

    rng = np.random.default_rng(seed)
    n, d = int(rng.integers(1, 60)), int(rng.integers(1, 5))
    X = rng.integers(-3, 4, size=(n, d)) * 0.5 if seed % 3 else rng.standard_normal((n, d))
    w = rng.choice([0.0, 1.0, 2.0, 0.25], size=n) if seed % 2 else np.ones(n)
    w[-1] = 1.0
    q1, q3 = np.percentile(X, [25.0, 75.0], axis=0, method="inverted_cdf",
                           weights=np.broadcast_to(w[:, None], X.shape))
    var = np.cov(X.T, aweights=w, bias=True).reshape(d, d).diagonal()
    iqr_var = ((q3 - q1) / init.IQR_NORMAL) ** 2
    expected = np.where(iqr_var > 0, np.minimum(var, iqr_var), var)
    np.testing.assert_allclose(init._robust_variance(X, w), expected, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("seed", range(30))
def test_weighted_draw_is_generator_choice_without_replacement(seed):
    """The initial candidates' draw gives rng.choice's indices and leaves the Generator
    where rng.choice leaves it (fits stay what they were)."""
    import mogsgd.init as init

    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 40))
    w = rng.choice([0.0, 1.0, 2.0, 0.3, 5.0], size=n)
    w[0] = 1.0
    size = int(rng.integers(1, np.count_nonzero(w) + 1))
    a, b = np.random.default_rng(seed + 100), np.random.default_rng(seed + 100)
    expected = a.choice(n, size=size, replace=False, p=w / w.sum())
    assert init._weighted_draw(b, w / w.sum(), size) == expected.tolist()
    assert a.bit_generator.state == b.bit_generator.state
def test_lloyd_and_cluster_moments_equal_their_definitions(rng):
    """A weighted Lloyd step and the per-cluster moments (summed by matrix products) equal
    the definitions written out cluster by cluster (an empty cluster keeps its centre)."""
    from mogsgd.init import params_from_centres

    X = rng.normal(size=(400, 5)) + 3.0 * rng.integers(0, 3, size=(400, 1))
    w = rng.uniform(0.0, 2.0, size=len(X))
    start = np.concatenate([X[:3], [[1e3] * 5]])      # the last centre gets no rows
    got = lloyd(X, start, n_iter=1, sample_weight=w)
    labels = np.argmin(((X[:, None] - start) ** 2).sum(-1), axis=1)
    want = start.copy()
    for k in range(3):
        rows = labels == k
        want[k] = (w[rows] @ X[rows]) / w[rows].sum()
    np.testing.assert_allclose(got, want, rtol=1e-12)
    p = params_from_centres(X, got, 1e-6, w)
    labels = np.argmin(((X[:, None] - got) ** 2).sum(-1), axis=1)
    for k in range(3):
        rows = labels == k
        var = (w[rows] @ (X[rows] - got[k]) ** 2) / w[rows].sum()
        np.testing.assert_allclose(p.variances[k], var, rtol=1e-10)


def test_candidates_are_ranked_by_the_given_score(rng):
    """``score`` ranks unpolished candidates: a score that prefers the last candidate drawn
    returns it, and the default (the NumPy NLL) matches a compiled one's choice."""
    from mogsgd import fast

    X = rng.normal(size=(500, 3))
    calls = []

    def last_wins(rows, params, w):
        calls.append(params)
        return -float(len(calls))

    best = init_params(X, 3, "kmeans++", np.random.default_rng(1), score=last_wins)
    assert len(calls) == 5 and best is calls[-1]
    a = init_params(X, 3, "kmeans++", np.random.default_rng(1))
    b = init_params(X, 3, "kmeans++", np.random.default_rng(1), score=fast.nll)
    assert a.allclose(b, rtol=0)


def test_lloyd_on_several_centre_sets_equals_each_set_alone(rng):
    """``lloyd_sets`` runs each set as ``lloyd`` would alone, including one that settles
    before the others (then it stays where it settled)."""
    from mogsgd.init import lloyd_sets

    X = rng.normal(size=(600, 3)) + 5.0 * rng.integers(0, 3, size=(600, 1))
    w = rng.uniform(0.5, 1.5, size=len(X))
    sets = np.stack([X[rng.choice(len(X), 3, replace=False)] for _ in range(4)])
    sets[0] = lloyd(X, sets[0], 100, w)           # already settled
    together = lloyd_sets(X, sets, 10, w)
    for start, got in zip(sets, together, strict=True):
        np.testing.assert_allclose(got, lloyd(X, start, 10, w), rtol=1e-12, atol=1e-12)
