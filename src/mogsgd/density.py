"""Log densities, log-likelihood and responsibilities — in log space only.

Every function here works on log quantities and combines components with a
max-shifted log-sum-exp (eq. 25), so a point hundreds of standard deviations
from every component still has a finite log-likelihood and well-defined
responsibilities.  Farther still, the half squared distance ``h = |z|^2 / 2``
saturates beyond ``H = 2^64`` (eq. 52): every finite input then has a finite
log-density and responsibilities that sum to one, whatever its distance, and
the gradient (eq. 53) stays finite.  Equation numbers refer to
``docs/derivations.md``.

Missing values: a NaN entry of ``X`` is *marginalised* — with a diagonal
covariance the integral over a missing coordinate is 1, so its term is dropped
from the sum in eq. 9 (eq. 34).  Whether NaN is accepted at all is decided by
the caller's validation (``missing="error"`` refuses it).

Shapes: ``X`` (n, D); parameters K components; outputs (n,), (n, K) or float.
The reference implementation loops over the K components with (n, D)
temporaries, never an (n, K, D) array.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from mogsgd.params import MixtureParams

__all__ = [
    "LOG_2PI",
    "H_SAT",
    "LOG_H_SAT",
    "FAR_LOG_DENSITY",
    "Distance",
    "saturate",
    "distance",
    "saturated",
    "logsumexp",
    "observed_mask",
    "log_gaussian",
    "weighted_log_prob",
    "log_prob",
    "log_prob_and_log_resp",
    "normalise",
    "log_resp",
    "responsibilities",
    "nll",
]

LOG_2PI = float(np.log(2.0 * np.pi))
LN2 = float(np.log(2.0))

#: The half squared distance ``h`` is used as it is up to ``H = 2^64`` (a point about 6e9
#: standard deviations from the component) and saturates beyond (eq. 52).  The same value
#: for every dtype: ``S(h) < 2^64 (1 + ln(h / 2^64)) < 1e23`` fits even float32.
H_SAT = 2.0**64
LOG_H_SAT = 64 * LN2

#: A row whose log-density is below this is a *far row*: its every component is beyond the
#: saturation point.  The compiled kernels recompute such rows by eq. 52 in log space; in
#: any other row a component beyond ``H`` has a responsibility of exactly 0.
FAR_LOG_DENSITY = -(2.0**63)


class Distance(NamedTuple):
    """One component's distances to the rows of ``X`` (eqs. 52, 53).

    ``half`` (n,): the saturated half squared distance ``S(h_i)``; ``z`` (n, D):
    ``sqrt(S'(h_i)) z_i``, which is ``z_i`` wherever ``h_i <= H`` (``|z|^2 <= 2H`` is
    always finite); ``root`` (n,): ``sqrt(S'(h_i))``, or ``None`` when every row has
    ``h_i <= H`` (then ``root`` is 1 and ``z`` the plain standardised residual).
    """

    half: np.ndarray
    z: np.ndarray
    root: np.ndarray | None


def saturate(log_h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(S(h), log S'(h))`` from ``log h`` (eq. 52): ``S(h) = h`` and ``S' = 1`` for
    ``h <= H``; ``S(h) = H (1 + ln(h / H))`` and ``S' = H / h`` beyond."""
    log_h = np.asarray(log_h)
    beyond = log_h > LOG_H_SAT
    half = np.where(beyond, H_SAT * (1.0 + (log_h - LOG_H_SAT)),
                    np.exp(np.minimum(log_h, LOG_H_SAT)))
    return half, np.where(beyond, LOG_H_SAT - log_h, 0.0)


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


def distance(X: np.ndarray, mean: np.ndarray, log_sigma, observed=None) -> Distance:
    """:class:`Distance` of the component ``(mean (D,), log_sigma (D,) or scalar)`` to every
    row of ``X`` (n, D) (eqs. 9, 52, 53).

    ``z = (x - mu) / sigma`` and ``h = |z|^2 / 2`` directly; rows where that is beyond
    ``H`` or not finite (``x - mu`` or ``1 / sigma`` beyond the float range) are recomputed
    in log space, ``log |z_d| = log |x_d - mu_d| - log sigma_d``, by :func:`saturated`.
    ``observed`` is :func:`observed_mask`'s value (missing entries count 0, eq. 34).
    """
    with np.errstate(over="ignore", invalid="ignore"):
        z = (X - mean) * np.exp(-log_sigma)
        if observed is not None:
            z = np.where(observed > 0, z, 0.0)
        half = 0.5 * np.einsum("ij,ij->i", z, z)
    far = ~(half <= H_SAT)  # beyond H, inf, or NaN (0 * inf; missing entries are 0 here)
    if not far.any():
        return Distance(half, z, None)
    rows = np.flatnonzero(far)
    Xf = X[rows]
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        u = Xf - mean
        over = np.isinf(u)
        if over.any():  # x and mu of opposite signs near the float range: halve both
            u = np.where(over, 0.5 * Xf - 0.5 * mean, u)
        log_abs_z = np.log(np.abs(u)) + np.where(over, LN2, 0.0) - log_sigma
        if observed is not None:
            log_abs_z = np.where(observed[rows] > 0, log_abs_z, -np.inf)
        log_m = np.max(log_abs_z, axis=1)
        log_m = np.where(np.isfinite(log_m), log_m, 0.0)  # every z_d = 0: h = 0
        zs = np.where(np.isfinite(log_abs_z), np.sign(u) * np.exp(log_abs_z - log_m[:, None]),
                      0.0)
    return _with_rows(Distance(half, z, None), rows, saturated(zs, log_m))


def saturated(zs: np.ndarray, log_scale: np.ndarray) -> Distance:
    """:class:`Distance` of rows given as ``z = zs exp(log_scale)`` with finite ``zs``
    (n, D) and ``log_scale`` (n,): ``log h = 2 log m + log sum_d (z_d / m)^2 - log 2``,
    ``m = max_d |z_d|``, then ``S(h)`` and ``sqrt(S'(h)) z`` (eqs. 52, 53), none of which
    overflows.  The one implementation of eq. 52 for every NumPy family."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        top = np.max(np.abs(zs), axis=1)
        safe = np.where(top > 0, top, 1.0)
        unit = zs / safe[:, None]                             # max_d |unit_d| = 1 (or all 0)
        log_m = np.log(safe) + log_scale
        log_h = 2.0 * log_m + np.log(np.einsum("ij,ij->i", unit, unit)) - LN2
        half, log_slope = saturate(log_h)
        zhat = unit * np.exp(log_m + 0.5 * log_slope)[:, None]
    return Distance(half, zhat, np.exp(0.5 * log_slope))


def _with_rows(direct: Distance, rows: np.ndarray, far: Distance) -> Distance:
    """``direct`` with ``rows`` replaced by ``far`` (and ``root`` 1 elsewhere)."""
    half, z = direct.half.copy(), direct.z.copy()
    half[rows], z[rows] = far.half, far.z
    root = np.ones_like(half)
    root[rows] = far.root
    return Distance(half, z, root)


def log_gaussian(X: np.ndarray, params: MixtureParams) -> np.ndarray:
    """``log N(x_i | mu_k, diag sigma_k^2)`` for all i, k (eq. 9).

    ``-1/2 sum_d [ z_ikd^2 + 2 log sigma_kd + log 2 pi ]`` with
    ``z_ikd = (x_id - mu_kd) / sigma_kd``; missing coordinates are left out of
    the sum (eq. 34).  The half squared distance saturates beyond ``2^64`` (eq. 52), so
    the result is finite for every finite ``x``.  Returns shape (n, K).
    """
    X = np.asarray(X)
    observed = observed_mask(X)
    n, d = X.shape
    dtype = np.result_type(X, params.dtype)
    out = np.empty((n, params.n_components), dtype=dtype)
    for k in range(params.n_components):
        half = distance(X, params.means[k], params.log_sigma[k], observed).half
        if observed is None:
            norm = params.log_sigma[k].sum() + 0.5 * d * LOG_2PI
        else:
            norm = observed @ (params.log_sigma[k] + 0.5 * LOG_2PI)
        out[:, k] = -half - norm
    return out


def weighted_log_prob(X: np.ndarray, params: MixtureParams) -> np.ndarray:
    """``log pi_k + log N(x_i | mu_k, sigma_k^2)``, shape (n, K) (eqs. 9, 12)."""
    return log_gaussian(X, params) + params.log_weights


def normalise(wlp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(log p(x_i), log gamma_ik)`` from weighted log densities ``wlp`` (n, K) (eqs. 10,
    11, 25).

    With the row maximum ``a*``: ``log p = a* + log s``, ``s = sum_k exp(wlp_k - a*)``, and
    ``log gamma = (wlp - a*) - log s``, not ``wlp - log p``: far from the data ``|a*|`` is so
    large that adding ``log s`` does not change it, and a tie would give two
    responsibilities of 1.  This way every row of ``gamma`` sums to one.
    """
    a_max = np.max(wlp, axis=1, keepdims=True)
    a_max = np.where(np.isfinite(a_max), a_max, 0.0)  # an all -inf row: shift by 0
    shifted = wlp - a_max
    with np.errstate(divide="ignore"):
        log_s = np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))
    return (log_s + a_max)[:, 0], shifted - log_s


def log_prob_and_log_resp(X: np.ndarray, params: MixtureParams) -> tuple[np.ndarray, np.ndarray]:
    """``(log p(x_i), log gamma_ik)`` in one pass, shapes (n,) and (n, K) (eqs. 10, 11)."""
    return normalise(weighted_log_prob(X, params))


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
