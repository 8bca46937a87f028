"""The estimator's settings, validated before any work: what to prepare and how to solve.

:func:`fit_settings` turns ``SGDGaussianMixture.get_params()`` into a
:class:`~mogsgd.data.FitPlan` (how the rows are prepared) and a
:class:`~mogsgd.solvers.RunSettings` (how the solver runs), refusing any value out of range
with a message that names it and the fix.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np

from mogsgd import fast
from mogsgd.checkpoint import is_checkpoint_file
from mogsgd.covariance import COVARIANCE_TYPES, CovarianceFamily, get_family
from mogsgd.data import FitPlan
from mogsgd.errors import SettingsError, ValidationError
from mogsgd.init import INIT_METHODS
from mogsgd.params import MixtureParams
from mogsgd.solvers import SOLVERS, RunSettings
from mogsgd.train import TrainConfig
from mogsgd.validation import (
    check_bool,
    check_callable,
    check_choice,
    check_dtype,
    check_fraction,
    check_path,
    check_positive_float,
    check_positive_int,
)

__all__ = ["fit_settings", "compute_dtype", "user_start", "MISSING", "UserInit",
           "SKLEARN_INIT_PARAMS", "EM_MAX_ITER", "single_start", "check_fit_state"]

MISSING = ("error", "marginalize")
REFINE = ("auto", "em", "none")
#: scikit-learn's ``init_params`` -> our ``init``.
SKLEARN_INIT_PARAMS = {"kmeans": "kmeans", "k-means++": "kmeans++",
                       "random": "random", "random_from_data": "random_points"}
#: EM's iteration budget when ``max_iter`` is None (scikit-learn's default is 100).
EM_MAX_ITER = 200


def compute_dtype(dtype) -> np.dtype:
    """float32 only when asked for with ``dtype``; float64 otherwise."""
    return check_dtype("dtype", dtype) or np.dtype(np.float64)


def fit_settings(p: dict) -> tuple[FitPlan, RunSettings]:
    """Validate the estimator's parameters ``p`` (``get_params()``) -> ``(plan, settings)``."""
    e = SimpleNamespace(**p)
    check_positive_int("n_components", e.n_components)
    check_positive_int("n_init", e.n_init)
    check_positive_int("max_iter", e.max_iter, minimum=0, allow_none=True)
    check_choice("init", e.init, INIT_METHODS)
    check_choice("solver", e.solver, tuple(SOLVERS))
    check_choice("missing", e.missing, MISSING)
    check_choice("covariance_type", e.covariance_type, COVARIANCE_TYPES)
    init = _init_method(e.init, e.init_params)
    if e.reg_covar is not None:
        raise SettingsError(
            "reg_covar (scikit-learn's absolute regulariser) is not supported: mogsgd floors "
            "every covariance eigenvalue at min_variance in standardised units (min_variance "
            "* scale**2 in data units); set variance_floor for a floor in data units, or "
            "min_variance")
    if e.covariance_type != "diag":
        _check_family_options(e)
    max_epochs = _max_epochs(e)
    if isinstance(e.validation_fraction, str) and e.validation_fraction != "auto":
        raise SettingsError(f"validation_fraction must be 'auto' or a number in [0, 1), "
                              f"got {e.validation_fraction!r}")
    if e.validation_fraction != "auto":
        check_fraction("validation_fraction", e.validation_fraction)
    check_positive_float("min_variance", e.min_variance)
    if e.variance_floor is not None:
        check_positive_float("variance_floor", e.variance_floor)
    for flag in ("early_stopping", "standardize", "warm_start", "record_params"):
        check_bool(flag, getattr(e, flag))
    if not isinstance(e.verbose, bool):
        check_positive_int("verbose", e.verbose, minimum=0)
    check_callable("callback", e.callback)
    _check_random_state_type(e.random_state)
    path = check_path("checkpoint_path", e.checkpoint_path)
    check_positive_int("checkpoint_every", e.checkpoint_every)
    check_choice("backend", e.backend, fast.BACKENDS)
    check_choice("refine", e.refine, REFINE)
    if path is not None:
        if not SOLVERS[e.solver].stochastic:
            raise SettingsError(
                f"checkpoint_path works with solver='sgd' or 'online_em', got "
                f"solver={e.solver!r}; remove checkpoint_path (batch EM runs are short) "
                "or use a stochastic solver")
        _check_checkpoint_target(path)
    config = TrainConfig(
        solver="online_em" if e.solver == "online_em" else "sgd",
        optimizer=e.optimizer, learning_rate=e.learning_rate, schedule=e.schedule,
        batch_size=e.batch_size, max_epochs=max_epochs, momentum=e.momentum,
        min_variance=e.min_variance, early_stopping=e.early_stopping,
        patience=e.patience, tol=e.tol)
    plan = FitPlan(n_components=e.n_components, batch_size=e.batch_size,
                   dtype=compute_dtype(e.dtype), allow_nan=e.missing == "marginalize",
                   standardize=e.standardize,
                   validation_fraction=e.validation_fraction,
                   holds_out=e.early_stopping and e.solver != "em",
                   backend=e.backend, covariance_type=e.covariance_type,
                   scale_floor=0.0 if e.variance_floor is None
                   else float(np.sqrt(e.variance_floor / e.min_variance)))
    settings = RunSettings(config=config,
                           max_iter=EM_MAX_ITER if e.max_iter is None else e.max_iter,
                           tol=e.tol, min_variance=e.min_variance,
                           n_components=e.n_components, init=init, callback=e.callback,
                           record_params=e.record_params, backend=e.backend,
                           refine=e.refine, verbose=int(e.verbose),
                           covariance_type=e.covariance_type)
    return plan, settings


