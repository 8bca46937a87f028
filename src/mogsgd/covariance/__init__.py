"""Covariance structures for the mixture: one protocol, four families (NumPy only).

``FAMILIES[covariance_type]`` is the one place a covariance type name is looked up;
everything else talks to a :class:`CovarianceFamily`:

=============  =========================  ============================  ==============
type           parameters                 stored covariance field       sklearn shape
=============  =========================  ============================  ==============
``diag``       :class:`MixtureParams`     ``log_sigma`` (K, D)          (K, D)
``spherical``  :class:`SphericalParams`   ``log_sigma`` (K,)            (K,)
``full``       :class:`FullParams`        ``log_chol`` (K, D, D)        (K, D, D)
``tied``       :class:`TiedParams`        ``log_chol`` (D, D)           (D, D)
=============  =========================  ============================  ==============

``log_chol`` is the log-Cholesky factor of the precision (eq. 39).  The maths is in
``docs/derivations.md``, section 7 (eqs. 39-51).

The protocol (:class:`CovarianceFamily`; every method takes the family's parameter
NamedTuple ``params``):

* ``n_parameters(K, D)``; ``init_from_moments(weights, means, covariances, min_variance)``
* ``log_prob_components(X, params)`` -> (n, K) ``log pi_k + log N_ik``
* ``nll_grad_sums(X, params, sample_weight)`` -> ``(nll_sum, weight_sum, *grad fields)``;
  :func:`finalize` divides by the weight, :func:`combine` adds row blocks
* ``em_stats(X, params, sample_weight)`` (centred, additive), ``m_step(stats, params,
  reg_covar)``; online EM: ``initial_stats``, ``recentre`` (:mod:`.online`)
* ``project_floor(params, min_variance)`` (eigenvalue floor, eq. 46)
* ``covariances`` / ``precisions`` / ``precisions_cholesky(params)`` in scikit-learn's
  shapes, :func:`sklearn_attributes`
* ``admissible_scale(scale)``, ``to_data`` / ``from_data(params, center, scale)`` (eq. 50)
* ``sample(params, rng, n)`` -> ``(X, y)``

Parameters and gradients share one type, so :func:`tree_map` applies an optimiser leaf
by leaf.  Only ``diag`` accepts NaN (it marginalises missing values, eq. 34).  A
compiled pass for ``full`` and ``tied`` is :mod:`mogsgd.fast.full_kernel`.
"""

from __future__ import annotations

import numpy as np

from mogsgd.covariance._base import (
    CentredStats,
    CovarianceFamily,
    check_X,
    combine,
    em_step,
    finalize,
    log_prob,
    log_prob_and_log_resp,
    log_weights,
    tree_map,
)
from mogsgd.covariance.diag import DIAG, DiagFamily
from mogsgd.covariance.full import FULL, FullFamily, FullParams
from mogsgd.covariance.online import OnlineState, online_em_init, online_em_step
from mogsgd.covariance.ops import family_of
from mogsgd.covariance.spherical import SPHERICAL, SphericalFamily, SphericalParams
from mogsgd.covariance.tied import TIED, TiedFamily, TiedParams
from mogsgd.errors import ValidationError
from mogsgd.params import MixtureParams

__all__ = ["CovarianceFamily", "CentredStats", "FAMILIES", "get_family", "DIAG", "SPHERICAL",
           "FULL", "TIED",
           "DiagFamily", "SphericalFamily", "FullFamily", "TiedFamily", "MixtureParams",
           "SphericalParams", "FullParams", "TiedParams", "tree_map", "combine", "finalize",
           "log_prob", "log_prob_and_log_resp", "em_step", "sklearn_attributes",
           "OnlineState", "online_em_init", "online_em_step", "check_X", "family_of",
           "COVARIANCE_TYPES"]

FAMILIES: dict[str, CovarianceFamily] = {f.name: f for f in (FULL, TIED, DIAG, SPHERICAL)}
#: The names, in scikit-learn's order.
COVARIANCE_TYPES = tuple(FAMILIES)


def get_family(covariance_type: str) -> CovarianceFamily:
    """The family for ``covariance_type`` in ``{"full", "tied", "diag", "spherical"}``."""
    try:
        return FAMILIES[covariance_type]
    except (KeyError, TypeError):
        raise ValidationError(
            f"covariance_type must be one of {sorted(FAMILIES)}, got {covariance_type!r}"
        ) from None


def sklearn_attributes(family: CovarianceFamily, params) -> dict:
    """``weights_``, ``means_``, ``covariances_``, ``precisions_``, ``precisions_cholesky_``
    in scikit-learn's shapes for ``family``."""
    return {
        "weights_": np.exp(log_weights(params.logits)),
        "means_": np.array(params.means),
        "covariances_": family.covariances(params),
        "precisions_": family.precisions(params),
        "precisions_cholesky_": family.precisions_cholesky(params),
    }
