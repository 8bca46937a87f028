import numpy as np
import pytest
from conftest import random_params, sample_mixture

import mogsgd
from mogsgd.train import TrainConfig, project_variance_floor, train


def test_variance_floor_projection():
    p = mogsgd.MixtureParams(np.zeros((1, 2)), np.array([[-20.0, 0.0]]), np.zeros(1))
    q = project_variance_floor(p, 1e-6)
    np.testing.assert_allclose(q.variances, [[1e-6, 1.0]])


def test_collapsing_component_stays_above_floor(rng):
    """A component sitting on one point would drive the NLL to -inf without the floor."""
    X = np.concatenate([rng.normal(size=(100, 1)), np.zeros((1, 1))])
    start = mogsgd.MixtureParams(np.array([[0.0], [0.0]]), np.array([[0.0], [-5.0]]),
                                 np.zeros(2))
    cfg = TrainConfig(optimizer="adam", learning_rate=0.1, max_epochs=200,
                      early_stopping=False, min_variance=1e-4)
    state = train(X, start, config=cfg, rng=rng)
    assert np.all(state.params.variances >= 1e-4 * (1 - 1e-12))
    assert np.isfinite(mogsgd.nll(X, state.params))


def test_history_records_every_epoch(rng):
    p = random_params(rng, 2, 2)
    X, _ = sample_mixture(rng, p, 600)
    cfg = TrainConfig(max_epochs=7, early_stopping=False)
    state = train(X[:500], p, config=cfg, rng=rng, X_val=X[500:], record_params=lambda q: q)
    h = state.history
    assert h["epoch"] == list(range(1, 8))
    assert len(h["train_nll"]) == len(h["val_nll"]) == len(h["lr"]) == len(h["time"]) == 7
    assert len(h["params"]) == 8 and h["params"][0] is p
    assert np.all(np.diff(h["time"]) >= 0)


def test_sgd_lowers_the_nll(rng):
    true = random_params(rng, 3, 2)
    X, _ = sample_mixture(rng, true, 2000)
    start = random_params(rng, 3, 2)
    for opt in ("sgd", "momentum", "nesterov", "adam"):
        state = train(X, start, config=TrainConfig(optimizer=opt, max_epochs=5,
                                                   early_stopping=False), rng=rng)
        assert mogsgd.nll(X, state.params) < mogsgd.nll(X, start) - 0.1, opt


def test_early_stopping_stops_and_keeps_the_best(rng):
    true = random_params(rng, 2, 2)
    X, _ = sample_mixture(rng, true, 3000)
    cfg = TrainConfig(max_epochs=500, patience=2, tol=1e-3)
    state = train(X[:2500], true, config=cfg, rng=rng, X_val=X[2500:])
    assert state.stopped and state.epoch < 500
    best = min(v for v in state.history["val_nll"])
    assert mogsgd.nll(X[2500:], state.params) == pytest.approx(best, rel=1e-12)


def test_callback_can_stop_training(rng):
    p = random_params(rng, 2, 2)
    X, _ = sample_mixture(rng, p, 300)
    seen = []
    state = train(X, p, config=TrainConfig(max_epochs=50, early_stopping=False), rng=rng,
                  callback=lambda s: seen.append(s.epoch) or s.epoch < 3)
    assert seen == [1, 2, 3] and state.epoch == 3


def test_same_seed_same_result(rng):
    p = random_params(rng, 2, 3)
    X, _ = sample_mixture(rng, p, 700)
    cfg = TrainConfig(max_epochs=3, early_stopping=False)
    a = train(X, p, config=cfg, rng=np.random.default_rng(1)).params
    b = train(X, p, config=cfg, rng=np.random.default_rng(1)).params
    assert np.array_equal(a.ravel(), b.ravel())


@pytest.mark.parametrize("kwargs, msg", [
    ({"batch_size": 0}, "batch_size"), ({"learning_rate": -0.1}, "learning_rate"),
    ({"optimizer": "lbfgs"}, "unknown optimizer"), ({"max_epochs": -1}, "max_epochs"),
    ({"schedule": "step"}, "unknown schedule"), ({"min_variance": 0.0}, "min_variance"),
])
def test_bad_config_is_refused(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        TrainConfig(**kwargs)


def test_grown_batch_doubles_after_epochs_without_improvement_up_to_the_cap():
    from mogsgd.train import grown_batch
    config = TrainConfig(batch_size=16, max_batch_size=64, patience=2, tol=0.1)
    hist = {"val_nll": [5.0, 4.0, 3.95, 3.0, 3.0, 2.99, 2.98], "train_nll": [0.0] * 7}
    # epochs 1-2 are within patience; epoch 3 (no gain of tol) doubles, epoch 4 improves,
    # epoch 5 doubles to the cap, epochs 6-7 cannot grow further
    sizes = [grown_batch(config, {k: v[:e] for k, v in hist.items()}) for e in range(8)]
    assert sizes == [16, 16, 16, 32, 32, 64, 64, 64]
    assert grown_batch(TrainConfig(batch_size=16), hist) == 16   # no cap: a fixed batch


def test_batch_growth_resumes_bit_for_bit_and_stops_at_the_cap():
    rng = np.random.default_rng(3)
    truth = random_params(rng, 2, 2)
    X, _ = sample_mixture(rng, truth, 4000)
    X_val, _ = sample_mixture(rng, truth, 1000)
    start = random_params(np.random.default_rng(4), 2, 2)
    config = TrainConfig(batch_size=32, max_batch_size=256, patience=1, tol=1e-3,
                         max_epochs=12, min_steps_per_period=1)
    whole = train(X, start, config=config, rng=np.random.default_rng(0), X_val=X_val)
    part = train(X, start, config=config, rng=np.random.default_rng(0), X_val=X_val,
                 max_epochs=3)
    rest = train(X, config=config, rng=np.random.default_rng(99), X_val=X_val, state=part)
    assert rest.epoch == whole.epoch
    assert rest.history["val_nll"] == whole.history["val_nll"]
    for a, b in zip(rest.params, whole.params, strict=True):
        np.testing.assert_array_equal(a, b)
    from mogsgd.train import grown_batch
    if whole.stopped:   # early stopping ends only at the largest batch
        assert grown_batch(config, whole.history) == 256
