"""Model files: bit-exact round trips, versioned and checksummed, atomic, never clobbered."""

import json
import os
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.exceptions import NotFittedError

import mogsgd
import mogsgd.model_io as model_io
from mogsgd import MixtureParams, SGDGaussianMixture
from mogsgd.errors import ConvergenceWarning, ModelFileError, ValidationError
from mogsgd.model_io import (
    FORMAT_VERSION,
    decode,
    encode,
    load_model,
    read_model_info,
    save_model,
)
from mogsgd.train import TrainState


def blobs(n=240, d=2, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    X[: n // 2] += 4.0
    return X


def fitted(solver="sgd", **kwargs):
    kwargs = {"n_components": 2, "max_epochs": 6, "batch_size": 64, "random_state": 0,
              "solver": solver, "validation_fraction": 0.2, **kwargs}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return SGDGaussianMixture(**kwargs).fit(blobs())


def assert_same_tree(a, b, where="$"):
    """Bitwise equality of nested fit state: arrays (dtype too), params, states, floats."""
    if isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape, where
        assert a.tobytes() == b.tobytes(), where
    elif isinstance(a, MixtureParams):
        for f in ("means", "log_sigma", "logits"):
            assert_same_tree(getattr(a, f), getattr(b, f), f"{where}.{f}")
    elif isinstance(a, TrainState):
        assert isinstance(b, TrainState), where
        for f in a.__dataclass_fields__:
            assert_same_tree(getattr(a, f), getattr(b, f), f"{where}.{f}")
    elif isinstance(a, tuple):  # optimiser states
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_tree(x, y, f"{where}[{i}]")
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_same_tree(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_tree(x, y, f"{where}[{i}]")
    elif isinstance(a, float):
        assert isinstance(b, float) and (a == b or (np.isnan(a) and np.isnan(b))), where
        assert np.copysign(1, a) == np.copysign(1, b), where
    else:
        assert type(a) is type(b) and a == b, where


CASES = {
    "sgd": dict(),
    "sgd momentum, params recorded": dict(optimizer="momentum", record_params=True),
    "sgd float32": dict(dtype=np.float32),
    "sgd no validation, n_init 2": dict(early_stopping=False, n_init=2),
    "em": dict(solver="em"),
    "online em": dict(solver="online_em"),
    "user init": dict(weights_init=[0.5, 0.5], means_init=[[0.0, 0.0], [4.0, 4.0]],
                      variances_init=[[1.0, 1.0], [1.0, 1.0]]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_save_load_round_trips_bit_exactly(case, tmp_path):
    model = fitted(**CASES[case])
    path = model.save(tmp_path / "model.json")
    loaded = SGDGaussianMixture.load(path)
    assert_same_tree(model.export_fit_state(), loaded.export_fit_state())
    for attr in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        assert_same_tree(getattr(model, attr), getattr(loaded, attr), attr)
    assert loaded.lower_bound_ == model.lower_bound_
    assert loaded.n_iter_ == model.n_iter_ and loaded.converged_ == model.converged_
    # settings: get_params compares equal value by value (arrays by content)
    mine, theirs = model.get_params(), loaded.get_params()
    assert mine.keys() == theirs.keys()
    for k in mine:
        np.testing.assert_array_equal(np.asarray(mine[k], dtype=object),
                                      np.asarray(theirs[k], dtype=object), err_msg=k)
    # and the loaded model behaves identically
    X = blobs(seed=1)
    for method in ("score_samples", "predict_proba", "predict"):
        a, b = getattr(model, method)(X), getattr(loaded, method)(X)
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), method
    assert model.score(X) == loaded.score(X)
    assert model.bic(X) == loaded.bic(X)
    sa, sb = model.sample(50, random_state=3), loaded.sample(50, random_state=3)
    assert sa[0].tobytes() == sb[0].tobytes() and np.array_equal(sa[1], sb[1])


def test_file_records_versions_and_is_lossless_json(tmp_path):
    model = fitted()
    path = save_model(model, tmp_path / "m.json")
    doc = json.loads(path.read_text())
    assert doc["format"] == "mogsgd-model"
    assert doc["format_version"] == FORMAT_VERSION
    assert doc["mogsgd_version"] == mogsgd.__version__
    assert doc["checksum"].startswith("sha256:")
    means = doc["body"]["fitted"]["params_"]["fields"]["means"]
    assert means["__ndarray__"] == "<f8" and means["shape"] == [2, 2]
    assert [float.fromhex(x) for x in means["data"]] == model.params_.means.ravel().tolist()
    assert doc["summary"]["weights"] == pytest.approx(model.weights_.tolist())
    info = read_model_info(path)
    assert info["n_components"] == 2 and info["n_features"] == 2
    assert info["mogsgd_version"] == mogsgd.__version__


def test_loaded_model_continues_training_exactly(tmp_path):
    """The optimiser and RNG state travel with the model: partial_fit continues as if
    the model had never been saved."""
    model = fitted()
    loaded = load_model(model.save(tmp_path / "m.json"))
    X = blobs(seed=2)
    model.partial_fit(X)
    loaded.partial_fit(X)
    assert_same_tree(model.params_, loaded.params_)
    assert_same_tree(model._state.opt_state, loaded._state.opt_state)


def test_existing_file_is_not_replaced_without_force(tmp_path):
    path = tmp_path / "m.json"
    path.write_text("precious")
    model = fitted()
    with pytest.raises(FileExistsError, match=r"already exists; refusing to overwrite.*force=True"):
        model.save(path)
    assert path.read_text() == "precious"
    model.save(path, force=True)
    assert load_model(path).lower_bound_ == model.lower_bound_


def test_save_needs_a_fitted_model_and_an_existing_directory(tmp_path):
    with pytest.raises(NotFittedError):
        SGDGaussianMixture().save(tmp_path / "m.json")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        fitted().save(tmp_path / "no" / "such" / "dir.json")
    with pytest.raises(IsADirectoryError):
        fitted().save(tmp_path, force=True)


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()])
def test_interrupted_save_leaves_the_old_file_intact(error, tmp_path, monkeypatch):
    path = tmp_path / "m.json"
    old = fitted(random_state=1)
    old.save(path)
    before = path.read_bytes()

    def half_then_fail(fh, text):
        fh.write(text[: len(text) // 2])
        fh.flush()
        raise error

    monkeypatch.setattr(model_io, "_write_text", half_then_fail)
    with pytest.raises(type(error)):
        fitted(random_state=2).save(path, force=True)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.json"]  # no temporary file left behind
    monkeypatch.undo()
    assert load_model(path).lower_bound_ == old.lower_bound_


def test_unsaveable_settings_warn_and_come_back_as_none(tmp_path):
    model = fitted(callback=lambda state: None, random_state=np.random.default_rng(0))
    with pytest.warns(UserWarning, match="callback, random_state"):
        path = model.save(tmp_path / "m.json")
    loaded = load_model(path)
    assert loaded.callback is None and loaded.random_state is None
    assert loaded.score(blobs()) == model.score(blobs())


# ------------------------------------------------------------------ refused files
def _rewrite(path, edit, *, fix_checksum=True):
    doc = json.loads(path.read_text())
    edit(doc)
    if fix_checksum:
        doc["checksum"] = model_io._checksum(doc)
    path.write_text(json.dumps(doc))


@pytest.fixture
def model_file(tmp_path):
    return fitted().save(tmp_path / "m.json")


def test_truncated_file_is_refused(model_file):
    data = model_file.read_bytes()
    model_file.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="truncated or corrupt mogsgd model file"):
        load_model(model_file)


def test_corrupted_value_fails_the_checksum(model_file):
    text = model_file.read_text()
    doc = json.loads(text)
    hex0 = doc["body"]["fitted"]["params_"]["fields"]["means"]["data"][0]
    flipped = hex0[:-4] + ("0" if hex0[-4] != "0" else "1") + hex0[-3:]
    model_file.write_text(text.replace(hex0, flipped, 1))
    with pytest.raises(ModelFileError, match="corrupt: its checksum does not match"):
        load_model(model_file)


@pytest.mark.parametrize("content, msg", [
    (b'{"weights": [0.5, 0.5]}', r"not a mogsgd model file \(no \"format\""),
    (b"[1, 2, 3]", r"not a mogsgd model file"),
    (b"\x93NUMPY\x01\x00binary", r"not a mogsgd model file \(it is not JSON"),
    (b"", r"not a mogsgd model file"),
    (b"x,y\n1,2\n", r"not a mogsgd model file"),
])
def test_foreign_files_are_refused(content, msg, tmp_path):
    path = tmp_path / "foreign.json"
    path.write_bytes(content)
    with pytest.raises(ModelFileError, match=msg):
        load_model(path)


def test_newer_format_is_refused_with_upgrade_hint(model_file):
    _rewrite(model_file, lambda d: d.update(format_version=FORMAT_VERSION + 1,
                                            mogsgd_version="9.0"))
    with pytest.raises(ModelFileError, match=rf"format version {FORMAT_VERSION + 1} \(written "
                                             r"by mogsgd 9.0\).*upgrade mogsgd"):
        load_model(model_file)


def test_checkpoint_is_not_loaded_as_a_model(tmp_path):
    ckpt = tmp_path / "c.json"
    fitted(checkpoint_path=ckpt)
    with pytest.raises(ModelFileError, match="is a mogsgd checkpoint file, not a model file; "
                                             r"resume training from it with fit\(X, resume="):
        load_model(ckpt)


def test_inconsistent_content_is_refused(model_file):
    def drop_column(doc):
        m = doc["body"]["fitted"]["params_"]["fields"]["means"]
        m["shape"], m["data"] = [2, 1], m["data"][:2]

    _rewrite(model_file, drop_column)
    with pytest.raises(ModelFileError, match="m.json"):
        load_model(model_file)


def test_unknown_record_types_are_refused(model_file):
    _rewrite(model_file, lambda d: d["body"]["fitted"].update(
        train_state={"__type__": "os.system", "fields": {}}))
    with pytest.raises(ModelFileError, match="unknown record type 'os.system'"):
        load_model(model_file)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="model file .*nope.json.* does not exist"):
        load_model(tmp_path / "nope.json")


# ------------------------------------------------------------- wrong feature count
def test_model_for_other_feature_count_is_refused_with_both_counts(model_file):
    with pytest.raises(ValidationError, match=r"m.json' was fitted on 2 features but the data "
                                              r"has 3"):
        load_model(model_file, n_features=3)
    loaded = load_model(model_file, n_features=2)
    with pytest.raises(ValueError, match=r"X has 3 features, but the model loaded from "
                                         r"'.*m.json' is expecting 2 features"):
        loaded.predict(np.ones((5, 3)))


# -------------------------------------------------------------------- the codec
float_dtypes = st.sampled_from([np.float64, np.float32])


@settings(max_examples=40, deadline=None)
@given(arrays(float_dtypes, st.tuples(st.integers(0, 4), st.integers(0, 3)),
              elements=st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True,
                                 width=32)))
def test_float_arrays_round_trip_bit_exactly(a):
    b = decode(json.loads(json.dumps(encode(a))))
    assert b.dtype == a.dtype and b.shape == a.shape
    assert b.tobytes() == a.tobytes()


def test_nan_sign_and_payload_survive():
    a = np.array([np.nan, -np.nan, 1.0])
    a.view(np.uint64)[2] = 0x7FF0_0000_0000_0ABC  # a NaN with a payload
    b = decode(json.loads(json.dumps(encode(a))))
    assert b.tobytes() == a.tobytes()
    c = np.array([-np.nan], np.float32)
    assert decode(encode(c)).tobytes() == c.tobytes()
    x = decode(encode(float(-np.nan)))
    assert np.isnan(x) and np.copysign(1.0, x) == -1.0


@settings(max_examples=40, deadline=None)
@given(st.floats(allow_nan=False), st.integers(-(2**130), 2**130),
       st.lists(st.one_of(st.none(), st.floats(allow_nan=False), st.text(max_size=5))))
def test_scalars_and_lists_round_trip(x, big, items):
    value = {"x": x, "big": big, "items": items, "t": (x, None), "f32": np.float32(1.5)}
    back = decode(json.loads(json.dumps(encode(value))))
    assert_same_tree(value["items"], back["items"])
    assert back["big"] == big and back["t"][1] is None
    assert np.copysign(1, back["x"]) == np.copysign(1, x) and back["x"] == x
    assert type(back["f32"]) is np.float32
