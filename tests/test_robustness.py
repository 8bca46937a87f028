"""Bad input is refused up front with a message that names it; degenerate but legal input
gives a finite, usable model (both solvers)."""

import warnings

import numpy as np
import pytest
import scipy.sparse

from mogsgd import SGDGaussianMixture
from mogsgd.data import base as data_base
from mogsgd.data import memory as data_memory
from mogsgd.data.base import count_distinct_rows
from mogsgd.errors import ConvergenceWarning, ValidationError
from mogsgd.estimator import Standardizer
from mogsgd.solvers import runs as solver_runs

SOLVERS = ["sgd", "em", "online_em"]


def fit_quietly(X, **kwargs):
    kwargs = {"max_epochs": 20, "max_iter": 50, "random_state": 0, **kwargs}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return SGDGaussianMixture(**kwargs).fit(X)


def assert_finite_model(model, X):
    for name in ("weights_", "means_", "covariances_"):
        assert np.all(np.isfinite(getattr(model, name))), name
    assert np.all(model.weights_ >= 0)
    np.testing.assert_allclose(model.weights_.sum(), 1.0, rtol=1e-6)
    assert np.all(model.covariances_ > 0)
    scores = model.score_samples(X)
    assert scores.shape == (len(X),)
    assert np.all(np.isfinite(scores))
    resp = model.predict_proba(X)
    assert np.all(np.isfinite(resp))
    np.testing.assert_allclose(resp.sum(axis=1), 1.0, rtol=1e-5)


