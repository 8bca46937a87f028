"""Online EM (Cappé & Moulines 2009): a second stochastic solver next to SGD.

Instead of following the gradient, online EM keeps a running average of the
E-step's sufficient statistics (per point),

    s_t = (1 - g_t) s_{t-1} + g_t sbar(B_t; theta_{t-1}),   g_t = (t + t0)^(-alpha)   (eq. 36)

with ``0.5 < alpha <= 1``, and sets ``theta_t = M-step(s_t)`` after each batch.
Optionally the iterates are Polyak–Ruppert averaged (eq. 37).

The statistics are :class:`mogsgd.em.EMStats` centred at the current means
(the same shifted-data form batch EM uses), so the M-step is exactly
:func:`mogsgd.em.m_step`.  After every M-step the running statistics are
re-centred at the new means: ``sx -> 0`` and ``sxx -> sxx - sx^2 / N_kd``,
which is the identity ``sum g (x - mu')^2 = sum g (x - mu)^2 - N (mu' - mu)^2``
with ``mu' - mu = sx / N``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from mogsgd.em import EMStats, em_stats, m_step
from mogsgd.errors import ValidationError
from mogsgd.params import MixtureParams

__all__ = ["OnlineEMState", "online_em_init", "online_em_step", "step_size",
           "check_online_em_settings"]


class OnlineEMState(NamedTuple):
    """Running per-point statistics, the step count and the Polyak–Ruppert average."""

    count: int
    stats: EMStats
    average: MixtureParams | None
    n_averaged: int


def check_online_em_settings(alpha: float, t0: float) -> None:
    if not (isinstance(alpha, int | float) and 0.5 < alpha <= 1.0):
        raise ValidationError(f"online EM needs 0.5 < alpha <= 1 (eq. 36), got alpha={alpha!r}")
    if not (isinstance(t0, int | float) and math.isfinite(t0) and t0 >= 0):
        raise ValidationError(f"online EM needs t0 >= 0, got t0={t0!r}")


def step_size(t: int, alpha: float, t0: float) -> float:
    """``g_t = (t + t0)^(-alpha)`` for the t-th batch (t = 1, 2, ...), capped at 1 (eq. 36)."""
    return min(1.0, float((t + t0) ** (-alpha)))


def _recentred(stats: EMStats, reg_covar: float, params: MixtureParams) -> EMStats:
    """Statistics centred at ``params.means`` that reproduce ``params`` under the M-step."""
    nkd = stats.nkd
    return EMStats(stats.ll_sum, stats.weight_sum, stats.nk, nkd, np.zeros_like(stats.sx),
                   np.maximum(params.variances - reg_covar, 0.0) * nkd)


def online_em_init(params: MixtureParams, reg_covar: float) -> OnlineEMState:
    """Statistics of one pseudo-point that reproduce ``params``: ``N_k = pi_k``."""
    w = params.weights.astype(np.float64)
    nkd = np.repeat(w[:, None], params.n_features, axis=1)
    stats = EMStats(0.0, 1.0, w, nkd, np.zeros_like(nkd),
                    np.maximum(params.variances - reg_covar, 0.0) * nkd)
    return OnlineEMState(0, stats, None, 0)


def online_em_step(
    X: np.ndarray,
    params: MixtureParams,
    state: OnlineEMState,
    *,
    alpha: float = 0.6,
    t0: float = 2.0,
    reg_covar: float = 1e-6,
    sample_weight: np.ndarray | None = None,
    average_after: int | None = None,
) -> tuple[MixtureParams, OnlineEMState, float]:
    """One online-EM update on the batch ``X`` (n, D).

    Returns ``(new_params, new_state, batch_nll)`` where ``batch_nll`` is the
    mean NLL of the batch under the *incoming* parameters.  With
    ``average_after = m``, iterates after step ``m`` are averaged (eq. 37) into
    ``state.average``.
    """
    batch = em_stats(X, params, sample_weight)
    w = batch.weight_sum
    t = state.count + 1
    g = step_size(t, alpha, t0)
    s = state.stats
    mixed = EMStats(
        0.0, 1.0,
        (1 - g) * s.nk + g * batch.nk / w,
        (1 - g) * s.nkd + g * batch.nkd / w,
        (1 - g) * s.sx + g * batch.sx / w,
        (1 - g) * s.sxx + g * batch.sxx / w,
    )
    new = m_step(mixed, params, reg_covar)
    average, n_avg = state.average, state.n_averaged
    if average_after is not None and t > average_after:
        n_avg += 1
        if average is None:
            average = new
        else:  # running mean of the natural parameters, mapped back
            frac = 1.0 / n_avg
            weights = (1 - frac) * average.weights + frac * new.weights
            means = (1 - frac) * average.means + frac * new.means
            variances = (1 - frac) * average.variances + frac * new.variances
            average = MixtureParams.from_moments(weights / weights.sum(), means, variances,
                                                 dtype=new.dtype)
    new_state = OnlineEMState(t, _recentred(mixed, reg_covar, new), average, n_avg)
    return new, new_state, -batch.ll_sum / w
