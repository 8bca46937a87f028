"""The public functional API: ``mogsgd.nll_grad``, ``mogsgd.nll``, ``mogsgd.log_prob`` and
``mogsgd.responsibilities``, on the compiled fast path by default.

Each function takes ``backend`` with the estimator's meaning (:func:`mogsgd.fast.resolve_backend`):
``"auto"`` (default) runs the fused numba kernels of :mod:`mogsgd.fast` where they work and
otherwise the NumPy reference with one :class:`~mogsgd.errors.FallbackWarning`; ``"numba"``
insists on the kernels (``RuntimeError`` if they cannot run); ``"numpy"`` runs the reference
(:mod:`mogsgd.density`, :mod:`mogsgd.gradients`, also importable directly; for the full,
tied and spherical families :mod:`mogsgd.covariance.ops`).  ``params`` may be any covariance
family's parameters (the gradient is then of that family's type).  Both give the
same values to ~1e-13 relative; input with NaN (missing values, eq. 34) is marginalised by
the reference under either backend.

>>> import numpy as np, mogsgd
>>> p = mogsgd.MixtureParams.from_moments([0.5, 0.5], [[0.0], [3.0]], [[1.0], [1.0]])
>>> X = np.array([[0.0], [3.0], [1.5]])
>>> bool(np.isclose(mogsgd.nll(X, p), mogsgd.nll(X, p, backend="numpy"), rtol=1e-12))
True
"""

from __future__ import annotations

import numpy as np

from mogsgd import fast
from mogsgd.covariance import finalize, ops
from mogsgd.params import MixtureParams

__all__ = ["nll_grad", "nll", "log_prob", "responsibilities"]


def _rows(X, params: MixtureParams) -> np.ndarray:
    """``X`` as an array of shape (n, D) for ``params``, or one ``ValueError`` naming the
    shape."""
    if type(params) not in ops.PARAMS_TYPES:
        raise TypeError(f"params must be a MixtureParams (or another covariance family's "
                        f"parameters, mogsgd.covariance), got {type(params).__name__}")
    X = np.asarray(X)
    d = params.n_features
    if X.ndim != 2 or X.shape[1] != d:
        raise ValueError(f"X must have shape (n_samples, {d}) for these parameters, got "
                         f"shape {X.shape}")
    return X


def _numba(backend: str) -> bool:
    return fast.resolve_backend(backend) == "numba"


def nll_grad(X, params: MixtureParams, sample_weight: np.ndarray | None = None, *,
             backend: str = "auto") -> tuple[float, MixtureParams]:
    """Mean NLL of the rows of ``X`` (n, D) and its analytic gradient (eqs. 13-19): a
    float and a :class:`MixtureParams` of ``d NLL / d means`` (K, D), ``d NLL / d log_sigma``
    (K, D) and ``d NLL / d logits`` (K,).  With ``sample_weight`` (n,) the weighted mean
    (eq. 31).  See :func:`mogsgd.gradients.nll_grad` (the reference)."""
    X = _rows(X, params)
    if _numba(backend):
        return fast.nll_grad(X, params, sample_weight)
    return finalize(ops.nll_grad_sums(X, params, sample_weight), type(params))


def nll(X, params: MixtureParams, sample_weight: np.ndarray | None = None, *,
        backend: str = "auto") -> float:
    """Mean negative log-likelihood ``-(1/n) sum_i log p(x_i)`` (eq. 18), or
    ``-sum_i w_i log p(x_i) / sum_i w_i`` with ``sample_weight`` (eq. 31)."""
    X = _rows(X, params)
    return (fast.nll if _numba(backend) else ops.nll)(X, params, sample_weight)


def log_prob(X, params: MixtureParams, *, backend: str = "auto") -> np.ndarray:
    """``log p(x_i) = logsumexp_k(log pi_k + log N(x_i | mu_k, sigma_k^2))``, shape (n,)
    (eq. 10)."""
    X = _rows(X, params)
    return (fast.log_prob if _numba(backend) else ops.log_prob)(X, params)


def responsibilities(X, params: MixtureParams, *, backend: str = "auto") -> np.ndarray:
    """``gamma_ik = p(z_i = k | x_i)``, shape (n, K), each row summing to one (eq. 11)."""
    X = _rows(X, params)
    return (fast.responsibilities if _numba(backend) else ops.responsibilities)(X, params)
