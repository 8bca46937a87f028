"""pandas in, names out: nullable dtypes, column names on every inference call."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from mogsgd import SGDGaussianMixture
from mogsgd.errors import ConvergenceWarning

pd = pytest.importorskip("pandas")


def _frame(seed: int = 0, n: int = 300) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.vstack([rng.normal(-3.0, 1.0, (n // 2, 3)), rng.normal(3.0, 0.5, (n // 2, 3))])


def _fit(X, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return SGDGaussianMixture(2, random_state=0, max_epochs=5, solver="em", **kw).fit(X)


def test_nullable_float_na_is_a_missing_value_like_nan():
    X = _frame()
    X[[3, 10], [1, 2]] = np.nan
    df = pd.DataFrame(X, columns=["a", "b", "c"]).astype("Float64")
    assert df.isna().to_numpy().sum() == 2  # the NaNs are now pd.NA
    on_frame = _fit(df, missing="marginalize")
    on_array = _fit(X, missing="marginalize")
    np.testing.assert_array_equal(on_frame.means_, on_array.means_)
    np.testing.assert_array_equal(on_frame.predict(df), on_array.predict(X))
    assert on_frame.score(df) == on_array.score(X)
    np.testing.assert_array_equal(on_frame.feature_names_in_, ["a", "b", "c"])


def test_nullable_int_and_float_columns_fit_like_float64():
    X = np.round(_frame(1))
    df = pd.DataFrame({"a": pd.array(X[:, 0].astype(int), dtype="Int64"),
                       "b": pd.array(X[:, 1], dtype="Float64"), "c": X[:, 2]})
    np.testing.assert_array_equal(_fit(df).means_, _fit(X).means_)


def test_na_without_marginalize_is_refused_with_the_usual_message():
    df = pd.DataFrame(_frame(), columns=["a", "b", "c"]).astype("Float64")
    df.iloc[4, 2] = pd.NA
    with pytest.raises(ValueError, match=r"contains NaN \(first at row 4, column 2\).*"
                                         r"missing='marginalize'"):
        _fit(df)
    fitted = _fit(df.fillna(0.0))
    with pytest.raises(ValueError, match=r"contains NaN \(first at row 4, column 2\)"):
        fitted.predict(df)


def test_text_columns_are_still_refused():
    df = pd.DataFrame({"a": ["1.5", "2.5"] * 50, "b": pd.array([1.0, None] * 50,
                                                               dtype="Float64")})
    with pytest.raises(TypeError, match="numeric"):
        _fit(df, missing="marginalize")
