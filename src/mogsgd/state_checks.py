"""Checks of a decoded model or checkpoint state, before an estimator is built from it.

A checksum only says a file is what was written (:mod:`mogsgd.model_io`); anyone can
recompute it after editing the file.  So every field read back is checked here for its
type, shape, finiteness and sign, and a bad one is refused with a ``ValueError`` naming
the field (the callers turn it into a :class:`~mogsgd.errors.ModelFileError`).
"""

from __future__ import annotations

import numbers

import numpy as np

from mogsgd.covariance import CentredStats, OnlineState
from mogsgd.covariance.ops import PARAMS_TYPES
from mogsgd.em import EMStats
from mogsgd.online_em import OnlineEMState
from mogsgd.optim import AdamState, MomentumState, SGDState
from mogsgd.params import MixtureParams
from mogsgd.standardize import Standardizer
from mogsgd.train import TrainState

__all__ = ["check_fitted_state", "check_scaler", "check_train_state", "check_int",
           "check_params", "check_rng_state"]


def check_int(name: str, value, low: int = 0) -> int:
    """``value`` as an int >= ``low`` (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r:.60}")
    return int(value)


def _check_real(name: str, value, *, allow_inf: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number, got {type(value).__name__}")
    x = float(value)
    if np.isnan(x) or (np.isinf(x) and not allow_inf):
        raise ValueError(f"{name} must be finite, got {x!r}")
    return x


def _check_array(name: str, value, shape: tuple) -> np.ndarray:
    if not isinstance(value, np.ndarray) or value.dtype.kind not in "iuf":
        raise ValueError(f"{name} must be a numeric array, got {type(value).__name__}")
    if value.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {value.shape}")
    with np.errstate(all="ignore"):
        if not np.all(np.isfinite(value)):
            raise ValueError(f"{name} holds NaN or infinity")
    return value


def check_params(name: str, value, shape: tuple, *, variances: bool = True,
                 covariance_type: str | None = None) -> None:
    """Parameters of a mixture of ``shape`` (K, D) -- of ``covariance_type``'s family when
    given (:class:`MixtureParams` for diag; the others are validated when decoded) --
    whose variances are representable (``exp(2 log_sigma) > 0``: a variance of 0 gives NaN
    probabilities)."""
    family = PARAMS_TYPES.get(type(value))
    if family is None:
        raise ValueError(f"{name} must be mixture parameters, got {type(value).__name__}")
    if covariance_type is not None and family.name != covariance_type:
        raise ValueError(f"{name} are {family.name!r} parameters, but the settings say "
                         f"covariance_type={covariance_type!r}")
    if value.means.shape != shape:
        raise ValueError(f"{name} must have {shape[0]} components x {shape[1]} features, "
                         f"got means of shape {value.means.shape}")
    if variances and isinstance(value, MixtureParams):
        with np.errstate(all="ignore"):
            if not np.all(value.variances > 0):
                raise ValueError(f"{name}: a variance is 0 (log_sigma far below the float "
                                 "range)")


def _check_data_units(params: MixtureParams, params_std: MixtureParams, center,
                      scale) -> None:
    """``params_`` is ``params_std`` in data units (eq. 33) in ``params_``' dtype, as every
    fit stores it (full, tied and spherical train float32 fits in float64)."""
    expected = Standardizer(center, scale).to_data(params_std).astype(params.dtype)
    names = getattr(type(params), "_fields", ("means", "log_sigma", "logits"))
    for field, got, want in zip(names, params, expected, strict=True):
        with np.errstate(all="ignore"):
            if not np.allclose(got, want, rtol=1e-9, atol=1e-12):
                raise ValueError(f"params_.{field} is not params_std.{field} in data units "
                                 "(the scaler's eq. 33); the file was edited")


def check_scaler(center, scale, d: int) -> None:
    """The standardiser: finite centre and positive finite scale, both of shape (d,)."""
    _check_array("scaler_center", center, (d,))
    if not np.all(_check_array("scaler_scale", scale, (d,)) > 0):
        raise ValueError("scaler_scale must be > 0 for every feature")


def _check_online_state(name: str, state, shape: tuple) -> None:
    """Online EM's state: :class:`~mogsgd.online_em.OnlineEMState` (diag, :class:`EMStats`)
    or :class:`~mogsgd.covariance.OnlineState` (the other families, :class:`CentredStats`,
    whose ``sxx`` has the family's shape)."""
    check_int(f"{name}.count", state.count)
    check_int(f"{name}.n_averaged", state.n_averaged)
    if state.average is not None:
        check_params(f"{name}.average", state.average, shape)
    s = state.stats
    kind = EMStats if isinstance(state, OnlineEMState) else CentredStats
    if not isinstance(s, kind):
        raise ValueError(f"{name}.stats must be {kind.__name__}")
    _check_real(f"{name}.stats.ll_sum", s.ll_sum)
    if _check_real(f"{name}.stats.weight_sum", s.weight_sum) <= 0:
        raise ValueError(f"{name}.stats.weight_sum must be > 0")
    shapes = {"nk": shape[:1], "nkd": shape, "sx": shape,
              "sxx": shape if kind is EMStats else getattr(s.sxx, "shape", None)}
    for field in kind._fields[2:]:
        a = _check_array(f"{name}.stats.{field}", getattr(s, field), shapes[field])
        if (field in ("nk", "nkd") or (field == "sxx" and kind is EMStats)) and np.any(a < 0):
            raise ValueError(f"{name}.stats.{field} must be >= 0")


def _check_opt_state(name: str, state, shape: tuple) -> None:
    if isinstance(state, OnlineEMState | OnlineState):
        _check_online_state(name, state, shape)
    elif isinstance(state, SGDState):
        check_int(f"{name}.count", state.count)
    elif isinstance(state, MomentumState):
        check_int(f"{name}.count", state.count)
        check_params(f"{name}.velocity", state.velocity, shape, variances=False)
    elif isinstance(state, AdamState):
        check_int(f"{name}.count", state.count)
        check_params(f"{name}.mu", state.mu, shape, variances=False)
        check_params(f"{name}.nu", state.nu, shape, variances=False)
        if any(np.any(a < 0) for a in state.nu):
            raise ValueError(f"{name}.nu (Adam's second moments) must be >= 0")
    elif state is not None:
        raise ValueError(f"{name} has an unknown optimiser state {type(state).__name__}")


def _check_history(name: str, history) -> None:
    if not isinstance(history, dict):
        raise ValueError(f"{name} must be a record of lists, got {type(history).__name__}")
    for key, values in history.items():
        if not isinstance(values, list):
            raise ValueError(f"{name}.{key} must be a list, got {type(values).__name__}")
        if key == "params":
            if not all(type(v) in PARAMS_TYPES for v in values):
                raise ValueError(f"{name}.params must hold mixture parameters")
            continue
        for v in values:
            if v is not None and (isinstance(v, bool) or not isinstance(v, numbers.Real)
                                  or np.isnan(v)):
                raise ValueError(f"{name}.{key} must hold numbers, got {v!r:.40}")


def check_rng_state(name: str, state) -> None:
    """A bit-generator state that NumPy accepts."""
    if not isinstance(state, dict):
        raise ValueError(f"{name} must be a record, got {type(state).__name__}")
    try:
        np.random.default_rng().bit_generator.state = state
    except (TypeError, ValueError, KeyError, OverflowError) as exc:
        raise ValueError(f"{name} is not a NumPy random state ({exc})") from None


def check_train_state(name: str, state, shape: tuple,
                      covariance_type: str | None = None) -> None:
    """A :class:`~mogsgd.train.TrainState` (or ``None``) for a mixture of ``shape`` (K, D)."""
    if state is None:
        return
    if not isinstance(state, TrainState):
        raise ValueError(f"{name} must be a TrainState, got {type(state).__name__}")
    check_params(f"{name}.params", state.params, shape, covariance_type=covariance_type)
    for field in ("best_params", "last_params"):
        if getattr(state, field) is not None:
            check_params(f"{name}.{field}", getattr(state, field), shape,
                         covariance_type=covariance_type)
    _check_opt_state(f"{name}.opt_state", state.opt_state, shape)
    check_rng_state(f"{name}.rng_state", state.rng_state)
    check_int(f"{name}.epoch", state.epoch)
    check_int(f"{name}.bad_epochs", state.bad_epochs)
    _check_history(f"{name}.history", state.history)
    _check_real(f"{name}.best_score", state.best_score, allow_inf=True)
    if _check_real(f"{name}.elapsed", state.elapsed) < 0:
        raise ValueError(f"{name}.elapsed must be >= 0")
    if not isinstance(state.stopped, bool):
        raise ValueError(f"{name}.stopped must be true or false")


def check_fitted_state(fitted: dict, n_components, covariance_type: str = "diag") -> None:
    """Every field of a model file's fitted state (see
    ``SGDGaussianMixture.export_fit_state``) for a mixture of ``covariance_type``; the
    optional ``feature_names_in_`` is a list of ``n_features_in_`` strings,
    ``lower_bounds_`` a list of numbers."""
    k = check_int("n_components", n_components, 1)
    missing = [f for f in ("n_features_in_", "params_", "params_std", "scaler_center",
                           "scaler_scale", "train_state", "history_", "converged_", "n_iter_",
                           "lower_bound_") if f not in fitted]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    d = check_int("n_features_in_", fitted["n_features_in_"], 1)
    # data-unit variances may be beyond the float range (data at 1e-310 or 1e300): the
    # standardised ones must be representable, and params_ must be their image (eq. 33)
    check_params("params_", fitted["params_"], (k, d), variances=False,
                 covariance_type=covariance_type)
    check_params("params_std", fitted["params_std"], (k, d), covariance_type=covariance_type)
    if isinstance(fitted["params_std"], MixtureParams):
        with np.errstate(all="ignore"):
            if not np.all(np.isfinite(fitted["params_std"].variances)):
                raise ValueError("params_std: a variance is infinite")
    check_scaler(fitted["scaler_center"], fitted["scaler_scale"], d)
    _check_data_units(fitted["params_"], fitted["params_std"], fitted["scaler_center"],
                      fitted["scaler_scale"])
    check_train_state("train_state", fitted["train_state"], (k, d), covariance_type)
    _check_history("history_", fitted["history_"])
    if not isinstance(fitted["converged_"], bool):
        raise ValueError("converged_ must be true or false")
    check_int("n_iter_", fitted["n_iter_"])
    _check_real("lower_bound_", fitted["lower_bound_"])
    names = fitted.get("feature_names_in_")
    if names is not None and (not isinstance(names, list) or len(names) != d
                              or not all(isinstance(n, str) for n in names)):
        raise ValueError(f"feature_names_in_ must be a list of {d} strings")
    bounds = fitted.get("lower_bounds_", [])
    if not isinstance(bounds, list):
        raise ValueError("lower_bounds_ must be a list of numbers")
    for value in bounds:
        _check_real("lower_bounds_", value)
