"""The data protocol: what every input kind offers the solvers and the estimator.

A :class:`Source` wraps one input (an in-memory array, a chunked file or iterator, a Dask
array, a torch tensor) and answers the same few questions, so the estimator and the solvers
never look at the type of ``X`` (:func:`mogsgd.data.as_source` is the only place that does):

* ``kind`` and ``capabilities``: what it supports (:data:`CAPABILITIES`); the support table
  of :mod:`mogsgd.solvers.support` is built from these;
* :meth:`Source.prepare`: validate, fit the standardiser, split off the validation rows and
  pick the initialisation rows -> a :class:`Prepared` fit, whose ``train`` rows the one
  training loop (:func:`mogsgd.train.train`) and the one EM loop
  (:func:`mogsgd.em.em_loop`) consume;
* :meth:`Source.blocks`: in-memory blocks for ``partial_fit`` (a stream is read in
  consecutive blocks of its buffer size);
* :meth:`Source.map_rows`: a per-row function for inference (:data:`ROW_FUNCTIONS`),
  returned in the input's kind (an array, a lazy Dask array, a tensor);
* :meth:`Source.loglik_sum`: ``(sum_i w_i log p(x_i), sum_i w_i)`` for ``score``/``bic``/``aic``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from mogsgd import api
from mogsgd.covariance import get_family
from mogsgd.em import EMStats
from mogsgd.errors import ValidationError
from mogsgd.init import unique_rows
from mogsgd.params import MixtureParams
from mogsgd.standardize import Standardizer
from mogsgd.validation import check_data

__all__ = ["CAPABILITIES", "KINDS", "FitPlan", "Prepared", "Source", "Model", "ROW_FUNCTIONS",
           "row_function", "check_fit_rows", "count_distinct_rows", "split_rows",
           "check_width"]

#: What a source may support.  ``multi_pass``: rows can be read more than once (epochs,
#: EM iterations); ``weights``: ``sample_weight``; ``checkpoint``: ``checkpoint_path`` and
#: ``resume=`` (needs a data fingerprint); ``online_em`` and ``em``: those solvers;
#: ``partial_fit``: incremental fitting; ``families``: the full, tied and spherical
#: covariance types (computed on the NumPy path).
CAPABILITIES = ("multi_pass", "weights", "checkpoint", "em", "online_em", "partial_fit",
                "families")

#: Every input kind: its description in messages and tables, and its capabilities (here,
#: so the support table needs neither torch nor Dask to list them).
KINDS: dict[str, tuple[str, frozenset[str]]] = {
    "array": ("in-memory arrays", frozenset(CAPABILITIES)),
    "stream": ("streamed data (files, folders, Zarr, re-iterable chunks)",
               frozenset({"multi_pass", "em", "online_em", "partial_fit", "families"})),
    "one-shot iterator": ("one-shot iterators (read once)",
                          frozenset({"online_em", "partial_fit", "families"})),
    "dask": ("Dask arrays on a distributed cluster", frozenset({"multi_pass", "em",
                                                                "partial_fit", "families"})),
    "tensor": ("torch tensors and device arrays", frozenset({"multi_pass", "weights",
                                                             "partial_fit"})),
}


@dataclass(frozen=True)
class FitPlan:
    """The estimator's settings that decide how rows are prepared for a fit."""

    n_components: int
    batch_size: int
    dtype: np.dtype
    allow_nan: bool
    standardize: bool
    validation_fraction: float | str
    holds_out: bool            # early stopping with a stochastic solver watches held-out rows
    backend: str = "auto"
    covariance_type: str = "diag"
    #: the smallest scale of a feature: a floor ``v`` on variances in data units is the
    #: standardised floor ``min_variance`` times the scale squared (eq. 33), so a scale of
    #: at least ``sqrt(v / min_variance)`` keeps every variance at or above ``v``
    scale_floor: float = 0.0

    def fit_scaler(self, X: np.ndarray, sample_weight=None) -> Standardizer:
        """The standardiser fitted on ``X`` (eq. 33), each scale raised to ``scale_floor``,
        with a scale the covariance family admits (:meth:`Standardizer.for_family`)."""
        scaler = Standardizer.fit(X, self.standardize, sample_weight)
        if self.scale_floor > 0:
            scaler = Standardizer(scaler.center, np.maximum(scaler.scale, self.scale_floor))
        return scaler.for_family(get_family(self.covariance_type))

    def n_validation(self, n: int) -> int:
        """Rows held out for early stopping: 10% when that is >= 100 rows (``"auto"``), or
        ``validation_fraction`` of them while K rows remain to train on; none for EM."""
        if not self.holds_out:
            return 0
        if self.validation_fraction == "auto":
            n_val = int(round(0.1 * n))
            return n_val if n_val >= 100 else 0
        n_val = int(round(self.validation_fraction * n))
        return n_val if n_val >= 1 and n - n_val >= self.n_components else 0


