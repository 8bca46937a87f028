"""Input checks shared by every entry point: one place names the problem and the fix."""

from __future__ import annotations

import math
import numbers
import os
from pathlib import Path

import numpy as np

from mogsgd.errors import SettingsError, ValidationError

__all__ = ["check_data", "check_sample_weight", "check_positive_int", "check_positive_float",
           "check_choice", "check_fraction", "check_bool", "check_dtype", "check_callable",
           "check_path"]


def check_data(
    X,
    *,
    name: str = "X",
    allow_nan: bool = False,
    owner: str = "the model",
    dtype=None,
    min_samples: int = 1,
    min_samples_reason: str = "",
    n_features: int | None = None,
    nan_fix: str = ("fit with missing='marginalize' to integrate missing values out exactly, "
                    "or remove those rows or impute them (e.g. sklearn.impute.SimpleImputer)"),
) -> np.ndarray:
    """Validate a data matrix and return it as a 2-D float array of shape (n, D).

    ``dtype=None`` keeps float32 input as float32 and turns everything else into
    float64.  NaN is refused unless ``allow_nan`` (missing values), the message ending on
    ``nan_fix``; infinity always.
    Text arrays are refused (``TypeError``) even when the strings hold numbers;
    object arrays are converted when every entry is a number.  A pandas data frame with
    nullable numeric columns (``Float64``, ``Int64``, ``boolean``) is read with ``pd.NA``
    as NaN, so NA is a missing value like NaN.
    ``min_samples_reason`` explains the minimum in the error message.
    """
    if isinstance(X, str | bytes):
        raise TypeError(f"{name} must be a numeric array, got a string")
    if hasattr(X, "toarray") or type(X).__module__.startswith("scipy.sparse"):
        raise TypeError(f"sparse input is not supported; pass {name}.toarray() instead")
    X = _nullable_to_nan(X)
    try:
        arr = np.asarray(X)
    except Exception as exc:  # ragged nested lists and the like
        raise ValidationError(f"{name} could not be read as an array ({exc}); every row must "
                              "have the same number of numeric features") from None
    if arr.dtype.kind in "USV":
        raise TypeError(
            f"{name} must be numeric, got an array of {arr.dtype} (text or raw bytes); if the "
            f"strings hold numbers convert them first with {name}.astype(float)"
        )
    if arr.dtype == object:
        none = np.equal(arr, None)
        if none.any():
            i, j = np.argwhere(none)[0] if arr.ndim == 2 else (np.argmax(none.ravel()), 0)
            raise ValidationError(
                f"{name} contains None (first at row {i}, column {j}); remove those rows or "
                "impute the missing values (e.g. sklearn.impute.SimpleImputer)"
            )
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"{name} must be numeric; it has dtype {arr.dtype} with non-numeric entries "
                f"({exc})"
            ) from None
    if arr.dtype.kind == "c":
        raise ValidationError(f"Complex data not supported: {name} must be real-valued, "
                              f"got dtype {arr.dtype}")
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be numeric, got dtype {arr.dtype}")
    if arr.ndim != 2:
        hint = (" (Reshape your data with X.reshape(-1, 1) for a single feature or "
                "X.reshape(1, -1) for a single sample)") if arr.ndim == 1 else ""
        raise ValidationError(f"{name} must be 2-D of shape (n_samples, n_features), "
                              f"got {arr.ndim}-D shape {arr.shape}{hint}")
    n, d = arr.shape
    if d == 0:
        raise ValidationError(f"{name} has 0 feature(s) (shape={arr.shape}) while a minimum of 1 "
                              "is required.")
    if n < min_samples:
        why = f" ({min_samples_reason})" if min_samples_reason else ""
        raise ValidationError(
            f"{name} has {n} sample(s) but at least {min_samples} are needed{why}"
        )
    if n_features is not None and d != n_features:
        raise ValidationError(
            f"{name} has {d} features, but {owner} is expecting {n_features} features as input"
        )
    if dtype is None:
        dtype = np.float32 if arr.dtype == np.float32 else np.float64
    original = arr
    with np.errstate(over="ignore"):
        arr = np.asarray(arr, dtype=dtype)
    finite = np.isfinite(arr)
    if not finite.all():
        if np.isinf(arr).any():
            i, j = np.argwhere(np.isinf(arr))[0]
            if original.dtype.kind == "f" and np.isfinite(original[i, j]):
                raise ValidationError(
                    f"{name}[{i}, {j}] = {float(original[i, j])!r} is beyond the range of "
                    f"{np.dtype(dtype).name} (largest {np.finfo(dtype).max:.3g}); compute in "
                    "float64 (dtype=None) or rescale the data"
                )
            raise ValidationError(
                f"{name} contains infinity (first at row {i}, column {j}); remove or clip "
                "those values"
            )
        if not allow_nan:
            i, j = np.argwhere(np.isnan(arr))[0]
            raise ValidationError(
                f"{name} contains NaN (first at row {i}, column {j}); {nan_fix}")
        empty = np.isnan(arr).all(axis=1)
        if empty.any():
            raise ValidationError(
                f"{name} row {int(np.argmax(empty))} has every feature missing; drop such rows"
            )
    return arr


