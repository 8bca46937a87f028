"""The compiled kernels: one fused pass over the points, and one whole epoch of training.

Everything here is numba code on plain arrays; :mod:`mogsgd.fast` wraps it for
:class:`~mogsgd.params.MixtureParams`.  Points are processed in blocks of at most
``block`` rows, transposed into a ``(D, block)`` buffer so that every inner loop
runs over points with unit stride and vectorises (SIMD) -- including ``exp`` and
``log``, which are the polynomial versions of :mod:`mogsgd.fast.simd`.  Per
block, in one read of its rows (eqs. 9-19 of ``docs/derivations.md``):

1. ``lw_kj = -1/2 sum_d z_kjd^2 - c_k + log pi_k``, ``z_kjd = (x_jd - mu_kd) / sigma_kd``,
   ``c_k = sum_d log sigma_kd + D/2 log 2 pi``                         (eqs. 9, 12)
2. ``m_j = max_k lw_kj``, ``e_kj = exp(lw_kj - m_j)``, ``s_j = sum_k e_kj``,
   ``log p(x_j) = m_j + log s_j``                                      (eqs. 10, 25)
3. ``r_kj = w_j e_kj / s_j`` (weighted responsibilities, eq. 11) and the sums
   ``sum_j w_j log p(x_j)``, ``sum_j w_j``, ``N_k = sum_j r_kj``,
   ``sum_j r_kj z_kjd = (sum_j r_kj u_kjd) / sigma_kd`` and
   ``sum_j r_kj z_kjd^2 = (sum_j r_kj u_kjd^2) / sigma_kd^2``, ``u = x - mu``  (eqs. 13-19)

The features are taken four at a time in the loops over points, so the running
sums stay in registers for ``D <= 4``.  The sums go into a flat accumulator
``acc`` of length ``2 + K + 2 K D``::

    acc[0] = sum w log p   acc[1] = sum w   acc[2:2+K] = N_k
    acc[2+K : 2+K+KD] = sum r z (K, D)      acc[2+K+KD :] = sum r z^2 (K, D)

Far rows: a row whose best ``lw_kj`` is below ``FAR_LOG_DENSITY`` (every component
beyond the saturation point ``h = q / 2 > 2^64`` of eq. 52; ``q`` may even have
overflowed) is recomputed by :func:`_far_rows` from ``log |z|``, with the saturated
``S(h)`` and the slopes ``S'(h)`` of eq. 53 in its sums, and then takes no further part
in the block's vector loops.  In every other row a component beyond the saturation
point has ``e_kj = 0`` exactly, as with the saturated value, so ordinary data never
leave the vector loops (one compare per row).

Memory: the buffers are ``O(block (K + D))`` per thread; no ``(n, K)`` or
``(n, K, D)`` array is ever formed.

No kernel uses the ``reassoc`` fast-math flag: the sums over points run in explicit
vector lanes (:func:`~mogsgd.fast.simd.lane_sum`), so a result is the same to the
last bit on every run, whether the kernel was just compiled or loaded from numba's
cache, and on any SIMD width.  The optimiser update in :func:`train_epoch` uses no
fast-math at all, so it rounds exactly like the NumPy code in ``optim.py``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from mogsgd import density
from mogsgd.fast.simd import (
    EXACT_MATH,
    gather_rows,
    lane_dot_sum,
    lane_moments,
    load_rows,
    vexp_neg,
    vlog,
)

LOG_2PI = float(np.log(2.0 * np.pi))
LN2 = float(np.log(2.0))
H_SAT = density.H_SAT
LOG_H_SAT = density.LOG_H_SAT
FAR_LOG_DENSITY = density.FAR_LOG_DENSITY

#: Rows per chunk of the parallel full pass.  Fixed, so the summation order -- and
#: so the result -- does not depend on the number of threads.
CHUNK_ROWS = 1 << 15

#: Sums over at least this many rows (a full pass, or one mini-batch of an epoch) are split
#: in two halves that two threads can share (:func:`partition`).
SPLIT_ROWS = 1 << 12

#: Bytes of per-block buffers aimed for: half of a current x86 core's L2 cache.  Larger
#: blocks amortise the per-loop set-up; measured best at 512-1024 rows for K, D <= 64.
BLOCK_BYTES = 512 * 1024

OPT_SGD, OPT_MOMENTUM, OPT_NESTEROV, OPT_ADAM = 0, 1, 2, 3

#: Every kernel releases the GIL: threads (Dask, the permutation read-ahead) overlap.
JIT = {"cache": True, "error_model": "numpy", "nogil": True}


def block_for(k: int, d: int, n_rows: int | None = None) -> int:
    """Rows per block: a power of two from 256 to 1024 whose ``(K + D + 7) * block``
    float64 buffers fit in :data:`BLOCK_BYTES`, and not past ``n_rows`` (rounded up to 8)."""
    block = 256
    while block < 1024 and 2 * block * (k + d + 7) * 8 <= BLOCK_BYTES:
        block *= 2
    if n_rows is not None:
        block = min(block, max(8, -(-n_rows // 8) * 8))
    return block


def acc_length(k: int, d: int) -> int:
    """Length ``2 + K + 2 K D`` of the flat accumulator."""
    return 2 + k + 2 * k * d


# ------------------------------------------------------------- step 1: lw_kj
@njit(fastmath=EXACT_MATH, **JIT)
def _lw_direct(xt, g, mu, isg, ck, lk, lwk, m, nb):
    """``D = g <= 4``: ``lwk[j] = -q_j / 2 - c_k + log pi_k`` and ``m[j] = max(m[j], lwk[j])``."""
    x0 = xt[0]
    m0 = mu[0]
    i0 = isg[0]
    if g == 1:
        for j in range(nb):
            z0 = (x0[j] - m0) * i0
            v = (-0.5 * (z0 * z0) - ck) + lk
            lwk[j] = v
            m[j] = max(m[j], v)
        return
    x1 = xt[1]
    m1 = mu[1]
    i1 = isg[1]
    if g == 2:
        for j in range(nb):
            z0 = (x0[j] - m0) * i0
            z1 = (x1[j] - m1) * i1
            v = (-0.5 * (z0 * z0 + z1 * z1) - ck) + lk
            lwk[j] = v
            m[j] = max(m[j], v)
        return
    x2 = xt[2]
    m2 = mu[2]
    i2 = isg[2]
    if g == 3:
        for j in range(nb):
            z0 = (x0[j] - m0) * i0
            z1 = (x1[j] - m1) * i1
            z2 = (x2[j] - m2) * i2
            v = (-0.5 * (z0 * z0 + z1 * z1 + z2 * z2) - ck) + lk
            lwk[j] = v
            m[j] = max(m[j], v)
        return
    x3 = xt[3]
    m3 = mu[3]
    i3 = isg[3]
    for j in range(nb):
        z0 = (x0[j] - m0) * i0
        z1 = (x1[j] - m1) * i1
        z2 = (x2[j] - m2) * i2
        z3 = (x3[j] - m3) * i3
        v = (-0.5 * ((z0 * z0 + z1 * z1) + (z2 * z2 + z3 * z3)) - ck) + lk
        lwk[j] = v
        m[j] = max(m[j], v)


@njit(fastmath=EXACT_MATH, **JIT)
def _q_add(xt, d0, g, mu, isg, q, nb):
    """``q[j] += sum_{d0 <= d < d0 + g} z_jd^2`` for a group of ``g <= 4`` features."""
    x0 = xt[d0]
    m0 = mu[d0]
    i0 = isg[d0]
    if g == 1:
        for j in range(nb):
            z0 = (x0[j] - m0) * i0
            q[j] += z0 * z0
        return
    x1 = xt[d0 + 1]
    m1 = mu[d0 + 1]
    i1 = isg[d0 + 1]
    if g == 2:
        for j in range(nb):
            z0 = (x0[j] - m0) * i0
            z1 = (x1[j] - m1) * i1
            q[j] += z0 * z0 + z1 * z1
        return
    x2 = xt[d0 + 2]
    m2 = mu[d0 + 2]
    i2 = isg[d0 + 2]
    if g == 3:
        for j in range(nb):
            z0 = (x0[j] - m0) * i0
            z1 = (x1[j] - m1) * i1
            z2 = (x2[j] - m2) * i2
            q[j] += z0 * z0 + z1 * z1 + z2 * z2
        return
    x3 = xt[d0 + 3]
    m3 = mu[d0 + 3]
    i3 = isg[d0 + 3]
    for j in range(nb):
        z0 = (x0[j] - m0) * i0
        z1 = (x1[j] - m1) * i1
        z2 = (x2[j] - m2) * i2
        z3 = (x3[j] - m3) * i3
        q[j] += (z0 * z0 + z1 * z1) + (z2 * z2 + z3 * z3)


# ------------------------------------------------------- steps 1-2 per block
@njit(fastmath=EXACT_MATH, **JIT)
def _log_prob_block(xt, nb, means, inv_sigma, cst, log_w, lw, q, m, s, lp):
    """Steps 1-2: on return ``lw[k, j] = exp(lw_kj - m_j)``, ``s[j] = sum_k lw[k, j]``
    and ``lp[j] = log p(x_j)``; returns how many rows are far (``m_j`` below
    :data:`FAR_LOG_DENSITY`), for :func:`_far_rows`."""
    n_comp, d_feat = means.shape
    for j in range(nb):
        m[j] = -np.inf
    for k in range(n_comp):
        lwk = lw[k]
        if d_feat <= 4:
            _lw_direct(xt, d_feat, means[k], inv_sigma[k], cst[k], log_w[k], lwk, m, nb)
            continue
        for j in range(nb):
            q[j] = 0.0
        for d0 in range(0, d_feat, 4):
            _q_add(xt, d0, min(4, d_feat - d0), means[k], inv_sigma[k], q, nb)
        ck = cst[k]
        lk = log_w[k]
        for j in range(nb):
            v = (-0.5 * q[j] - ck) + lk
            lwk[j] = v
            m[j] = max(m[j], v)
    lw0 = lw[0]
    for j in range(nb):
        e = vexp_neg(lw0[j] - m[j])
        lw0[j] = e
        s[j] = e
    for k in range(1, n_comp):
        lwk = lw[k]
        for j in range(nb):
            e = vexp_neg(lwk[j] - m[j])
            lwk[j] = e
            s[j] += e
    n_far = 0
    for j in range(nb):
        lp[j] = m[j] + vlog(s[j])
        n_far += m[j] < FAR_LOG_DENSITY
    return n_far


@njit(**JIT)
def _log_abs_z(x, mu, log_isg):
    """``(log |z|, sign z)`` of ``z = (x - mu) / sigma`` without overflow (eq. 52)."""
    u = x - mu
    shift = 0.0
    if math.isinf(u):  # x and mu of opposite signs near the float range: halve both
        u = 0.5 * x - 0.5 * mu
        shift = LN2
    sign = 1.0 if u > 0.0 else (-1.0 if u < 0.0 else 0.0)
    return math.log(abs(u)) + shift + log_isg, sign


@njit(**JIT)
def _far_rows(xt, nb, wb, means, inv_sigma, cst, log_w, lw, m, s, lp, acc, need_grad):
    """The far rows of a block (``m_j < FAR_LOG_DENSITY``) by eqs. 52, 53, in log space.

    Per component ``log h = 2 log m + log sum_d (z_d / m)^2 - log 2`` with
    ``m = max_d |z_d|``, ``S(h)`` and ``log S'(h)``; then ``lp[j]`` and, with
    ``need_grad``, the row's terms ``r``, ``r S' z`` and ``r S' z^2`` added to ``acc``
    directly.  Afterwards the row is neutral for :func:`_accumulate_block`: ``e = 0``,
    ``s = 1`` and ``x = 0`` (its log-likelihood term ``w lp`` is still summed there).
    Without ``need_grad`` the row's ``e`` and ``s`` are left for the responsibilities
    ``e / s`` instead.
    """
    n_comp, d_feat = means.shape
    lwf = np.empty(n_comp)
    log_m = np.empty(n_comp)
    slope = np.empty(n_comp)
    o_rz = 2 + n_comp
    o_rz2 = o_rz + n_comp * d_feat
    for j in range(nb):
        if not m[j] < FAR_LOG_DENSITY:  # (NaN rows stay NaN: the caller's fallback)
            continue
        top = -np.inf
        for k in range(n_comp):
            lm = -np.inf
            for d in range(d_feat):
                a = _log_abs_z(xt[d, j], means[k, d], math.log(inv_sigma[k, d]))[0]
                lm = max(lm, a)
            if lm == -np.inf:
                lm = 0.0
            ssum = 0.0
            for d in range(d_feat):
                a, sg = _log_abs_z(xt[d, j], means[k, d], math.log(inv_sigma[k, d]))
                zs = sg * math.exp(a - lm)
                ssum += zs * zs
            log_h = 2.0 * lm + math.log(ssum) - LN2
            if log_h > LOG_H_SAT:
                half = H_SAT * (1.0 + (log_h - LOG_H_SAT))
                slope[k] = LOG_H_SAT - log_h
            else:
                half = math.exp(log_h)
                slope[k] = 0.0
            log_m[k] = lm
            lwf[k] = (-half - cst[k]) + log_w[k]
            top = max(top, lwf[k])
        total = 0.0
        for k in range(n_comp):
            lwf[k] = math.exp(lwf[k] - top)
            total += lwf[k]
        lp[j] = top + math.log(total)
        if not need_grad:  # e and s of the far row, for responsibilities e / s
            for k in range(n_comp):
                lw[k, j] = lwf[k]
            s[j] = total
            continue
        for k in range(n_comp):
            r = wb[j] * lwf[k] / total
            acc[2 + k] += r
            if r == 0.0:
                continue
            a1 = math.exp(log_m[k] + slope[k])          # S' z = zs a1
            a2 = math.exp(2.0 * log_m[k] + slope[k])    # S' z^2 = zs^2 a2
            for d in range(d_feat):
                a, sg = _log_abs_z(xt[d, j], means[k, d], math.log(inv_sigma[k, d]))
                zs = sg * math.exp(a - log_m[k])
                acc[o_rz + k * d_feat + d] += r * (zs * a1)
                acc[o_rz2 + k * d_feat + d] += r * ((zs * zs) * a2)
        for k in range(n_comp):
            lw[k, j] = 0.0
        s[j] = 1.0
        for d in range(d_feat):
            xt[d, j] = 0.0


# --------------------------------------------------------- step 3 per block
@njit(fastmath=EXACT_MATH, **JIT)
def _accumulate_block(xt, nb, wb, means, inv_sigma, lw, s, lp, coef, acc, need_grad):
    """Step 3: add this block's sums to ``acc`` (see the module docstring).

    ``lw`` holds ``e_kj`` (from :func:`_log_prob_block`); ``r_kj = e_kj w_j / s_j`` is formed
    inside :func:`lane_moments`.  Every sum over points runs in explicit lane order
    (:mod:`mogsgd.fast.simd`), so it rounds the same on every run and machine.
    """
    n_comp, d_feat = means.shape
    ll, wsum = lane_dot_sum(wb, lp, nb)
    acc[0] += ll
    acc[1] += wsum
    if not need_grad:
        return
    for j in range(nb):
        coef[j] = wb[j] / s[j]
    o_rz = 2 + n_comp
    o_rz2 = o_rz + n_comp * d_feat
    for k in range(n_comp):
        ek = lw[k]
        mu = means[k]
        isg = inv_sigma[k]
        for d0 in range(0, d_feat, 4):
            g = min(4, d_feat - d0)
            if g == 4:
                sums = lane_moments(xt[d0], xt[d0 + 1], xt[d0 + 2], xt[d0 + 3], mu, ek, coef,
                                    d0, nb, 4)
            elif g == 3:
                sums = lane_moments(xt[d0], xt[d0 + 1], xt[d0 + 2], xt[d0], mu, ek, coef, d0,
                                    nb, 3)
            elif g == 2:
                sums = lane_moments(xt[d0], xt[d0 + 1], xt[d0], xt[d0], mu, ek, coef, d0, nb, 2)
            else:
                sums = lane_moments(xt[d0], xt[d0], xt[d0], xt[d0], mu, ek, coef, d0, nb, 1)
            if d0 == 0:
                acc[2 + k] += sums[8]
            for t in range(g):
                i = k * d_feat + d0 + t
                sc = isg[d0 + t]
                acc[o_rz + i] += sums[t] * sc
                acc[o_rz2 + i] += sums[4 + t] * (sc * sc)


# -------------------------------------------------------------- full passes
@njit(**JIT)
def range_sums(X, lo, hi, w, has_w, means, inv_sigma, cst, log_w, need_grad, block, acc):
    """Add the sums over rows ``lo:hi`` of ``X`` (n, D) to ``acc``; one thread."""
    n_comp, d_feat = means.shape
    xt = np.empty((d_feat, block))
    lw = np.empty((n_comp, block))
    q = np.empty(block)
    m = np.empty(block)
    s = np.empty(block)
    lp = np.empty(block)
    coef = np.empty(block)
    wb = np.ones(block)
    for start in range(lo, hi, block):
        nb = min(block, hi - start)
        load_rows(X, start, nb, xt)
        if has_w:
            for j in range(nb):
                wb[j] = w[start + j]
        if _log_prob_block(xt, nb, means, inv_sigma, cst, log_w, lw, q, m, s, lp):
            _far_rows(xt, nb, wb, means, inv_sigma, cst, log_w, lw, m, s, lp, acc, need_grad)
        _accumulate_block(xt, nb, wb, means, inv_sigma, lw, s, lp, coef, acc, need_grad)


@njit(parallel=True, **JIT)
def chunked_sums(X, w, has_w, means, inv_sigma, cst, log_w, need_grad, block, part_rows):
    """Sums over all rows of ``X``, one accumulator per part of ``part_rows`` rows
    (:func:`partition`), parts spread over numba's threads; returns
    ``(n_parts, acc_length)``."""
    n = X.shape[0]
    n_comp, d_feat = means.shape
    n_chunks = max(1, (n + part_rows - 1) // part_rows)
    accs = np.zeros((n_chunks, 2 + n_comp + 2 * n_comp * d_feat))
    for c in prange(n_chunks):
        lo = c * part_rows
        hi = min(n, lo + part_rows)
        range_sums(X, lo, hi, w, has_w, means, inv_sigma, cst, log_w, need_grad, block,
                   accs[c])
    return accs


@njit(**JIT)
def log_prob_rows(X, means, inv_sigma, cst, log_w, block, out, resp, want_resp):
    """``out[i] = log p(x_i)`` (eq. 10) for every row of ``X`` and, with ``want_resp``,
    ``resp[i, k] = gamma_ik = e_ki / s_i`` (eq. 11); one thread."""
    n = X.shape[0]
    n_comp, d_feat = means.shape
    xt = np.empty((d_feat, block))
    lw = np.empty((n_comp, block))
    q = np.empty(block)
    m = np.empty(block)
    s = np.empty(block)
    wb = np.ones(block)
    unused = np.zeros(0)
    for start in range(0, n, block):
        nb = min(block, n - start)
        load_rows(X, start, nb, xt)
        lp = out[start:]
        if _log_prob_block(xt, nb, means, inv_sigma, cst, log_w, lw, q, m, s, lp):
            _far_rows(xt, nb, wb, means, inv_sigma, cst, log_w, lw, m, s, lp, unused, False)
        if want_resp:
            for j in range(nb):
                for k in range(n_comp):
                    resp[start + j, k] = lw[k, j] / s[j]


@njit(parallel=True, **JIT)
def chunked_log_prob(X, means, inv_sigma, cst, log_w, block, out, resp, want_resp):
    """:func:`log_prob_rows` over chunks of :data:`CHUNK_ROWS` rows spread over numba's
    threads (a row's values do not depend on the split)."""
    n = X.shape[0]
    for c in prange(max(1, (n + CHUNK_ROWS - 1) // CHUNK_ROWS)):
        lo, hi = c * CHUNK_ROWS, min(n, (c + 1) * CHUNK_ROWS)
        log_prob_rows(X[lo:hi], means, inv_sigma, cst, log_w, block, out[lo:hi],
                      resp[lo:hi] if want_resp else resp, want_resp)


@njit(**JIT)
def has_nan(X):
    """Whether C-contiguous ``X`` holds a NaN (one read, stops at the first, no temporary)."""
    flat = X.reshape(-1)
    for i in range(flat.shape[0]):
        if flat[i] != flat[i]:
            return True
    return False


# ------------------------------------------------------------ batch sums
@njit(**JIT)
def partition(rows):
    """``(parts, part_rows)``: how a sum over ``rows`` rows is split -- one part below
    :data:`SPLIT_ROWS`, two halves up to :data:`CHUNK_ROWS`, chunks of :data:`CHUNK_ROWS`
    above.  The parts are summed separately and then added in order; the split depends on
    ``rows`` only, so a result does not depend on how many threads ran the parts."""
    if rows < SPLIT_ROWS:
        return 1, rows
    if rows <= CHUNK_ROWS:
        return 2, (rows + 1) // 2
    return (rows + CHUNK_ROWS - 1) // CHUNK_ROWS, CHUNK_ROWS


@njit(**JIT)
def buffers(n_comp, d_feat, block):
    """The per-thread work buffers of :func:`gathered_sums`."""
    return (np.empty((d_feat, block)), np.empty((n_comp, block)), np.empty(block),
            np.empty(block), np.empty(block), np.empty(block), np.empty(block),
            np.ones(block))


@njit(**JIT)
def gathered_sums(X, order, lo, hi, w, has_w, means, inv_sigma, cst, log_w, block, acc,
                  buf):
    """Add the sums over the rows ``order[lo:hi]`` of ``X`` to ``acc``; one thread."""
    xt, lw, q, m, s, lp, coef, wb = buf
    for start in range(lo, hi, block):
        nb = min(block, hi - start)
        gather_rows(X, order, start, nb, xt)
        if has_w:
            for j in range(nb):
                wb[j] = w[order[start + j]]
        if _log_prob_block(xt, nb, means, inv_sigma, cst, log_w, lw, q, m, s, lp):
            _far_rows(xt, nb, wb, means, inv_sigma, cst, log_w, lw, m, s, lp, acc, True)
        _accumulate_block(xt, nb, wb, means, inv_sigma, lw, s, lp, coef, acc, True)


@njit(parallel=True, **JIT)
def _parts_on_threads(X, order, lo, hi, part_rows, w, has_w, means, inv_sigma, cst, log_w,
                      block, accs):
    for p in prange(accs.shape[0]):
        a = lo + p * part_rows
        gathered_sums(X, order, a, min(hi, a + part_rows), w, has_w, means, inv_sigma, cst,
                      log_w, block, accs[p], buffers(means.shape[0], means.shape[1], block))


@njit(**JIT)
def batch_sums(X, order, lo, hi, w, has_w, means, inv_sigma, cst, log_w, block, acc, buf,
               threads):
    """``acc`` = the sums over the rows ``order[lo:hi]`` (eqs. 9-19), split by
    :func:`partition`; the parts run on numba's threads when ``threads`` (same result)."""
    acc[:] = 0.0
    parts, part_rows = partition(hi - lo)
    if parts == 1:
        gathered_sums(X, order, lo, hi, w, has_w, means, inv_sigma, cst, log_w, block, acc,
                      buf)
        return
    accs = np.zeros((parts, acc.shape[0]))
    if threads:
        _parts_on_threads(X, order, lo, hi, part_rows, w, has_w, means, inv_sigma, cst, log_w,
                          block, accs)
    else:
        for p in range(parts):
            a = lo + p * part_rows
            gathered_sums(X, order, a, min(hi, a + part_rows), w, has_w, means, inv_sigma,
                          cst, log_w, block, accs[p], buf)
    for p in range(parts):
        for i in range(acc.shape[0]):
            acc[i] += accs[p, i]


# -------------------------------------------------------------------- epoch
@njit(**JIT)
def prepare(means, log_sigma, logits, inv_sigma, cst, log_w, weights):
    """Derived parameters: ``1/sigma``, ``c_k`` (eq. 9), ``log pi`` and ``pi`` (eq. 12)."""
    n_comp, d_feat = means.shape
    half_d_log_2pi = 0.5 * d_feat * LOG_2PI
    for k in range(n_comp):
        c = 0.0
        for d in range(d_feat):
            inv_sigma[k, d] = math.exp(-log_sigma[k, d])
            c += log_sigma[k, d]
        cst[k] = c + half_d_log_2pi
    a_max = logits[0]
    for k in range(1, n_comp):
        a_max = max(a_max, logits[k])
    total = 0.0
    for k in range(n_comp):
        total += math.exp(logits[k] - a_max)
    log_total = math.log(total)
    for k in range(n_comp):
        log_w[k] = (logits[k] - a_max) - log_total
        weights[k] = math.exp(log_w[k])


@njit(**JIT)
def epoch_arrays(theta, n_comp, d_feat, block):
    """What a compiled epoch works on: views ``means``, ``log_sigma`` (K, D) and ``logits``
    (K,) of the flat parameters ``theta``, the derived ``1/sigma``, ``c_k``, ``log pi``,
    ``pi`` (filled by :func:`prepare`), the work buffers and the accumulator."""
    kd = n_comp * d_feat
    return (theta[:kd].reshape((n_comp, d_feat)), theta[kd:2 * kd].reshape((n_comp, d_feat)),
            theta[2 * kd:], np.empty((n_comp, d_feat)), np.empty(n_comp), np.empty(n_comp),
            np.empty(n_comp), buffers(n_comp, d_feat, block), np.empty(2 + n_comp + 2 * kd))


@njit(**JIT)
def optimizer_step(theta, g, opt, s1, s2, count, eta, b1, b2, eps, beta):
    """``theta += update(g)`` for the optimiser ``opt`` (``OPT_*``) written out as in
    ``optim.py`` (no fast-math, so it rounds the same), evaluated at the step ``count``
    before the update; ``s1``/``s2`` are the flat momentum / Adam states."""
    if opt == OPT_ADAM:
        t = count + 1
        c1 = 1.0 - math.pow(b1, float(t))
        c2 = 1.0 - math.pow(b2, float(t))
        for i in range(theta.shape[0]):
            mu = b1 * s1[i] + (1.0 - b1) * g[i]
            nu = b2 * s2[i] + (1.0 - b2) * g[i] * g[i]
            s1[i] = mu
            s2[i] = nu
            theta[i] = theta[i] + -eta * (mu / c1) / (np.sqrt(nu / c2) + eps)
    elif opt == OPT_SGD:
        for i in range(theta.shape[0]):
            theta[i] = theta[i] + -eta * g[i]
    else:
        for i in range(theta.shape[0]):
            v = beta * s1[i] + g[i]
            s1[i] = v
            if opt == OPT_NESTEROV:
                theta[i] = theta[i] + -eta * (g[i] + beta * v)
            else:
                theta[i] = theta[i] + -eta * v


@njit(**JIT)
def train_epoch(X, order, w, has_w, batch, theta, n_comp, opt, s1, s2, count, lrs,
                b1, b2, eps, beta, log_sigma_floor, block, threads):
    """One epoch of mini-batch training, entirely compiled; updates ``theta``, ``s1``, ``s2``.

    ``theta`` is ``MixtureParams.ravel()`` (means, log_sigma, logits); the batches are
    ``order[0:batch]``, ``order[batch:2 batch]``, ... (the last one shorter).  Per batch:
    the NLL gradient (eq. 19), the optimiser step ``opt`` (``OPT_*``; ``s1``/``s2``
    are the flat momentum / Adam states, ``lrs[t]`` the learning rate of the epoch's
    ``t``-th step, ``count`` the optimiser's step count at the start) written as in
    ``optim.py`` and with no fast-math so it rounds the same, then the variance floor
    ``log sigma <- max(log sigma, log_sigma_floor)`` (eq. 26).  A batch's sums are split by
    :func:`partition`, the parts on numba's threads when ``threads`` (same result).

    With weights ``w`` (mean one over the data, as ``train`` normalises them) the batch
    gradient is the weighted sum over ``|B|`` (eq. 32), as in ``train.make_stepper``.

    Returns ``(sum_b NLL_b |B_b|, sum_b |B_b|)`` over the batches ``b``, ``NLL_b`` the
    batch's (weighted) sum over ``|B_b|`` -- the terms of the epoch's mean training NLL,
    accumulated like ``train.py`` does.
    """
    n = order.shape[0]
    d_feat = X.shape[1]
    kd = n_comp * d_feat
    means, log_sigma, logits, inv_sigma, cst, log_w, weights, buf, acc = epoch_arrays(
        theta, n_comp, d_feat, block)
    g = np.empty_like(theta)
    o_rz = 2 + n_comp
    o_rz2 = o_rz + kd
    total = 0.0
    count_rows = 0
    step = 0
    for lo in range(0, n, batch):
        hi = min(n, lo + batch)
        prepare(means, log_sigma, logits, inv_sigma, cst, log_w, weights)
        batch_sums(X, order, lo, hi, w, has_w, means, inv_sigma, cst, log_w, block, acc, buf,
                   threads)
        # train.make_stepper: every sum times 1 / |B| (weights have mean one)
        rows = hi - lo
        wsum = acc[1] if has_w else float(rows)
        scale = 1.0 / rows
        value = -acc[0] * scale
        for k in range(n_comp):
            nk = acc[2 + k]
            for d in range(d_feat):
                i = k * d_feat + d
                g[i] = (-acc[o_rz + i] * inv_sigma[k, d]) * scale
                g[kd + i] = (nk - acc[o_rz2 + i]) * scale
            g[2 * kd + k] = (wsum * weights[k] - nk) * scale
        optimizer_step(theta, g, opt, s1, s2, count, lrs[step], b1, b2, eps, beta)
        for i in range(kd, 2 * kd):
            theta[i] = max(theta[i], log_sigma_floor)
        count += 1
        step += 1
        total += value * rows
        count_rows += rows
    return total, count_rows
