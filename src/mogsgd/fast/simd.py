"""Vectorisable ``exp`` and ``log``, and SIMD block transposes, for numba loops.

numba's PyPI build has no SVML, so ``math.exp`` / ``math.log`` inside a loop
become scalar libm calls and stop LLVM from vectorising it (about 57 M points/s
at four calls per point).  :func:`vexp` and :func:`vlog` are plain arithmetic
plus bit casts, so a loop that calls them compiles to AVX-512 / AVX2 code.

* :func:`vexp`: ``exp(x) = 2^k exp(r)``, ``k = rint(x / ln 2)`` (by the 1.5 * 2^52
  shifter, which also leaves ``k`` in the low bits), ``r = x - k ln 2`` in two
  parts (Cody-Waite; ``k * LN2_HI`` is exact), ``exp(r) = 1 + r + r^2 q(r)`` with
  ``q`` of degree 9 fitted at Chebyshev nodes of ``|r| <= ln(2)/2`` (error below
  0.6 ulp), and ``2^k`` built in the exponent bits as two factors, so gradual
  underflow is rounded once.  Within 1 ulp of glibc's ``exp`` over
  ``[-745, 709]``; 0 below -745.2; ``exp(0) == 1`` exactly; NaN stays NaN, so a
  missing value in ``X`` shows up as a NaN log-likelihood.  :func:`vexp_neg`, the
  kernels' version for ``x <= 0``, skips the clamps and flushes subnormal results to 0.
* :func:`vlog`: ``x = 2^e m`` with ``m`` in ``[sqrt(2)/2, sqrt(2))``,
  ``log m = 2 atanh(f)``, ``f = (m - 1) / (m + 1)``, ``|f| <= 0.172``, as the odd
  series to ``f^21`` (truncation < 1e-18); ``log x = e ln 2 + log m``.  Within
  2 ulp of glibc's ``log`` for positive normal ``x``; ``log(1) == 0`` exactly; NaN
  stays NaN.

Both are ``inline="always"``; their callers must be compiled without the
``reassoc`` fast-math flag, which would let LLVM fold ``(x * LOG2E + S) - S``
or the two-part reduction ``(x - k HI) - k LO`` and lose accuracy.

:func:`load_rows` and :func:`gather_rows` fill a ``(D, block)`` buffer from rows of
``X`` eight rows at a time -- one wide load (contiguous rows, ``D <= 8``) or eight
row-segment loads of up to 8 features -- and vector shuffles, generated as LLVM IR,
since LLVM does not vectorise a stride-``D`` loop with ``D`` unknown at compile time.

:func:`lane_sum`, :func:`lane_dot_sum` and :func:`lane_moments` are the sums over
points, in explicit vector lanes so that their rounding is fixed (see :data:`LANES`).
"""

from __future__ import annotations

import math

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = ["vexp", "vexp_neg", "vlog", "f64_as_i64", "i64_as_f64", "EXACT_MATH", "load_rows",
           "gather_rows", "lane_sum", "lane_dot_sum", "lane_moments", "LANES"]

#: fast-math flags safe for the polynomial code: FMA contraction and no signed zeros only.
EXACT_MATH = {"contract", "nsz"}

_JIT = {"cache": True, "error_model": "numpy", "nogil": True}


@intrinsic
def f64_as_i64(typingctx, x):
    """The IEEE-754 bits of a float64 as an int64 (an LLVM ``bitcast``, free in SIMD)."""
    sig = types.int64(types.float64)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))

    return sig, codegen


@intrinsic
def i64_as_f64(typingctx, x):
    """The float64 whose IEEE-754 bits are the int64 ``x``."""
    sig = types.float64(types.int64)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return sig, codegen


# ------------------------------------------------------------------------ exp
LOG2E = 1.4426950408889634
LN2_HI = 6.93147180369123816490e-01  # fdlibm's split: 32 trailing zero bits
LN2_LO = 1.90821492927058770002e-10
SHIFTER = 6755399441055744.0         # 1.5 * 2**52: adding it rounds to an integer
SHIFTER_BITS = 0x4338000000000000
EXP_MIN = -745.2   # exp underflows to 0 below -745.13
EXP_MAX = 709.78   # exp overflows above 709.78
# q(r) = (exp(r) - 1 - r) / r^2, interpolated at 10 Chebyshev nodes of [-ln2/2, ln2/2]
Q0 = 0.5000000000000001
Q1 = 0.16666666666666669
Q2 = 0.041666666666624164
Q3 = 0.008333333333330065
Q4 = 0.0013888888917196719
Q5 = 0.00019841269863040545
Q6 = 2.4801521322368692e-05
Q7 = 2.7557268480310024e-06
Q8 = 2.7620075879983367e-07
Q9 = 2.5100375832561234e-08


