"""A compiled pass for the full and tied covariance families (eqs. 40-44).

:func:`nll_grad_sums` and :func:`log_prob_components` are drop-in replacements for the
NumPy methods of :data:`mogsgd.covariance.FULL` and :data:`~mogsgd.covariance.TIED`
(same results to ~1e-13 relative).  Rows are taken in blocks of at most ``block``,
transposed into a (D, block) buffer so every inner loop runs over points with unit
stride and vectorises.  Per block and component, in one read of the rows:

1. ``r = x - mu_k`` and ``z_e = sum_{a <= e} U_kae r_a`` (the triangular product of
   eq. 40) in 4 x 4 tiles of ``U`` (:func:`_z_tile`: sixteen multiply-adds per point per
   load and store of four rows of ``z``), ``lw_k = c_k - |z|^2 / 2``;
2. the log-sum-exp over components and the weighted responsibilities
   ``g_k = w exp(lw_k - log p)`` (eqs. 10, 11, 25), with the SIMD ``exp``/``log`` of
   :mod:`mogsgd.fast.simd`;
3. ``N_k``, ``sum g z`` and the upper triangle of ``M_k = sum g r z^T`` (eq. 43) as
   sums over points in eight vector lanes (:func:`~mogsgd.fast.simd.lane_dot_sum`, and
   :func:`lane_dot4` for four entries of a row of ``M`` at once): a fixed order, no
   re-association.

Measured (``benchmarks/bench_full_kernel.py``, D = 16, K = 8, one thread, CPU time on a
shared 2-core VM): 4.0x the NumPy pass at 256 rows, 7.0x at 4096, 9.7x at 65536.

Far rows (every component beyond the saturation point of eq. 52, or a residual beyond
the float range) are not the kernel's business: it marks them with a NaN log-likelihood
and the wrappers hand such input to the NumPy family, which computes eqs. 52, 53 in a
scaled form.  Ordinary data pay one comparison per row.

Cost O(K D^2) per point; buffers O(block K D); no (n, K) or (n, D) temporaries.  Each
chunk of :data:`CHUNK_ROWS` rows has its own accumulator and the chunks are summed in
order, so the result is the same bit for bit serially or in parallel.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from mogsgd.covariance import CentredStats, check_X
from mogsgd.covariance import cholesky as chol
from mogsgd.covariance.full import FullFamily, gradients_from_sums
from mogsgd.density import FAR_LOG_DENSITY, LOG_2PI
from mogsgd.fast.simd import EXACT_MATH, LANES, lane_dot_sum, load_rows, vexp_neg, vlog
from mogsgd.params import log_softmax

__all__ = ["BLOCK_ROWS", "CHUNK_ROWS", "nll_grad_sums", "em_stats", "log_prob_components",
           "workspace", "range_in"]

#: Rows per block (the transposed buffer's width).
BLOCK_ROWS = 256
#: Rows per accumulator chunk (fixed, so the summation order never changes).
CHUNK_ROWS = 1 << 14

_JIT = {"cache": True, "error_model": "numpy", "nogil": True, "fastmath": EXACT_MATH}


@intrinsic
def lane_dot4(typingctx, a, b0, b1, b2, b3, n):
    """``(sum_j a[j] b0[j], ..., sum_j a[j] b3[j])`` over ``j < n`` (1-D float64).

    Each sum is rounded exactly as :func:`mogsgd.fast.simd.lane_dot_sum` rounds it
    (eight lanes of consecutive points, the fixed tree ((0+4)+(2+6)) + ((1+5)+(3+7)),
    then the tail in order), so the result is the same bits; but the four sums run in
    four independent vector accumulators that share the loads of ``a``, so the loop is
    not bound by the latency of one chain of multiply-adds.
    """
    sig = types.UniTuple(types.float64, 4)(a, b0, b1, b2, b3, n)

    def codegen(context, builder, signature, args):
        i64 = ir.IntType(64)
        vty = ir.VectorType(ir.DoubleType(), LANES)
        ptrs = [context.make_array(ty)(context, builder, v).data
                for ty, v in zip(signature.args[:5], args[:5], strict=True)]
        n_val = args[5]

        def vload(bld, base, idx):
            return bld.load(bld.bitcast(bld.gep(base, [idx]), vty.as_pointer()), align=8)

        accs = [cgutils.alloca_once_value(builder, ir.Constant(vty, [0.0] * LANES))
                for _ in range(4)]
        n_main = builder.sub(n_val, builder.srem(n_val, ir.Constant(i64, LANES)))
        with cgutils.for_range_slice(builder, ir.Constant(i64, 0), n_main,
                                     ir.Constant(i64, LANES)) as (idx, _):
            av = vload(builder, ptrs[0], idx)
            for acc, base in zip(accs, ptrs[1:], strict=True):
                prod = builder.fmul(av, vload(builder, base, idx), flags=("contract",))
                builder.store(builder.fadd(builder.load(acc), prod, flags=("contract",)), acc)
        sums = []
        for acc in accs:
            vec = builder.load(acc)
            lanes = [builder.extract_element(vec, ir.Constant(ir.IntType(32), i))
                     for i in range(LANES)]
            while len(lanes) > 1:
                half = len(lanes) // 2
                lanes = [builder.fadd(lanes[i], lanes[i + half]) for i in range(half)]
            sums.append(cgutils.alloca_once_value(builder, lanes[0]))
        with cgutils.for_range_slice(builder, n_main, n_val, ir.Constant(i64, 1)) as (j, _):
            aj = builder.load(builder.gep(ptrs[0], [j]))
            for total, base in zip(sums, ptrs[1:], strict=True):
                bj = builder.load(builder.gep(base, [j]))
                builder.store(builder.fadd(builder.load(total), builder.fmul(aj, bj)), total)
        return context.make_tuple(builder, signature.return_type,
                                  [builder.load(t) for t in sums])

    return sig, codegen


@njit(inline="always", **_JIT)
def _z_tile(R, U, a0, e0, nb, Z):
    """``Z[e0 + i, j] += sum_{m < 4} U[a0 + m, e0 + i] R[a0 + m, j]`` for ``i < 4``,
    ``j < nb``: a 4 x 4 tile of ``z = U^T r`` (eq. 40).  Sixteen multiply-adds per
    point for four loads and four stores of ``Z``, vectorised over the points; the
    terms are added in the order of ``m``.  ``U`` is padded with zeros to a multiple
    of four, and ``U_ae = 0`` below the diagonal adds exact zeros."""
    r0, r1, r2, r3 = R[a0], R[a0 + 1], R[a0 + 2], R[a0 + 3]
    z0, z1, z2, z3 = Z[e0], Z[e0 + 1], Z[e0 + 2], Z[e0 + 3]
    u00, u01, u02, u03 = U[a0, e0], U[a0, e0 + 1], U[a0, e0 + 2], U[a0, e0 + 3]
    u10, u11, u12, u13 = U[a0 + 1, e0], U[a0 + 1, e0 + 1], U[a0 + 1, e0 + 2], U[a0 + 1, e0 + 3]
    u20, u21, u22, u23 = U[a0 + 2, e0], U[a0 + 2, e0 + 1], U[a0 + 2, e0 + 2], U[a0 + 2, e0 + 3]
    u30, u31, u32, u33 = U[a0 + 3, e0], U[a0 + 3, e0 + 1], U[a0 + 3, e0 + 2], U[a0 + 3, e0 + 3]
    for j in range(nb):
        x0, x1, x2, x3 = r0[j], r1[j], r2[j], r3[j]
        z0[j] = (((z0[j] + u00 * x0) + u10 * x1) + u20 * x2) + u30 * x3
        z1[j] = (((z1[j] + u01 * x0) + u11 * x1) + u21 * x2) + u31 * x3
        z2[j] = (((z2[j] + u02 * x0) + u12 * x1) + u22 * x2) + u32 * x3
        z3[j] = (((z3[j] + u03 * x0) + u13 * x1) + u23 * x2) + u33 * x3


#: What :func:`_range` accumulates besides ``(sum w log p, sum w)``: nothing, the gradient
#: sums ``N_k``, ``sum g z``, ``sum g r z^T`` (eqs. 41-43), or the E-step statistics
#: ``N_k``, ``sum g r``, ``sum g r r^T`` (eqs. 27, 47).
LOGLIK, GRAD, STATS = 0, 1, 2


@njit(**_JIT)
def workspace(k_comp, d, d4):
    """The buffers of :func:`range_in` for ``K``, ``D`` and ``D4`` (a compiled epoch keeps
    one for all its batches): ``(xt, R, Z, lw, top, lp, coef, g, gr, wb)``."""
    B = BLOCK_ROWS
    return (np.empty((d, B)), np.zeros((d4, B)), np.empty((k_comp, d4, B)),
            np.empty((k_comp, B)), np.empty(B), np.empty(B), np.empty(B),
            np.empty((k_comp, B)), np.empty(B), np.ones(B))


@njit(**_JIT)
def _range(X, lo, hi, w, has_w, means, U, const, what, acc, nk, gz, M, lw_out):
    """:func:`range_in` with its own :func:`workspace`."""
    xt, R, Z, lw, top, lp, coef, g, gr, wb = workspace(means.shape[0], means.shape[1],
                                                      U.shape[1])
    range_in(X, lo, hi, w, has_w, means, U, const, what, acc, nk, gz, M, lw_out,
             xt, R, Z, lw, top, lp, coef, g, gr, wb)


@njit(**_JIT)
def range_in(X, lo, hi, w, has_w, means, U, const, what, acc, nk, gz, M, lw_out,
             xt, R, Z, lw, top, lp, coef, g, gr, wb):
    """Rows ``lo:hi``: ``acc += (sum w log p, sum w)`` and, with ``what`` = :data:`GRAD`,
    ``nk``, ``gz`` (K, D4) and the upper triangle of ``M = sum g r z^T`` (K, D4, D4), ``D4``
    being ``D`` rounded up to a multiple of 4 (the shape of the padded ``U``; entries past
    ``D`` stay 0); with :data:`STATS` ``nk``, ``sum g r`` in ``gz`` and the upper triangle
    of ``sum g r r^T`` in ``M``.  With ``lw_out`` of shape (n, K) (else (0, K)) the
    weighted log densities are written there instead.  The buffers ``xt`` ... ``wb`` are a
    :func:`workspace` (rows of ``R`` past ``D`` must be 0)."""
    k_comp, d = means.shape
    d4 = U.shape[1]  # D rounded up to a multiple of 4, U padded with zeros
    B = BLOCK_ROWS
    if not has_w:
        wb[:] = 1.0
    for lo_b in range(lo, hi, B):
        nb = min(B, hi - lo_b)
        load_rows(X, lo_b, nb, xt)
        for k in range(k_comp):
            Zk = Z[k]
            lwk = lw[k]
            for j in range(nb):
                lwk[j] = 0.0
            for a in range(d):
                ra = R[a]
                xa = xt[a]
                mu = means[k, a]
                for j in range(nb):
                    ra[j] = xa[j] - mu
            for e0 in range(0, d4, 4):
                for e in range(e0, e0 + 4):
                    ze = Zk[e]
                    for j in range(nb):
                        ze[j] = 0.0
                for a0 in range(0, e0 + 4, 4):  # U_ae = 0 for a > e
                    _z_tile(R, U[k], a0, e0, nb, Zk)
            for e in range(d):
                ze = Zk[e]
                for j in range(nb):
                    lwk[j] += ze[j] * ze[j]
            c = const[k]
            for j in range(nb):
                lwk[j] = c - 0.5 * lwk[j]
        if lw_out.shape[0] > 0:
            for j in range(nb):
                for k in range(k_comp):
                    lw_out[lo_b + j, k] = lw[k, j]
            continue
        for j in range(nb):
            top[j] = lw[0, j]
        for k in range(1, k_comp):
            for j in range(nb):
                top[j] = max(top[j], lw[k, j])
        for j in range(nb):
            lp[j] = 0.0
        for k in range(k_comp):
            lwk = lw[k]
            for j in range(nb):
                lp[j] += vexp_neg(lwk[j] - top[j])
        if has_w:
            for j in range(nb):
                wb[j] = w[lo_b + j]
        for j in range(nb):
            coef[j] = wb[j] / lp[j]             # w / sum_k exp(lw_k - top)
            lp[j] = top[j] + vlog(lp[j])        # eqs. 10, 25
            if not top[j] >= FAR_LOG_DENSITY:   # a far row (eq. 52): the NumPy family's
                lp[j] = np.nan
        s_wlp, s_w = lane_dot_sum(wb, lp, nb)
        acc[0] += s_wlp
        acc[1] += s_w
        if what == LOGLIK:
            continue
        for k in range(k_comp):
            gk = g[k]
            lwk = lw[k]
            for j in range(nb):
                gk[j] = vexp_neg(lwk[j] - top[j]) * coef[j]   # w gamma, eq. 11
            nk[k] += lane_dot_sum(gk, gk, nb)[1]
            if what == STATS:
                _stats_sums(xt, means[k], gk, nb, R, gr, gz[k], M[k])
                continue
            Zk = Z[k]
            for e in range(0, d4, 4):           # rows of z past D are 0
                s0, s1, s2, s3 = lane_dot4(gk, Zk[e], Zk[e + 1], Zk[e + 2], Zk[e + 3], nb)
                gz[k, e] += s0
                gz[k, e + 1] += s1
                gz[k, e + 2] += s2
                gz[k, e + 3] += s3
            for a in range(d):
                ra = R[a]
                xa = xt[a]
                mu = means[k, a]
                for j in range(nb):
                    ra[j] = gk[j] * (xa[j] - mu)
                # sum g r z^T, row a, in aligned groups of four columns from the one that
                # holds the diagonal: the few entries below the diagonal are computed and
                # never read (eq. 43 reads the upper triangle only)
                for e in range(a - a % 4, d4, 4):
                    m0, m1, m2, m3 = lane_dot4(ra, Zk[e], Zk[e + 1], Zk[e + 2], Zk[e + 3], nb)
                    M[k, a, e] += m0
                    M[k, a, e + 1] += m1
                    M[k, a, e + 2] += m2
                    M[k, a, e + 3] += m3


@njit(inline="always", **_JIT)
def _stats_sums(xt, mean, gk, nb, R, gr, sx, S):
    """One component's E-step sums over a block: ``sx += sum_j g_j r_j`` and the upper
    triangle of ``S += sum_j g_j r_j r_j^T`` with ``r_j = x_j - mu`` (eqs. 27, 47), in the
    lanes of :func:`lane_dot4` (rows of ``R`` past ``D`` are 0)."""
    d = mean.shape[0]
    d4 = R.shape[0]
    for a in range(d):
        ra = R[a]
        xa = xt[a]
        mu = mean[a]
        for j in range(nb):
            ra[j] = xa[j] - mu
    for e in range(0, d4, 4):
        s0, s1, s2, s3 = lane_dot4(gk, R[e], R[e + 1], R[e + 2], R[e + 3], nb)
        sx[e] += s0
        sx[e + 1] += s1
        sx[e + 2] += s2
        sx[e + 3] += s3
    for a in range(d):
        ra = R[a]
        for j in range(nb):
            gr[j] = gk[j] * ra[j]
        for e in range(a - a % 4, d4, 4):   # entries below the diagonal: computed, not read
            m0, m1, m2, m3 = lane_dot4(gr, R[e], R[e + 1], R[e + 2], R[e + 3], nb)
            S[a, e] += m0
            S[a, e + 1] += m1
            S[a, e + 2] += m2
            S[a, e + 3] += m3


@njit(parallel=True, cache=True, error_model="numpy", nogil=True)
def _chunks(X, w, has_w, means, U, const, what, acc, nk, gz, M):
    n = X.shape[0]
    empty = np.empty((0, means.shape[0]))
    for c in prange(acc.shape[0]):
        lo = c * CHUNK_ROWS
        _range(X, lo, min(n, lo + CHUNK_ROWS), w, has_w, means, U, const, what,
               acc[c], nk[c], gz[c], M[c], empty)


def _prepare(family: FullFamily, X, params):
    X = np.ascontiguousarray(check_X(X, family.name), dtype=np.float64)
    stack = np.ascontiguousarray(family.factor_stack(params), dtype=np.float64)
    U = chol.factor(stack)
    d = X.shape[1]
    const = chol.log_det_half(stack) - 0.5 * d * LOG_2PI + log_softmax(params.logits)
    d4 = -(-d // 4) * 4
    padded = np.zeros((U.shape[0], d4, d4))
    padded[:, :d, :d] = U
    return X, np.ascontiguousarray(params.means, dtype=np.float64), U, padded, const


def log_prob_components(family: FullFamily, X, params) -> np.ndarray:
    """``family.log_prob_components(X, params)``, compiled; (n, K)."""
    X, means, _, padded, const = _prepare(family, X, params)
    out = np.empty((X.shape[0], means.shape[0]))
    k, d4 = means.shape[0], padded.shape[1]
    _range(X, 0, X.shape[0], np.empty(0), False, means, padded, const, LOGLIK, np.zeros(2),
           np.zeros(k), np.zeros((k, d4)), np.zeros((k, d4, d4)), out)
    far = np.flatnonzero(~(out.max(axis=1, initial=-np.inf) >= FAR_LOG_DENSITY))
    if len(far):  # eq. 52 in the NumPy family's scaled form
        out[far] = family.log_prob_components(X[far], params)
    return out


def _sums(family: FullFamily, X, params, sample_weight, what: int, parallel: bool):
    """``(U, ll_sum, weight_sum, nk, gz, M)`` over all rows (chunks summed in order), or
    ``None`` where a sum is not finite (far rows: the NumPy family's business)."""
    X, means, U, padded, const = _prepare(family, X, params)
    n = X.shape[0]
    k, d = means.shape
    has_w = sample_weight is not None
    w = np.ascontiguousarray(sample_weight, dtype=np.float64) if has_w else np.empty(0)
    n_chunks = max(1, -(-n // CHUNK_ROWS))
    scal, nk = np.zeros((n_chunks, 2)), np.zeros((n_chunks, k))
    d4 = padded.shape[1]
    gz, M = np.zeros((n_chunks, k, d4)), np.zeros((n_chunks, k, d4, d4))
    if parallel and n_chunks > 1:
        _chunks(X, w, has_w, means, padded, const, what, scal, nk, gz, M)
    else:
        empty = np.empty((0, k))
        for c in range(n_chunks):
            lo = c * CHUNK_ROWS
            _range(X, lo, min(n, lo + CHUNK_ROWS), w, has_w, means, padded, const, what,
                   scal[c], nk[c], gz[c], M[c], empty)
    ll_sum, weight_sum = scal.sum(axis=0)
    if not (np.isfinite(ll_sum) and np.isfinite(gz).all() and np.isfinite(M).all()):
        return None
    weight_sum = float(weight_sum) if has_w else float(n)
    return (U, float(ll_sum), weight_sum, nk.sum(axis=0), gz.sum(axis=0)[:, :d],
            M.sum(axis=0)[:, :d, :d])


def nll_grad_sums(family: FullFamily, X, params, sample_weight=None, *, parallel: bool = False):
    """``family.nll_grad_sums(X, params, sample_weight)``, compiled (eqs. 40-44).

    ``parallel=True`` runs the row chunks on numba's threads; the sums are the same
    bit for bit either way.
    """
    sums = _sums(family, X, params, sample_weight, GRAD, parallel)
    if sums is None:
        return family.nll_grad_sums(X, params, sample_weight)  # far rows: eqs. 52, 53
    U, ll_sum, weight_sum, nk, gz, M = sums
    g_means, g_chol, g_logits = gradients_from_sums(U, params.logits, weight_sum, nk, gz, M)
    return family.gradsums_type(-ll_sum, weight_sum, g_means, family.pool(g_chol), g_logits)


def em_stats(family: FullFamily, X, params, sample_weight=None, *, parallel: bool = False):
    """``family.em_stats(X, params, sample_weight)``, compiled: the centred statistics
    ``N_k``, ``sum g (x - mu_k)`` and ``sum g (x - mu_k)(x - mu_k)^T`` (eqs. 11, 27, 47;
    summed over ``k`` for tied) in the same pass that computes the responsibilities."""
    sums = _sums(family, X, params, sample_weight, STATS, parallel)
    if sums is None:
        return family.em_stats(X, params, sample_weight)  # far rows: eqs. 52, 53
    _, ll_sum, weight_sum, nk, sx, S = sums
    sxx = np.triu(S) + np.swapaxes(np.triu(S, 1), 1, 2)   # the upper triangle, mirrored
    return CentredStats(ll_sum, weight_sum, nk, sx, family.pool(sxx))
