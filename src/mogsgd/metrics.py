"""Comparing a fitted mixture with the truth: component matching, accuracy, errors.

Mixture components are only identified up to a permutation, so every
comparison first matches fitted components to true ones.  Matching solves the
linear assignment problem with ``scipy.optimize.linear_sum_assignment`` when
SciPy is installed, and by brute force over permutations (K <= 8) otherwise.
"""

from __future__ import annotations

import itertools

import numpy as np

from mogsgd.covariance.ops import PARAMS_TYPES, permute_components
from mogsgd.errors import ValidationError
from mogsgd.params import MixtureParams

__all__ = [
    "match_components",
    "align_components",
    "matched_accuracy",
    "adjusted_rand_index",
    "parameter_errors",
]

_BRUTE_FORCE_MAX = 8


def _assign(cost: np.ndarray) -> np.ndarray:
    """Columns minimising ``sum_r cost[r, col[r]]`` with distinct columns; cost (R, C), R <= C."""
    n_rows, n_cols = cost.shape
    try:
        from scipy.optimize import linear_sum_assignment
    except ImportError:
        if n_rows > _BRUTE_FORCE_MAX:
            raise ImportError(
                f"matching {n_rows} components needs SciPy (pip install scipy); without it "
                f"only up to {_BRUTE_FORCE_MAX} components can be matched"
            ) from None
        rows = np.arange(n_rows)
        best = min(itertools.permutations(range(n_cols), n_rows),
                   key=lambda cols: cost[rows, list(cols)].sum())
        return np.asarray(best, dtype=np.intp)
    rows, cols = linear_sum_assignment(cost)
    out = np.empty(n_rows, dtype=np.intp)
    out[rows] = cols
    return out


def match_components(true_means, fitted_means) -> np.ndarray:
    """Match fitted components to true ones by their means.

    Minimises ``sum_k ||mu_k^true - mu_perm[k]^fitted||^2`` over one-to-one
    assignments (the Hungarian problem).

    Parameters
    ----------
    true_means : array of shape (K, D)
    fitted_means : array of shape (K_fit, D), K_fit >= K

    Returns
    -------
    perm : int array of shape (K,)
        ``perm[k]`` is the fitted component matched to true component ``k``,
        so ``fitted_means[perm]`` lines up with ``true_means``.
    """
    t = np.asarray(true_means, dtype=np.float64)
    f = np.asarray(fitted_means, dtype=np.float64)
    if t.ndim != 2 or f.ndim != 2 or t.shape[1] != f.shape[1]:
        raise ValidationError(
            f"true_means and fitted_means must be (K, D) arrays with the same D, got shapes "
            f"{t.shape} and {f.shape}"
        )
    if f.shape[0] < t.shape[0]:
        raise ValidationError(
            f"cannot match {t.shape[0]} true components with only {f.shape[0]} fitted ones"
        )
    cost = np.sum((t[:, None, :] - f[None, :, :]) ** 2, axis=-1)
    return _assign(cost)


def align_components(true: MixtureParams, fitted: MixtureParams) -> MixtureParams:
    """``fitted`` with its components reordered to line up with ``true`` (same K)."""
    _check_same_shape(true, fitted)
    perm = match_components(true.means, fitted.means)
    return permute_components(fitted, perm)


def matched_accuracy(y_true, y_pred) -> float:
    """Accuracy of ``y_pred`` after the best one-to-one relabelling of its clusters.

    ``max_perm (1/n) sum_i [perm(y_pred_i) == y_true_i]``, solved as an
    assignment problem on the contingency table.  Shapes (n,) and (n,).
    """
    t = np.asarray(y_true)
    p = np.asarray(y_pred)
    if t.ndim != 1 or t.shape != p.shape:
        raise ValidationError(f"y_true and y_pred must be 1-D of equal length, got shapes "
                              f"{t.shape} and {p.shape}")
    if t.size == 0:
        raise ValidationError("y_true and y_pred are empty")
    t_labels, t_idx = np.unique(t, return_inverse=True)
    p_labels, p_idx = np.unique(p, return_inverse=True)
    table = np.zeros((len(t_labels), len(p_labels)), dtype=np.int64)
    np.add.at(table, (t_idx, p_idx), 1)
    if table.shape[0] > table.shape[1]:
        table = table.T
    cols = _assign(-table)
    return float(table[np.arange(table.shape[0]), cols].sum() / t.size)


def adjusted_rand_index(y_true, y_pred) -> float:
    """Adjusted Rand index of two labelings (``sklearn.metrics.adjusted_rand_score``).

    1 for identical partitions (whatever the label names), about 0 for random ones.
    """
    from sklearn.metrics import adjusted_rand_score

    return float(adjusted_rand_score(np.asarray(y_true), np.asarray(y_pred)))


def parameter_errors(true: MixtureParams, fitted: MixtureParams) -> dict[str, float]:
    """Largest absolute errors after matching components by their means.

    Returns
    -------
    dict with float entries
        ``"weights"``: ``max_k |pi_k - pi_perm[k]|``;
        ``"means"``: ``max_kd |mu_kd - mu_perm[k]d|``;
        ``"sigmas"``: ``max_kd |sigma_kd - sigma_perm[k]d|`` (standard deviations,
        data units).
    """
    aligned = align_components(true, fitted)
    return {
        "weights": float(np.max(np.abs(true.weights - aligned.weights))),
        "means": float(np.max(np.abs(true.means - aligned.means))),
        "sigmas": float(np.max(np.abs(true.sigma - aligned.sigma))),
    }


def _check_same_shape(true: MixtureParams, fitted: MixtureParams) -> None:
    for name, p in (("true", true), ("fitted", fitted)):
        if type(p) not in PARAMS_TYPES:
            raise TypeError(f"{name} must be a MixtureParams (or another covariance "
                            f"family's parameters), got {type(p).__name__}")
    if (true.n_components, true.n_features) != (fitted.n_components, fitted.n_features):
        raise ValidationError(
            f"true has K={true.n_components}, D={true.n_features} but fitted has "
            f"K={fitted.n_components}, D={fitted.n_features}"
        )