@njit(inline="always", fastmath=EXACT_MATH, error_model="numpy")
def vexp(x: float) -> float:
    """``exp(x)``, within 1 ulp, branch-free (see the module docstring); NaN gives NaN."""
    # written as selects, not min/max, so that a NaN passes through (x86 max/min drop it)
    x = EXP_MIN if x < EXP_MIN else x
    x = EXP_MAX if x > EXP_MAX else x
    t = x * LOG2E + SHIFTER
    kf = t - SHIFTER
    k = f64_as_i64(t) - SHIFTER_BITS
    r = x - kf * LN2_HI
    r = r - kf * LN2_LO
    q = Q9
    q = q * r + Q8
    q = q * r + Q7
    q = q * r + Q6
    q = q * r + Q5
    q = q * r + Q4
    q = q * r + Q3
    q = q * r + Q2
    q = q * r + Q1
    q = q * r + Q0
    p = 1.0 + (r + (r * r) * q)
    k1 = k >> 1
    k2 = k - k1
    return p * i64_as_f64((k1 + 1023) << 52) * i64_as_f64((k2 + 1023) << 52)


EXP_NEG_MIN = -708.39  # below this exp(x) < 2^-1022 (subnormal): vexp_neg returns 0


@njit(inline="always", fastmath=EXACT_MATH, error_model="numpy")
def vexp_neg(x: float) -> float:
    """``exp(x)`` for ``x <= 0`` as :func:`vexp`, cheaper: no clamping, one scale factor,
    and results that would be subnormal (``x < -708.39``) flushed to 0.  NaN gives NaN."""
    t = x * LOG2E + SHIFTER
    kf = t - SHIFTER
    k = f64_as_i64(t) - SHIFTER_BITS
    r = x - kf * LN2_HI
    r = r - kf * LN2_LO
    q = Q9
    q = q * r + Q8
    q = q * r + Q7
    q = q * r + Q6
    q = q * r + Q5
    q = q * r + Q4
    q = q * r + Q3
    q = q * r + Q2
    q = q * r + Q1
    q = q * r + Q0
    p = 1.0 + (r + (r * r) * q)
    y = p * i64_as_f64((k + 1023) << 52)
    # a select, not a branch; "x < min" is false for NaN, which so passes through in y
    return 0.0 if x < EXP_NEG_MIN else y


# ------------------------------------------------------------------------ log
SQRT2 = math.sqrt(2.0)
_L = [2.0 / (2 * j + 1) for j in range(11)]
L1, L2, L3, L4, L5, L6, L7, L8, L9, L10 = _L[1:11]
MANTISSA = 0x000FFFFFFFFFFFFF
ONE_BITS = 0x3FF0000000000000


@njit(inline="always", fastmath=EXACT_MATH, error_model="numpy")
def vlog(x: float) -> float:
    """``log(x)`` for positive normal ``x``, within 2 ulp, branch-free; NaN gives NaN."""
    bits = f64_as_i64(x)
    m = i64_as_f64((bits & MANTISSA) | ONE_BITS)
    big = m > SQRT2
    m = m * 0.5 if big else m
    e = float((bits >> 52) - 1023) + (1.0 if big else 0.0)
    f = (m - 1.0) / (m + 1.0)
    f2 = f * f
    q = L10
    q = q * f2 + L9
    q = q * f2 + L8
    q = q * f2 + L7
    q = q * f2 + L6
    q = q * f2 + L5
    q = q * f2 + L4
    q = q * f2 + L3
    q = q * f2 + L2
    q = q * f2 + L1
    log_m = 2.0 * f + f * (f2 * q)
    out = e * LN2_HI + (log_m + e * LN2_LO)
    return out if x == x else x  # NaN stays NaN


