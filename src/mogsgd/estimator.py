"""``SGDGaussianMixture``: the scikit-learn estimator, a thin wrapper over ``train`` and ``em``.

The estimator adds no math.  It validates input, standardises the data per
feature (so default hyper-parameters do not depend on the data's units; the
likelihood maps back with the log-determinant of eq. 33), initialises, runs
:func:`mogsgd.train.train` (``solver="sgd"``) or :func:`mogsgd.em.fit_em`
(``solver="em"``), keeps the best of ``n_init`` restarts and exposes the
result in data units with scikit-learn's attribute names.

Robustness decisions (tested in ``tests/test_robustness.py``):

* every hyper-parameter and the data are checked before any work, with
  messages that name the value and the fix (:mod:`mogsgd.validation`);
* the standardiser is safe at any scale (it works on the data divided by a
  power of two) and falls back to the median and inter-quartile range for a
  feature dominated by a few far outliers, so one point at 1e8 does not squash
  the others onto the variance floor;
* ``dtype=None`` computes in float64 whatever the input; ``dtype=np.float32``
  computes in float32 and returns float32 parameters and scores;
* a component that gets no points of its own (more components than distinct
  rows, or one that loses its points) is kept, not re-seeded: its variance
  stays at or above the floor ``min_variance`` and its weight shrinks towards
  (but never reaches) zero, so every parameter stays finite; EM keeps its old
  mean and variance (:func:`mogsgd.em.m_step`).  Fitting more components than
  the data has distinct rows warns;
* models save and load losslessly (:mod:`mogsgd.model_io`) and SGD fits can
  be checkpointed and resumed bit for bit (:mod:`mogsgd.checkpoint`).
"""

from __future__ import annotations

import copy
import numbers
import warnings

import numpy as np
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.utils.validation import check_is_fitted

from mogsgd import fast, stream
from mogsgd._random import check_random_state
from mogsgd.backends import uses_torch
from mogsgd.density import log_prob, log_resp, nll
from mogsgd.em import fit_em
from mogsgd.errors import ConvergenceWarning, ValidationError
from mogsgd.init import INIT_METHODS, distinct_rows, init_params
from mogsgd.params import MixtureParams
from mogsgd.train import TrainConfig, TrainState, train
from mogsgd.validation import (
    check_bool,
    check_callable,
    check_choice,
    check_data,
    check_dtype,
    check_fraction,
    check_path,
    check_positive_float,
    check_positive_int,
    check_sample_weight,
)

__all__ = ["SGDGaussianMixture", "Standardizer"]

SOLVERS = ("sgd", "em", "online_em")
#: Solvers run by the mini-batch loop of :func:`mogsgd.train.train` (checkpointable).
STOCHASTIC_SOLVERS = ("sgd", "online_em")


#: Inter-quartile range of the standard normal, ``2 Phi^-1(3/4)``.
IQR_NORMAL = 1.3489795003921634

