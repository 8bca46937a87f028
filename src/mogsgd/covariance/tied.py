"""Mixtures of Gaussians sharing one full covariance (eqs. 39-44, 46, 48).

The parameters are the means (K, D), one log-Cholesky precision factor ``A``
(D, D) (eq. 39) and the logits.  The density and the mean gradient are those of
:mod:`mogsgd.covariance.full` with ``U_k = U`` for every ``k``; because ``A`` enters
every component, its gradient is the sum over components of eqs. 42-43 (eq. 44):
``(sum_k M_k)_de`` above the diagonal and ``(sum_k M_k)_dd U_dd - W`` on it.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from mogsgd.covariance import _cholesky as chol
from mogsgd.covariance._base import (
    check_moments,
    check_X,
    frozen,
    log_weights,
    m_step_weights_means,
    weighted_resp,
)
from mogsgd.covariance.full import (
    centred_moments,
    check_scale,
    component_grad_sums,
    component_log_prob,
    sample_components,
    scale_factor,
    with_reg,
)
from mogsgd.errors import ValidationError

__all__ = ["TiedParams", "TiedGradSums", "TiedEMStats", "TiedFamily", "TIED"]


class TiedParams(NamedTuple):
    """``means`` (K, D); ``log_chol`` (D, D), the shared precision's log-Cholesky factor
    (eq. 39); ``logits`` (K,).  Build validated instances with :meth:`create`."""

    means: np.ndarray
    log_chol: np.ndarray
    logits: np.ndarray

    @classmethod
    def create(cls, means, log_chol, logits) -> TiedParams:
        m, a, lg = frozen(means), frozen(log_chol), frozen(logits)
        if m.ndim != 2 or min(m.shape) < 1:
            raise ValidationError(f"means must have shape (K, D), got {m.shape}")
        k, d = m.shape
        if a.shape != (d, d):
            raise ValidationError(f"log_chol must have shape (D, D) = {(d, d)}, got {a.shape}")
        chol.check_log_chol("log_chol", a)
        if lg.shape != (k,) or not np.all(np.isfinite(lg)) or not np.all(np.isfinite(m)):
            raise ValidationError(f"logits must have shape ({k},); means and logits finite")
        return cls(m, a, lg)

    @property
    def weights(self) -> np.ndarray:
        return np.exp(log_weights(self.logits))


class TiedGradSums(NamedTuple):
    """``nll_sum``, ``weight_sum`` and the gradient of ``nll_sum`` per field of TiedParams."""

    nll_sum: float
    weight_sum: float
    means: np.ndarray
    log_chol: np.ndarray
    logits: np.ndarray


class TiedEMStats(NamedTuple):
    """``nk`` (K,), ``sx`` (K, D) and ``sxx = sum_k sum_i g_ik (x_i - mu_k)(x_i - mu_k)^T``
    (D, D), centred at each component's current mean."""

    ll_sum: float
    weight_sum: float
    nk: np.ndarray
    sx: np.ndarray
    sxx: np.ndarray


def _stack(params: TiedParams) -> np.ndarray:
    k = params.means.shape[0]
    return np.broadcast_to(params.log_chol, (k,) + params.log_chol.shape)


