"""The per-feature affine map ``x' = (x - c) / s`` and its action on parameters (eq. 33).

Every fit standardises its data so that default hyper-parameters (learning rates, the
variance floor) do not depend on the data's units; the likelihood maps back with the
log-determinant ``sum_d log s_d`` (eq. 33).  Sources fit the map on all rows (in memory)
or on a uniform random sample (streams, Dask, device tensors); the map only conditions
the problem, results are mapped back to data units exactly.
"""

from __future__ import annotations

import warnings

import numpy as np

from mogsgd.covariance import CovarianceFamily
from mogsgd.covariance.ops import family_of
from mogsgd.errors import NearConstantWarning
from mogsgd.params import MixtureParams

__all__ = ["Standardizer", "impute_for_init", "warn_unrepresentable", "warn_near_constant",
           "linear_percentiles", "column_extremes", "IQR_NORMAL", "QUANTILE_ROWS", "WIDE_ROWS",
           "SAFE_RANGE", "OUTLIER_RATIO", "NEAR_CONSTANT_ROWS"]


#: Inter-quartile range of the standard normal, ``2 Phi^-1(3/4)``.
IQR_NORMAL = 1.3489795003921634

#: At most about this many evenly spaced rows go into the standardiser's quantiles.
QUANTILE_ROWS = 20_000

#: Column extremes are taken over this many rows at a time viewed as one wide row: the
#: reduction's inner loop then runs over ``WIDE_ROWS * D`` contiguous values instead of
#: ``D`` (6x faster at D = 3, 2x at D = 16; extremes do not depend on the order).
WIDE_ROWS = 8

#: Standardised rows stay within this many scales of the centre (the scale grows if needed).
MAX_STANDARDISED = 1e150

#: Column magnitudes within which the standardiser's moments are taken on the data
#: itself rather than on a copy scaled by a power of two (no sum of a million rows
#: overflows, no square underflows).
SAFE_RANGE = (1e-100, 1e100)

#: Fits of at least this many rows warn about (near-)constant features (fewer rows share
#: values by chance).
NEAR_CONSTANT_ROWS = 50

#: A feature whose standard deviation exceeds this many robust spreads (IQR / IQR_NORMAL)
#: is dominated by a few far outliers and is standardised robustly instead.
OUTLIER_RATIO = 10.0


