"""Online EM (eqs. 36, 37) for every covariance family, on the family's centred statistics.

The recursion is :mod:`mogsgd.online_em`'s, written once over the protocol: mix the
running per-point statistics with the batch's, ``s_t = (1 - g_t) s_{t-1} + g_t sbar``,
apply the family's M-step, and re-centre the running statistics at the new means
(:meth:`CovarianceFamily.recentre`) so the next batch's centred statistics add to
them.  With ``average_after = m`` the iterates after step ``m`` are Polyak-Ruppert
averaged in natural parameters (weights, means, covariances; eq. 37).

:class:`OnlineEMMixin` gives a family ``online_init`` / ``online_step`` (the names the
training loop calls); the diagonal family keeps :mod:`mogsgd.online_em`, whose
recursion this equals (a test checks it).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from mogsgd.covariance._base import CovarianceFamily, log_weights
from mogsgd.online_em import step_size

__all__ = ["OnlineState", "online_em_init", "online_em_step", "OnlineEMMixin"]


class OnlineState(NamedTuple):
    """The number of batches seen, the running per-point statistics and the
    Polyak-Ruppert average of the iterates (``None`` until averaging starts)."""

    count: int
    stats: Any
    average: Any = None
    n_averaged: int = 0


def online_em_init(family: CovarianceFamily, params, reg_covar: float) -> OnlineState:
    """Statistics of one pseudo-point that reproduce ``params`` (``N_k = pi_k``)."""
    return OnlineState(0, family.initial_stats(params, reg_covar))


def _averaged(family: CovarianceFamily, average, new, n: int):
    """The running mean of ``n`` iterates in natural parameters (eq. 37)."""
    if average is None:
        return new
    frac = 1.0 / n
    weights = (1 - frac) * np.exp(log_weights(average.logits)) \
        + frac * np.exp(log_weights(new.logits))
    means = (1 - frac) * average.means + frac * new.means
    cov = (1 - frac) * family.covariances(average) + frac * family.covariances(new)
    return family.init_from_moments(weights / weights.sum(), means, cov, 0.0)


def online_em_step(
    family: CovarianceFamily,
    X: np.ndarray,
    params,
    state: OnlineState,
    *,
    alpha: float = 0.6,
    t0: float = 2.0,
    reg_covar: float = 1e-6,
    sample_weight: np.ndarray | None = None,
    average_after: int | None = None,
):
    """One online-EM update on the batch ``X`` (eq. 36).

    Returns ``(new_params, new_state, batch_nll)``, ``batch_nll`` being the batch's
    mean NLL under the incoming parameters.
    """
    batch = family.em_stats(X, params, sample_weight)
    w = batch.weight_sum
    t = state.count + 1
    g = step_size(t, alpha, t0)
    mixed = type(batch)(0.0, 1.0, *((1 - g) * s + g * b / w
                                    for s, b in zip(state.stats[2:], batch[2:], strict=True)))
    new = family.m_step(mixed, params, reg_covar)
    average, n_avg = state.average, state.n_averaged
    if average_after is not None and t > average_after:
        n_avg += 1
        average = _averaged(family, average, new, n_avg)
    return (new, OnlineState(t, family.recentre(mixed, new, reg_covar), average, n_avg),
            -batch.ll_sum / w)


class OnlineEMMixin:
    """``online_init`` and ``online_step`` for a family, by the functions above."""

    def online_init(self, params, reg_covar: float) -> OnlineState:
        return online_em_init(self, params, reg_covar)

    def online_step(self, X, params, state: OnlineState, **options):
        return online_em_step(self, X, params, state, **options)