@dataclass
class Prepared:
    """A source ready to fit: standardised training rows in the form the loops consume.

    ``train`` is an array, a batch provider (``shape``, ``epoch_batches``) or a tensor;
    ``val`` the held-out rows (same kind, or ``None``); ``init_rows`` standardised NumPy
    rows (missing entries imputed) for :func:`mogsgd.init.init_params`;
    ``em_stats(params)`` the combined :class:`~mogsgd.em.EMStats` of the training rows and
    ``train_loglik(params)`` their mean log-likelihood (standardised units);
    ``lower_bound(params)`` the mean log-likelihood of all rows in data units (``params``
    standardised); ``engine`` the epoch engine for :func:`mogsgd.train.train` (``None``: the
    array engine); ``fingerprint`` the rows a checkpoint identifies the data by (in-memory
    data only), ``split_rng_state`` the generator state before the split, ``in_memory``
    whether the rows are a NumPy array here (the initial candidates' EM polish) and
    ``cheap_passes`` whether another pass over the rows is cheap -- in memory here or on
    Dask workers (``refine="auto"``: the end-point EM refinement, batch growth before it);
    ``all_em_stats`` / ``all_loglik`` cover every row, the held-out ones too (the
    refinement's objective; ``None``: the training rows are all the rows);
    ``em_fit(params, **options) -> EMResult`` runs :func:`mogsgd.em.em_loop` over every
    row (compiled in one call for in-memory arrays; ``None``: the loop over
    ``all_em_stats``).
    """

    n_features: int
    scaler: Standardizer
    train: Any
    init_rows: np.ndarray
    em_stats: Callable[[MixtureParams], EMStats] | None
    train_loglik: Callable[[MixtureParams], float] | None
    lower_bound: Callable[[MixtureParams], float]
    train_weight: Any = None
    val: Any = None
    val_weight: Any = None
    init_weight: np.ndarray | None = None
    engine: Callable[..., Any] | None = None
    fingerprint: np.ndarray | None = None
    split_rng_state: dict | None = None
    in_memory: bool = False
    cheap_passes: bool = False
    all_em_stats: Callable[[MixtureParams], EMStats] | None = None
    all_loglik: Callable[[MixtureParams], float] | None = None
    em_fit: Callable[..., Any] | None = None


@dataclass(frozen=True)
class Model:
    """What inference needs of a fitted estimator: parameters in data units, the feature
    count, whether NaN means missing, and the name to use in error messages."""

    params: MixtureParams
    n_features: int
    allow_nan: bool
    owner: str
    backend: str = "auto"


def _predict(X, p, *, backend: str = "auto"):
    return np.argmax(api.responsibilities(X, p, backend=backend), axis=1)


#: Per-row inference functions on NumPy rows: name -> (function(X, params, *, backend),
#: output width (``None``: one value per row, ``"K"``: one per component), output dtype
#: (``None``: the parameters' dtype)).  They run :mod:`mogsgd.api`'s functions: the
#: compiled kernels unless the model's ``backend`` says ``"numpy"``.
ROW_FUNCTIONS: dict[str, tuple[Callable, str | None, Any]] = {
    "score_samples": (api.log_prob, None, None),
    "predict": (_predict, None, np.int64),
    "predict_proba": (api.responsibilities, "K", None),
}


def row_function(name: str, model: Model) -> Callable:
    """``fn(X, params)``: :data:`ROW_FUNCTIONS` ``[name]`` under ``model.backend``, its
    output in the table's dtype (the compiled full, tied and spherical passes compute
    float32 parameters in float64: their output is cast back)."""
    fn, _, dtype = ROW_FUNCTIONS[name]

    def rows(X, params):
        out = fn(X, params, backend=model.backend)
        return out.astype(dtype or params.dtype, copy=False)

    return rows