class Standardizer:
    """Per-feature affine map ``x' = (x - c) / s`` and its action on parameters (eq. 33).

    ``c`` and ``s`` are the feature's mean and standard deviation, computed on
    the data divided by a power of two near its largest magnitude (exact, and
    safe from overflow at 1e+300 and underflow at 1e-300).  A constant feature
    gets ``s = 1``.  Where a few far outliers dominate the standard deviation
    (it exceeds :data:`OUTLIER_RATIO` times the robust spread IQR / 1.349, as
    with one point at 1e8 among unit-scale points) ``c`` and ``s`` are the median
    and the robust spread instead, so the other points are not squashed together
    below the variance floor.  Centre and scale are float64 whatever the data.
    """

    def __init__(self, center: np.ndarray, scale: np.ndarray) -> None:
        self.center = np.asarray(center, dtype=np.float64)
        self.scale = np.asarray(scale, dtype=np.float64)

    @classmethod
    def fit(cls, X: np.ndarray, enabled: bool = True,
            sample_weight: np.ndarray | None = None) -> Standardizer:
        """Centre and scale of ``X`` (n, D); with ``sample_weight``, the weighted mean and
        standard deviation (frequency weights: the same as for duplicated rows)."""
        d = X.shape[1]
        if not enabled or X.shape[0] == 0:
            return cls(np.zeros(d), np.ones(d))
        X = np.asarray(X, dtype=np.float64)
        # column extremes in two reads (no |X| temporary); NaN propagates through them,
        # so they also tell whether any value is missing
        high, low = column_extremes(X)
        missing = bool(np.isnan(high).any() or np.isnan(low).any())
        if missing:
            with np.errstate(all="ignore"):
                high, low = np.nanmax(X, axis=0), np.nanmin(X, axis=0)
        with np.errstate(all="ignore"):
            amax = np.maximum(np.abs(high), np.abs(low))
        usable = np.isfinite(amax) & (amax > 0)
        power = np.ldexp(1.0, np.frexp(np.where(usable, amax, 1.0))[1] - 1)
        # dividing by a power of two is exact, so the moments of X / power are those of X
        # divided by power whenever no sum over X can overflow nor any square underflow:
        # then (unweighted) the scaled copy of the data is skipped
        safe = sample_weight is None and bool(
            np.all(~usable | ((amax > SAFE_RANGE[0]) & (amax < SAFE_RANGE[1]))))
        Y = X if safe else X / power
        unit = power if safe else np.ones_like(power)
        mean, std, percentile = ((np.nanmean, np.nanstd, np.nanpercentile) if missing
                                 else (np.mean, np.std, linear_percentiles))
        if sample_weight is None:
            center = mean(Y, axis=0)
            # the same mean np.std would compute itself (one pass fewer)
            spread = (std(Y, axis=0, mean=center[None, :]) if not missing
                      else std(Y, axis=0))
        else:
            center, spread = _weighted_moments(Y, np.asarray(sample_weight, dtype=np.float64))
        center, spread = center / unit, spread / unit
        # quantiles only decide whether far outliers dominate a feature: evenly spaced
        # rows (no randomness) are enough on large data and cost a fraction of a sort
        step = max(1, len(X) // QUANTILE_ROWS)
        p1, q1, median, q3, p99 = percentile(X[::step] / power, [1.0, 25.0, 50.0, 75.0, 99.0],
                                             axis=0)
        if len(X) >= NEAR_CONSTANT_ROWS:
            warn_near_constant(p1 == p99, spread * power, median * power, stacklevel=3)
        robust = (q3 - q1) / IQR_NORMAL
        outliers = (robust > 0) & (spread > OUTLIER_RATIO * robust)
        center_y = np.where(outliers, median, center)
        scale_y = np.where(outliers, robust, spread)
        # a robust scale far below the farthest row (a few rows at 1e-183 and one at 1,
        # or one at -1.7e308 among unit-scale rows) would put standardised rows beyond
        # what the kernels square safely: keep every |z| <= MAX_STANDARDISED.  The
        # farthest row from the centre is the column's largest or smallest (rounding is
        # monotone), so no pass over the data is needed
        with np.errstate(invalid="ignore", over="ignore"):
            reach = np.fmax(np.abs(high / power - center_y),
                            np.abs(low / power - center_y)) / MAX_STANDARDISED
        scale_y = np.maximum(scale_y, np.where(np.isfinite(reach), reach, 0.0))
        center, scale = center_y * power, scale_y * power
        center = np.where(np.isfinite(center), center, 0.0)
        scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
        return cls(center, scale)

    @property
    def log_det(self) -> float:
        """``sum_d log s_d``: NLL in data units = NLL standardised + log_det (eq. 33)."""
        return float(np.log(self.scale).sum())

    def transform(self, X: np.ndarray) -> np.ndarray:
        """``(x - c) / s``; rows whose difference overflows (``x`` and ``c`` near the float
        range with opposite signs) are computed as ``x / s - c / s`` instead."""
        with np.errstate(over="ignore"):
            Z = X - self.center   # a new float64 array: divided in place (one temporary)
            Z /= self.scale
        if np.isinf(Z).any() and np.isfinite(X[~np.isnan(X)]).all():
            with np.errstate(over="ignore"):
                Z = X / self.scale - self.center / self.scale
        return Z.astype(X.dtype, copy=False)

    def for_family(self, family: CovarianceFamily) -> Standardizer:
        """This map with the scale ``family`` admits: a spherical covariance stays
        spherical only under one common scale (the geometric mean, eq. 50)."""
        return Standardizer(self.center, family.admissible_scale(self.scale))

    def to_data(self, p: MixtureParams) -> MixtureParams:
        """Parameters on standardised data -> parameters in data units (same dtype as ``p``),
        for every covariance family: ``mu = c + s mu'`` and the covariance
        ``diag(s) Sigma' diag(s)`` (eqs. 33, 50)."""
        return family_of(p).to_data(p, self.center, self.scale)

    def from_data(self, p: MixtureParams) -> MixtureParams:
        """Inverse of :meth:`to_data`."""
        return family_of(p).from_data(p, self.center, self.scale)


def column_extremes(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(X.max(axis=0), X.min(axis=0))`` of rows ``X`` (n, D), the same values (NaN where
    a column holds NaN), with :data:`WIDE_ROWS` rows at a time as one wide row."""
    n, d = X.shape
    head = n - n % WIDE_ROWS
    if not (head and X.flags.c_contiguous):
        return X.max(axis=0), X.min(axis=0)
    wide = X[:head].reshape(-1, WIDE_ROWS * d)
    high = wide.max(axis=0).reshape(WIDE_ROWS, d).max(axis=0)
    low = wide.min(axis=0).reshape(WIDE_ROWS, d).min(axis=0)
    if head < n:
        high = np.maximum(high, X[head:].max(axis=0))
        low = np.minimum(low, X[head:].min(axis=0))
    return high, low


def linear_percentiles(Y: np.ndarray, q, axis: int = 0) -> np.ndarray:
    """``np.percentile(Y, q, axis=0)`` (the default linear method) of rows ``Y`` (n, D)
    without NaN, shape (len(q), D): one sort and NumPy's interpolation written out (the
    same values, bitwise), without its generic machinery, which costs more than the sort
    itself on the small tables of most fits."""
    if axis != 0:
        raise ValueError("linear_percentiles works along axis 0")
    ordered = np.sort(Y, axis=0)
    n = ordered.shape[0]
    virtual = (n - 1) * (np.asarray(q, dtype=np.float64) / 100)
    below = np.floor(virtual)
    above = below + 1
    last = virtual >= n - 1
    below[last] = -1
    above[last] = -1
    gamma = (virtual - below)[:, None]
    a, b = ordered[below.astype(np.intp)], ordered[above.astype(np.intp)]
    diff = b - a
    out = a + diff * gamma
    np.subtract(b, diff * (1 - gamma), out=out, where=gamma >= 0.5)   # (as NumPy's _lerp)
    return out


def _weighted_moments(Y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted per-feature mean and standard deviation, ignoring NaN (two passes)."""
    observed = ~np.isnan(Y)
    Wd = w @ observed
    Y0 = np.where(observed, Y, 0.0)
    mean = (w @ Y0) / Wd
    dev = np.where(observed, Y - mean, 0.0)
    return mean, np.sqrt((w @ (dev * dev)) / Wd)


def impute_for_init(Z: np.ndarray) -> np.ndarray:
    """Missing entries set to the standardised mean (0), for the k-means++ seeding only."""
    return np.where(np.isnan(Z), 0.0, Z) if np.isnan(Z).any() else Z


def warn_unrepresentable(params: MixtureParams, stacklevel: int = 2) -> None:
    """Warn when a variance in data units, ``exp(2 log_sigma)``, is beyond the range of the
    parameters' dtype (data at extreme scales): the model itself is fine (``log_sigma``
    holds it and scores are finite), only the natural-parameter view overflows."""
    if not isinstance(params, MixtureParams):
        return   # the other families keep float64 factors (finite by construction)
    with np.errstate(over="ignore", under="ignore"):
        variances = params.variances
    bad = ~(np.isfinite(variances) & (variances > 0))
    if bad.any():
        k, d = np.argwhere(bad)[0]
        warnings.warn(
            f"covariances_[{k}, {d}] = exp(2 * {float(params.log_sigma[k, d]):.6g}) is "
            f"beyond the range of {params.dtype} at this data scale; the model "
            "itself is fine (params_.log_sigma holds it, scores are finite); rescale the "
            "data or use dtype=None (float64) to read variances directly",
            UserWarning, stacklevel=stacklevel + 1)


def warn_near_constant(near: np.ndarray, spread: np.ndarray, value: np.ndarray,
                       stacklevel: int = 2) -> None:
    """Warn (:class:`~mogsgd.errors.NearConstantWarning`) about the features flagged in
    ``near``: those whose 1st and 99th percentiles are equal, so that at least 98% of the
    rows hold one value.  Every component's variance there goes to the floor
    (``min_variance`` times the feature's variance, eq. 26), and a held-out row with any
    other value gets a log-likelihood near ``-(x - v)^2 / (2 floor)``: absurdly low."""
    idx = np.flatnonzero(near)
    if idx.size == 0:
        return
    shown = ", ".join(f"{j} (std {spread[j]:.3g}, mostly {value[j]:.6g})" for j in idx[:5])
    more = f" and {idx.size - 5} more" if idx.size > 5 else ""
    warnings.warn(NearConstantWarning(
        f"feature(s) {shown}{more} are constant or near-constant (at least 98% of the rows "
        "hold one value): every component's variance there sits at the variance floor, so a "
        "row with another value scores absurdly low; drop these columns before fitting",
        idx, spread[idx], value[idx]), stacklevel=stacklevel + 1)
