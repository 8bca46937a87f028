"""CSV in: every engine reads the same numbers and gives the same errors; pandas' index
column, column choice by name or position, and CSV files streamed in blocks."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import mogsgd
from mogsgd import SGDGaussianMixture
from mogsgd.csv_source import CsvSource
from mogsgd.data import as_source
from mogsgd.errors import DataFileError
from mogsgd.io import load_dataset, read_csv, write_csv

ENGINES = ["pyarrow", "numpy", "python"]
SRC = str(Path(mogsgd.__file__).resolve().parents[1])
ENV = {**os.environ, "PYTHONPATH": SRC, "MPLBACKEND": "Agg"}


def mogsgd_cli(*argv, cwd=None, timeout=300):
    """The real ``mogsgd`` command in a subprocess."""
    return subprocess.run([sys.executable, "-m", "mogsgd", *map(str, argv)], env=ENV,
                          cwd=cwd, capture_output=True, text=True, timeout=timeout)


def same(a, b) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and \
        bool(np.array_equal(a, b, equal_nan=True))


def read_all_engines(path, **kw):
    out = []
    for engine in ENGINES:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ds = read_csv(path, engine=engine, **kw)
        out.append((ds, [str(w.message) for w in caught]))
    return out


TRICKY = {
    "bom_crlf": "\ufeffa,b,label\r\n1,2,0\r\n3,4,1\r\n",
    "blank_lines": "a,b\n\n1,2\n   \n3,4\n\n",
    "missing_tokens": "a,b\n1,NA\nN/A,2\nnan,NaN\n null ,5\n,6\nNone,7\n",
    "quoted_numbers": 'a,b\n"1.5",2\n3,"-4e-3"\n',
    "spaces": "a,b\n 1.5 , 2\n3,4 \n",
    "no_header": "1,2,3\n4,5,6\n",
    "exact_floats": "x\n0.1\n2.2250738585072014e-308\n1.7976931348623157e308\n5e-324\n",
    "ints_beyond_2_53": "x\n9007199254740993\n-9007199254740993\n",
    "no_final_newline": "a,b\n1,2\n3,4",
    "row_of_blank_cells": "a,b\n1,2\n , \n3,4\n",
}


@pytest.mark.parametrize("name", sorted(TRICKY))
def test_every_engine_reads_the_same_numbers(tmp_path, name):
    path = tmp_path / f"{name}.csv"
    path.write_bytes(TRICKY[name].encode("utf-8"))
    (ref, ref_warn), *others = read_all_engines(path)
    for ds, warn in others:
        assert same(ds.X, ref.X) and ds.feature_names == ref.feature_names
        assert (ds.y is None and ref.y is None) or np.array_equal(ds.y, ref.y)
        assert warn == ref_warn
    if name == "exact_floats":
        assert ref.X[:, 0].tolist() == [0.1, 2.2250738585072014e-308, 1.7976931348623157e308,
                                        5e-324]
    if name == "missing_tokens":
        assert np.isnan(ref.X).sum() == 7 and ref.X.shape == (6, 2)


@settings(max_examples=25, deadline=None)
@given(hnp.arrays(np.float64, hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=6),
                  elements=st.floats(allow_infinity=False, allow_nan=True, width=64)))
def test_write_then_read_is_bit_exact_with_every_engine(tmp_path_factory, X):
    if np.isnan(X).all(axis=1).any():
        X = np.where(np.isnan(X).all(axis=1, keepdims=True), 0.0, X)
    path = tmp_path_factory.mktemp("rt") / "x.csv"
    write_csv(path, X, force=True)
    for ds, _ in read_all_engines(path):
        assert same(ds.X, X)


@pytest.mark.parametrize("text, match", [
    ("x0,x1\n1,2\n3\n", "line 3 has 1 fields but the first row has 2"),
    ("x0,x1\n1,2\n3,abc\n", r"line 3, column 2 \('x1'\): 'abc' is not a number"),
    ("x0,x1\n1,inf\n", r"line 2, column 2 \('x1'\): infinite value 'inf'"),
    ("x0,x1\n1,1e400\n", "infinite value '1e400'"),
    ("x0,label\n1,0.5\n", "labels must be integers"),
    ("x0,x1\n1,true\n", "'true' is not a number"),
    ('x0,x1\n"1,2\n', "malformed CSV|ragged|fields"),
])
def test_errors_name_the_line_and_column_whatever_the_engine(tmp_path, text, match):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    messages = []
    for engine in ENGINES:
        with pytest.raises(DataFileError, match=match) as info:
            read_csv(path, engine=engine)
        messages.append(str(info.value))
    assert len(set(messages)) == 1, messages


@pytest.fixture
def iris_csv(tmp_path):
    pd = pytest.importorskip("pandas")
    from sklearn.datasets import load_iris

    frame = load_iris(as_frame=True).frame
    path = tmp_path / "iris.csv"
    frame.to_csv(path)   # pandas' default: an unnamed index column first
    assert isinstance(frame, pd.DataFrame)
    return path, frame


IRIS = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]


def test_a_default_pandas_csv_skips_the_index_and_uses_target_as_labels(iris_csv):
    path, frame = iris_csv
    with pytest.warns(UserWarning, match="first column has no name and holds the row numbers"):
        ds = load_dataset(path)
    assert list(ds.feature_names) == IRIS
    np.testing.assert_array_equal(ds.X, frame[IRIS].to_numpy())
    np.testing.assert_array_equal(ds.y, frame["target"].to_numpy())


def test_an_unnamed_first_column_that_is_not_an_index_stays_a_feature(tmp_path):
    path = tmp_path / "u.csv"
    path.write_text(",a\n5,1\n7,2\n9,3\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = read_csv(path)
    assert ds.X.tolist() == [[5, 1], [7, 2], [9, 3]] and ds.feature_names == ("", "a")


def test_pandas_header_of_unnamed_columns_is_a_header(tmp_path):
    pd = pytest.importorskip("pandas")
    X = np.arange(12.0).reshape(4, 3) / 7
    pd.DataFrame(X).to_csv(tmp_path / "p.csv")
    with pytest.warns(UserWarning, match="index"):
        ds = read_csv(tmp_path / "p.csv")
    np.testing.assert_array_equal(ds.X, X)
    assert ds.feature_names == ("0", "1", "2")


def test_columns_drop_and_label_by_name_or_position(iris_csv):
    path, frame = iris_csv
    ds = load_dataset(path, columns=["petal width (cm)", 1], label_column=None)
    assert ds.feature_names == ("petal width (cm)", "sepal length (cm)") and ds.y is None
    with pytest.warns(UserWarning, match="index"):
        ds = load_dataset(path, drop=["sepal width (cm)", "1"], label_column="5")
    assert ds.feature_names == ("petal length (cm)", "petal width (cm)")
    np.testing.assert_array_equal(ds.y, frame["target"].to_numpy())
    with pytest.raises(DataFileError, match="no column named 'petal'; the columns are"):
        load_dataset(path, columns=["petal"])
    with pytest.raises(DataFileError, match="position 9 is out of range for 6 columns"):
        load_dataset(path, drop=[9])
    with pytest.raises(DataFileError, match="is the label column and cannot also be a feat"):
        load_dataset(path, columns=["target", "sepal width (cm)"])


# ------------------------------------------------------------------- streaming
def test_a_streamed_csv_gives_the_rows_read_whole(tmp_path, iris_csv):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3000, 4))
    X[rng.random(X.shape) < 0.01] = np.nan
    path = write_csv(tmp_path / "big.csv", X, rng.integers(0, 3, 3000))
    for engine in ENGINES:
        src = CsvSource(path, chunk_bytes=7000, engine=engine)
        assert src.n_chunks > 10 and src.n_samples == 3000 and src.n_features == 4
        rows = np.concatenate([c for _, c in src.chunks(allow_nan=True)])
        assert same(rows, X)
        order = np.random.default_rng(1).permutation(src.n_chunks)  # random access
        got = {int(o): c for o, c in src.chunks(order, allow_nan=True)}
        assert same(np.concatenate([got[k] for k in sorted(got)]), X)
    iris, frame = iris_csv
    with pytest.warns(UserWarning, match="index"):
        src = CsvSource(iris, chunk_bytes=300)
    assert list(src.feature_names) == IRIS
    assert same(np.concatenate([c for _, c in src.chunks()]), frame[IRIS].to_numpy())


def test_a_streamed_csv_error_names_the_line_of_the_file(tmp_path):
    X = np.arange(2000.0).reshape(1000, 2)
    path = write_csv(tmp_path / "d.csv", X)
    lines = path.read_text().splitlines()
    lines[777] = "1,oops"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFileError, match=r"line 778, column 2 \('x1'\): 'oops' is not a"):
        read_csv(path)
    src = CsvSource(path, chunk_bytes=2000)
    with pytest.raises(DataFileError, match=r"line 778, column 2 \('x1'\): 'oops' is not a"):
        list(src.chunks())


def test_fitting_a_csv_path_streams_it(tmp_path):
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(-3, 1, (400, 2)), rng.normal(3, 1, (400, 2))])
    path = write_csv(tmp_path / "d.csv", X)
    assert as_source(str(path)).kind == "stream"
    est = SGDGaussianMixture(2, solver="em", random_state=0).fit(str(path))
    ref = SGDGaussianMixture(2, solver="em", random_state=0).fit(X)
    np.testing.assert_allclose(np.sort(est.means_, axis=0), np.sort(ref.means_, axis=0),
                               atol=0.2)
    np.testing.assert_array_equal(est.predict(str(path)), est.predict(X))


# ------------------------------------------------------------ the real command
def test_cli_fit_on_a_pandas_csv_says_what_it_used_and_records_names(tmp_path, iris_csv):
    path, _ = iris_csv
    out = tmp_path / "m.json"
    run = mogsgd_cli("fit", path, "-k", 3, "--solver", "em", "--out", out)
    assert run.returncode == 0, run.stderr
    assert "first column has no name and holds the row numbers 0..149" in run.stderr
    assert "--columns" in run.stderr            # the fix, in the flag's name
    assert "read 150 rows x 4 features ('sepal length (cm)'" in run.stderr
    from mogsgd.model_io import load_model

    assert list(load_model(out).feature_names_in_) == IRIS


@pytest.mark.parametrize("options, names", [
    (["--columns", "petal length (cm),petal width (cm)"], IRIS[2:]),
    (["--columns", "3,4"], IRIS[2:]),
    (["--drop", "sepal length (cm),2"], IRIS[2:]),
    (["--label-column", "none", "--drop", "0,5,sepal width (cm)"], [IRIS[0]] + IRIS[2:]),
])
def test_cli_columns_and_drop_take_names_or_positions(tmp_path, iris_csv, options, names):
    path, _ = iris_csv
    run = mogsgd_cli("fit", path, "-k", 2, "--solver", "em", "--json", "--out",
                     tmp_path / "m.json", *options)
    assert run.returncode == 0, run.stderr
    import json

    assert json.loads(run.stdout)["feature_names"] == names


def test_cli_label_column_by_position_and_name(tmp_path, iris_csv):
    path, _ = iris_csv
    model = tmp_path / "m.json"
    assert mogsgd_cli("fit", path, "-k", 3, "--solver", "em", "--out", model,
                      "-q").returncode == 0
    by_pos = mogsgd_cli("evaluate", model, path, "--label-column", "5", "--json")
    by_name = mogsgd_cli("evaluate", model, path, "--label-column", "target", "--json")
    assert by_pos.returncode == by_name.returncode == 0, by_pos.stderr + by_name.stderr
    assert by_pos.stdout == by_name.stdout and '"accuracy"' in by_pos.stdout
