"""Batch EM on an in-memory array in one compiled call (:mod:`mogsgd.fast.em_kernel`).

:func:`em_loop` takes the arguments of :func:`mogsgd.em.em_loop` with the rows instead of
the two data functions, and returns the same :class:`~mogsgd.em.EMResult` (the same
iterates to rounding, ~1e-12; a test compares them).  :func:`supports` says when it can
run: diagonal float64 parameters, float32/float64 rows without NaN (missing values need
the per-feature counts of :func:`mogsgd.em.em_stats`).
"""

from __future__ import annotations

import time

import numpy as np

from mogsgd.em import EMResult
from mogsgd.errors import ValidationError
from mogsgd.params import VARIANCE_MAX, MixtureParams

__all__ = ["em_loop", "em_loops", "supports"]


def supports(X: np.ndarray, params: MixtureParams, check_nan: bool = True) -> bool:
    """Whether :func:`em_loop` can run on these rows and parameters; ``check_nan=False``
    where the caller knows that ``X`` holds no NaN (saves a pass over the rows)."""
    import mogsgd.fast.kernels as kern

    return (type(params) is MixtureParams and params.dtype == np.float64
            and isinstance(X, np.ndarray) and X.ndim == 2
            and X.dtype in (np.float32, np.float64)
            and not (check_nan and kern.has_nan(np.ascontiguousarray(X))))


def em_loop(X: np.ndarray, sample_weight: np.ndarray | None, params: MixtureParams, *,
            max_iter: int = 200, tol: float = 1e-6, reg_covar: float = 1e-6,
            prior_loglik: float | None = None, floor: float = 0.0,
            extrapolate: bool = False) -> EMResult:
    """:func:`mogsgd.em.em_loop` on the rows ``X`` (n, D) with weights ``sample_weight``,
    compiled (:func:`mogsgd.fast.em_kernel.em_iterations`).  ``times`` holds the total
    time for every iteration (the kernel does not stop the clock in between)."""
    import mogsgd.fast.em_kernel as emk
    import mogsgd.fast.kernels as kern

    t0 = time.perf_counter()
    X = np.ascontiguousarray(X)
    k, d = params.means.shape
    if sample_weight is None:
        w, has_w = np.empty(0), False
    else:
        w, has_w = np.ascontiguousarray(sample_weight, dtype=np.float64), True
    means = np.array(params.means, dtype=np.float64)
    log_sigma = np.array(params.log_sigma, dtype=np.float64)
    logits = np.array(params.logits, dtype=np.float64)
    lls = np.empty(max_iter + 1)
    n_iter, converged = emk.em_iterations(
        X, w, has_w, means, log_sigma, logits, float(reg_covar), float(floor), VARIANCE_MAX,
        int(max_iter), float(tol), bool(extrapolate),
        0.0 if prior_loglik is None else float(prior_loglik), prior_loglik is not None,
        kern.block_for(k, d, X.shape[0]), kern.partition(X.shape[0])[1], lls)
    elapsed = time.perf_counter() - t0
    return EMResult(params=MixtureParams(means, log_sigma, logits),
                    log_likelihoods=[float(v) for v in lls[:n_iter + 1]],
                    times=[elapsed] * (n_iter + 1), converged=bool(converged),
                    n_iter=int(n_iter))


def em_loops(X: np.ndarray, sample_weight: np.ndarray | None, starts: list[MixtureParams], *,
             max_iter: int = 200, tol: float = 1e-6, reg_covar: float = 1e-6,
             floor: float = 0.0, extrapolate: bool = False) -> list[EMResult | None]:
    """:func:`em_loop` from each of ``starts`` (parameters of one shape), in one compiled
    call (:func:`mogsgd.fast.em_kernel.em_iterations_each`): the same iterates as one call
    each.  ``None`` stands for a start whose result is not representable (a value beyond
    the float range), where :func:`em_loop` raises."""
    import mogsgd.fast.em_kernel as emk
    import mogsgd.fast.kernels as kern

    t0 = time.perf_counter()
    X = np.ascontiguousarray(X)
    k, d = starts[0].means.shape
    if sample_weight is None:
        w, has_w = np.empty(0), False
    else:
        w, has_w = np.ascontiguousarray(sample_weight, dtype=np.float64), True
    means = np.array([p.means for p in starts], dtype=np.float64)
    log_sigma = np.array([p.log_sigma for p in starts], dtype=np.float64)
    logits = np.array([p.logits for p in starts], dtype=np.float64)
    lls = np.empty((len(starts), max_iter + 1))
    n_iters = np.zeros(len(starts), dtype=np.int64)
    converged = np.zeros(len(starts), dtype=np.bool_)
    emk.em_iterations_each(X, w, has_w, means, log_sigma, logits, float(reg_covar),
                           float(floor), VARIANCE_MAX, int(max_iter), float(tol),
                           bool(extrapolate), kern.block_for(k, d, X.shape[0]),
                           kern.partition(X.shape[0])[1], lls, n_iters, converged)
    elapsed = time.perf_counter() - t0
    flat = np.concatenate([means.reshape(len(starts), k * d),
                           log_sigma.reshape(len(starts), k * d), logits], axis=1)
    results: list[EMResult | None] = []
    for c, n_iter in enumerate(n_iters.tolist()):
        try:
            params = MixtureParams.unravel(flat[c], k, d)
        except ValidationError:
            results.append(None)
            continue
        results.append(EMResult(params=params,
                                log_likelihoods=lls[c, :n_iter + 1].tolist(),
                                times=[elapsed] * (n_iter + 1), converged=bool(converged[c]),
                                n_iter=n_iter))
    return results