def _init_method(init: str, init_params) -> str:
    """``init``, or scikit-learn's ``init_params`` mapped onto it (they must not disagree)."""
    if init_params is None:
        return init
    check_choice("init_params", init_params, tuple(SKLEARN_INIT_PARAMS))
    mapped = SKLEARN_INIT_PARAMS[init_params]
    if init not in ("auto", mapped):   # "auto": the default, not a choice
        raise SettingsError(f"init={init!r} and init_params={init_params!r} disagree; "
                              "give one of them (init_params is scikit-learn's name for init)")
    return mapped


def _max_epochs(e) -> int | None:
    """The stochastic solvers' epoch budget: ``max_epochs``, capped by scikit-learn's
    ``max_iter`` (iterations of the solver: epochs for ``"sgd"`` and ``"online_em"``); with
    both, the smaller."""
    if e.max_iter is None or not SOLVERS[e.solver].stochastic:
        return e.max_epochs
    return e.max_iter if e.max_epochs is None else min(e.max_epochs, e.max_iter)


def _check_family_options(e) -> None:
    """What the full, tied and spherical families do not support (yet), refused up front."""
    name = f"covariance_type={e.covariance_type!r}"
    if e.missing == "marginalize":
        raise SettingsError(f"missing='marginalize' is not supported with {name}: use "
                              "covariance_type='diag' (which marginalises NaN exactly) or "
                              "impute the missing values first")
    if e.variances_init is not None:
        raise SettingsError(f"variances_init holds diagonal variances; with {name} give "
                              "precisions_init (scikit-learn's shape for the type) instead")


@dataclass(frozen=True)
class UserInit:
    """The user's initial arrays in data units, any subset (``None``: from the
    initialisation): ``weights`` (K,), ``means`` (K, D), ``covariances`` in scikit-learn's
    shape for the covariance type; ``dtype`` of the parameters."""

    weights: np.ndarray | None
    means: np.ndarray | None
    covariances: np.ndarray | None
    dtype: np.dtype

    @property
    def complete(self) -> bool:
        return all(a is not None for a in (self.weights, self.means, self.covariances))

    def params(self, family: CovarianceFamily, scaler, start=None):
        """Standardised parameters of ``family``: these arrays, the others from ``start``
        (standardised parameters of the family; scikit-learn's rule)."""
        data = None if start is None else scaler.to_data(start)
        w = data.weights if self.weights is None else self.weights
        tiny = np.finfo(np.float64).tiny   # a zero weight: a component that starts empty
        w = np.maximum(w, tiny)
        params = family.init_from_moments(
            w / w.sum(), data.means if self.means is None else self.means,
            family.covariances(data) if self.covariances is None else self.covariances, 0.0)
        params = scaler.from_data(params)
        return params.astype(self.dtype) if isinstance(params, MixtureParams) else params


def user_start(p: dict, n_features: int) -> UserInit | None:
    """The user's initial arrays (:class:`UserInit`, data units), or ``None``.

    Each array is checked under its own name: ``weights_init`` (K,) non-negative (zero
    weights allowed) summing to one, ``means_init`` (K, D) finite, ``variances_init``
    (K, D) finite and positive (``covariance_type="diag"``), ``precisions_init`` in
    scikit-learn's shape for ``covariance_type``: positive (definite)."""
    k = p["n_components"]
    family = get_family(p["covariance_type"])
    weights = means = cov = None
    if p["weights_init"] is not None:
        w = _init_array("weights_init", p["weights_init"], (k,), "(n_components,)")
        if np.any(w < 0) or abs(w.sum() - 1.0) > 1e-6:
            raise SettingsError(f"weights_init must be >= 0 and sum to 1, got {w.tolist()} "
                                  f"(sum {w.sum():.8g})")
        weights = w / w.sum()
    if p["means_init"] is not None:
        means = _init_array("means_init", p["means_init"], (k, n_features),
                            "(n_components, n_features)")
    if p["variances_init"] is not None:
        if p["precisions_init"] is not None:
            raise SettingsError("give variances_init or precisions_init, not both")
        cov = _init_array("variances_init", p["variances_init"], (k, n_features),
                          "(n_components, n_features)")
        if np.any(cov <= 0):
            raise SettingsError("variances_init must be > 0 (diagonal variances in data "
                                  "units)")
    if p["precisions_init"] is not None:
        cov = _covariances_from_precisions(family, p["precisions_init"], k, n_features)
    if weights is None and means is None and cov is None:
        return None
    return UserInit(weights, means, cov, compute_dtype(p["dtype"]))