def blobs(n=200, d=2, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    X[: n // 2] += 5.0
    return X


# --------------------------------------------------------------------------- bad data
def _with(value, i=3, j=1, n=50, d=2):
    X = np.random.default_rng(0).normal(size=(n, d))
    X[i, j] = value
    return X


BAD_DATA = [
    ("nan", _with(np.nan), ValueError, r"contains NaN \(first at row 3, column 1\).*impute"),
    ("inf", _with(np.inf), ValueError, r"contains infinity \(first at row 3, column 1\).*clip"),
    ("-inf", _with(-np.inf), ValueError, r"infinity.*row 3, column 1"),
    ("1-D", np.arange(10.0), ValueError, r"must be 2-D.*got 1-D shape \(10,\).*reshape\(-1, 1\)"),
    ("3-D", np.zeros((4, 3, 2)), ValueError, r"must be 2-D.*got 3-D shape \(4, 3, 2\)"),
    ("empty rows", np.empty((0, 2)), ValueError, r"X has 0 sample\(s\) but at least 2"),
    ("empty list", [], ValueError, r"must be 2-D.*1-D shape \(0,\)"),
    ("no features", np.empty((5, 0)), ValueError, r"0 feature\(s\)"),
    ("one row", np.ones((1, 2)), ValueError, r"1 sample\(s\) but at least 2.*2 rows"),
    ("strings", np.array([["a", "b"], ["c", "d"]]), TypeError, r"numeric.*<U1.*astype\(float\)"),
    ("numeric strings", np.array([["1", "2"], ["3", "4"]]), TypeError, r"must be numeric"),
    ("object strings", np.array([[1.0, "x"], [2.0, 3.0]], dtype=object), TypeError,
     r"non-numeric entries"),
    ("object None", np.array([[1.0, None], [2.0, 3.0], [4.0, 5.0]], dtype=object), ValueError,
     r"contains None \(first at row 0, column 1\)"),
    ("ragged", [[1.0, 2.0], [3.0]], ValueError, r"same number of numeric features"),
    ("a string", "some data", TypeError, r"numeric array, got a string"),
    ("a missing csv path", "no-such-data.csv", ValueError, r"no-such-data.csv: no such file"),
    ("complex", np.ones((5, 2), complex), ValueError, r"[Cc]omplex"),
    ("sparse", scipy.sparse.eye(5, format="csr"), TypeError, r"toarray"),
]


@pytest.mark.parametrize("label, X, exc, msg", BAD_DATA, ids=[c[0] for c in BAD_DATA])
@pytest.mark.parametrize("solver", SOLVERS)
def test_bad_data_is_refused_before_any_work(label, X, exc, msg, solver, monkeypatch):
    def no_work(*args, **kwargs):
        raise AssertionError("work started before the input was checked")

    monkeypatch.setattr(solver_runs, "init_params", no_work)
    monkeypatch.setattr(solver_runs, "train", no_work)
    monkeypatch.setattr(solver_runs, "em_loop", no_work)
    with pytest.raises(exc, match=msg):
        SGDGaussianMixture(n_components=1, solver=solver).fit(X)


def test_fewer_points_than_components_names_both():
    with pytest.raises(ValidationError, match=r"X has 3 sample\(s\) but at least 5 are needed "
                                              r"\(n_components=5 .*lower n_components"):
        SGDGaussianMixture(n_components=5).fit(np.ones((3, 2)))


def test_float32_overflow_is_named():
    X = np.array([[1e300, 0.0], [1.0, 2.0], [3.0, 4.0]])
    with pytest.raises(ValidationError, match=r"X\[0, 0\] = 1e\+300 is beyond the range of "
                                              r"float32.*dtype=None"):
        SGDGaussianMixture(dtype=np.float32).fit(X)


def test_wrong_feature_count_at_predict_names_both_counts():
    model = fit_quietly(blobs(d=2), n_components=2)
    for method in ("score_samples", "predict", "predict_proba", "score"):
        with pytest.raises(ValueError, match="X has 3 features, but SGDGaussianMixture is "
                                             "expecting 2 features"):
            getattr(model, method)(np.ones((4, 3)))


def test_nan_at_predict_is_refused():
    model = fit_quietly(blobs(), n_components=2)
    with pytest.raises(ValueError, match="NaN"):
        model.predict(_with(np.nan))


# ------------------------------------------------------------------ bad hyper-parameters
BAD_PARAMS = [
    (dict(n_components=0), r"n_components must be an integer >= 1, got 0"),
    (dict(n_components=-2), r"n_components must be an integer >= 1, got -2"),
    (dict(n_components=1.5), r"n_components must be an integer >= 1, got 1.5"),
    (dict(n_components="3"), r"n_components must be an integer >= 1, got '3'"),
    (dict(batch_size=0), r"batch_size must be an integer >= 1, got 0"),
    (dict(learning_rate=0.0), r"learning_rate must be a finite number > 0, got 0.0"),
    (dict(learning_rate=-0.1), r"learning_rate must be a finite number > 0, got -0.1"),
    (dict(learning_rate=float("nan")), r"learning_rate must be a finite number > 0, got nan"),
    (dict(learning_rate=float("inf")), r"learning_rate must be a finite number > 0, got inf"),
    (dict(max_epochs=-1), r"max_epochs must be an integer >= 0 \(or None\), got -1"),
    (dict(optimizer="adamw"), r"unknown optimizer 'adamw'; choose one of: 'sgd', 'momentum'"),
    (dict(schedule="step"), r"unknown schedule 'step'; choose one of"),
    (dict(solver="lbfgs"), r"unknown solver 'lbfgs'; choose one of: 'sgd', 'em'"),
    (dict(init="kmeans+++"), r"unknown init 'kmeans\+\+\+'; choose one of"),
    (dict(momentum=1.0), r"momentum must be in \[0, 1\), got 1.0"),
    (dict(min_variance=0.0), r"min_variance must be a finite number > 0, got 0.0"),
    (dict(patience=0), r"patience must be an integer >= 1, got 0"),
    (dict(tol=-1e-3), r"tol must be a finite number >= 0, got -0.001"),
    (dict(n_init=0), r"n_init must be an integer >= 1, got 0"),
    (dict(max_iter=-1), r"max_iter must be an integer >= 0 \(or None\), got -1"),
    (dict(validation_fraction=1.0), r"validation_fraction must be in \[0, 1\), got 1.0"),
    (dict(validation_fraction="half"), r"validation_fraction must be 'auto' or a number"),
    (dict(random_state=-1), r"random_state must be a non-negative integer, got -1"),
    (dict(random_state="seed"), r"random_state must be None, a non-negative int.*'seed'"),
    (dict(early_stopping="yes"), r"early_stopping must be True or False, got 'yes'"),
    (dict(standardize=None), r"standardize must be True or False, got None"),
    (dict(verbose=-1), r"verbose must be an integer >= 0, got -1"),
    (dict(callback=42), r"callback must be a function called as callback\(state\).*42"),
    (dict(dtype="int32"), r"dtype must be None .*np.float32, got 'int32'"),
    (dict(dtype=np.float16), r"dtype must be None"),
    (dict(checkpoint_path=3), r"checkpoint_path must be a file name.*got 3"),
    (dict(checkpoint_every=0), r"checkpoint_every must be an integer >= 1, got 0"),
    (dict(checkpoint_path="ck.json", solver="em"), r"checkpoint_path works with solver='sgd'"),
]


@pytest.mark.parametrize("params, msg", BAD_PARAMS, ids=[str(p) for p, _ in BAD_PARAMS])
def test_bad_hyperparameters_are_refused_before_the_data_is_read(params, msg, monkeypatch):
    def no_work(*args, **kwargs):
        raise AssertionError("the data was looked at before the settings were checked")

    monkeypatch.setattr(data_base, "check_data", no_work)
    monkeypatch.setattr(data_memory, "check_data", no_work)
    with pytest.raises(ValueError, match=msg):
        SGDGaussianMixture(**params).fit(blobs())
    with pytest.raises(ValueError, match=msg):
        SGDGaussianMixture(**params).partial_fit(blobs())


def test_user_init_with_wrong_shape_is_refused():
    with pytest.raises(ValidationError, match=r"weights_init must have shape \(2,\) "
                                              r"\(n_components,\), got \(1,\)"):
        SGDGaussianMixture(2, weights_init=[1.0], means_init=[[0.0, 0.0]],
                           variances_init=[[1.0, 1.0]]).fit(blobs())


# ------------------------------------------------------------- degenerate but legal data
def _outlier_data():
    X = blobs(200)
    X[0] = 1e8
    return X


DEGENERATE = {
    "constant": np.full((60, 2), 3.0),
    "constant at 1e150": np.full((60, 2), 1e150),
    "all zeros": np.zeros((60, 3)),
    "one constant feature": np.c_[np.random.default_rng(1).normal(size=80), np.ones(80)],
    "heavy duplicates": np.repeat(np.random.default_rng(2).normal(size=(3, 2)), 40, axis=0),
    "90% one point": np.r_[np.zeros((180, 2)), np.random.default_rng(3).normal(size=(20, 2))],
    "single feature": np.random.default_rng(4).normal(size=(100, 1)),
    "integers": np.random.default_rng(5).integers(0, 5, size=(120, 2)),
    "booleans": np.random.default_rng(6).random((120, 2)) > 0.5,
    "scale 1e+150": blobs() * 1e150,
    "scale 1e-150": blobs() * 1e-150,
    "offset 1e+12": blobs() + 1e12,
    "outlier 1e8": _outlier_data(),
}


@pytest.mark.parametrize("name", list(DEGENERATE))
@pytest.mark.parametrize("solver", SOLVERS)
def test_degenerate_data_gives_a_finite_model(name, solver):
    X = DEGENERATE[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # too few distinct rows, on purpose
        model = fit_quietly(X, n_components=3, solver=solver)
    assert model.means_.dtype == np.float64
    assert_finite_model(model, X)
    assert np.isfinite(model.lower_bound_)


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("scale", [1e150, 1e-150])
def test_extreme_scales_give_the_unit_scale_fit(solver, scale):
    """The model of ``s X`` is the model of ``X`` in other units: log p drops by D log s."""
    X = blobs()
    unit = fit_quietly(X, n_components=2, solver=solver)
    scaled = fit_quietly(X * scale, n_components=2, solver=solver)
    np.testing.assert_allclose(scaled.score_samples(X * scale),
                               unit.score_samples(X) - X.shape[1] * np.log(scale), rtol=1e-9)
    np.testing.assert_allclose(scaled.means_ / scale, unit.means_, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("solver", SOLVERS)
def test_one_outlier_does_not_spoil_the_other_points(solver):
    """A point at 1e8 among unit-scale points gets a component of its own; the others
    are modelled as well as without it (robust standardiser and robust init)."""
    X = _outlier_data()
    clean = fit_quietly(X[1:], n_components=2, solver=solver, max_epochs=None)
    dirty = fit_quietly(X, n_components=3, solver=solver, max_epochs=None)
    assert_finite_model(dirty, X)
    assert dirty.score(X[1:]) > clean.score(X[1:]) - 0.05
    labels = dirty.predict(X)
    assert labels[0] not in set(labels[1:])


@pytest.mark.parametrize("scale, dtype", [(1e200, None), (1e-200, None), (1e25, np.float32),
                                          (1e-25, np.float32)])
def test_variances_beyond_the_float_range_warn_but_the_model_works(scale, dtype):
    X = blobs() * scale
    with pytest.warns(UserWarning, match=r"covariances_\[\d, \d\] = exp\(2 \* .*beyond the "
                                         r"range of float.*params_.log_sigma"):
        model = fit_quietly(X, n_components=2, dtype=dtype)
    assert np.all(np.isfinite(model.score_samples(X)))
    assert np.all(np.isfinite(model.params_.log_sigma))
    ref = fit_quietly(blobs(), n_components=2, dtype=dtype)
    np.testing.assert_allclose(model.score_samples(X), ref.score_samples(blobs())
                               - 2 * np.log(np.float64(scale)), rtol=1e-4)


def test_standardiser_is_mean_and_std_unless_outliers_dominate():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(1001, 3)) * [1.0, 1e-3, 1e3]
    s = Standardizer.fit(X)
    np.testing.assert_array_equal(s.center, X.mean(axis=0))
    np.testing.assert_array_equal(s.scale, X.std(axis=0))
    X[0, 0] = 1e8
    t = Standardizer.fit(X)
    assert 0.8 < t.scale[0] < 1.2 and abs(t.center[0]) < 0.2  # median and IQR / 1.349
    np.testing.assert_array_equal(t.scale[1:], X[:, 1:].std(axis=0))


def test_standardiser_is_safe_at_any_scale():
    X = np.random.default_rng(1).normal(size=(500, 2))
    for factor in (1e300, 1e-300, 2.0**-1070, 2.0**1000):
        t = Standardizer.fit(X * factor)
        assert np.all(np.isfinite(t.scale)) and np.all(t.scale > 0)
        assert np.all(np.isfinite(t.transform(X * factor)))
        assert np.isfinite(t.log_det)
    for factor in (1e300, 1e-300, 2.0**100):  # (power-of-two steps are exact)
        np.testing.assert_allclose(Standardizer.fit(X * factor).scale / factor, X.std(axis=0),
                                   rtol=1e-12)
    const = Standardizer.fit(np.full((10, 2), 7.0))
    np.testing.assert_array_equal(const.scale, 1.0)
    np.testing.assert_array_equal(const.center, 7.0)
    mostly_equal = np.r_[np.zeros(90), np.arange(1.0, 11.0)][:, None]  # IQR = 0
    assert Standardizer.fit(mostly_equal).scale[0] == pytest.approx(mostly_equal.std())


@pytest.mark.parametrize("solver", SOLVERS)
def test_more_components_than_distinct_rows_warns_and_keeps_empty_components(solver):
    X = np.repeat([[0.0, 0.0], [5.0, 5.0]], 30, axis=0)
    with pytest.warns(UserWarning, match=r"only 2 distinct row\(s\) for n_components=4: 2 "
                                         r"component\(s\) cannot get points.*n_components <= 2"):
        model = fit_quietly(X, n_components=4, solver=solver)
    assert_finite_model(model, X)
    assert np.all(model.weights_ > 0)  # kept, with a small but positive weight
    floor = model.min_variance * model._scaler.scale**2
    assert np.all(model.covariances_ >= floor * (1 - 1e-9))
    # the two real clusters carry (almost) all the weight
    assert np.sort(model.weights_)[-2:].sum() > 0.9


def test_distinct_rows_are_counted_beyond_the_first_rows():
    X = np.r_[np.zeros((5000, 1)), np.arange(1.0, 4.0)[:, None]]
    assert count_distinct_rows(X, 4) == 4
    assert count_distinct_rows(X, 10) == 4


# -------------------------------------------------------------------------- precision
@pytest.mark.parametrize("solver", SOLVERS)
def test_float32_and_integer_input_give_float64_by_default(solver):
    X = blobs().astype(np.float32)
    for data in (X, np.rint(X * 10).astype(np.int64)):
        model = fit_quietly(data, n_components=2, solver=solver)
        for a in (model.means_, model.covariances_, model.weights_, model.score_samples(data),
                  model.predict_proba(data)):
            assert a.dtype == np.float64


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("dtype", [np.float32, "float32"])
def test_dtype_float32_computes_and_returns_float32(solver, dtype):
    X = blobs()  # float64 input is converted when float32 is asked for
    model = fit_quietly(X, n_components=2, solver=solver, dtype=dtype)
    assert model.params_.dtype == np.float32
    for a in (model.means_, model.covariances_, model.weights_, model.score_samples(X),
              model.predict_proba(X)):
        assert a.dtype == np.float32
    if solver == "sgd":
        assert model._state.params.dtype == np.float32
        assert model._state.opt_state.mu.dtype == np.float32
    assert_finite_model(model, X)
    ref = fit_quietly(X, n_components=2, solver=solver)
    np.testing.assert_allclose(np.sort(model.means_, axis=0), np.sort(ref.means_, axis=0),
                               atol=0.05)
