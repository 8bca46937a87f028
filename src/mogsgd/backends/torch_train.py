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
from collections.abc import Callable
from typing import Any

import numpy as np

from mogsgd.backends import import_torch
from mogsgd.backends.torch_ops import nll, nll_grad_sums, ravel, to_torch, unravel
from mogsgd.errors import ValidationError
from mogsgd.optim import AdamState, MomentumState, Optimizer, SGDState
from mogsgd.params import MixtureParams

torch = import_torch()

__all__ = ["TorchEngine", "torch_update", "opt_state_to_torch", "opt_state_to_numpy",
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


# --------------------------------------------------------------------- engine
class TorchEngine:
    """The epoch engine of :func:`mogsgd.train.train` for a tensor ``X`` (n, D) on its device.

    Inside an epoch nothing leaves the device: the order is ``shuffle(n)``, each batch a
    gather, its gradient :func:`~mogsgd.backends.torch_ops.nll_grad_sums` (the fused kernel
    on CUDA), the update :func:`torch_update` on one flat vector and the floor (eq. 26) a
    clamp.  Parameters and optimiser state cross to NumPy once per epoch, so the loop's
    :class:`~mogsgd.train.TrainState` is the same as on every other engine.
    """

    def __init__(self, X, stepper, config, rng: np.random.Generator, *,
                 sample_weight=None, X_val=None, val_weight=None, params=None,
                 grad_sums_fn=None, nll_fn=None, shuffle: Callable[[int], Any] | None = None,
                 kernel: str = "auto") -> None:
        if config.solver != "sgd":
            raise ValidationError(f"solver={config.solver!r} runs on the NumPy path only; use "
                                  "solver='sgd' on a device, or device='cpu-numpy'")
        self.X, self.rng, self.kernel = X, rng, kernel
        n = X.shape[0]
        self.batch = min(config.batch_size, n)
        self.update = torch_update(config.build_optimizer(n))
        self.shuffle = shuffle if shuffle is not None else seeded_randperm(rng, X.device)
        self.w = None if sample_weight is None else torch.as_tensor(
            sample_weight, dtype=torch.float64, device=X.device)
        self.X_val, self.val_weight = X_val, val_weight
        self.floor = 0.5 * math.log(config.min_variance)                # eq. 26

    def epoch(self, params: MixtureParams, opt_state, more: bool):
        X, w = self.X, self.w
        n, d = X.shape
        k = params.n_components
        theta = ravel(to_torch(params, X.device, X.dtype))
        state = opt_state_to_torch(opt_state, X.device, X.dtype)
        log_sigma = slice(k * d, 2 * k * d)
        order = self.shuffle(n)
        total = torch.zeros((), dtype=torch.float64, device=X.device)
        for first in range(0, n, self.batch):
            idx = order[first:first + self.batch]
            m = len(idx)
            sums = nll_grad_sums(X[idx], unravel(theta, k, d), None if w is None else w[idx],
                                 kernel=self.kernel)
            scale = 1.0 / m   # mean over rows; weights have mean one (eq. 32)
            grad = torch.cat([sums.means.reshape(-1), sums.log_sigma.reshape(-1),
                              sums.logits]) * scale
            updates, state = self.update(grad, state)
            theta = theta + updates
            theta[log_sigma] = torch.clamp(theta[log_sigma], min=self.floor)  # eq. 26
            total += (sums.nll_sum * scale) * m
        out = MixtureParams(*(t.detach().cpu().numpy() for t in unravel(theta, k, d)))
        return out, opt_state_to_numpy(state, k, d), float(total), n  # synchronises once

    def val_nll(self, params: MixtureParams) -> float | None:
        if self.X_val is None:
            return None
        return nll(self.X_val, to_torch(params, self.X_val.device, self.X_val.dtype),
                   self.val_weight)

    def rng_state(self) -> dict:
        return copy.deepcopy(self.rng.bit_generator.state)

    def close(self) -> None:
        pass
