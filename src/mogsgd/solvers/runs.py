"""The solvers and the one restart loop.

A solver turns a :class:`~mogsgd.data.base.Prepared` fit and a start into a :class:`Run`:

* ``"sgd"`` and ``"online_em"`` (:class:`StochasticSolver`) run the one training loop,
  :func:`mogsgd.train.train` (gradient steps, or online EM's stochastic-approximation
  steps, eq. 36-37), with the source's epoch engine;
* ``"em"`` (:class:`EMSolver`) runs the one EM loop, :func:`mogsgd.em.em_loop`, on the
  source's sufficient statistics.

:func:`fit_runs` is the one restart loop for every input kind: ``n_init`` starts (or one:
the user's initial parameters, a warm start, a resumed checkpoint), keep the run with the
lowest validation (or training) NLL.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from mogsgd import errors, fast
from mogsgd.covariance import get_family, ops
from mogsgd.data.base import Prepared
from mogsgd.data.memory import em_fit_each_fn
from mogsgd.em import EMResult, em_loop
from mogsgd.errors import ValidationError
from mogsgd.init import init_params
from mogsgd.params import MixtureParams
from mogsgd.solvers.local_sgd import LocalSGDEngine
from mogsgd.solvers.progress import Progress
from mogsgd.train import TrainConfig, TrainState, train

__all__ = ["Run", "RunSettings", "StochasticSolver", "EMSolver", "SOLVERS", "get_solver",
           "fit_runs", "partial_epoch", "em_run", "initial_params", "refine",
           "REFINE_TOL", "REFINE_MAX_ITER", "RESOLUTION_ROWS", "refine_tol", "refined_epochs",
           "growth_cap"]


@dataclass(frozen=True)
class RunSettings:
    """What a solver needs besides the data: the training config, EM's budget and
    tolerance, the variance floor, the per-epoch hooks and the CPU backend."""

    config: TrainConfig
    max_iter: int = 200
    tol: float = 1e-4
    min_variance: float = 1e-6
    n_components: int = 1
    init: str = "auto"
    callback: Callable[[TrainState], Any] | None = None
    record_params: bool = False
    backend: str = "auto"
    refine: str = "auto"
    verbose: int = 0
    covariance_type: str = "diag"


#: The end-point refinement stops when the gain EM still has to make, extrapolated from its
#: last gains (:func:`mogsgd.em.remaining_gain`), is below this (nats per row, standardised
#: units; the end-point target is 1e-4), or after REFINE_MAX_ITER steps.
REFINE_TOL = 1e-7
REFINE_MAX_ITER = 1000
#: From this many rows on, the refinement stops at the fit's statistical resolution instead
#: (:func:`refine_tol`): a pass over them is no longer cheap.
RESOLUTION_ROWS = 100_000


def refine_tol(n_rows: int, n_params: int) -> float:
    """The refinement's stopping gain (nats per row): :data:`REFINE_TOL` on fewer than
    :data:`RESOLUTION_ROWS` rows, else ``max(REFINE_TOL, p / (2 n))`` with ``p`` free
    parameters fitted to ``n`` rows: the expected excess held-out loss of the maximum-
    likelihood fit itself (half AIC's penalty per row), below which a gain in the
    training likelihood is not resolved by the data.  On 1e6 rows (goal 15.3's hard sets)
    that is 1e-5 for K = 3, D = 3 and 1.3e-4 for K = 8, D = 16: along the slow direction
    of strongly overlapping components EM gains 1e-5 nats per iteration for hundreds of
    iterations (measured: held-out LL moved by 3e-5 nats in 60 iterations), which the
    fit's own estimation error swamps."""
    if n_rows < RESOLUTION_ROWS:
        return REFINE_TOL
    return max(REFINE_TOL, n_params / (2.0 * n_rows))


#: Early stopping's period (optimiser steps) when the refinement follows: on small data
#: the polished start and the refinement decide the optimum, SGD only has to move into it.
REFINED_STEPS_PER_PERIOD = 1


def refined_epochs(config: TrainConfig, n_train: int) -> int:
    """The stochastic phase's epoch budget before the EM refinement, for every covariance
    family: the whole number of epochs nearest to ``target_steps`` optimiser steps (at
    least one), without the 20-epoch minimum of :meth:`~mogsgd.train.TrainConfig.epochs_for`
    (which is there for SGD's own end point).  Small data keep their budget (4000 steps
    are 20 epochs or more up to ~51,000 rows at batch 256).  On 1e6 rows the phase is 1
    epoch (3907 steps) instead of 20: measured on 1e6 correlated rows (D = 16, K = 8), the
    refinement from 1 or 2 epochs reaches the same optimum as after 20 epochs (held-out LL
    equal to 4 decimals; 3 EM steps from either) in a fraction of the time (benchmarks goal
    17.2); on the diagonal hard sets of goal 15.3 the refinement after 1 or 2 epochs ends
    on the optimum of a 16-epoch run (held-out LL equal to 4 decimals) at D = 8 and 16, and
    0.003 nats per row below it at D = 3 (still above scikit-learn's default fit)."""
    steps = -(-n_train // config.batch_size)
    return max(1, min(config.epochs_for(n_train), round(config.target_steps / steps)))


#: Batch growth before the EM refinement (diagonal family, rows in memory): the batch
#: doubles after each epoch without an improvement of ``tol`` (:func:`mogsgd.train.grown_batch`)
#: up to GROWTH_FACTOR times ``batch_size``, while an epoch keeps GROWTH_MIN_STEPS steps.
GROWTH_FACTOR = 8
GROWTH_MIN_STEPS = 256


def growth_cap(config: TrainConfig, n_train: int) -> int | None:
    """The largest batch of the stochastic phase before the EM refinement:
    ``b * 2^j <= min(GROWTH_FACTOR * b, n_train / GROWTH_MIN_STEPS)`` for the largest such
    ``j``; ``None`` (a fixed batch) where not even one doubling fits (small data keep
    their fixed batch).  Larger batches late in the run lower the noise of the last iterate
    (the refinement then needs fewer EM steps, measured on 1e6 rows: 11 instead of 36 to
    101) and cost less per row (fewer optimiser steps per epoch)."""
    batch = config.batch_size
    limit = min(GROWTH_FACTOR * batch, n_train // GROWTH_MIN_STEPS)
    if 2 * batch > limit:
        return None
    while 2 * batch <= limit:
        batch *= 2
    return batch


#: A stochastic run whose end is this much worse (nats per row) than its start diverged
#: (a learning rate far too high); below it the refinement may start from the start.
DIVERGED = 1e4
#: The EM polish of each initial candidate (``init="auto"`` on in-memory rows) stops as
#: scikit-learn's EM does by default: a gain below 1e-3 nats per row, or 100 steps.
POLISH_TOL = 1e-3
POLISH_MAX_ITER = 100
#: Polishing is for small data: at most this many rows (the initialisation's sample size).
POLISH_MAX_ROWS = 20_000
#: The full, tied and spherical families' polish runs their NumPy E-step (O(K D^2) a row,
#: not compiled as diag's is; 20,000 rows with D=16, K=8 full: 0.36 s a step): their
#: candidates are polished where rows x K x D^2 is at most this (every small table: wine
#: with K=10 is 3e5), else the start is k-means++ as on large data.
FAMILY_POLISH_WORK = 2_000_000


@dataclass
class Run:
    """One fit from one start: parameters (standardised), the stochastic state (``None``
    for EM), the history, the score that ranks restarts (lower is better), convergence, the
    number of epochs or EM iterations run by this call and the objective after each of them
    (mean log-likelihood in data units; scikit-learn's ``lower_bounds_``); ``lower_bound``
    the mean log-likelihood of every row at ``params`` (data units) where a pass already
    computed it, else ``None``."""

    params: MixtureParams
    state: TrainState | None
    history: dict = field(default_factory=dict)
    score: float = np.inf
    converged: bool = False
    n_iter: int = 0
    lower_bounds: list = field(default_factory=list)
    refine_iter: int = 0
    start: MixtureParams | None = None
    advice: str | None = None
    lower_bound: float | None = None


class StochasticSolver:
    """Mini-batch SGD on the NLL (``"sgd"``) or online EM (``"online_em"``), both run by
    :func:`mogsgd.train.train`; checkpointable (the whole loop state is a TrainState)."""

    stochastic = True

    def __init__(self, name: str) -> None:
        self.name = name

    def run(self, prepared: Prepared, start: MixtureParams | None, settings: RunSettings,
            rng: np.random.Generator, *, state: TrainState | None = None,
            writer=None, extend: bool = False, prior_loglik: float | None = None,
            progress: Progress | None = None) -> Run:
        """One stochastic run; ``extend`` (warm start) trains ``max_epochs`` more epochs
        instead of up to the budget (resuming a checkpoint counts from its epoch 0).

        ``converged``: early stopping ended it (with ``early_stopping=False``: the objective
        improved by less than ``tol`` over the last ``patience`` periods, the criterion
        early stopping would have used).  A run that used up its epochs carries the
        warning's text in ``advice``; :func:`fit_runs` issues it unless the EM refinement
        then reaches its fixed point (more epochs would not change the result)."""
        first_epoch = state.epoch if extend and state is not None else 0
        config = settings.config
        n_train = getattr(prepared.train, "rows_per_trajectory", prepared.train.shape[0])
        if _refines(settings, prepared):
            # EM finishes the convergence: SGD only has to find the basin, so patience
            # counts short periods (REFINED_STEPS_PER_PERIOD steps) on small data; the
            # changes go into one replace (each one validates the whole config anew)
            changes = {"min_steps_per_period": REFINED_STEPS_PER_PERIOD}
            if config.max_epochs is None:
                # counted in passes over all rows: under local SGD (Dask) each of P workers
                # walks 1/P of them per epoch and the average of their trajectories moves
                # as one trajectory with P times the batch would
                changes["max_epochs"] = refined_epochs(config, prepared.train.shape[0])
            if (settings.covariance_type == "diag" and config.solver == "sgd"
                    and prepared.cheap_passes
                    and prepared.engine is None and config.max_batch_size is None):
                changes["max_batch_size"] = growth_cap(config, n_train)
            config = replace(config, **changes)
        callback = settings.callback
        if writer is not None or progress is not None:
            user_callback = settings.callback

            def callback(s):
                if writer is not None:  # first, so a callback that raises still has it saved
                    writer.epoch_done(s)
                if progress is not None:
                    progress.iteration(-s.history["train_nll"][-1])
                return None if user_callback is None else user_callback(s)

        scaler = prepared.scaler
        engine = prepared.engine
        if engine is None and getattr(prepared.train, "mode", None) == "local":
            engine = LocalSGDEngine   # rows on Dask workers: local SGD, averaged per round
        state = train(prepared.train, start, config=config, rng=rng, X_val=prepared.val,
                      val_weight=prepared.val_weight, sample_weight=prepared.train_weight,
                      state=state, callback=callback,
                      record_params=scaler.to_data if settings.record_params else None,
                      nll_offset=scaler.log_det,
                      max_epochs=config.epochs_for(n_train) if extend else None,
                      backend=settings.backend, engine=engine)
        n_iter = state.epoch - first_epoch
        advice = None
        if config.early_stopping:
            converged = bool(state.stopped)
            if not converged and n_iter > 0:
                label = "SGD" if self.name == "sgd" else "online EM"
                advice = (f"{label} stopped at its budget of {state.epoch} epochs before the "
                          "validation NLL settled; raise max_epochs or the learning rate")
        else:
            converged = n_iter > 0 and state.bad_epochs >= config.patience_epochs(n_train)
        return Run(state.params, state, state.history, state.best_score, converged, n_iter,
                   _lower_bounds(state.history, n_iter), start=start, advice=advice)


class EMSolver:
    """Batch EM (eqs. 27-30) by :func:`mogsgd.em.em_loop` on the source's statistics."""

    name = "em"
    stochastic = False

    def run(self, prepared: Prepared, start: MixtureParams | None, settings: RunSettings,
            rng: np.random.Generator, *, state=None, writer=None, extend: bool = False,
            prior_loglik: float | None = None, progress: Progress | None = None) -> Run:
        stats_fn = prepared.em_stats
        if progress is not None:   # one E-step per iteration: its log-likelihood is reported
            def stats_fn(params):
                stats = prepared.em_stats(params)
                progress.iteration(stats.ll_sum / stats.weight_sum)
                return stats
        result = em_loop(stats_fn, prepared.train_loglik, start,
                         max_iter=settings.max_iter, tol=settings.tol,
                         reg_covar=settings.min_variance, prior_loglik=prior_loglik,
                         update=ops.m_step)
        return em_run(result, prepared, settings.max_iter)


def em_run(result: EMResult, prepared: Prepared, max_iter: int) -> Run:
    """The run record of an EM fit: history per iteration (entry 0 is the start), the
    validation (or training) NLL that ranks restarts, convergence; warns when EM used up
    ``max_iter``."""
    offset = prepared.scaler.log_det
    train_nll = [-ll + offset for ll in result.log_likelihoods]
    history = {"epoch": list(range(len(train_nll))), "train_nll": train_nll,
               "val_nll": [None] * len(train_nll), "lr": [None] * len(train_nll),
               "time": result.times}
    score = train_nll[-1]
    if not result.converged and max_iter > 0:
        warnings.warn(f"EM did not converge in {max_iter} iterations; raise max_iter",
                      errors.ConvergenceWarning, stacklevel=5)
    return Run(result.params, None, history, score, result.converged, result.n_iter,
               [-v for v in train_nll[1:]])


def _lower_bounds(history: dict, n_iter: int) -> list[float]:
    """The objective (mean log-likelihood, data units) after each of the last ``n_iter``
    epochs: the epochs' mean batch NLLs, negated."""
    values = history["train_nll"][len(history["train_nll"]) - n_iter:] if n_iter else []
    return [-v for v in values]


#: The solver registry: ``solver=`` name -> implementation.
SOLVERS: dict[str, StochasticSolver | EMSolver] = {
    "sgd": StochasticSolver("sgd"),
    "em": EMSolver(),
    "online_em": StochasticSolver("online_em"),
}


def get_solver(name: str):
    return SOLVERS[name]


#: The non-diagonal families' starting covariances (:func:`initial_params`) come from at most
#: this many rows, as the initialisation's centres do: a start needs no more (SGD and the
#: EM refinement follow), and on 1e6 rows D = 16 the NumPy moments took seconds.
START_ROWS = 20_000
#: The covariance families' starting covariances are floored at this share of the
#: (standardised, about unit) variance, as the diagonal initialisation floors its variances.
INIT_FLOOR = 1e-3


def initial_params(prepared: Prepared, settings: RunSettings, rng: np.random.Generator,
                   user=None):
    """The starting parameters of one run, standardised, in the fit's covariance family.

    ``user`` is the user's initial arrays (a :class:`mogsgd.settings.UserInit` in data units,
    any subset: the others come from the initialisation, as in scikit-learn) or parameters
    to continue from.  Otherwise :func:`mogsgd.init.init_params` on the prepared
    initialisation rows (drawn with ``rng`` where the source draws them) and, for the full,
    tied and spherical families, each cluster's covariance in the family's structure
    (:func:`mogsgd.covariance.ops.start_from_diagonal`)."""
    if user is not None and not hasattr(user, "complete"):
        return user   # parameters (a warm start of EM)
    family = get_family(settings.covariance_type)
    scaler = prepared.scaler
    if user is not None and user.complete:
        return user.params(family, scaler)
    rows = prepared.init_rows(rng) if callable(prepared.init_rows) else prepared.init_rows
    floor = max(settings.min_variance, INIT_FLOOR)
    start = init_params(rows, settings.n_components, settings.init, rng, settings.min_variance,
                        sample_weight=prepared.init_weight,
                        score=fast.nll_fn_for(settings.backend),
                        polish=(_polisher(settings, family, floor)
                                if _polishes(prepared, settings) else None))
    weight = prepared.init_weight
    if len(rows) > START_ROWS:   # every m-th row: no draw from rng, the whole range covered
        every = -(-len(rows) // START_ROWS)
        rows, weight = rows[::every], None if weight is None else weight[::every]
    start = ops.start_from_diagonal(family, rows, start, weight, floor)
    if user is None:
        return start
    # some initial arrays given: they replace the initialisation's (scikit-learn's rule)
    return user.params(family, scaler, start)


def _polishes(prepared: Prepared, settings: RunSettings) -> bool:
    """Whether the initial candidates are polished: small data in memory (the
    initialisation sees every row, and an EM pass over them is cheap) without missing
    values (the initialisation rows have them imputed: EM would fit the imputed values)
    and EM allowed to shape the fit (``refine="none"`` asks for the stochastic solver's own
    end point, from an unpolished start).  Every covariance family: a candidate is polished
    in the fit's own family (:func:`_polisher`), where the basins are; the non-diagonal
    ones on small data only (:data:`FAMILY_POLISH_WORK`)."""
    if not prepared.in_memory or settings.refine == "none":
        return False
    n_rows = _n_rows(prepared)
    if settings.covariance_type != "diag":   # (diag's polish is compiled: fast.batch_em)
        work = n_rows * settings.n_components * prepared.n_features ** 2
        if work > FAMILY_POLISH_WORK:
            return False
    return n_rows <= POLISH_MAX_ROWS and not np.isnan(prepared.train).any()


def _polisher(settings: RunSettings, family, floor: float):
    """``polish(X, w, candidates) -> [(params, mean log-likelihood), ...]``: EM on the
    initialisation rows from each candidate, with the variance floor as a projection (the
    objective the fit ends on), until a step gains less than :data:`POLISH_TOL` nats per
    row (every candidate in one compiled call where :func:`mogsgd.data.memory.em_fit_each_fn`
    can).  A diagonal candidate becomes ``family``'s start first
    (:func:`mogsgd.covariance.ops.start_from_diagonal`, covariances floored at ``floor``),
    so the candidates are compared on the basins of the fit's own family; one whose EM
    fails or ends beyond the float range is returned unpolished, ranked last (``-inf``)."""
    fit_each = em_fit_each_fn(settings.backend)

    def polish(X, w, candidates):
        starts: list = []
        with np.errstate(all="ignore"):
            for params in candidates:
                try:
                    starts.append(ops.start_from_diagonal(family, X, params, w, floor))
                except (ValidationError, FloatingPointError):
                    starts.append(None)   # (a covariance beyond the float range)
            runnable = [start for start in starts if start is not None]
            results = iter(fit_each(X, w, runnable, max_iter=POLISH_MAX_ITER, tol=POLISH_TOL,
                                    reg_covar=0.0, floor=settings.min_variance))
        polished = []
        for params, start in zip(candidates, starts, strict=True):
            result = None if start is None else next(results)
            if result is None:
                polished.append((params if start is None else start, -np.inf))
                continue
            loglik = result.log_likelihoods[-1]
            finite = type(result.params) is MixtureParams or all(   # (which checks itself)
                np.isfinite(a).all() for a in result.params)
            if not (np.isfinite(loglik) and finite):
                polished.append((start, -np.inf))   # the unpolished start, ranked last
            else:
                polished.append((result.params, loglik))
        return polished

    return polish


def fit_runs(solver, prepared: Prepared, settings: RunSettings, rng: np.random.Generator, *,
             n_runs: int, user=None, warm_state: TrainState | None = None, ckpt=None,
             writer=None, prior_loglik: float | None = None) -> Run:
    """Run restarts ``0 .. n_runs - 1`` (from a checkpoint's restart) and keep the best.

    Each restart starts from the user's parameters ``user``, a warm start's state
    ``warm_state`` (continued for ``max_epochs`` more epochs), the position a checkpoint
    ``ckpt`` recorded, or :func:`mogsgd.init.init_params` on the prepared initialisation
    rows; ``writer`` (a :class:`mogsgd.checkpoint.CheckpointWriter`) records where each
    restart stands.  A lower ``Run.score`` wins.
    """
    first, best, pending = 0, None, None
    progress = Progress(settings.verbose) if settings.verbose else None
    if ckpt is not None:
        first, best, pending = ckpt.restart, _as_run(ckpt.best), ckpt
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
            writer.begin_restart(restart, rng, _as_dict(best), start_params=start,
                                 train_state=state)
        if state is None and start is None:
            start = initial_params(prepared, settings, rng, user)
            if writer is not None:
                writer.started(start, rng)
        pending = None
        if progress is not None:
            progress.init_start(restart)
        run = solver.run(prepared, start, settings, rng, state=state, writer=writer,
                         extend=warm_state is not None, prior_loglik=prior_loglik,
                         progress=progress)
        # each restart ends on its optimum before they are compared (refining only the
        # one with the best stochastic score can keep a worse optimum)
        run = refine(run, solver, prepared, settings)
        if run.advice is not None:
            warnings.warn(run.advice, errors.ConvergenceWarning, stacklevel=3)
        if progress is not None:
            progress.refined(run.refine_iter)
            progress.init_end(run.converged, prepared.lower_bound(run.params)
                              if progress.verbose >= 2 else None)
        if best is None or run.score < best.score:
            best = run
    if writer is not None:
        writer.save(complete=True)
    return best


def refine(run: Run, solver, prepared: Prepared, settings: RunSettings) -> Run:
    """End a stochastic fit on the optimum of its objective: EM steps from the SGD (or
    online EM) solution with the variance floor as a projection (:func:`mogsgd.em.m_step`
    with ``reg_covar=0``), until the gain still to come, extrapolated from the last gains
    (:func:`mogsgd.em.remaining_gain`), is below :func:`refine_tol` nats per row.  With early
    stopping it starts from the better of the run's start and its best parameters (on
    large in-memory data compared on the validation rows).

    The last stochastic iterate is within the gradient noise of the optimum (for ``K = 1``
    the means are off the sample mean by about a standard error); EM from there converges
    quickly because the start is already in the optimum's basin, and each step never lowers
    the likelihood (eq. 35).  ``refine="auto"`` does it where another pass over the rows is
    cheap (``Prepared.cheap_passes``: in memory here or on Dask workers), ``"em"`` wherever
    the source has EM statistics (one pass over the rows per step), ``"none"`` never.  A
    refined run's ``score`` is the NLL per row of the refined parameters on the rows the
    refinement fitted (data units), so refined restarts compare on the objective they end
    on; a refinement that reaches its fixed point makes the run converged (whatever the
    stochastic phase's budget, the fit is at an optimum).
    """
    if not (solver.stochastic and _refines(settings, prepared) and run.n_iter > 0):
        return run   # (nothing trained, as with max_epochs=0: nothing to refine)
    loglik = prepared.all_loglik or prepared.train_loglik
    n_params = get_family(settings.covariance_type).n_parameters(settings.n_components,
                                                                 prepared.n_features)
    options = {"max_iter": REFINE_MAX_ITER, "tol": refine_tol(_n_rows(prepared), n_params),
               "reg_covar": 0.0, "floor": settings.min_variance, "extrapolate": True}

    def em_from(params):
        with np.errstate(all="ignore"):
            if prepared.em_fit is not None:   # rows in memory: compiled where it can be
                return prepared.em_fit(params, **options)
            return em_loop(prepared.all_em_stats or prepared.em_stats, loglik, params,
                           update=ops.m_step, **options)

    origin = run.params
    if not all(np.isfinite(a).all() for a in origin):
        return run   # a diverged stochastic fit: reported as it is, not refined
    try:
        # the start's likelihood is compared with the refinement's first one, the
        # likelihood of the run's parameters (one pass over the rows fewer) -- except
        # after a polished start (small data), which often beats SGD's end: there one pass
        # scores the run's parameters first, so that EM runs once, from the better one;
        # and on large data, where the validation rows score both
        start_ll = run_ll = None
        if run.start is not None and _held_out_decides(prepared):
            # large data in memory (here or on Dask workers): their validation rows tell the
            # two apart as well, in a fifth of a pass each (on Dask: no round trip)
            held_out = _held_out_loglik(prepared, settings)
            start_ll, run_ll = held_out(run.start), held_out(origin)
        elif run.start is not None:
            start_ll = loglik(run.start)
            run_ll = loglik(origin) if _polishes(prepared, settings) else None
        result = em_from(origin) if run_ll is None else None
        if start_ll is not None:
            worse = start_ll - (result.log_likelihoods[0] if run_ll is None else run_ll)
            if not worse < DIVERGED:
                return run   # a diverged stochastic fit: reported as it is, not rescued
            if worse > 0 and settings.config.early_stopping:
                # SGD made things worse (Adam's step size throws a component collapsed onto
                # a repeated value off it): EM continues from the best parameters seen,
                # which early stopping's record (the epochs') leaves out
                origin, result = run.start, None
        if result is None:
            result = em_from(origin)
    except (ValidationError, FloatingPointError):
        return run   # a diverged stochastic fit: reported as it is, not refined
    lls = result.log_likelihoods
    rounding = 1e4 * np.finfo(run.params.dtype).eps * max(1.0, abs(lls[0]))
    if not (np.isfinite(lls[-1]) and lls[-1] >= lls[0] - rounding):
        # EM never lowers the likelihood beyond rounding: something broke (or, from a start
        # already at its fixed point with nearly singular covariances, rounding did); the
        # run ends where the refinement started, never worse than that
        if origin is run.params or not np.isfinite(lls[0]):
            return run
        return replace(run, params=origin, score=prepared.scaler.log_det - lls[0])
    settled = {"converged": True, "advice": None} if result.converged else {}
    # the refinement's last pass scored the returned parameters on every row: the fit's
    # lower bound, unless they are rounded to another dtype or only the training rows
    # were fitted
    known = prepared.all_loglik is not None and run.params.dtype == np.float64
    return replace(run, params=result.params.astype(run.params.dtype), refine_iter=result.n_iter,
                   score=prepared.scaler.log_det - lls[-1],
                   lower_bound=lls[-1] - prepared.scaler.log_det if known else None,
                   **settled)


def _held_out_decides(prepared: Prepared) -> bool:
    """Whether the refinement compares the run's start with its end on the validation rows
    (an array here, of a fit in memory or on Dask workers, at least :data:`RESOLUTION_ROWS`
    rows) rather than on every row."""
    return (prepared.cheap_passes and isinstance(prepared.val, np.ndarray)
            and _n_rows(prepared) >= RESOLUTION_ROWS)


def _held_out_loglik(prepared: Prepared, settings: RunSettings):
    """``params -> mean log-likelihood of the validation rows`` (standardised units)."""
    nll = fast.nll_fn_for(settings.backend)
    return lambda params: -nll(prepared.val, params, prepared.val_weight)


def _n_rows(prepared: Prepared) -> int:
    """The rows of the fit: training and validation rows."""
    return prepared.train.shape[0] + (0 if prepared.val is None else prepared.val.shape[0])


def _refines(settings: RunSettings, prepared: Prepared) -> bool:
    """Whether the fit ends with the EM refinement (``refine`` and the source allow it)."""
    wanted = settings.refine == "em" or (settings.refine == "auto" and prepared.cheap_passes)
    return wanted and prepared.em_stats is not None


def _as_dict(run: Run | None) -> dict | None:
    """The checkpoint's record of the best run so far (its file format is a dict)."""
    if run is None:
        return None
    return {"params": run.params, "state": run.state, "history": run.history,
            "score": run.score, "converged": run.converged, "n_iter": run.n_iter,
            "lower_bounds": [float(v) for v in run.lower_bounds],
            "refine_iter": int(run.refine_iter),
            "lower_bound": None if run.lower_bound is None else float(run.lower_bound)}


def _as_run(best: dict | None) -> Run | None:
    return None if best is None else Run(**best)


def partial_epoch(prepared: Prepared, start: MixtureParams | None, state: TrainState | None,
                  settings: RunSettings, rng: np.random.Generator) -> Run:
    """One epoch over a prepared block continuing ``state`` (or starting at ``start``),
    without early stopping: ``partial_fit``."""
    config = replace(settings.config, early_stopping=False)
    scaler = prepared.scaler
    state = train(prepared.train, start, config=config, rng=rng, state=state, max_epochs=1,
                  sample_weight=prepared.train_weight, callback=settings.callback,
                  nll_offset=scaler.log_det,
                  record_params=scaler.to_data if settings.record_params else None,
                  backend=settings.backend, engine=prepared.engine)
    return Run(state.params, state, state.history, state.best_score, False, state.epoch,
               _lower_bounds(state.history, 1))
