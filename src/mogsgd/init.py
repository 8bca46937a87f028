"""Initial parameters: k-means++ seeding (+ a few Lloyd steps) or random data points.

Both methods turn a set of centres into a full :class:`MixtureParams` the same
way (:func:`params_from_centres`): hard-assign every point to its nearest
centre, then take per-cluster weights, means and floored variances.
"""

from __future__ import annotations

import numpy as np

from mogsgd.density import nll
from mogsgd.params import MixtureParams
from mogsgd.validation import check_choice

__all__ = ["INIT_METHODS", "sq_distances", "kmeans_plusplus", "lloyd", "params_from_centres",
           "init_params"]

INIT_METHODS = ("kmeans++", "kmeans", "random_points")


def sq_distances(X: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances ``||x_i - c_k||^2``, shape (n, K); one (n, D) temporary."""
    out = np.empty((X.shape[0], centres.shape[0]), dtype=np.result_type(X, centres))
    for k, c in enumerate(centres):
        diff = X - c
        out[:, k] = np.einsum("ij,ij->i", diff, diff)
    return out


def kmeans_plusplus(X: np.ndarray, n_components: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding (Arthur & Vassilvitskii 2007), greedy with ``2 + log K`` trials.

    Each new centre is sampled with probability proportional to the squared
    distance to the nearest chosen centre; of several candidates the one that
    lowers the potential most is kept.  Returns centres of shape (K, D).
    """
    n = X.shape[0]
    n_trials = 2 + int(np.log(n_components))
    centres = np.empty((n_components, X.shape[1]), dtype=X.dtype)
    centres[0] = X[rng.integers(n)]
    closest = sq_distances(X, centres[:1])[:, 0]
    for k in range(1, n_components):
        total = closest.sum()
        if total <= 0:  # every point coincides with a centre: pick any points
            centres[k] = X[rng.integers(n)]
            continue
        cand = np.searchsorted(np.cumsum(closest), rng.random(n_trials) * total)
        cand = np.minimum(cand, n - 1)
        cand_d = np.minimum(closest[:, None], sq_distances(X, X[cand]))
        best = int(np.argmin(cand_d.sum(axis=0)))
        centres[k] = X[cand[best]]
        closest = cand_d[:, best]
    return centres


def lloyd(X: np.ndarray, centres: np.ndarray, n_iter: int = 10) -> np.ndarray:
    """A few Lloyd iterations from ``centres``; an emptied cluster keeps its old centre."""
    centres = centres.copy()
    for _ in range(n_iter):
        labels = np.argmin(sq_distances(X, centres), axis=1)
        counts = np.bincount(labels, minlength=len(centres))
        sums = np.zeros_like(centres)
        np.add.at(sums, labels, X)
        nonempty = counts > 0
        new = centres.copy()
        new[nonempty] = sums[nonempty] / counts[nonempty, None]
        if np.allclose(new, centres, rtol=0, atol=1e-10):
            return new
        centres = new
    return centres


def params_from_centres(
    X: np.ndarray, centres: np.ndarray, min_variance: float
) -> MixtureParams:
    """Hard-assign points to the nearest centre and take moments per cluster.

    Weights are cluster fractions (an empty cluster gets half a point), means
    the centres, variances the per-cluster variances floored at
    ``max(min_variance, 1e-3 * overall variance)`` so no component starts degenerate.
    The overall variance is robust (:func:`_robust_variance`): one far outlier
    must not give every component a huge starting variance.
    """
    n, d = X.shape
    k = centres.shape[0]
    labels = np.argmin(sq_distances(X, centres), axis=1)
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    overall = _robust_variance(X)
    floor = np.maximum(min_variance, 1e-3 * overall)
    floor = np.where(floor > 0, floor, max(min_variance, 1e-12))
    variances = np.empty((k, d))
    for j in range(k):
        members = X[labels == j]
        if len(members) >= 2:
            variances[j] = ((members - centres[j]) ** 2).mean(axis=0)
        else:  # a singleton or empty cluster borrows the overall spread
            variances[j] = overall / k
    variances = np.maximum(variances, floor)
    weights = np.maximum(counts, 0.5)
    weights /= weights.sum()
    return MixtureParams.from_moments(weights, centres, variances, dtype=X.dtype)


def _robust_variance(X: np.ndarray) -> np.ndarray:
    """Per-feature ``min(variance, (IQR / 1.349)^2)``; the variance where the IQR is 0."""
    var = X.var(axis=0)
    q1, q3 = np.percentile(X, [25.0, 75.0], axis=0)
    iqr_var = ((q3 - q1) / 1.3489795003921634) ** 2
    return np.where(iqr_var > 0, np.minimum(var, iqr_var), var)


def init_params(
    X: np.ndarray,
    n_components: int,
    method: str,
    rng: np.random.Generator,
    min_variance: float = 1e-6,
    n_candidates: int = 5,
    max_rows: int = 20_000,
) -> MixtureParams:
    """Initial parameters by ``"kmeans++"`` (seeding, then 10 Lloyd steps),
    ``"kmeans"`` (same, to convergence up to 100 steps) or ``"random_points"``
    (K distinct random rows as means).

    ``n_candidates`` initialisations are drawn and the one with the lowest mixture
    NLL on the data is returned (cheap: one E-step each, versus a full restart).
    Seeding works on a random subset of at most ``max_rows`` rows.
    """
    check_choice("init", method, INIT_METHODS)
    if X.shape[0] > max_rows:
        X = X[rng.choice(X.shape[0], size=max_rows, replace=False)]
    best, best_nll = None, np.inf
    for _ in range(n_candidates):
        if method == "random_points":
            idx = rng.choice(X.shape[0], size=n_components, replace=X.shape[0] < n_components)
            centres = X[idx].copy()
        else:
            centres = kmeans_plusplus(X, n_components, rng)
            centres = lloyd(X, centres, n_iter=10 if method == "kmeans++" else 100)
        cand = params_from_centres(X, centres, min_variance)
        value = nll(X, cand)
        if best is None or value < best_nll:
            best, best_nll = cand, value
    return best
