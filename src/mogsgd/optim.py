"""Optimisers as ``(init, update)`` pairs with explicit, immutable state, and LR schedules.

An optimiser is an :class:`Optimizer` holding two pure functions:

* ``init(params) -> state``
* ``update(grads, state) -> (updates, state)``; the new parameters are
  ``apply_updates(params, updates)`` (``params + updates``).

Parameters, gradients and updates are :class:`~mogsgd.params.MixtureParams`.
The learning rate is a float or a schedule ``step -> lr`` (eq. 24), evaluated
at the step count *before* the update (``t = 0`` for the first step).
Equation numbers refer to ``docs/derivations.md``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from mogsgd.errors import ValidationError
from mogsgd.params import MixtureParams, tree_map
from mogsgd.validation import check_fraction, check_positive_float, check_positive_int

__all__ = [
    "Optimizer",
    "SGDState",
    "MomentumState",
    "AdamState",
    "sgd",
    "momentum",
    "adam",
    "apply_updates",
    "constant",
    "inverse_time",
    "cosine",
    "make_schedule",
    "make_optimizer",
    "OPTIMIZERS",
    "SCHEDULES",
]

Schedule = Callable[[int], float]


class Optimizer(NamedTuple):
    """A pair of pure functions plus a description used in reports and model files."""

    init: Callable[[MixtureParams], Any]
    update: Callable[[MixtureParams, Any], tuple[MixtureParams, Any]]
    name: str
    hyperparams: dict


class SGDState(NamedTuple):
    count: int


class MomentumState(NamedTuple):
    count: int
    velocity: MixtureParams


class AdamState(NamedTuple):
    count: int
    mu: MixtureParams  # first-moment estimate m_t
    nu: MixtureParams  # second-moment estimate v_t


# ------------------------------------------------------------------ schedules
def constant(learning_rate: float) -> Schedule:
    """``eta_t = eta_0`` (eq. 24)."""
    lr = check_positive_float("learning_rate", learning_rate)
    return lambda step: lr


def inverse_time(learning_rate: float, decay_steps: float) -> Schedule:
    """``eta_t = eta_0 / (1 + t / tau)`` (eq. 24), ``tau = decay_steps``."""
    lr = check_positive_float("learning_rate", learning_rate)
    tau = check_positive_float("decay_steps", decay_steps)
    return lambda step: lr / (1.0 + step / tau)


def cosine(learning_rate: float, total_steps: int, final_fraction: float = 0.01) -> Schedule:
    """``eta_t = eta_min + (eta_0 - eta_min)(1 + cos(pi t / T)) / 2`` (eq. 24).

    ``T = total_steps``, ``eta_min = final_fraction * eta_0``; constant at
    ``eta_min`` after ``T`` steps.
    """
    lr = check_positive_float("learning_rate", learning_rate)
    total = check_positive_int("total_steps", total_steps)
    lr_min = lr * check_fraction("final_fraction", final_fraction)

    def schedule(step: int) -> float:
        t = min(step, total)
        return lr_min + (lr - lr_min) * 0.5 * (1.0 + math.cos(math.pi * t / total))

    return schedule


SCHEDULES = ("constant", "inverse_time", "cosine")


def make_schedule(
    name: str, learning_rate: float, *, total_steps: int = 1, decay_steps: float | None = None
) -> Schedule:
    """Schedule by name; ``decay_steps`` defaults to a tenth of ``total_steps``."""
    if name == "constant":
        return constant(learning_rate)
    if name == "inverse_time":
        tau = decay_steps if decay_steps is not None else max(1.0, total_steps / 10.0)
        return inverse_time(learning_rate, tau)
    if name == "cosine":
        return cosine(learning_rate, max(1, int(total_steps)))
    raise ValidationError(f"unknown schedule {name!r}; choose one of: {', '.join(SCHEDULES)}")


def _as_schedule(learning_rate: float | Schedule) -> Schedule:
    return learning_rate if callable(learning_rate) else constant(learning_rate)


# ----------------------------------------------------------------- optimisers
def apply_updates(params: MixtureParams, updates: MixtureParams) -> MixtureParams:
    """``theta <- theta + u`` leaf-wise."""
    return tree_map(lambda p, u: p + u, params, updates)


def sgd(learning_rate: float | Schedule) -> Optimizer:
    """Plain SGD: ``theta_{t+1} = theta_t - eta_t g_t`` (eq. 21)."""
    lr = _as_schedule(learning_rate)

    def init(params: MixtureParams) -> SGDState:
        return SGDState(count=0)

    def update(grads: MixtureParams, state: SGDState):
        eta = lr(state.count)
        return tree_map(lambda g: -eta * g, grads), SGDState(state.count + 1)

    return Optimizer(init, update, "sgd", {"learning_rate": learning_rate})


def momentum(
    learning_rate: float | Schedule, beta: float = 0.9, nesterov: bool = False
) -> Optimizer:
    """Heavy-ball momentum (eq. 22): ``v_{t+1} = beta v_t + g_t``, ``theta -= eta_t v_{t+1}``.

    Nesterov's variant steps along ``g_t + beta v_{t+1}`` instead.
    """
    lr = _as_schedule(learning_rate)
    beta = check_fraction("beta", beta)

    def init(params: MixtureParams) -> MomentumState:
        return MomentumState(count=0, velocity=tree_map(np.zeros_like, params))

    def update(grads: MixtureParams, state: MomentumState):
        eta = lr(state.count)
        velocity = tree_map(lambda v, g: beta * v + g, state.velocity, grads)
        if nesterov:
            updates = tree_map(lambda v, g: -eta * (g + beta * v), velocity, grads)
        else:
            updates = tree_map(lambda v: -eta * v, velocity)
        return updates, MomentumState(state.count + 1, velocity)

    name = "nesterov" if nesterov else "momentum"
    return Optimizer(init, update, name, {"learning_rate": learning_rate, "beta": beta})


def adam(
    learning_rate: float | Schedule, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8
) -> Optimizer:
    """Adam (eq. 23).

    ``m_t = b1 m_{t-1} + (1 - b1) g_t``; ``v_t = b2 v_{t-1} + (1 - b2) g_t^2``;
    ``theta -= eta_t * mhat_t / (sqrt(vhat_t) + eps)`` with
    ``mhat_t = m_t / (1 - b1^t)``, ``vhat_t = v_t / (1 - b2^t)``.
    """
    lr = _as_schedule(learning_rate)
    b1 = check_fraction("b1", b1)
    b2 = check_fraction("b2", b2)
    eps = check_positive_float("eps", eps)

    def init(params: MixtureParams) -> AdamState:
        zeros = tree_map(np.zeros_like, params)
        return AdamState(count=0, mu=zeros, nu=zeros)

    def update(grads: MixtureParams, state: AdamState):
        eta = lr(state.count)
        t = state.count + 1
        mu = tree_map(lambda m, g: b1 * m + (1.0 - b1) * g, state.mu, grads)
        nu = tree_map(lambda v, g: b2 * v + (1.0 - b2) * g * g, state.nu, grads)
        c1 = 1.0 - b1**t
        c2 = 1.0 - b2**t
        updates = tree_map(lambda m, v: -eta * (m / c1) / (np.sqrt(v / c2) + eps), mu, nu)
        return updates, AdamState(t, mu, nu)

    return Optimizer(init, update, "adam", {"learning_rate": learning_rate, "b1": b1, "b2": b2,
                                            "eps": eps})


OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam")


def make_optimizer(
    name: str, learning_rate: float | Schedule, *, beta: float = 0.9, b1: float = 0.9,
    b2: float = 0.999, eps: float = 1e-8,
) -> Optimizer:
    """Optimiser by name: ``"sgd"``, ``"momentum"``, ``"nesterov"`` or ``"adam"``."""
    if name == "sgd":
        return sgd(learning_rate)
    if name == "momentum":
        return momentum(learning_rate, beta)
    if name == "nesterov":
        return momentum(learning_rate, beta, nesterov=True)
    if name == "adam":
        return adam(learning_rate, b1, b2, eps)
    raise ValidationError(f"unknown optimizer {name!r}; choose one of: {', '.join(OPTIMIZERS)}")