class TiedFamily:
    """``covariance_type="tied"``: all components share one covariance."""

    name = "tied"
    params_type = TiedParams

    def n_parameters(self, n_components: int, n_features: int) -> int:
        """``D (D + 1) / 2 + K D + K - 1`` (eq. 51)."""
        k, d = n_components, n_features
        return d * (d + 1) // 2 + k * d + k - 1

    def _from_cov(self, weights, means, cov) -> TiedParams:
        return TiedParams.create(means, chol.log_factor(chol.factor_from_cov(cov)),
                                 np.log(weights))

    def init_from_moments(self, weights, means, covariances, min_variance: float) -> TiedParams:
        """Covariance (D, D), eigenvalues floored at ``min_variance`` (eqs. 39, 46)."""
        w, m = check_moments(weights, means)
        d = m.shape[1]
        cov = np.asarray(covariances, dtype=np.float64)
        if cov.shape != (d, d) or not np.all(np.isfinite(cov)):
            raise ValidationError(f"covariances must be finite with shape {(d, d)}, "
                                  f"got {cov.shape}")
        return self._from_cov(w, m, chol.floor_eigenvalues(cov, min_variance))

    def log_prob_components(self, X, params: TiedParams) -> np.ndarray:
        """``log pi_k + log N(x_i | mu_k, Lambda^-1)``, shape (n, K) (eq. 40)."""
        return component_log_prob(check_X(X, self.name), params.means, _stack(params),
                                  params.logits)

    def nll_grad_sums(self, X, params: TiedParams, sample_weight=None) -> TiedGradSums:
        """Eqs. 41-43 per component, the factor gradient summed over components (eq. 44)."""
        nll_sum, weight_sum, g_means, g_chol, g_logits = component_grad_sums(
            check_X(X, self.name), params.means, _stack(params), params.logits, sample_weight)
        return TiedGradSums(nll_sum, weight_sum, g_means, g_chol.sum(axis=0), g_logits)

    def em_stats(self, X, params: TiedParams, sample_weight=None) -> TiedEMStats:
        """E-step statistics centred at the current means (eqs. 11, 27)."""
        X = check_X(X, self.name)
        _, resp, weight_sum, ll_sum = weighted_resp(self.log_prob_components(X, params),
                                                    sample_weight)
        nk, sx, sxx = centred_moments(X, params.means, resp)
        return TiedEMStats(ll_sum, weight_sum, nk, sx, sxx.sum(axis=0))

    def m_step(self, stats: TiedEMStats, params: TiedParams, reg_covar: float) -> TiedParams:
        """``Sigma = (sxx - sum_k N_k delta_k delta_k^T) / sum_k N_k + reg I`` (eq. 48)."""
        weights, means, shift, nk, _ = m_step_weights_means(stats, params)
        between = np.einsum("k,kd,ke->de", nk, shift, shift)
        cov = with_reg((stats.sxx - between) / nk.sum(), reg_covar)
        return self._from_cov(weights, means, cov)

    def project_floor(self, params: TiedParams, min_variance: float) -> TiedParams:
        """Eigenvalue floor ``Sigma >= v_min I`` (eq. 46)."""
        projected = chol.project_factor(params.log_chol, min_variance)
        if projected is params.log_chol:
            return params
        return params._replace(log_chol=frozen(projected))

    def covariances(self, params: TiedParams) -> np.ndarray:
        """(D, D)."""
        return chol.cov_from_factor(chol.factor(params.log_chol))

    def precisions(self, params: TiedParams) -> np.ndarray:
        """(D, D)."""
        U = chol.factor(params.log_chol)
        return U @ U.T

    def precisions_cholesky(self, params: TiedParams) -> np.ndarray:
        """(D, D), upper triangular — scikit-learn's convention."""
        return chol.factor(params.log_chol)

    def admissible_scale(self, scale: np.ndarray) -> np.ndarray:
        """Any per-feature scale."""
        return np.asarray(scale, dtype=np.float64)

    def to_data(self, params: TiedParams, center, scale) -> TiedParams:
        """``mu = c + s * mu'``, ``U = diag(1/s) U'`` (eq. 50)."""
        s = check_scale(scale, params.means.shape[1])
        return TiedParams.create(params.means * s + center,
                                 scale_factor(params.log_chol, 1.0 / s), params.logits)

    def from_data(self, params: TiedParams, center, scale) -> TiedParams:
        s = check_scale(scale, params.means.shape[1])
        return TiedParams.create((params.means - center) / s,
                                 scale_factor(params.log_chol, s), params.logits)

    def sample(self, params: TiedParams, rng: np.random.Generator, n: int):
        U = chol.factor(params.log_chol)
        return sample_components(rng, params, np.broadcast_to(U, (len(params.logits),) + U.shape),
                                 n)


TIED = TiedFamily()
