"""Synthetic Gaussian mixtures (diagonal, full, tied or spherical) with the truth kept.

:func:`make_mixture` draws a random model (or takes the one you give) and
samples labelled data from it; :func:`sample_mixture` samples from any
:class:`~mogsgd.params.MixtureParams`.  The generative model is

.. math::

    z_i \\sim \\mathrm{Categorical}(\\pi), \\qquad
    x_i \\mid z_i = k \\sim \\mathcal{N}(\\mu_k, \\Sigma_k),

with ``Sigma_k = diag(sigma_k^2)`` by default and ``Q_k diag(sigma_k^2) Q_k^T`` for a
uniformly random rotation ``Q_k`` with ``covariance_type="full"`` (one shared matrix with
``"tied"``; ``sigma_k^2 I`` with ``"spherical"``).

All randomness comes from one ``numpy.random.Generator`` built by
:func:`mogsgd._random.check_random_state`; the same seed gives the same data.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from mogsgd._random import check_random_state
from mogsgd.covariance import COVARIANCE_TYPES, get_family
from mogsgd.covariance.ops import family_of
from mogsgd.errors import ValidationError
from mogsgd.params import MixtureParams
from mogsgd.validation import check_positive_int

__all__ = ["make_mixture", "sample_mixture", "pairwise_separation", "COVARIANCE_TYPES"]

RandomStateLike = int | np.random.Generator | None

# Random weights are 0.5 * Dirichlet(2, ..., 2) + 0.5 / K: varied, but every
# component keeps at least half of its uniform share, so none is degenerate.
_DIRICHLET_CONCENTRATION = 2.0
_UNIFORM_SHARE = 0.5
_MAX_TRIES_PER_MEAN = 1000
_MAX_RESTARTS = 20


def pairwise_separation(means: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Separation of every pair of components, in standard deviations.

    ``sep_jk = ||mu_j - mu_k||_2 / (s_j + s_k)`` with ``s_k = sqrt(mean_d sigma_kd^2)``
    the root-mean-square standard deviation of component ``k``.

    Parameters
    ----------
    means : array of shape (K, D)
    sigma : array of shape (K, D)
        Standard deviations (not variances).

    Returns
    -------
    array of shape (K, K)
        Symmetric, with ``+inf`` on the diagonal.
    """
    means = np.asarray(means, dtype=np.float64)
    rms = np.sqrt(np.mean(np.asarray(sigma, dtype=np.float64) ** 2, axis=1))
    dist = np.sqrt(np.sum((means[:, None, :] - means[None, :, :]) ** 2, axis=-1))
    sep = dist / (rms[:, None] + rms[None, :])
    np.fill_diagonal(sep, np.inf)
    return sep


