"""A fused Triton kernel for the NLL gradient pieces: one read of X, per-block sums, one reduction.

Each program takes ``BLOCK`` consecutive rows and, without writing anything
per row to memory:

1. computes ``a_ik = c_k - 1/2 sum_d z_ikd^2`` for all K components at once,
   with ``c_k = log pi_k - sum_d log sigma_kd - D/2 log 2 pi`` (eqs. 9, 12) and
   ``z_ikd = (x_id - mu_kd) / sigma_kd``;
2. the max-shifted log-sum-exp over k (eq. 25) gives ``log p(x_i)`` (eq. 10) and
   the responsibilities ``gamma_ik`` (eq. 11), weighted by ``w_i``;
3. stores the block's sums of ``-w log p``, ``w``, ``w gamma_k``,
   ``w gamma_k z_kd`` and ``w gamma_k z_kd^2`` — the :class:`GradPieces` of
   :mod:`mogsgd.backends.torch_ops`.

The host then adds the per-block rows in float64 (one reduction) and
:func:`mogsgd.backends.torch_ops.finish` turns the sums into gradients (eqs. 13,
15, 17), so the kernel holds no gradient formula of its own.

Layout of one program's output row (``KP`` = K padded to a power of two):
``[nll, W, nk[0:KP], rz[d, k] for d < D, k < KP, rz2[d, k] ...]``.

Far rows: the kernel squares ``z`` directly (eq. 9), not in the scaled, saturated form
of eq. 52 that :func:`mogsgd.backends.torch_ops.distance` uses: a row more than ``2^64``
(in ``h``) from every component gets the unsaturated value, and one whose squares overflow
(``|z| > 1e154`` in float64, ``1e19`` in float32) a non-finite sum, which the training loop
reports as divergence.  Porting eq. 52 needs a GPU to test it on.

Status: checked against the plain-torch code in Triton's CPU interpreter
(``TRITON_INTERPRET=1``, see ``tests/test_torch_backend.py``); it has **not** been
compiled for or run on a GPU in this repository yet (no GPU was available).
"""

from __future__ import annotations

import functools

from mogsgd.backends import import_torch
from mogsgd.backends.torch_types import GradPieces, TorchParams, log_softmax
from mogsgd.density import LOG_2PI

torch = import_torch()

__all__ = ["available", "grad_pieces", "BLOCK", "NUM_WARPS"]

#: Rows per program and warps per program: (BLOCK, KP) tiles of a few thousand
#: elements keep every intermediate in registers for K <= 8.
BLOCK = 512
NUM_WARPS = 4


