"""Mixtures of spherical Gaussians, ``Sigma_k = sigma_k^2 I`` (eqs. 45, 49).

One ``log sigma_k`` per component, as the diagonal model has one per feature
(eq. 15).  With ``r_ik = x_i - mu_k``, ``q_ik = ||r_ik||^2 / sigma_k^2`` and
``g_ik = w_i gamma_ik``:

    log N_ik = -D/2 log 2 pi - D log sigma_k - q_ik / 2                           (eq. 45)

and the gradients of the summed NLL are ``-sum_i g_ik r_ik / sigma_k^2`` (means),
``D N_k - sum_i g_ik q_ik`` (log_sigma) and ``W pi_k - N_k`` (logits).  Beyond the
saturation point ``q / 2 > 2^64``, ``q / 2`` becomes ``S(q / 2)`` and ``r`` and ``q`` carry
the factor ``S'`` (eqs. 52, 53): the diagonal model's :func:`mogsgd.density.distance`
with one ``sigma_k`` for every feature.

A spherical covariance stays spherical only under a *uniform* rescaling of the
features, so :meth:`SphericalFamily.admissible_scale` replaces per-feature scales
by one common scale and :meth:`~SphericalFamily.to_data` refuses anything else.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from mogsgd.covariance._base import (
    CentredStats,
    check_moments,
    check_X,
    frozen,
    labels,
    log_weights,
    m_step_weights_means,
    parameter_views,
    validated,
    weighted_resp,
)
from mogsgd.covariance.online import OnlineEMMixin
from mogsgd.density import FAR_LOG_DENSITY, LOG_2PI, distance
from mogsgd.errors import ValidationError
from mogsgd.params import MixtureParams, bounded_variances

__all__ = ["SphericalParams", "SphericalGradSums", "SphericalFamily", "SPHERICAL",
           "as_diagonal", "pool_diagonal_sums", "pool_diagonal_stats"]


@parameter_views(lambda p: np.broadcast_to(np.exp(2.0 * p.log_sigma)[:, None],
                                         p.means.shape).copy())
class SphericalParams(NamedTuple):
    """``means`` (K, D); ``log_sigma`` (K,), ``Sigma_k = exp(2 log_sigma_k) I``; ``logits`` (K,)."""

    means: np.ndarray
    log_sigma: np.ndarray
    logits: np.ndarray

    @classmethod
    def create(cls, means, log_sigma, logits) -> SphericalParams:
        return validated(cls, means, log_sigma, logits, lambda k, d: (k,))



class SphericalGradSums(NamedTuple):
    """``nll_sum``, ``weight_sum`` and the gradient of ``nll_sum`` per field."""

    nll_sum: float
    weight_sum: float
    means: np.ndarray
    log_sigma: np.ndarray
    logits: np.ndarray


def as_diagonal(params: SphericalParams) -> MixtureParams:
    """The same mixture as diagonal parameters: ``log sigma_kd = log sigma_k`` for every
    ``d`` (eq. 45 is eq. 9 with one sigma per component), so the diagonal model's compiled
    kernels compute the spherical density, gradient and E-step."""
    k, d = params.means.shape
    return MixtureParams(params.means, np.broadcast_to(params.log_sigma[:, None], (k, d)),
                         params.logits)


def pool_diagonal_sums(sums) -> SphericalGradSums:
    """Gradient sums of :func:`as_diagonal`'s parameters -> the spherical ones.  By the chain
    rule through ``log sigma_kd = log sigma_k`` the shared log-sigma's gradient is the sum
    over ``d`` of the diagonal one, ``sum_d (N_k - sum_i g_ik z_ikd^2) = D N_k - sum_i g_ik
    q_ik`` (eqs. 15, 45); means and logits are unchanged."""
    return SphericalGradSums(sums.nll_sum, sums.weight_sum, sums.means,
                             sums.log_sigma.sum(axis=1), sums.logits)


def pool_diagonal_stats(stats) -> CentredStats:
    """Diagonal E-step statistics (:class:`mogsgd.em.EMStats`, no missing values) of
    :func:`as_diagonal`'s parameters -> the spherical :class:`CentredStats`: ``sxx_k =
    sum_d sxx_kd = sum_i g_ik ||x_i - mu_k||^2``."""
    return CentredStats(stats.ll_sum, stats.weight_sum, stats.nk, stats.sx,
                        stats.sxx.sum(axis=1))


class SphericalFamily(OnlineEMMixin):
    """``covariance_type="spherical"``: one variance per component."""

    name = "spherical"
    params_type = SphericalParams

    def n_parameters(self, n_components: int, n_features: int) -> int:
        """``K + K D + K - 1`` (eq. 51)."""
        k, d = n_components, n_features
        return k + k * d + k - 1

    def init_from_moments(self, weights, means, covariances, min_variance: float):
        """Variances (K,), floored at ``min_variance`` (eq. 26)."""
        w, m = check_moments(weights, means)
        v = np.asarray(covariances, dtype=np.float64)
        if v.shape != w.shape or not np.all(np.isfinite(v)) or np.any(v <= 0):
            raise ValidationError(f"covariances must be {len(w)} finite positive variances")
        return SphericalParams.create(m, 0.5 * np.log(np.maximum(v, min_variance)), np.log(w))

    def log_prob_components(self, X, params: SphericalParams) -> np.ndarray:
        """``log pi_k + log N(x_i | mu_k, sigma_k^2 I)``, shape (n, K) (eq. 45)."""
        X = check_X(X, self.name)
        d = X.shape[1]
        ls = params.log_sigma
        out = np.empty((X.shape[0], len(ls)), dtype=np.result_type(X, ls))
        for k in range(len(ls)):
            out[:, k] = -distance(X, params.means[k], ls[k]).half   # eqs. 45, 52
        return out - d * params.log_sigma - 0.5 * d * LOG_2PI + log_weights(params.logits)

    def nll_grad_sums(self, X, params: SphericalParams, sample_weight=None):
        """Summed weighted NLL and its analytic gradient (eq. 45)."""
        X = check_X(X, self.name)
        d = X.shape[1]
        _, resp, weight_sum, ll_sum = weighted_resp(self.log_prob_components(X, params),
                                                    sample_weight)
        nk = resp.sum(axis=0)
        g_means = np.empty(params.means.shape, dtype=resp.dtype)
        g_log_sigma = np.empty(len(nk), dtype=resp.dtype)
        for k in range(len(nk)):
            z, root = distance(X, params.means[k], params.log_sigma[k])[1:]  # eq. 53
            rk = resp[:, k] if root is None else resp[:, k] * root
            g_means[k] = -(rk @ z) * np.exp(-params.log_sigma[k])
            g_log_sigma[k] = d * nk[k] - resp[:, k] @ np.einsum("ij,ij->i", z, z)
        g_logits = weight_sum * params.weights - nk
        return SphericalGradSums(-ll_sum, weight_sum, g_means, g_log_sigma, g_logits)

    def em_stats(self, X, params: SphericalParams, sample_weight=None) -> CentredStats:
        """E-step statistics centred at the current means (eqs. 11, 27)."""
        X = check_X(X, self.name)
        lp, resp, weight_sum, ll_sum = weighted_resp(self.log_prob_components(X, params),
                                                     sample_weight)
        return self.resp_stats(X, params.means, resp, ll_sum, weight_sum, lp=lp,
                               log_sigma=params.log_sigma)

    def resp_stats(self, X, means, resp, ll_sum: float = 0.0, weight_sum: float | None = None,
                   *, lp=None, log_sigma=None) -> CentredStats:
        """:class:`CentredStats` of ``X`` under weighted responsibilities ``resp`` (n, K),
        centred at ``means`` (the second half of :meth:`em_stats`); with the rows' ``lp``
        and the components' ``log_sigma``, far rows enter with the factor S' (eq. 53)."""
        k_comp, d = means.shape
        sx = np.empty((k_comp, d))
        sxx = np.empty(k_comp)
        far = np.flatnonzero(lp < FAR_LOG_DENSITY) if lp is not None else []
        near = resp
        if len(far):
            near = resp.copy()
            near[far] = 0.0
        for k in range(k_comp):
            with np.errstate(over="ignore"):
                R = X - means[k]
                sq = np.einsum("ij,ij->i", R, R)
            if not np.isfinite(sq).all():  # rows of zero responsibility: 0, not 0 * inf
                R = np.where(near[:, k, None] > 0, R, 0.0)
                sq = np.where(near[:, k] > 0, sq, 0.0)
            sx[k] = near[:, k] @ R
            sxx[k] = near[:, k] @ sq
            if len(far):
                dist = distance(X[far], means[k], log_sigma[k])
                R = dist.z * np.exp(log_sigma[k])   # sqrt(S') (x - mu)
                g = resp[far, k]
                sx[k] += (g if dist.root is None else g * dist.root) @ R
                sxx[k] += g @ np.einsum("ij,ij->i", R, R)
        return CentredStats(ll_sum, float(resp.sum()) if weight_sum is None else weight_sum,
                            resp.sum(axis=0), sx, sxx)

    def from_diagonal(self, params) -> SphericalParams:
        """Spherical parameters with each component's mean diagonal variance."""
        return self.init_from_moments(params.weights, params.means,
                                      params.variances.mean(axis=1), 0.0)

    def m_step(self, stats: CentredStats, params: SphericalParams, reg_covar: float,
               floor: float = 0.0):
        """``sigma_k^2 = max((sxx_k / N_k - ||delta_k||^2) / D + reg, floor)`` (eqs. 26, 49)."""
        weights, means, shift, nk, dead = m_step_weights_means(stats, params)
        d = means.shape[1]
        var = np.maximum(stats.sxx / nk - np.einsum("kd,kd->k", shift, shift), 0.0) / d
        var = bounded_variances(var)   # (squared deviations beyond the float range)
        var = np.where(dead, np.exp(2.0 * params.log_sigma),
                       np.maximum(var + reg_covar, floor))
        return SphericalParams.create(means, 0.5 * np.log(var), np.log(weights))

    def initial_stats(self, params: SphericalParams, reg_covar: float) -> CentredStats:
        """One pseudo-point's statistics reproducing ``params``: ``N_k = pi_k`` (eq. 36)."""
        return self.recentre(CentredStats(0.0, 1.0, params.weights, None, None), params,
                             reg_covar)

    def recentre(self, stats, params: SphericalParams, reg_covar: float) -> CentredStats:
        """``sx = 0``, ``sxx = D N_k (sigma_k^2 - reg)``: the M-step maps them to ``params``."""
        d = params.means.shape[1]
        var = np.maximum(np.exp(2.0 * params.log_sigma) - reg_covar, 0.0)
        return CentredStats(stats.ll_sum, stats.weight_sum, stats.nk,
                                np.zeros(params.means.shape), d * var * stats.nk)

    def project_floor(self, params: SphericalParams, min_variance: float):
        """``log sigma_k <- max(log sigma_k, 1/2 log v_min)`` (eqs. 26, 46)."""
        floor = 0.5 * np.log(min_variance)
        if np.all(params.log_sigma >= floor):
            return params
        return params._replace(log_sigma=frozen(np.maximum(params.log_sigma, floor)))

    def covariances(self, params: SphericalParams) -> np.ndarray:
        """(K,), the variances."""
        return np.exp(2.0 * params.log_sigma)

    def precisions(self, params: SphericalParams) -> np.ndarray:
        """(K,)."""
        return np.exp(-2.0 * params.log_sigma)

    def precisions_cholesky(self, params: SphericalParams) -> np.ndarray:
        """(K,), ``1 / sigma_k``."""
        return np.exp(-params.log_sigma)

    def admissible_scale(self, scale: np.ndarray) -> np.ndarray:
        """One common scale, the geometric mean, so ``sum_d log s_d`` is unchanged (eq. 50)."""
        s = np.asarray(scale, dtype=np.float64)
        return np.full(s.shape, np.exp(np.mean(np.log(s))))

    def _common(self, scale, d: int) -> float:
        s = np.broadcast_to(np.asarray(scale, dtype=np.float64), (d,))
        if not np.all(np.isfinite(s)) or np.any(s <= 0) or np.ptp(s) > 1e-12 * s.max():
            raise ValidationError(
                "a spherical covariance stays spherical only under one common scale for "
                f"every feature, got scale={s}; use SphericalFamily.admissible_scale"
            )
        return float(s[0])

    def to_data(self, params: SphericalParams, center, scale) -> SphericalParams:
        """``mu = c + s mu'``, ``log sigma = log sigma' + log s`` (eq. 50)."""
        s = self._common(scale, params.means.shape[1])
        return SphericalParams.create(params.means * s + center, params.log_sigma + np.log(s),
                                      params.logits)

    def from_data(self, params: SphericalParams, center, scale) -> SphericalParams:
        s = self._common(scale, params.means.shape[1])
        return SphericalParams.create((params.means - center) / s,
                                      params.log_sigma - np.log(s), params.logits)

    def sample(self, params: SphericalParams, rng: np.random.Generator, n: int):
        y = labels(params, rng, n)
        eps = rng.standard_normal((n, params.means.shape[1]))
        return params.means[y] + eps * np.exp(params.log_sigma)[y, None], y


SPHERICAL = SphericalFamily()