class Source:
    """One input, wrapped.  Subclasses set ``kind``, ``capabilities`` and ``n_features`` and
    implement the methods below (a missing capability is refused before any work by
    :func:`mogsgd.solvers.support.check_supported`)."""

    kind: str = "array"
    n_features: int

    @property
    def description(self) -> str:
        return KINDS[self.kind][0]

    @property
    def capabilities(self) -> frozenset[str]:
        return KINDS[self.kind][1]

    def prepare(self, plan: FitPlan, rng: np.random.Generator, *, sample_weight=None,
                scaler: Standardizer | None = None, check_rows=None) -> Prepared:
        """Validate, standardise (with ``scaler`` if given, e.g. a warm start's), split and
        sample the rows for a fit; ``check_rows(rows)`` sees the rows a checkpoint
        fingerprints (sources with the ``checkpoint`` capability)."""
        raise TypeError(f"{self.kind} input cannot be fitted")  # pragma: no cover

    def blocks(self, plan: FitPlan, sample_weight=None) -> Iterator[Source]:
        """In-memory sources for ``partial_fit``, in the input's order."""
        raise TypeError(f"{self.kind} input cannot be fitted incrementally")  # pragma: no cover

    def prepare_block(self, plan: FitPlan, model: Model | None, *, sample_weight=None,
                      scaler: Standardizer | None = None) -> Prepared:
        """One in-memory block for a ``partial_fit`` epoch: validated (as fit data when
        ``model`` is ``None``, else as data for ``model``), standardised with ``scaler``
        (fitted on the block when ``None``)."""
        raise TypeError(f"{self.kind} input cannot be fitted incrementally")  # pragma: no cover

    def map_rows(self, name: str, model: Model):
        """:data:`ROW_FUNCTIONS` ``[name]`` on every row, in the input's kind."""
        raise TypeError(f"{self.kind} input cannot be scored")  # pragma: no cover

    def iter_rows(self, name: str, model: Model) -> Iterator:
        """:meth:`map_rows` in pieces, in the input's order (one piece unless chunked)."""
        yield self.map_rows(name, model)

    def loglik_sum(self, model: Model, sample_weight=None) -> tuple[float, float]:
        """``(sum_i w_i log p(x_i), sum_i w_i)`` (unit weights without ``sample_weight``)."""
        raise TypeError(f"{self.kind} input cannot be scored")  # pragma: no cover


def split_rows(Z, w, order, n_val: int):
    """``(Z_train, w_train, Z_val, w_val)``: the rows ``order[:n_val]`` held out for early
    stopping, the rest for training (arrays or tensors alike; ``None`` where absent)."""
    if not n_val:
        return Z, w, None, None
    train, val = order[n_val:], order[:n_val]
    if isinstance(Z, np.ndarray):   # np.take: the same rows, about twice as fast as Z[rows]
        return (np.take(Z, train, axis=0), None if w is None else np.take(w, train),
                np.take(Z, val, axis=0), None if w is None else np.take(w, val))
    return (Z[train], None if w is None else w[train], Z[val], None if w is None else w[val])


def check_width(n_features: int, expected: int | None, owner: str = "SGDGaussianMixture"):
    """Refuse data whose feature count differs from the model's (warm start, scoring)."""
    if expected is not None and n_features != expected:
        raise ValidationError(f"X has {n_features} features, but {owner} is expecting "
                              f"{expected} features as input")


def count_distinct_rows(X: np.ndarray, at_least: int) -> int:
    """Number of distinct rows of ``X``, looking at all rows only when the first few
    thousand have fewer than ``at_least`` distinct ones."""
    head = X[: 1000 + 10 * at_least]
    distinct = len(unique_rows(head)[0])
    if distinct >= at_least or len(head) == len(X):
        return distinct
    return len(unique_rows(X)[0])


def check_fit_rows(X, plan: FitPlan, *, what: str = "X") -> np.ndarray:
    """The rows (or a uniform sample of them) a fit starts from: at least ``max(2, K)``
    rows of numbers; warns when there are fewer distinct rows than components."""
    k = plan.n_components
    reason = (f"n_components={k} needs at least {k} rows; lower n_components or add data"
              if k >= 2 else "a variance needs at least 2 rows")
    fix = {} if plan.covariance_type == "diag" else {"nan_fix": (
        "remove those rows or impute them (e.g. sklearn.impute.SimpleImputer); only "
        "covariance_type='diag' marginalises missing values (missing='marginalize')")}
    X = check_data(X, name=what, min_samples=max(2, k), min_samples_reason=reason,
                   dtype=plan.dtype, allow_nan=plan.allow_nan, **fix)
    distinct = count_distinct_rows(X, k)
    if distinct < k:
        warnings.warn(
            f"X has only {distinct} distinct row(s) for n_components={k}: {k - distinct} "
            "component(s) cannot get points of their own; they are kept (not re-seeded) "
            "with variances at or above min_variance and weights shrinking towards 0. "
            f"Use n_components <= {distinct} to fit without them", UserWarning, stacklevel=4)
    return X
