"""Log densities, log-likelihood and responsibilities — in log space only.

Every function here works on log quantities and combines components with a
max-shifted log-sum-exp (eq. 25), so a point hundreds of standard deviations
from every component still has a finite log-likelihood and well-defined
responsibilities.  Equation numbers refer to ``docs/derivations.md``.

Missing values: a NaN entry of ``X`` is *marginalised* — with a diagonal
covariance the integral over a missing coordinate is 1, so its term is dropped
from the sum in eq. 9 (eq. 34).  Whether NaN is accepted at all is decided by
the caller's validation (``missing="error"`` refuses it).

Shapes: ``X`` (n, D); parameters K components; outputs (n,), (n, K) or float.
The reference implementation loops over the K components with (n, D)
temporaries, never an (n, K, D) array.
"""

from __future__ import annotations

import numpy as np

from mogsgd.params import MixtureParams

__all__ = [
    "LOG_2PI",
    "logsumexp",
    "observed_mask",
    "log_gaussian",
    "weighted_log_prob",
    "log_prob",
    "log_prob_and_log_resp",
    "log_resp",
    "responsibilities",
    "nll",
]

LOG_2PI = float(np.log(2.0 * np.pi))


def logsumexp(a: np.ndarray, axis: int = -1, keepdims: bool = False) -> np.ndarray:
    """``log sum_j exp(a_j)`` along ``axis``, computed as ``a* + log sum exp(a - a*)`` (eq. 25).

    Rows that are all ``-inf`` give ``-inf`` (not NaN); an empty axis gives
    ``-inf``; ``[1000, 1000]`` gives exactly ``1000 + log 2``.
    """
    a = np.asarray(a)
    if a.shape[axis] == 0:
        shape = list(a.shape)
        if keepdims:
            shape[axis] = 1
        else:
            del shape[axis]
        return np.full(shape, -np.inf, dtype=np.result_type(a, np.float32))
    a_max = np.max(a, axis=axis, keepdims=True)
    # an all -inf row would make (a - a_max) NaN; shift by 0 there instead
    a_max = np.where(np.isfinite(a_max), a_max, 0.0)
    with np.errstate(divide="ignore"):
        out = np.log(np.sum(np.exp(a - a_max), axis=axis, keepdims=True)) + a_max
    return out if keepdims else np.squeeze(out, axis=axis)


def observed_mask(X: np.ndarray) -> np.ndarray | None:
    """``None`` when ``X`` has no NaN; else a float array (n, D), 1 where observed."""
    nan = np.isnan(X)
    if not nan.any():
        return None
    return (~nan).astype(X.dtype)


def _standardised(X: np.ndarray, params: MixtureParams, k: int, observed) -> np.ndarray:
    """``z_id = (x_id - mu_kd) / sigma_kd`` for one component, shape (n, D); 0 where missing."""
    z = (X - params.means[k]) * np.exp(-params.log_sigma[k])
    if observed is not None:
        z = np.where(observed > 0, z, 0.0)
    return z


def log_gaussian(X: np.ndarray, params: MixtureParams) -> np.ndarray:
    """``log N(x_i | mu_k, diag sigma_k^2)`` for all i, k (eq. 9).

    ``-1/2 sum_d [ z_ikd^2 + 2 log sigma_kd + log 2 pi ]`` with
    ``z_ikd = (x_id - mu_kd) / sigma_kd``; missing coordinates are left out of
    the sum (eq. 34).  Returns shape (n, K).
    """
    X = np.asarray(X)
    observed = observed_mask(X)
    n, d = X.shape
    dtype = np.result_type(X, params.dtype)
    out = np.empty((n, params.n_components), dtype=dtype)
    for k in range(params.n_components):
        z = _standardised(X, params, k, observed)
        quad = np.einsum("ij,ij->i", z, z)
        if observed is None:
            norm = params.log_sigma[k].sum() + 0.5 * d * LOG_2PI
        else:
            norm = observed @ (params.log_sigma[k] + 0.5 * LOG_2PI)
        out[:, k] = -0.5 * quad - norm
    return out


def weighted_log_prob(X: np.ndarray, params: MixtureParams) -> np.ndarray:
    """``log pi_k + log N(x_i | mu_k, sigma_k^2)``, shape (n, K) (eqs. 9, 12)."""
    return log_gaussian(X, params) + params.log_weights


def log_prob_and_log_resp(X: np.ndarray, params: MixtureParams) -> tuple[np.ndarray, np.ndarray]:
    """``(log p(x_i), log gamma_ik)`` in one pass, shapes (n,) and (n, K) (eqs. 10, 11)."""
    wlp = weighted_log_prob(X, params)
    lp = logsumexp(wlp, axis=1)
    return lp, wlp - lp[:, None]


def log_prob(X: np.ndarray, params: MixtureParams) -> np.ndarray:
    """``log p(x_i) = logsumexp_k(log pi_k + log N_ik)``, shape (n,) (eq. 10)."""
    return logsumexp(weighted_log_prob(X, params), axis=1)


def log_resp(X: np.ndarray, params: MixtureParams) -> np.ndarray:
    """``log gamma_ik = log pi_k + log N_ik - log p(x_i)``, shape (n, K) (eq. 11)."""
    return log_prob_and_log_resp(X, params)[1]


def responsibilities(X: np.ndarray, params: MixtureParams) -> np.ndarray:
    """``gamma_ik = p(z_i = k | x_i)``, shape (n, K); each row sums to one (eq. 11)."""
    return np.exp(log_resp(X, params))


def nll(X: np.ndarray, params: MixtureParams, sample_weight: np.ndarray | None = None) -> float:
    """Mean negative log-likelihood ``-(1/n) sum_i log p(x_i)`` (eq. 18).

    With ``sample_weight`` w (n,): ``-sum_i w_i log p(x_i) / sum_i w_i`` (eq. 31).
    """
    lp = log_prob(X, params)
    if sample_weight is None:
        return float(-np.mean(lp))
    w = np.asarray(sample_weight, dtype=lp.dtype)
    return float(-(w @ lp) / w.sum())
standardised = _standardised  # public name (gradients uses it)
