"""Mixtures of Gaussians sharing one full covariance (eqs. 39-44, 46, 48).

The parameters are the means (K, D), one log-Cholesky precision factor ``A``
(D, D) (eq. 39) and the logits.  The density and the mean gradient are those of
:mod:`mogsgd.covariance.full` with ``U_k = U`` for every ``k``; because ``A`` enters
every component, its gradient is the sum over components of eqs. 42-43 (eq. 44):
``(sum_k M_k)_de`` above the diagonal and ``(sum_k M_k)_dd U_dd - W`` on it.
:class:`TiedFamily` is :class:`~mogsgd.covariance.full.FullFamily` with the factor
broadcast to every component and per-component arrays summed (its hooks).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

import mogsgd.covariance.cholesky as chol
from mogsgd.covariance._base import parameter_views, validated
from mogsgd.covariance.full import FullFamily, diagonal_of_covariances, with_reg

__all__ = ["TiedParams", "TiedFamily", "TIED"]


@parameter_views(diagonal_of_covariances)
class TiedParams(NamedTuple):
    """``means`` (K, D); ``log_chol`` (D, D), the shared precision's log-Cholesky factor
    (eq. 39); ``logits`` (K,).  Build validated instances with :meth:`create`."""

    means: np.ndarray
    log_chol: np.ndarray
    logits: np.ndarray

    @classmethod
    def create(cls, means, log_chol, logits) -> TiedParams:
        params = validated(cls, means, log_chol, logits, lambda k, d: (d, d))
        chol.check_log_chol("log_chol", params.log_chol)
        return params



class TiedFamily(FullFamily):
    """``covariance_type="tied"``: all components share one covariance."""

    name = "tied"
    params_type = TiedParams

    def _cov_shape(self, k: int, d: int) -> tuple[int, ...]:
        return (d, d)

    def factor_stack(self, params) -> np.ndarray:
        k = params.means.shape[0]
        return np.broadcast_to(params.log_chol, (k,) + params.log_chol.shape)

    def pool(self, per_component: np.ndarray) -> np.ndarray:
        """The shared factor's gradient and scatter sum over components (eqs. 44, 48)."""
        return per_component.sum(axis=0)

    def _m_step_cov(self, stats, params, shift, nk, dead, reg_covar):
        """``Sigma = (sxx - sum_k N_k delta_k delta_k^T) / sum_k N_k + reg I`` (eq. 48)."""
        between = np.einsum("k,kd,ke->de", nk, shift, shift)
        return with_reg((stats.sxx - between) / nk.sum(), reg_covar)

    def n_parameters(self, n_components: int, n_features: int) -> int:
        """``D (D + 1) / 2 + K D + K - 1`` (eq. 51)."""
        k, d = n_components, n_features
        return d * (d + 1) // 2 + k * d + k - 1


TIED = TiedFamily()