# ------------------------------------------------------------------ transposes
def _columns_out(context, builder, big, nd, dst_ary, doff, dstride):
    """Store column ``d`` of the 8 x nd row-major vector ``big`` at ``dst[d, doff:doff+8]``."""
    dbl = ir.DoubleType()
    vty = big.type
    i64 = ir.IntType(64)
    for d in range(nd):
        mask = ir.Constant(ir.VectorType(ir.IntType(32), 8), [d + u * nd for u in range(8)])
        col = builder.shuffle_vector(big, ir.Constant(vty, ir.Undefined), mask)
        off = builder.add(doff, builder.mul(dstride, ir.Constant(i64, d)))
        ptr = builder.gep(dst_ary.data, [off])
        builder.store(col, builder.bitcast(ptr, ir.VectorType(dbl, 8).as_pointer()), align=8)


def _to_double(builder, vec, is_f32: bool, width: int):
    return builder.fpext(vec, ir.VectorType(ir.DoubleType(), width)) if is_f32 else vec


@intrinsic
def _transpose8(typingctx, src, src_off, dst, dst_off, dst_stride, n_feat):
    """``dst[d, dst_off + u] = src[src_off + u D + d]`` for ``u < 8``, ``d < D``; ``D`` literal."""
    if not isinstance(n_feat, types.IntegerLiteral):
        return None
    nd = n_feat.literal_value
    is_f32 = src.dtype == types.float32
    sig = types.void(src, src_off, dst, dst_off, dst_stride, n_feat)

    def codegen(context, builder, signature, args):
        src_v, soff, dst_v, doff, dstride, _ = args
        sary = context.make_array(signature.args[0])(context, builder, src_v)
        dary = context.make_array(signature.args[2])(context, builder, dst_v)
        elt = ir.FloatType() if is_f32 else ir.DoubleType()
        ptr = builder.gep(sary.data, [soff])
        raw = builder.load(builder.bitcast(ptr, ir.VectorType(elt, 8 * nd).as_pointer()),
                           align=4 if is_f32 else 8)
        big = _to_double(builder, raw, is_f32, 8 * nd)
        _columns_out(context, builder, big, nd, dary, doff, dstride)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _rows8(typingctx, src, rows, pos, row_len, col0, dst, dst_off, dst_stride, width):
    """``dst[col0 + c, dst_off + u] = src[r_u row_len + col0 + c]`` for ``u < 8``,
    ``c < width`` (literal, 1..8), ``r_u = rows[pos + u]`` (or ``pos + u`` when ``rows`` is
    None): eight row segments loaded as vectors and transposed by shuffles."""
    if not isinstance(width, types.IntegerLiteral):
        return None
    nd = width.literal_value
    is_f32 = src.dtype == types.float32
    gathered = not isinstance(rows, types.NoneType)
    sig = types.void(src, rows, pos, row_len, col0, dst, dst_off, dst_stride, width)

    def codegen(context, builder, signature, args):
        src_v, rows_v, pos_v, rlen, c0, dst_v, doff, dstride, _ = args
        sary = context.make_array(signature.args[0])(context, builder, src_v)
        dary = context.make_array(signature.args[5])(context, builder, dst_v)
        elt = ir.FloatType() if is_f32 else ir.DoubleType()
        i64 = ir.IntType(64)
        row_ty = ir.VectorType(elt, nd)
        if gathered:
            rary = context.make_array(signature.args[1])(context, builder, rows_v)
        parts = []
        for u in range(8):
            at = builder.add(pos_v, ir.Constant(i64, u))
            if gathered:
                r = builder.load(builder.gep(rary.data, [at]))
                if r.type != i64:
                    r = builder.sext(r, i64)
            else:
                r = at
            off = builder.add(builder.mul(r, rlen), c0)
            ptr = builder.gep(sary.data, [off])
            parts.append(builder.load(builder.bitcast(ptr, row_ty.as_pointer()),
                                      align=4 if is_f32 else 8))
        width_now = nd
        while len(parts) > 1:  # concatenate pairwise into one 8 x width vector
            mask = ir.Constant(ir.VectorType(ir.IntType(32), 2 * width_now),
                               list(range(2 * width_now)))
            parts = [builder.shuffle_vector(parts[i], parts[i + 1], mask)
                     for i in range(0, len(parts), 2)]
            width_now *= 2
        big = _to_double(builder, parts[0], is_f32, 8 * nd)
        doff_c = builder.add(doff, builder.mul(dstride, c0))
        _columns_out(context, builder, big, nd, dary, doff_c, dstride)
        return context.get_dummy_value()

    return sig, codegen


