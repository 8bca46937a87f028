"""Optimisers on quadratics with a known optimum, and the update formulas themselves."""

import numpy as np
import pytest

from mogsgd import MixtureParams
from mogsgd.optim import (
    adam,
    apply_updates,
    constant,
    cosine,
    inverse_time,
    make_optimizer,
    make_schedule,
    momentum,
    sgd,
)
from mogsgd.params import tree_map

TARGET = MixtureParams(means=np.array([[1.0, -2.0], [0.5, 3.0]]),
                       log_sigma=np.array([[0.1, -0.3], [0.0, 0.2]]),
                       logits=np.array([0.7, -0.7]))
SCALE = MixtureParams(means=np.array([[1.0, 4.0], [0.5, 2.0]]),
                      log_sigma=np.array([[1.0, 1.0], [3.0, 0.5]]), logits=np.array([1.0, 2.0]))


def quadratic_grad(p):
    """Gradient of sum 0.5 * s * (p - target)^2: the optimum is TARGET."""
    return tree_map(lambda a, t, s: s * (a - t), p, TARGET, SCALE)


@pytest.mark.parametrize("opt, steps", [
    (sgd(0.2), 300), (momentum(0.05), 400), (momentum(0.05, nesterov=True), 400),
    (adam(0.05), 3000), (sgd(inverse_time(0.2, 100)), 2000), (adam(cosine(0.1, 3000)), 3000),
])
def test_optimizer_converges_on_quadratic(opt, steps):
    p = MixtureParams.zeros_like(TARGET)
    state = opt.init(p)
    for _ in range(steps):
        updates, state = opt.update(quadratic_grad(p), state)
        p = apply_updates(p, updates)
    err = np.max(np.abs(p.ravel() - TARGET.ravel()))
    assert err < 1e-4, f"{opt.name}: max error {err:.2e}"


def test_adam_first_step_is_lr_times_sign():
    opt = adam(0.1)
    g = MixtureParams(np.array([[3.0]]), np.array([[-0.01]]), np.array([2.0]))
    updates, state = opt.update(g, opt.init(g))
    np.testing.assert_allclose(updates.ravel(), -0.1 * np.sign(g.ravel()), rtol=1e-6)
    assert state.count == 1


def test_momentum_accumulates_velocity():
    opt = momentum(1.0, beta=0.5)
    g = MixtureParams(np.array([[1.0]]), np.array([[1.0]]), np.array([1.0]))
    state = opt.init(g)
    u1, state = opt.update(g, state)
    u2, state = opt.update(g, state)
    np.testing.assert_allclose(u1.ravel(), -1.0)
    np.testing.assert_allclose(u2.ravel(), -1.5)


def test_schedules_formulas():
    assert constant(0.3)(1000) == 0.3
    assert inverse_time(1.0, 10)(10) == pytest.approx(0.5)
    c = cosine(1.0, 100, final_fraction=0.0)
    assert c(0) == 1.0 and c(50) == pytest.approx(0.5) and c(100) == pytest.approx(0.0)
    assert c(500) == pytest.approx(0.0)
    assert make_schedule("inverse_time", 1.0, total_steps=100)(10) == pytest.approx(0.5)


@pytest.mark.parametrize("name, lr, msg", [
    ("rmsprop", 0.1, "unknown optimizer"), ("sgd", -1.0, "learning_rate"),
    ("adam", float("nan"), "learning_rate"), ("sgd", 0.0, "learning_rate"),
])
def test_bad_optimizer_settings_raise(name, lr, msg):
    with pytest.raises(ValueError, match=msg):
        make_optimizer(name, lr)
