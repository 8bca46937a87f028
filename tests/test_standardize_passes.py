"""Standardizer.fit takes its statistics in few passes (column max/min, no scaled copy while
the magnitudes are moderate): the centre and scale must equal, bit for bit, those of the
direct definition on the data divided by a power of two (eq. 33)."""

import warnings

import numpy as np
import pytest

from mogsgd.standardize import (IQR_NORMAL, MAX_STANDARDISED, OUTLIER_RATIO, QUANTILE_ROWS,
                                Standardizer)


def _reference(X):
    """The direct definition: every statistic on ``Y = X / power``, the reach by a full pass."""
    with np.errstate(all="ignore"):
        amax = np.nanmax(np.abs(X), axis=0)
    usable = np.isfinite(amax) & (amax > 0)
    power = np.ldexp(1.0, np.frexp(np.where(usable, amax, 1.0))[1] - 1)
    Y = X / power
    missing = np.isnan(Y).any()
    mean, std, pct = ((np.nanmean, np.nanstd, np.nanpercentile) if missing
                      else (np.mean, np.std, np.percentile))
    center, spread = mean(Y, axis=0), std(Y, axis=0)
    step = max(1, len(Y) // QUANTILE_ROWS)
    _, q1, median, q3, _ = pct(Y[::step], [1.0, 25.0, 50.0, 75.0, 99.0], axis=0)
    robust = (q3 - q1) / IQR_NORMAL
    outliers = (robust > 0) & (spread > OUTLIER_RATIO * robust)
    center_y = np.where(outliers, median, center)
    scale_y = np.where(outliers, robust, spread)
    with np.errstate(invalid="ignore"):
        reach = np.nanmax(np.abs(Y - center_y), axis=0) / MAX_STANDARDISED
    scale_y = np.maximum(scale_y, np.where(np.isfinite(reach), reach, 0.0))
    center, scale = center_y * power, scale_y * power
    return (np.where(np.isfinite(center), center, 0.0),
            np.where(np.isfinite(scale) & (scale > 0), scale, 1.0))


def _cases():
    rng = np.random.default_rng(3)
    yield rng.standard_normal((4000, 4)) * 3 + 1
    yield rng.standard_normal((250_000, 5)) * np.array([1.0, 1e50, 1e-50, 1e99, 7.0])
    yield rng.standard_normal((3000, 3)) * 1e200
    yield rng.standard_normal((3000, 3)) * 1e-200
    X = rng.standard_normal((3000, 3))
    X[0, 0] = 1e8                      # one far outlier: the robust branch
    yield X
    X = rng.standard_normal((3000, 3))
    X[::7, 1] = np.nan                 # missing values
    yield X
    X = rng.standard_normal((3000, 3)) * 1e-183
    X[0, 1] = 1.0                      # the reach raises the scale
    yield X
    X = rng.standard_normal((3000, 3))
    X[0, 2] = -1.7e308
    yield X
    yield rng.integers(0, 3, (2000, 4)).astype(np.float64)
    yield np.zeros((60, 2))


@pytest.mark.parametrize("X", list(_cases()))
def test_fit_equals_the_direct_definition_bit_for_bit(X):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = Standardizer.fit(X)
        center, scale = _reference(X)
    np.testing.assert_array_equal(got.center, center)
    np.testing.assert_array_equal(got.scale, scale)


def test_transform_leaves_the_input_alone_and_matches_the_formula():
    rng = np.random.default_rng(4)
    X = rng.standard_normal((500, 3)) * 4 + 2
    before = X.copy()
    s = Standardizer.fit(X)
    Z = s.transform(X)
    np.testing.assert_array_equal(X, before)
    np.testing.assert_array_equal(Z, (X - s.center) / s.scale)
    Z32 = s.transform(X.astype(np.float32))
    assert Z32.dtype == np.float32


@pytest.mark.parametrize("seed", range(60))
def test_linear_percentiles_are_nps_percentile_bit_for_bit(seed):
    """The standardiser's quantiles (one sort, NumPy's interpolation written out) equal
    np.percentile's, ties, one row and values near the float range included."""
    from mogsgd.standardize import linear_percentiles

    rng = np.random.default_rng(seed)
    n, d = int(rng.integers(1, 300)), int(rng.integers(1, 6))
    Y = rng.standard_normal((n, d)) * 10.0 ** float(rng.integers(-300, 300))
    if seed % 3 == 0:
        Y = rng.integers(-2, 3, size=(n, d)).astype(float)
    q = ([1.0, 25.0, 50.0, 75.0, 99.0] if seed % 2
         else [*rng.uniform(0, 100, size=4), 100.0, 0.0])
    np.testing.assert_array_equal(linear_percentiles(Y, q), np.percentile(Y, q, axis=0))


@pytest.mark.parametrize("n", [1, 7, 8, 1001, 4096])
def test_column_extremes_equal_max_and_min(n):
    """The wide-row extremes equal ``max``/``min`` along the rows (NaN propagates, a row
    count that is not a multiple of WIDE_ROWS and strided views included)."""
    from mogsgd.standardize import column_extremes

    rng = np.random.default_rng(n)
    X = rng.standard_normal((n, 3))
    X[n // 2, 1] = np.nan
    for Y in (X, X[:, ::2], np.ascontiguousarray(X[:, [0, 2]])):
        high, low = column_extremes(Y)
        np.testing.assert_array_equal(high, Y.max(axis=0))
        np.testing.assert_array_equal(low, Y.min(axis=0))
