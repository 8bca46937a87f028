"""The training loop on the device: shuffling, batching, gradients and optimiser updates as tensors.

:func:`train_torch` is :func:`mogsgd.train.train` (``solver="sgd"``) for torch
tensors.  Inside an epoch nothing leaves the device and nothing waits for it:
the permutation comes from ``torch.randperm``, the batch is a gather, the
gradient is :func:`mogsgd.backends.torch_ops.nll_grad_sums` (the fused kernel on
CUDA), the optimiser state is one flat vector per slot, and the learning rate
is a Python float from the same schedule object as the NumPy path.  Once per
epoch the loop synchronises to record the history and copies the parameters
and optimiser state back into a NumPy :class:`~mogsgd.train.TrainState`, so
checkpoints, warm starts and model files work unchanged (and a fit can move
between backends).

Randomness: each epoch's permutation is drawn by a ``torch.Generator`` seeded
with one draw from the caller's ``numpy.random.Generator``, so the NumPy
generator stays the single source of randomness and its state in the
TrainState resumes the run.  ``shuffle`` replaces this (tests pass the NumPy
loop's permutations to compare the two loops step by step).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from mogsgd.backends import import_torch
from mogsgd.backends.torch_ops import nll, nll_grad_sums, ravel, to_torch, unravel
from mogsgd.errors import ValidationError
from mogsgd.optim import AdamState, MomentumState, Optimizer, SGDState
from mogsgd.params import MixtureParams
from mogsgd.train import (
    TrainConfig,
    TrainState,
    _check_finite,
    _current_lr,
    record_epoch,
    start_state,
)

torch = import_torch()

__all__ = ["train_torch", "torch_update", "opt_state_to_torch", "opt_state_to_numpy",
           "seeded_randperm"]


# ----------------------------------------------------------------- optimisers
def torch_update(optimizer: Optimizer) -> Callable[[Any, Any], tuple[Any, Any]]:
    """``update(g, state) -> (u, state)`` on flat tensors, for a NumPy :class:`Optimizer`.

    The formulas of :mod:`mogsgd.optim`, written in the same order: SGD
    ``u = -eta_t g`` (eq. 21); momentum ``v = beta v + g``, ``u = -eta_t v``
    or Nesterov ``u = -eta_t (g + beta v)`` (eq. 22); Adam (eq. 23).  The
    step size ``eta_t`` is the optimiser's own schedule (eq. 24) at the step
    count before the update.  States are :mod:`mogsgd.optim`'s named tuples with
    flat tensors (layout of :func:`~mogsgd.backends.torch_ops.ravel`) in place of
    :class:`MixtureParams`.
    """
    hp = optimizer.hyperparams
    lr = hp["learning_rate"]
    schedule = lr if callable(lr) else (lambda step: lr)
    name = optimizer.name
    if name == "sgd":
        def update(g, state: SGDState):
            eta = schedule(state.count)
            return -eta * g, SGDState(state.count + 1)
    elif name in ("momentum", "nesterov"):
        beta = hp["beta"]

        def update(g, state: MomentumState):
            eta = schedule(state.count)
            velocity = beta * state.velocity + g
            u = -eta * (g + beta * velocity) if name == "nesterov" else -eta * velocity
            return u, MomentumState(state.count + 1, velocity)
    elif name == "adam":
        b1, b2, eps = hp["b1"], hp["b2"], hp["eps"]

        def update(g, state: AdamState):
            eta = schedule(state.count)
            t = state.count + 1
            mu = b1 * state.mu + (1.0 - b1) * g
            nu = b2 * state.nu + (1.0 - b2) * g * g
            c1 = 1.0 - b1**t
            c2 = 1.0 - b2**t
            return -eta * (mu / c1) / (torch.sqrt(nu / c2) + eps), AdamState(t, mu, nu)
    else:  # pragma: no cover - make_optimizer only builds the four above
        raise ValidationError(f"optimizer {name!r} has no torch implementation")
    return update


def opt_state_to_torch(opt_state, device, dtype):
    """The same state with every :class:`MixtureParams` slot as a flat tensor."""
    return type(opt_state)(*(ravel(to_torch(v, device, dtype)) if isinstance(v, MixtureParams)
                             else v for v in opt_state))


def opt_state_to_numpy(opt_state, n_components: int, n_features: int):
    """Inverse of :func:`opt_state_to_torch`."""
    return type(opt_state)(*(MixtureParams.unravel(v.detach().cpu().numpy(), n_components,
                                                   n_features)
                             if isinstance(v, torch.Tensor) else v for v in opt_state))


def seeded_randperm(rng: np.random.Generator, device) -> Callable[[int], Any]:
    """``shuffle(n)``: ``torch.randperm(n)`` on ``device`` from a generator seeded by one draw
    of ``rng`` per call."""
    gen = torch.Generator(device=device)

    def shuffle(n: int):
        gen.manual_seed(int(rng.integers(2**63 - 1)))
        return torch.randperm(n, generator=gen, device=device)

    return shuffle


# ----------------------------------------------------------------------- loop
_DEFAULT_CONFIG = TrainConfig()


def train_torch(
    X,
    params: MixtureParams | None = None,
    *,
    config: TrainConfig = _DEFAULT_CONFIG,
    rng: np.random.Generator | None = None,
    X_val=None,
    state: TrainState | None = None,
    sample_weight=None,
    callback: Callable[[TrainState], Any] | None = None,
    record_params: Callable[[MixtureParams], MixtureParams] | None = None,
    nll_offset: float = 0.0,
    max_epochs: int | None = None,
    shuffle: Callable[[int], Any] | None = None,
    kernel: str = "auto",
) -> TrainState:
    """Mini-batch SGD on the mean NLL of the tensor ``X`` (n, D), on ``X``'s device.

    Arguments and result as :func:`mogsgd.train.train` (the returned
    :class:`TrainState` holds NumPy parameters and optimiser state); ``X_val`` and
    ``sample_weight`` are tensors on the same device.  ``shuffle(n)`` returns each
    epoch's order of the rows (default :func:`seeded_randperm`); ``kernel`` picks
    the gradient implementation (:data:`mogsgd.backends.torch_ops.KERNELS`).
    Online EM is not implemented on this path.
    """
    if config.solver != "sgd":
        raise ValidationError(f"solver={config.solver!r} runs on the NumPy path only; use "
                              "solver='sgd' on a device, or device='cpu-numpy'")
    n, d = X.shape
    rng = rng if rng is not None else np.random.default_rng()
    optimizer = config.build_optimizer(n)
    update = torch_update(optimizer)
    state = start_state(params, state, optimizer.init, rng, config, record_params)
    shuffle = shuffle if shuffle is not None else seeded_randperm(rng, X.device)
    batch = min(config.batch_size, n)
    epochs = max_epochs if max_epochs is not None else config.epochs_for(n)
    last_epoch = state.epoch + epochs if max_epochs is not None else epochs
    w = None
    if sample_weight is not None:  # mean one, so batch sums / |B| are unbiased (eq. 32)
        w = torch.as_tensor(sample_weight, dtype=torch.float64, device=X.device)
        w = w * (n / w.sum())
    # the iterate continues from the last parameters, not from the best ones
    start = state.last_params if state.last_params is not None else state.params
    k = start.n_components
    theta = ravel(to_torch(start, X.device, X.dtype))
    opt_state = opt_state_to_torch(state.opt_state, X.device, X.dtype)
    log_sigma = slice(k * d, 2 * k * d)
    floor = 0.5 * math.log(config.min_variance)                      # eq. 26
    clock = time.perf_counter()
    while state.epoch < last_epoch and not state.stopped:
        order = shuffle(n)
        total = torch.zeros((), dtype=torch.float64, device=X.device)
        count = 0
        for first in range(0, n, batch):
            idx = order[first:first + batch]
            m = len(idx)
            sums = nll_grad_sums(X[idx], unravel(theta, k, d), None if w is None else w[idx],
                                 kernel=kernel)
            scale = 1.0 / m   # mean over rows; weights have mean one (see above)
            grad = torch.cat([sums.means.reshape(-1), sums.log_sigma.reshape(-1),
                              sums.logits]) * scale
            updates, opt_state = update(grad, opt_state)
            theta = theta + updates
            theta[log_sigma] = torch.clamp(theta[log_sigma], min=floor)  # eq. 26
            total += (sums.nll_sum * scale) * m
            count += m
        state.epoch += 1
        train_nll = float(total) / count + nll_offset                # synchronises once
        lr_now = _current_lr(optimizer, opt_state)
        _check_finite(train_nll, state.epoch, lr_now)
        current = unravel(theta, k, d)
        report = MixtureParams(*(t.detach().cpu().numpy() for t in current))
        val_nll = None if X_val is None else nll(X_val, current) + nll_offset
        state.elapsed += time.perf_counter() - clock
        clock = time.perf_counter()
        record_epoch(state, config, n, train_nll=train_nll, val_nll=val_nll, lr=lr_now,
                     report=report, record_params=record_params)
        state.last_params = report
        state.opt_state = opt_state_to_numpy(opt_state, k, d)
        state.rng_state = copy.deepcopy(rng.bit_generator.state)
        state.params = state.best_params if config.early_stopping else report
        if callback is not None and callback(state) is False:
            state.stopped = True
    return state
