"""Initial parameters: k-means++ seeding (+ a few Lloyd steps) or random data points,
optionally each candidate polished by a few EM steps before they are compared.

Every method works on the *distinct* rows of the data in a canonical order,
each carrying its total weight (the number of copies, times its sample
weight).  Initialisation is therefore invariant to the order of the rows, and a
row of weight 2 is exactly a duplicated row.  Both methods turn a set of
centres into a full :class:`MixtureParams` the same way
(:func:`params_from_centres`): hard-assign every point to its nearest centre,
then take weighted per-cluster weights, means and floored variances.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from mogsgd.density import nll
from mogsgd.params import MixtureParams, bounded_variances, unconstrained_moments
from mogsgd.validation import check_choice

__all__ = ["INIT_METHODS", "sq_distances", "distinct_rows", "unique_rows", "kmeans_plusplus",
           "lloyd", "lloyd_sets", "params_from_centres", "params_from_centre_sets",
           "params_from_resp", "init_params"]

INIT_METHODS = ("auto", "kmeans++", "kmeans", "random_points", "random_from_data", "random")

#: ``init="auto"`` with a ``polish``: this many random-point candidates, each polished.
AUTO_CANDIDATES = 10
#: Candidates whose NLL per row differ by less than this (relative; at least 100 units of
#: rounding of the parameters' dtype) are equally good.
TIE = 1e-9

#: Inter-quartile range of the standard normal, ``2 Phi^-1(3/4)``.
IQR_NORMAL = 1.3489795003921634


#: :func:`sq_distances` expands the square (one matrix product) while every squared row
#: and centre norm is below this: its rounding error, about ``1e-16 * 1e8``, is then far
#: below the distances k-means compares on standardised data.
EXPAND_BELOW = 1e8


def sq_distances(X: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances ``||x_i - c_k||^2``, shape (n, K).

    As ``||x_i||^2 - 2 x_i . c_k + ||c_k||^2`` (clipped at 0) by one matrix product while
    every squared norm is below :data:`EXPAND_BELOW`; otherwise (rows far out, where the
    expansion would cancel) ``x_i - c_k`` is formed for one centre at a time: one (n, D)
    temporary."""
    dtype = np.result_type(X, centres)
    with np.errstate(over="ignore", invalid="ignore"):
        x2 = np.einsum("ij,ij->i", X, X)
        c2 = np.einsum("ij,ij->i", centres, centres)
    if X.shape[0] and (np.max(x2) < EXPAND_BELOW and np.max(c2, initial=0.0) < EXPAND_BELOW):
        out = (x2[:, None] + c2) - 2.0 * (X @ centres.T)
        return np.maximum(out, 0.0, out=out).astype(dtype, copy=False)
    out = np.empty((X.shape[0], centres.shape[0]), dtype=dtype)
    for k, c in enumerate(centres):
        diff = X - c
        out[:, k] = np.einsum("ij,ij->i", diff, diff)
    return out