@njit(**_JIT)
def _segments(flat, rows, lo, nb, d_feat, xf, stride):
    """Columns of ``nb`` rows (``rows[lo:lo+nb]``, or ``lo:lo+nb`` when ``rows`` is None)
    in groups of 8 rows x 8 columns; returns how many rows were done (a multiple of 8)."""
    n8 = nb - nb % 8
    for c0 in range(0, d_feat, 8):
        w = min(8, d_feat - c0)
        j = 0
        if w == 8:
            while j < n8:
                _rows8(flat, rows, lo + j, d_feat, c0, xf, j, stride, 8)
                j += 8
        elif w == 7:
            while j < n8:
                _rows8(flat, rows, lo + j, d_feat, c0, xf, j, stride, 7)
                j += 8
        elif w == 6:
            while j < n8:
                _rows8(flat, rows, lo + j, d_feat, c0, xf, j, stride, 6)
                j += 8
        elif w == 5:
            while j < n8:
                _rows8(flat, rows, lo + j, d_feat, c0, xf, j, stride, 5)
                j += 8
        elif w == 4:
            while j < n8:
                _rows8(flat, rows, lo + j, d_feat, c0, xf, j, stride, 4)
                j += 8
        elif w == 3:
            while j < n8:
                _rows8(flat, rows, lo + j, d_feat, c0, xf, j, stride, 3)
                j += 8
        elif w == 2:
            while j < n8:
                _rows8(flat, rows, lo + j, d_feat, c0, xf, j, stride, 2)
                j += 8
        else:
            while j < n8:
                _rows8(flat, rows, lo + j, d_feat, c0, xf, j, stride, 1)
                j += 8
    return n8


@njit(**_JIT)
def load_rows(X, lo, nb, xt):
    """``xt[d, j] = X[lo + j, d]`` for ``j < nb``: rows of C-contiguous ``X`` (n, D) into
    the columns of ``xt`` (D, block), converted to float64."""
    d_feat = X.shape[1]
    flat = X.reshape(-1)
    xf = xt.reshape(-1)
    stride = xt.shape[1]
    j = 0
    n8 = nb - nb % 8
    if d_feat == 1:
        x0 = xt[0]
        for i in range(nb):
            x0[i] = flat[lo + i]
        return
    if d_feat == 2:  # eight whole rows are one contiguous 8 D vector
        while j < n8:
            _transpose8(flat, (lo + j) * 2, xf, j, stride, 2)
            j += 8
    elif d_feat == 3:
        while j < n8:
            _transpose8(flat, (lo + j) * 3, xf, j, stride, 3)
            j += 8
    elif d_feat == 4:
        while j < n8:
            _transpose8(flat, (lo + j) * 4, xf, j, stride, 4)
            j += 8
    elif d_feat == 5:
        while j < n8:
            _transpose8(flat, (lo + j) * 5, xf, j, stride, 5)
            j += 8
    elif d_feat == 6:
        while j < n8:
            _transpose8(flat, (lo + j) * 6, xf, j, stride, 6)
            j += 8
    elif d_feat == 7:
        while j < n8:
            _transpose8(flat, (lo + j) * 7, xf, j, stride, 7)
            j += 8
    elif d_feat == 8:
        while j < n8:
            _transpose8(flat, (lo + j) * 8, xf, j, stride, 8)
            j += 8
    else:
        j = _segments(flat, None, lo, nb, d_feat, xf, stride)
    for i in range(j, nb):
        for d in range(d_feat):
            xt[d, i] = X[lo + i, d]


@njit(**_JIT)
def gather_rows(X, rows, lo, nb, xt):
    """``xt[d, j] = X[rows[lo + j], d]`` for ``j < nb`` (see :func:`load_rows`)."""
    d_feat = X.shape[1]
    flat = X.reshape(-1)
    if d_feat == 1:
        x0 = xt[0]
        for i in range(nb):
            x0[i] = flat[rows[lo + i]]
        return
    j = _segments(flat, rows, lo, nb, d_feat, xt.reshape(-1), xt.shape[1])
    for i in range(j, nb):
        r = rows[lo + i]
        for d in range(d_feat):
            xt[d, i] = X[r, d]


