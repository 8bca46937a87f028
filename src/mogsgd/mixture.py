"""``SGDMixture``: the whole of :class:`~mogsgd.estimator.SGDGaussianMixture` without
scikit-learn's base classes, a thin layer over data and solvers.

``import sklearn`` costs seconds (it imports SciPy's statistics and pandas); a command-line
fit of a small file takes less.  So the estimator's logic lives here, on NumPy and the
lower layers alone, and :class:`~mogsgd.estimator.SGDGaussianMixture` is this class with
scikit-learn's ``BaseEstimator`` and ``DensityMixin`` on top (``get_params``, cloning,
tags, ``NotFittedError``, DataFrame column names).  The command line fits with this class
(:mod:`mogsgd.cli`); everyone else uses the estimator.  Model files record both as
``SGDGaussianMixture``.

It adds no math and never looks at the type of its input.  ``fit`` validates
the settings, wraps ``X`` with :func:`mogsgd.data.as_source` (arrays, streams, Dask,
tensors), refuses what that input kind cannot do (:func:`mogsgd.solvers.check_supported`,
before any work), prepares the rows (standardised per feature, so default
hyper-parameters do not depend on the data's units; eq. 33 maps the likelihood back),
runs the restarts of the chosen solver (:func:`mogsgd.solvers.fit_runs`) and exposes the
result in data units with scikit-learn's attribute names.  Inference maps one per-row
function over the source (:meth:`mogsgd.data.Source.map_rows`) and returns the input's
kind.  Architecture: ``docs/architecture.md``.
"""

from __future__ import annotations

import functools
import inspect

import numpy as np

from mogsgd._random import check_random_state
from mogsgd.checkpoint import CheckpointWriter, locked, read_checkpoint
from mogsgd.covariance import family_of, get_family, sklearn_attributes
from mogsgd.data import FitPlan, Model, as_source
from mogsgd.errors import SettingsError, ValidationError
from mogsgd.model_io import load_model, save_model
from mogsgd.settings import (
    check_fit_state,
    compute_dtype,
    fit_settings,
    single_start,
    user_start,
)
from mogsgd.solvers import SOLVERS, RunSettings, check_supported, fit_runs, partial_epoch
from mogsgd.solvers.runs import Run, initial_params
from mogsgd.standardize import Standardizer, warn_unrepresentable
from mogsgd.validation import (
    check_choice,
    check_path,
    check_positive_int,
)

__all__ = ["SGDMixture"]


