"""Parameters of a mixture of diagonal Gaussians, stored unconstrained.

A model with ``K`` components in ``D`` features is held as three arrays:

* ``means``      shape (K, D): the component means ``mu_k``;
* ``log_sigma``  shape (K, D): ``log sigma_kd``, so ``sigma = exp(log_sigma) > 0`` for any value;
* ``logits``     shape (K,):   ``alpha_k`` with ``pi = softmax(alpha)`` on the simplex (eq. 12).

The natural parameters (weights, variances) are derived views.  Because every
array is unconstrained, a gradient step can never produce an invalid model.

The same container holds gradients (``nll_grad`` returns one), so the
optimisers can treat parameters and gradients alike through :func:`tree_map`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from mogsgd.errors import ValidationError

__all__ = ["MixtureParams", "softmax", "log_softmax", "tree_map", "bounded_variances",
           "VARIANCE_MAX", "unconstrained_moments"]

FIELDS = ("means", "log_sigma", "logits")

#: Largest variance a moment estimate keeps.  Legal data near the float range (a row at
#: 1.7e308, or 1e155 among unit-scale rows) has squared deviations beyond it; the true
#: variance is then not representable, and this bound (16x below the float64 maximum,
#: so ``exp(2 log_sigma)`` stays finite) stands in for it.
VARIANCE_MAX = float(np.finfo(np.float64).max) / 16


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """``log pi_k = alpha_k - logsumexp(alpha)`` (eq. 12), stable for any finite logits."""
    a = np.asarray(logits)
    shift = a - np.max(a, axis=-1, keepdims=True)
    return shift - np.log(np.sum(np.exp(shift), axis=-1, keepdims=True))


def softmax(logits: np.ndarray) -> np.ndarray:
    """``pi_k = exp(alpha_k) / sum_j exp(alpha_j)`` (eq. 12)."""
    return np.exp(log_softmax(logits))


def _float_dtype(*arrays: np.ndarray) -> np.dtype:
    if all(a.dtype == np.float64 for a in arrays):   # the common case, without result_type
        return np.dtype(np.float64)
    dtype = np.result_type(*arrays)
    if dtype == np.float32:
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def _as_float_array(name: str, value, dtype: np.dtype) -> np.ndarray:
    try:
        arr = np.array(value, dtype=dtype, copy=True)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be numeric, got {type(value).__name__}: {exc}") from None
    return arr



def unconstrained_moments(weights, variances) -> tuple[np.ndarray, np.ndarray]:
    """``(logits, log_sigma)`` = ``(log(pi / sum pi), log(sigma^2) / 2)`` of weights
    (..., K) and variances (..., K, D) -- one mixture, or a stack of them -- after the
    checks of :meth:`MixtureParams.from_moments`: weights finite, positive and summing to
    one within 1e-6 (then renormalised), variances finite and positive."""
    w = np.asarray(weights, dtype=np.float64)
    v = np.asarray(variances, dtype=np.float64)
    total = w.sum(axis=-1, keepdims=True)
    # ndarray methods: np.all/np.any add a wrapper's cost to every initial candidate
    if not (np.isfinite(w).all() and (w > 0).all()):
        raise ValidationError(f"weights must be finite and > 0, got {w}")
    off = np.abs(total - 1.0) > 1e-6
    if off.any():
        raise ValidationError(f"weights must sum to 1, they sum to {float(total[off][0]):.8g}")
    if not (np.isfinite(v).all() and (v > 0).all()):
        raise ValidationError("variances must be finite and > 0")
    return np.log(w / total), 0.5 * np.log(v)

@dataclass(frozen=True, eq=False)
class MixtureParams:
    """Unconstrained parameters (or a gradient) of a diagonal Gaussian mixture.

    Parameters
    ----------
    means : array of shape (K, D)
    log_sigma : array of shape (K, D)
        Log standard deviations, ``sigma_kd = exp(log_sigma_kd)``.
    logits : array of shape (K,)
        Mixture logits, ``weights = softmax(logits)``.

    Arrays are copied, made read-only and cast to float64 (float32 is kept when
    every input is float32).  Shapes are validated; values must be finite.
    """

    means: np.ndarray
    log_sigma: np.ndarray
    logits: np.ndarray

    def __post_init__(self) -> None:
        means, log_sigma, logits = self.means, self.log_sigma, self.logits
        if (type(means) is np.ndarray and type(log_sigma) is np.ndarray
                and type(logits) is np.ndarray
                and means.dtype == log_sigma.dtype == logits.dtype
                and means.dtype.type in (np.float64, np.float32)):
            # arrays of one float dtype (every iterate, gradient and optimiser state):
            # the dtype rules below would keep them as they are
            means, log_sigma, logits = means.copy(), log_sigma.copy(), logits.copy()
        else:
            raw = {f: np.asarray(getattr(self, f)) for f in FIELDS}
            for f, a in raw.items():
                if a.dtype.kind not in "biuf":
                    raise TypeError(f"{f} must be a numeric array, got dtype {a.dtype}")
            dtype = _float_dtype(*raw.values())
            means, log_sigma, logits = (_as_float_array(f, raw[f], dtype) for f in FIELDS)
        if means.ndim != 2:
            raise ValidationError(f"means must have shape (K, D), got shape {means.shape}")
        k, d = means.shape
        if k < 1 or d < 1:
            raise ValidationError(f"means must have K >= 1 and D >= 1, got shape {means.shape}")
        if log_sigma.shape != (k, d):
            raise ValidationError(
                f"log_sigma must have the shape of means {(k, d)}, got {log_sigma.shape}"
            )
        if logits.shape != (k,):
            raise ValidationError(f"logits must have shape (K,) = ({k},), got {logits.shape}")
        for f, a in zip(FIELDS, (means, log_sigma, logits), strict=True):
            if not np.isfinite(a).all():   # the method: no wrapper dispatch on the hot path
                raise ValidationError(f"{f} contains NaN or infinite values")
            a.setflags(write=False)
            object.__setattr__(self, f, a)

    # ------------------------------------------------------------------ views
    @property
    def n_components(self) -> int:
        """K, the number of components."""
        return self.means.shape[0]

    @property
    def n_features(self) -> int:
        """D, the number of features."""
        return self.means.shape[1]

    @property
    def dtype(self) -> np.dtype:
        return self.means.dtype

    @property
    def weights(self) -> np.ndarray:
        """Mixture weights ``pi = softmax(logits)``, shape (K,)."""
        return softmax(self.logits)

    @property
    def log_weights(self) -> np.ndarray:
        """``log pi``, shape (K,), computed without exponentiating (eq. 12)."""
        return log_softmax(self.logits)

    @property
    def sigma(self) -> np.ndarray:
        """Standard deviations ``exp(log_sigma)``, shape (K, D)."""
        return np.exp(self.log_sigma)

    @property
    def variances(self) -> np.ndarray:
        """Diagonal variances ``exp(2 log_sigma)``, shape (K, D)."""
        return np.exp(2.0 * self.log_sigma)

    # ------------------------------------------------------------ constructors
    @classmethod
    def from_moments(
        cls, weights, means, variances, *, dtype: np.dtype | type | None = None
    ) -> MixtureParams:
        """Build parameters from natural moments.

        ``weights`` (K,) must be positive and sum to one (within 1e-6; they are
        renormalised), ``means`` (K, D) finite, ``variances`` (K, D) positive.
        Logits are ``log(weights)`` (any constant shift gives the same softmax).
        """
        w = np.asarray(weights, dtype=np.float64)
        if w.ndim != 1:
            raise ValidationError(f"weights must have shape (K,), got {w.shape}")
        logits, log_sigma = unconstrained_moments(w, variances)
        out_dtype = np.dtype(dtype) if dtype is not None else np.dtype(np.float64)
        return cls(
            means=np.asarray(means, dtype=out_dtype),
            log_sigma=log_sigma.astype(out_dtype, copy=False),
            logits=logits.astype(out_dtype, copy=False),
        )

    @classmethod
    def zeros_like(cls, other: MixtureParams) -> MixtureParams:
        return tree_map(np.zeros_like, other)

    # ------------------------------------------------------------- utilities
    def __iter__(self) -> Iterator[np.ndarray]:
        return iter((self.means, self.log_sigma, self.logits))

    def replace(self, **changes: np.ndarray) -> MixtureParams:
        """A copy with some arrays replaced."""
        current = {f: getattr(self, f) for f in FIELDS}
        current.update(changes)
        return MixtureParams(**current)

    def astype(self, dtype) -> MixtureParams:
        return tree_map(lambda a: a.astype(dtype), self)

    def ravel(self) -> np.ndarray:
        """All parameters as one vector ``[means, log_sigma, logits]``, length K(2D+1)."""
        return np.concatenate([a.ravel() for a in self])

    @classmethod
    def unravel(cls, vector: np.ndarray, n_components: int, n_features: int) -> MixtureParams:
        """Inverse of :meth:`ravel`."""
        k, d = n_components, n_features
        v = np.asarray(vector)
        if v.shape != (k * (2 * d + 1),):
            raise ValidationError(f"vector must have length K(2D+1) = {k * (2 * d + 1)}")
        if (cls is MixtureParams and k >= 1 and d >= 1
                and v.dtype.type in (np.float64, np.float32) and np.isfinite(v).all()):
            # what the constructor makes of the three slices (read-only float copies, shapes
            # and finiteness checked) by one copy and one check: every compiled epoch
            # unravels its parameters and optimiser state
            v = v.copy()
            v.setflags(write=False)   # (its views are read-only too, for good)
            params = object.__new__(cls)
            for name, a in zip(FIELDS, (v[: k * d].reshape(k, d),
                                        v[k * d : 2 * k * d].reshape(k, d), v[2 * k * d :]),
                               strict=True):
                object.__setattr__(params, name, a)
            return params
        return cls(
            means=v[: k * d].reshape(k, d),
            log_sigma=v[k * d : 2 * k * d].reshape(k, d),
            logits=v[2 * k * d :],
        )

    def to_dict(self) -> dict[str, list]:
        """Plain lists (JSON-ready); floats round-trip exactly through ``repr``."""
        return {f: getattr(self, f).tolist() for f in FIELDS}

    @classmethod
    def from_dict(cls, data: dict) -> MixtureParams:
        missing = [f for f in FIELDS if f not in data]
        if missing:
            raise ValidationError(f"parameter record lacks {', '.join(missing)}")
        return cls(**{f: np.asarray(data[f], dtype=np.float64) for f in FIELDS})

    def allclose(self, other: MixtureParams, rtol: float = 1e-7, atol: float = 0.0) -> bool:
        pairs = zip(self, other, strict=True)
        return all(np.allclose(a, b, rtol=rtol, atol=atol) for a, b in pairs)

    def __repr__(self) -> str:
        return (
            f"MixtureParams(K={self.n_components}, D={self.n_features}, "
            f"weights={np.array2string(self.weights, precision=3)}, dtype={self.dtype})"
        )


def bounded_variances(variances) -> np.ndarray:
    """``variances`` (float64) with every value beyond :data:`VARIANCE_MAX` (``inf``, or NaN
    from ``inf - inf`` when squared deviations overflowed) replaced by it."""
    v = np.asarray(variances, dtype=np.float64)
    return np.where(np.isnan(v) | (v > VARIANCE_MAX), VARIANCE_MAX, v)


def tree_map(fn: Callable[..., np.ndarray], *trees: MixtureParams) -> MixtureParams:
    """Apply ``fn`` leaf-wise over one or more parameter trees of one type: a
    :class:`MixtureParams` or another covariance family's parameters
    (:mod:`mogsgd.covariance`), so the optimisers serve every family."""
    return type(trees[0])(*(fn(*leaves) for leaves in zip(*trees, strict=True)))
