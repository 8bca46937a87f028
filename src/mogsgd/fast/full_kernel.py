"""A compiled pass for the full and tied covariance families (eqs. 40-44).

:func:`nll_grad_sums`, :func:`em_stats`, :func:`nll`, :func:`log_prob` and
:func:`log_prob_components` are drop-in replacements for the NumPy methods of
:data:`mogsgd.covariance.FULL` and :data:`~mogsgd.covariance.TIED` (same results to ~1e-13
relative).  Rows (float64, or float32 read as they are) are taken in blocks of at most
``block``, transposed into a (D, block) buffer so every inner loop runs over points with
unit stride and vectorises.  Per block and component, in one read of the rows:

1. ``z_e = sum_{a <= e} U_kae (x_a - mu_ka)`` (the triangular product of eq. 40) in
   4 x 4 tiles of ``U`` (:func:`_z_tile`: the residual formed on the fly, sixteen
   multiply-adds per point per load and store of four rows of ``z``), ``|z|^2`` added
   per group of four rows, ``lw_k = c_k - |z|^2 / 2``;
2. the log-sum-exp over components and the weighted responsibilities
   ``g_k = w exp(lw_k - log p)`` (eqs. 10, 11, 25), one SIMD ``exp`` per point and
   component and one ``log`` per point (:mod:`mogsgd.fast.simd`);
3. ``N_k``, ``sum g z`` and the upper triangle of ``M_k = sum g r z^T`` (eq. 43) -- or,
   for the E-step, ``sum g r`` and ``sum g r r^T`` (eq. 47) -- as sums over points in
   eight vector lanes (:func:`~mogsgd.fast.simd.lane_dot_sum`; :func:`lane_dot4` and
   :func:`lane_dot2x4` for four entries of one or two rows of ``M`` at once): a fixed
   order, no re-association.

Far rows (every component beyond the saturation point of eq. 52, or a residual beyond
the float range) are not the kernel's business: it marks them with a NaN log-likelihood
and the wrappers hand such input to the NumPy family, which computes eqs. 52, 53 in a
scaled form.  Ordinary data pay one comparison per row.

Cost O(K D^2) per point; buffers O(block K D); no (n, K) or (n, D) temporaries.  Each
chunk of :data:`CHUNK_ROWS` rows has its own accumulator and the chunks are summed in
order, so the result is the same bit for bit serially or in parallel.  Speed against the
NumPy pass: ``benchmarks/bench_full_kernel.py`` and goal 17.1 of ``benchmarks/``.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from mogsgd.covariance import CentredStats, check_X, ops
from mogsgd.covariance import cholesky as chol
from mogsgd.covariance.full import FullFamily, gradients_from_sums
from mogsgd.density import FAR_LOG_DENSITY, LOG_2PI, logsumexp
from mogsgd.fast.simd import (
    EXACT_MATH,
    LANES,
    lane_dot_sum,
    lane_sum,
    load_rows,
    vexp_neg,
    vlog,
)
from mogsgd.params import log_softmax

__all__ = ["BLOCK_ROWS", "CHUNK_ROWS", "nll_grad_sums", "em_stats", "log_prob_components",
           "log_prob", "nll", "workspace", "range_in"]

#: Rows per block (the transposed buffer's width).
BLOCK_ROWS = 256
#: Rows per accumulator chunk (fixed, so the summation order never changes).
CHUNK_ROWS = 1 << 14

_JIT = {"cache": True, "error_model": "numpy", "nogil": True, "fastmath": EXACT_MATH}


@intrinsic
def fma(typingctx, a, b, c):
    """``a b + c`` as one fused multiply-add where the CPU has them (``llvm.fmuladd.f64``: a
    decision per machine, not per compilation unit; never a slow software ``fma`` on a CPU
    without); vectorises."""
    sig = types.float64(types.float64, types.float64, types.float64)

    def codegen(context, builder, signature, args):
        f64 = ir.DoubleType()
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(f64, [f64] * 3),
                                            "llvm.fmuladd.f64")
        return builder.call(fn, args)

    return sig, codegen


def _dot_tile(n_a: int, n_b: int):
    """The code of :func:`lane_dot4` (``n_a = 1``) and :func:`lane_dot2x4` (``n_a = 2``):
    ``sum_j a_i[j] b_m[j]`` for every pair, each in its own vector accumulator (rounded
    as :func:`mogsgd.fast.simd.lane_dot_sum` rounds it), ``a_i`` major."""

    def codegen(context, builder, signature, args):
        i64 = ir.IntType(64)
        vty = ir.VectorType(ir.DoubleType(), LANES)
        n_arr = n_a + n_b
        ptrs = [context.make_array(ty)(context, builder, v).data
                for ty, v in zip(signature.args[:n_arr], args[:n_arr], strict=True)]
        a_ptrs, b_ptrs = ptrs[:n_a], ptrs[n_a:]
        n_val = args[n_arr]

        def vload(bld, base, idx):
            return bld.load(bld.bitcast(bld.gep(base, [idx]), vty.as_pointer()), align=8)

        accs = [cgutils.alloca_once_value(builder, ir.Constant(vty, [0.0] * LANES))
                for _ in range(n_a * n_b)]
        n_main = builder.sub(n_val, builder.srem(n_val, ir.Constant(i64, LANES)))
        with cgutils.for_range_slice(builder, ir.Constant(i64, 0), n_main,
                                     ir.Constant(i64, LANES)) as (idx, _):
            avs = [vload(builder, base, idx) for base in a_ptrs]
            bvs = [vload(builder, base, idx) for base in b_ptrs]
            for i, av in enumerate(avs):
                for m, bv in enumerate(bvs):
                    acc = accs[i * n_b + m]
                    prod = builder.fmul(av, bv, flags=("contract",))
                    builder.store(builder.fadd(builder.load(acc), prod, flags=("contract",)),
                                  acc)
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
            ajs = [builder.load(builder.gep(base, [j])) for base in a_ptrs]
            for m, base in enumerate(b_ptrs):
                bj = builder.load(builder.gep(base, [j]))
                for i, aj in enumerate(ajs):
                    total = sums[i * n_b + m]
                    builder.store(builder.fadd(builder.load(total), builder.fmul(aj, bj)),
                                  total)
        return context.make_tuple(builder, signature.return_type,
                                  [builder.load(t) for t in sums])

    return codegen


@intrinsic
def lane_dot4(typingctx, a, b0, b1, b2, b3, n):
    """``(sum_j a[j] b0[j], ..., sum_j a[j] b3[j])`` over ``j < n`` (1-D float64).

    Each sum is rounded exactly as :func:`mogsgd.fast.simd.lane_dot_sum` rounds it
    (eight lanes of consecutive points, the fixed tree ((0+4)+(2+6)) + ((1+5)+(3+7)),
    then the tail in order), so the result is the same bits; but the four sums run in
    four independent vector accumulators that share the loads of ``a``, so the loop is
    not bound by the latency of one chain of multiply-adds.
    """
    return types.UniTuple(types.float64, 4)(a, b0, b1, b2, b3, n), _dot_tile(1, 4)


@intrinsic
def lane_dot2x4(typingctx, a0, a1, b0, b1, b2, b3, n):
    """:func:`lane_dot4` for two rows ``a0``, ``a1`` at once: ``(a0.b0, ..., a0.b3, a1.b0,
    ..., a1.b3)``, each sum rounded as :func:`lane_dot4` rounds it (the same bits).  Eight
    accumulators and six loads per eight multiply-adds (five per four in
    :func:`lane_dot4`): enough independent chains to keep both FMA units busy."""
    sig = types.UniTuple(types.float64, 8)(a0, a1, b0, b1, b2, b3, n)
    return sig, _dot_tile(2, 4)


@njit(inline="always", **_JIT)
def _z_tile(xt, mean, U, a0, e0, nb, Z, first):
    """``Z[e0 + i, j] (+)= sum_{m < 4} U[a0 + m, e0 + i] (xt[a0 + m, j] - mean[a0 + m])``
    for ``i < 4``, ``j < nb``: a 4 x 4 tile of ``z = U^T (x - mu)`` (eq. 40), the residual
    formed on the fly (no (D, block) residual array is written); ``first`` (the tile at
    ``a0 = 0``) sets ``Z`` instead of adding to it.  Sixteen multiply-adds per point for
    four loads of ``x`` and four stores of ``z``, vectorised over the points; the terms
    are added in the order of ``m``, by explicit fused multiply-adds (:func:`fma`: the
    rounding does not depend on how LLVM would contract ``a b + c d`` in one compilation
    unit or another, so the compiled epoch and the pass agree).  ``U``, ``mean`` and the
    rows of ``xt`` are padded with zeros to a multiple of four, and ``U_ae = 0`` below the
    diagonal adds exact zeros."""
    x0, x1, x2, x3 = xt[a0], xt[a0 + 1], xt[a0 + 2], xt[a0 + 3]
    m0, m1, m2, m3 = mean[a0], mean[a0 + 1], mean[a0 + 2], mean[a0 + 3]
    z0, z1, z2, z3 = Z[e0], Z[e0 + 1], Z[e0 + 2], Z[e0 + 3]
    u00, u01, u02, u03 = U[a0, e0], U[a0, e0 + 1], U[a0, e0 + 2], U[a0, e0 + 3]
    u10, u11, u12, u13 = U[a0 + 1, e0], U[a0 + 1, e0 + 1], U[a0 + 1, e0 + 2], U[a0 + 1, e0 + 3]
    u20, u21, u22, u23 = U[a0 + 2, e0], U[a0 + 2, e0 + 1], U[a0 + 2, e0 + 2], U[a0 + 2, e0 + 3]
    u30, u31, u32, u33 = U[a0 + 3, e0], U[a0 + 3, e0 + 1], U[a0 + 3, e0 + 2], U[a0 + 3, e0 + 3]
    if first:
        for j in range(nb):
            r0, r1, r2, r3 = x0[j] - m0, x1[j] - m1, x2[j] - m2, x3[j] - m3
            z0[j] = fma(u30, r3, fma(u20, r2, fma(u10, r1, u00 * r0)))
            z1[j] = fma(u31, r3, fma(u21, r2, fma(u11, r1, u01 * r0)))
            z2[j] = fma(u32, r3, fma(u22, r2, fma(u12, r1, u02 * r0)))
            z3[j] = fma(u33, r3, fma(u23, r2, fma(u13, r1, u03 * r0)))
    else:
        for j in range(nb):
            r0, r1, r2, r3 = x0[j] - m0, x1[j] - m1, x2[j] - m2, x3[j] - m3
            z0[j] = fma(u30, r3, fma(u20, r2, fma(u10, r1, fma(u00, r0, z0[j]))))
            z1[j] = fma(u31, r3, fma(u21, r2, fma(u11, r1, fma(u01, r0, z1[j]))))
            z2[j] = fma(u32, r3, fma(u22, r2, fma(u12, r1, fma(u02, r0, z2[j]))))
            z3[j] = fma(u33, r3, fma(u23, r2, fma(u13, r1, fma(u03, r0, z3[j]))))


@njit(inline="always", **_JIT)
def _add_squares(Z, e0, nb, lw):
    """``lw[j] += z_e0^2 + ... + z_(e0+3)^2``, added in the order of ``e`` (eq. 40's
    ``|z|^2``, four rows of ``Z`` per read of ``lw``)."""
    z0, z1, z2, z3 = Z[e0], Z[e0 + 1], Z[e0 + 2], Z[e0 + 3]
    for j in range(nb):
        lw[j] = (((lw[j] + z0[j] * z0[j]) + z1[j] * z1[j]) + z2[j] * z2[j]) + z3[j] * z3[j]


@njit(inline="always", **_JIT)
def _upper_sums(A, B, d, nb, M):
    """``M[a, e] += sum_j A[a, j] B[e, j]`` for ``a < D`` (and the padded row after an odd
    ``D``) in aligned groups of four columns ``e`` from the one that holds the diagonal,
    two rows ``a`` at a time (:func:`lane_dot2x4`): the upper triangle of ``A B^T`` (eqs.
    43, 47; the few entries below the diagonal are computed and never read).  Rows of
    ``A`` past ``D`` must be 0."""
    d4 = B.shape[0]
    for a in range(0, d, 2):   # a is even: rows a and a + 1 start at the same group
        a0, a1 = A[a], A[a + 1]
        for e in range(a - a % 4, d4, 4):
            m0, m1, m2, m3, n0, n1, n2, n3 = lane_dot2x4(a0, a1, B[e], B[e + 1], B[e + 2],
                                                         B[e + 3], nb)
            M[a, e] += m0
            M[a, e + 1] += m1
            M[a, e + 2] += m2
            M[a, e + 3] += m3
            M[a + 1, e] += n0
            M[a + 1, e + 1] += n1
            M[a + 1, e + 2] += n2
            M[a + 1, e + 3] += n3


#: What :func:`_range` accumulates besides ``(sum w log p, sum w)``: nothing, the gradient
#: sums ``N_k``, ``sum g z``, ``sum g r z^T`` (eqs. 41-43), or the E-step statistics
#: ``N_k``, ``sum g r``, ``sum g r r^T`` (eqs. 27, 47).
LOGLIK, GRAD, STATS = 0, 1, 2


@njit(**_JIT)
def workspace(k_comp, d, d4):
    """The buffers of :func:`range_in` for ``K``, ``D`` and ``D4`` (a compiled epoch keeps
    one for all its batches): ``(xt, R, Z, lw, top, lp, coef, g, gr, wb)``."""
    B = BLOCK_ROWS
    return (np.zeros((d4, B)), np.zeros((d4, B)), np.empty((k_comp, d4, B)),
            np.empty((k_comp, B)), np.empty(B), np.empty(B), np.empty(B),
            np.empty((k_comp, B)), np.zeros((d4, B)), np.ones(B))


@njit(**_JIT)
def _range(X, lo, hi, w, has_w, means, U, const, what, acc, nk, gz, M, lw_out, lp_out):
    """:func:`range_in` with its own :func:`workspace`."""
    xt, R, Z, lw, top, lp, coef, g, gr, wb = workspace(means.shape[0], X.shape[1],
                                                      U.shape[1])
    range_in(X, lo, hi, w, has_w, means, U, const, what, acc, nk, gz, M, lw_out, lp_out,
             xt, R, Z, lw, top, lp, coef, g, gr, wb)


@njit(**_JIT)
def range_in(X, lo, hi, w, has_w, means, U, const, what, acc, nk, gz, M, lw_out, lp_out,
             xt, R, Z, lw, top, lp, coef, g, gr, wb):
    """Rows ``lo:hi``: ``acc += (sum w log p, sum w)`` and, with ``what`` = :data:`GRAD`,
    ``nk``, ``gz`` (K, D4) and the upper triangle of ``M = sum g r z^T`` (K, D4, D4), ``D4``
    being ``D`` rounded up to a multiple of 4 (the shape of the padded ``U``; entries past
    ``D`` stay 0); with :data:`STATS` ``nk``, ``sum g r`` in ``gz`` and the upper triangle
    of ``sum g r r^T`` in ``M``.  With ``lw_out`` of shape (n, K) (else (0, K)) the
    weighted log densities are written there instead; with ``lp_out`` of shape (n,) (else
    (0,)) each row's ``log p`` (NaN for a far row) is written there too.  ``means`` is
    (K, D4), padded with zeros as ``U`` is.  The buffers ``xt`` ... ``wb`` are a
    :func:`workspace` (rows of ``xt`` and ``R`` past ``D`` must be 0)."""
    k_comp = means.shape[0]
    d = X.shape[1]
    d4 = U.shape[1]  # D rounded up to a multiple of 4, U and means padded with zeros
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
            for e0 in range(0, d4, 4):
                for a0 in range(0, e0 + 4, 4):  # U_ae = 0 for a > e
                    _z_tile(xt, means[k], U[k], a0, e0, nb, Zk, a0 == 0)
                _add_squares(Zk, e0, nb, lwk)   # rows e0..e0+3 of z are final
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
            gk = g[k]
            for j in range(nb):
                e = vexp_neg(lwk[j] - top[j])
                gk[j] = e                       # kept: the responsibilities reuse it
                lp[j] += e
        if has_w:
            for j in range(nb):
                wb[j] = w[lo_b + j]
        for j in range(nb):
            coef[j] = wb[j] / lp[j]             # w / sum_k exp(lw_k - top)
            lp[j] = top[j] + vlog(lp[j])        # eqs. 10, 25
            if not top[j] >= FAR_LOG_DENSITY:   # a far row (eq. 52): the NumPy family's
                lp[j] = np.nan
        if lp_out.shape[0] > 0:
            for j in range(nb):
                lp_out[lo_b + j] = lp[j]
        s_wlp, s_w = lane_dot_sum(wb, lp, nb)
        acc[0] += s_wlp
        acc[1] += s_w
        if what == LOGLIK:
            continue
        for k in range(k_comp):
            gk = g[k]
            for j in range(nb):
                gk[j] = gk[j] * coef[j]         # w gamma, eq. 11
            nk[k] += lane_sum(gk, nb)
            if what == STATS:
                _stats_sums(xt, means[k], d, gk, nb, R, gr, gz[k], M[k])
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
            _upper_sums(R, Zk, d, nb, M[k])


@njit(inline="always", **_JIT)
def _stats_sums(xt, mean, d, gk, nb, R, gr, sx, S):
    """One component's E-step sums over a block: ``sx += sum_j g_j r_j`` and the upper
    triangle of ``S += sum_j g_j r_j r_j^T`` with ``r_j = x_j - mu`` (eqs. 27, 47), in the
    lanes of :func:`lane_dot4` (rows of ``R`` past ``D`` are 0)."""
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
        ga = gr[a]
        for j in range(nb):
            ga[j] = gk[j] * ra[j]
    _upper_sums(gr, R, d, nb, S)


@njit(parallel=True, cache=True, error_model="numpy", nogil=True)
def _chunks(X, w, has_w, means, U, const, what, acc, nk, gz, M, lp_out):
    n = X.shape[0]
    empty = np.empty((0, means.shape[0]))
    for c in prange(acc.shape[0]):
        lo = c * CHUNK_ROWS
        _range(X, lo, min(n, lo + CHUNK_ROWS), w, has_w, means, U, const, what,
               acc[c], nk[c], gz[c], M[c], empty, lp_out)


def _prepare(family: FullFamily, X, params):
    # no NaN scan here: a NaN gives the kernel's log-likelihood a NaN, and the callers then
    # hand the rows to the NumPy family, which refuses them with its message (check_X)
    X = np.asarray(X)
    if X.ndim != 2:
        X = check_X(X, family.name)   # (raises: not 2-D)
    if not (X.dtype in (np.float32, np.float64) and X.flags.c_contiguous):
        X = np.ascontiguousarray(X, dtype=np.float64)   # float32 rows are read as they are
    stack = np.ascontiguousarray(family.factor_stack(params), dtype=np.float64)
    U = chol.factor(stack)
    d = X.shape[1]
    const = chol.log_det_half(stack) - 0.5 * d * LOG_2PI + log_softmax(params.logits)
    d4 = -(-d // 4) * 4
    padded = np.zeros((U.shape[0], d4, d4))
    padded[:, :d, :d] = U
    means = np.zeros((params.means.shape[0], d4))
    means[:, :d] = params.means
    return X, means, U, padded, const


def log_prob_components(family: FullFamily, X, params) -> np.ndarray:
    """``family.log_prob_components(X, params)``, compiled; (n, K)."""
    X, means, _, padded, const = _prepare(family, X, params)
    out = np.empty((X.shape[0], means.shape[0]))
    k, d4 = means.shape[0], padded.shape[1]
    _range(X, 0, X.shape[0], np.empty(0), False, means, padded, const, LOGLIK, np.zeros(2),
           np.zeros(k), np.zeros((k, d4)), np.zeros((k, d4, d4)), out, np.empty(0))
    far = np.flatnonzero(~(out.max(axis=1, initial=-np.inf) >= FAR_LOG_DENSITY))
    if len(far):  # eq. 52 in the NumPy family's scaled form
        out[far] = family.log_prob_components(X[far], params)
    return out


def _sums(family: FullFamily, X, params, sample_weight, what: int, parallel: bool,
          lp_out=None):
    """``(U, ll_sum, weight_sum, nk, gz, M)`` over all rows (chunks summed in order), or
    ``None`` where a sum is not finite (far rows: the NumPy family's business); each row's
    ``log p`` into ``lp_out`` (n,) if given."""
    X, means, U, padded, const = _prepare(family, X, params)
    lp_out = np.empty(0) if lp_out is None else lp_out
    n = X.shape[0]
    k, d = means.shape[0], X.shape[1]
    has_w = sample_weight is not None
    w = np.ascontiguousarray(sample_weight, dtype=np.float64) if has_w else np.empty(0)
    n_chunks = max(1, -(-n // CHUNK_ROWS))
    scal, nk = np.zeros((n_chunks, 2)), np.zeros((n_chunks, k))
    d4 = padded.shape[1]
    gz, M = np.zeros((n_chunks, k, d4)), np.zeros((n_chunks, k, d4, d4))
    if parallel and n_chunks > 1:
        _chunks(X, w, has_w, means, padded, const, what, scal, nk, gz, M, lp_out)
    else:
        empty = np.empty((0, k))
        for c in range(n_chunks):
            lo = c * CHUNK_ROWS
            _range(X, lo, min(n, lo + CHUNK_ROWS), w, has_w, means, padded, const, what,
                   scal[c], nk[c], gz[c], M[c], empty, lp_out)
    ll_sum, weight_sum = scal.sum(axis=0)
    if not (np.isfinite(ll_sum) and np.isfinite(gz).all() and np.isfinite(M).all()):
        return None
    weight_sum = float(weight_sum) if has_w else float(n)
    return (U, float(ll_sum), weight_sum, nk.sum(axis=0), gz.sum(axis=0)[:, :d],
            M.sum(axis=0)[:, :d, :d])


def log_prob(family: FullFamily, X, params, *, parallel: bool = False) -> np.ndarray:
    """``log p(x_i)`` (n,) (eq. 10), compiled, with the log-sum-exp over components inside
    the kernel (no (n, K) array); far rows by the NumPy family (eqs. 52, 53)."""
    n = np.shape(X)[0]
    out = np.empty(n)
    if n:
        _sums(family, X, params, None, LOGLIK, parallel, out)
    bad = np.flatnonzero(np.isnan(out))
    if len(bad):   # far rows (or NaN, which the family refuses with its message)
        out[bad] = logsumexp(family.log_prob_components(np.asarray(X)[bad], params), axis=1)
    return out


def nll(family: FullFamily, X, params, sample_weight=None, *, parallel: bool = False) -> float:
    """``family``'s mean NLL (eq. 19), compiled: one pass that forms neither gradient sums
    nor an (n, K) array; the NumPy family's where a row is far (eqs. 52, 53)."""
    sums = _sums(family, X, params, sample_weight, LOGLIK, parallel)
    if sums is None:
        return ops.nll(X, params, sample_weight)
    return -sums[1] / sums[2]


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
