"""In-memory arrays: NumPy arrays, lists, anything ``np.asarray`` reads (memmaps included).

The reference source: every capability, and the other sources are tested against it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator

import numpy as np

from mogsgd import api, fast
from mogsgd._random import state_copy
from mogsgd.covariance.ops import em_stats, m_step
from mogsgd.data.base import (
    FitPlan,
    Model,
    Prepared,
    Source,
    check_fit_rows,
    check_width,
    row_function,
    split_rows,
)
from mogsgd.em import EMResult, em_loop
from mogsgd.errors import ValidationError
from mogsgd.init import distinct_rows
from mogsgd.standardize import Standardizer, impute_for_init
from mogsgd.validation import check_data, check_sample_weight

__all__ = ["MemorySource", "check_width", "weighted_mean", "em_stats_fn", "em_fit_fn",
           "em_fit_each_fn"]


def weighted_mean(values: np.ndarray, w: np.ndarray | None) -> float:
    """``mean(values)``, or ``sum w v / sum w``."""
    if w is None:
        return float(values.mean())
    return float(np.asarray(w, dtype=values.dtype) @ values / w.sum())


def em_stats_fn(backend: str, missing: bool):
    """``stats(X, params, w)``: the E-step statistics by the compiled pass
    (:func:`mogsgd.fast.em_stats`) under the numba backend, else (and with missing values,
    whose per-feature counts the gradient does not hold) the family's reference
    (:func:`mogsgd.covariance.ops.em_stats`)."""
    if missing or fast.resolve_backend(backend) != "numba":
        return em_stats
    return fast.em_stats


def em_fit_fn(backend: str, missing: bool | None = None):
    """``fit(X, w, params, **options) -> EMResult``: the EM loop over the in-memory rows
    ``X`` with weights ``w`` (the options of :func:`mogsgd.em.em_loop`), compiled in one
    call (:func:`mogsgd.fast.batch_em.em_loop`: diagonal components, no missing values)
    under the numba backend, else (and on many rows, whose passes run on numba's threads:
    :func:`mogsgd.fast.threaded_passes`) :func:`mogsgd.em.em_loop` over :func:`em_stats_fn`'s
    statistics with the family's M-step.  ``missing``: whether the rows hold NaN, where
    the caller knows (else each call looks: a pass over the rows)."""
    compiled = fast.resolve_backend(backend) == "numba"
    log_prob = functools.partial(api.log_prob, backend=backend)

    def fit(X, w, params, **options) -> EMResult:
        has_nan = bool(np.isnan(X).any()) if missing is None else missing
        if compiled and not has_nan and not fast.threaded_passes(X.shape[0]):
            from mogsgd.fast import batch_em

            if batch_em.supports(X, params, check_nan=False):
                return batch_em.em_loop(X, w, params, **options)
        stats_fn = em_stats_fn(backend, missing=has_nan)
        return em_loop(lambda p: stats_fn(X, p, w),
                       lambda p: weighted_mean(log_prob(X, p), w), params,
                       update=m_step, **options)

    return fit


def em_fit_each_fn(backend: str):
    """``fit_each(X, w, starts, **options) -> list[EMResult | None]``: :func:`em_fit_fn`'s
    fit from each of ``starts``, ``None`` where it failed (a value beyond the float range);
    diagonal starts under the numba backend in one compiled call
    (:func:`mogsgd.fast.batch_em.em_loops`)."""
    compiled = fast.resolve_backend(backend) == "numba"
    fit = em_fit_fn(backend)

    def fit_each(X, w, starts, **options) -> list[EMResult | None]:
        if compiled and starts:
            from mogsgd.fast import batch_em

            if all(batch_em.supports(X, p) for p in starts[:1]) and all(
                    type(p) is type(starts[0]) and p.means.shape == starts[0].means.shape
                    and p.dtype == starts[0].dtype for p in starts):
                return batch_em.em_loops(X, w, starts, **options)
        results: list[EMResult | None] = []
        for params in starts:
            try:
                results.append(fit(X, w, params, **options))
            except (ValidationError, FloatingPointError):
                results.append(None)
        return results

    return fit_each


class MemorySource(Source):
    """Rows held in memory as one array."""

    kind = "array"

    def __init__(self, X) -> None:
        self.X = X
        shape = getattr(X, "shape", ())   # lists are read (and checked) by prepare
        self.n_features = shape[1] if len(shape) == 2 else None

    def prepare(self, plan: FitPlan, rng: np.random.Generator, *, sample_weight=None,
                scaler: Standardizer | None = None,
                check_rows: Callable[[np.ndarray], None] | None = None) -> Prepared:
        X = check_fit_rows(self.X, plan)
        w = check_sample_weight(sample_weight, X.shape[0])
        X_data, w_data = X, w
        # one pass, shared by everything below; none where NaN is refused (check_fit_rows did)
        missing = plan.allow_nan and bool(np.isnan(X).any())
        if len(X) <= plan.batch_size and not missing:
            # full-batch regime: train on the distinct rows in a canonical order with
            # their total weights, so duplicated rows and integer weights (and zero
            # weights and removed rows) give exactly the same fit
            X, w = distinct_rows(X, w)
        if check_rows is not None:  # a checkpoint checks these are the rows it was fitting
            check_rows(X)
        check_width(X.shape[1], None if scaler is None else len(scaler.center))
        if scaler is None:
            scaler = plan.fit_scaler(X, w)
        split_rng_state = state_copy(rng.bit_generator.state)
        Z = scaler.transform(X)
        n_val = plan.n_validation(len(Z))
        Z_train, w_train, Z_val, w_val = split_rows(Z, w, rng.permutation(len(Z)), n_val)
        nll_fn = fast.nll_fn_for(plan.backend)
        stats_fn = em_stats_fn(plan.backend, missing=missing)
        log_prob = functools.partial(api.log_prob, backend=plan.backend)

        def lower_bound(params):
            return float(-nll_fn(X_data, scaler.to_data(params), w_data))

        return Prepared(
            n_features=X.shape[1], scaler=scaler, train=Z_train, train_weight=w_train,
            val=Z_val, val_weight=w_val,
            # standardised rows hold NaN only where the rows do (centre and scale finite)
            init_rows=impute_for_init(Z_train) if missing else Z_train,
            init_weight=w_train,
            em_stats=lambda params: stats_fn(Z_train, params, w_train),
            train_loglik=lambda params: weighted_mean(log_prob(Z_train, params), w_train),
            lower_bound=lower_bound, fingerprint=X, split_rng_state=split_rng_state,
            in_memory=True, cheap_passes=True, all_em_stats=lambda params: stats_fn(Z, params, w),
            all_loglik=lambda params: weighted_mean(log_prob(Z, params), w),
            em_fit=lambda params, **options: em_fit_fn(plan.backend, missing)(Z, w, params,
                                                                            **options))

    def blocks(self, plan: FitPlan, sample_weight=None) -> Iterator[Source]:
        yield self

    def prepare_block(self, plan: FitPlan, model: Model | None, *, sample_weight=None,
                      scaler: Standardizer | None = None) -> Prepared:
        X = check_fit_rows(self.X, plan) if model is None else self._checked(model)
        w = check_sample_weight(sample_weight, X.shape[0])
        if scaler is None:
            scaler = plan.fit_scaler(X, w)
        Z = scaler.transform(X)
        nll_fn = fast.nll_fn_for(plan.backend)
        return Prepared(
            n_features=X.shape[1], scaler=scaler, train=Z, train_weight=w,
            init_rows=impute_for_init(Z), init_weight=w, em_stats=None, train_loglik=None,
            lower_bound=lambda params: float(-nll_fn(X, scaler.to_data(params), w)))

    def _checked(self, model: Model) -> np.ndarray:
        return check_data(self.X, n_features=model.n_features, owner=model.owner,
                          dtype=model.params.dtype, allow_nan=model.allow_nan)

    def map_rows(self, name: str, model: Model):
        return row_function(name, model)(self._checked(model), model.params)

    def loglik_sum(self, model: Model, sample_weight=None) -> tuple[float, float]:
        ll = np.asarray(row_function("score_samples", model)(self._checked(model),
                                                              model.params), dtype=np.float64)
        if sample_weight is None:
            return float(ll.sum()), float(len(ll))
        w = check_sample_weight(sample_weight, len(ll))
        return float(w @ ll), float(w.sum())