def distinct_rows(
    X: np.ndarray, sample_weight: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows of ``X`` (m, D) in a canonical order and their total weights (m,).

    The order depends only on the weighted set of rows, not on how it is listed
    (order, duplicates, zero weights), and is unchanged by shifting, scaling or
    flipping the sign of a feature: rows are sorted by their squared standardised
    distance from the weighted mean, ties kept in lexicographic order.  Rows of
    zero total weight are dropped.
    """
    rows, inverse = unique_rows(X)
    w = np.bincount(inverse, weights=sample_weight, minlength=len(rows))
    keep = w > 0
    rows, w = rows[keep], w[keep]
    with np.errstate(over="ignore", invalid="ignore"):  # rows near the float range
        mean = w @ rows / w.sum()
        std = np.sqrt(w @ (rows - mean) ** 2 / w.sum())
        key = (((rows - mean) / np.where(std > 0, std, 1.0)) ** 2).sum(axis=1)
    order = np.argsort(key, kind="stable")
    return rows[order], w[order]


def unique_rows(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(X, axis=0, return_inverse=True)``: the distinct rows (n_distinct, D) in
    lexicographic order and each row's index among them (n,), by one ``lexsort`` and a
    comparison of neighbours (``np.unique`` with ``axis=0`` sorts a structured view,
    several times slower on the small tables every fit in memory starts from).  As there,
    ``-0.0`` equals ``0.0`` and a row holding NaN equals no other row (such rows may come
    in another order among themselves)."""
    n = X.shape[0]
    order = np.lexsort(X.T[::-1]) if X.shape[1] else np.arange(n)
    ordered = X[order]
    first = np.empty(n, dtype=bool)
    first[:1] = True
    np.any(ordered[1:] != ordered[:-1], axis=1, out=first[1:])
    inverse = np.empty(n, dtype=np.intp)
    inverse[order] = np.cumsum(first) - 1
    return ordered[first], inverse


def _weighted_draw(rng: np.random.Generator, p: np.ndarray, size: int) -> list[int]:
    """``rng.choice(len(p), size, replace=False, p=p)`` (``size`` at most the number of
    positive entries of ``p``) by NumPy's own algorithm -- draw, drop repeats, zero the
    drawn entries, draw the rest -- so the same indices and the same stream, without its
    argument checks and ``np.unique``: several times cheaper, once per initial candidate."""
    p = p.copy()
    found: list[int] = []
    while len(found) < size:
        x = rng.random(size - len(found))
        if found:
            p[found] = 0.0
        cdf = np.cumsum(p)
        cdf /= cdf[-1]
        seen = set(found)
        for i in cdf.searchsorted(x, side="right").tolist():
            if i not in seen:
                seen.add(i)
                found.append(i)
    return found


def _unit(w: np.ndarray | None, n: int) -> np.ndarray:
    return np.ones(n) if w is None else np.asarray(w, dtype=np.float64)


def kmeans_plusplus(X: np.ndarray, n_components: int, rng: np.random.Generator,
                    sample_weight: np.ndarray | None = None) -> np.ndarray:
    """Weighted k-means++ seeding (Arthur & Vassilvitskii 2007), greedy with ``2 + log K``
    trials.

    Each new centre is sampled with probability proportional to the weight times the
    squared distance to the nearest chosen centre; of several candidates the one that
    lowers the weighted potential most is kept.  Returns centres of shape (K, D).
    """
    n = X.shape[0]
    w = _unit(sample_weight, n)
    n_trials = 2 + int(np.log(n_components))
    centres = np.empty((n_components, X.shape[1]), dtype=X.dtype)

    def draw(mass: np.ndarray, size: int) -> np.ndarray:
        cum = np.cumsum(mass)
        return np.minimum(np.searchsorted(cum, rng.random(size) * cum[-1], side="right"),
                          n - 1)

    centres[0] = X[draw(w, 1)[0]]
    closest = sq_distances(X, centres[:1])[:, 0]
    for k in range(1, n_components):
        mass = w * closest
        if mass.sum() <= 0:  # every point coincides with a centre: pick any points
            centres[k] = X[draw(w, 1)[0]]
            continue
        cand = draw(mass, n_trials)
        cand_d = np.minimum(closest[:, None], sq_distances(X, X[cand]))
        best = int(np.argmin(w @ cand_d))
        centres[k] = X[cand[best]]
        closest = cand_d[:, best]
    return centres


def _cluster_sums(X: np.ndarray, labels: np.ndarray, w: np.ndarray,
                  n_clusters: int) -> tuple[np.ndarray, np.ndarray]:
    """Per cluster: the total weight (C,) and the weighted sum of its rows (C, D); row ``i``
    belongs to the clusters ``labels[i]`` (one per centre set, (n, S)).  By one matrix
    product (a loop over the features was most of the initialisation's time)."""
    onehot = np.zeros((X.shape[0], n_clusters))
    onehot[np.arange(X.shape[0])[:, None], labels] = w[:, None]
    with np.errstate(over="ignore", invalid="ignore"):   # sums beyond the float range
        return onehot.sum(axis=0), onehot.T @ X


def lloyd(X: np.ndarray, centres: np.ndarray, n_iter: int = 10,
          sample_weight: np.ndarray | None = None) -> np.ndarray:
    """A few weighted Lloyd iterations; an emptied cluster keeps its old centre."""
    return lloyd_sets(X, centres[None], n_iter, sample_weight)[0]


def lloyd_sets(X: np.ndarray, centre_sets: np.ndarray, n_iter: int = 10,
               sample_weight: np.ndarray | None = None) -> np.ndarray:
    """:func:`lloyd` from each of ``S`` centre sets (S, K, D) at once (one distance product
    and one weighted count per iteration for all of them); each set stops when its
    centres move by less than 1e-10, as alone."""
    w = _unit(sample_weight, X.shape[0])
    n, d = X.shape
    k = centre_sets.shape[1]
    centre_sets = centre_sets.copy()
    active = np.arange(len(centre_sets))
    for _ in range(n_iter):
        if not active.size:
            break
        centres = centre_sets[active]                          # (A, K, D)
        dist = sq_distances(X, centres.reshape(-1, d)).reshape(n, len(active), k)
        labels = np.argmin(dist, axis=2) + k * np.arange(len(active))
        mass, sums = _cluster_sums(X, labels, w, len(active) * k)
        mass, sums = mass.reshape(len(active), k), sums.reshape(len(active), k, d)
        nonempty = mass > 0
        new = centres.copy()
        new[nonempty] = sums[nonempty] / mass[nonempty][:, None]
        new = np.where(np.isfinite(new), new, centres)  # sums beyond the float range
        settled = np.all(np.abs(new - centres) <= 1e-10, axis=(1, 2))
        centre_sets[active] = new
        active = active[~settled]
    return centre_sets


def params_from_centres(
    X: np.ndarray, centres: np.ndarray, min_variance: float,
    sample_weight: np.ndarray | None = None, overall: np.ndarray | None = None,
) -> MixtureParams:
    """Hard-assign points to the nearest centre and take weighted moments per cluster.

    Weights are cluster weight fractions (an empty cluster gets half a point),
    means the centres, variances the per-cluster variances floored at
    ``max(min_variance, 1e-3 * overall variance)`` so no component starts degenerate.
    The overall variance is robust (:func:`_robust_variance`): one far outlier
    must not give every component a huge starting variance.  A cluster with
    fewer than two distinct rows borrows ``overall / K``.  ``overall`` may be passed
    in when several centre sets are scored on the same data.
    """
    return params_from_centre_sets(X, centres[None], min_variance, sample_weight, overall)[0]


def params_from_centre_sets(
    X: np.ndarray, centre_sets: np.ndarray, min_variance: float,
    sample_weight: np.ndarray | None = None, overall: np.ndarray | None = None,
) -> list[MixtureParams]:
    """:func:`params_from_centres` for each of ``C`` centre sets (C, K, D) at once: one
    distance product and one weighted count for all of them (the candidates of
    ``init="auto"`` on small data cost mostly NumPy's per-call overhead)."""
    n, d = X.shape
    n_sets, k = centre_sets.shape[:2]
    w = _unit(sample_weight, n)
    flat_centres = centre_sets.reshape(n_sets * k, d)
    labels = np.argmin(sq_distances(X, flat_centres).reshape(n, n_sets, k), axis=2)
    cluster = labels + k * np.arange(n_sets)   # (n, C): index into the C * K clusters
    mass = np.bincount(cluster.ravel(), weights=np.repeat(w, n_sets), minlength=n_sets * k)
    overall = _robust_variance(X, w) if overall is None else overall
    floor = np.maximum(min_variance, 1e-3 * overall)
    floor = np.where(floor > 0, floor, max(min_variance, 1e-12))
    with np.errstate(over="ignore", invalid="ignore"):
        # each row's share of its cluster's variance, summed per cluster (a bincount adds
        # only a row's own cluster: a far row's inf never meets another cluster as 0 * inf)
        diff = X[:, None, :] - flat_centres[cluster]
        share = (w[:, None] / mass[cluster])[:, :, None] * (diff * diff)
        variances = np.bincount((cluster[:, :, None] * d + np.arange(d)).ravel(),
                                weights=share.ravel(), minlength=n_sets * k * d)
    variances = variances.reshape(n_sets, k, d)
    small = np.bincount(cluster.ravel(), minlength=n_sets * k).reshape(n_sets, k) < 2
    variances[small] = overall / k
    variances = np.maximum(bounded_variances(variances), floor)
    weights = np.maximum(mass.reshape(n_sets, k), 0.5 * min(1.0, w.min()))  # empty: half a row
    weights /= weights.sum(axis=1, keepdims=True)
    # MixtureParams.from_moments of each set, its checks and logarithms done for all at once
    logits, log_sigma = unconstrained_moments(weights, variances)
    flat = np.concatenate([centre_sets.reshape(n_sets, k * d), log_sigma.reshape(n_sets, k * d),
                           logits], axis=1).astype(X.dtype, copy=False)   # (C, K(2D+1))
    return [MixtureParams.unravel(row, k, d) for row in flat]


def params_from_resp(
    X: np.ndarray, resp: np.ndarray, min_variance: float,
    sample_weight: np.ndarray | None = None, overall: np.ndarray | None = None,
) -> MixtureParams:
    """Weighted moments under soft assignments ``resp`` (n, K), rows normalised to one
    (scikit-learn's ``init_params="random"``: uniform random responsibilities, then an
    M-step); variances floored as in :func:`params_from_centres`."""
    w = _unit(sample_weight, X.shape[0])
    resp = resp / resp.sum(axis=1, keepdims=True)
    wr = resp * w[:, None]
    nk = wr.sum(axis=0) + 10 * np.finfo(np.float64).eps
    means = wr.T @ X / nk[:, None]
    variances = np.stack([wr[:, k] @ (X - means[k]) ** 2 for k in range(len(nk))]) / nk[:, None]
    overall = _robust_variance(X, w) if overall is None else overall
    floor = np.maximum(min_variance, 1e-3 * overall)
    floor = np.where(floor > 0, floor, max(min_variance, 1e-12))
    return MixtureParams.from_moments(nk / nk.sum(), means, np.maximum(variances, floor),
                                      dtype=X.dtype)


def _robust_variance(X: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Per-feature ``min(variance, (IQR / 1.349)^2)``, weighted; the variance where the IQR
    is 0.  Quantiles use the inverted CDF, so weights equal repeated rows exactly."""
    with np.errstate(over="ignore", invalid="ignore"):
        mean = (w / w.sum()) @ X
        scaled = np.sqrt(w / w.sum())[:, None] * (X - mean)
        var = bounded_variances(np.einsum("ij,ij->j", scaled, scaled))
    q1, q3 = _weighted_quartiles(X, w)
    iqr_var = ((q3 - q1) / IQR_NORMAL) ** 2
    return bounded_variances(np.where(iqr_var > 0, np.minimum(var, iqr_var), var))


def _weighted_quartiles(X: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Per-feature weighted first and third quartiles (2, D) of finite rows ``X`` (n, D):
    ``np.percentile(X, [25, 75], axis=0, weights=..., method="inverted_cdf")`` (the smallest
    value whose cumulative weight share reaches the quantile), computed in one sort of the
    columns instead of NumPy's per-column loop."""
    order = np.argsort(X, axis=0)
    cdf = np.asarray(w)[order].cumsum(axis=0, dtype=np.float64)
    cdf /= cdf[-1]
    cdf[cdf == 0] = -1   # leading zero weights: never the quantile (as in NumPy)
    below = (cdf < np.array([0.25, 0.75])[:, None, None]).sum(axis=1)
    index = np.minimum(below, len(X) - 1)
    return np.take_along_axis(X, np.take_along_axis(order, index, axis=0), axis=0)


def init_params(
    X: np.ndarray,
    n_components: int,
    method: str,
    rng: np.random.Generator,
    min_variance: float = 1e-6,
    n_candidates: int = 5,
    max_rows: int = 20_000,
    sample_weight: np.ndarray | None = None,
    polish: Callable[[np.ndarray, np.ndarray, list[MixtureParams]],
                     list[tuple[MixtureParams, float]]] | None = None,
    score: Callable[[np.ndarray, MixtureParams, np.ndarray], float] = nll,
) -> MixtureParams:
    """Initial parameters by ``"kmeans++"`` (seeding, then 10 Lloyd steps),
    ``"kmeans"`` (same, to convergence up to 100 steps), ``"random_points"`` (K random
    distinct rows, drawn in proportion to their weight, as means; scikit-learn calls it
    ``"random_from_data"``) or ``"random"`` (uniform random responsibilities, then the
    weighted moments, :func:`params_from_resp`).  ``"auto"``: with ``polish``,
    :data:`AUTO_CANDIDATES` ``"random_points"`` candidates; without, ``"kmeans++"``.

    Works on the distinct rows with their weights (:func:`distinct_rows`).
    ``n_candidates`` initialisations are drawn and the one with the lowest weighted
    mixture NLL on the data is returned (cheap: one E-step each, versus a full
    restart).  With ``polish(X, w, candidates) -> [(params, mean log-likelihood), ...]``
    (a few EM steps from each candidate on the same rows, all in one call,
    :func:`mogsgd.solvers.runs.initial_params`) each candidate is polished first and the
    one with the highest polished likelihood is returned: which basin a start leads to
    shows after a few EM steps, not at the start (on tables with discrete columns a
    component collapsing onto a repeated value is worth several nats per row).
    ``score(X, params, w)`` is the weighted mean NLL that ranks unpolished candidates
    (:func:`mogsgd.density.nll`; the caller may pass a compiled one with the same value).
    Seeding works on a random subset of at most ``max_rows`` rows (drawn before the distinct rows
    are taken, so large data sets are never sorted whole).
    """
    check_choice("init", method, INIT_METHODS)
    method = "random_points" if method == "random_from_data" else method  # scikit-learn's name
    if method == "auto":
        method, n_candidates = (("kmeans++", n_candidates) if polish is None
                                else ("random_points", AUTO_CANDIDATES))
    if X.shape[0] > max_rows:  # sorting all rows would cost more than the seeding itself
        keep = np.sort(rng.choice(X.shape[0], size=max_rows, replace=False))
        X = X[keep]
        sample_weight = None if sample_weight is None else np.asarray(sample_weight)[keep]
    X, w = distinct_rows(X, sample_weight)
    overall = _robust_variance(X, w)
    if method == "random_points":   # every draw first (the same draws as one at a time)
        if X.shape[0] < n_components:
            picks = [rng.choice(X.shape[0], size=n_components) for _ in range(n_candidates)]
        else:
            picks = [_weighted_draw(rng, w / w.sum(), n_components) for _ in range(n_candidates)]
        picks = np.array(picks, dtype=np.intp).reshape(n_candidates, n_components)
        candidates = params_from_centre_sets(X, X[picks], min_variance, w, overall)
    elif method == "random":
        candidates = [params_from_resp(X, rng.uniform(size=(X.shape[0], n_components)),
                                       min_variance, w, overall) for _ in range(n_candidates)]
    else:
        # every seeding first (Lloyd draws nothing: the same draws as one at a time), then
        # the Lloyd steps and moments of all candidates together
        seeds = np.stack([kmeans_plusplus(X, n_components, rng, w) for _ in range(n_candidates)])
        centre_sets = lloyd_sets(X, seeds, 10 if method == "kmeans++" else 100, w)
        candidates = params_from_centre_sets(X, centre_sets, min_variance, w, overall)
    scored = ([(cand, -loglik) for cand, loglik in polish(X, w, candidates)]
              if polish is not None else [(cand, score(X, cand, w)) for cand in candidates])
    best, best_nll = None, np.inf
    for cand, value in scored:
        # polished candidates often reach the same optimum (up to the order of the
        # components): a difference of rounding size is a tie, and the first one stays, so
        # the choice does not depend on the data's units
        tie = max(TIE, 100 * np.finfo(cand.dtype).eps) * max(1.0, abs(best_nll))
        if best is None or value < (best_nll - tie if np.isfinite(best_nll) else best_nll):
            best, best_nll = cand, value
    return best