def sample_mixture(
    params: MixtureParams,
    n_samples: int,
    *,
    random_state: RandomStateLike = None,
    dtype: np.dtype | type = np.float64,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``n_samples`` labelled points from a mixture.

    The component counts are multinomial, ``(n_1, ..., n_K) ~ Mult(n, pi)``;
    each point is ``x = mu_k + sigma_k * eps`` with ``eps ~ N(0, I_D)`` (``mu_k + L_k eps``
    with ``L_k L_k^T = Sigma_k`` for the full, tied and spherical families); the
    rows are then shuffled.  A component with a small weight may get no point.

    Parameters
    ----------
    params : MixtureParams (or another covariance family's parameters, :mod:`mogsgd.covariance`)
        with K components in D features
    n_samples : int >= 1
    random_state : None, int or numpy.random.Generator
    dtype : float64 or float32, the dtype of ``X``

    Returns
    -------
    X : array of shape (n_samples, D)
    y : int64 array of shape (n_samples,)
        The component each point was drawn from, in ``0 .. K-1``.
    """
    try:
        family = family_of(params)
    except TypeError:
        raise TypeError(f"params must be a MixtureParams, got {type(params).__name__}") from None
    n_samples = check_positive_int("n_samples", n_samples)
    dtype = _check_float_dtype(dtype)
    rng = check_random_state(random_state)
    weights = params.weights.astype(np.float64)
    counts = rng.multinomial(n_samples, weights / weights.sum())
    y = np.repeat(np.arange(params.n_components, dtype=np.int64), counts)
    y = y[rng.permutation(n_samples)]
    eps = rng.standard_normal((n_samples, params.n_features))
    means = params.means.astype(np.float64)
    if isinstance(params, MixtureParams):
        X = means[y] + params.sigma.astype(np.float64)[y] * eps
    else:   # eps L_k^T, L_k = U_k^-T (the precision's factor, eq. 39): covariance Sigma_k
        k, d = params.means.shape
        cov = np.broadcast_to(np.asarray(family.covariances(params)).reshape(
            (-1,) + ((d, d) if family.name != "spherical" else (1, 1))), (k, d, d))
        if family.name == "spherical":
            cov = cov * np.eye(d)
        L = np.linalg.cholesky(cov)
        X = means[y] + np.einsum("nde,ne->nd", L[y], eps)
    return X.astype(dtype, copy=False), y


def make_mixture(
    n_samples: int = 1000,
    n_features: int = 2,
    n_components: int = 3,
    *,
    weights=None,
    means=None,
    variances=None,
    mean_range: tuple[float, float] = (-10.0, 10.0),
    separation: float | None = None,
    sigma_range: tuple[float, float] = (0.5, 2.0),
    random_state: RandomStateLike = None,
    dtype: np.dtype | type = np.float64,
    covariance_type: str = "diag",
) -> tuple[np.ndarray, np.ndarray, MixtureParams]:
    """Sample a labelled data set from a random (or given) Gaussian mixture.

    Parameters that are not given are drawn, in this order, from one generator:

    * ``weights`` (K,): ``0.5 * Dirichlet(2, ..., 2) + 0.5 / K``, so every weight
      is at least ``1 / (2K)``;
    * ``variances`` (K, D): ``sigma_kd ~ Uniform(sigma_range)``, variance ``sigma_kd^2``;
    * ``means`` (K, D): ``mu_kd ~ Uniform(mean_range)``, by rejection when
      ``separation`` is set;
    * ``covariance_type="full"``: a uniformly random rotation ``Q_k`` per component (QR of
      a Gaussian matrix, signs fixed), ``Sigma_k = Q_k diag(sigma_k^2) Q_k^T``; ``"tied"``:
      one ``sigma`` (D,) and one rotation for every component; ``"spherical"``: one
      ``sigma_k`` per component.  The rotation keeps the RMS standard deviation, so
      ``separation`` means the same.

    Parameters
    ----------
    n_samples : int >= n_components
    n_features : int >= 1, D
    n_components : int >= 1, K
    weights : array of shape (K,), optional
        Positive, summing to 1 (within 1e-6).
    means : array of shape (K, D), optional
    variances : array of shape (K, D), optional
        Positive diagonal variances (not standard deviations).
    mean_range : (low, high)
        Range of each coordinate of a random mean, ``low < high``.
    separation : float > 0, optional
        Minimum separation of every pair of components in standard deviations:
        ``||mu_j - mu_k||_2 >= separation * (s_j + s_k)`` where
        ``s_k = sqrt(mean_d sigma_kd^2)`` is the RMS standard deviation of
        component ``k`` (see :func:`pairwise_separation`).  ``separation=3``
        keeps the 3-sigma balls of the components apart.  Random means are
        drawn by rejection; given means are checked.  A ``ValueError`` says
        when it cannot be met.
    sigma_range : (low, high)
        Range of each random standard deviation, ``0 < low <= high``.
    random_state : None, int or numpy.random.Generator
    dtype : float64 (default) or float32
        The dtype of ``X`` and of ``true_params`` (float64 for the other covariance types).
    covariance_type : {"diag", "full", "tied", "spherical"}, default="diag"
        The structure of the true covariances; ``true_params`` are of that family
        (:mod:`mogsgd.covariance`).  ``variances`` can only be given with "diag".

    Returns
    -------
    X : array of shape (n_samples, D)
    y : int64 array of shape (n_samples,)
        True component of each point; label ``k`` is component ``k`` of ``true_params``.
    true_params : MixtureParams
        The model the data were drawn from.

    Examples
    --------
    >>> X, y, truth = make_mixture(500, n_features=2, n_components=3, separation=3.0,
    ...                            random_state=0)
    >>> X.shape, y.shape, truth.n_components
    ((500, 2), (500,), 3)
    """
    n_samples = check_positive_int("n_samples", n_samples)
    n_features = check_positive_int("n_features", n_features)
    n_components = check_positive_int("n_components", n_components)
    if n_samples < n_components:
        raise ValidationError(
            f"n_samples ({n_samples}) must be at least n_components ({n_components})"
        )
    dtype = _check_float_dtype(dtype)
    if separation is not None:
        separation = _check_positive_real("separation", separation)
    k, d = n_components, n_features
    family = get_family(covariance_type)
    if family.name != "diag" and variances is not None:
        raise ValidationError("variances are diagonal variances: give them with "
                              "covariance_type='diag' only")
    rng = check_random_state(random_state)

    if weights is None:
        raw = rng.dirichlet(np.full(k, _DIRICHLET_CONCENTRATION))
        weights = (1.0 - _UNIFORM_SHARE) * raw + _UNIFORM_SHARE / k
    else:
        weights = _check_weights(weights, k)

    if variances is None:
        lo, hi = _check_range("sigma_range", sigma_range, positive=True)
        shape = {"diag": (k, d), "full": (k, d), "tied": (1, d), "spherical": (k, 1)}
        sigma = np.broadcast_to(rng.uniform(lo, hi, size=shape[family.name]), (k, d))
    else:
        sigma = np.sqrt(_check_variances(variances, k, d))

    if means is None:
        lo, hi = _check_range("mean_range", mean_range, positive=False, strict=k > 1)
        means = _draw_means(rng, k, d, lo, hi, sigma, separation)
    else:
        means = _check_means(means, k, d)
        if separation is not None:
            _check_given_separation(means, sigma, separation)

    if family.name == "diag":
        true_params = MixtureParams.from_moments(weights, means, sigma**2, dtype=dtype)
    else:
        true_params = family.init_from_moments(
            weights, means, _rotated(rng, family.name, sigma ** 2), 0.0)
    X, y = sample_mixture(true_params, n_samples, random_state=rng, dtype=dtype)
    return X, y, true_params


def _rotated(rng: np.random.Generator, name: str, variances: np.ndarray) -> np.ndarray:
    """Covariances in scikit-learn's shape for ``name`` with eigenvalues ``variances``
    (K, D): ``Q_k diag(v_k) Q_k^T`` for a uniformly random rotation ``Q_k`` (full), one
    for component 0's eigenvalues (tied), ``v_k0`` (spherical)."""
    if name == "spherical":
        return variances[:, 0].copy()
    v = variances[:1] if name == "tied" else variances
    Q, R = np.linalg.qr(rng.standard_normal((len(v),) + (variances.shape[1],) * 2))
    Q = Q * np.sign(np.einsum("...dd->...d", R))[..., None, :]   # Haar: fix the signs
    cov = (Q * v[:, None, :]) @ np.swapaxes(Q, -1, -2)
    cov = 0.5 * (cov + np.swapaxes(cov, -1, -2))
    return cov[0] if name == "tied" else cov


# ---------------------------------------------------------------- helpers


def _draw_means(rng, k, d, lo, hi, sigma, separation) -> np.ndarray:
    """Uniform means; with ``separation``, sequential rejection with restarts."""
    if separation is None:
        return rng.uniform(lo, hi, size=(k, d))
    rms = np.sqrt(np.mean(sigma**2, axis=1))
    for _ in range(_MAX_RESTARTS):
        accepted: list[np.ndarray] = []
        for j in range(k):
            for _ in range(_MAX_TRIES_PER_MEAN):
                candidate = rng.uniform(lo, hi, size=d)
                if all(
                    np.linalg.norm(candidate - accepted[i]) >= separation * (rms[i] + rms[j])
                    for i in range(j)
                ):
                    accepted.append(candidate)
                    break
            else:
                break
        if len(accepted) == k:
            return np.asarray(accepted)
    raise ValueError(
        f"could not place {k} means in mean_range=({lo:g}, {hi:g})^{d} with every pair at "
        f"least separation={separation:g} RMS standard deviations apart (RMS sigmas "
        f"{np.array2string(rms, precision=2)}) after "
        f"{_MAX_RESTARTS} restarts; widen mean_range, lower separation or sigma_range, or use "
        "fewer components"
    )


def _check_given_separation(means, sigma, separation) -> None:
    sep = pairwise_separation(means, sigma)
    j, k = np.unravel_index(np.argmin(sep), sep.shape)
    if sep[j, k] < separation:
        raise ValueError(
            f"the given means do not meet separation={separation:g}: components {j} and {k} "
            f"are only {sep[j, k]:.3g} RMS standard deviations apart"
        )


def _check_float_dtype(dtype) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be float32 or float64, got {dtype!r}") from None
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"dtype must be float32 or float64, got {dt}")
    return dt


def _check_positive_real(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValidationError(f"{name} must be a positive number, got {value!r}")
    v = float(value)
    if not math.isfinite(v) or v <= 0:
        raise ValidationError(f"{name} must be a finite number > 0, got {value!r}")
    return v


def _check_range(name: str, value, *, positive: bool, strict: bool = False) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValidationError(
            f"{name} must be a pair (low, high) of numbers, got {value!r}"
        ) from None
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValidationError(f"{name} must be finite, got {value!r}")
    if positive and lo <= 0:
        raise ValidationError(f"{name} must be positive (0 < low <= high), got {value!r}")
    if hi < lo or (strict and hi == lo):
        order = "low < high" if strict else "low <= high"
        raise ValidationError(f"{name} must satisfy {order}, got {value!r}")
    return lo, hi


def _as_float_array(name: str, value) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValidationError(f"{name} must be a numeric array") from None
    if not np.all(np.isfinite(arr)):
        raise ValidationError(f"{name} contains NaN or infinite values")
    return arr


def _check_weights(weights, k: int) -> np.ndarray:
    w = _as_float_array("weights", weights)
    if w.shape != (k,):
        raise ValidationError(f"weights must have shape (n_components,) = ({k},), got {w.shape}")
    if np.any(w <= 0):
        raise ValidationError(f"weights must all be > 0, got {w}")
    if abs(w.sum() - 1.0) > 1e-6:
        raise ValidationError(f"weights must sum to 1, they sum to {w.sum():.8g}")
    return w / w.sum()


def _check_means(means, k: int, d: int) -> np.ndarray:
    m = _as_float_array("means", means)
    if m.shape != (k, d):
        raise ValidationError(
            f"means must have shape (n_components, n_features) = ({k}, {d}), got {m.shape}"
        )
    return m


def _check_variances(variances, k: int, d: int) -> np.ndarray:
    v = _as_float_array("variances", variances)
    if v.shape != (k, d):
        raise ValidationError(
            f"variances must have shape (n_components, n_features) = ({k}, {d}), got {v.shape}"
        )
    if np.any(v <= 0):
        raise ValidationError("variances must all be > 0 (they are sigma**2, not log sigma)")
    return v