class SGDMixture:
    """:class:`~mogsgd.estimator.SGDGaussianMixture` without scikit-learn (same parameters,
    attributes and methods; see its documentation).  Here ``get_params``/``set_params``
    are plain, an unfitted model raises :class:`~mogsgd.errors.ValidationError`, and the
    column names of a DataFrame are neither recorded nor checked."""

    #: how model files and error messages name the model
    model_name = "SGDGaussianMixture"

    def __init__(
        self,
        n_components: int = 1,
        *,
        covariance_type: str = "diag",
        optimizer: str = "adam",
        learning_rate: float | None = None,
        schedule: str = "inverse_time",
        batch_size: int = 256,
        max_epochs: int | None = None,
        momentum: float = 0.9,
        min_variance: float = 1e-6,
        variance_floor: float | None = None,
        early_stopping: bool = True,
        validation_fraction: float | str = "auto",
        patience: int = 5,
        tol: float = 1e-4,
        n_init: int = 1,
        init: str = "auto",
        weights_init=None,
        means_init=None,
        variances_init=None,
        precisions_init=None,
        init_params: str | None = None,
        reg_covar: float | None = None,
        standardize: bool = True,
        solver: str = "sgd",
        max_iter: int | None = None,
        random_state=None,
        warm_start: bool = False,
        verbose: int = 0,
        callback=None,
        record_params: bool = False,
        dtype=None,
        checkpoint_path=None,
        checkpoint_every: int = 1,
        device=None,
        missing: str = "error",
        backend: str = "auto",
        refine: str = "auto",
    ) -> None:
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.schedule = schedule
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.momentum = momentum
        self.min_variance = min_variance
        self.variance_floor = variance_floor
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.tol = tol
        self.n_init = n_init
        self.init = init
        self.weights_init = weights_init
        self.means_init = means_init
        self.variances_init = variances_init
        self.precisions_init = precisions_init
        self.init_params = init_params
        self.reg_covar = reg_covar
        self.standardize = standardize
        self.solver = solver
        self.max_iter = max_iter
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.callback = callback
        self.record_params = record_params
        self.dtype = dtype
        self.checkpoint_path = checkpoint_path
        self.checkpoint_every = checkpoint_every
        self.device = device
        self.missing = missing
        self.backend = backend
        self.refine = refine

    # ------------------------------------------------------------ settings
    def _settings(self) -> tuple[FitPlan, RunSettings]:
        """Every hyper-parameter validated (before any work): how to prepare the rows and
        how to run the solver (:func:`mogsgd.settings.fit_settings`)."""
        return fit_settings(self.get_params(deep=False))

    # -------------------------------------------------------------- fitting
    def fit(self, X, y=None, sample_weight=None, *, resume=None) -> SGDMixture:
        """Fit the mixture to ``X`` (n_samples, n_features); ``y`` is ignored.

        ``X`` is an array, or out of core: a path, a stream source, an iterator of chunks,
        a Zarr or Dask array, a torch tensor (:func:`mogsgd.data.as_source`; what each
        supports is the table in the README, refused up front otherwise).

        ``sample_weight`` (n_samples,): non-negative frequency weights; the weighted
        NLL (eq. 31) is minimised and a weight of 2 acts like a duplicated row (exactly
        for EM, in expectation for the stochastic solvers: batches are drawn by index
        and weighted, eq. 32).

        ``resume``: a checkpoint file written by a fit of the same data with the
        same settings (``checkpoint_path``); training continues where it stopped
        and ends with exactly the parameters of an uninterrupted fit.  Settings
        that only matter from now on (``max_epochs``, ``patience``, ``tol``, ...)
        may differ, e.g. to train longer.  Raises
        :class:`mogsgd.checkpoint.TrainingInterrupted` (a ``KeyboardInterrupt``) after
        saving the state when interrupted with ``checkpoint_path`` set.
        """
        given = self.get_params(deep=False)   # once: scikit-learn's is not free
        plan, settings = fit_settings(given)
        source = as_source(X, device=self.device)
        solver = SOLVERS[self.solver]
        check_supported(source, solver=self.solver, sample_weight=sample_weight is not None,
                        checkpoint=resume is not None or self.checkpoint_path is not None,
                        covariance_type=self.covariance_type)
        self._check_feature_names(X, reset=True)   # feature_names_in_ from a DataFrame
        if "multi_pass" not in source.capabilities:  # read once: one pass of partial_fit
            if not self.warm_start:
                self._state = None
                self.__dict__.pop("params_", None)
            return self._partial_fit(source, plan, settings, sample_weight)
        rng = check_random_state(self.random_state)
        ckpt = check_rows = scaler = None
        if resume is not None:
            if not solver.stochastic:
                raise SettingsError(f"resume works with solver='sgd' or 'online_em', got "
                                    f"solver={self.solver!r}")
            ckpt = read_checkpoint(check_path("resume", resume, allow_none=False))
            scaler, check_rows = ckpt.restore(given, rng)
        continuing = ckpt is None and self.warm_start and hasattr(self, "params_")
        if continuing:
            scaler = self._scaler
        prepared = source.prepare(plan, rng, sample_weight=sample_weight, scaler=scaler,
                                  check_rows=check_rows)
        scaler = prepared.scaler
        warm_state = (self._state if continuing and solver.stochastic
                      and getattr(self, "_state", None) is not None else None)
        user = (self._params_std if continuing and not solver.stochastic  # EM continues
                else None if warm_state is not None
                else user_start(given, prepared.n_features))
        prior = None
        if continuing and not solver.stochastic and len(self.history_["train_nll"]) >= 2:
            # the mean log-likelihood before the previous fit's last step (standardised)
            prior = scaler.log_det - self.history_["train_nll"][-2]
        n_runs = 1 if warm_state is not None or single_start(user) else self.n_init
        with locked(self.checkpoint_path), locked(resume):  # one fit per checkpoint file
            writer = None if self.checkpoint_path is None else CheckpointWriter(
                check_path("checkpoint_path", self.checkpoint_path), self.checkpoint_every,
                given, prepared.fingerprint, scaler.center,
                scaler.scale, prepared.split_rng_state, n_runs)
            try:
                best = fit_runs(solver, prepared, settings, rng, n_runs=n_runs, user=user,
                                warm_state=warm_state, ckpt=ckpt, writer=writer,
                                prior_loglik=prior)
            except KeyboardInterrupt as exc:
                if writer is None or not writer.started_any:
                    raise
                raise writer.interrupted() from exc
        self._rng = rng
        self._set_fitted(best, prepared)
        return self

    def partial_fit(self, X, y=None, sample_weight=None) -> SGDMixture:
        """One epoch of the stochastic solver over ``X``, continuing the current state.

        ``sample_weight`` (n_samples,) weights the rows of this chunk (eq. 31-32).  The
        first call fixes the standardisation and initialises from ``X`` (which then needs
        at least ``n_components`` rows).  A stream is read in consecutive blocks of its
        ``buffer_rows`` rows, one epoch each.  ``solver="em"`` is refused (batch EM needs
        every row at each iteration; ``solver="online_em"`` is its incremental form).
        """
        plan, settings = self._settings()
        source = as_source(X, device=self.device)
        check_supported(source, solver=self.solver, sample_weight=sample_weight is not None,
                        partial=True, covariance_type=self.covariance_type)
        self._check_feature_names(X, reset=not hasattr(self, "params_"))
        return self._partial_fit(source, plan, settings, sample_weight)

    def _partial_fit(self, source, plan: FitPlan, settings: RunSettings,
                     sample_weight) -> SGDMixture:
        for block in source.blocks(plan, sample_weight):
            first = not hasattr(self, "params_") or getattr(self, "_state", None) is None
            prepared = block.prepare_block(
                plan, None if first else self._model(), sample_weight=sample_weight,
                scaler=None if first else self._scaler)
            start = state = None
            if first:
                self._scaler = prepared.scaler
                self._rng = check_random_state(self.random_state)
                start = initial_params(prepared, settings, self._rng,
                                       user_start(self.get_params(deep=False),
                                                  prepared.n_features))
            else:
                state = self._state
            run = partial_epoch(prepared, start, state, settings, self._rng)
            self._set_fitted(run, prepared)
        return self

    def fit_predict(self, X, y=None) -> np.ndarray:
        """Fit, then label the same rows with their most responsible component."""
        return self.fit(X).predict(X)

    # -------------------------------------------------------- fitted state
    def _set_fitted(self, run: Run, prepared) -> None:
        self.n_features_in_ = prepared.n_features
        self._scaler = prepared.scaler
        self._origin = None
        self._params_std = run.params
        self._state = run.state
        # float32 asked for: full, tied and spherical train in float64 (their compiled
        # passes are float64) and return float32, as diag does
        self.params_ = self._scaler.to_data(run.params).astype(compute_dtype(self.dtype))
        self.history_ = run.history
        self.converged_ = bool(run.converged)
        self.n_iter_ = int(run.n_iter)
        self.lower_bounds_ = list(run.lower_bounds)
        self.refine_iter_ = int(run.refine_iter)
        self.lower_bound_ = (run.lower_bound if run.lower_bound is not None
                             else prepared.lower_bound(run.params))
        self._set_derived()
        warn_unrepresentable(self.params_, stacklevel=4)

    def _set_derived(self) -> None:
        """The scikit-learn views of ``params_`` (natural parameters in data units, the
        shapes of ``covariance_type``)."""
        with np.errstate(divide="ignore", over="ignore", under="ignore"):
            # beyond the float range at extreme data scales: fit() warns about it
            for name, value in sklearn_attributes(family_of(self.params_),
                                                  self.params_).items():
                setattr(self, name, value)

    def export_fit_state(self) -> dict:
        """Everything a model file stores about the fit (:func:`mogsgd.model_io.save_model`)."""
        self._check_fitted()
        return {"n_features_in_": self.n_features_in_, "params_": self.params_,
                "params_std": self._params_std, "scaler_center": self._scaler.center,
                "scaler_scale": self._scaler.scale, "train_state": self._state,
                "history_": self.history_, "converged_": self.converged_,
                "n_iter_": self.n_iter_, "lower_bound_": self.lower_bound_,
                "lower_bounds_": [float(v) for v in getattr(self, "lower_bounds_", [])],
                "feature_names_in_": (None if not hasattr(self, "feature_names_in_")
                                      else [str(n) for n in self.feature_names_in_])}

    def restore_fit_state(self, fit: dict, origin: str | None = None) -> SGDMixture:
        """Inverse of :meth:`export_fit_state` (:func:`mogsgd.model_io.load_model`);
        ``origin`` names the model in error messages (the file it came from)."""
        self.n_features_in_ = check_fit_state(fit, self.covariance_type, self.n_components)
        self.params_, self._params_std = fit["params_"], fit["params_std"]
        self._scaler = Standardizer(fit["scaler_center"], fit["scaler_scale"])
        self._state = fit["train_state"]
        self.history_ = fit["history_"]
        self.converged_ = bool(fit["converged_"])
        self.n_iter_ = int(fit["n_iter_"])
        self.lower_bound_ = float(fit["lower_bound_"])
        self.lower_bounds_ = [float(v) for v in fit.get("lower_bounds_", [])]
        if fit.get("feature_names_in_") is not None:
            self.feature_names_in_ = np.asarray(fit["feature_names_in_"], dtype=object)
        self._rng = np.random.default_rng()  # partial_fit restores it from the train state
        self._origin = origin
        self._set_derived()
        return self

    # ------------------------------------------------------------ model files
    def save(self, path, *, force: bool = False):
        """Save the fitted model losslessly (:func:`mogsgd.model_io.save_model`)."""
        return save_model(self, path, force=force)

    @classmethod
    def load(cls, path, *, n_features: int | None = None) -> SGDMixture:
        """Load a model saved by :meth:`save` (:func:`mogsgd.model_io.load_model`), as this
        class."""
        return load_model(path, n_features=n_features, as_class=cls)

    @classmethod
    def from_checkpoint(cls, path) -> SGDMixture:
        """An unfitted estimator with the settings a checkpoint was written with; continue
        the fit with ``.fit(X, resume=path)`` (settings not stored, like a callback, are None)."""
        return cls(**read_checkpoint(path).settings)

    # ------------------------------------------------------------ inference
    def _model(self) -> Model:
        self._check_fitted()
        return Model(self.params_, self.n_features_in_, self.missing == "marginalize",
                     getattr(self, "_origin", None) or self.model_name, self.backend)

    def _source_for(self, X):
        """``(model, source)`` for inference; a DataFrame's columns must be those of fit."""
        model = self._model()
        self._check_feature_names(X, reset=False)
        return model, as_source(X, device=self.device, inference=True)

    def _infer(self, X, name: str):
        model, source = self._source_for(X)
        return source.map_rows(name, model)

    def score_samples(self, X) -> np.ndarray:
        """``log p(x_i)`` under the fitted model, shape (n_samples,), in the input's kind."""
        return self._infer(X, "score_samples")

    def predict_proba(self, X) -> np.ndarray:
        """Responsibilities ``gamma_ik``, shape (n_samples, n_components)."""
        return self._infer(X, "predict_proba")

    def predict(self, X) -> np.ndarray:
        """Most responsible component per row, shape (n_samples,)."""
        return self._infer(X, "predict")

    def iter_predict(self, X, what: str = "predict"):
        """``predict`` (or ``"predict_proba"``, ``"score_samples"``) one chunk at a time, in
        the input's order: for outputs of out-of-core inputs larger than memory."""
        check_choice("what", what, ("predict", "predict_proba", "score_samples"))
        model, source = self._source_for(X)
        return source.iter_rows(what, model)

    def _weighted_loglik(self, X, sample_weight) -> tuple[float, float]:
        """``(sum_i w_i log p(x_i), sum_i w_i)``; unit weights without ``sample_weight``."""
        model, source = self._source_for(X)
        if sample_weight is not None:
            check_supported(source, solver="sgd", sample_weight=True)
        return source.loglik_sum(model, sample_weight)

    def score(self, X, y=None, sample_weight=None) -> float:
        """Mean log-likelihood per sample (weighted mean with ``sample_weight``, eq. 31)."""
        total, n = self._weighted_loglik(X, sample_weight)
        return float(total / n)

    def bic(self, X, sample_weight=None) -> float:
        """Bayesian information criterion ``-2 L + p log n`` (eq. 38); lower is better.

        With ``sample_weight``, ``L`` is the weighted log-likelihood and ``n = sum w``."""
        total, n = self._weighted_loglik(X, sample_weight)
        return float(-2.0 * total + self.n_parameters() * np.log(n))

    def aic(self, X, sample_weight=None) -> float:
        """Akaike information criterion ``-2 L + 2 p`` (eq. 38); lower is better."""
        total, _ = self._weighted_loglik(X, sample_weight)
        return float(-2.0 * total + 2.0 * self.n_parameters())

    def n_parameters(self) -> int:
        """Free parameters of ``covariance_type``, as scikit-learn counts them (eq. 51)."""
        self._check_fitted()
        return get_family(self.covariance_type).n_parameters(self.n_components,
                                                             self.n_features_in_)

    _n_parameters = n_parameters  # scikit-learn's name

    def sample(self, n_samples: int = 1, random_state=None) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``(X, y)``: points (n_samples, D), in the fitted parameters' dtype (float32
        for ``dtype=np.float32``), and their component labels."""
        self._check_fitted()
        n_samples = check_positive_int("n_samples", n_samples)
        rng = check_random_state(self.random_state if random_state is None else random_state)
        X, y = family_of(self.params_).sample(self.params_, rng, n_samples)
        return X.astype(self.params_.dtype, copy=False), y

    # -------------------------------------- the parts scikit-learn's base classes replace
    @classmethod
    def _param_names(cls) -> list[str]:
        return list(_constructor_names(cls))

    def get_params(self, deep: bool = True) -> dict:
        """The constructor's arguments by name."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params) -> SGDMixture:
        """Change constructor arguments; an unknown name is refused."""
        names = self._param_names()
        for name, value in params.items():
            if name not in names:
                raise ValidationError(f"{self.model_name} has no parameter {name!r}; the "
                                      f"parameters are {', '.join(names)}")
            setattr(self, name, value)
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "params_"):
            raise ValidationError(f"this {self.model_name} is not fitted yet; call fit first")

    def _check_feature_names(self, X, *, reset: bool) -> None:
        """Column names of a DataFrame: recorded and checked by the estimator only."""


@functools.cache
def _constructor_names(cls) -> tuple[str, ...]:
    """The names of ``cls.__init__``'s parameters, sorted: read from the signature once per
    class (every fit asks for them, and ``inspect.signature`` costs ~0.1 ms)."""
    return tuple(sorted(name for name in inspect.signature(cls.__init__).parameters
                        if name != "self"))
