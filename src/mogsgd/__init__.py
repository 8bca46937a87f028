"""mogsgd: Gaussian mixtures (diagonal, full, tied or spherical covariances) fitted by
mini-batch SGD with analytic gradients.

The functional core (parameters, densities, gradients, optimisers, training
loop, EM) depends on NumPy alone; the scikit-learn estimator is loaded lazily
so that ``import mogsgd`` does not import scikit-learn.  ``nll_grad``, ``nll``,
``log_prob`` and ``responsibilities`` are :mod:`mogsgd.api`'s (the compiled kernels by
default, ``backend="numpy"`` for the reference), also loaded on first use: the package is
the bottom of the layers (tests/test_architecture.py), so what it re-exports from higher
layers it names here, lazily.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from mogsgd.datasets import make_mixture
from mogsgd.density import log_resp, logsumexp
from mogsgd.io import load_dataset, save_dataset
from mogsgd.params import MixtureParams

try:
    __version__ = version("mogsgd")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.1.0"

__all__ = [
    "MixtureParams",
    "make_mixture",
    "load_dataset",
    "save_dataset",
    "log_prob",
    "log_resp",
    "logsumexp",
    "nll",
    "nll_grad",
    "responsibilities",
    "SGDGaussianMixture",
    "__version__",
]

_LAZY = {"SGDGaussianMixture": ("mogsgd.estimator", "SGDGaussianMixture"),
         **{name: ("mogsgd.api", name)
            for name in ("nll_grad", "nll", "log_prob", "responsibilities")}}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'mogsgd' has no attribute {name!r}")
