"""Online EM (eq. 36) for every covariance family, on the family's centred statistics.

The recursion is :mod:`mogsgd.online_em`'s, written once over the protocol: mix the
running per-point statistics with the batch's, ``s_t = (1 - g_t) s_{t-1} + g_t sbar``,
apply the family's M-step, and re-centre the running statistics at the new means
(:meth:`CovarianceFamily.recentre`) so the next batch's centred statistics add to
them.  Polyak-Ruppert averaging (eq. 37) is left to the caller.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from mogsgd.covariance._base import CovarianceFamily
from mogsgd.online_em import step_size

__all__ = ["OnlineState", "online_em_init", "online_em_step"]


class OnlineState(NamedTuple):
    """The number of batches seen and the running per-point statistics."""

    count: int
    stats: Any


def online_em_init(family: CovarianceFamily, params, reg_covar: float) -> OnlineState:
    """Statistics of one pseudo-point that reproduce ``params`` (``N_k = pi_k``)."""
    return OnlineState(0, family.initial_stats(params, reg_covar))


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
    return new, OnlineState(t, family.recentre(mixed, new, reg_covar)), -batch.ll_sum / w
