"""``SGDGaussianMixture``: the scikit-learn estimator.

Its logic is :class:`mogsgd.mixture.SGDMixture` (settings -> source -> solver ->
attributes, on the lower layers alone); this class adds scikit-learn's base classes:
``get_params``/``set_params``, cloning and tags, ``NotFittedError`` and the column names
of DataFrames.  Architecture: ``docs/architecture.md``.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.utils.validation import _check_feature_names, check_is_fitted

from mogsgd.mixture import SGDMixture
from mogsgd.model_io import register_estimator
from mogsgd.standardize import Standardizer

__all__ = ["SGDGaussianMixture", "Standardizer"]


class SGDGaussianMixture(DensityMixin, BaseEstimator, SGDMixture):
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
    variance_floor : float or None, default=None
        A floor in data units, the same for every feature: every variance (every
        eigenvalue of every covariance) is at least ``variance_floor``, so feature d's
        floor is ``max(min_variance * var(x_d), variance_floor)``.  It raises the scale
        of the features whose ``min_variance * var(x_d)`` is below it (eq. 33: exact).
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
        input; ``np.float32`` trains and returns float32 (half the memory).  The full,
        tied and spherical types hold the rows in float32 but train in float64 (their
        compiled passes are float64): their fitted attributes, scores and model files are
        float32, their training state and checkpoints float64.
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
        nats per row (at most 1000; ``refine_iter_``).  ``"auto"``: for rows in memory,
        here or on Dask workers (a step is one pass); ``"em"``: also streams; ``"none"``:
        end at the last stochastic iterate (within the gradient noise of the optimum),
        unpolished init.

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

    # SGDMixture's, not DensityMixin's placeholder
    score = SGDMixture.score

    @classmethod
    def _get_param_names(cls) -> list[str]:
        # scikit-learn's hook (get_params, clone, repr): the same sorted names, read once
        return cls._param_names()

    def _check_fitted(self) -> None:
        check_is_fitted(self, "params_")

    def _check_feature_names(self, X, *, reset: bool) -> None:
        if type(X) is np.ndarray and (reset or not hasattr(self, "feature_names_in_")):
            # an array has no column names: scikit-learn's answer, without its ~0.1 ms of
            # dataframe detection (a fit on a small table pays it otherwise)
            if reset:
                self.__dict__.pop("feature_names_in_", None)
            return
        _check_feature_names(self, X, reset=reset)   # feature_names_in_ from a DataFrame

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = False
        return tags


register_estimator(SGDGaussianMixture)
