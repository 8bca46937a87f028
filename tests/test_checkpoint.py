"""Checkpoints: an interrupted and resumed fit ends bit for bit where an uninterrupted one does."""

import json
import os
import warnings

import numpy as np
import pytest

import mogsgd.estimator as estimator_module
import mogsgd.gradients as gradients_module
import mogsgd.model_io as model_io
from mogsgd import SGDGaussianMixture
from mogsgd.checkpoint import TrainingInterrupted, read_checkpoint
from mogsgd.data import base as data_base
from mogsgd.errors import ConvergenceWarning, ModelFileError, ValidationError
from mogsgd.model_io import FORMAT_VERSION
from mogsgd.solvers import runs as solver_runs

# backend="numpy": these tests interrupt inside the NumPy batch gradient; checkpoints of
# compiled epochs are tested in test_fused.py
BASE = dict(n_components=2, max_epochs=10, batch_size=32, random_state=0,
            validation_fraction=0.2, patience=50, backend="numpy")


def blobs(n=200, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 2))
    X[: n // 2] += 4.0
    return X


def fit(X, resume=None, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return SGDGaussianMixture(**{**BASE, **kwargs}).fit(X, resume=resume)


def assert_same_fit(a, b):
    for f in ("means", "log_sigma", "logits"):
        assert getattr(a.params_, f).tobytes() == getattr(b.params_, f).tobytes(), f
        assert getattr(a._params_std, f).tobytes() == getattr(b._params_std, f).tobytes(), f
    for key in ("epoch", "train_nll", "val_nll", "lr"):
        assert a.history_[key] == b.history_[key], key
    assert a.n_iter_ == b.n_iter_ and a.converged_ == b.converged_
    assert a.lower_bound_ == b.lower_bound_
    sa, sb = a._state, b._state
    assert (sa.epoch, sa.best_score, sa.bad_epochs) == (sb.epoch, sb.best_score, sb.bad_epochs)
    assert sa.rng_state == sb.rng_state
    assert sa.opt_state.count == sb.opt_state.count
    assert_same_leaves(sa.opt_state, sb.opt_state)


def assert_same_leaves(a, b):
    """Bitwise equality of nested optimiser states (NamedTuples of params, arrays, floats)."""
    if isinstance(a, tuple):
        assert type(a) is type(b)
        for x, y in zip(a, b, strict=True):
            assert_same_leaves(x, y)
    elif hasattr(a, "ravel"):
        assert a.ravel().tobytes() == b.ravel().tobytes()
    else:
        assert a == b


@pytest.mark.parametrize("solver, optimizer", [
    ("sgd", "adam"), ("sgd", "momentum"), ("sgd", "nesterov"), ("sgd", "sgd"),
    ("online_em", "adam"),
])
def test_stop_at_3_resume_to_10_equals_a_straight_run(solver, optimizer, tmp_path):
    X = blobs()
    path = tmp_path / "ck.json"
    kw = dict(solver=solver, optimizer=optimizer)
    straight = fit(X, **kw)
    stopped = fit(X, checkpoint_path=path, callback=lambda state: state.epoch < 3, **kw)
    assert stopped.n_iter_ == 3 and read_checkpoint(path).epoch == 3
    resumed = fit(X, resume=path, **kw)
    assert_same_fit(straight, resumed)


def test_a_short_run_extended_with_max_epochs_equals_a_long_run(tmp_path):
    X = blobs()
    path = tmp_path / "ck.json"
    fit(X, max_epochs=3, checkpoint_path=path)
    ckpt = read_checkpoint(path)
    assert ckpt.complete and ckpt.epoch == 3
    assert_same_fit(fit(X), fit(X, resume=path, max_epochs=10))


def test_early_stopping_counters_are_resumed(tmp_path):
    X = blobs()
    # refine="none": with the refinement to follow, patience counts single epochs and
    # this test needs a counter that has counted past one when the fit stops
    kw = dict(max_epochs=40, patience=1, tol=1e-3, learning_rate=0.05, refine="none")
    straight = fit(X, **kw)
    assert straight.converged_ and straight.n_iter_ < 40  # early stopping did fire
    path = tmp_path / "ck.json"
    fit(X, checkpoint_path=path, callback=lambda s: s.epoch < straight.n_iter_ - 1, **kw)
    assert read_checkpoint(path).train_state.bad_epochs == straight._state.bad_epochs - 1 > 0
    assert_same_fit(straight, fit(X, resume=path, **kw))


class Interrupt:
    """Raise KeyboardInterrupt at the n-th call of a patched function (mid-epoch)."""

    def __init__(self, fn, at):
        self.fn, self.at, self.calls = fn, at, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.calls == self.at:
            raise KeyboardInterrupt
        return self.fn(*args, **kwargs)


# 160 training rows / batch 32 = 5 gradient calls per epoch
# (weighted_log_prob is looked up at each call of the batch gradient)
@pytest.mark.parametrize("where, patch, at, epoch, restart", [
    ("mid-epoch of restart 1", "weighted_log_prob", 5 * 4 + 3, 4, 0),
    ("first epoch of restart 2", "weighted_log_prob", 5 * 10 + 2, 0, 1),
    ("mid-epoch of restart 2", "weighted_log_prob", 5 * 17 + 1, 7, 1),
    ("initialising restart 2", "init_params", 2, 0, 1),
])
def test_keyboard_interrupt_saves_a_checkpoint_that_resumes_exactly(
        where, patch, at, epoch, restart, tmp_path, monkeypatch):
    X = blobs()
    straight = fit(X, n_init=2)
    path = tmp_path / "ck.json"
    module = gradients_module if patch == "weighted_log_prob" else solver_runs
    monkeypatch.setattr(module, patch, Interrupt(getattr(module, patch), at))
    with pytest.raises(TrainingInterrupted) as info:
        fit(X, n_init=2, checkpoint_path=path)
    monkeypatch.undo()
    err = info.value
    assert isinstance(err, KeyboardInterrupt)
    assert err.checkpoint_path == path and err.epoch == epoch and err.restart == restart
    assert f"resume={str(path)!r}" in str(err)
    ckpt = read_checkpoint(path)
    assert (ckpt.restart, ckpt.epoch, ckpt.complete) == (restart, epoch, False)
    assert_same_fit(straight, fit(X, n_init=2, resume=path))


def test_repeated_interrupts_and_resumes_into_the_same_file_end_exactly(tmp_path,
                                                                       monkeypatch):
    """Ctrl-C at epoch 3, resume and Ctrl-C again at once (before a step), resume and
    Ctrl-C mid restart 2, resume to the end: the same fit as one uninterrupted run."""
    X = blobs()
    straight = fit(X, n_init=2)
    path = tmp_path / "ck.json"
    for at in (5 * 3 + 2, 1, 5 * 7 + 5 * 2 + 1):
        monkeypatch.setattr(gradients_module, "weighted_log_prob",
                            Interrupt(gradients_module.weighted_log_prob, at))
        with pytest.raises(TrainingInterrupted):
            fit(X, n_init=2, checkpoint_path=path, resume=path if path.exists() else None)
        monkeypatch.undo()
    ckpt = read_checkpoint(path)
    assert (ckpt.restart, ckpt.epoch) == (1, 2)  # epochs 4..10 of restart 1, 2 of restart 2
    assert_same_fit(straight, fit(X, n_init=2, checkpoint_path=path, resume=path))
    assert read_checkpoint(path).complete


def test_interrupt_while_an_epoch_is_being_recorded_saves_the_previous_epoch(
        tmp_path, monkeypatch):
    """record_params runs after the history of the epoch is appended and before the epoch
    is complete: the checkpoint must hold the previous epoch, with its history intact."""
    X = blobs()
    straight = fit(X, record_params=True)
    path = tmp_path / "ck.json"
    interrupt = Interrupt(estimator_module.Standardizer.to_data, 6)  # call 1: the start
    monkeypatch.setattr(estimator_module.Standardizer, "to_data",
                        lambda self, params: interrupt(self, params))
    with pytest.raises(TrainingInterrupted, match="after epoch 4"):
        fit(X, record_params=True, checkpoint_path=path, checkpoint_every=3)
    monkeypatch.undo()
    history = read_checkpoint(path).train_state.history
    assert {k: len(v) for k, v in history.items()} == {
        "epoch": 4, "train_nll": 4, "val_nll": 4, "lr": 4, "time": 4, "params": 5}
    resumed = fit(X, record_params=True, resume=path)
    assert_same_fit(straight, resumed)
    assert [p.means.tobytes() for p in straight.history_["params"]] == \
        [p.means.tobytes() for p in resumed.history_["params"]]


def test_interrupt_in_the_callback_keeps_that_epoch(tmp_path):
    X = blobs()

    def stop_at_5(state):
        if state.epoch == 5:
            raise KeyboardInterrupt

    path = tmp_path / "ck.json"
    with pytest.raises(TrainingInterrupted, match="after epoch 5"):
        fit(X, checkpoint_path=path, callback=stop_at_5)
    assert read_checkpoint(path).epoch == 5
    assert_same_fit(fit(X), fit(X, resume=path))


def test_keyboard_interrupt_without_checkpoint_is_re_raised_as_is(monkeypatch):
    monkeypatch.setattr(gradients_module, "weighted_log_prob",
                        Interrupt(gradients_module.weighted_log_prob, 3))
    with pytest.raises(KeyboardInterrupt) as info:
        fit(blobs())
    assert type(info.value) is KeyboardInterrupt


def test_checkpoints_are_written_every_n_epochs(tmp_path):
    path = tmp_path / "ck.json"
    seen = []
    fit(blobs(), max_epochs=7, checkpoint_path=path, checkpoint_every=3,
        callback=lambda state: seen.append(read_checkpoint(path).epoch))
    assert seen == [0, 0, 3, 3, 3, 6, 6]
    final = read_checkpoint(path)
    assert final.complete and final.epoch == 7


def test_checkpoint_holds_the_full_training_state(tmp_path):
    path = tmp_path / "ck.json"
    model = fit(blobs(), checkpoint_path=path)
    doc = json.loads(path.read_text())
    assert doc["format"] == "mogsgd-checkpoint" and doc["format_version"] == FORMAT_VERSION
    ckpt = read_checkpoint(path)
    state = ckpt.train_state
    assert state.epoch == 10 and state.opt_state.count == model._state.opt_state.count
    assert state.rng_state == model._state.rng_state
    assert state.history == model._state.history
    assert state.best_params.means.tobytes() == model._state.best_params.means.tobytes()
    assert ckpt.data["n_samples"] == 200 and len(ckpt.data["sha256"]) == 64
    np.testing.assert_array_equal(ckpt.scale, model._scaler.scale)
    assert ckpt.settings["n_components"] == 2 and ckpt.settings["callback"] is None


@pytest.mark.parametrize("every, stop_first_at", [(1, None), (3, None), (2, 2)])
def test_incrementally_encoded_history_reads_back_exactly(every, stop_first_at, tmp_path):
    """The writer re-uses the encoding of epochs it wrote before; what it writes must be
    what a fresh encoding gives, whatever checkpoint_every, and across restarts (with
    (2, 2) restart 1 stops at epoch 2 and restart 2 writes at epoch 2 again)."""
    path = tmp_path / "ck.json"
    last = {}  # the history of the last epoch of the last restart
    calls = []

    def keep(state):
        calls.append(state.epoch)
        last.update({k: list(v) for k, v in state.history.items()})
        return len(calls) != stop_first_at

    fit(blobs(), n_init=2, record_params=True, checkpoint_path=path,
        checkpoint_every=every, max_epochs=7, callback=keep)
    history = read_checkpoint(path).train_state.history
    assert history.keys() == last.keys()
    for key in ("epoch", "train_nll", "val_nll", "lr", "time"):
        assert history[key] == last[key], key
    assert [p.means.tobytes() for p in history["params"]] == \
        [p.means.tobytes() for p in last["params"]]


def test_resume_refuses_other_data(tmp_path):
    path = tmp_path / "ck.json"
    X = blobs()
    fit(X, max_epochs=2, checkpoint_path=path)
    Y = X.copy()
    Y[7, 1] += 1e-9
    with pytest.raises(ValidationError, match=r"written while fitting other data \(200 x 2 "
                                              r"float64.*Resume with the same data"):
        fit(Y, resume=path)
    with pytest.raises(ValidationError, match="other data"):
        fit(X[:150], resume=path)


def test_resume_refuses_other_settings_and_names_them(tmp_path):
    path = tmp_path / "ck.json"
    X = blobs()
    fit(X, max_epochs=2, checkpoint_path=path)
    with pytest.raises(ValidationError, match=r"other settings: batch_size=32 \(now 16\), "
                                              r"random_state=0 \(now 1\).*from_checkpoint"):
        fit(X, resume=path, batch_size=16, random_state=1)
    rebuilt = SGDGaussianMixture.from_checkpoint(path)
    assert rebuilt.get_params()["batch_size"] == 32 and rebuilt.max_epochs == 2
    rebuilt.set_params(max_epochs=10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        assert_same_fit(fit(X), rebuilt.fit(X, resume=path))


def test_resume_refuses_models_corrupt_files_and_em(tmp_path):
    model_path = fit(blobs(), max_epochs=2).save(tmp_path / "m.json")
    with pytest.raises(ModelFileError, match="is a mogsgd model file, not a checkpoint file"):
        fit(blobs(), resume=model_path)
    ck = tmp_path / "ck.json"
    fit(blobs(), max_epochs=2, checkpoint_path=ck)
    ck.write_bytes(ck.read_bytes()[:-100])
    with pytest.raises(ModelFileError, match="truncated or corrupt mogsgd checkpoint"):
        fit(blobs(), resume=ck)
    with pytest.raises(FileNotFoundError, match="checkpoint file .* does not exist"):
        fit(blobs(), resume=tmp_path / "missing.json")
    with pytest.raises(ValidationError, match="resume works with solver='sgd' or 'online_em'"):
        fit(blobs(), resume=ck, solver="em")


def test_a_file_that_is_not_a_checkpoint_is_never_overwritten(tmp_path, monkeypatch):
    path = tmp_path / "data.csv"
    path.write_text("x,y\n1,2\n")
    monkeypatch.setattr(data_base, "check_data", None)  # must fail before reading X
    with pytest.raises(ValidationError, match="exists and is not a mogsgd checkpoint; refusing"):
        fit(blobs(), checkpoint_path=path)
    assert path.read_text() == "x,y\n1,2\n"
    with pytest.raises(ValidationError, match="directory .* does not exist"):
        fit(blobs(), checkpoint_path=tmp_path / "nope" / "ck.json")


def test_a_failed_checkpoint_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "ck.json"
    fit(blobs(), max_epochs=4, checkpoint_path=path)
    before = path.read_bytes()
    calls = {"n": 0}
    write = model_io._write_text

    def fail_on_third(fh, text):
        calls["n"] += 1
        if calls["n"] == 3:
            fh.write(text[:100])
            raise OSError("disk full")
        write(fh, text)

    monkeypatch.setattr(model_io, "_write_text", fail_on_third)
    with pytest.raises(OSError, match="disk full"):
        fit(blobs(seed=1), checkpoint_path=path)
    assert read_checkpoint(path).epoch == 1  # the last good write, complete and verified
    assert path.read_bytes() != before
    assert sorted(os.listdir(tmp_path)) == ["ck.json"]