# --------------------------------------------------- deterministic lane sums
#: Lanes of the explicit vector accumulators below.  Each lane sums the points
#: ``j = l (mod LANES)`` in order, the lanes are then added in a fixed tree, and a
#: tail of ``nb mod LANES`` points is added last: the same rounding on every run,
#: machine width (AVX-512, AVX2, SSE) and compilation.  (The ``reassoc`` fast-math
#: flag would let LLVM pick the order per compilation: results then differed in the
#: last bit between a freshly compiled and a cached kernel.)
LANES = 8

_CONTRACT = ("contract",)


def _data_ptr(context, builder, ty, value):
    return context.make_array(ty)(context, builder, value).data


def _vec_load(builder, base, idx):
    ptr = builder.gep(base, [idx])
    vty = ir.VectorType(ir.DoubleType(), LANES)
    return builder.load(builder.bitcast(ptr, vty.as_pointer()), align=8)


def _hsum(builder, vec):
    """Lanes of ``vec`` added in the fixed tree ((0+4)+(2+6)) + ((1+5)+(3+7))."""
    lanes = [builder.extract_element(vec, ir.Constant(ir.IntType(32), i))
             for i in range(LANES)]
    while len(lanes) > 1:
        half = len(lanes) // 2
        lanes = [builder.fadd(lanes[i], lanes[i + half]) for i in range(half)]
    return lanes[0]


def _lane_loop(context, builder, n, n_acc, body):
    """Run ``body(builder, index) -> list of n_acc vector increments`` over
    ``index = 0, LANES, ...`` below ``n - n % LANES`` into vector accumulators; return
    their horizontal sums and the tail start."""
    i64 = ir.IntType(64)
    vty = ir.VectorType(ir.DoubleType(), LANES)
    zero = ir.Constant(vty, [0.0] * LANES)
    accs = [cgutils.alloca_once_value(builder, zero) for _ in range(n_acc)]
    n_main = builder.sub(n, builder.srem(n, ir.Constant(i64, LANES)))
    with cgutils.for_range_slice(builder, ir.Constant(i64, 0), n_main,
                                 ir.Constant(i64, LANES)) as (idx, _):
        incs = body(builder, idx)
        for a, inc in zip(accs, incs, strict=True):
            # an increment that is a product flagged "contract" fuses into an FMA; the
            # fusion is decided per instruction, so it is the same on every compilation
            builder.store(builder.fadd(builder.load(a), inc, flags=_CONTRACT), a)
    return [_hsum(builder, builder.load(a)) for a in accs], n_main


@intrinsic
def lane_sum(typingctx, a, n):
    """``sum_{j < n} a[j]`` (1-D float64), in the deterministic lane order above."""
    sig = types.float64(a, n)

    def codegen(context, builder, signature, args):
        base = _data_ptr(context, builder, signature.args[0], args[0])
        n_val = args[1]
        (total,), n_main = _lane_loop(context, builder, n_val, 1,
                                      lambda b, i: [_vec_load(b, base, i)])
        acc = cgutils.alloca_once_value(builder, total)
        with cgutils.for_range_slice(builder, n_main, n_val, ir.Constant(ir.IntType(64), 1)) \
                as (j, _):
            x = builder.load(builder.gep(base, [j]))
            builder.store(builder.fadd(builder.load(acc), x), acc)
        return builder.load(acc)

    return sig, codegen


