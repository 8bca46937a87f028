"""The diagonal model as a :class:`~mogsgd.covariance.CovarianceFamily`.

A thin adapter over the existing core functions — :func:`mogsgd.density.weighted_log_prob`
(eq. 9), :func:`mogsgd.gradients.nll_grad_sums` (eqs. 13-19), :func:`mogsgd.em.em_stats`
and :func:`mogsgd.em.m_step` (eqs. 27-30) — with :class:`mogsgd.params.MixtureParams`
as its parameter type, so the estimator's diagonal path keeps its numbers bit for bit.
It is the only family that marginalises NaN (eq. 34).
"""

from __future__ import annotations

import numpy as np

import mogsgd.density as density
import mogsgd.em as em
import mogsgd.gradients as gradients
import mogsgd.online_em as online_em
from mogsgd.covariance._base import check_moments, labels
from mogsgd.errors import ValidationError
from mogsgd.params import MixtureParams

__all__ = ["DiagFamily", "DIAG"]


class DiagFamily:
    """``covariance_type="diag"``: one variance per component and feature."""

    name = "diag"
    params_type = MixtureParams

    def n_parameters(self, n_components: int, n_features: int) -> int:
        """``K (2D + 1) - 1`` (eqs. 38, 51)."""
        return n_components * (2 * n_features + 1) - 1

    def init_from_moments(self, weights, means, covariances, min_variance: float):
        """Variances (K, D), floored at ``min_variance`` (eq. 26)."""
        w, m = check_moments(weights, means)
        v = np.asarray(covariances, dtype=np.float64)
        if v.shape != m.shape:
            raise ValidationError(f"covariances must have shape {m.shape}, got {v.shape}")
        return MixtureParams.from_moments(w, m, np.maximum(v, min_variance))

    def from_diagonal(self, params: MixtureParams) -> MixtureParams:
        """The diagonal model itself."""
        return params

    def log_prob_components(self, X, params: MixtureParams) -> np.ndarray:
        """``log pi_k + log N_ik``, shape (n, K) (eqs. 9, 12, 34)."""
        return density.weighted_log_prob(X, params)

    def nll_grad_sums(self, X, params: MixtureParams, sample_weight=None):
        """:class:`mogsgd.gradients.GradSums` (eqs. 13-19, 32, 35)."""
        return gradients.nll_grad_sums(X, params, sample_weight)

    def em_stats(self, X, params: MixtureParams, sample_weight=None):
        """:class:`mogsgd.em.EMStats`, centred (eqs. 11, 27)."""
        return em.em_stats(X, params, sample_weight)

    def m_step(self, stats, params: MixtureParams, reg_covar: float,
               floor: float = 0.0) -> MixtureParams:
        """Eqs. 27-30 (variances floored at ``floor``, eq. 26)."""
        return em.m_step(stats, params, reg_covar, floor)

    def initial_stats(self, params: MixtureParams, reg_covar: float) -> em.EMStats:
        """:func:`mogsgd.online_em.online_em_init`'s statistics (eq. 36)."""
        return online_em.online_em_init(params, reg_covar).stats

    def recentre(self, stats, params: MixtureParams, reg_covar: float) -> em.EMStats:
        """``sx = 0``, ``sxx = N_kd (sigma_kd^2 - reg)``, as ``online_em`` re-centres."""
        return em.EMStats(stats.ll_sum, stats.weight_sum, stats.nk, stats.nkd,
                          np.zeros_like(stats.sx),
                          np.maximum(params.variances - reg_covar, 0.0) * stats.nkd)

    def online_init(self, params: MixtureParams, reg_covar: float) -> online_em.OnlineEMState:
        """:func:`mogsgd.online_em.online_em_init` (eq. 36)."""
        return online_em.online_em_init(params, reg_covar)

    def online_step(self, X, params: MixtureParams, state: online_em.OnlineEMState, **options):
        """:func:`mogsgd.online_em.online_em_step` (eqs. 36, 37)."""
        return online_em.online_em_step(X, params, state, **options)

    def project_floor(self, params: MixtureParams, min_variance: float) -> MixtureParams:
        """``log sigma <- max(log sigma, 1/2 log v_min)`` (eq. 26)."""
        floor = 0.5 * np.log(min_variance)
        if np.all(params.log_sigma >= floor):
            return params
        return params.replace(log_sigma=np.maximum(params.log_sigma, floor))

    def covariances(self, params: MixtureParams) -> np.ndarray:
        """(K, D)."""
        return params.variances

    def precisions(self, params: MixtureParams) -> np.ndarray:
        """(K, D)."""
        return np.exp(-2.0 * params.log_sigma)

    def precisions_cholesky(self, params: MixtureParams) -> np.ndarray:
        """(K, D), ``1 / sigma``."""
        return np.exp(-params.log_sigma)

    def admissible_scale(self, scale: np.ndarray) -> np.ndarray:
        return np.asarray(scale, dtype=np.float64)

    def to_data(self, params: MixtureParams, center, scale) -> MixtureParams:
        """``mu = c + s mu'``, ``log sigma = log sigma' + log s`` (eq. 33)."""
        s = np.asarray(scale, dtype=np.float64)
        return MixtureParams(means=(params.means * s + center).astype(params.dtype),
                             log_sigma=(params.log_sigma + np.log(s)).astype(params.dtype),
                             logits=params.logits)

    def from_data(self, params: MixtureParams, center, scale) -> MixtureParams:
        s = np.asarray(scale, dtype=np.float64)
        return MixtureParams(means=((params.means - center) / s).astype(params.dtype),
                             log_sigma=(params.log_sigma - np.log(s)).astype(params.dtype),
                             logits=params.logits)

    def sample(self, params: MixtureParams, rng: np.random.Generator, n: int):
        y = labels(params, rng, n)
        eps = rng.standard_normal((n, params.n_features))
        return params.means[y] + eps * params.sigma[y], y


DIAG = DiagFamily()
