"""The NLL, its analytic gradient and the densities on torch tensors (CPU or CUDA).

A line-by-line port of :mod:`mogsgd.density` and :func:`mogsgd.gradients.nll_grad_sums`
(the NumPy reference), cited to the same equations of ``docs/derivations.md``;
``tests/test_torch_backend.py`` pins every function here to the reference at
1e-12 in float64 (many shapes, far outliers, sample weights).

The gradient is computed in two steps so that the fused CUDA kernel
(:mod:`mogsgd.backends.triton_kernel`) and the plain-torch code share the math:

1. :func:`grad_pieces` — additive sums over rows (per block of rows, then one
   reduction, in float64): ``nll_sum = -sum_i w_i log p(x_i)``, ``weight_sum = sum_i w_i``,
   ``nk = sum_i w_i gamma_ik``, ``rz = sum_i w_i gamma_ik z_ikd``,
   ``rz2 = sum_i w_i gamma_ik z_ikd^2``;
2. :func:`finish` — the gradients of the summed NLL from those sums:
   means ``-rz / sigma`` (eq. 13), log_sigma ``nk - rz2`` (eq. 15),
   logits ``W pi - nk`` (eq. 17); eq. 19 divides them by the total weight.

Precision: float64 agrees with the NumPy reference to 1e-12 (relative).  In float32
every sum over rows (the NLL and each gradient entry) agrees with float64 to 1e-5 of its
*condition scale*, the same sum taken over the absolute values of the per-row terms
(e.g. ``sum_i w_i gamma_ik (z_ikd^2 + 1)`` for the log-sigma gradient) — about 84
float32 ulps: one rounding per term of a float32 ``exp``/``log`` of arguments up to
~1e3 (far outliers), and ``log2(n)`` roundings of a tree sum.  Reductions use
``sum`` (a tree / cascade sum on both CPU and GPU), not a sequential dot product,
and chunks and blocks are added in float64.  Measured worst case on 20,000-row
tests with outliers: 3e-6.

Far points (eqs. 52, 53): :func:`distance` computes ``h = |z|^2 / 2`` in a scaled form
that cannot overflow, on every row and without a branch (no device synchronisation):
``z`` from ``x / 2 - mu / 2`` times ``1 / sigma`` prescaled by a power of two to at most
1, divided by its largest entry ``m`` per row before squaring, so
``log h = 2 log m + log sum_d (z_d / m)^2 - log 2`` plus the known scales.  Then the
saturated ``S(h)`` and ``sqrt(S') z`` as in :func:`mogsgd.density.distance`: any finite
row has a finite log-density, finite responsibilities and finite sums.  (The fused
Triton kernel still computes the direct ``sum_d z^2`` of eq. 9; see its module.)

Differences from the NumPy path, by design: the data must be finite (missing
values, eq. 34, stay on the NumPy path; the estimator validates once per fit,
not per batch), and the computation is in the dtype of ``X`` (float32 or
float64) with the per-block sums reduced in float64.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from mogsgd.backends import import_torch
from mogsgd.backends.torch_types import GradPieces, TorchParams, log_softmax
from mogsgd.density import H_SAT, LN2, LOG_2PI, LOG_H_SAT
from mogsgd.gradients import GradSums
from mogsgd.params import MixtureParams

torch = import_torch()

__all__ = ["TorchParams", "GradPieces", "TorchGradSums", "to_torch", "to_numpy", "ravel",
           "unravel", "log_softmax", "logsumexp", "normalise", "weighted_log_prob", "log_prob",
           "log_resp", "nll", "grad_pieces", "finish", "nll_grad_sums", "sums_to_numpy",
           "KERNELS", "CHUNK_ELEMENTS"]

#: Gradient implementations: ``"torch"`` (plain ops, any device), ``"triton"`` (fused,
#: CUDA only), ``"auto"`` (Triton on CUDA when it is installed, else torch).
KERNELS = ("auto", "torch", "triton")

#: Rows per chunk of the plain-torch code are chosen so that one (rows, D) temporary
#: holds about this many elements (32 MiB in float64).
CHUNK_ELEMENTS = 1 << 22


class TorchGradSums(NamedTuple):
    """:class:`~mogsgd.gradients.GradSums` as tensors on the device: ``nll_sum`` and
    ``weight_sum`` 0-d float64; ``means``, ``log_sigma`` (K, D), ``logits`` (K,) in the
    parameters' dtype, gradients of ``nll_sum``."""

    nll_sum: torch.Tensor
    weight_sum: torch.Tensor
    means: torch.Tensor
    log_sigma: torch.Tensor
    logits: torch.Tensor


