"""``SGDGaussianMixture``: the scikit-learn estimator, a thin wrapper over ``train`` and ``em``.

The estimator adds no math.  It validates input, standardises the data per
feature (so default hyper-parameters do not depend on the data's units; the
likelihood maps back with the log-determinant of eq. 33), initialises, runs
:func:`mogsgd.train.train` (``solver="sgd"``) or :func:`mogsgd.em.fit_em`
(``solver="em"``), keeps the best of ``n_init`` restarts and exposes the
result in data units with scikit-learn's attribute names.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.utils.validation import check_is_fitted

from mogsgd import stream
from mogsgd._random import check_random_state
from mogsgd.density import log_prob, log_resp, nll
from mogsgd.em import fit_em
from mogsgd.errors import ConvergenceWarning, ValidationError
from mogsgd.init import INIT_METHODS, init_params
from mogsgd.params import MixtureParams
from mogsgd.train import TrainConfig, train
from mogsgd.validation import (
    check_choice,
    check_data,
    check_fraction,
    check_positive_float,
    check_positive_int,
)

__all__ = ["SGDGaussianMixture", "Standardizer"]

SOLVERS = ("sgd", "em")


class Standardizer:
    """Per-feature affine map ``x' = (x - c) / s`` and its action on parameters (eq. 33)."""

    def __init__(self, center: np.ndarray, scale: np.ndarray) -> None:
        self.center = np.asarray(center, dtype=np.float64)
        self.scale = np.asarray(scale, dtype=np.float64)

    @classmethod
    def fit(cls, X: np.ndarray, enabled: bool = True) -> Standardizer:
        d = X.shape[1]
        if not enabled:
            return cls(np.zeros(d), np.ones(d))
        center = np.nanmean(X, axis=0) if X.shape[0] else np.zeros(d)
        scale = np.nanstd(X, axis=0) if X.shape[0] > 1 else np.ones(d)
        return cls.from_moments(center, scale)

    @classmethod
    def from_moments(cls, center: np.ndarray, scale: np.ndarray) -> Standardizer:
        """From per-feature means and standard deviations (e.g. merged from chunks)."""
        # constant features keep their units; huge or tiny scales are exact powers of two
        scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
        center = np.where(np.isfinite(center), center, 0.0)
        return cls(center, scale)

    @property
    def log_det(self) -> float:
        """``sum_d log s_d``: NLL in data units = NLL standardised + log_det (eq. 33)."""
        return float(np.log(self.scale).sum())

    def transform(self, X: np.ndarray) -> np.ndarray:
        return ((X - self.center) / self.scale).astype(X.dtype, copy=False)

    def to_data(self, p: MixtureParams) -> MixtureParams:
        return MixtureParams(means=p.means * self.scale + self.center,
                             log_sigma=p.log_sigma + np.log(self.scale), logits=p.logits)

    def from_data(self, p: MixtureParams) -> MixtureParams:
        return MixtureParams(means=(p.means - self.center) / self.scale,
                             log_sigma=p.log_sigma - np.log(self.scale), logits=p.logits)


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
    solver : {"sgd", "em"}, default="sgd"
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

    Attributes
    ----------
    weights_ : (K,)   means_ : (K, D)   covariances_ : (K, D) diagonal variances
    params_ : MixtureParams in data units
    converged_ : bool   n_iter_ : int   n_features_in_ : int   lower_bound_ : float
    history_ : dict of per-epoch lists ``epoch, train_nll, val_nll, lr, time``
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

    # ------------------------------------------------------------ validation
    def _train_config(self) -> TrainConfig:
        return TrainConfig(
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
        if self.validation_fraction != "auto":
            check_fraction("validation_fraction", self.validation_fraction)
        check_positive_float("min_variance", self.min_variance)
        return self._train_config()

    def _validate(self, X, *, reset: bool, min_samples: int = 1) -> np.ndarray:
        if reset:
            return check_data(X, min_samples=min_samples)
        check_is_fitted(self, "params_")
        return check_data(X, n_features=self.n_features_in_, owner=type(self).__name__,
                          min_samples=min_samples)

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
        return scaler.from_data(p)

    # -------------------------------------------------------------- fitting
    def fit(self, X, y=None) -> SGDGaussianMixture:
        """Fit the mixture to ``X`` (n_samples, n_features); ``y`` is ignored.

        ``X`` may be out of core: a path, a stream source, an iterator of chunks, a Zarr or
        Dask array (:mod:`mogsgd.stream`, :mod:`mogsgd.distributed`).
        """
        if stream.is_stream_source(X):
            return stream.fit(self, X)
        config = self._check_hyperparameters()
        X = check_data(X, min_samples=max(2, self.n_components))
        rng = check_random_state(self.random_state)
        continuing = self.warm_start and hasattr(self, "params_")
        if continuing and X.shape[1] != self.n_features_in_:
            raise ValidationError(f"X has {X.shape[1]} features, but {type(self).__name__} is "
                                  f"expecting {self.n_features_in_} features as input")
        if not continuing:
            self.n_features_in_ = X.shape[1]
            self._scaler = Standardizer.fit(X, self.standardize)
        Z = self._scaler.transform(X)
        n_val = self._n_validation(len(Z))
        order = rng.permutation(len(Z))
        Z_val = Z[order[:n_val]] if n_val else None
        Z_train = Z[order[n_val:]] if n_val else Z

        if continuing and self.solver == "sgd" and getattr(self, "_state", None) is not None:
            best = self._run_sgd(Z_train, Z_val, config, rng, state=self._state)
        else:
            user = self._user_init(self._scaler)
            best = None
            for _ in range(1 if user is not None else self.n_init):
                start = user if user is not None else init_params(
                    Z_train, self.n_components, self.init, rng, self.min_variance)
                if self.solver == "em":
                    run = self._run_em(Z_train, Z_val, start)
                else:
                    run = self._run_sgd(Z_train, Z_val, config, rng, params=start)
                if best is None or run["score"] < best["score"]:
                    best = run
        self._rng = rng
        self._set_fitted(best, X)
        return self

    def _n_validation(self, n: int) -> int:
        if not self.early_stopping:
            return 0
        if self.validation_fraction == "auto":
            n_val = int(round(0.1 * n))
            return n_val if n_val >= 100 else 0
        n_val = int(round(self.validation_fraction * n))
        return n_val if n_val >= 1 and n - n_val >= self.n_components else 0

    def _run_sgd(self, Z_train, Z_val, config, rng, *, params=None, state=None) -> dict:
        record = self._scaler.to_data if self.record_params else None
        state = train(Z_train, params, config=config, rng=rng, X_val=Z_val, state=state,
                      callback=self.callback, record_params=record,
                      nll_offset=self._scaler.log_det)
        converged = bool(state.stopped)
        if not converged and config.early_stopping:
            warnings.warn(
                f"SGD stopped at its budget of {state.epoch} epochs before the validation NLL "
                "settled; raise max_epochs or the learning rate", ConvergenceWarning,
                stacklevel=3)
        return {"params": state.params, "state": state, "history": state.history,
                "score": state.best_score, "converged": converged or not config.early_stopping,
                "n_iter": state.epoch}

    def _run_em(self, Z_train, Z_val, start) -> dict:
        result = fit_em(Z_train, start, max_iter=self.max_iter, tol=self.tol,
                        reg_covar=self.min_variance)
        offset = self._scaler.log_det
        train_nll = [-ll + offset for ll in result.log_likelihoods]
        history = {"epoch": list(range(len(train_nll))), "train_nll": train_nll,
                   "val_nll": [None] * len(train_nll), "lr": [None] * len(train_nll),
                   "time": result.times}
        score = nll(Z_val, result.params) if Z_val is not None else train_nll[-1]
        if Z_val is not None:
            history["val_nll"][-1] = score + offset
        if not result.converged:
            warnings.warn(f"EM did not converge in {self.max_iter} iterations; raise max_iter",
                          ConvergenceWarning, stacklevel=3)
        return {"params": result.params, "state": None, "history": history, "score": score,
                "converged": result.converged, "n_iter": result.n_iter}

    def _set_fitted(self, run: dict, X: np.ndarray) -> None:
        self._params_std = run["params"]
        self._state = run["state"]
        self.params_ = self._scaler.to_data(run["params"])
        self.weights_ = self.params_.weights
        self.means_ = np.array(self.params_.means)
        self.covariances_ = self.params_.variances
        self.precisions_cholesky_ = 1.0 / np.sqrt(self.covariances_)
        self.history_ = run["history"]
        self.converged_ = bool(run["converged"])
        self.n_iter_ = int(run["n_iter"])
        self.lower_bound_ = float(run["lower_bound"] if "lower_bound" in run
                                  else -nll(X, self.params_))

    def partial_fit(self, X, y=None) -> SGDGaussianMixture:
        """One epoch of mini-batch SGD over ``X``, continuing the current state.

        The first call fixes the standardisation and initialises from ``X``
        (which then needs at least ``n_components`` rows).
        """
        if stream.is_stream_source(X):
            return stream.partial_fit(self, X)
        config = self._check_hyperparameters()
        first = not hasattr(self, "params_") or getattr(self, "_state", None) is None
        if first:
            X = check_data(X, min_samples=max(2, self.n_components))
            self.n_features_in_ = X.shape[1]
            self._scaler = Standardizer.fit(X, self.standardize)
            self._rng = check_random_state(self.random_state)
            Z = self._scaler.transform(X)
            start = self._user_init(self._scaler)
            if start is None:
                start = init_params(Z, self.n_components, self.init, self._rng,
                                    self.min_variance)
            state = None
        else:
            X = self._validate(X, reset=False)
            Z = self._scaler.transform(X)
            start, state = None, self._state
        no_stop = TrainConfig(**{**config.__dict__, "early_stopping": False})
        state = train(Z, start, config=no_stop, rng=self._rng, state=state, max_epochs=1,
                      callback=self.callback, nll_offset=self._scaler.log_det,
                      record_params=self._scaler.to_data if self.record_params else None)
        self._set_fitted({"params": state.params, "state": state, "history": state.history,
                          "converged": False, "n_iter": state.epoch}, X)
        return self

    def fit_predict(self, X, y=None) -> np.ndarray:
        """Fit, then label the same rows with their most responsible component."""
        return self.fit(X).predict(X)

    # ------------------------------------------------------------ inference
    def score_samples(self, X) -> np.ndarray:
        """``log p(x_i)`` under the fitted model, shape (n_samples,)."""
        if stream.is_stream_source(X):
            return stream.score_samples(self, X)
        return log_prob(self._validate(X, reset=False), self.params_)

    def score(self, X, y=None) -> float:
        """Mean log-likelihood per sample."""
        if stream.is_stream_source(X):
            return stream.score(self, X)
        return float(np.mean(self.score_samples(X)))

    def predict_proba(self, X) -> np.ndarray:
        """Responsibilities ``gamma_ik``, shape (n_samples, n_components)."""
        if stream.is_stream_source(X):
            return stream.predict_proba(self, X)
        return np.exp(log_resp(self._validate(X, reset=False), self.params_))

    def predict(self, X) -> np.ndarray:
        """Most responsible component per row, shape (n_samples,)."""
        if stream.is_stream_source(X):
            return stream.predict(self, X)
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

    def bic(self, X) -> float:
        """Bayesian information criterion ``-2 L + p log n`` (eq. 38); lower is better."""
        if stream.is_stream_source(X):
            return stream.bic(self, X)
        ll = self.score_samples(X)
        return float(-2.0 * ll.sum() + self._n_parameters() * np.log(len(ll)))

    def aic(self, X) -> float:
        """Akaike information criterion ``-2 L + 2 p`` (eq. 38); lower is better."""
        if stream.is_stream_source(X):
            return stream.aic(self, X)
        return float(-2.0 * self.score_samples(X).sum() + 2.0 * self._n_parameters())

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = False
        return tags
