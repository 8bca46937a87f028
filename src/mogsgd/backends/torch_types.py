"""The torch backend's value types, shared by the plain-torch ops
(:mod:`mogsgd.backends.torch_ops`) and the fused Triton kernel
(:mod:`mogsgd.backends.triton_kernel`) without either importing the other's module."""

from __future__ import annotations

from typing import NamedTuple

from mogsgd.backends import import_torch

torch = import_torch()

__all__ = ["TorchParams", "GradPieces", "log_softmax"]


class TorchParams(NamedTuple):
    """:class:`~mogsgd.params.MixtureParams` as tensors: means (K, D), log_sigma (K, D),
    logits (K,), one dtype and device."""

    means: torch.Tensor
    log_sigma: torch.Tensor
    logits: torch.Tensor


class GradPieces(NamedTuple):
    """Additive sums over rows (float64 tensors): ``nll_sum``, ``weight_sum`` (0-d),
    ``nk`` (K,), ``rz``, ``rz2`` (K, D); see the module docstring."""

    nll_sum: torch.Tensor
    weight_sum: torch.Tensor
    nk: torch.Tensor
    rz: torch.Tensor
    rz2: torch.Tensor



def log_softmax(logits: torch.Tensor) -> torch.Tensor:
    """``log pi_k = alpha_k - logsumexp(alpha)`` (eq. 12), as :func:`mogsgd.params.log_softmax`."""
    shift = logits - logits.max()
    return shift - torch.log(torch.exp(shift).sum())
