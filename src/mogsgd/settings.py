"""The estimator's settings, validated before any work: what to prepare and how to solve.

:func:`fit_settings` turns ``SGDGaussianMixture.get_params()`` into a
:class:`~mogsgd.data.FitPlan` (how the rows are prepared) and a
:class:`~mogsgd.solvers.RunSettings` (how the solver runs), refusing any value out of range
with a message that names it and the fix.
"""

from __future__ import annotations

import numbers
from types import SimpleNamespace

import numpy as np

from mogsgd import fast
from mogsgd.checkpoint import is_checkpoint_file
from mogsgd.data import FitPlan
from mogsgd.errors import ValidationError
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

__all__ = ["fit_settings", "compute_dtype", "user_start", "MISSING"]

MISSING = ("error", "marginalize")
REFINE = ("auto", "em", "none")


def compute_dtype(dtype) -> np.dtype:
    """float32 only when asked for with ``dtype``; float64 otherwise."""
    return check_dtype("dtype", dtype) or np.dtype(np.float64)


def fit_settings(p: dict) -> tuple[FitPlan, RunSettings]:
    """Validate the estimator's parameters ``p`` (``get_params()``) -> ``(plan, settings)``."""
    e = SimpleNamespace(**p)
    check_positive_int("n_components", e.n_components)
    check_positive_int("n_init", e.n_init)
    check_positive_int("max_iter", e.max_iter, minimum=0)
    check_choice("init", e.init, INIT_METHODS)
    check_choice("solver", e.solver, tuple(SOLVERS))
    check_choice("missing", e.missing, MISSING)
    if isinstance(e.validation_fraction, str) and e.validation_fraction != "auto":
        raise ValidationError(f"validation_fraction must be 'auto' or a number in [0, 1), "
                              f"got {e.validation_fraction!r}")
    if e.validation_fraction != "auto":
        check_fraction("validation_fraction", e.validation_fraction)
    check_positive_float("min_variance", e.min_variance)
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
            raise ValidationError(
                f"checkpoint_path works with solver='sgd' or 'online_em', got "
                f"solver={e.solver!r}; remove checkpoint_path (batch EM runs are short) "
                "or use a stochastic solver")
        _check_checkpoint_target(path)
    config = TrainConfig(
        solver="online_em" if e.solver == "online_em" else "sgd",
        optimizer=e.optimizer, learning_rate=e.learning_rate, schedule=e.schedule,
        batch_size=e.batch_size, max_epochs=e.max_epochs, momentum=e.momentum,
        min_variance=e.min_variance, early_stopping=e.early_stopping,
        patience=e.patience, tol=e.tol)
    plan = FitPlan(n_components=e.n_components, batch_size=e.batch_size,
                   dtype=compute_dtype(e.dtype), allow_nan=e.missing == "marginalize",
                   standardize=e.standardize,
                   validation_fraction=e.validation_fraction,
                   holds_out=e.early_stopping and e.solver != "em",
                   backend=e.backend)
    settings = RunSettings(config=config, max_iter=e.max_iter, tol=e.tol,
                           min_variance=e.min_variance, n_components=e.n_components,
                           init=e.init, callback=e.callback,
                           record_params=e.record_params, backend=e.backend,
                           refine=e.refine, verbose=int(e.verbose))
    return plan, settings


def user_start(p: dict, scaler, n_features: int):
    """The user's initial parameters in standardised units: a :class:`MixtureParams` when
    ``weights_init``, ``means_init`` and ``variances_init`` are all given, a dict of the
    ones given (the others come from ``init``, as in scikit-learn), or ``None``.

    Each array is checked under its own name: ``weights_init`` (K,) non-negative (zero
    weights allowed) summing to one, ``means_init`` (K, D) finite, ``variances_init``
    (K, D) finite and positive, in data units."""
    k = p["n_components"]
    given = {}
    if p["weights_init"] is not None:
        w = _init_array("weights_init", p["weights_init"], (k,), "(n_components,)")
        if np.any(w < 0) or abs(w.sum() - 1.0) > 1e-6:
            raise ValidationError(f"weights_init must be >= 0 and sum to 1, got {w.tolist()} "
                                  f"(sum {w.sum():.8g})")
        given["weights"] = w / w.sum()
    if p["means_init"] is not None:
        m = _init_array("means_init", p["means_init"], (k, n_features),
                        "(n_components, n_features)")
        given["means"] = (m - scaler.center) / scaler.scale
    if p["variances_init"] is not None:
        v = _init_array("variances_init", p["variances_init"], (k, n_features),
                        "(n_components, n_features)")
        if np.any(v <= 0):
            raise ValidationError("variances_init must be > 0 (diagonal variances in data "
                                  "units)")
        given["variances"] = v / scaler.scale ** 2
    if not given:
        return None
    if len(given) < 3:
        return given
    tiny = np.finfo(np.float64).tiny   # a zero weight: a component that starts empty
    w = np.maximum(given["weights"], tiny)
    return MixtureParams.from_moments(w / w.sum(), given["means"], given["variances"],
                                      dtype=compute_dtype(p["dtype"]))


def _init_array(name: str, value, shape: tuple, meaning: str) -> np.ndarray:
    try:
        a = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValidationError(f"{name} must be an array of numbers of shape {shape} "
                              f"{meaning}") from None
    if a.shape != shape:
        raise ValidationError(f"{name} must have shape {shape} {meaning}, got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValidationError(f"{name} must be finite (no NaN or infinity)")
    return a


def _check_random_state_type(random_state) -> None:
    """The type check of :func:`mogsgd._random.check_random_state`, without drawing from it."""
    if random_state is None or isinstance(random_state, np.random.Generator
                                          | np.random.RandomState):
        return
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        if random_state < 0:
            raise ValidationError(
                f"random_state must be a non-negative integer, got {random_state}")
        return
    raise ValidationError(
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
        raise ValidationError(
            f"checkpoint_path {str(path)!r} exists and is not a mogsgd checkpoint; refusing "
            "to overwrite it: choose another file name")
