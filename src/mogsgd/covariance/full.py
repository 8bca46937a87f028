"""Mixtures of Gaussians with a full covariance per component (eqs. 39-43, 46, 47).

Component ``k`` is stored as its mean ``mu_k`` (D,) and the log-Cholesky factor
``A_k`` (D, D) of its *precision* ``Lambda_k = U_k U_k^T``: ``U_k`` is upper
triangular with ``U_kdd = exp(A_kdd)`` and ``U_kde = A_kde`` above the diagonal
(eq. 39; see :mod:`mogsgd.covariance.cholesky`).  With ``r_ik = x_i - mu_k`` and
``z_ik = U_k^T r_ik``,

    log N_ik = -D/2 log 2 pi + sum_d A_kdd - 1/2 ||z_ik||^2                     (eq. 40)

so the log-determinant is a sum of stored numbers and the quadratic form is a
triangular product; nothing is inverted.  With ``g_ik = w_i gamma_ik``,
``N_k = sum_i g_ik`` and ``M_k = sum_i g_ik r_ik z_ik^T`` the summed-NLL gradients are

* means:        ``-U_k sum_i g_ik z_ik``                                        (eq. 41)
* log_chol, d < e: ``(M_k)_de``;  d = e: ``(M_k)_dd U_kdd - N_k``               (eqs. 42, 43)
* logits:       ``W pi_k - N_k``                                               (eqs. 17, 32)

The per-component functions take a stack of factors (K, D, D) so that
:mod:`mogsgd.covariance.tied` reuses them with one factor broadcast to every
component and sums the factor gradient over ``k`` (eq. 44).

Beyond the saturation point ``||z||^2 / 2 > 2^64`` the half squared distance is
``S(h)`` and every ``z`` in the sums carries ``S'(h)`` (eqs. 52, 53), computed from
rows scaled by a power of two (:func:`component_distance`), so any finite row has a
finite log-density and finite sums.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

import mogsgd.covariance.cholesky as chol
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
from mogsgd.density import FAR_LOG_DENSITY, H_SAT, LN2, LOG_2PI, Distance, saturated
from mogsgd.errors import ValidationError

__all__ = ["FullParams", "LogCholGradSums", "FullFamily", "FULL", "diagonal_of_covariances"]


def diagonal_of_covariances(params) -> np.ndarray:
    """``Sigma_kdd`` (K, D) for a stack of factors, or (D,) broadcast to (K, D) for one."""
    cov = chol.cov_from_factor(chol.factor(params.log_chol))
    return np.broadcast_to(np.einsum("...dd->...d", cov), params.means.shape).copy()


@parameter_views(diagonal_of_covariances)
class FullParams(NamedTuple):
    """Unconstrained parameters (or a gradient) of a full-covariance mixture.

    ``means`` (K, D); ``log_chol`` (K, D, D), upper triangular, the log-Cholesky
    factor of each precision (eq. 39); ``logits`` (K,), ``weights = softmax(logits)``.
    Build validated, read-only instances with :meth:`create`.
    """

    means: np.ndarray
    log_chol: np.ndarray
    logits: np.ndarray

    @classmethod
    def create(cls, means, log_chol, logits) -> FullParams:
        params = validated(cls, means, log_chol, logits, lambda k, d: (k, d, d))
        chol.check_log_chol("log_chol", params.log_chol)
        return params



class LogCholGradSums(NamedTuple):
    """``nll_sum``, ``weight_sum`` and the gradient of ``nll_sum`` per field of
    :class:`FullParams` or :class:`~mogsgd.covariance.tied.TiedParams`."""

    nll_sum: float
    weight_sum: float
    means: np.ndarray
    log_chol: np.ndarray
    logits: np.ndarray


# ------------------------------------------------- per-component maths (K factors)
def component_distance(X: np.ndarray, mean: np.ndarray, U: np.ndarray):
    """``(Distance, R)`` of one component (eqs. 40, 52, 53): ``z_i = U^T (x_i - mu)`` and
    ``R`` (n, D) the residuals ``sqrt(S'(h_i)) (x_i - mu)``.

    Rows whose ``h`` is beyond ``H`` or not finite are recomputed from
    ``x / 2^e - mu / 2^e`` (``2^e`` at least the row's and the mean's largest
    magnitude, so nothing overflows) by :func:`mogsgd.density.saturated`.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        R = X - mean
        Z = R @ U                                        # rows z_ik^T = r_ik^T U_k
        half = 0.5 * np.einsum("ij,ij->i", Z, Z)
    far = np.flatnonzero(~(half <= H_SAT))
    if not len(far):
        return Distance(half, Z, None), R
    Xf = X[far]
    top = np.maximum(np.max(np.abs(Xf), axis=1), np.max(np.abs(mean)))
    e = np.frexp(np.where(top > 0, top, 1.0))[1][:, None]
    R_s = np.ldexp(Xf, -e) - np.ldexp(mean, -e)         # exact scaling; |R_s| <= 2
    log_scale = e[:, 0] * LN2
    dist = saturated(R_s @ U, log_scale)
    half, Z, R = half.copy(), Z.copy(), R.copy()
    half[far], Z[far] = dist.half, dist.z
    with np.errstate(divide="ignore"):
        R[far] = R_s * np.exp(log_scale + np.log(dist.root))[:, None]
    root = np.ones_like(half)
    root[far] = dist.root
    return Distance(half, Z, root), R


def component_log_prob(X: np.ndarray, means: np.ndarray, log_chol: np.ndarray,
                       logits: np.ndarray) -> np.ndarray:
    """``log pi_k + log N_ik`` by eq. 40 (eq. 52 beyond ``H``) for a stack of factors
    (K, D, D); (n, K)."""
    n, d = X.shape
    U = chol.factor(log_chol)
    out = np.empty((n, means.shape[0]), dtype=np.result_type(X, U))
    for k in range(means.shape[0]):
        out[:, k] = -component_distance(X, means[k], U[k])[0].half
    return out + (chol.log_det_half(log_chol) - 0.5 * d * LOG_2PI + log_weights(logits))


def component_grad_sums(X: np.ndarray, means: np.ndarray, log_chol: np.ndarray,
                        logits: np.ndarray, sample_weight=None):
    """``(nll_sum, W, d/d means, d/d log_chol per component (K, D, D), d/d logits)``.

    Eqs. 41-43 for the summed weighted NLL (each ``z`` times ``S'``, eq. 53); see the
    module docstring.
    """
    wlp = component_log_prob(X, means, log_chol, logits)
    _, resp, weight_sum, ll_sum = weighted_resp(wlp, sample_weight)
    U = chol.factor(log_chol)
    k_comp, d = means.shape
    gz = np.empty((k_comp, d), dtype=resp.dtype)
    M = np.empty((k_comp, d, d), dtype=resp.dtype)
    for k in range(k_comp):
        dist, R = component_distance(X, means[k], U[k])
        Z = dist.z                                      # sqrt(S') z; sqrt(S') r in R
        rk = resp[:, k] if dist.root is None else resp[:, k] * dist.root
        gz[k] = rk @ Z                                  # sum_i g_ik S'_ik z_ik
        M[k] = R.T @ (resp[:, k, None] * Z)             # sum_i g_ik S'_ik r_ik z_ik^T
    return (-ll_sum, weight_sum) + gradients_from_sums(U, logits, weight_sum,
                                                       resp.sum(axis=0), gz, M)


def gradients_from_sums(U: np.ndarray, logits: np.ndarray, weight_sum: float, nk: np.ndarray,
                        gz: np.ndarray, M: np.ndarray):
    """``(d/d means, d/d log_chol, d/d logits)`` of the summed NLL from the point sums
    ``N_k``, ``sum_i g_ik z_ik`` (K, D) and ``M_k`` (K, D, D; only its upper triangle
    is read) — eqs. 41-43, 17.  Shared by the NumPy pass and compiled kernels."""
    g_means = -np.einsum("kde,ke->kd", U, gz)                               # eq. 41
    g_chol = np.triu(M, 1)                                                   # eq. 42
    idx = np.arange(U.shape[-1])
    g_chol[:, idx, idx] = M[:, idx, idx] * U[:, idx, idx] - nk[:, None]      # eq. 43
    g_logits = weight_sum * np.exp(log_weights(logits)) - nk
    return g_means, g_chol, g_logits


def centred_moments(X: np.ndarray, means: np.ndarray, resp: np.ndarray, U: np.ndarray,
                    lp: np.ndarray):
    """``(nk, sx, sxx)`` with ``sxx`` per component (K, D, D), centred at ``means``.

    Far rows (``lp`` below :data:`~mogsgd.density.FAR_LOG_DENSITY`, every component beyond
    the saturation point) enter ``sx`` and ``sxx`` with the factor ``S'`` of eq. 53, as
    in the gradient."""
    k_comp, d = means.shape
    sx = np.empty((k_comp, d))
    sxx = np.empty((k_comp, d, d))
    far = np.flatnonzero(lp < FAR_LOG_DENSITY)
    near = resp
    if len(far):
        near = resp.copy()
        near[far] = 0.0
    for k in range(k_comp):
        with np.errstate(over="ignore"):
            R = X - means[k]
        if not np.isfinite(R).all():
            R = np.where(near[:, k, None] > 0, R, 0.0)  # 0 * inf would be NaN
        sx[k] = near[:, k] @ R
        sxx[k] = R.T @ (near[:, k, None] * R)
        if len(far):
            dist, R = component_distance(X[far], means[k], U[k])
            g = resp[far, k]
            sx[k] += (g if dist.root is None else g * dist.root) @ R
            sxx[k] += R.T @ (g[:, None] * R)
    return resp.sum(axis=0), sx, sxx


def with_reg(cov: np.ndarray, reg_covar: float) -> np.ndarray:
    """``Sigma + reg_covar I``, symmetrised, for one matrix or a stack."""
    cov = 0.5 * (cov + np.swapaxes(cov, -1, -2))
    return cov + reg_covar * np.eye(cov.shape[-1])


def sample_components(rng: np.random.Generator, params, U: np.ndarray, n: int):
    """``x = mu_y + U_y^-T eps`` with ``eps ~ N(0, I)``: covariance ``U^-T U^-1 = Sigma``."""
    y = labels(params, rng, n)
    d = params.means.shape[1]
    X = np.empty((n, d))
    eps = rng.standard_normal((n, d))
    for k in np.unique(y):
        rows = y == k
        X[rows] = params.means[k] + chol.solve_lower(U[k].T, eps[rows].T).T
    return X, y


#: The smallest per-feature scale ``s`` of standardisation the full and tied families map to
#: data units: the factor's entries there are the standardised ones (up to about
#: ``1 / sqrt(min_variance)``, 1e6 with headroom) over ``s``, and must stay below float64's
#: largest number (data at 1e-300 fit; at 1e-310, subnormal, the factor overflows).
SMALLEST_SCALE = 1e6 / np.finfo(np.float64).max


def check_scale(scale, d: int) -> np.ndarray:
    s = np.asarray(scale, dtype=np.float64)
    if s.shape != (d,) or not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise ValidationError(f"scale must be {d} finite positive numbers, got {s}")
    return s


def scale_factor(log_chol: np.ndarray, inv_scale: np.ndarray) -> np.ndarray:
    """Factor of ``diag(1/s) Lambda diag(1/s)``: ``U -> diag(1/s) U`` (eq. 50).

    Rows of ``U`` scale by ``1/s_d``: off-diagonal entries multiply, the log
    diagonal shifts by ``-log s_d``.
    """
    A = np.triu(np.asarray(log_chol), 1) * inv_scale[:, None]
    idx = np.diag_indices(A.shape[-1])
    A[..., idx[0], idx[1]] = np.einsum("...dd->...d", log_chol) + np.log(inv_scale)
    return A


# ------------------------------------------------------------------ the family
class FullFamily(OnlineEMMixin):
    """``covariance_type="full"``: one positive-definite covariance per component.

    :class:`~mogsgd.covariance.tied.TiedFamily` subclasses it: the hooks ``factor_stack``
    (the factor of every component), ``pool`` (a per-component array -> the stored
    field's shape), ``_cov_shape`` and ``_m_step_cov`` are all that differ.
    """

    name = "full"
    params_type = FullParams
    gradsums_type = LogCholGradSums

    # ------------------------------------------------------------------ hooks
    def _cov_shape(self, k: int, d: int) -> tuple[int, ...]:
        return (k, d, d)

    def factor_stack(self, params) -> np.ndarray:
        """The log-Cholesky factor of every component, (K, D, D)."""
        return params.log_chol

    def pool(self, per_component: np.ndarray) -> np.ndarray:
        """A (K, D, D) gradient or scatter -> the shape of the stored field."""
        return per_component

    def _m_step_cov(self, stats, params, shift, nk, dead, reg_covar):
        """``Sigma_k = sxx_k / N_k - delta_k delta_k^T + reg I`` (eq. 47)."""
        cov = with_reg(stats.sxx / nk[:, None, None]
                       - shift[:, :, None] * shift[:, None, :], reg_covar)
        if dead.any():
            cov[dead] = self.covariances(params)[dead]
        return cov

    # -------------------------------------------------------------- protocol
    def n_parameters(self, n_components: int, n_features: int) -> int:
        """``K D (D + 1) / 2 + K D + K - 1`` (eq. 51)."""
        k, d = n_components, n_features
        return k * d * (d + 1) // 2 + k * d + k - 1

    def _from_cov(self, weights, means, cov):
        return self.params_type.create(means, chol.log_factor(chol.factor_from_cov(cov)),
                                       np.log(weights))

    def init_from_moments(self, weights, means, covariances, min_variance: float):
        """Covariances in scikit-learn's shape, eigenvalues floored at ``min_variance``
        (eqs. 39, 46)."""
        w, m = check_moments(weights, means)
        shape = self._cov_shape(*m.shape)
        cov = np.asarray(covariances, dtype=np.float64)
        if cov.shape != shape or not np.all(np.isfinite(cov)):
            raise ValidationError(f"covariances must be finite with shape {shape}, "
                                  f"got {cov.shape}")
        return self._from_cov(w, m, chol.floor_eigenvalues(cov, min_variance))

    def log_prob_components(self, X, params) -> np.ndarray:
        """``log pi_k + log N(x_i | mu_k, Lambda_k^-1)``, shape (n, K) (eq. 40)."""
        return component_log_prob(check_X(X, self.name), params.means, self.factor_stack(params),
                                  params.logits)

    def nll_grad_sums(self, X, params, sample_weight=None):
        """Summed weighted NLL and its analytic gradient (eqs. 41-44)."""
        nll_sum, weight_sum, g_means, g_chol, g_logits = component_grad_sums(
            check_X(X, self.name), params.means, self.factor_stack(params), params.logits,
            sample_weight)
        return self.gradsums_type(nll_sum, weight_sum, g_means, self.pool(g_chol), g_logits)

    def em_stats(self, X, params, sample_weight=None):
        """E-step statistics centred at the current means (eqs. 11, 27)."""
        X = check_X(X, self.name)
        lp, resp, weight_sum, ll_sum = weighted_resp(self.log_prob_components(X, params),
                                                     sample_weight)
        nk, sx, sxx = centred_moments(X, params.means, resp,
                                      chol.factor(self.factor_stack(params)), lp)
        return CentredStats(ll_sum, weight_sum, nk, sx, self.pool(sxx))

    def resp_stats(self, X, means, resp, ll_sum: float = 0.0, weight_sum: float | None = None):
        """:class:`CentredStats` of ``X`` under weighted responsibilities ``resp`` (n, K),
        centred at ``means`` (the second half of :meth:`em_stats`)."""
        nk, sx, sxx = centred_moments(X, means, resp, None, np.zeros(len(X)))  # none far
        return CentredStats(ll_sum, float(resp.sum()) if weight_sum is None else weight_sum,
                            nk, sx, self.pool(sxx))

    def from_diagonal(self, params):
        """This family's parameters with the covariances of a diagonal model
        (:class:`~mogsgd.params.MixtureParams`): ``diag(sigma_k^2)`` per component (full),
        their weighted mean (tied)."""
        var = params.variances
        if self.name == "tied":
            var = params.weights @ var
        return self.init_from_moments(params.weights, params.means,
                                      var[..., :, None] * np.eye(var.shape[-1]), 0.0)

    def m_step(self, stats, params, reg_covar: float, floor: float = 0.0):
        """Weights and means by eqs. 28-29, the covariance by eq. 47 (full) or 48 (tied);
        with ``floor > 0`` its eigenvalues are floored (eq. 46): the maximiser under the
        constraint ``Sigma >= floor I`` (same eigenvectors, eigenvalues ``max(l, floor)``)."""
        weights, means, shift, nk, dead = m_step_weights_means(stats, params)
        cov = self._m_step_cov(stats, params, shift, nk, dead, reg_covar)
        if floor > 0:
            cov = chol.floor_eigenvalues(cov, floor)
        return self._from_cov(weights, means, cov)

    def _pseudo_stats(self, params, nk: np.ndarray, reg_covar: float, ll_sum=0.0, weight_sum=1.0):
        """Statistics centred at ``params.means`` that the M-step maps back to ``params``:
        ``sx = 0`` and ``sxx = N_k (Sigma_k - reg I)`` (eqs. 36, 47, 48)."""
        k, d = params.means.shape
        cov = np.broadcast_to(self.covariances(params), (k, d, d)) - reg_covar * np.eye(d)
        return CentredStats(ll_sum, weight_sum, nk, np.zeros((k, d)),
                               self.pool(cov * nk[:, None, None]))

    def initial_stats(self, params, reg_covar: float):
        """One pseudo-point's statistics reproducing ``params``: ``N_k = pi_k`` (eq. 36)."""
        return self._pseudo_stats(params, params.weights, reg_covar)

    def recentre(self, stats, params, reg_covar: float):
        """``stats``' counts, re-centred at ``params.means`` after ``params = m_step(stats)``."""
        return self._pseudo_stats(params, stats.nk, reg_covar, stats.ll_sum, stats.weight_sum)

    def project_floor(self, params, min_variance: float):
        """Eigenvalue floor ``Sigma >= v_min I``, the Frobenius projection (eq. 46)."""
        projected = chol.project_factor(params.log_chol, min_variance)
        if projected is params.log_chol:
            return params
        return params._replace(log_chol=frozen(projected))

    def covariances(self, params) -> np.ndarray:
        """``U^-T U^-1`` in the stored shape: (K, D, D) full, (D, D) tied."""
        return chol.cov_from_factor(chol.factor(params.log_chol))

    def precisions(self, params) -> np.ndarray:
        """``U U^T`` in the stored shape."""
        U = chol.factor(params.log_chol)
        return U @ np.swapaxes(U, -1, -2)

    def precisions_cholesky(self, params) -> np.ndarray:
        """Upper-triangular ``U`` — scikit-learn's convention — in the stored shape."""
        return chol.factor(params.log_chol)

    def admissible_scale(self, scale: np.ndarray) -> np.ndarray:
        """Any per-feature scale: a diagonal map keeps a full (tied) covariance full (tied);
        refused (one line) below :data:`SMALLEST_SCALE`, where the factor in data units,
        ``diag(1/s) U'`` (eq. 50), is beyond float64's range."""
        s = np.asarray(scale, dtype=np.float64)
        small = s < SMALLEST_SCALE
        if np.any(small):
            j = int(np.argmax(small))
            raise ValidationError(
                f"feature {j} of X spreads over only {s[j]:.3g}: covariance_type="
                f"{self.name!r} cannot hold its precision factor in data units at that scale "
                "(it overflows float64); multiply X by a constant (e.g. 1e300) before fitting, "
                "or use covariance_type='diag'")
        return s

    def to_data(self, params, center, scale):
        """``mu = c + s * mu'``, ``U = diag(1/s) U'`` (eq. 50)."""
        s = check_scale(scale, params.means.shape[1])
        return self.params_type.create(params.means * s + center,
                                       scale_factor(params.log_chol, 1.0 / s), params.logits)

    def from_data(self, params, center, scale):
        """Inverse of :meth:`to_data` (eq. 50)."""
        s = check_scale(scale, params.means.shape[1])
        return self.params_type.create((params.means - center) / s,
                                       scale_factor(params.log_chol, s), params.logits)

    def sample(self, params, rng: np.random.Generator, n: int):
        """``x = mu_y + U_y^-T eps``."""
        return sample_components(rng, params, chol.factor(self.factor_stack(params)), n)


FULL = FullFamily()
