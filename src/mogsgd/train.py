"""The training loop: shuffled mini-batches, updates, validation, early stopping, history.

:func:`train` runs mini-batch SGD on the mean NLL (eq. 18) from given
parameters.  All loop state lives in an explicit :class:`TrainState` (parameters,
optimiser state, RNG state, epoch, history, best-so-far) so a run can be
checkpointed and resumed bit-for-bit, and continued (``warm_start``).

Each epoch draws a fresh order of the training rows from the seeded
``numpy.random.Generator`` (a uniform permutation; block-shuffled above 4 MiB of rows, see
:mod:`mogsgd.fast.shuffle`), visits them in batches of ``batch_size``, computes
the analytic gradient (:func:`mogsgd.gradients.nll_grad`), applies the
optimiser and projects ``log_sigma`` onto the variance floor (eq. 26).

``backend="numba"`` (the default ``"auto"`` where numba works) uses the fused
kernels of :mod:`mogsgd.fast` and, for the gradient solvers on in-memory arrays,
runs each epoch compiled: the order of the rows is the same, the
batches, gradients, updates and floor run in one kernel call, with the same
results as this loop.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, NamedTuple

import numpy as np

from mogsgd import fast
from mogsgd._random import state_copy
from mogsgd.covariance import ops
from mogsgd.covariance.ops import nll, nll_grad_sums
from mogsgd.errors import ValidationError
from mogsgd.gradients import GradSums
from mogsgd.online_em import check_online_em_settings, step_size
from mogsgd.optim import (
    OPTIMIZERS,
    SCHEDULES,
    Optimizer,
    apply_updates,
    make_optimizer,
    make_schedule,
)
from mogsgd.params import MixtureParams
from mogsgd.validation import check_choice, check_fraction, check_positive_float, check_positive_int

__all__ = ["TrainConfig", "TrainState", "History", "Stepper", "train", "make_stepper",
           "ArrayEngine", "check_finite", "current_lr", "train_torch",
           "project_variance_floor", "start_state", "record_epoch",
           "DEFAULT_LEARNING_RATES", "batch_count", "grown_batch", "SOLVERS"]

#: Stochastic solvers the loop runs: gradient descent or online EM (eq. 36).
SOLVERS = ("sgd", "online_em")

#: Learning rates that work on standardised data (unit variance per feature).
DEFAULT_LEARNING_RATES = {"sgd": 0.1, "momentum": 0.02, "nesterov": 0.02, "adam": 0.02}

#: Early stopping's patience counts periods of at least this many optimiser steps.
MIN_STEPS_PER_PERIOD = 100

History = dict[str, list]


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of :func:`train`, validated on construction.

    ``learning_rate=None`` picks :data:`DEFAULT_LEARNING_RATES`; ``max_epochs=None``
    picks enough epochs for about ``target_steps`` optimiser steps (at least 20,
    at most 2000).  Early stopping watches the validation NLL (or, without a
    validation set, the epoch's training NLL) and stops after ``patience``
    periods (an epoch, or enough epochs for 100 steps on small data) without
    an improvement larger than ``tol`` nats per point.
    """

    solver: str = "sgd"
    optimizer: str = "adam"
    learning_rate: float | None = None
    schedule: str = "inverse_time"
    decay_epochs: float = 5.0
    batch_size: int = 256
    max_epochs: int | None = None
    target_steps: int = 4000
    momentum: float = 0.9
    min_variance: float = 1e-6
    early_stopping: bool = True
    patience: int = 5
    tol: float = 1e-4
    oem_alpha: float = 0.6
    oem_t0: float = 2.0
    oem_average: bool = True
    min_steps_per_period: int = MIN_STEPS_PER_PERIOD
    max_batch_size: int | None = None

    def __post_init__(self) -> None:
        check_choice("solver", self.solver, SOLVERS)
        check_online_em_settings(self.oem_alpha, self.oem_t0)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("schedule", self.schedule, SCHEDULES)
        if self.learning_rate is not None:
            check_positive_float("learning_rate", self.learning_rate)
        check_positive_float("decay_epochs", self.decay_epochs)
        check_positive_int("batch_size", self.batch_size)
        check_positive_int("max_epochs", self.max_epochs, minimum=0, allow_none=True)
        check_positive_int("target_steps", self.target_steps)
        check_fraction("momentum", self.momentum)
        check_positive_float("min_variance", self.min_variance)
        check_positive_int("patience", self.patience)
        check_positive_float("tol", self.tol, allow_zero=True)
        check_positive_int("max_batch_size", self.max_batch_size, allow_none=True)

    @property
    def lr(self) -> float:
        return (self.learning_rate if self.learning_rate is not None
                else DEFAULT_LEARNING_RATES[self.optimizer])

    def epochs_for(self, n_train: int) -> int:
        if self.max_epochs is not None:
            return self.max_epochs
        steps = batch_count(n_train, self.batch_size)
        return int(np.clip(np.ceil(self.target_steps / steps), 20, 2000))

    def patience_epochs(self, n_train: int) -> int:
        """``patience`` counts periods of at least ``min_steps_per_period`` steps
        (:data:`MIN_STEPS_PER_PERIOD` by default), so tiny data sets (one step per epoch) are
        not stopped after a handful of steps."""
        per_epoch = batch_count(n_train, self.batch_size)
        return self.patience * max(1, -(-self.min_steps_per_period // per_epoch))

    def build_optimizer(self, n_train: int) -> Optimizer:
        steps_per_epoch = batch_count(n_train, self.batch_size)
        total = steps_per_epoch * max(self.epochs_for(n_train), 1)
        schedule = make_schedule(self.schedule, self.lr, total_steps=total,
                                 decay_steps=self.decay_epochs * steps_per_epoch)
        return make_optimizer(self.optimizer, schedule, beta=self.momentum)


def grown_batch(config: TrainConfig, history: History) -> int:
    """The batch size of the next epoch under batch growth: ``config.batch_size`` doubled
    after every epoch that did not improve the best score (validation NLL, else training
    NLL) by more than ``tol``, from epoch ``patience + 1`` on (the first epochs at the small
    batch find the basin: grown from epoch 2, a 1e6-row fit ended in a worse optimum), up
    to ``config.max_batch_size``, where one more such epoch stops early stopping (Smith et
    al. 2018: grow the batch instead of decaying the step).  A function of the history
    alone, so a resumed run continues with the batch the interrupted one would have used; without
    ``max_batch_size`` the batch is fixed."""
    batch, cap = config.batch_size, config.max_batch_size
    if cap is None:
        return batch
    best = np.inf
    for epoch, (val, tr) in enumerate(zip(history["val_nll"], history["train_nll"],
                                               strict=True), 1):
        score = val if val is not None else tr
        if not score < best - config.tol and 2 * batch <= cap and epoch > config.patience:
            batch *= 2
        best = min(best, score)
    return batch


def batch_count(n: int, batch_size: int) -> int:
    """Number of mini-batches per epoch, ``ceil(n / batch_size)``."""
    return -(-n // batch_size)


@dataclass
class TrainState:
    """Everything needed to continue a run exactly where it stopped."""

    params: MixtureParams
    opt_state: Any
    rng_state: dict
    epoch: int = 0
    history: History = field(default_factory=lambda: {
        "epoch": [], "train_nll": [], "val_nll": [], "lr": [], "time": []})
    best_params: MixtureParams | None = None
    last_params: MixtureParams | None = None
    best_score: float = np.inf
    bad_epochs: int = 0
    stopped: bool = False
    elapsed: float = 0.0

    def copy(self) -> TrainState:
        return copy.deepcopy(self)


class Stepper(NamedTuple):
    """One solver's batch update, as pure functions over explicit state.

    ``init(params) -> state``; ``step(params, state, X_batch, w_batch) ->
    (params, state, batch_nll)`` with ``batch_nll`` the mean NLL of the batch at
    the incoming parameters; ``output(params, state)`` the parameters to report
    (Polyak–Ruppert average for online EM); ``lr(state)`` the last step size.
    """

    init: Callable[[MixtureParams], Any]
    step: Callable[..., tuple[MixtureParams, Any, float]]
    output: Callable[[MixtureParams, Any], MixtureParams]
    lr: Callable[[Any], float]


def make_stepper(config: TrainConfig, n_train: int,
                 grad_sums_fn: Callable[..., GradSums] = nll_grad_sums) -> Stepper:
    """The batch update for ``config.solver``.

    Gradient solvers: ``theta <- P(theta + update(g))`` with the analytic mean-NLL
    gradient ``g`` (eq. 19; eqs. 41-45 for the other covariance families) and the
    variance-floor projection ``P`` (eqs. 26, 46).  Every function dispatches on the
    parameters' covariance family (:mod:`mogsgd.covariance.ops`).
    With sample weights normalised to mean one over the data, the batch gradient
    is ``(1/|B|) sum_{i in B} w_i g_i``: an unbiased estimate of the weighted
    full-data gradient, so a weight of 2 acts like a duplicated row in
    expectation (eq. 32).  Online EM: eq. 36, averaged after one epoch (eq. 37).
    """
    if config.solver == "online_em":
        average_after = batch_count(n_train, config.batch_size) if config.oem_average else None

        def oem_step(params, state, Xb, wb):
            return ops.family_of(params).online_step(
                Xb, params, state, alpha=config.oem_alpha, t0=config.oem_t0,
                reg_covar=config.min_variance, sample_weight=wb, average_after=average_after)

        return Stepper(
            init=lambda params: ops.family_of(params).online_init(params, config.min_variance),
            step=oem_step,
            output=lambda params, state: state.average if state.average is not None
            else params,
            lr=lambda state: step_size(max(state.count, 1), config.oem_alpha, config.oem_t0),
        )

    optimizer = config.build_optimizer(n_train)

    def grad_step(params, opt_state, Xb, wb):
        sums = grad_sums_fn(Xb, params, wb)
        scale = 1.0 / Xb.shape[0]   # mean over rows; weights have mean one (see above)
        grad = ops.gradient(sums, params, scale)
        updates, opt_state = optimizer.update(grad, opt_state)
        params = project_variance_floor(apply_updates(params, updates), config.min_variance)
        return params, opt_state, sums.nll_sum * scale

    return Stepper(init=optimizer.init, step=grad_step, output=lambda params, state: params,
                   lr=lambda state: current_lr(optimizer, state))


def project_variance_floor(params: MixtureParams, min_variance: float) -> MixtureParams:
    """``log sigma <- max(log sigma, 1/2 log v_min)`` (eq. 26); the eigenvalue floor of the
    other covariance families (eq. 46)."""
    return ops.project_floor(params, min_variance)


def check_finite(value: float, epoch: int, lr: float) -> None:
    if not np.isfinite(value):
        raise FloatingPointError(
            f"the NLL became {value} at epoch {epoch}; lower the learning rate (now {lr:g}) "
            "or raise min_variance"
        )


class ArrayEngine:
    """The epoch engine for NumPy arrays and batch providers (streams, Dask): one epoch of
    :class:`Stepper` updates, compiled in one kernel call where :func:`mogsgd.fast.compiled_epoch`
    can (in-memory arrays), else the Python loop over :func:`_epoch_batches`.

    Every engine has the same four members, so :func:`train` runs one loop for all of them
    (the torch engine is :class:`mogsgd.backends.torch_train.TorchEngine`):
    ``epoch(params, opt_state, more) -> (params, opt_state, nll_total, rows)``,
    ``val_nll(params) -> float | None`` (the validation NLL, no offset),
    ``rng_state() -> dict`` (where the caller's generator stands after the epoch) and
    ``close()``.
    """

    def __init__(self, X, stepper: Stepper, config: TrainConfig, rng: np.random.Generator, *,
                 sample_weight=None, X_val=None, val_weight=None, params: MixtureParams,
                 grad_sums_fn: Callable[..., GradSums] = nll_grad_sums,
                 nll_fn: Callable[..., float] = nll) -> None:
        n = X.shape[0]
        self.X, self.w, self.rng, self.stepper = X, sample_weight, rng, stepper
        self.X_val, self.val_weight, self.nll_fn = X_val, val_weight, nll_fn
        self.batch = min(config.batch_size, n)
        self.compiled = fast.compiled_epoch(config, n, grad_sums_fn, X, sample_weight, params,
                                            python_step=stepper.step)
        # the order of each compiled epoch (fast.epoch_order), the next one drawn meanwhile
        self.perms = fast.permutations(rng, n, compiled=self.compiled is not None,
                                       n_features=X.shape[1])

    def epoch(self, params, opt_state, more: bool):
        if self.compiled is not None:  # the loop below, compiled
            return self.compiled(self.perms.next(more=more), params, opt_state)
        total, count = 0.0, 0.0
        for Xb, wb in _epoch_batches(self.X, self.w, self.batch, self.rng):
            params, opt_state, value = self.stepper.step(params, opt_state, Xb, wb)
            total += value * len(Xb)
            count += len(Xb)
        return params, opt_state, total, count

    def val_nll(self, params: MixtureParams) -> float | None:
        return None if self.X_val is None else self.nll_fn(self.X_val, params, self.val_weight)

    def rng_state(self) -> dict:
        return (self.perms.rng_state() if self.compiled is not None
                else state_copy(self.rng.bit_generator.state))

    def close(self) -> None:
        self.perms.close()


def train(
    X: np.ndarray,
    params: MixtureParams | None = None,
    *,
    config: TrainConfig = TrainConfig(),
    rng: np.random.Generator | None = None,
    X_val: np.ndarray | None = None,
    val_weight: np.ndarray | None = None,
    state: TrainState | None = None,
    sample_weight: np.ndarray | None = None,
    callback: Callable[[TrainState], Any] | None = None,
    record_params: Callable[[MixtureParams], MixtureParams] | None = None,
    nll_offset: float = 0.0,
    grad_sums_fn: Callable[..., GradSums] = nll_grad_sums,
    max_epochs: int | None = None,
    backend: str = "auto",
    engine: Callable[..., Any] | None = None,
) -> TrainState:
    """Mini-batch SGD (or online EM) on the mean NLL of ``X`` (n, D); returns the final
    :class:`TrainState`.  The one training loop of the package: every input kind and
    solver runs it, with an epoch engine for where the rows live.

    Start from ``params`` with a fresh optimiser, or continue ``state`` (resume /
    warm start).  ``max_epochs`` overrides the config (used to run a few epochs
    at a time).  The history records per epoch: the mean of the epoch's batch
    NLLs (``train_nll``), the validation NLL, the learning rate of the epoch's
    last step and cumulative wall time; NLLs are shifted by ``nll_offset`` (the
    log-determinant of a standardisation, eq. 33).  If ``record_params`` is
    given, ``history["params"]`` holds ``record_params(params)`` at the start
    (entry 0) and after each epoch (entry ``e``).
    ``callback(state)`` runs after each epoch; returning ``False`` stops training.
    ``backend`` (``"auto"``, ``"numpy"``, ``"numba"``) picks the NumPy reference or the
    compiled kernels (:func:`mogsgd.fast.kernels_for`, :func:`mogsgd.fast.compiled_epoch`);
    a custom ``grad_sums_fn`` always runs in the Python loop.

    ``X`` may also be a batch provider (the training rows of a stream or a Dask array,
    :mod:`mogsgd.data`): an object with ``shape`` (n, D) and ``epoch_batches(batch_size,
    rng)`` yielding one epoch's ``(X_batch, w_batch)``; if it has ``grad_sums_fn``, that
    computes the batch gradient sums instead.  ``engine`` builds the epoch engine
    (default :class:`ArrayEngine`; :class:`mogsgd.backends.torch_train.TorchEngine` for
    tensors), called as ``engine(X, stepper, config, rng, sample_weight=, X_val=,
    val_weight=, params=, grad_sums_fn=, nll_fn=)``.

    On return ``state.params`` are the best parameters seen by early stopping
    (the last ones when early stopping is off).
    """
    n = X.shape[0]
    # steps per epoch follow the rows one optimiser walks through: all of them, or one
    # worker's share under local SGD (mogsgd.solvers.local_sgd)
    n_steps = getattr(X, "rows_per_trajectory", n)
    rng = rng if rng is not None else np.random.default_rng()
    grad_sums_fn, nll_fn = fast.kernels_for(backend, grad_sums_fn)
    stepper = make_stepper(config, n_steps, getattr(X, "grad_sums_fn", grad_sums_fn))
    state = start_state(params, state, stepper.init, rng, config, record_params)
    epochs = max_epochs if max_epochs is not None else config.epochs_for(n_steps)
    last_epoch = state.epoch + epochs if max_epochs is not None else epochs
    w = sample_weight
    if w is not None:  # mean one, so batch sums / |B| are unbiased (eq. 32)
        if isinstance(w, np.ndarray | list | tuple):  # tensors stay on their device
            w = np.asarray(w, dtype=np.float64)
        w = w * (n / w.sum())
    # the iterate continues from the last parameters, not from the best ones
    params = state.last_params if state.last_params is not None else state.params
    opt_state = state.opt_state

    def build(batch: int):
        return (engine or ArrayEngine)(X, stepper, config if batch == config.batch_size
                                       else replace(config, batch_size=batch), rng,
                                       sample_weight=w, X_val=X_val, val_weight=val_weight,
                                       params=params, grad_sums_fn=grad_sums_fn, nll_fn=nll_fn)

    batch = grown_batch(config, state.history)
    eng = build(batch)
    clock = time.perf_counter()
    try:
        while state.epoch < last_epoch and not state.stopped:
            params, opt_state, total, count = eng.epoch(params, opt_state,
                                                        state.epoch + 1 < last_epoch)
            state.epoch += 1
            train_nll = total / count + nll_offset
            lr_now = stepper.lr(opt_state)
            check_finite(train_nll, state.epoch, lr_now)
            report = stepper.output(params, opt_state)
            val_nll = eng.val_nll(report)
            val_nll = None if val_nll is None else val_nll + nll_offset
            state.elapsed += time.perf_counter() - clock
            clock = time.perf_counter()
            record_epoch(state, config, n_steps, train_nll=train_nll, val_nll=val_nll, lr=lr_now,
                         report=report, record_params=record_params)
            state.last_params = params
            state.opt_state = opt_state
            state.rng_state = eng.rng_state()
            state.params = state.best_params if config.early_stopping else report
            grown = grown_batch(config, state.history)
            if grown != batch and state.epoch < last_epoch:
                # batch growth: the next epochs' engine, from where a resumed run would start
                eng.close()
                rng.bit_generator.state = state_copy(state.rng_state)
                batch = grown
                eng = build(batch)
            if callback is not None and callback(state) is False:
                state.stopped = True
    finally:
        eng.close()
    return state


def train_torch(X, params: MixtureParams | None = None, *, shuffle=None, kernel: str = "auto",
                **kwargs) -> TrainState:
    """:func:`train` on the tensor ``X`` with the torch engine
    (:class:`mogsgd.backends.torch_train.TorchEngine`): ``shuffle(n)`` returns each epoch's
    order of the rows (default: ``torch.randperm`` seeded from ``rng``; tests pass the NumPy
    loop's permutations), ``kernel`` picks the gradient implementation
    (:data:`mogsgd.backends.torch_ops.KERNELS`)."""
    from mogsgd.backends.torch_train import TorchEngine

    config = kwargs.get("config", TrainConfig())
    if config.solver != "sgd":
        raise ValidationError(f"solver={config.solver!r} runs on the NumPy path only; use "
                              "solver='sgd' on a device, or device='cpu-numpy'")
    return train(X, params, engine=partial(TorchEngine, shuffle=shuffle, kernel=kernel),
                 **kwargs)


def _epoch_batches(X, w, batch: int, rng: np.random.Generator):
    """One epoch's ``(X_batch, w_batch)``: a fresh order of an array's rows
    (:func:`mogsgd.fast.epoch_order`: a permutation, block-shuffled above 4 MiB of rows) cut
    into batches, or what a batch provider's ``X.epoch_batches(batch, rng)`` yields."""
    provider = getattr(X, "epoch_batches", None)
    if provider is not None:
        yield from provider(batch, rng)
        return
    order = fast.epoch_order(rng, X.shape[0], X.shape[1])
    for start in range(0, len(order), batch):
        idx = order[start:start + batch]
        yield X[idx], (None if w is None else w[idx])


def start_state(params: MixtureParams | None, state: TrainState | None,
                init: Callable[[MixtureParams], Any], rng: np.random.Generator,
                config: TrainConfig,
                record_params: Callable[[MixtureParams], MixtureParams] | None) -> TrainState:
    """The state a training loop starts from: a fresh one at ``params`` (projected onto
    the variance floor, optimiser state ``init(params)``), or a copy of ``state`` with
    ``rng`` put back where that run left it (resume, warm start)."""
    if state is None:
        if params is None:
            raise ValueError("training needs either params or state")
        params = project_variance_floor(params, config.min_variance)
        state = TrainState(params=params, opt_state=init(params),
                           rng_state=state_copy(rng.bit_generator.state))
        if record_params is not None:  # entry 0 is the starting point
            state.history["params"] = [record_params(params)]
        return state
    state = state.copy()
    state.stopped = False
    rng.bit_generator.state = state_copy(state.rng_state)
    return state


def record_epoch(state: TrainState, config: TrainConfig, n_train: int, *, train_nll: float,
                 val_nll: float | None, lr: float, report: MixtureParams,
                 record_params: Callable[[MixtureParams], MixtureParams] | None) -> None:
    """End-of-epoch bookkeeping shared by every training loop (NumPy, compiled, torch).

    Appends the epoch to ``state.history``, keeps the best parameters by validation
    NLL (training NLL without a validation set), counts epochs without an improvement
    of ``config.tol`` and sets ``state.stopped`` when early stopping's patience runs out.
    """
    h = state.history
    h["epoch"].append(state.epoch)
    h["train_nll"].append(float(train_nll))
    h["val_nll"].append(None if val_nll is None else float(val_nll))
    h["lr"].append(float(lr))
    h["time"].append(state.elapsed)
    if record_params is not None:
        h.setdefault("params", []).append(record_params(report))
    score = val_nll if val_nll is not None else train_nll
    if score < state.best_score:
        improved = score < state.best_score - config.tol
        state.bad_epochs = 0 if improved else state.bad_epochs + 1
        state.best_score, state.best_params = float(score), report
    else:
        state.bad_epochs += 1
    patience = config.patience_epochs(n_train)
    if config.max_batch_size is not None:
        before = grown_batch(config, {"val_nll": h["val_nll"][:-1],
                                      "train_nll": h["train_nll"][:-1]})
        if grown_batch(config, h) != before:
            state.bad_epochs = 0   # the batch grows instead of patience counting
        elif 2 * before > config.max_batch_size:
            patience = 1   # at the largest batch, one epoch without improvement stops
    if config.early_stopping and state.bad_epochs >= patience:
        state.stopped = True


def current_lr(optimizer: Optimizer, opt_state) -> float:
    """The learning rate used by the last step (schedules are evaluated at count - 1)."""
    lr = optimizer.hyperparams["learning_rate"]
    return lr(max(opt_state.count - 1, 0)) if callable(lr) else float(lr)