@intrinsic
def lane_dot_sum(typingctx, a, b, n):
    """``(sum_{j < n} a[j] b[j], sum_{j < n} a[j])`` (1-D float64), deterministic lane order."""
    sig = types.UniTuple(types.float64, 2)(a, b, n)

    def codegen(context, builder, signature, args):
        a_p = _data_ptr(context, builder, signature.args[0], args[0])
        b_p = _data_ptr(context, builder, signature.args[1], args[1])
        n_val = args[2]

        def body(bld, idx):
            av = _vec_load(bld, a_p, idx)
            return [bld.fmul(av, _vec_load(bld, b_p, idx)), av]

        sums, n_main = _lane_loop(context, builder, n_val, 2, body)
        accs = [cgutils.alloca_once_value(builder, v) for v in sums]
        with cgutils.for_range_slice(builder, n_main, n_val, ir.Constant(ir.IntType(64), 1)) \
                as (j, _):
            aj = builder.load(builder.gep(a_p, [j]))
            bj = builder.load(builder.gep(b_p, [j]))
            builder.store(builder.fadd(builder.load(accs[0]), builder.fmul(aj, bj)), accs[0])
            builder.store(builder.fadd(builder.load(accs[1]), aj), accs[1])
        return context.make_tuple(builder, signature.return_type,
                                  [builder.load(accs[0]), builder.load(accs[1])])

    return sig, codegen


@intrinsic
def lane_moments(typingctx, x0, x1, x2, x3, mu, e, coef, d0, n, n_feat):
    """Responsibility-weighted moments of ``G = n_feat`` (literal, 1..4) features.

    With ``r_j = e[j] coef[j]`` and ``u_jg = x_g[j] - mu[d0 + g]`` (rows ``x0..x3``, 1-D
    float64; unused ones may repeat): ``(sum_j r_j u_j0, ..., sum_j r_j u_j3,
    sum_j r_j u_j0^2, ..., sum_j r_j u_j3^2, sum_j r_j)``; unused slots are 0.
    Deterministic lane order (see :data:`LANES`)."""
    if not isinstance(n_feat, types.IntegerLiteral):
        return None
    g = n_feat.literal_value
    ret = types.UniTuple(types.float64, 9)
    sig = ret(x0, x1, x2, x3, mu, e, coef, d0, n, n_feat)

    def codegen(context, builder, signature, args):
        xs = [_data_ptr(context, builder, signature.args[i], args[i]) for i in range(4)][:g]
        mu_p = _data_ptr(context, builder, signature.args[4], args[4])
        e_p = _data_ptr(context, builder, signature.args[5], args[5])
        c_p = _data_ptr(context, builder, signature.args[6], args[6])
        d0_v, n_val = args[7], args[8]
        i64 = ir.IntType(64)
        mus = [builder.load(builder.gep(mu_p, [builder.add(d0_v, ir.Constant(i64, t))]))
               for t in range(g)]
        vty = ir.VectorType(ir.DoubleType(), LANES)
        mu_vecs = []
        for m in mus:  # broadcast to every lane
            vec = ir.Constant(vty, ir.Undefined)
            for i in range(LANES):
                vec = builder.insert_element(vec, m, ir.Constant(ir.IntType(32), i))
            mu_vecs.append(vec)

        def body(b, idx):
            rv = b.fmul(_vec_load(b, e_p, idx), _vec_load(b, c_p, idx))
            firsts, seconds = [], []
            for t in range(g):
                u = b.fsub(_vec_load(b, xs[t], idx), mu_vecs[t])
                ru = b.fmul(rv, u)
                firsts.append(ru)
                seconds.append(b.fmul(ru, u, flags=_CONTRACT))
            return firsts + seconds + [rv]

        sums, n_main = _lane_loop(context, builder, n_val, 2 * g + 1, body)
        accs = [cgutils.alloca_once_value(builder, v) for v in sums]
        with cgutils.for_range_slice(builder, n_main, n_val, ir.Constant(i64, 1)) as (j, _):
            rj = builder.fmul(builder.load(builder.gep(e_p, [j])),
                              builder.load(builder.gep(c_p, [j])))
            for t in range(g):
                u = builder.fsub(builder.load(builder.gep(xs[t], [j])), mus[t])
                ru = builder.fmul(rj, u)
                builder.store(builder.fadd(builder.load(accs[t]), ru), accs[t])
                builder.store(builder.fadd(builder.load(accs[g + t]), builder.fmul(ru, u)),
                              accs[g + t])
            builder.store(builder.fadd(builder.load(accs[2 * g]), rj), accs[2 * g])
        zero = ir.Constant(ir.DoubleType(), 0.0)
        out = [builder.load(accs[t]) if t < g else zero for t in range(4)]
        out += [builder.load(accs[g + t]) if t < g else zero for t in range(4)]
        out.append(builder.load(accs[2 * g]))
        return context.make_tuple(builder, ret, out)

    return sig, codegen
