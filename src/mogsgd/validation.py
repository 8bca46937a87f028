"""Input checks shared by every entry point: one place names the problem and the fix."""

from __future__ import annotations

import math
import numbers

import numpy as np

from mogsgd.errors import ValidationError

__all__ = ["check_data", "check_sample_weight", "check_positive_int", "check_positive_float",
           "check_choice", "check_fraction"]


def check_data(
    X,
    *,
    name: str = "X",
    allow_nan: bool = False,
    owner: str = "the model",
    dtype=None,
    min_samples: int = 1,
    n_features: int | None = None,
) -> np.ndarray:
    """Validate a data matrix and return it as a 2-D float array of shape (n, D).

    ``dtype=None`` keeps float32 input as float32 and turns everything else into
    float64.  NaN is refused unless ``allow_nan`` (missing values); infinity always.
    """
    if isinstance(X, str | bytes):
        raise TypeError(f"{name} must be a numeric array, got a string")
    if hasattr(X, "toarray") or type(X).__module__.startswith("scipy.sparse"):
        raise TypeError(f"sparse input is not supported; pass {name}.toarray() instead")
    try:
        arr = np.asarray(X)
    except Exception as exc:  # ragged nested lists and the like
        raise ValidationError(f"{name} could not be read as an array: {exc}") from None
    if arr.dtype == object or arr.dtype.kind in "USV":
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
        raise ValidationError(f"{name} has {n} sample(s) but at least {min_samples} are needed")
    if n_features is not None and d != n_features:
        raise ValidationError(
            f"{name} has {d} features, but {owner} is expecting {n_features} features as input"
        )
    if dtype is None:
        dtype = np.float32 if arr.dtype == np.float32 else np.float64
    arr = np.asarray(arr, dtype=dtype)
    finite = np.isfinite(arr)
    if not finite.all():
        if np.isinf(arr).any():
            i, j = np.argwhere(np.isinf(arr))[0]
            raise ValidationError(f"{name} contains infinity (first at row {i}, column {j})")
        if not allow_nan:
            i, j = np.argwhere(np.isnan(arr))[0]
            raise ValidationError(
                f"{name} contains NaN (first at row {i}, column {j}); remove those rows, impute "
                "them, or fit with missing='marginalize'"
            )
        empty = np.isnan(arr).all(axis=1)
        if empty.any():
            raise ValidationError(
                f"{name} row {int(np.argmax(empty))} has every feature missing; drop such rows"
            )
    return arr


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
        raise ValidationError("sample_weight sums to 0; at least one weight must be positive")
    return w


def check_positive_int(name: str, value, *, minimum: int = 1, allow_none: bool = False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValidationError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValidationError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_positive_float(name: str, value, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValidationError(f"{name} must be a positive number, got {value!r}")
    v = float(value)
    if math.isnan(v) or math.isinf(v) or v < 0 or (v == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValidationError(f"{name} must be a finite number {bound}, got {value!r}")
    return v


def check_fraction(name: str, value, *, allow_zero: bool = True) -> float:
    v = check_positive_float(name, value, allow_zero=allow_zero)
    if v >= 1:
        raise ValidationError(f"{name} must be in [0, 1), got {value!r}")
    return v


def check_choice(name: str, value, choices) -> str:
    if value not in choices:
        raise ValidationError(
            f"unknown {name} {value!r}; choose one of: {', '.join(map(repr, choices))}"
        )
    return value