# ------------------------------------------------------------------ conversions
def to_torch(params: MixtureParams, device=None, dtype=None) -> TorchParams:
    """Copy ``params`` to ``device`` as ``dtype`` (default: the parameters' own dtype)."""
    dtype = dtype if dtype is not None else _torch_dtype(params.dtype)
    # np.array: a writable copy (MixtureParams arrays are read-only)
    return TorchParams(*(torch.as_tensor(np.array(a), dtype=dtype, device=device)
                         for a in params))


def to_numpy(params: TorchParams) -> MixtureParams:
    """Copy tensor parameters back to a (validated, read-only) :class:`MixtureParams`."""
    return MixtureParams(*(t.detach().cpu().numpy() for t in params))


def ravel(params: TorchParams) -> torch.Tensor:
    """``[means, log_sigma, logits]`` as one vector of length K(2D+1), the layout of
    :meth:`MixtureParams.ravel`."""
    return torch.cat([t.reshape(-1) for t in params])


def unravel(theta: torch.Tensor, n_components: int, n_features: int) -> TorchParams:
    """Views of ``theta`` (from :func:`ravel`) as :class:`TorchParams`; no copy."""
    k, d = n_components, n_features
    return TorchParams(theta[: k * d].view(k, d), theta[k * d: 2 * k * d].view(k, d),
                       theta[2 * k * d:])


def sums_to_numpy(sums: TorchGradSums) -> GradSums:
    """The NumPy :class:`~mogsgd.gradients.GradSums` of tensor sums (floats and arrays)."""
    return GradSums(float(sums.nll_sum), float(sums.weight_sum),
                    *(t.detach().cpu().numpy() for t in sums[2:]))


def _torch_dtype(dtype) -> torch.dtype:
    return torch.float32 if np.dtype(dtype) == np.float32 else torch.float64


def _as(params: TorchParams, X: torch.Tensor) -> TorchParams:
    """Parameters in the dtype and on the device of ``X`` (no copy when they already are)."""
    return TorchParams(*(t.to(device=X.device, dtype=X.dtype) for t in params))


