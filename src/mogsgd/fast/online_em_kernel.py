"""One epoch of online EM compiled: the batch loop of :func:`mogsgd.online_em.online_em_step`.

Per batch ``B`` of the epoch's order, exactly the steps of ``online_em.py``:

1. the batch's E-step statistics at the current parameters, from the fused sums of
   :func:`mogsgd.fast.kernels.batch_sums` (``N_k = sum_i w_i gamma_ik``,
   ``sx_kd = sigma_kd sum_i w_i gamma_ik z_ikd``, ``sxx_kd = sigma_kd^2 sum_i w_i gamma_ik
   z_ikd^2``: the centred statistics of eq. 27, as :func:`mogsgd.em.stats_from_grad_sums`);
2. the running statistics ``s <- (1 - g_t) s + g_t sbar(B)``, ``g_t = min(1, (t + t0)^-alpha)``
   (eq. 36), and the M-step on them (:func:`mogsgd.em.m_step`, eqs. 27-30);
3. the Polyak-Ruppert average of the iterates after step ``average_after`` (eq. 37);
4. the running statistics re-centred at the new means.

The parameters travel as ``MixtureParams.ravel()`` vectors (means, log_sigma, logits).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from mogsgd.fast.kernels import JIT, batch_sums, epoch_arrays, prepare

#: ``mogsgd.params.VARIANCE_MAX``: variances beyond it (or NaN) are set to it.
VARIANCE_MAX = float(np.finfo(np.float64).max) / 16
TINY = 10.0 * float(np.finfo(np.float64).eps)


@njit(**JIT)
def _softmax(logits, out):
    """``out = exp(log_softmax(logits))`` as ``params.log_softmax`` computes it."""
    a_max = logits[0]
    for k in range(1, logits.shape[0]):
        a_max = max(a_max, logits[k])
    total = 0.0
    for k in range(logits.shape[0]):
        total += math.exp(logits[k] - a_max)
    log_total = math.log(total)
    for k in range(logits.shape[0]):
        out[k] = math.exp((logits[k] - a_max) - log_total)


@njit(**JIT)
def _set_from_moments(weights, means, variances, theta, n_comp, d_feat):
    """``theta = MixtureParams.from_moments(weights, means, variances).ravel()`` (the
    weights renormalised as ``from_moments`` does)."""
    kd = n_comp * d_feat
    total = 0.0
    for k in range(n_comp):
        total += weights[k]
    for k in range(n_comp):
        theta[2 * kd + k] = math.log(weights[k] / total)
        for d in range(d_feat):
            i = k * d_feat + d
            theta[i] = means[i]
            theta[kd + i] = 0.5 * math.log(variances[i])


@njit(**JIT)
def online_em_epoch(X, order, w, has_w, batch, theta, n_comp, nk, nkd, sx, sxx, count,
                    alpha, t0, reg_covar, average_after, avg, has_avg, n_avg, block, threads):
    """One epoch of online EM over the batches ``order[0:batch]``, ``order[batch:2 batch]``,
    ...; updates ``theta`` (the iterate), the running statistics ``nk`` (K,), ``nkd``,
    ``sx``, ``sxx`` (K D,) and the average ``avg`` in place.

    ``count`` is the step count at the start, ``average_after`` the step after which
    iterates are averaged (``-1``: never), ``has_avg``/``n_avg`` the state of the average.
    Returns ``(sum_b NLL_b |B_b|, sum_b |B_b|, count, has_avg, n_avg)``.
    """
    n = order.shape[0]
    d_feat = X.shape[1]
    kd = n_comp * d_feat
    means, log_sigma, logits, inv_sigma, cst, log_w, weights, buf, acc = epoch_arrays(
        theta, n_comp, d_feat, block)
    new_w = np.empty(n_comp)
    new_mu = np.empty(kd)
    new_var = np.empty(kd)
    avg_w = np.empty(n_comp)
    o_rz = 2 + n_comp
    o_rz2 = o_rz + kd
    total = 0.0
    count_rows = 0
    for lo in range(0, n, batch):
        hi = min(n, lo + batch)
        rows = hi - lo
        prepare(means, log_sigma, logits, inv_sigma, cst, log_w, weights)
        batch_sums(X, order, lo, hi, w, has_w, means, inv_sigma, cst, log_w, block, acc, buf,
                   threads)
        wsum = acc[1] if has_w else float(rows)
        t = count + 1
        g = min(1.0, (t + t0) ** (-alpha))
        # eq. 36: mix the batch's per-point statistics into the running ones
        for k in range(n_comp):
            bnk = acc[2 + k]
            nk[k] = (1 - g) * nk[k] + g * bnk / wsum
            for d in range(d_feat):
                i = k * d_feat + d
                sigma = math.exp(log_sigma[k, d])
                nkd[i] = (1 - g) * nkd[i] + g * bnk / wsum
                sx[i] = (1 - g) * sx[i] + g * (sigma * acc[o_rz + i]) / wsum
                sxx[i] = (1 - g) * sxx[i] + g * (sigma * sigma * acc[o_rz2 + i]) / wsum
        # em.m_step on the mixed statistics (weight_sum 1)
        nk_total = 0.0
        for k in range(n_comp):
            nk_total += max(nk[k], TINY)
        for k in range(n_comp):
            new_w[k] = max(nk[k], TINY) / nk_total
            for d in range(d_feat):
                i = k * d_feat + d
                nkd_c = max(nkd[i], TINY)
                shift = sx[i] / nkd_c
                mean = means[k, d] + shift
                var = max(max(sxx[i] / nkd_c - shift * shift, 0.0) + reg_covar, 0.0)
                if var != var or var > VARIANCE_MAX:
                    var = VARIANCE_MAX
                if not math.isfinite(mean):
                    mean = means[k, d]
                if nkd[i] <= TINY:
                    mean = means[k, d]
                    var = math.exp(2.0 * log_sigma[k, d])
                new_mu[i] = mean
                new_var[i] = var
        _set_from_moments(new_w, new_mu, new_var, theta, n_comp, d_feat)
        # eq. 37: the running average of the natural parameters
        if average_after >= 0 and t > average_after:
            n_avg += 1
            if not has_avg:
                avg[:] = theta
                has_avg = True
            else:
                frac = 1.0 / n_avg
                _softmax(avg[2 * kd:], avg_w)
                _softmax(logits, new_w)
                for k in range(n_comp):
                    new_w[k] = (1 - frac) * avg_w[k] + frac * new_w[k]
                    for d in range(d_feat):
                        i = k * d_feat + d
                        new_mu[i] = (1 - frac) * avg[i] + frac * theta[i]
                        new_var[i] = ((1 - frac) * math.exp(2.0 * avg[kd + i])
                                      + frac * math.exp(2.0 * theta[kd + i]))
                w_total = 0.0
                for k in range(n_comp):
                    w_total += new_w[k]
                for k in range(n_comp):
                    new_w[k] = new_w[k] / w_total
                _set_from_moments(new_w, new_mu, new_var, avg, n_comp, d_feat)
        # re-centre the running statistics at the new means (online_em._recentred)
        for i in range(kd):
            sx[i] = 0.0
            sxx[i] = max(math.exp(2.0 * theta[kd + i]) - reg_covar, 0.0) * nkd[i]
        count += 1
        total += (-acc[0] / wsum) * rows
        count_rows += rows
    return total, count_rows, count, has_avg, n_avg
