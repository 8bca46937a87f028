"""Data set readers and writers: exact round trips, no silent overwrite, clear errors."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

from mogsgd.datasets import make_mixture
from mogsgd.errors import DataFileError
from mogsgd.io import (
    Dataset,
    DroppedDataWarning,
    load_dataset,
    read_csv,
    save_dataset,
    write_csv,
)

pytest.importorskip("pyarrow")

ALL_SUFFIXES = [".npz", ".npy", ".csv", ".parquet", ".pq"]


@pytest.fixture(scope="module")
def data():
    X, y, truth = make_mixture(60, n_features=3, n_components=3, random_state=0)
    # awkward floats: subnormal, huge, negative zero, many digits
    X[0] = [5e-324, -1.7976931348623157e308, -0.0]
    X[1] = [0.1 + 0.2, np.pi * 1e-17, 1 / 3]
    return X, y, truth


def _bits(a):
    return np.ascontiguousarray(a, dtype=np.float64).view(np.uint64)


@pytest.mark.parametrize("suffix", ALL_SUFFIXES)
def test_X_round_trips_bit_exactly(tmp_path, data, suffix):
    X, _, _ = data
    path = save_dataset(tmp_path / f"d{suffix}", X)
    ds = load_dataset(path)
    assert isinstance(ds, Dataset) and ds.path == path
    assert ds.X.dtype == np.float64
    np.testing.assert_array_equal(_bits(ds.X), _bits(X))
    assert ds.y is None and ds.params is None


@pytest.mark.parametrize("suffix", [".npz", ".csv", ".parquet"])
def test_labels_round_trip(tmp_path, data, suffix):
    X, y, _ = data
    ds = load_dataset(save_dataset(tmp_path / f"d{suffix}", X, y))
    np.testing.assert_array_equal(ds.y, y)
    assert ds.y.dtype == np.int64


@pytest.mark.parametrize("suffix", [".npz", ".parquet"])
def test_true_parameters_round_trip_exactly(tmp_path, data, suffix):
    X, y, truth = data
    ds = load_dataset(save_dataset(tmp_path / f"d{suffix}", X, y, truth))
    for name in ("means", "log_sigma", "logits"):
        np.testing.assert_array_equal(_bits(getattr(ds.params, name)), _bits(getattr(truth, name)))


@pytest.mark.parametrize("suffix", [".npz", ".npy", ".csv", ".parquet"])
def test_nan_is_passed_through(tmp_path, data, suffix):
    X = data[0].copy()
    X[3, 1] = np.nan
    ds = load_dataset(save_dataset(tmp_path / f"d{suffix}", X))
    assert np.isnan(ds.X[3, 1]) and np.isnan(ds.X).sum() == 1


def test_float32_kept_by_binary_formats(tmp_path, data):
    X32 = data[0][2:].astype(np.float32)
    for suffix in (".npz", ".npy", ".parquet"):
        ds = load_dataset(save_dataset(tmp_path / f"d{suffix}", X32))
        assert ds.X.dtype == np.float32
        np.testing.assert_array_equal(ds.X, X32)
    ds = load_dataset(save_dataset(tmp_path / "d.csv", X32))
    np.testing.assert_array_equal(ds.X, X32.astype(np.float64))


# ------------------------------------------------------------------ CSV details


def test_csv_header_and_label_column_written(tmp_path, data):
    X, y, _ = data
    path = save_dataset(tmp_path / "d.csv", X, y, label_column="cls")
    first = path.read_text().splitlines()[0]
    assert first == "x0,x1,x2,cls"
    ds = read_csv(path, label_column="cls")
    np.testing.assert_array_equal(ds.y, y)
    assert ds.feature_names == ("x0", "x1", "x2")
    # "auto" only finds a column called "label": here every column is a feature
    assert load_dataset(path).X.shape == (60, 4)


def test_csv_without_header(tmp_path, data):
    X, y, _ = data
    path = write_csv(tmp_path / "d.csv", X, y, header=False)
    ds = load_dataset(path, label_column=-1)
    np.testing.assert_array_equal(_bits(ds.X), _bits(X))
    np.testing.assert_array_equal(ds.y, y)
    assert ds.feature_names is None
    assert load_dataset(path, label_column=None).X.shape == (60, 4)


def test_csv_label_column_none_reads_it_as_a_feature(tmp_path, data):
    X, y, _ = data
    path = save_dataset(tmp_path / "d.csv", X, y)
    ds = load_dataset(path, label_column=None)
    assert ds.y is None and ds.X.shape == (60, 4)
    np.testing.assert_array_equal(ds.X[:, -1], y)


def test_csv_hand_written_file(tmp_path):
    path = tmp_path / "hand.csv"
    path.write_text("a, b ,label\n1,2,0\n\n 3.5 ,,1\n4,NA,0\n")
    ds = load_dataset(path)
    assert ds.feature_names == ("a", "b")
    np.testing.assert_array_equal(ds.y, [0, 1, 0])
    np.testing.assert_array_equal(ds.X, [[1, 2], [3.5, np.nan], [4, np.nan]])


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "kwargs", "match"),
    [
        ("x0,x1\n1,2\n3\n", {}, "line 3 has 1 fields but the first row has 2"),
        ("x0,x1\n1,2\n3,abc\n", {}, r"line 3, column 2 \('x1'\): 'abc' is not a number"),
        ("1,2\n3,4\n5,oops\n", {"header": False}, r"line 3, column 2: 'oops' is not a number"),
        ("x0,x1\n1,2\n3,inf\n", {}, "line 3, column 2 .*infinite value 'inf'"),
        ("x0,x1\n1,2\n", {"label_column": "label"}, r"no column named 'label'; the columns "
                                                    r"are 'x0', 'x1'"),
        ("1,2\n", {"label_column": "label"}, "has no header row"),
        ("1,2\n", {"label_column": 5}, "out of range"),
        ("x0,label\n1,0.5\n", {}, r"line 2, column 2 \('label'\): labels must be integers"),
        ("x0,label\n1,\n", {}, "labels must be integers"),
        ("x0,x1\n", {}, "has a header but no data rows"),
        ("\n\n  \n", {}, "is empty"),
        ("label\n1\n", {}, "no feature columns"),
    ],
)
def test_csv_errors_name_the_problem(tmp_path, text, kwargs, match):
    path = _write(tmp_path, "bad.csv", text)
    with pytest.raises(DataFileError, match=match):
        load_dataset(path, **kwargs)


def test_csv_binary_file_is_refused(tmp_path):
    path = tmp_path / "bin.csv"
    path.write_bytes(b"\xff\xfe\x00\x81garbage")
    with pytest.raises(DataFileError, match="not UTF-8"):
        load_dataset(path)


# ------------------------------------------------------------- generic errors


def test_missing_file(tmp_path):
    with pytest.raises(DataFileError, match="no such file"):
        load_dataset(tmp_path / "nope.csv")


@pytest.mark.parametrize("suffix", ALL_SUFFIXES)
def test_empty_file(tmp_path, suffix):
    path = tmp_path / f"empty{suffix}"
    path.write_bytes(b"")
    with pytest.raises(DataFileError, match="is empty"):
        load_dataset(path)


def test_unknown_suffix(tmp_path, data):
    path = _write(tmp_path, "d.txt", "1,2\n")
    with pytest.raises(DataFileError, match=r"unknown data file suffix '.txt'; use one of .npz"):
        load_dataset(path)
    with pytest.raises(ValueError, match="unknown data file suffix"):
        save_dataset(tmp_path / "d.xlsx", data[0])


@pytest.mark.parametrize("suffix", [".npz", ".npy", ".parquet"])
def test_truncated_binary_files(tmp_path, data, suffix):
    path = save_dataset(tmp_path / f"d{suffix}", data[0], None)
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataFileError, match="corrupt or truncated"):
        load_dataset(path)


@pytest.mark.parametrize("suffix", [".npz", ".npy", ".parquet"])
def test_garbage_binary_files(tmp_path, suffix):
    path = tmp_path / f"g{suffix}"
    path.write_bytes(b"this is not a binary array file at all" * 10)
    with pytest.raises(DataFileError):
        load_dataset(path)


def test_npz_without_X_lists_its_arrays(tmp_path):
    path = tmp_path / "foreign.npz"
    np.savez(path, data=np.zeros((2, 2)), target=np.zeros(2))
    with pytest.raises(DataFileError, match="no array named 'X' .*data, target"):
        load_dataset(path)


def test_npz_asked_for_missing_labels(tmp_path, data):
    path = save_dataset(tmp_path / "d.npz", data[0])
    with pytest.raises(DataFileError, match="no array 'y'"):
        load_dataset(path, label_column="label")
    assert load_dataset(path).y is None


def test_npy_with_wrong_contents(tmp_path):
    path = tmp_path / "v.npy"
    np.save(path, np.zeros(5))
    with pytest.raises(DataFileError, match=r"must be 2-D .* shape \(n, 1\)"):
        load_dataset(path)
    path = tmp_path / "s.npy"
    np.save(path, np.array([["a", "b"]]))
    with pytest.raises(DataFileError, match="numeric"):
        load_dataset(path)
    path = tmp_path / "inf.npy"
    np.save(path, np.array([[1.0, np.inf]]))
    with pytest.raises(DataFileError, match=r"infinity \(first at row 0, column 1\)"):
        load_dataset(path)


def test_parquet_text_column_and_missing_pyarrow(tmp_path, monkeypatch):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"x0": [1.0, 2.0], "name": ["a", "b"]}), path)
    with pytest.raises(DataFileError, match="column 'name' has type string"):
        load_dataset(path)
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(ImportError, match=r"pip install mogsgd\[parquet\]"):
        load_dataset(path)
    with pytest.raises(ImportError, match=r"pip install mogsgd\[parquet\]"):
        save_dataset(tmp_path / "new.parquet", np.zeros((2, 2)))


# --------------------------------------------------------------- writing rules


@pytest.mark.parametrize("suffix", ALL_SUFFIXES)
def test_never_overwrites_without_force(tmp_path, data, suffix):
    X = data[0]
    path = tmp_path / f"d{suffix}"
    path.write_bytes(b"precious")
    with pytest.raises(FileExistsError, match=rf"d\{suffix}.*force=True"):
        save_dataset(path, X)
    assert path.read_bytes() == b"precious"
    save_dataset(path, X, force=True)
    np.testing.assert_array_equal(load_dataset(path).X, X)
    assert sorted(os.listdir(tmp_path)) == [path.name]  # no temporary file left behind


def test_failed_write_leaves_no_file(tmp_path, data, monkeypatch):
    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", explode)
    with pytest.raises(OSError, match="disk full"):
        save_dataset(tmp_path / "d.npz", data[0])
    assert os.listdir(tmp_path) == []


def test_missing_directory_is_not_created(tmp_path, data):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        save_dataset(tmp_path / "no" / "d.csv", data[0])


@pytest.mark.parametrize(
    ("suffix", "kwargs", "match"),
    [
        (".npy", {"y": "labels"}, r"cannot hold the labels; .*save to .npz"),
        (".npy", {"y": "labels", "params": "truth"}, "labels and true parameters"),
        (".csv", {"y": "labels", "params": "truth"},
         r"cannot hold the true parameters; .*\.npz or \.parquet"),
    ],
)
def test_formats_warn_about_what_they_cannot_hold(tmp_path, data, suffix, kwargs, match):
    X, y, truth = data
    values = {"labels": y, "truth": truth}
    kwargs = {k: values[v] for k, v in kwargs.items()}
    path = tmp_path / f"d{suffix}"
    with pytest.warns(DroppedDataWarning, match=match):
        save_dataset(path, X, **kwargs)
    ds = load_dataset(path)
    assert ds.params is None
    np.testing.assert_array_equal(ds.X, X)
    if suffix == ".csv":
        np.testing.assert_array_equal(ds.y, y)  # the labels fit in a CSV and are kept


@pytest.mark.parametrize(
    ("X", "y", "match"),
    [
        (np.zeros(4), None, r"2-D .*reshape\(-1, 1\)"),
        (np.array([[1.0, np.inf]]), None, "infinity"),
        (np.array([["a"]]), None, "numeric"),
        (np.zeros((3, 2)), np.zeros(2, dtype=int), r"y must have shape \(n_samples,\) = \(3,\)"),
        (np.zeros((2, 2)), np.array([0.5, 1.0]), "integer labels"),
        (np.zeros((2, 2)), np.array(["a", "b"]), "integer labels"),
    ],
)
def test_bad_data_is_refused_before_writing(tmp_path, X, y, match):
    with pytest.raises(ValueError, match=match):
        save_dataset(tmp_path / "d.npz", X, y)


def test_params_with_wrong_features_refused(tmp_path, data):
    X, _, truth = data
    with pytest.raises(ValueError, match="params has 3 features but X has 2"):
        save_dataset(tmp_path / "d.npz", X[:, :2], params=truth)


def test_mislabelled_numpy_files_name_their_real_format(tmp_path, data):
    npz = save_dataset(tmp_path / "a.npz", data[0])
    npy = save_dataset(tmp_path / "a.npy", data[0])
    (tmp_path / "b.npy").write_bytes(npz.read_bytes())
    (tmp_path / "b.npz").write_bytes(npy.read_bytes())
    with pytest.raises(DataFileError, match="holds an .npz archive, not .npy; rename it to .npz"):
        load_dataset(tmp_path / "b.npy")
    with pytest.raises(DataFileError, match="holds a single .npy array, not .npz"):
        load_dataset(tmp_path / "b.npz")
