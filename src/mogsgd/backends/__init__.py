"""Array backends: where the numbers live and which code computes on them.

NumPy is the default and the reference (:mod:`mogsgd.gradients`, :mod:`mogsgd.train`).
PyTorch is the second backend (:mod:`mogsgd.backends.torch_ops` for the math,
:mod:`mogsgd.backends.torch_train` for the on-device loop,
:mod:`mogsgd.backends.triton_kernel` for the fused CUDA gradient pass); it runs on
CUDA tensors and, for testing without a GPU, on CPU tensors.

This module decides which backend a call uses and never imports torch itself:
``import mogsgd`` works without PyTorch installed.

``device`` (the estimator's parameter) means:

* ``None``: follow the input: a ``torch.Tensor`` stays on its device, an array
  on a CUDA device that speaks DLPack (CuPy) is viewed as a CUDA tensor without
  a copy, anything else takes the NumPy path as before;
* ``"cpu-numpy"``: always the NumPy path;
* ``"cpu"``, ``"cuda"``, ``"cuda:0"``, a ``torch.device``: the torch path on that
  device (NumPy input is copied there once).
"""

from __future__ import annotations

import sys

import numpy as np

from mogsgd.errors import ValidationError

__all__ = ["NUMPY", "uses_torch", "import_torch", "is_torch_tensor", "is_cuda_dlpack"]

#: The ``device`` value that forces the NumPy path.
NUMPY = "cpu-numpy"

#: DLPack device types of CUDA (2) and ROCm (10) memory: arrays torch can view in place.
_DLPACK_GPU = (2, 10)


def import_torch():
    """``import torch``, or an error that says how to install it."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is installed where these paths are tested
        raise ImportError("the torch backend (device='cpu'/'cuda', or tensor input) needs "
                          "PyTorch: pip install 'mogsgd[torch]'") from None
    return torch


def is_torch_tensor(X) -> bool:
    """``X`` is a ``torch.Tensor`` (checked without importing torch: no torch, no tensor)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(X, torch.Tensor)


def is_cuda_dlpack(X) -> bool:
    """``X`` is a non-NumPy array on a GPU that exports DLPack (a CuPy array, for one)."""
    if isinstance(X, np.ndarray) or is_torch_tensor(X) or not hasattr(X, "__dlpack_device__"):
        return False
    try:
        return int(X.__dlpack_device__()[0]) in _DLPACK_GPU
    except Exception:  # noqa: BLE001 - a foreign object that only looks like an array
        return False


def uses_torch(device, X=None) -> bool:
    """Whether a call with this ``device`` setting and input ``X`` runs on the torch backend.

    Raises :class:`~mogsgd.errors.ValidationError` for a ``device`` that is not
    ``None``, ``"cpu-numpy"``, a device string or a ``torch.device``.
    """
    if device is None:
        return is_torch_tensor(X) or is_cuda_dlpack(X)
    if isinstance(device, str):
        return device != NUMPY
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(device, torch.device):
        return True
    raise ValidationError(
        f"device must be None (follow the input), 'cpu-numpy', 'cpu', 'cuda', 'cuda:N' or a "
        f"torch.device, got {device!r}")