def single_start(user) -> bool:
    """Whether a fit from ``user`` (:func:`user_start`, or parameters to continue from) has
    nothing left to initialise, so ``n_init`` restarts would repeat one run."""
    return user is not None and getattr(user, "complete", True)


#: scikit-learn's shape of ``precisions_init`` per covariance type, in words.
_PRECISION_SHAPES = {"full": "(n_components, n_features, n_features)",
                     "tied": "(n_features, n_features)", "diag": "(n_components, n_features)",
                     "spherical": "(n_components,)"}


def _covariances_from_precisions(family: CovarianceFamily, value, k: int, d: int):
    """scikit-learn's ``precisions_init`` -> covariances of the same shape."""
    shape = {"full": (k, d, d), "tied": (d, d), "diag": (k, d), "spherical": (k,)}[family.name]
    name = f"precisions_init (covariance_type={family.name!r})"
    prec = _init_array(name, value, shape, _PRECISION_SHAPES[family.name])
    if len(shape) == 1 or family.name == "diag":
        if np.any(prec <= 0):
            raise SettingsError(f"{name} must be > 0")
        return 1.0 / prec
    if not np.allclose(prec, np.swapaxes(prec, -1, -2)):
        raise SettingsError(f"{name} must be symmetric")
    try:
        np.linalg.cholesky(prec)
    except np.linalg.LinAlgError:
        raise SettingsError(f"{name} must be positive definite") from None
    return np.linalg.inv(prec)


def _init_array(name: str, value, shape: tuple, meaning: str) -> np.ndarray:
    try:
        a = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise SettingsError(f"{name} must be an array of numbers of shape {shape} "
                              f"{meaning}") from None
    if a.shape != shape:
        raise SettingsError(f"{name} must have shape {shape} {meaning}, got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise SettingsError(f"{name} must be finite (no NaN or infinity)")
    return a


def _check_random_state_type(random_state) -> None:
    """The type check of :func:`mogsgd._random.check_random_state`, without drawing from it."""
    if random_state is None or isinstance(random_state, np.random.Generator
                                          | np.random.RandomState):
        return
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        if random_state < 0:
            raise SettingsError(
                f"random_state must be a non-negative integer, got {random_state}")
        return
    raise SettingsError(
        f"random_state must be None, a non-negative int or a numpy.random.Generator, "
        f"got {random_state!r}")


def _check_checkpoint_target(path) -> None:
    """A checkpoint may replace only a checkpoint."""
    if path.is_dir():
        raise ValidationError(f"checkpoint_path {str(path)!r} is a directory; give a file name")
    if not path.parent.is_dir():
        raise ValidationError(f"checkpoint_path {str(path)!r}: directory "
                              f"{str(path.parent)!r} does not exist")
    if path.exists() and not is_checkpoint_file(path):
        raise SettingsError(
            f"checkpoint_path {str(path)!r} exists and is not a mogsgd checkpoint; refusing "
            "to overwrite it: choose another file name")


def check_fit_state(fit: dict, covariance_type: str, n_components: int) -> int:
    """The number of features of a restored fit state (``export_fit_state``), after
    checking its parameters are of ``covariance_type``'s family and the shapes agree."""
    params, params_std = fit["params_"], fit["params_std"]
    want = get_family(covariance_type).params_type
    if type(params) is not want or type(params_std) is not want:
        raise TypeError(f"params_ and params_std must be {want.__name__} "
                        f"(covariance_type={covariance_type!r})")
    d = int(fit["n_features_in_"])
    shapes = {params.means.shape, params_std.means.shape, (n_components, d)}
    if len(shapes) != 1 or np.shape(fit["scaler_center"]) != (d,) \
            or np.shape(fit["scaler_scale"]) != (d,):
        raise ValueError(f"shapes disagree: n_components={n_components}, "
                         f"n_features_in_={d}, means {params.means.shape}")
    return d