#: At most about this many evenly spaced rows go into the standardiser's quantiles.
QUANTILE_ROWS = 100_000

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
        with np.errstate(all="ignore"):
            amax = np.nanmax(np.abs(X), axis=0)
        usable = np.isfinite(amax) & (amax > 0)
        power = np.ldexp(1.0, np.frexp(np.where(usable, amax, 1.0))[1] - 1)
        Y = X / power  # exact: power is a power of two
        missing = np.isnan(Y).any()
        mean, std, percentile = ((np.nanmean, np.nanstd, np.nanpercentile) if missing
                                 else (np.mean, np.std, np.percentile))
        if sample_weight is None:
            center, spread = mean(Y, axis=0), std(Y, axis=0)
        else:
            center, spread = _weighted_moments(Y, np.asarray(sample_weight, dtype=np.float64))
        # quantiles only decide whether far outliers dominate a feature: evenly spaced
        # rows (no randomness) are enough on large data and cost a fraction of a sort
        step = max(1, len(Y) // QUANTILE_ROWS)
        q1, median, q3 = percentile(Y[::step], [25.0, 50.0, 75.0], axis=0)
        robust = (q3 - q1) / IQR_NORMAL
        outliers = (robust > 0) & (spread > OUTLIER_RATIO * robust)
        center = np.where(outliers, median, center) * power
        scale = np.where(outliers, robust, spread) * power
        center = np.where(np.isfinite(center), center, 0.0)
        scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
        return cls(center, scale)

    @property
    def log_det(self) -> float:
        """``sum_d log s_d``: NLL in data units = NLL standardised + log_det (eq. 33)."""
        return float(np.log(self.scale).sum())

    def transform(self, X: np.ndarray) -> np.ndarray:
        return ((X - self.center) / self.scale).astype(X.dtype, copy=False)

    def to_data(self, p: MixtureParams) -> MixtureParams:
        """Parameters on standardised data -> parameters in data units (same dtype as ``p``)."""
        return MixtureParams(means=(p.means * self.scale + self.center).astype(p.dtype),
                             log_sigma=(p.log_sigma + np.log(self.scale)).astype(p.dtype),
                             logits=p.logits)

    def from_data(self, p: MixtureParams) -> MixtureParams:
        return MixtureParams(means=((p.means - self.center) / self.scale).astype(p.dtype),
                             log_sigma=(p.log_sigma - np.log(self.scale)).astype(p.dtype),
                             logits=p.logits)


def _weighted_moments(Y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted per-feature mean and standard deviation, ignoring NaN (two passes)."""
    observed = ~np.isnan(Y)
    Wd = w @ observed
    Y0 = np.where(observed, Y, 0.0)
    mean = (w @ Y0) / Wd
    dev = np.where(observed, Y - mean, 0.0)
    return mean, np.sqrt((w @ (dev * dev)) / Wd)


def _impute_for_init(Z: np.ndarray) -> np.ndarray:
    """Missing entries set to the standardised mean (0), for the k-means++ seeding only."""
    return np.where(np.isnan(Z), 0.0, Z) if np.isnan(Z).any() else Z


MISSING = ("error", "marginalize")


class SGDGaussianMixture(DensityMixin, BaseEstimator):
    """Mixture of diagonal Gaussians fitted by mini-batch SGD with analytic gradients.

    Parameters
    ----------
    n_components : int, default=1
        Number of mixture components K.
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
        Variance floor in standardised units (eq. 26); EM adds it as ``reg_covar``.
    early_stopping : bool, default=True
        Stop when the validation NLL stops improving by ``tol`` for ``patience`` epochs.
    validation_fraction : float or "auto", default="auto"
        Share of rows held out for early stopping.  ``"auto"`` holds out 10% when
        that is at least 100 rows and otherwise watches the training NLL (a
        validation set of a few dozen rows stops too noisily).
    patience : int, default=5
    tol : float, default=1e-4
        Improvement in nats per point that resets the patience counter (EM: the
        log-likelihood change that stops it).
    n_init : int, default=1
        Restarts from different initialisations; the best validation NLL wins.
    init : {"kmeans++", "kmeans", "random_points"}, default="kmeans++"
    weights_init, means_init, variances_init : arrays or None
        User-given initial parameters in data units (all three, or none).
    standardize : bool, default=True
        Fit on per-feature standardised data (results are reported in data units).
    solver : {"sgd", "em", "online_em"}, default="sgd"
        Mini-batch SGD on the NLL, batch EM, or online EM (stochastic approximation
        of EM's sufficient statistics, eq. 36, Polyak–Ruppert averaged after one
        epoch, eq. 37) run by the same mini-batch loop.
    max_iter : int, default=200
        EM iteration budget (``solver="em"``).
    random_state : int, Generator or None
    warm_start : bool, default=False
        Continue from the previous fit's parameters and optimiser state.
    verbose : int, default=0
    callback : callable or None
        ``callback(state)`` after each epoch (:class:`mogsgd.train.TrainState`);
        returning ``False`` stops training.
    record_params : bool, default=False
        Keep the parameters (data units) after every epoch in ``history_["params"]``.
    dtype : None, np.float64 or np.float32, default=None
        Precision of the computation.  ``None`` (or float64) computes in float64
        whatever the input (float32 and integer data are converted) and returns
        float64; ``np.float32`` converts the data to float32, trains in float32 and
        returns float32 parameters and scores (half the memory, ~7 significant digits).
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
        feature missing is refused.
    device : None, "cpu-numpy", "cpu", "cuda", "cuda:N" or torch.device, default=None
        Where to compute (:mod:`mogsgd.backends`).  ``None`` follows the input: NumPy
        for arrays, the torch backend on the tensor's device for a ``torch.Tensor``
        (or a CUDA array that speaks DLPack, e.g. CuPy); ``"cpu-numpy"`` always NumPy;
        a torch device moves the data there (needs ``mogsgd[torch]``; ``solver="sgd"``).
        Fitted attributes are NumPy either way; inference returns the input's kind.
    backend : {"auto", "numpy", "numba"}, default="auto"
        CPU kernels on the NumPy path: ``"numba"`` the compiled kernels of
        :mod:`mogsgd.fast` (fused gradients, whole epochs compiled); ``"numpy"`` the
        NumPy reference; ``"auto"`` numba where it works, else NumPy with one
        :class:`mogsgd.errors.FallbackWarning`.  Results agree to rounding.

    Attributes
    ----------
    weights_ : (K,)   means_ : (K, D)   covariances_ : (K, D) diagonal variances
    params_ : MixtureParams in data units
    converged_ : bool   n_iter_ : int   n_features_in_ : int   lower_bound_ : float
    history_ : dict of per-epoch lists ``epoch, train_nll, val_nll, lr, time``

    Models save and load without loss with :meth:`save` / :meth:`load`
    (:mod:`mogsgd.model_io`).
    """

    def __init__(
        self,
        n_components: int = 1,
        *,
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
        init: str = "kmeans++",
        weights_init=None,
        means_init=None,
        variances_init=None,
        standardize: bool = True,
        solver: str = "sgd",
        max_iter: int = 200,
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
    ) -> None:
        self.n_components = n_components
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

    # ------------------------------------------------------------ validation
    def _train_config(self) -> TrainConfig:
        return TrainConfig(
            solver="online_em" if self.solver == "online_em" else "sgd",
            optimizer=self.optimizer, learning_rate=self.learning_rate, schedule=self.schedule,
            batch_size=self.batch_size, max_epochs=self.max_epochs, momentum=self.momentum,
            min_variance=self.min_variance, early_stopping=self.early_stopping,
            patience=self.patience, tol=self.tol,
        )

    def _check_hyperparameters(self) -> TrainConfig:
        check_positive_int("n_components", self.n_components)
        check_positive_int("n_init", self.n_init)
        check_positive_int("max_iter", self.max_iter)
        check_choice("init", self.init, INIT_METHODS)
        check_choice("solver", self.solver, SOLVERS)
        check_choice("missing", self.missing, MISSING)
        if isinstance(self.validation_fraction, str) and self.validation_fraction != "auto":
            raise ValidationError(f"validation_fraction must be 'auto' or a number in [0, 1), "
                                  f"got {self.validation_fraction!r}")
        if self.validation_fraction != "auto":
            check_fraction("validation_fraction", self.validation_fraction)
        check_positive_float("min_variance", self.min_variance)
        for flag in ("early_stopping", "standardize", "warm_start", "record_params"):
            check_bool(flag, getattr(self, flag))
        if not isinstance(self.verbose, bool):
            check_positive_int("verbose", self.verbose, minimum=0)
        check_callable("callback", self.callback)
        check_dtype("dtype", self.dtype)
        _check_random_state_type(self.random_state)
        path = check_path("checkpoint_path", self.checkpoint_path)
        check_positive_int("checkpoint_every", self.checkpoint_every)
        check_choice("backend", self.backend, fast.BACKENDS)
        if path is not None:
            if self.solver not in STOCHASTIC_SOLVERS:
                raise ValidationError(
                    f"checkpoint_path works with solver='sgd' or 'online_em', got "
                    f"solver={self.solver!r}; remove checkpoint_path (batch EM runs are short) "
                    "or use a stochastic solver")
            _check_checkpoint_target(path)
        return self._train_config()

    def _compute_dtype(self) -> np.dtype:
        """float32 only when asked for with ``dtype``; float64 otherwise."""
        return check_dtype("dtype", self.dtype) or np.dtype(np.float64)

    def _allow_nan(self) -> bool:
        return getattr(self, "missing", "error") == "marginalize"

    def _validate(self, X, *, reset: bool, min_samples: int = 1) -> np.ndarray:
        if reset:
            return check_data(X, min_samples=min_samples, dtype=self._compute_dtype(),
                              allow_nan=self._allow_nan())
        check_is_fitted(self, "params_")
        owner = getattr(self, "_source", None) or type(self).__name__
        return check_data(X, n_features=self.n_features_in_, owner=owner,
                          min_samples=min_samples, dtype=self.params_.dtype,
                          allow_nan=self._allow_nan())

    def _check_fit_data(self, X) -> np.ndarray:
        k = self.n_components
        reason = (f"n_components={k} needs at least {k} rows; lower n_components or add data"
                  if k >= 2 else "a variance needs at least 2 rows")
        X = check_data(X, min_samples=max(2, k), min_samples_reason=reason,
                       dtype=self._compute_dtype(), allow_nan=self._allow_nan())
        distinct = _count_distinct_rows(X, k)
        if distinct < k:
            warnings.warn(
                f"X has only {distinct} distinct row(s) for n_components={k}: {k - distinct} "
                "component(s) cannot get points of their own; they are kept (not re-seeded) "
                "with variances at or above min_variance and weights shrinking towards 0. "
                f"Use n_components <= {distinct} to fit without them", UserWarning,
                stacklevel=3)
        return X

    def _user_init(self, scaler: Standardizer) -> MixtureParams | None:
        given = [a is not None for a in (self.weights_init, self.means_init, self.variances_init)]
        if not any(given):
            return None
        if not all(given):
            raise ValidationError("weights_init, means_init and variances_init must be given "
                                  "together (or none of them)")
        p = MixtureParams.from_moments(self.weights_init, self.means_init, self.variances_init)
        if p.n_components != self.n_components or p.n_features != self.n_features_in_:
            raise ValidationError(
                f"initial parameters have shape (K={p.n_components}, D={p.n_features}); the "
                f"model needs K={self.n_components}, D={self.n_features_in_}")
        return scaler.from_data(p.astype(self._compute_dtype()))

    # -------------------------------------------------------------- fitting
    def fit(self, X, y=None, sample_weight=None, *, resume=None) -> SGDGaussianMixture:
        """Fit the mixture to ``X`` (n_samples, n_features); ``y`` is ignored.

        ``sample_weight`` (n_samples,): non-negative frequency weights; the weighted
        NLL (eq. 31) is minimised and a weight of 2 acts like a duplicated row (exactly
        for EM, in expectation for the stochastic solvers: batches are drawn by index
        and weighted, eq. 32).

        ``resume``: a checkpoint file written by a fit of the same data with the
        same settings (``checkpoint_path``); training continues where it stopped
        and ends with exactly the parameters of an uninterrupted fit.  Settings
        that only matter from now on (``max_epochs``, ``patience``, ``tol``, ...)
        may differ, e.g. to train longer.

        Raises :class:`mogsgd.checkpoint.TrainingInterrupted` (a ``KeyboardInterrupt``)
        after saving the state when interrupted with ``checkpoint_path`` set.

        ``X`` may be out of core: a path, a stream source, an iterator of chunks, a Zarr or
        Dask array (:mod:`mogsgd.stream`, :mod:`mogsgd.distributed`).
        """
        if stream.is_stream_source(X):
            return stream.fit(self, X, sample_weight=sample_weight, resume=resume)
        if uses_torch(self.device, X):
            return _torch_estimator().fit(self, X, resume=resume)
        config = self._check_hyperparameters()
        X = self._check_fit_data(X)
        w = check_sample_weight(sample_weight, X.shape[0])
        if w is not None and self.checkpoint_path is not None:
            raise ValidationError("checkpoint_path does not support sample_weight yet; fit "
                                  "without checkpointing or without weights")
        X_data, w_data = X, w
        if len(X) <= self.batch_size and not np.isnan(X).any():
            # full-batch regime: train on the distinct rows in a canonical order with
            # their total weights, so duplicated rows and integer weights (and zero
            # weights and removed rows) give exactly the same fit
            X, w = distinct_rows(X, w)
        ckpt = None
        if resume is not None:
            from mogsgd.checkpoint import read_checkpoint

            if self.solver not in STOCHASTIC_SOLVERS:
                raise ValidationError(f"resume works with solver='sgd' or 'online_em', got "
                                      f"solver={self.solver!r}")
            ckpt = read_checkpoint(check_path("resume", resume, allow_none=False))
            ckpt.check_compatible(self.get_params(deep=False), X)
        rng = check_random_state(self.random_state)
        continuing = ckpt is None and self.warm_start and hasattr(self, "params_")
        if continuing and X.shape[1] != self.n_features_in_:
            raise ValidationError(f"X has {X.shape[1]} features, but {type(self).__name__} is "
                                  f"expecting {self.n_features_in_} features as input")
        if ckpt is not None:
            self.n_features_in_ = X.shape[1]
            self._scaler = Standardizer(ckpt.center, ckpt.scale)
            rng.bit_generator.state = copy.deepcopy(ckpt.split_rng_state)
        elif not continuing:
            self.n_features_in_ = X.shape[1]
            self._scaler = Standardizer.fit(X, self.standardize, w)
        self._source = None
        split_rng_state = copy.deepcopy(rng.bit_generator.state)
        Z = self._scaler.transform(X)
        n_val = self._n_validation(len(Z))
        order = rng.permutation(len(Z))
        Z_val = Z[order[:n_val]] if n_val else None
        Z_train = Z[order[n_val:]] if n_val else Z
        self._weights = None
        if w is not None:
            self._weights = (w[order[n_val:]] if n_val else w, w[order[:n_val]] if n_val
                             else None)

        warm = (continuing and self.solver in STOCHASTIC_SOLVERS
                and getattr(self, "_state", None) is not None)
        if continuing and self.solver == "em":
            user = self._params_std
        else:
            user = None if warm else self._user_init(self._scaler)
        n_runs = 1 if warm or user is not None else self.n_init
        writer = None
        if self.checkpoint_path is not None:
            from mogsgd.checkpoint import CheckpointWriter

            writer = CheckpointWriter(
                check_path("checkpoint_path", self.checkpoint_path), self.checkpoint_every,
                self.get_params(deep=False), X, self._scaler.center, self._scaler.scale,
                split_rng_state, n_runs)
        try:
            best = self._fit_runs(Z_train, Z_val, config, rng, n_runs=n_runs, user=user,
                                  warm_state=self._state if warm else None, ckpt=ckpt,
                                  writer=writer)
        except KeyboardInterrupt as exc:
            if writer is None or not writer.started_any:
                raise
            raise writer.interrupted() from exc
        self._rng = rng
        self._weights = None
        self._set_fitted(best, X_data, sample_weight=w_data)
        return self

    def _fit_runs(self, Z_train, Z_val, config, rng, *, n_runs, user, warm_state, ckpt,
                  writer) -> dict:
        """Run restarts ``0 .. n_runs - 1`` (from a checkpoint's restart) and keep the best.

        ``best`` and every run are dicts ``params, state, history, score,
        converged, n_iter``; a lower ``score`` (validation or training NLL) wins.
        """
        first, best, pending = 0, None, None
        if ckpt is not None:
            first, best, pending = ckpt.restart, ckpt.best, ckpt
        elif warm_state is not None:
            pending = warm_state
        for restart in range(first, n_runs):
            state = start = None
            if isinstance(pending, TrainState):
                state = pending
            elif pending is not None:
                rng.bit_generator.state = copy.deepcopy(pending.rng_state)
                state, start = pending.train_state, pending.start_params
            if writer is not None:  # where this restart starts: before or after its init
                writer.begin_restart(restart, rng, best, start_params=start, train_state=state)
            if state is None and start is None:
                w_train = None if self._weights is None else self._weights[0]
                start = user if user is not None else init_params(
                    _impute_for_init(Z_train), self.n_components, self.init, rng,
                    self.min_variance, sample_weight=w_train)
                if writer is not None:
                    writer.started(start, rng)
            pending = None
            if self.solver == "em":
                run = self._run_em(Z_train, Z_val, start)
            else:
                run = self._run_sgd(Z_train, Z_val, config, rng, params=start, state=state,
                                    writer=writer, extend=warm_state is not None)
            if best is None or run["score"] < best["score"]:
                best = run
        if writer is not None:
            writer.save(complete=True)
        return best

    def _n_validation(self, n: int) -> int:
        if not self.early_stopping or self.solver == "em":  # EM fits every row
            return 0
        if self.validation_fraction == "auto":
            n_val = int(round(0.1 * n))
            return n_val if n_val >= 100 else 0
        n_val = int(round(self.validation_fraction * n))
        return n_val if n_val >= 1 and n - n_val >= self.n_components else 0

    def _run_sgd(self, Z_train, Z_val, config, rng, *, params=None, state=None,
                 writer=None, extend: bool = False) -> dict:
        """One stochastic run; ``extend`` (warm start) trains ``max_epochs`` more epochs
        instead of up to the budget (resuming a checkpoint counts from its epoch 0)."""
        record = self._scaler.to_data if self.record_params else None
        callback = self.callback
        if writer is not None:
            user_callback = self.callback

            def callback(s):
                writer.epoch_done(s)  # first, so a callback that raises still has it saved
                return None if user_callback is None else user_callback(s)

        w_train, w_val = getattr(self, "_weights", None) or (None, None)
        state = train(Z_train, params, config=config, rng=rng, X_val=Z_val, val_weight=w_val,
                      sample_weight=w_train, state=state, callback=callback,
                      record_params=record, nll_offset=self._scaler.log_det,
                      max_epochs=config.epochs_for(len(Z_train)) if extend else None,
                      backend=self.backend)
        converged = bool(state.stopped)
        if not converged and config.early_stopping:
            warnings.warn(
                f"SGD stopped at its budget of {state.epoch} epochs before the validation NLL "
                "settled; raise max_epochs or the learning rate", ConvergenceWarning,
                stacklevel=4)
        return {"params": state.params, "state": state, "history": state.history,
                "score": state.best_score, "converged": converged or not config.early_stopping,
                "n_iter": state.epoch}

    def _run_em(self, Z_train, Z_val, start) -> dict:
        w_train, w_val = getattr(self, "_weights", None) or (None, None)
        result = fit_em(Z_train, start, max_iter=self.max_iter, tol=self.tol,
                        reg_covar=self.min_variance, sample_weight=w_train)
        return em_run_record(result, Z_val, self._scaler.log_det, self.max_iter, w_val)

    def _set_fitted(self, run: dict, X: np.ndarray, lower_bound: float | None = None,
                    sample_weight: np.ndarray | None = None) -> None:
        self._params_std = run["params"]
        self._state = run["state"]
        self.params_ = self._scaler.to_data(run["params"])
        self.history_ = run["history"]
        self.converged_ = bool(run["converged"])
        self.n_iter_ = int(run["n_iter"])
        nll_fn = fast.nll_fn_for(self.backend) if isinstance(X, np.ndarray) else nll
        self.lower_bound_ = (float(-nll_fn(X, self.params_, sample_weight)) if lower_bound is None
                             else lower_bound)
        self._set_derived()
        bad = ~(np.isfinite(self.covariances_) & (self.covariances_ > 0))
        if bad.any():
            k, d = np.argwhere(bad)[0]
            warnings.warn(
                f"covariances_[{k}, {d}] = exp(2 * {float(self.params_.log_sigma[k, d]):.6g}) is "
                f"beyond the range of {self.params_.dtype} at this data scale; the model "
                "itself is fine (params_.log_sigma holds it, scores are finite); rescale the "
                "data or use dtype=None (float64) to read variances directly",
                UserWarning, stacklevel=3)

    def _set_derived(self) -> None:
        """The scikit-learn views of ``params_`` (natural parameters in data units)."""
        self.weights_ = self.params_.weights
        self.means_ = np.array(self.params_.means)
        with np.errstate(divide="ignore", over="ignore", under="ignore"):
            # beyond the float range at extreme data scales: fit() warns about it
            self.covariances_ = self.params_.variances
            self.precisions_cholesky_ = 1.0 / np.sqrt(self.covariances_)

    def _get_fit_state(self) -> dict:
        """Everything :func:`mogsgd.model_io.save_model` stores about the fit."""
        return {"n_features_in_": self.n_features_in_, "params_": self.params_,
                "params_std": self._params_std, "scaler_center": self._scaler.center,
                "scaler_scale": self._scaler.scale, "train_state": self._state,
                "history_": self.history_, "converged_": self.converged_,
                "n_iter_": self.n_iter_, "lower_bound_": self.lower_bound_}

    def _set_fit_state(self, fit: dict) -> None:
        """Inverse of :meth:`_get_fit_state` (used by :func:`mogsgd.model_io.load_model`)."""
        params, params_std = fit["params_"], fit["params_std"]
        if not isinstance(params, MixtureParams) or not isinstance(params_std, MixtureParams):
            raise TypeError("params_ and params_std must be MixtureParams")
        d = int(fit["n_features_in_"])
        shapes = {params.means.shape, params_std.means.shape, (self.n_components, d)}
        if len(shapes) != 1 or np.shape(fit["scaler_center"]) != (d,) \
                or np.shape(fit["scaler_scale"]) != (d,):
            raise ValueError(f"shapes disagree: n_components={self.n_components}, "
                             f"n_features_in_={d}, means {params.means.shape}")
        self.n_features_in_ = d
        self.params_, self._params_std = params, params_std
        self._scaler = Standardizer(fit["scaler_center"], fit["scaler_scale"])
        self._state = fit["train_state"]
        self.history_ = fit["history_"]
        self.converged_ = bool(fit["converged_"])
        self.n_iter_ = int(fit["n_iter_"])
        self.lower_bound_ = float(fit["lower_bound_"])
        self._rng = np.random.default_rng()  # partial_fit restores it from the train state
        self._set_derived()

    # ------------------------------------------------------------ model files
    def save(self, path, *, force: bool = False):
        """Save the fitted model losslessly (:func:`mogsgd.model_io.save_model`)."""
        from mogsgd.model_io import save_model

        return save_model(self, path, force=force)

    @classmethod
    def load(cls, path, *, n_features: int | None = None) -> SGDGaussianMixture:
        """Load a model saved by :meth:`save` (:func:`mogsgd.model_io.load_model`)."""
        from mogsgd.model_io import load_model

        return load_model(path, n_features=n_features)

    @classmethod
    def from_checkpoint(cls, path) -> SGDGaussianMixture:
        """An unfitted estimator with the settings a checkpoint was written with; continue
        the fit with ``.fit(X, resume=path)`` (settings not stored, like a callback, are None)."""
        from mogsgd.checkpoint import read_checkpoint

        return cls(**read_checkpoint(path).settings)

    def partial_fit(self, X, y=None, sample_weight=None) -> SGDGaussianMixture:
        """One epoch of mini-batch SGD over ``X``, continuing the current state.

        ``sample_weight`` (n_samples,) weights the rows of this chunk (eq. 31-32).

        The first call fixes the standardisation and initialises from ``X``
        (which then needs at least ``n_components`` rows).
        """
        if stream.is_stream_source(X):
            return stream.partial_fit(self, X, sample_weight=sample_weight)
        if uses_torch(self.device, X):
            return _torch_estimator().partial_fit(self, X)
        config = self._check_hyperparameters()
        first = not hasattr(self, "params_") or getattr(self, "_state", None) is None
        if first:
            X = self._check_fit_data(X)
            w = check_sample_weight(sample_weight, X.shape[0])
            self._source = None
            self.n_features_in_ = X.shape[1]
            self._scaler = Standardizer.fit(X, self.standardize, w)
            self._rng = check_random_state(self.random_state)
            Z = self._scaler.transform(X)
            start = self._user_init(self._scaler)
            if start is None:
                start = init_params(_impute_for_init(Z), self.n_components, self.init,
                                    self._rng, self.min_variance, sample_weight=w)
            state = None
        else:
            X = self._validate(X, reset=False)
            w = check_sample_weight(sample_weight, X.shape[0])
            Z = self._scaler.transform(X)
            start, state = None, self._state
        no_stop = TrainConfig(**{**config.__dict__, "early_stopping": False})
        state = train(Z, start, config=no_stop, rng=self._rng, state=state, max_epochs=1,
                      sample_weight=w, callback=self.callback, nll_offset=self._scaler.log_det,
                      record_params=self._scaler.to_data if self.record_params else None,
                      backend=self.backend)
        self._set_fitted({"params": state.params, "state": state, "history": state.history,
                          "converged": False, "n_iter": state.epoch}, X, sample_weight=w)
        return self

    def fit_predict(self, X, y=None) -> np.ndarray:
        """Fit, then label the same rows with their most responsible component."""
        return self.fit(X).predict(X)

    # ------------------------------------------------------------ inference
    def score_samples(self, X) -> np.ndarray:
        """``log p(x_i)`` under the fitted model, shape (n_samples,)."""
        if stream.is_stream_source(X):
            return stream.score_samples(self, X)
        if uses_torch(self.device, X):
            return _torch_estimator().infer(self, X, "score_samples")
        return log_prob(self._validate(X, reset=False), self.params_)

    def score(self, X, y=None, sample_weight=None) -> float:
        """Mean log-likelihood per sample (weighted mean with ``sample_weight``, eq. 31)."""
        if stream.is_stream_source(X):
            return stream.score(self, X, sample_weight=sample_weight)
        ll = self.score_samples(X)
        if sample_weight is None:
            return float(ll.mean())
        w = check_sample_weight(sample_weight, len(ll))
        return float(w @ np.asarray(ll) / w.sum())

    def predict_proba(self, X) -> np.ndarray:
        """Responsibilities ``gamma_ik``, shape (n_samples, n_components)."""
        if stream.is_stream_source(X):
            return stream.predict_proba(self, X)
        if uses_torch(self.device, X):
            return _torch_estimator().infer(self, X, "predict_proba")
        return np.exp(log_resp(self._validate(X, reset=False), self.params_))

    def predict(self, X) -> np.ndarray:
        """Most responsible component per row, shape (n_samples,)."""
        if stream.is_stream_source(X):
            return stream.predict(self, X)
        if uses_torch(self.device, X):
            return _torch_estimator().infer(self, X, "predict")
        return np.argmax(log_resp(self._validate(X, reset=False), self.params_), axis=1)

    def sample(self, n_samples: int = 1, random_state=None) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``(X, y)``: points (n_samples, D) and their component labels."""
        check_is_fitted(self, "params_")
        n_samples = check_positive_int("n_samples", n_samples)
        rng = check_random_state(self.random_state if random_state is None else random_state)
        y = rng.choice(self.n_components, size=n_samples, p=self.weights_)
        X = self.means_[y] + rng.standard_normal((n_samples, self.n_features_in_)) * \
            np.sqrt(self.covariances_[y])
        return X, y

    def _n_parameters(self) -> int:
        """Free parameters of the diagonal model, ``K (2D + 1) - 1`` (eq. 38)."""
        return self.n_components * (2 * self.n_features_in_ + 1) - 1

    def _weighted_loglik(self, X, sample_weight) -> tuple[float, float]:
        """``(sum_i w_i log p(x_i), sum_i w_i)``; unit weights without ``sample_weight``."""
        ll = np.asarray(self.score_samples(X), dtype=np.float64)
        if sample_weight is None:
            return float(ll.sum()), float(len(ll))
        w = check_sample_weight(sample_weight, len(ll))
        return float(w @ ll), float(w.sum())

    def bic(self, X, sample_weight=None) -> float:
        """Bayesian information criterion ``-2 L + p log n`` (eq. 38); lower is better.

        With ``sample_weight``, ``L`` is the weighted log-likelihood and ``n = sum w``."""
        if stream.is_stream_source(X):
            return stream.bic(self, X, sample_weight=sample_weight)
        total, n = self._weighted_loglik(X, sample_weight)
        return float(-2.0 * total + self._n_parameters() * np.log(n))

    def aic(self, X, sample_weight=None) -> float:
        """Akaike information criterion ``-2 L + 2 p`` (eq. 38); lower is better."""
        if stream.is_stream_source(X):
            return stream.aic(self, X, sample_weight=sample_weight)
        total, _ = self._weighted_loglik(X, sample_weight)
        return float(-2.0 * total + 2.0 * self._n_parameters())

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = False
        return tags


def em_run_record(result, Z_val: np.ndarray | None, offset: float, max_iter: int,
                  val_weight: np.ndarray | None = None) -> dict:
    """The estimator's run record for an EM fit (in memory or streamed): history per
    iteration (entry 0 is the start), the validation (or training) NLL that ranks
    restarts, convergence; warns when EM used up ``max_iter``."""
    train_nll = [-ll + offset for ll in result.log_likelihoods]
    history = {"epoch": list(range(len(train_nll))), "train_nll": train_nll,
               "val_nll": [None] * len(train_nll), "lr": [None] * len(train_nll),
               "time": result.times}
    score = nll(Z_val, result.params, val_weight) if Z_val is not None else train_nll[-1]
    if Z_val is not None:
        history["val_nll"][-1] = score + offset
    if not result.converged:
        warnings.warn(f"EM did not converge in {max_iter} iterations; raise max_iter",
                      ConvergenceWarning, stacklevel=4)
    return {"params": result.params, "state": None, "history": history, "score": score,
            "converged": result.converged, "n_iter": result.n_iter}


def _torch_estimator():
    """The torch backend's estimator functions, imported only when used."""
    from mogsgd.backends import torch_estimator

    return torch_estimator


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
    from mogsgd.checkpoint import is_checkpoint_file

    if path.is_dir():
        raise ValidationError(f"checkpoint_path {str(path)!r} is a directory; give a file name")
    if not path.parent.is_dir():
        raise ValidationError(f"checkpoint_path {str(path)!r}: directory "
                              f"{str(path.parent)!r} does not exist")
    if path.exists() and not is_checkpoint_file(path):
        raise ValidationError(
            f"checkpoint_path {str(path)!r} exists and is not a mogsgd checkpoint; refusing "
            "to overwrite it: choose another file name")


def _count_distinct_rows(X: np.ndarray, at_least: int) -> int:
    """Number of distinct rows of ``X``, looking at all rows only when the first few
    thousand have fewer than ``at_least`` distinct ones."""
    head = X[: 1000 + 10 * at_least]
    distinct = len(np.unique(head, axis=0))
    if distinct >= at_least or len(head) == len(X):
        return distinct
    return len(np.unique(X, axis=0))