def _nullable_to_nan(X):
    """A pandas frame (or series) whose columns are all numeric or boolean, with at least
    one nullable extension dtype (``Float64``, ``Int64``, ``boolean``), as a float64 array
    with ``pd.NA`` as NaN; anything else unchanged.  Duck-typed: pandas is not imported."""
    if not type(X).__module__.startswith("pandas") or not hasattr(X, "to_numpy"):
        return X
    dtypes = list(getattr(X, "dtypes", [getattr(X, "dtype", None)]))
    numeric = all(getattr(dt, "kind", "O") in "biuf" for dt in dtypes)
    nullable = any(not isinstance(dt, np.dtype) for dt in dtypes)
    if not (dtypes and numeric and nullable):
        return X
    return np.ascontiguousarray(X.to_numpy(dtype=np.float64, na_value=np.nan))


def check_sample_weight(sample_weight, n_samples: int, dtype=np.float64) -> np.ndarray | None:
    """Validate non-negative finite weights of shape (n,) with a positive sum."""
    if sample_weight is None:
        return None
    w = np.asarray(sample_weight, dtype=dtype)
    if w.ndim == 0:
        w = np.full(n_samples, float(w), dtype=dtype)
    if w.shape != (n_samples,):
        raise ValidationError(f"sample_weight must have shape ({n_samples},), got {w.shape}")
    if not np.all(np.isfinite(w)):
        raise ValidationError("sample_weight contains NaN or infinity")
    if np.any(w < 0):
        raise ValidationError("sample_weight must be non-negative")
    if not w.sum() > 0:
        raise ValidationError("sample_weight are all zero; at least one weight must be "
                              "positive")
    return w


def check_positive_int(name: str, value, *, minimum: int = 1, allow_none: bool = False):
    if value is None and allow_none:
        return None
    if type(value) is int and value >= minimum:   # the common case, without the ABC check
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        alt = " (or None)" if allow_none else ""
        raise SettingsError(f"{name} must be an integer >= {minimum}{alt}, got {value!r}")
    return int(value)


def check_positive_float(name: str, value, *, allow_zero: bool = False) -> float:
    if type(value) is float and 0 < value < math.inf:   # the common case, without the ABC check
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise SettingsError(f"{name} must be a positive number, got {value!r}")
    v = float(value)
    if math.isnan(v) or math.isinf(v) or v < 0 or (v == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise SettingsError(f"{name} must be a finite number {bound}, got {value!r}")
    return v


def check_fraction(name: str, value, *, allow_zero: bool = True) -> float:
    v = check_positive_float(name, value, allow_zero=allow_zero)
    if v >= 1:
        raise SettingsError(f"{name} must be in [0, 1), got {value!r}")
    return v


def check_choice(name: str, value, choices) -> str:
    if value not in choices:
        raise SettingsError(
            f"unknown {name} {value!r}; choose one of: {', '.join(map(repr, choices))}"
        )
    return value


def check_bool(name: str, value) -> bool:
    """A flag: ``True``/``False`` (NumPy booleans too); anything else is refused."""
    if isinstance(value, bool | np.bool_):
        return bool(value)
    raise SettingsError(f"{name} must be True or False, got {value!r}")


#: The float types the library computes in.
FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def check_dtype(name: str, value) -> np.dtype | None:
    """``None`` or something naming float32/float64 (``np.float32``, ``"float32"``, a dtype)."""
    if value is None:
        return None
    try:
        dtype = np.dtype(value)
    except TypeError:
        dtype = None
    if dtype not in FLOAT_DTYPES:
        raise SettingsError(
            f"{name} must be None (compute in float64), np.float64 or np.float32, got {value!r}"
        )
    return dtype


def check_callable(name: str, value, *, allow_none: bool = True):
    if value is None and allow_none:
        return None
    if not callable(value):
        raise SettingsError(
            f"{name} must be a function called as {name}(state) (or None), got {value!r}"
        )
    return value


def check_path(name: str, value, *, allow_none: bool = True):
    """A file name (``str`` or ``os.PathLike``); returned as a ``pathlib.Path``."""
    if value is None and allow_none:
        return None
    if isinstance(value, bytes) or not isinstance(value, str | os.PathLike) or str(value) == "":
        raise SettingsError(f"{name} must be a file name (str or pathlib.Path), got {value!r}")
    return Path(value)
