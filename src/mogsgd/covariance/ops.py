"""The mixture operations the layers above the core call, for every covariance family.

Parameters know their family: :func:`family_of` looks it up by the parameter type
(:class:`~mogsgd.params.MixtureParams` is ``diag``, :class:`SphericalParams`,
:class:`FullParams`, :class:`TiedParams`), so sources, the training loop, the EM loop and
inference call these functions on whatever parameters they hold and never name a
covariance type.  For ``diag`` each function is the diagonal model's own reference
(:mod:`mogsgd.density`, :mod:`mogsgd.gradients`, :mod:`mogsgd.em`), so the diagonal
numbers are unchanged bit for bit.  Equation numbers refer to ``docs/derivations.md``.
"""

from __future__ import annotations

import numpy as np

from mogsgd.covariance._base import CovarianceFamily, combine, log_prob_and_log_resp
from mogsgd.covariance.diag import DIAG
from mogsgd.covariance.full import FULL, FullParams
from mogsgd.covariance.spherical import SPHERICAL, SphericalParams
from mogsgd.covariance.tied import TIED, TiedParams
from mogsgd.density import logsumexp
from mogsgd.init import sq_distances
from mogsgd.params import MixtureParams

__all__ = ["family_of", "log_prob", "log_resp", "weighted_log_prob", "responsibilities", "nll",
           "nll_grad_sums", "em_stats", "combine", "m_step", "project_floor", "gradient",
           "start_from_diagonal", "permute_components", "PARAMS_TYPES"]

#: Parameter type -> family.
PARAMS_TYPES: dict[type, CovarianceFamily] = {
    MixtureParams: DIAG, SphericalParams: SPHERICAL, FullParams: FULL, TiedParams: TIED}


def family_of(params) -> CovarianceFamily:
    """The covariance family ``params`` belong to."""
    try:
        return PARAMS_TYPES[type(params)]
    except KeyError:
        raise TypeError(f"not mixture parameters: {type(params).__name__}") from None


def log_prob(X: np.ndarray, params) -> np.ndarray:
    """``log p(x_i)``, shape (n,) (eq. 10)."""
    return logsumexp(weighted_log_prob(X, params), axis=1)


def weighted_log_prob(X: np.ndarray, params) -> np.ndarray:
    """``log pi_k + log N(x_i | component k)``, shape (n, K) (eqs. 9, 40, 45)."""
    return family_of(params).log_prob_components(X, params)


def responsibilities(X: np.ndarray, params) -> np.ndarray:
    """``gamma_ik``, shape (n, K), rows summing to one (eq. 11)."""
    return np.exp(log_resp(X, params))


def log_resp(X: np.ndarray, params) -> np.ndarray:
    """``log gamma_ik``, shape (n, K) (eq. 11)."""
    return log_prob_and_log_resp(family_of(params), X, params)[1]


def nll(X: np.ndarray, params, sample_weight: np.ndarray | None = None) -> float:
    """Mean (weighted) negative log-likelihood (eqs. 18, 31)."""
    lp = log_prob(X, params)
    if sample_weight is None:
        return float(-np.mean(lp))
    w = np.asarray(sample_weight, dtype=lp.dtype)
    return float(-(w @ lp) / w.sum())


def nll_grad_sums(X: np.ndarray, params, sample_weight: np.ndarray | None = None):
    """``(nll_sum, weight_sum, *gradient of nll_sum per field)``, the family's analytic
    gradient (eqs. 13-19, 41-45)."""
    return family_of(params).nll_grad_sums(X, params, sample_weight)


def em_stats(X: np.ndarray, params, sample_weight: np.ndarray | None = None):
    """The family's centred, additive E-step statistics (eqs. 11, 27)."""
    return family_of(params).em_stats(X, params, sample_weight)


def m_step(stats, params, reg_covar: float, floor: float = 0.0):
    """The family's closed-form M-step (eqs. 27-30, 47-49), covariances floored at
    ``floor`` (eqs. 26, 46)."""
    return family_of(params).m_step(stats, params, reg_covar, floor)


def project_floor(params, min_variance: float):
    """The nearest parameters whose covariances are >= ``min_variance`` (eqs. 26, 46)."""
    return family_of(params).project_floor(params, min_variance)


def gradient(sums, params, scale: float):
    """The gradient fields of ``sums`` times ``scale``, as the parameters' own type."""
    return type(params)(*(g * scale for g in sums[2:]))


def permute_components(params, perm):
    """``params`` with the components reordered: component ``k`` of the result is
    component ``perm[k]`` (a tied covariance is shared and stays)."""
    perm = np.asarray(perm)
    means, cov, logits = params
    return type(params)(means[perm], cov if isinstance(params, TiedParams) else cov[perm],
                        logits[perm])


def start_from_diagonal(family: CovarianceFamily, X: np.ndarray, start: MixtureParams,
                        sample_weight: np.ndarray | None, floor: float):
    """``family``'s starting parameters from a diagonal initialisation ``start`` on the rows
    ``X``: every row assigned to its nearest mean, each cluster's weighted covariance in the
    family's structure (its M-step, eqs. 47-49, floored at ``floor``), the weights of
    ``start``; a cluster with fewer than two rows keeps ``start``'s variances."""
    if isinstance(start, family.params_type):
        return start
    k = start.n_components
    labels = np.argmin(sq_distances(X, start.means), axis=1)
    small = np.bincount(labels, minlength=k) < 2
    resp = np.zeros((X.shape[0], k))
    resp[np.arange(len(X)), labels] = 1.0 if sample_weight is None else sample_weight
    resp[:, small] = 0.0
    old = family.from_diagonal(start)
    new = family.m_step(family.resp_stats(X, start.means, resp), old, 0.0, floor)
    return new._replace(logits=old.logits)