@functools.cache
def available() -> bool:
    """Triton imports and torch sees a CUDA device."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return torch.cuda.is_available()


@functools.cache
def _kernel():
    import triton
    import triton.language as tl

    @triton.jit
    def grad_pieces_kernel(X, W, MEANS, INV_SIGMA, CONST, OUT, n_rows,
                           K: tl.constexpr, D: tl.constexpr, KP: tl.constexpr,
                           BLOCK: tl.constexpr, HAS_W: tl.constexpr):
        pid = tl.program_id(0)
        rows = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)       # (BLOCK,), int64
        row_ok = rows < n_rows
        ks = tl.arange(0, KP)                                       # (KP,)
        k_ok = ks < K
        # eq. 9: sum_d z_ikd^2 for all k; D is small and unrolled
        quad = tl.zeros((BLOCK, KP), dtype=X.dtype.element_ty)
        for d in tl.static_range(D):
            x = tl.load(X + rows * D + d, mask=row_ok, other=0.0)
            mu = tl.load(MEANS + ks * D + d, mask=k_ok, other=0.0)
            inv = tl.load(INV_SIGMA + ks * D + d, mask=k_ok, other=1.0)
            z = (x[:, None] - mu[None, :]) * inv[None, :]
            quad += z * z
        c = tl.load(CONST + ks, mask=k_ok, other=0.0)
        a = c[None, :] - 0.5 * quad                                 # log pi_k + log N_ik
        a = tl.where(k_ok[None, :], a, float("-inf"))               # padded k: weight 0
        a_max = tl.max(a, axis=1)                                   # eq. 25
        e = tl.exp(a - a_max[:, None])
        s = tl.sum(e, axis=1)
        lp = a_max + tl.log(s)                                      # eq. 10
        if HAS_W:
            w = tl.load(W + rows, mask=row_ok, other=0.0).to(X.dtype.element_ty)
        else:
            w = row_ok.to(X.dtype.element_ty)                       # 1, or 0 past the end
        r = e * (w / s)[:, None]                                    # w_i gamma_ik, eq. 11
        base = OUT + pid.to(tl.int64) * (2 + KP + 2 * D * KP)
        tl.store(base, -tl.sum(w * lp, axis=0))
        tl.store(base + 1, tl.sum(w, axis=0))
        tl.store(base + 2 + ks, tl.sum(r, axis=0))
        # second sweep over the features: the block's rows are in L1/L2 by now
        for d in tl.static_range(D):
            x = tl.load(X + rows * D + d, mask=row_ok, other=0.0)
            mu = tl.load(MEANS + ks * D + d, mask=k_ok, other=0.0)
            inv = tl.load(INV_SIGMA + ks * D + d, mask=k_ok, other=1.0)
            z = (x[:, None] - mu[None, :]) * inv[None, :]
            rz = r * z
            tl.store(base + 2 + KP + d * KP + ks, tl.sum(rz, axis=0))
            tl.store(base + 2 + KP + D * KP + d * KP + ks, tl.sum(rz * z, axis=0))

    return grad_pieces_kernel


def grad_pieces(X: torch.Tensor, params: TorchParams, sample_weight: torch.Tensor | None = None,
                *, block: int = BLOCK, num_warps: int = NUM_WARPS) -> GradPieces:
    """:class:`GradPieces` of ``X`` (n, D) by the fused kernel; ``params`` in ``X``'s dtype.

    ``X`` must be a float32 or float64 tensor (made contiguous here); under
    ``TRITON_INTERPRET=1`` CPU tensors work too (slowly), which is how it is tested.
    """
    import triton

    if X.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"the fused kernel takes float32 or float64 data, got {X.dtype}")
    X = X.contiguous()
    n, d = X.shape
    k = params.means.shape[0]
    kp = max(2, triton.next_power_of_2(k))
    f64 = torch.float64
    if n == 0:
        zero = torch.zeros((), dtype=f64, device=X.device)
        return GradPieces(zero, zero, torch.zeros(k, dtype=f64, device=X.device),
                          torch.zeros((k, d), dtype=f64, device=X.device),
                          torch.zeros((k, d), dtype=f64, device=X.device))
    means = params.means.contiguous()
    inv_sigma = torch.exp(-params.log_sigma).contiguous()
    const = (log_softmax(params.logits) - params.log_sigma.sum(dim=1)
             - 0.5 * d * LOG_2PI).contiguous()
    w = X if sample_weight is None else sample_weight.to(X.dtype).contiguous()
    n_blocks = triton.cdiv(n, block)
    out = torch.empty((n_blocks, 2 + kp + 2 * d * kp), dtype=X.dtype, device=X.device)
    _kernel()[(n_blocks,)](X, w, means, inv_sigma, const, out, n, K=k, D=d, KP=kp,
                           BLOCK=block, HAS_W=sample_weight is not None, num_warps=num_warps)
    tot = out.sum(dim=0, dtype=f64)                                  # the one reduction
    rz = tot[2 + kp: 2 + kp + d * kp].view(d, kp)[:, :k].T
    rz2 = tot[2 + kp + d * kp:].view(d, kp)[:, :k].T
    return GradPieces(tot[0], tot[1], tot[2: 2 + k], rz.contiguous(), rz2.contiguous())
