"""``SGDGaussianMixture``: the scikit-learn estimator, a thin layer over data and solvers.

The estimator adds no math and never looks at the type of its input.  ``fit`` validates
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

import numpy as np
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.utils.validation import _check_feature_names, check_is_fitted

from mogsgd._random import check_random_state
from mogsgd.checkpoint import CheckpointWriter, locked, read_checkpoint
from mogsgd.covariance import family_of, get_family, sklearn_attributes
from mogsgd.data import FitPlan, Model, as_source
from mogsgd.errors import ValidationError
from mogsgd.model_io import load_model, register_estimator, save_model
from mogsgd.settings import check_fit_state, fit_settings, single_start, user_start
from mogsgd.solvers import SOLVERS, RunSettings, check_supported, fit_runs, partial_epoch
from mogsgd.solvers.runs import Run, initial_params
from mogsgd.standardize import Standardizer, warn_unrepresentable
from mogsgd.validation import (
    check_choice,
    check_path,
    check_positive_int,
)

__all__ = ["SGDGaussianMixture", "Standardizer"]


class SGDGaussianMixture(DensityMixin, BaseEstimator):
    """Mixture of Gaussians fitted by mini-batch SGD with analytic gradients.

    Parameters
    ----------
    n_components : int, default=1
        Number of mixture components K.
    covariance_type : {"diag", "full", "tied", "spherical"}, default="diag"
        scikit-learn's covariance structures; full and tied are stored as log-Cholesky
        factors of the precision (eq. 39), so every SGD step gives a valid model.
    optimizer : {"adam", "sgd", "momentum", "nesterov"}, default="adam"
    learning_rate : float or None
        Step size on standardised data; ``None`` picks a default per optimiser.
    schedule : {"inverse_time", "constant", "cosine"}, default="inverse_time"
    batch_size : int, default=256
    max_epochs : int or None
        Epoch budget; ``None`` gives about 4000 steps (20 to 2000 epochs).
    momentum : float, default=0.9
        beta of the momentum optimisers.
    min_variance : float, default=1e-6
        Floor on every covariance eigenvalue in standardised units (eqs. 26, 46):
        ``min_variance * var(x_d)`` in data units.  (scikit-learn's ``reg_covar`` is refused.)
    early_stopping : bool, default=True
        Stop when the validation NLL stops improving by ``tol`` for ``patience`` epochs.
    validation_fraction : float or "auto", default="auto"
        Share of rows held out for early stopping; ``"auto"``: 10% when that is at least
        100 rows, else the training NLL is watched.
    patience : int, default=5
    tol : float, default=1e-4
        Improvement in nats per point that resets the patience counter (EM: the
        log-likelihood change that stops it).
    n_init : int, default=1
        Restarts from different initialisations; the best validation NLL wins.
    init : {"auto", "kmeans++", "kmeans", "random_points", "random"}, default="auto"
        ``"auto"``: small in-memory data: 10 random rows as means, each polished by EM, the
        best kept; else ``"kmeans++"``.  (``init_params`` is scikit-learn's name.)
    weights_init, means_init, precisions_init, variances_init : arrays or None
        Initial parameters in data units: (K,), (K, D), precisions in scikit-learn's shape,
        diagonal variances (K, D); any subset (the others come from ``init``, as in
        scikit-learn); zero weights are allowed.
    standardize : bool, default=True
        Fit on per-feature standardised data (results are reported in data units).
    solver : {"sgd", "em", "online_em"}, default="sgd"
        Mini-batch SGD on the NLL, batch EM, or online EM (stochastic approximation
        of EM's sufficient statistics, eq. 36, Polyak–Ruppert averaged after one
        epoch, eq. 37) run by the same mini-batch loop.
    max_iter : int or None, default=None
        scikit-learn's budget: EM iterations (``None``: 200); for the stochastic solvers a
        cap on the epochs (with ``max_epochs``, the smaller counts).
    random_state : int, Generator or None
    warm_start : bool, default=False
        Continue from the previous fit's parameters and optimiser state.
    verbose : int, default=0
        Progress on stdout: 1 a line per initialisation, 2 also every 10 iterations.
    callback : callable or None
        ``callback(state)`` after each epoch (a TrainState); returning ``False`` stops.
    record_params : bool, default=False
        Keep the parameters (data units) after every epoch in ``history_["params"]``.
    dtype : None, np.float64 or np.float32, default=None
        Precision of the computation: ``None`` (or float64) computes in float64 whatever the
        input; ``np.float32`` (diag only) trains and returns float32 (half the memory).
    checkpoint_path : str, Path or None, default=None
        With ``solver="sgd"`` or ``"online_em"``, write the full training state to
        this file every ``checkpoint_every`` epochs, at each restart and at the end; a
        ``KeyboardInterrupt`` saves it too and is re-raised as
        :class:`mogsgd.checkpoint.TrainingInterrupted`.  Continue with
        ``fit(X, resume=checkpoint_path)``.  An existing file that is not a mogsgd
        checkpoint is never overwritten.
    checkpoint_every : int, default=1
        Epochs between checkpoints.  Each write costs a few milliseconds (it is
        flushed to disk); raise it when epochs are much shorter than that.  A
        ``KeyboardInterrupt`` always saves the last complete epoch.
    missing : {"error", "marginalize"}, default="error"
        What NaN entries mean.  ``"error"`` refuses them; ``"marginalize"`` treats
        them as missing coordinates and integrates them out exactly (with diagonal
        covariances the term of a missing feature drops from the log-density,
        eq. 34) in training, EM, scoring and prediction; a row with every
        feature missing is refused.  Diagonal covariances only.
    device : None, "cpu-numpy", "cpu", "cuda", "cuda:N" or torch.device, default=None
        Where to compute (:mod:`mogsgd.backends`).  ``None`` follows the input: NumPy
        for arrays, the torch backend on the tensor's device for a ``torch.Tensor``
        (or a CUDA array that speaks DLPack, e.g. CuPy); ``"cpu-numpy"`` always NumPy;
        a torch device moves the data there (needs ``mogsgd[torch]``; ``solver="sgd"``).
        Fitted attributes are NumPy either way; inference returns the input's kind.
    backend : {"auto", "numpy", "numba"}, default="auto"
        CPU kernels on the NumPy path: ``"numba"`` the compiled kernels of
        :mod:`mogsgd.fast` (fused gradients, whole epochs compiled, inference); ``"numpy"`` the
        NumPy reference; ``"auto"`` numba where it works, else NumPy with one
        :class:`mogsgd.errors.FallbackWarning`.  Results agree to rounding.
    refine : {"auto", "em", "none"}, default="auto"
        End a stochastic fit on the optimum of its objective: EM steps from its solution,
        with the variance floor as a projection, until the gain still to come is < 1e-7
        nats per row (at most 1000; ``refine_iter_``).  ``"auto"``: for in-memory rows (a
        step is one pass); ``"em"``: also streams and Dask; ``"none"``: end at the last
        stochastic iterate (within the gradient noise of the optimum), unpolished init.

    Attributes
    ----------
    weights_ : (K,)   means_ : (K, D)   covariances_, precisions_, precisions_cholesky_ :
        scikit-learn's shapes: (K, D, D) full, (D, D) tied, (K, D) diag, (K,) spherical
    params_ : MixtureParams in data units   n_features_in_ : int
    converged_ : bool
        EM: the log-likelihood changed by less than ``tol``; SGD: early stopping ended it
        (or, without, the NLL gained < ``tol`` in ``patience`` periods) or the refinement
        reached EM's fixed point.
    n_iter_ : int
        Epochs or EM iterations run by this call of ``fit`` (with ``warm_start`` the
        cumulative count is ``history_["epoch"][-1]``); ``partial_fit`` counts all epochs.
    lower_bound_ : float    mean log-likelihood per row of the fitted data
    lower_bounds_ : list    the mean log-likelihood after each epoch or iteration of the call
    history_ : dict of per-epoch lists ``epoch, train_nll, val_nll, lr, time`` (cumulative)

    Models save and load without loss with :meth:`save` / :meth:`load`
    (:mod:`mogsgd.model_io`).
    """

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
    def fit(self, X, y=None, sample_weight=None, *, resume=None) -> SGDGaussianMixture:
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
        plan, settings = self._settings()
        source = as_source(X, device=self.device)
        solver = SOLVERS[self.solver]
        check_supported(source, solver=self.solver, sample_weight=sample_weight is not None,
                        checkpoint=resume is not None or self.checkpoint_path is not None,
                        covariance_type=self.covariance_type)
        _check_feature_names(self, X, reset=True)   # feature_names_in_ from a DataFrame
        if "multi_pass" not in source.capabilities:  # read once: one pass of partial_fit
            if not self.warm_start:
                self._state = None
                self.__dict__.pop("params_", None)
            return self._partial_fit(source, plan, settings, sample_weight)
        rng = check_random_state(self.random_state)
        ckpt = check_rows = scaler = None
        if resume is not None:
            if not solver.stochastic:
                raise ValidationError(f"resume works with solver='sgd' or 'online_em', got "
                                      f"solver={self.solver!r}")
            ckpt = read_checkpoint(check_path("resume", resume, allow_none=False))
            scaler, check_rows = ckpt.restore(self.get_params(deep=False), rng)
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
                else user_start(self.get_params(deep=False), prepared.n_features))
        prior = None
        if continuing and not solver.stochastic and len(self.history_["train_nll"]) >= 2:
            # the mean log-likelihood before the previous fit's last step (standardised)
            prior = scaler.log_det - self.history_["train_nll"][-2]
        n_runs = 1 if warm_state is not None or single_start(user) else self.n_init
        with locked(self.checkpoint_path), locked(resume):  # one fit per checkpoint file
            writer = None if self.checkpoint_path is None else CheckpointWriter(
                check_path("checkpoint_path", self.checkpoint_path), self.checkpoint_every,
                self.get_params(deep=False), prepared.fingerprint, scaler.center,
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

    def partial_fit(self, X, y=None, sample_weight=None) -> SGDGaussianMixture:
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
        _check_feature_names(self, X, reset=not hasattr(self, "params_"))
        return self._partial_fit(source, plan, settings, sample_weight)

    def _partial_fit(self, source, plan: FitPlan, settings: RunSettings,
                     sample_weight) -> SGDGaussianMixture:
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
        self.params_ = self._scaler.to_data(run.params)
        self.history_ = run.history
        self.converged_ = bool(run.converged)
        self.n_iter_ = int(run.n_iter)
        self.lower_bounds_ = list(run.lower_bounds)
        self.refine_iter_ = int(run.refine_iter)
        self.lower_bound_ = prepared.lower_bound(run.params)
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
        check_is_fitted(self, "params_")
        return {"n_features_in_": self.n_features_in_, "params_": self.params_,
                "params_std": self._params_std, "scaler_center": self._scaler.center,
                "scaler_scale": self._scaler.scale, "train_state": self._state,
                "history_": self.history_, "converged_": self.converged_,
                "n_iter_": self.n_iter_, "lower_bound_": self.lower_bound_,
                "lower_bounds_": [float(v) for v in getattr(self, "lower_bounds_", [])],
                "feature_names_in_": (None if not hasattr(self, "feature_names_in_")
                                      else [str(n) for n in self.feature_names_in_])}

    def restore_fit_state(self, fit: dict, origin: str | None = None) -> SGDGaussianMixture:
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
    def load(cls, path, *, n_features: int | None = None) -> SGDGaussianMixture:
        """Load a model saved by :meth:`save` (:func:`mogsgd.model_io.load_model`)."""
        return load_model(path, n_features=n_features)

    @classmethod
    def from_checkpoint(cls, path) -> SGDGaussianMixture:
        """An unfitted estimator with the settings a checkpoint was written with; continue
        the fit with ``.fit(X, resume=path)`` (settings not stored, like a callback, are None)."""
        return cls(**read_checkpoint(path).settings)

    # ------------------------------------------------------------ inference
    def _model(self) -> Model:
        check_is_fitted(self, "params_")
        return Model(self.params_, self.n_features_in_, self.missing == "marginalize",
                     getattr(self, "_origin", None) or type(self).__name__, self.backend)

    def _source_for(self, X):
        """``(model, source)`` for inference; a DataFrame's columns must be those of fit."""
        model = self._model()
        _check_feature_names(self, X, reset=False)
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
        check_is_fitted(self, "params_")
        return get_family(self.covariance_type).n_parameters(self.n_components,
                                                             self.n_features_in_)

    _n_parameters = n_parameters  # scikit-learn's name

    def sample(self, n_samples: int = 1, random_state=None) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``(X, y)``: points (n_samples, D) and their component labels."""
        check_is_fitted(self, "params_")
        n_samples = check_positive_int("n_samples", n_samples)
        rng = check_random_state(self.random_state if random_state is None else random_state)
        return family_of(self.params_).sample(self.params_, rng, n_samples)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = False
        return tags


register_estimator(SGDGaussianMixture)
