"""Expectation-maximisation for the same model, reusing the same density code.

The E-step is :func:`mogsgd.density.log_prob_and_log_resp`; the M-step is the
zero of the analytic gradient (eqs. 27-30).  Sufficient statistics are
accumulated per block in an additive :class:`EMStats`, centred at the current
means (the shifted-data algorithm) so variances are not computed as
``E[x^2] - E[x]^2`` of raw data.  Blocks combine with :func:`combine_stats`,
which is how streaming and Dask run EM.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from mogsgd.density import (
    FAR_LOG_DENSITY,
    distance,
    log_prob,
    log_prob_and_log_resp,
    observed_mask,
)
from mogsgd.gradients import GradSums
from mogsgd.params import MixtureParams, bounded_variances

__all__ = ["EMStats", "em_stats", "combine_stats", "m_step", "em_step", "fit_em", "em_loop",
           "EMResult", "stats_from_grad_sums", "remaining_gain"]


class EMStats(NamedTuple):
    """Weighted sufficient statistics over some rows, centred at the current means.

    ``ll_sum = sum_i w_i log p(x_i)``; ``weight_sum = sum_i w_i``;
    ``nk`` (K,) ``= sum_i w_i gamma_ik``; ``nkd`` (K, D) the same over observed
    coordinates only; ``sx`` (K, D) ``= sum_i w_i gamma_ik (x_id - mu_kd)``;
    ``sxx`` (K, D) ``= sum_i w_i gamma_ik (x_id - mu_kd)^2``.
    """

    ll_sum: float
    weight_sum: float
    nk: np.ndarray
    nkd: np.ndarray
    sx: np.ndarray
    sxx: np.ndarray


def em_stats(
    X: np.ndarray, params: MixtureParams, sample_weight: np.ndarray | None = None
) -> EMStats:
    """E-step statistics of ``X`` (n, D) under ``params`` (eqs. 11, 27).

    A far row (every component beyond the saturation point of eq. 52) enters ``sx`` and
    ``sxx`` with the factor ``S'(h_ik)`` of eq. 53, as in the gradient sums: the M-step
    stays the zero of the gradient and its statistics stay finite.
    """
    X = np.asarray(X)
    observed = observed_mask(X)
    lp, lr = log_prob_and_log_resp(X, params)
    resp = np.exp(lr)
    if sample_weight is None:
        weight_sum, ll_sum = float(X.shape[0]), float(lp.sum())
    else:
        w = np.asarray(sample_weight, dtype=resp.dtype)
        resp *= w[:, None]
        weight_sum, ll_sum = float(w.sum()), float(w @ lp)
    k_comp, d = params.means.shape
    nk = resp.sum(axis=0)
    all_resp = resp
    far = np.flatnonzero(lp < FAR_LOG_DENSITY)
    if len(far):
        far_resp = resp[far]
        resp = resp.copy()
        resp[far] = 0.0  # their moments come from the saturated distance below
    nkd = np.empty((k_comp, d))
    sx = np.empty((k_comp, d))
    sxx = np.empty((k_comp, d))
    for k in range(k_comp):
        diff = X - params.means[k]
        if observed is not None:
            diff = np.where(observed > 0, diff, 0.0)
            nkd[k] = all_resp[:, k] @ observed
        else:
            nkd[k] = nk[k]
        # sqrt(r) * diff, squared and summed: a far row (diff * diff = inf) of zero
        # responsibility adds 0, not 0 * inf = NaN
        root = np.sqrt(resp[:, k])
        scaled = root[:, None] * diff
        if not np.isfinite(scaled).all():
            scaled = np.where(root[:, None] > 0, scaled, 0.0)
        sx[k] = root @ scaled
        sxx[k] = np.einsum("ij,ij->j", scaled, scaled)
        if len(far):
            dist = distance(X[far], params.means[k], params.log_sigma[k],
                            None if observed is None else observed[far])
            diff = dist.z * np.exp(params.log_sigma[k])   # sqrt(S') (x - mu), eq. 53
            slope = far_resp[:, k] if dist.root is None else far_resp[:, k] * dist.root
            sx[k] += slope @ diff
            sxx[k] += far_resp[:, k] @ (diff * diff)
    return EMStats(ll_sum, weight_sum, nk, nkd, sx, sxx)


def stats_from_grad_sums(sums: GradSums, params: MixtureParams) -> EMStats:
    """The E-step statistics from the analytic gradient sums of the same rows (no missing
    values): the M-step is the zero of the gradient (eqs. 27-30), so the gradient sums hold
    the centred statistics, ``N_k = W pi_k - g_alpha_k`` (eq. 17),
    ``sx_kd = -sigma_kd^2 g_mu_kd`` (eq. 13) and ``sxx_kd = sigma_kd^2 (N_k - g_s_kd)``
    (eq. 15).  One fused pass (:func:`mogsgd.fast.nll_grad_sums`) then serves EM too."""
    var = np.exp(2.0 * params.log_sigma.astype(np.float64))
    nk = sums.weight_sum * params.weights.astype(np.float64) - sums.logits
    nkd = np.broadcast_to(nk[:, None], var.shape).copy()
    return EMStats(-sums.nll_sum, sums.weight_sum, nk, nkd, -var * sums.means,
                   var * (nkd - sums.log_sigma))


def combine_stats(parts) -> EMStats:
    """Add :class:`EMStats` of disjoint row sets (all taken at the same parameters)."""
    parts = list(parts)
    if not parts:
        raise ValueError("combine_stats needs at least one EMStats")
    return EMStats(*(sum(f) for f in zip(*parts, strict=True)))


def m_step(stats: EMStats, params: MixtureParams, reg_covar: float,
           floor: float = 0.0) -> MixtureParams:
    """M-step from centred statistics (eqs. 27-30).

    ``pi_k = N_k / W``; ``mu_kd = mu_kd^old + sx_kd / N_kd``;
    ``sigma_kd^2 = max(sxx_kd / N_kd - (sx_kd / N_kd)^2 + reg_covar, floor)``.  With
    ``reg_covar=0`` and ``floor=v_min`` it is the exact maximiser under the variance floor
    of SGD (eq. 26), the optimum SGD itself approaches.  A component with (numerically) no
    responsibility keeps its old mean and variance and a tiny weight instead of producing
    NaN.
    """
    tiny = 10.0 * np.finfo(np.float64).eps * max(stats.weight_sum, 1.0)
    nk = np.maximum(stats.nk, tiny)
    nkd = np.maximum(stats.nkd, tiny)
    with np.errstate(over="ignore", invalid="ignore"):
        shift = stats.sx / nkd
        means = params.means + shift
        # data near the float range: bounded, not inf / NaN (the next step re-centres)
        variances = bounded_variances(np.maximum(
            np.maximum(stats.sxx / nkd - shift * shift, 0.0) + reg_covar, floor))
    means = np.where(np.isfinite(means), means, params.means)
    dead = stats.nkd <= tiny
    if dead.any():
        means = np.where(dead, params.means, means)
        variances = np.where(dead, params.variances, variances)
    weights = nk / nk.sum()
    return MixtureParams.from_moments(weights, means, variances, dtype=params.dtype)


def em_step(
    X: np.ndarray, params: MixtureParams, reg_covar: float = 1e-6,
    sample_weight: np.ndarray | None = None,
) -> tuple[MixtureParams, float]:
    """One EM iteration; returns the new parameters and the mean log-likelihood
    of the *old* parameters (what the E-step computed)."""
    stats = em_stats(X, params, sample_weight)
    return m_step(stats, params, reg_covar), stats.ll_sum / stats.weight_sum


@dataclass
class EMResult:
    """Outcome of :func:`fit_em`: parameters, per-iteration mean log-likelihoods, convergence."""

    params: MixtureParams
    log_likelihoods: list[float] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    converged: bool = False
    n_iter: int = 0


def fit_em(
    X: np.ndarray,
    params: MixtureParams,
    *,
    max_iter: int = 200,
    tol: float = 1e-6,
    reg_covar: float = 1e-6,
    sample_weight: np.ndarray | None = None,
) -> EMResult:
    """Batch EM on the rows ``X`` from ``params`` until the mean log-likelihood gains less
    than ``tol`` (:func:`em_loop` with the statistics of ``X``).

    ``log_likelihoods[t]`` is the mean log-likelihood of the parameters after
    ``t`` iterations (``[0]`` is the start; the last entry is that of the
    returned parameters), non-decreasing up to rounding.
    """
    def mean_loglik(p: MixtureParams) -> float:
        lp = log_prob(X, p)
        if sample_weight is None:
            return float(lp.mean())
        w = np.asarray(sample_weight, dtype=lp.dtype)
        return float(w @ lp / w.sum())

    return em_loop(lambda p: em_stats(X, p, sample_weight), mean_loglik, params,
                   max_iter=max_iter, tol=tol, reg_covar=reg_covar)


def em_loop(stats_fn: Callable[[MixtureParams], EMStats],
            loglik_fn: Callable[[MixtureParams], float], params: MixtureParams, *,
            max_iter: int = 200, tol: float = 1e-6, reg_covar: float = 1e-6,
            prior_loglik: float | None = None, floor: float = 0.0,
            update: Callable[..., MixtureParams] | None = None,
            extrapolate: bool = False) -> EMResult:
    """The EM iteration, with the data behind two functions (the package's one EM loop).

    ``stats_fn(params)`` returns the combined :class:`EMStats` of all rows (an in-memory
    pass, a streamed pass or a map-reduce over Dask workers), ``loglik_fn(params)`` their
    mean log-likelihood.  Each iteration is an E-step and an M-step (eqs. 27-30);
    it stops when the mean log-likelihood of consecutive iterates changes by less than
    ``tol``, or with ``extrapolate=True`` when the gain still to come, extrapolated from
    the last two gains (:func:`remaining_gain`), is below ``tol``.  ``prior_loglik`` (a
    warm start) is the mean log-likelihood of the iterate before ``params``, so the first
    iteration can already detect convergence (as scikit-learn compares with the previous
    fit's lower bound).  ``max_iter=0`` returns ``params`` with their log-likelihood.
    ``update(stats, params, reg_covar, floor)`` is
    the M-step (default :func:`m_step`, the diagonal one; a covariance family passes its
    own, :func:`mogsgd.covariance.ops.m_step`, eqs. 47-49).
    """
    update = m_step if update is None else update
    start = time.perf_counter()
    result = EMResult(params=params)
    lls = result.log_likelihoods
    for it in range(1, max_iter + 1):
        stats = stats_fn(params)
        ll_old = stats.ll_sum / stats.weight_sum
        params = update(stats, params, reg_covar, floor)
        lls.append(ll_old)
        result.times.append(time.perf_counter() - start)
        result.n_iter = it
        prev = lls[-2] if it > 1 else prior_loglik
        if extrapolate:
            done = it > 2 and remaining_gain(lls[-3], lls[-2], lls[-1]) < tol
        else:
            done = prev is not None and abs(ll_old - prev) < tol
        if done:
            result.converged = True
            break
    # the likelihood of the returned parameters
    lls.append(float(loglik_fn(params)))
    result.times.append(time.perf_counter() - start)
    result.params = params
    return result


def remaining_gain(ll0: float, ll1: float, ll2: float) -> float:
    """The mean log-likelihood EM still has to gain after three iterates: with the gains
    ``d1 = ll1 - ll0`` and ``d2 = ll2 - ll1`` shrinking by the rate ``r = d2 / d1`` (EM
    converges linearly), ``d2 r / (1 - r)`` (Aitken's extrapolation).  ``0`` when the last
    step gained nothing (the fixed point, up to rounding); ``inf`` while the gains do not
    shrink."""
    d1, d2 = ll1 - ll0, ll2 - ll1
    if d2 <= 0.0:
        return 0.0
    if d1 <= d2:
        return np.inf
    r = d2 / d1
    return d2 * r / (1.0 - r)
