"""The component-family protocol and the maths every family shares (NumPy only).

A *family* is a stateless object that knows one covariance structure (``diag``,
``spherical``, ``full``, ``tied``): how its unconstrained parameters are stored, the
per-component log densities, the analytic NLL gradient, the EM statistics and
M-step, the variance floor, the affine map of standardisation and the
scikit-learn attributes.  Everything that does not depend on the structure — the
mixture log-likelihood (eq. 10), responsibilities (eq. 11), weighting by
``sample_weight`` (eqs. 31, 32), combining additive sums — lives here, once.

Parameters are immutable NamedTuples whose fields are all unconstrained
(``means``, one covariance field, ``logits``); the same type holds gradients, so
an optimiser can update them leaf by leaf with :func:`tree_map`.  Gradient sums
and EM statistics are flat NamedTuples whose first two fields are
``(nll_sum | ll_sum, weight_sum)``; they add fieldwise over disjoint row sets
(:func:`combine`).  Equation numbers refer to ``docs/derivations.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np

from mogsgd.density import logsumexp, normalise
from mogsgd.errors import ValidationError
from mogsgd.params import log_softmax

__all__ = ["CovarianceFamily", "CentredStats", "tree_map", "combine", "finalize", "log_prob",
           "log_prob_and_log_resp", "em_step", "weighted_resp", "check_X", "frozen",
           "parameter_views"]


@runtime_checkable
class CovarianceFamily(Protocol):
    """What the estimator needs from one covariance structure.

    ``P`` is the family's parameter NamedTuple (``params_type``), ``X`` an (n, D)
    array, ``sample_weight`` None or (n,) non-negative weights.
    """

    name: str
    params_type: type

    def n_parameters(self, n_components: int, n_features: int) -> int:
        """Free parameters, as scikit-learn's ``GaussianMixture._n_parameters()``."""

    def init_from_moments(self, weights, means, covariances, min_variance: float) -> Any:
        """``P`` from natural moments (covariances in scikit-learn's shape), floored."""

    def log_prob_components(self, X: np.ndarray, params) -> np.ndarray:
        """``log pi_k + log N(x_i | component k)``, shape (n, K)."""

    def nll_grad_sums(self, X: np.ndarray, params, sample_weight=None) -> NamedTuple:
        """``(nll_sum, weight_sum, *gradient fields of P)`` of the summed weighted NLL."""

    def em_stats(self, X: np.ndarray, params, sample_weight=None) -> NamedTuple:
        """Additive E-step statistics ``(ll_sum, weight_sum, nk, ...)``, centred."""

    def m_step(self, stats, params, reg_covar: float, floor: float = 0.0) -> Any:
        """Closed-form M-step from :meth:`em_stats` (``reg_covar`` on the diagonal; with
        ``floor > 0`` the maximiser under the variance floor, eqs. 26, 46)."""

    def online_init(self, params, reg_covar: float) -> Any:
        """Online EM's starting state (eq. 36)."""

    def online_step(self, X: np.ndarray, params, state, **options) -> tuple:
        """One online-EM update: ``(new params, new state, batch NLL)`` (eqs. 36, 37)."""

    def initial_stats(self, params, reg_covar: float) -> NamedTuple:
        """Online EM's starting statistics: one pseudo-point that reproduces ``params``."""

    def recentre(self, stats, params, reg_covar: float) -> NamedTuple:
        """``stats``' counts with ``sx = 0``, centred at ``params = m_step(stats)``."""

    def project_floor(self, params, min_variance: float) -> Any:
        """The nearest parameters whose covariances have every eigenvalue >= min_variance."""

    def covariances(self, params) -> np.ndarray:
        """``covariances_`` in scikit-learn's shape for this type."""

    def precisions(self, params) -> np.ndarray:
        """``precisions_`` in scikit-learn's shape for this type."""

    def precisions_cholesky(self, params) -> np.ndarray:
        """``precisions_cholesky_`` in scikit-learn's shape and convention."""

    def admissible_scale(self, scale: np.ndarray) -> np.ndarray:
        """The per-feature scale nearest ``scale`` that maps this family to itself."""

    def to_data(self, params, center: np.ndarray, scale: np.ndarray) -> Any:
        """Parameters fitted on ``(x - c) / s`` -> parameters in data units."""

    def from_data(self, params, center: np.ndarray, scale: np.ndarray) -> Any:
        """Inverse of :meth:`to_data`."""

    def sample(self, params, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        """``(X, y)``: ``n`` points (n, D) and their component labels (n,)."""


# ----------------------------------------------------------------- containers
class CentredStats(NamedTuple):
    """Additive E-step statistics of the spherical, full and tied families, centred at
    the current means (``g = w gamma``):

    ``ll_sum = sum_i w_i log p(x_i)``, ``weight_sum = sum_i w_i``, ``nk`` (K,) ``= sum_i g_ik``,
    ``sx`` (K, D) ``= sum_i g_ik (x_i - mu_k)`` and ``sxx``, the second moment in the
    family's shape: ``sum_i g_ik ||x_i - mu_k||^2`` (K,) spherical,
    ``sum_i g_ik (x_i - mu_k)(x_i - mu_k)^T`` (K, D, D) full, its sum over ``k`` (D, D) tied.
    """

    ll_sum: float
    weight_sum: float
    nk: np.ndarray
    sx: np.ndarray
    sxx: np.ndarray


def frozen(a, dtype=np.float64) -> np.ndarray:
    """A read-only float copy of ``a``."""
    out = np.array(a, dtype=dtype, copy=True)
    out.setflags(write=False)
    return out


def parameter_views(marginal_variances: Callable):
    """Class decorator: the views every family's parameter NamedTuple shares with
    :class:`~mogsgd.params.MixtureParams` -- ``weights`` (softmax of the logits, eq. 12),
    ``n_components``, ``n_features``, ``dtype``, ``astype(dtype)``, and ``variances`` /
    ``sigma``, each feature's marginal variance / standard deviation per component (K, D),
    ``marginal_variances(params)`` (the diagonal of each covariance)."""
    def decorate(cls):
        cls.variances = property(marginal_variances,
                                 doc="Marginal variances per component and feature, (K, D).")
        cls.sigma = property(lambda self: np.sqrt(self.variances),
                             doc="Marginal standard deviations, (K, D).")
        return _views(cls)

    return decorate


def _views(cls):
    cls.weights = property(lambda self: np.exp(log_weights(self.logits)),
                           doc="Mixture weights ``softmax(logits)``, (K,).")
    cls.n_components = property(lambda self: self.means.shape[0], doc="K.")
    cls.n_features = property(lambda self: self.means.shape[1], doc="D.")
    cls.dtype = property(lambda self: self.means.dtype, doc="The parameters' dtype.")
    cls.astype = lambda self, dtype: self if self.means.dtype == dtype else \
        type(self)(*(np.asarray(a).astype(dtype) for a in self))
    return cls


def tree_map(fn: Callable[..., np.ndarray], *trees):
    """Apply ``fn`` leaf-wise over parameter NamedTuples of one type (no validation)."""
    return type(trees[0])(*(fn(*leaves) for leaves in zip(*trees, strict=True)))


def combine(parts):
    """Fieldwise sum of gradient sums or EM statistics of disjoint row sets."""
    parts = list(parts)
    if not parts:
        raise ValueError("combine needs at least one set of sums")
    return type(parts[0])(*(sum(f) for f in zip(*parts, strict=True)))


def finalize(sums, params_type: type):
    """Mean NLL and its gradient: every sum divided by the total weight (eqs. 19, 32)."""
    scale = 1.0 / sums.weight_sum
    return sums.nll_sum * scale, params_type(*(g * scale for g in sums[2:]))


# --------------------------------------------------------- shared mixture maths
def check_X(X, family: str) -> np.ndarray:
    """``X`` as a 2-D float array; NaN is refused (only ``diag`` marginalises it, eq. 34)."""
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValidationError(f"X must have shape (n, D), got shape {X.shape}")
    if X.dtype.kind not in "fc":
        X = X.astype(np.float64)
    if np.isnan(X).any():
        raise ValidationError(
            f"X contains NaN; covariance_type={family!r} has no missing-value likelihood "
            "(use covariance_type='diag', which marginalises NaN, or impute first)"
        )
    return X


def log_weights(logits: np.ndarray) -> np.ndarray:
    """``log pi = log_softmax(alpha)`` (eq. 12)."""
    return log_softmax(logits)


def weighted_resp(wlp: np.ndarray, sample_weight=None):
    """From weighted log densities (n, K): ``(lp, w_i gamma_ik, W, sum_i w_i lp_i)``.

    ``lp`` (n,) is ``log p(x_i)`` (eq. 10), the responsibilities (eq. 11) are
    multiplied by the sample weights and ``W = sum_i w_i`` (``n`` without weights,
    eq. 31).
    """
    lp, log_resp = normalise(wlp)
    resp = np.exp(log_resp)
    if sample_weight is None:
        return lp, resp, float(len(lp)), float(lp.sum())
    w = np.asarray(sample_weight, dtype=resp.dtype)
    resp *= w[:, None]
    return lp, resp, float(w.sum()), float(w @ lp)


def log_prob_and_log_resp(family: CovarianceFamily, X, params):
    """``(log p(x_i), log gamma_ik)``, shapes (n,) and (n, K) (eqs. 10, 11)."""
    return normalise(family.log_prob_components(X, params))


def log_prob(family: CovarianceFamily, X, params) -> np.ndarray:
    """``log p(x_i) = logsumexp_k(log pi_k + log N_ik)``, shape (n,) (eq. 10)."""
    return logsumexp(family.log_prob_components(X, params), axis=1)


def em_step(family: CovarianceFamily, X, params, reg_covar: float = 1e-6,
            sample_weight=None):
    """One EM iteration: ``(new params, mean log-likelihood of the old params)``."""
    stats = family.em_stats(X, params, sample_weight)
    return family.m_step(stats, params, reg_covar), stats.ll_sum / stats.weight_sum


def m_step_weights_means(stats, params):
    """The shared half of every M-step (eqs. 28, 29) from centred statistics.

    Returns ``(weights, means, shift, nk, dead)``: ``shift = sx / N_k`` is the move
    of each mean, ``nk`` is clamped away from 0 and ``dead`` marks components with
    (numerically) no responsibility, which keep their old mean and covariance.
    """
    tiny = 10.0 * np.finfo(np.float64).eps * max(stats.weight_sum, 1.0)
    dead = stats.nk <= tiny
    nk = np.maximum(stats.nk, tiny)
    shift = stats.sx / nk[:, None]
    means = np.where(dead[:, None], params.means, params.means + shift)
    return nk / nk.sum(), means, shift, nk, dead


def check_moments(weights, means):
    """Validated ``(weights (K,), means (K, D))`` as float64; weights renormalised."""
    w = np.asarray(weights, dtype=np.float64)
    m = np.asarray(means, dtype=np.float64)
    if w.ndim != 1:
        raise ValidationError(f"weights must have shape (K,), got {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w <= 0):
        raise ValidationError(f"weights must be finite and > 0, got {w}")
    if abs(w.sum() - 1.0) > 1e-6:
        raise ValidationError(f"weights must sum to 1, they sum to {w.sum():.8g}")
    if m.ndim != 2 or m.shape[0] != len(w):
        raise ValidationError(f"means must have shape (K, D) with K = {len(w)}, got {m.shape}")
    if not np.all(np.isfinite(m)):
        raise ValidationError("means contains NaN or infinite values")
    return w / w.sum(), m


def validated(cls, means, cov, logits, cov_shape):
    """``cls(means, cov, logits)`` with read-only float64 copies (float32 when all three are
    float32, as :class:`~mogsgd.params.MixtureParams`), after checking shapes
    (``cov_shape(K, D)`` for the covariance field) and finiteness."""
    arrays = [np.asarray(a) for a in (means, cov, logits)]
    dtype = np.float32 if all(a.dtype == np.float32 for a in arrays) else np.float64
    m, c, lg = (frozen(a, dtype) for a in arrays)
    if m.ndim != 2 or min(m.shape) < 1:
        raise ValidationError(f"means must have shape (K, D) with K, D >= 1, got {m.shape}")
    k, d = m.shape
    name = cls._fields[1]
    if c.shape != cov_shape(k, d):
        raise ValidationError(f"{name} must have shape {cov_shape(k, d)}, got {c.shape}")
    if lg.shape != (k,):
        raise ValidationError(f"logits must have shape ({k},), got {lg.shape}")
    for field, a in zip(cls._fields, (m, c, lg), strict=True):
        if not np.all(np.isfinite(a)):
            raise ValidationError(f"{field} contains NaN or infinite values")
    return cls(m, c, lg)


def labels(params, rng: np.random.Generator, n: int) -> np.ndarray:
    """Component labels drawn with probabilities ``softmax(logits)``."""
    return rng.choice(len(params.logits), size=n, p=np.exp(log_weights(params.logits)))
