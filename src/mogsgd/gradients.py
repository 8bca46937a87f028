"""Analytic gradients of the negative log-likelihood — and nothing else.

The gradients are computed first as *sums* over the rows of a batch
(:func:`nll_grad_sums`), which are additive: sums from several chunks, threads
or Dask workers combine exactly with :func:`combine_sums`, and
:func:`finalize` divides by the total weight to give the gradient of the mean
NLL.  :func:`nll_grad` is the one-call form.  Equation numbers refer to
``docs/derivations.md``.

With responsibilities ``gamma_ik`` (eq. 11), weights ``w_i`` (1 unless given),
``z_ikd = (x_id - mu_kd) / sigma_kd`` and ``W = sum_i w_i``, the gradients of the
*summed* weighted NLL are

* means:     ``-sum_i w_i gamma_ik z_ikd / sigma_kd``                  (eqs. 13, 19)
* log_sigma: ``-sum_i w_i gamma_ik (z_ikd^2 - 1)``                     (eqs. 15, 19)
* logits:    ``sum_i w_i (pi_k - gamma_ik) = W pi_k - sum_i w_i gamma_ik`` (eqs. 17, 19)

and the mean-NLL gradient divides each by ``W``.  A missing coordinate
contributes nothing to its mean and log-sigma sums (eq. 35).  Beyond the saturation
point of eq. 52 (``h = |z|^2 / 2 > 2^64``) a row's ``z`` and ``z^2`` carry the factor
``S'(h) = 2^64 / h`` (eq. 53), so every sum stays finite.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from mogsgd.density import distance, normalise, observed_mask, weighted_log_prob
from mogsgd.params import MixtureParams

__all__ = ["GradSums", "nll_grad_sums", "combine_sums", "finalize", "nll_grad"]


class GradSums(NamedTuple):
    """Additive sufficient pieces of the NLL and its gradient over some rows.

    ``nll_sum = -sum_i w_i log p(x_i)``; ``weight_sum = sum_i w_i``;
    ``means``, ``log_sigma`` (K, D) and ``logits`` (K,) are gradients of ``nll_sum``.
    """

    nll_sum: float
    weight_sum: float
    means: np.ndarray
    log_sigma: np.ndarray
    logits: np.ndarray


def nll_grad_sums(
    X: np.ndarray, params: MixtureParams, sample_weight: np.ndarray | None = None
) -> GradSums:
    """Summed NLL and its analytic gradient over the rows of ``X`` (n, D).

    Returns :class:`GradSums`; see the module docstring for the formulas.
    """
    X = np.asarray(X)
    observed = observed_mask(X)
    wlp = weighted_log_prob(X, params)                    # (n, K)
    lp, log_resp = normalise(wlp)                         # (n,), (n, K)
    resp = np.exp(log_resp)                               # (n, K), rows sum to 1
    if sample_weight is None:
        weight_sum = float(X.shape[0])
        nll_sum = float(-lp.sum())
    else:
        w = np.asarray(sample_weight, dtype=resp.dtype)
        resp *= w[:, None]
        weight_sum = float(w.sum())
        nll_sum = float(-(w @ lp))
    nk = resp.sum(axis=0)                                 # sum_i w_i gamma_ik, (K,)
    k_comp, d = params.means.shape
    g_means = np.empty((k_comp, d), dtype=resp.dtype)
    g_log_sigma = np.empty((k_comp, d), dtype=resp.dtype)
    inv_sigma = np.exp(-params.log_sigma)
    for k in range(k_comp):
        # sqrt(S') z (n, D) and sqrt(S') (n,) or None; eqs. 52, 53
        z, root = distance(X, params.means[k], params.log_sigma[k], observed)[1:]
        rk = resp[:, k] if root is None else resp[:, k] * root
        rz = rk @ z                                       # sum_i r_ik S'_ik z_ikd
        rz2 = resp[:, k] @ (z * z)                        # sum_i r_ik S'_ik z_ikd^2
        counted = nk[k] if observed is None else resp[:, k] @ observed
        g_means[k] = -rz * inv_sigma[k]                   # eq. 13
        g_log_sigma[k] = counted - rz2                    # eq. 15
    g_logits = weight_sum * params.weights - nk           # eq. 17
    return GradSums(nll_sum, weight_sum, g_means, g_log_sigma, g_logits)


def combine_sums(parts) -> GradSums:
    """Add :class:`GradSums` from disjoint sets of rows; exact up to float addition order."""
    parts = list(parts)
    if not parts:
        raise ValueError("combine_sums needs at least one GradSums")
    return GradSums(*(sum(field) for field in zip(*parts, strict=True)))


def finalize(sums: GradSums) -> tuple[float, MixtureParams]:
    """Mean NLL and its gradient: every sum divided by the total weight (eq. 19)."""
    scale = 1.0 / sums.weight_sum
    grad = MixtureParams(
        means=sums.means * scale, log_sigma=sums.log_sigma * scale, logits=sums.logits * scale
    )
    return sums.nll_sum * scale, grad


def nll_grad(
    X: np.ndarray, params: MixtureParams, sample_weight: np.ndarray | None = None
) -> tuple[float, MixtureParams]:
    """Mean NLL over the rows of ``X`` and its gradient w.r.t. every parameter group.

    ``value == nll(X, params, sample_weight)``; the gradient is a
    :class:`MixtureParams` holding ``d NLL / d means`` (K, D),
    ``d NLL / d log_sigma`` (K, D) and ``d NLL / d logits`` (K,) (eqs. 13-19).
    """
    return finalize(nll_grad_sums(X, params, sample_weight))
