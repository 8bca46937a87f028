"""Batch EM compiled: E-step statistics by the fused pass and the M-step, looped in one call.

:func:`em_iterations` is :func:`mogsgd.em.em_loop` over an in-memory array, written out in
numba: each iteration is one fused pass (:func:`mogsgd.fast.kernels.range_sums`, the
statistics of eqs. 11, 27 read from the gradient sums as in
:func:`mogsgd.em.stats_from_grad_sums`) and the M-step of :func:`mogsgd.em.m_step`
(eqs. 27-30), with no Python per iteration.  On small data (a few thousand rows) an
iteration of the Python loop costs ~100 us of interpreter work; here it costs the pass.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from mogsgd import em
from mogsgd.fast.kernels import JIT, prepare, range_sums

EPS = float(np.finfo(np.float64).eps)


#: :func:`mogsgd.em.remaining_gain`, compiled from the same source.
remaining_gain = njit(**JIT)(em.remaining_gain)


@njit(**JIT)
def _m_step(acc, weight_sum, means, log_sigma, logits, inv_sigma, reg_covar, floor, var_max):
    """:func:`mogsgd.em.m_step` from the fused accumulator (layout of
    :mod:`mogsgd.fast.kernels`), in place: ``sx = sigma sum r z``,
    ``sxx = sigma^2 sum r z^2``; a component with no responsibility keeps its mean and
    variance; variances are bounded by ``var_max`` and floored."""
    n_comp, d_feat = means.shape
    o_rz = 2 + n_comp
    o_rz2 = o_rz + n_comp * d_feat
    tiny = 10.0 * EPS * max(weight_sum, 1.0)
    total = 0.0
    for k in range(n_comp):
        total += max(acc[2 + k], tiny)
    for k in range(n_comp):
        nk_raw = acc[2 + k]
        nk = max(nk_raw, tiny)
        logits[k] = math.log(nk / total)
        if nk_raw <= tiny:
            continue
        for d in range(d_feat):
            i = k * d_feat + d
            sigma = 1.0 / inv_sigma[k, d]
            shift = sigma * acc[o_rz + i] / nk
            mean = means[k, d] + shift
            var = max(sigma * sigma * acc[o_rz2 + i] / nk - shift * shift, 0.0) + reg_covar
            var = max(var, floor)
            if not var <= var_max:   # inf or NaN
                var = var_max
            if math.isfinite(mean):
                means[k, d] = mean
            log_sigma[k, d] = 0.5 * math.log(var)


@njit(**JIT)
def all_sums(X, w, has_w, means, inv_sigma, cst, log_w, need_grad, block, part_rows, acc):
    """The sums over every row of ``X`` into ``acc`` (zeroed), as
    :func:`mogsgd.fast.nll_grad_sums` forms them: parts of ``part_rows`` rows
    (:func:`mogsgd.fast.kernels.partition`) summed separately and added in order (the
    same sums as the threaded pass).  One thread: a cached kernel that calls numba's
    parallel one crashes when it is loaded from the cache in a new process."""
    n = X.shape[0]
    if part_rows >= n:
        range_sums(X, 0, n, w, has_w, means, inv_sigma, cst, log_w, need_grad, block, acc)
        return
    accs = np.zeros(((n + part_rows - 1) // part_rows, acc.shape[0]))
    for c in range(accs.shape[0]):
        lo = c * part_rows
        range_sums(X, lo, min(n, lo + part_rows), w, has_w, means, inv_sigma, cst, log_w,
                   need_grad, block, accs[c])
    acc[:] = accs[0]
    for c in range(1, accs.shape[0]):
        acc += accs[c]


@njit(**JIT)
def em_iterations(X, w, has_w, means, log_sigma, logits, reg_covar, floor, var_max,
                  max_iter, tol, extrapolate, prior, has_prior, block, part_rows, lls):
    """Up to ``max_iter`` EM iterations on ``X`` (n, D) from ``(means, log_sigma,
    logits)``, updated in place; ``lls[t]`` receives the mean log-likelihood before
    iteration ``t`` and ``lls[n_iter]`` that of the returned parameters.  Stops as
    :func:`mogsgd.em.em_loop` does (``tol`` on the change, or on the extrapolated
    remaining gain).  Returns ``(n_iter, converged)``."""
    n = X.shape[0]
    n_comp, d_feat = means.shape
    inv_sigma = np.empty((n_comp, d_feat))
    cst = np.empty(n_comp)
    log_w = np.empty(n_comp)
    weights = np.empty(n_comp)
    acc = np.zeros(2 + n_comp + 2 * n_comp * d_feat)
    n_iter = 0
    converged = False
    weight_sum = float(n)
    for it in range(max_iter):
        prepare(means, log_sigma, logits, inv_sigma, cst, log_w, weights)
        acc[:] = 0.0
        all_sums(X, w, has_w, means, inv_sigma, cst, log_w, True, block, part_rows, acc)
        if has_w:
            weight_sum = acc[1]
        lls[it] = acc[0] / weight_sum
        _m_step(acc, weight_sum, means, log_sigma, logits, inv_sigma, reg_covar, floor,
                var_max)
        n_iter = it + 1
        if extrapolate:
            done = it >= 2 and remaining_gain(lls[it - 2], lls[it - 1], lls[it]) < tol
        elif it >= 1:
            done = abs(lls[it] - lls[it - 1]) < tol
        else:
            done = has_prior and abs(lls[it] - prior) < tol
        if done:
            converged = True
            break
    prepare(means, log_sigma, logits, inv_sigma, cst, log_w, weights)
    acc[:] = 0.0
    all_sums(X, w, has_w, means, inv_sigma, cst, log_w, False, block, part_rows, acc)
    if has_w:
        weight_sum = acc[1]
    lls[n_iter] = acc[0] / weight_sum
    return n_iter, converged


@njit(**JIT)
def em_iterations_each(X, w, has_w, means, log_sigma, logits, reg_covar, floor, var_max,
                       max_iter, tol, extrapolate, block, part_rows, lls, n_iters, converged):
    """:func:`em_iterations` (without a prior) from each of ``C`` starts ``means[c]``,
    ``log_sigma[c]`` (C, K, D) and ``logits[c]`` (C, K), each updated in place, with its
    log-likelihoods in ``lls[c]`` and its ``(n_iter, converged)`` in ``n_iters[c]``,
    ``converged[c]``: the initial candidates of a small fit in one call instead of one
    call (and its Python around it) each."""
    for c in range(means.shape[0]):
        n_iters[c], converged[c] = em_iterations(
            X, w, has_w, means[c], log_sigma[c], logits[c], reg_covar, floor, var_max,
            max_iter, tol, extrapolate, 0.0, False, block, part_rows, lls[c])
