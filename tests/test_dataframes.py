"""pandas in, names out: nullable dtypes, column names on every inference call."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from mogsgd import SGDGaussianMixture
from mogsgd.errors import ConvergenceWarning

pd = pytest.importorskip("pandas")


def _frame(seed: int = 0, n: int = 300) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.vstack([rng.normal(-3.0, 1.0, (n // 2, 3)), rng.normal(3.0, 0.5, (n // 2, 3))])


def _fit(X, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return SGDGaussianMixture(2, **{"random_state": 0, "max_epochs": 5, "solver": "em",
                                        **kw}).fit(X)


def test_nullable_float_na_is_a_missing_value_like_nan():
    X = _frame()
    X[[3, 10], [1, 2]] = np.nan
    df = pd.DataFrame(X, columns=["a", "b", "c"]).astype("Float64")
    assert df.isna().to_numpy().sum() == 2  # the NaNs are now pd.NA
    on_frame = _fit(df, missing="marginalize")
    on_array = _fit(X, missing="marginalize")
    np.testing.assert_array_equal(on_frame.means_, on_array.means_)
    np.testing.assert_array_equal(on_frame.predict(df), on_array.predict(X))
    assert on_frame.score(df) == on_array.score(X)
    np.testing.assert_array_equal(on_frame.feature_names_in_, ["a", "b", "c"])


def test_nullable_int_and_float_columns_fit_like_float64():
    X = np.round(_frame(1))
    df = pd.DataFrame({"a": pd.array(X[:, 0].astype(int), dtype="Int64"),
                       "b": pd.array(X[:, 1], dtype="Float64"), "c": X[:, 2]})
    np.testing.assert_array_equal(_fit(df).means_, _fit(X).means_)


def test_na_without_marginalize_is_refused_with_the_usual_message():
    df = pd.DataFrame(_frame(), columns=["a", "b", "c"]).astype("Float64")
    df.iloc[4, 2] = pd.NA
    with pytest.raises(ValueError, match=r"contains NaN \(first at row 4, column 2\).*"
                                         r"missing='marginalize'"):
        _fit(df)
    fitted = _fit(df.fillna(0.0))
    with pytest.raises(ValueError, match=r"contains NaN \(first at row 4, column 2\)"):
        fitted.predict(df)


def test_text_columns_are_still_refused():
    df = pd.DataFrame({"a": ["1.5", "2.5"] * 50, "b": pd.array([1.0, None] * 50,
                                                               dtype="Float64")})
    with pytest.raises(TypeError, match="numeric"):
        _fit(df, missing="marginalize")


INFERENCE = ["predict", "predict_proba", "score_samples", "score", "bic", "aic"]


@pytest.mark.parametrize("method", INFERENCE)
def test_every_inference_call_refuses_reordered_or_renamed_columns(method):
    df = pd.DataFrame(_frame(), columns=["a", "b", "c"])
    est = _fit(df)
    with pytest.raises(ValueError, match="same order as they were in fit"):
        getattr(est, method)(df[["b", "a", "c"]])
    with pytest.raises(ValueError, match="Feature names unseen at fit time:\n- z"):
        getattr(est, method)(df.rename(columns={"a": "z"}))
    with pytest.raises(ValueError, match="same order"):
        list(est.iter_predict(df[["c", "b", "a"]]))
    getattr(est, method)(df)  # the fitted order is accepted


# ------------------------------------------------------------ the real command
def _cli(*argv, cwd=None, env=None):
    import os
    import subprocess
    import sys
    from pathlib import Path

    import mogsgd

    src = str(Path(mogsgd.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": src, "MPLBACKEND": "Agg", **(env or {})}
    return subprocess.run([sys.executable, "-m", "mogsgd", *map(str, argv)], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def iris(tmp_path):
    from sklearn.datasets import load_iris

    frame = load_iris(as_frame=True).frame
    frame.to_csv(tmp_path / "iris.csv")
    frame[frame.columns[::-1]].to_csv(tmp_path / "reversed.csv")
    frame.drop(columns=["petal width (cm)"]).to_csv(tmp_path / "short.csv")
    frame.assign(extra=1.0).to_csv(tmp_path / "extra.csv")
    model = tmp_path / "m.json"
    run = _cli("fit", tmp_path / "iris.csv", "-k", 3, "--solver", "em", "--out", model, "-q")
    assert run.returncode == 0, run.stderr
    return tmp_path, model, frame


def test_cli_predict_matches_columns_by_name(iris):
    folder, model, _ = iris
    same = _cli("predict", model, folder / "iris.csv")
    other = _cli("predict", model, folder / "reversed.csv")
    assert same.returncode == other.returncode == 0, other.stderr
    assert same.stdout == other.stdout and len(same.stdout.splitlines()) == 151
    assert "columns matched to the model's by name" in other.stderr


def test_cli_refuses_a_missing_or_an_extra_column_naming_it(iris):
    folder, model, _ = iris
    short = _cli("predict", model, folder / "short.csv")
    assert short.returncode != 0 and "Traceback" not in short.stderr
    assert "lacks the column(s) 'petal width (cm)'" in short.stderr
    extra = _cli("evaluate", model, folder / "extra.csv")
    assert extra.returncode != 0 and "--drop extra" in extra.stderr
    dropped = _cli("evaluate", model, folder / "extra.csv", "--drop", "extra")
    assert dropped.returncode == 0, dropped.stderr


def test_cli_sample_writes_the_model_s_column_names(iris):
    folder, model, _ = iris
    run = _cli("sample", model, "-n", 20, "--out", folder / "s.csv", "-q")
    assert run.returncode == 0, run.stderr
    header = (folder / "s.csv").read_text().splitlines()[0]
    assert header == "sepal length (cm),sepal width (cm),petal length (cm),petal width (cm),label"
    assert _cli("predict", model, folder / "s.csv").returncode == 0


def test_cli_plot_of_a_pandas_csv_uses_the_column_names_on_the_axes(iris):
    folder, model, _ = iris
    rc = folder / "matplotlibrc"
    rc.write_text("svg.fonttype: none\n")   # keep text as text in the SVG, to read it
    run = _cli("plot", folder / "iris.csv", "--model", model, "--out", folder / "figs",
               env={"MATPLOTLIBRC": str(rc)})
    assert run.returncode == 0, run.stderr
    svg = (folder / "figs" / "pairs.svg").read_text()
    for name in ("sepal length (cm)", "sepal width (cm)", "petal length (cm)",
                 "petal width (cm)"):
        assert name in svg
    assert "$x_" not in svg and "x0" not in svg
    density = (folder / "figs" / "density.svg").read_text()
    assert "sepal length (cm)" in density and "sepal width (cm)" in density


def test_cli_plot_of_64_features_draws_a_few_informative_ones_in_a_bounded_figure(tmp_path):
    from PIL import Image
    from sklearn.datasets import load_digits

    load_digits(as_frame=True).frame.to_csv(tmp_path / "digits.csv", index=False)
    run = _cli("plot", tmp_path / "digits.csv", "--out", tmp_path / "f")
    assert run.returncode == 0, run.stderr
    assert "64 features: drawing the 5 that separate the labels most" in run.stderr
    width, height = Image.open(tmp_path / "f" / "pairs.png").size
    assert width <= 16 * 150 and height <= 17 * 150
    chosen = _cli("plot", tmp_path / "digits.csv", "--features", "pixel_3_4,20", "--out",
                  tmp_path / "g")
    assert chosen.returncode == 0, chosen.stderr
    assert (tmp_path / "g" / "data.png").exists() and not (tmp_path / "g" / "pairs.png").exists()


def test_cli_plot_of_64_features_with_a_model_draws_each_chosen_pair_once_by_name(tmp_path):
    import re

    from sklearn.datasets import load_digits

    frame = load_digits(as_frame=True).frame
    frame.to_csv(tmp_path / "digits.csv", index=False)
    pixels = frame.drop(columns="target")
    _fit(pixels.iloc[:600]).save(tmp_path / "m.json")
    rc = tmp_path / "matplotlibrc"
    rc.write_text("svg.fonttype: none\n")   # keep text as text in the SVG, to read it
    run = _cli("plot", tmp_path / "digits.csv", "--model", tmp_path / "m.json", "--out",
               tmp_path / "f", env={"MATPLOTLIBRC": str(rc)})
    assert run.returncode == 0, run.stderr
    said = re.search(r"64 features: drawing the 5 that separate the components most \((.*)\);",
                     run.stderr)
    assert said, run.stderr
    chosen = re.findall(r"'([^']+)'", said.group(1))
    assert len(chosen) == 5 and set(chosen) <= set(pixels.columns)
    svg = (tmp_path / "f" / "pairs.svg").read_text()
    # the ellipses of component 0 name their panel: each pair of the 5 once, below the diagonal
    panels = set(re.findall(r'id="pair(\d)(\d)-c0-1sigma"', svg))
    assert panels == {(str(r), str(c)) for r in range(5) for c in range(r)}
    named = set(re.findall(r">(pixel_\d_\d)<", svg))
    assert named == set(chosen)          # the columns' names on the axes, and no others
    for figure in ("marginals", "density", "predictions"):
        text = (tmp_path / "f" / f"{figure}.svg").read_text()
        assert set(re.findall(r">(?:feature )?(pixel_\d_\d)<", text)) <= set(chosen)
        assert "$x_" not in text and "x_{" not in text


# ------------------------------------------------------------- the variance floor
def test_the_variance_floor_in_data_units_is_min_variance_times_the_feature_variance():
    rng = np.random.default_rng(0)
    n = 400
    groups = np.repeat([0, 1], n // 2)
    X = np.column_stack([rng.normal(0, 1, n) + 8 * groups, np.where(groups, 7.0, 3.0)])
    est = _fit(X, min_variance=1e-6)
    floor = 1e-6 * X[:, 1].var()          # the feature's variance: 4
    np.testing.assert_allclose(est.covariances_[:, 1], floor, rtol=1e-6)
    scaled = X * [1.0, 1000.0]            # the floor follows the feature's scale
    np.testing.assert_allclose(_fit(scaled, min_variance=1e-6).covariances_[:, 1],
                               floor * 1e6, rtol=1e-6)


def _near_constant(n: int = 400) -> np.ndarray:
    rng = np.random.default_rng(3)
    groups = np.repeat([0, 1], n // 2)
    rare = np.where(rng.random(n) < 0.99, 0.0, 1.0)          # 99% of the rows on 0
    return np.column_stack([rng.normal(0, 1, n) + 6 * groups, rng.normal(0, 3, n), rare])


@pytest.mark.parametrize("covariance_type", ["diag", "spherical", "full", "tied"])
@pytest.mark.parametrize("solver", ["sgd", "em"])
def test_variance_floor_bounds_every_variance_in_data_units(covariance_type, solver):
    X = _near_constant()
    floor = 0.05                     # far above min_variance * var(rare column) ~ 1e-8
    est = _fit(X, variance_floor=floor, covariance_type=covariance_type, solver=solver)
    cov = np.asarray(est.covariances_)
    if covariance_type in ("diag", "spherical"):
        smallest = cov.min()
    else:
        smallest = np.linalg.eigvalsh(cov).min()
    assert smallest >= floor * (1 - 1e-9)
    if covariance_type == "diag" and solver == "sgd":   # it binds on the near-constant column
        assert cov[:, 2].min() == pytest.approx(floor, rel=1e-6)
    if covariance_type == "diag" and solver == "em":    # batch EM adds it (eq. 30's reg_covar)
        assert floor <= cov[:, 2].min() <= floor + X[:, 2].var()
    if covariance_type == "diag":
        assert cov[:, :2].min() > 10 * floor
    if covariance_type != "spherical":   # (one variance for all features: never that small)
        without = np.asarray(_fit(X, covariance_type=covariance_type,
                                  solver=solver).covariances_)
        assert (without.min() if without.ndim == 2 else np.linalg.eigvalsh(without).min()) \
            < floor


def test_variance_floor_below_every_feature_s_own_floor_changes_nothing():
    X = _near_constant()
    tiny = 1e-6 * X.var(axis=0).min() / 2          # below min_variance * var(x_d) for every d
    a, b = _fit(X), _fit(X, variance_floor=tiny)
    np.testing.assert_array_equal(a.means_, b.means_)
    np.testing.assert_array_equal(a.covariances_, b.covariances_)


def test_reg_covar_is_refused_naming_the_data_unit_floor():
    with pytest.raises(ValueError, match="set variance_floor for a floor in data units"):
        _fit(_near_constant(), reg_covar=1e-3)


def test_cli_variance_floor_flag_floors_the_saved_model_in_data_units(tmp_path):
    from mogsgd.model_io import load_model

    X = _near_constant()
    np.savetxt(tmp_path / "x.csv", X, delimiter=",", header="a,b,c",
               comments="")
    run = _cli("fit", tmp_path / "x.csv", "-k", 2, "--solver", "em", "--variance-floor", 0.05,
               "--out", tmp_path / "m.json", "-q")
    assert run.returncode == 0, run.stderr
    cov = load_model(tmp_path / "m.json").covariances_
    assert cov.min() >= 0.05 * (1 - 1e-9) and cov[:, 2].min() < 0.05 + X[:, 2].var()
    bad = _cli("fit", tmp_path / "x.csv", "--variance-floor", -1, "--out", tmp_path / "n.json")
    assert bad.returncode == 2 and "--variance-floor" in bad.stderr


def test_near_constant_features_are_warned_about_by_index():
    from mogsgd.errors import NearConstantWarning

    rng = np.random.default_rng(1)
    X = _frame(1, n=400)
    X = np.column_stack([X, np.zeros(400), np.where(rng.random(400) < 0.995, 2.0, 5.0)])
    with pytest.warns(NearConstantWarning) as record:
        _fit(X)
    warning = next(w.message for w in record if isinstance(w.message, NearConstantWarning))
    assert warning.features == (3, 4) and warning.values == (0.0, 2.0)
    assert warning.spreads[0] == 0.0 and "drop these columns" in str(warning)


def test_cli_names_near_constant_columns_and_the_drop_that_removes_them(tmp_path):
    rng = np.random.default_rng(2)
    frame = pd.DataFrame(_frame(2, n=400), columns=["a", "b", "c"])
    frame["edge pixel"] = 0.0
    frame["rare"] = np.where(rng.random(400) < 0.995, 1.0, 9.0)
    frame.to_csv(tmp_path / "d.csv", index=False)
    run = _cli("fit", tmp_path / "d.csv", "-k", 2, "--solver", "em", "--out", tmp_path / "m.json")
    assert run.returncode == 0, run.stderr
    assert "column(s) 'edge pixel' (std 0, mostly 0), 'rare'" in run.stderr
    assert "drop them with --drop 'edge pixel,rare'" in run.stderr
    again = _cli("fit", tmp_path / "d.csv", "-k", 2, "--solver", "em", "--out",
                 tmp_path / "n.json", "--drop", "edge pixel,rare")
    assert again.returncode == 0 and "near-constant" not in again.stderr, again.stderr