# ------------------------------------------------------------------- densities
def normalise(wlp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log p, log gamma)`` from weighted log densities (n, K) as
    :func:`mogsgd.density.normalise`: ``log gamma = (wlp - a*) - log s``, so every row of
    ``gamma`` sums to one however large ``|log p|`` is (eqs. 10, 11, 25)."""
    a_max = wlp.amax(dim=1, keepdim=True)
    a_max = torch.where(torch.isfinite(a_max), a_max, torch.zeros_like(a_max))
    shifted = wlp - a_max
    log_s = torch.log(torch.exp(shifted).sum(dim=1, keepdim=True))
    return (log_s + a_max).squeeze(1), shifted - log_s


def logsumexp(a: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """``a* + log sum exp(a - a*)`` along ``dim`` (eq. 25); an all ``-inf`` row gives ``-inf``."""
    a_max = a.amax(dim=dim, keepdim=True)
    a_max = torch.where(torch.isfinite(a_max), a_max, torch.zeros_like(a_max))
    out = torch.log(torch.exp(a - a_max).sum(dim=dim, keepdim=True)) + a_max
    return out.squeeze(dim)


def distance(X: torch.Tensor, params: TorchParams, k: int):
    """``(S(h_i), sqrt(S'(h_i)) z_i, sqrt(S'(h_i)))`` of component ``k`` for every row,
    shapes (n,), (n, D), (n,): ``z_id = (x_id - mu_kd) / sigma_kd`` and ``h = |z|^2 / 2``
    saturated beyond ``2^64`` (eqs. 9, 52, 53), in the scaled form of the module docstring."""
    log_sigma = params.log_sigma[k]
    # 1/sigma times 2^-s <= 1, and the halving of x - mu: z = zt 2^(s + 1), zt finite
    s = torch.clamp(torch.ceil(torch.amax(-log_sigma) / LN2), min=0.0)
    zt = (0.5 * X - 0.5 * params.means[k]) * torch.exp(-log_sigma - s * LN2)
    top = torch.amax(torch.abs(zt), dim=1)
    top = torch.where(top > 0, top, torch.ones_like(top))
    unit = zt / top[:, None]
    log_m = torch.log(top) + (s + 1.0) * LN2
    log_h = 2.0 * log_m + torch.log((unit * unit).sum(dim=1)) - LN2
    beyond = log_h > LOG_H_SAT
    half = torch.where(beyond, H_SAT * (1.0 + (log_h - LOG_H_SAT)),
                       torch.exp(torch.clamp(log_h, max=LOG_H_SAT)))
    log_slope = torch.where(beyond, LOG_H_SAT - log_h, torch.zeros_like(log_h))
    z = unit * torch.exp(log_m + 0.5 * log_slope)[:, None]
    return half, z, torch.exp(0.5 * log_slope)


def weighted_log_prob(X: torch.Tensor, params: TorchParams) -> torch.Tensor:
    """``log pi_k + log N(x_i | mu_k, sigma_k^2)``, shape (n, K) (eqs. 9, 12).

    Loops over components with (n, D) temporaries, like :func:`mogsgd.density.log_gaussian`.
    """
    params = _as(params, X)
    n, d = X.shape
    out = torch.empty((n, params.means.shape[0]), dtype=X.dtype, device=X.device)
    for k in range(params.means.shape[0]):
        norm = params.log_sigma[k].sum() + 0.5 * d * LOG_2PI
        out[:, k] = -distance(X, params, k)[0] - norm          # eqs. 9, 52
    return out + log_softmax(params.logits)


def _chunks(n: int, d: int, chunk_rows: int | None):
    step = chunk_rows if chunk_rows is not None else max(1, CHUNK_ELEMENTS // max(d, 1))
    return ((start, min(start + step, n)) for start in range(0, n, step))


def log_prob(X: torch.Tensor, params: TorchParams, *, chunk_rows: int | None = None
             ) -> torch.Tensor:
    """``log p(x_i) = logsumexp_k(log pi_k + log N_ik)``, shape (n,) (eq. 10)."""
    out = torch.empty(X.shape[0], dtype=X.dtype, device=X.device)
    for a, b in _chunks(*X.shape, chunk_rows):
        out[a:b] = logsumexp(weighted_log_prob(X[a:b], params), dim=1)
    return out


def log_resp(X: torch.Tensor, params: TorchParams, *, chunk_rows: int | None = None
             ) -> torch.Tensor:
    """``log gamma_ik = log pi_k + log N_ik - log p(x_i)``, shape (n, K) (eq. 11)."""
    out = torch.empty((X.shape[0], params.means.shape[0]), dtype=X.dtype, device=X.device)
    for a, b in _chunks(*X.shape, chunk_rows):
        out[a:b] = normalise(weighted_log_prob(X[a:b], params))[1]
    return out


def nll(X: torch.Tensor, params: TorchParams, sample_weight: torch.Tensor | None = None, *,
        chunk_rows: int | None = None) -> float:
    """Mean NLL ``-(1/n) sum_i log p(x_i)`` (eq. 18), or ``-sum w log p / sum w`` (eq. 31).

    On CUDA with Triton this is the fused kernel's ``nll_sum / weight_sum`` (one read of X).
    """
    if _use_triton(X, "auto"):
        pieces = grad_pieces(X, params, sample_weight)
        return float(pieces.nll_sum / pieces.weight_sum)
    total = torch.zeros((), dtype=torch.float64, device=X.device)
    for a, b in _chunks(*X.shape, chunk_rows):
        lp = logsumexp(weighted_log_prob(X[a:b], params), dim=1)
        if sample_weight is None:
            total -= lp.sum(dtype=torch.float64)
        else:
            total -= (sample_weight[a:b].to(lp.dtype) @ lp).to(torch.float64)
    weight = X.shape[0] if sample_weight is None else sample_weight.sum(dtype=torch.float64)
    return float(total / weight)


# ------------------------------------------------------------------- gradients
def _pieces_torch(X: torch.Tensor, params: TorchParams, sample_weight) -> GradPieces:
    """:class:`GradPieces` of one chunk of rows with plain torch operations.

    The same steps as :func:`mogsgd.gradients.nll_grad_sums`: responsibilities
    by eqs. 10-11 (log space, eq. 25), then per component the weighted sums of
    ``z`` and ``z^2``.
    """
    wlp = weighted_log_prob(X, params)                    # (n, K), eqs. 9, 12
    lp, log_resp = normalise(wlp)                         # (n,), (n, K), eqs. 10, 11
    resp = torch.exp(log_resp)
    if sample_weight is None:
        # a fill, not a host-to-device copy: no synchronisation per batch
        weight_sum = torch.full((), X.shape[0], dtype=torch.float64, device=X.device)
        nll_sum = -lp.sum()
    else:
        w = sample_weight.to(resp.dtype)
        resp = resp * w[:, None]
        weight_sum = w.sum()
        nll_sum = -(w @ lp)
    nk = resp.sum(dim=0)                                  # sum_i w_i gamma_ik
    p = _as(params, X)
    k_comp, d = p.means.shape
    rz = torch.empty((k_comp, d), dtype=X.dtype, device=X.device)
    rz2 = torch.empty((k_comp, d), dtype=X.dtype, device=X.device)
    for k in range(k_comp):
        _, z, root = distance(X, p, k)                    # sqrt(S') z (n, D), eq. 53
        rk = resp[:, k, None]
        rz[k] = (rk * root[:, None] * z).sum(dim=0)       # sum_i r_ik S'_ik z_ikd
        rz2[k] = (rk * z * z).sum(dim=0)                  # sum_i r_ik S'_ik z_ikd^2
    f64 = torch.float64
    return GradPieces(nll_sum.to(f64), weight_sum.to(f64), nk.to(f64), rz.to(f64), rz2.to(f64))


def grad_pieces(X: torch.Tensor, params: TorchParams,
                sample_weight: torch.Tensor | None = None, *, kernel: str = "auto",
                chunk_rows: int | None = None) -> GradPieces:
    """:class:`GradPieces` over all rows of ``X`` (n, D), summed in float64.

    ``kernel="triton"`` runs the fused kernel (CUDA tensors only); ``"torch"``
    plain operations, chunked so that temporaries stay near
    :data:`CHUNK_ELEMENTS`; ``"auto"`` picks Triton for CUDA input when it is
    installed.
    """
    if _use_triton(X, kernel):
        from mogsgd.backends.triton_kernel import grad_pieces as fused

        return fused(X, _as(params, X), sample_weight)
    parts = [_pieces_torch(X[a:b], params, None if sample_weight is None
                           else sample_weight[a:b]) for a, b in _chunks(*X.shape, chunk_rows)]
    if len(parts) == 1:
        return parts[0]
    if not parts:  # no rows: every sum is zero
        k, d = params.means.shape
        zeros = torch.zeros((), dtype=torch.float64, device=X.device)
        return GradPieces(zeros, zeros, zeros.expand(k).clone(), zeros.expand(k, d).clone(),
                          zeros.expand(k, d).clone())
    return GradPieces(*(sum(field[1:], field[0]) for field in zip(*parts, strict=True)))


def finish(pieces: GradPieces, params: TorchParams) -> TorchGradSums:
    """Gradients of the summed NLL from :class:`GradPieces` (eqs. 13, 15, 17).

    ``means = -rz / sigma`` (eq. 13), ``log_sigma = nk - rz2`` (eq. 15),
    ``logits = W pi - nk`` (eq. 17); computed in float64, returned in the
    parameters' dtype.
    """
    p64 = TorchParams(*(t.to(torch.float64) for t in params))
    dtype = params.means.dtype
    g_means = -pieces.rz * torch.exp(-p64.log_sigma)                      # eq. 13
    g_log_sigma = pieces.nk[:, None] - pieces.rz2                         # eq. 15
    g_logits = pieces.weight_sum * torch.exp(log_softmax(p64.logits)) - pieces.nk  # eq. 17
    return TorchGradSums(pieces.nll_sum, pieces.weight_sum, g_means.to(dtype),
                         g_log_sigma.to(dtype), g_logits.to(dtype))


def nll_grad_sums(X: torch.Tensor, params: TorchParams,
                  sample_weight: torch.Tensor | None = None, *, kernel: str = "auto",
                  chunk_rows: int | None = None) -> TorchGradSums:
    """Summed NLL and its analytic gradient over the rows of ``X`` (n, D), on ``X``'s device.

    The torch counterpart of :func:`mogsgd.gradients.nll_grad_sums`;
    :func:`sums_to_numpy` converts the result to its :class:`~mogsgd.gradients.GradSums`.
    """
    return finish(grad_pieces(X, params, sample_weight, kernel=kernel, chunk_rows=chunk_rows),
                  params)


def _use_triton(X: torch.Tensor, kernel: str) -> bool:
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; choose one of: {', '.join(KERNELS)}")
    if kernel == "torch":
        return False
    if kernel == "triton":
        return True
    if not X.is_cuda:
        return False
    from mogsgd.backends.triton_kernel import available

    return available()
