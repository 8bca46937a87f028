"""Reading and writing data sets: ``.npz``, ``.npy``, ``.csv`` and Parquet.

=============  ====================================  ======================================
suffix         holds                                 notes
=============  ====================================  ======================================
``.npz``       X, y, true parameters                 exact; arrays ``X``, ``y``, ``means``,
                                                     ``log_sigma``, ``logits``
``.npy``       X                                     exact
``.csv``       X, y (a label column)                 ``%.17g``, so float64 round-trips
                                                     exactly; header ``x0,...,x{D-1},label``
``.parquet``   X, y, true parameters                 needs pyarrow (``pip install
``.pq``                                              mogsgd[parquet]``); parameters in the
                                                     schema metadata as JSON
=============  ====================================  ======================================

Writers never replace an existing file unless ``force=True`` and write
atomically (a temporary file in the same directory, then a rename).  What a
format cannot hold (labels in ``.npy``, parameters in ``.npy`` or ``.csv``) is
left out with a :class:`DroppedDataWarning` naming the format that would keep it,
never silently.

Readers return a :class:`Dataset` and raise :class:`~mogsgd.errors.DataFileError`
with the file, and where it helps the line and column, for anything they cannot
read.  NaN (missing values; in CSV also an empty cell or ``NA``) is passed through
to the caller, whose validation decides; infinity and text are errors.
"""

from __future__ import annotations

import json
import os
import warnings
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mogsgd._files import atomic_write, check_npy_header, check_regular_file, loads_json
from mogsgd.csv_parse import (
    ColumnPlan,
    ColumnRef,
    cells_to_float,
    column_name,
    index_rows,
    is_header,
    parse_fast,
    plan_columns,
    read_rows,
    sniff,
)
from mogsgd.errors import DataFileError, DroppedDataWarning, SettingsError, ValidationError
from mogsgd.params import FIELDS, MixtureParams

__all__ = [
    "Dataset",
    "DroppedDataWarning",
    "SUFFIXES",
    "DEFAULT_LABEL_COLUMN",
    "save_dataset",
    "load_dataset",
    "read_csv",
    "write_csv",
    "read_parquet",
    "write_parquet",
    "feature_names",
]

SUFFIXES = (".npz", ".npy", ".csv", ".parquet", ".pq")
DEFAULT_LABEL_COLUMN = "label"
_FORMAT_VERSION = 1
_PARQUET_META_KEY = b"mogsgd"
_PARQUET_HINT = "reading and writing Parquet needs pyarrow: pip install mogsgd[parquet]"

LabelColumn = str | int | None


@dataclass(frozen=True, eq=False)
class Dataset:
    """A data set read from disk.

    Attributes
    ----------
    X : float array of shape (n_samples, n_features)
        float64, or float32 when the file stored float32; may contain NaN.
    y : int64 array of shape (n_samples,) or None
        Labels, when the file has them and they were asked for.
    params : MixtureParams or None
        The true parameters, when the file stores them (``.npz``, Parquet).
    path : Path or None
        The file it was read from.
    feature_names : tuple of str or None
        Column names from a CSV header or a Parquet schema.
    """

    X: np.ndarray
    y: np.ndarray | None = None
    params: MixtureParams | None = None
    path: Path | None = None
    feature_names: tuple[str, ...] | None = None

    @property
    def n_samples(self) -> int:
        return self.X.shape[0]

    @property
    def n_features(self) -> int:
        return self.X.shape[1]


def feature_names(n_features: int) -> list[str]:
    """Default column names ``x0, ..., x{D-1}`` used by the writers (and the plots)."""
    return [f"x{d}" for d in range(n_features)]


def _column_names(names: Sequence[str] | None, n_features: int) -> list[str]:
    if names is None:
        return feature_names(n_features)
    names = [str(n) for n in names]
    if len(names) != n_features or len(set(names)) != n_features:
        raise ValidationError(f"feature_names must be {n_features} distinct names, got {names}")
    return names


# ================================================================= dispatch


def save_dataset(
    path: str | os.PathLike,
    X,
    y=None,
    params: MixtureParams | None = None,
    *,
    force: bool = False,
    label_column: str = DEFAULT_LABEL_COLUMN,
    header: bool = True,
    feature_names: Sequence[str] | None = None,
) -> Path:
    """Write a data set, choosing the format from the suffix of ``path``.

    Parameters
    ----------
    path : str or PathLike ending in .npz, .npy, .csv, .parquet or .pq
    X : array of shape (n_samples, n_features)
        Numeric; NaN allowed (missing values), infinity not.
    y : integer array of shape (n_samples,), optional
        Labels.  ``.npy`` cannot store them: they are left out with a
        :class:`DroppedDataWarning`.
    params : MixtureParams with n_features features, optional
        True parameters.  Only ``.npz`` and Parquet store them; ``.npy`` and
        ``.csv`` leave them out with a :class:`DroppedDataWarning`.
    force : bool
        Replace an existing file.  Without it an existing file raises
        ``FileExistsError``.
    label_column : str
        Name of the label column (CSV and Parquet).
    header : bool
        Write a header row (CSV only).
    feature_names : n_features names, optional
        Column names (CSV and Parquet); default ``x0, ..., x{D-1}``.

    Returns
    -------
    Path
        The file written.
    """
    path = Path(path)
    suffix = _suffix(path, for_writing=True)
    X = _check_X_for_writing(X)
    y = _check_y_for_writing(y, X.shape[0])
    if params is not None:
        _check_params_for_writing(params, X.shape[1])
    if suffix == ".npz":
        return _write_npz(path, X, y, params, force=force)
    if suffix == ".npy":
        dropped = [what for what, v in (("labels", y), ("true parameters", params))
                   if v is not None]
        if dropped:
            _warn_dropped(path, " and ".join(dropped), ".npz")
        return _write_npy(path, X, force=force)
    if suffix == ".csv":
        if params is not None:
            _warn_dropped(path, "true parameters", ".npz or .parquet")
        return write_csv(path, X, y, force=force, label_column=label_column, header=header,
                         feature_names=feature_names)
    return write_parquet(path, X, y, params, force=force, label_column=label_column,
                         feature_names=feature_names)


def load_dataset(
    path: str | os.PathLike,
    *,
    label_column: LabelColumn = "auto",
    header: bool | None = None,
    columns: Sequence[ColumnRef] | None = None,
    drop: Sequence[ColumnRef] | None = None,
) -> Dataset:
    """Read a data set, choosing the reader from the suffix of ``path``.

    Parameters
    ----------
    path : str or PathLike ending in .npz, .npy, .csv, .parquet or .pq
    label_column : "auto" (default), None, a column name or (CSV) a column position
        ``"auto"``: labels are read when the file has them (``y`` in an npz, a
        column named ``"label"``, else ``"target"``, in a CSV with a header or a
        Parquet file).  ``None``: labels are never read; every column is a feature.
        A name or position: that column holds the labels, and it is an error if
        it does not exist (for ``.npz`` any name asks for the stored ``y``).
    header : bool or None
        CSV only: whether the first row is a header; ``None`` detects it (the
        first row is a header when one of its cells is not a number).
    columns, drop : names or positions, optional
        The feature columns to read (in this order), or the columns to leave out
        (:func:`read_csv`); for ``.npz`` and ``.npy`` positions of the columns of X.

    Returns
    -------
    Dataset
    """
    path = Path(path)
    suffix = _suffix(path, for_writing=False)
    _check_readable(path)
    if suffix == ".csv":
        return read_csv(path, label_column=label_column, header=header, columns=columns,
                        drop=drop)
    if suffix in (".parquet", ".pq"):
        return read_parquet(path, label_column=label_column, columns=columns, drop=drop)
    if suffix == ".npz":
        found = _read_npz(path, label_column)
    else:
        if label_column not in (None, "auto"):
            raise DataFileError(
                f"{path}: a .npy file holds X only, so it has no label column "
                f"{label_column!r}; pass label_column=None"
            )
        found = _read_npy(path)
    if columns is None and drop is None:
        return found
    plan = plan_columns(path, None, found.n_features, label_column=None, columns=columns,
                        drop=drop)
    return Dataset(X=np.ascontiguousarray(found.X[:, list(plan.features)]), y=found.y,
                   params=None, path=path)


def _warn_dropped(path: Path, what: str, keeps: str) -> None:
    warnings.warn(
        f"{path}: a {path.suffix.lower()} file cannot hold the {what}; they are not saved "
        f"(save to {keeps} to keep them)",
        DroppedDataWarning,
        stacklevel=3,
    )


def _suffix(path: Path, *, for_writing: bool) -> str:
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        msg = (
            f"{str(path)!r}: unknown data file suffix {path.suffix or '(none)'!r}; "
            f"use one of {', '.join(SUFFIXES)}"
        )
        raise SettingsError(msg) if for_writing else DataFileError(msg)
    return suffix


def _check_readable(path: Path) -> None:
    """A regular, non-empty file (checked without opening it: a FIFO would block)."""
    try:
        st = check_regular_file(path, "data file")
    except FileNotFoundError:
        raise DataFileError(f"{str(path)!r}: no such file") from None
    except OSError as exc:
        raise DataFileError(str(exc)) from None
    if st.st_size == 0:
        raise DataFileError(f"{str(path)!r} is empty (0 bytes)")


# ========================================================== checks on write


def _check_X_for_writing(X) -> np.ndarray:
    arr = np.asarray(X)
    if arr.dtype.kind not in "iuf":
        raise ValidationError(f"X must be a numeric array, got dtype {arr.dtype}")
    if arr.ndim != 2:
        hint = " (use X.reshape(-1, 1) for a single feature)" if arr.ndim == 1 else ""
        raise ValidationError(f"X must be 2-D of shape (n_samples, n_features), got shape "
                              f"{arr.shape}{hint}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValidationError(f"X must have at least one sample and one feature, got {arr.shape}")
    if arr.dtype != np.float32:
        arr = arr.astype(np.float64)
    if np.isinf(arr).any():
        i, j = np.argwhere(np.isinf(arr))[0]
        raise ValidationError(f"X contains infinity (first at row {i}, column {j}); it cannot "
                              "be read back")
    return arr


def _check_y_for_writing(y, n_samples: int) -> np.ndarray | None:
    if y is None:
        return None
    arr = np.asarray(y)
    if arr.shape != (n_samples,):
        raise ValidationError(f"y must have shape (n_samples,) = ({n_samples},), got {arr.shape}")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise ValidationError("y must hold integer labels; it has NaN, inf or fractions")
    elif arr.dtype.kind not in "iu":
        raise ValidationError(f"y must hold integer labels, got dtype {arr.dtype}")
    return arr.astype(np.int64)


def _check_params_for_writing(params, n_features: int) -> None:
    if not isinstance(params, MixtureParams):
        raise TypeError(f"params must be a MixtureParams, got {type(params).__name__}")
    if params.n_features != n_features:
        raise ValidationError(
            f"params has {params.n_features} features but X has {n_features}"
        )


# ==================================================================== numpy


def _write_npz(path, X, y, params, *, force) -> Path:
    arrays: dict[str, np.ndarray] = {"X": X, "format_version": np.array(_FORMAT_VERSION)}
    if y is not None:
        arrays["y"] = y
    if params is not None:
        arrays.update({f: getattr(params, f) for f in FIELDS})
    with atomic_write(path, force=force) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
    return path


def _write_npy(path, X, *, force) -> Path:
    with atomic_write(path, force=force) as tmp, open(tmp, "wb") as fh:
        np.save(fh, X, allow_pickle=False)
    return path


_NUMPY_READ_ERRORS = (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError)


_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK\x03\x04"


def _check_magic(path: Path, expected: str) -> None:
    """Name the real format of a mislabelled file before NumPy gives a confusing error."""
    with open(path, "rb") as fh:
        head = fh.read(6)
    if head.startswith(_NPY_MAGIC):
        actual = ".npy"
    elif head.startswith(_ZIP_MAGIC):
        actual = ".npz"
    else:
        raise DataFileError(f"{path}: not a {expected} file (it does not start with the "
                            f"{expected} signature; corrupt, or another format renamed?)")
    if actual != expected:
        holds = "a single .npy array" if actual == ".npy" else "an .npz archive"
        raise DataFileError(f"{path}: holds {holds}, not {expected}; rename it to {actual}")


def _check_npz_members(path: Path) -> None:
    """Every member's header against its (uncompressed) size, before NumPy reads it."""
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if info.filename.endswith(".npy"):
                    with archive.open(info) as fh:
                        check_npy_header(fh, info.file_size, f"{path}: {info.filename}")
    except DataFileError:
        raise
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
        raise DataFileError(f"{path}: not a readable .npz archive (corrupt or truncated?): "
                            f"{exc}") from None


def _read_npz(path: Path, label_column: LabelColumn) -> Dataset:
    _check_magic(path, ".npz")
    _check_npz_members(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except _NUMPY_READ_ERRORS as exc:
        raise DataFileError(f"{path}: not a readable .npz archive (corrupt or truncated?): "
                            f"{exc}") from None
    if "X" not in arrays:
        raise DataFileError(f"{path}: the archive has no array named 'X' (it has: "
                            f"{', '.join(sorted(arrays)) or 'nothing'})")
    X = _check_loaded_X(path, arrays["X"])
    y = None
    if label_column is not None:
        if "y" in arrays:
            y = _check_loaded_y(path, arrays["y"], X.shape[0])
        elif label_column != "auto":
            raise DataFileError(f"{path}: labels were asked for ({label_column!r}) but the "
                                "archive has no array 'y'")
    params = None
    present = [f for f in FIELDS if f in arrays]
    if present:
        missing = [f for f in FIELDS if f not in arrays]
        if missing:
            raise DataFileError(f"{path}: incomplete parameters, lacks {', '.join(missing)}")
        try:
            params = MixtureParams(**{f: arrays[f] for f in FIELDS})
        except (ValueError, TypeError) as exc:
            raise DataFileError(f"{path}: invalid stored parameters: {exc}") from None
        if params.n_features != X.shape[1]:
            raise DataFileError(f"{path}: stored parameters have {params.n_features} features "
                                f"but X has {X.shape[1]}")
    return Dataset(X=X, y=y, params=params, path=path)


def _read_npy(path: Path) -> Dataset:
    _check_magic(path, ".npy")
    with open(path, "rb") as fh:
        check_npy_header(fh, os.fstat(fh.fileno()).st_size, str(path))
    try:
        arr = np.load(path, allow_pickle=False)
    except _NUMPY_READ_ERRORS as exc:
        raise DataFileError(f"{path}: not a readable .npy file (corrupt or truncated?): "
                            f"{exc}") from None
    return Dataset(X=_check_loaded_X(path, arr), path=path)


def _check_loaded_X(path: Path, arr: np.ndarray) -> np.ndarray:
    if arr.dtype.kind not in "iuf":
        raise DataFileError(f"{path}: X must be numeric, the file holds dtype {arr.dtype}")
    if arr.ndim != 2:
        hint = " (a single feature must be stored as shape (n, 1))" if arr.ndim == 1 else ""
        raise DataFileError(f"{path}: X must be 2-D (n_samples, n_features), the file holds "
                            f"shape {arr.shape}{hint}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise DataFileError(f"{path}: X holds no data (shape {arr.shape})")
    if arr.dtype != np.float32:
        arr = arr.astype(np.float64)
    if np.isinf(arr).any():
        i, j = np.argwhere(np.isinf(arr))[0]
        raise DataFileError(f"{path}: X contains infinity (first at row {i}, column {j})")
    return arr


def _check_loaded_y(path: Path, arr: np.ndarray, n_samples: int) -> np.ndarray:
    if arr.shape != (n_samples,):
        raise DataFileError(f"{path}: y has shape {arr.shape} but X has {n_samples} rows")
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr) | (arr != np.round(np.nan_to_num(arr)))
        if bad.any():
            raise DataFileError(f"{path}: y must hold integer labels; row {np.argmax(bad)} "
                                f"holds {float(arr[np.argmax(bad)])!r}")
    elif arr.dtype.kind not in "iu":
        raise DataFileError(f"{path}: y must hold integer labels, the file holds dtype "
                            f"{arr.dtype}")
    return arr.astype(np.int64)


# ====================================================================== CSV


def write_csv(
    path: str | os.PathLike,
    X,
    y=None,
    *,
    force: bool = False,
    label_column: str = DEFAULT_LABEL_COLUMN,
    header: bool = True,
    feature_names: Sequence[str] | None = None,
) -> Path:
    """Write ``X`` (n, D) and optionally labels ``y`` (n,) as CSV.

    Floats are written with ``%.17g``, so every float64 reads back bit for bit
    (NaN as ``nan``); the header, when written, is ``feature_names`` (default
    ``x0,...,x{D-1}``) followed by ``label_column``; the label column is last.
    """
    path = Path(path)
    X = _check_X_for_writing(X)
    y = _check_y_for_writing(y, X.shape[0])
    names = _column_names(feature_names, X.shape[1])
    if any(("," in n or '"' in n or "\n" in n) for n in names):
        raise ValidationError(f"feature names must not contain a comma, a quote or a line "
                              f"break in a CSV header: {names}")
    if y is not None:
        if "," in label_column or label_column in names:
            raise ValidationError(f"label_column {label_column!r} clashes with the feature "
                                  "names or contains a comma")
        names.append(label_column)
    table = X.astype(np.float64)
    fmt = ["%.17g"] * X.shape[1]
    if y is not None:
        # float64 holds every label below 2**53 exactly; "%d" prints it as an integer
        table = np.column_stack([table, y.astype(np.float64)])
        fmt.append("%d")
    with atomic_write(path, force=force) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        if header:
            fh.write(",".join(names) + "\n")
        np.savetxt(fh, table, fmt=fmt, delimiter=",")
    return path


def read_csv(
    path: str | os.PathLike,
    *,
    label_column: LabelColumn = "auto",
    header: bool | None = None,
    delimiter: str = ",",
    columns: Sequence[ColumnRef] | None = None,
    drop: Sequence[ColumnRef] | None = None,
    engine: str = "auto",
) -> Dataset:
    """Read a CSV file of numbers into a :class:`Dataset`.

    Parameters
    ----------
    path : str or PathLike
    label_column : "auto", None, a column name or a column position
        See :func:`load_dataset`.  ``"auto"`` uses a column named ``"label"`` (else
        ``"target"``) if the header has one.  A position (from 0; ``-1`` is the last)
        works with or without a header, as an int or a string of digits; a name needs a
        header.
    header : bool or None
        Whether the first non-blank row is a header; ``None`` detects it (a cell that is
        not a number, or pandas' ``,0,1,...`` header).
    delimiter : str
    columns : names or positions, optional
        The feature columns, in this order (default: every column except the label
        column, the ``drop`` columns and a pandas index, see below).
    drop : names or positions, optional
        Columns left out of the features.
    engine : "auto", "pyarrow", "numpy" or "python"
        Who parses the rows (:mod:`mogsgd.csv_parse`): pyarrow's CSV reader when it is
        installed (``"auto"``), NumPy's ``loadtxt``, or the line-by-line reader.  Every
        engine gives the same numbers; the line-by-line reader also reads what the
        others refuse, and names the line and column of any error.

    An unnamed first column (header cell empty or ``"Unnamed: 0"``) holding the row
    numbers ``0..n-1`` is the index ``pandas.DataFrame.to_csv`` writes: it is left out
    of the features with a ``UserWarning`` (select it with ``columns`` to keep it).
    Blank lines are skipped.  Empty cells and ``NA``/``nan``/``null`` are NaN; ``inf``
    and text are errors that name the line and column.
    """
    path = Path(path)
    _check_readable(path)
    choice = {"label_column": label_column, "columns": columns, "drop": drop}
    layout = sniff(path, delimiter, header)
    if layout is not None:
        plan = plan_columns(path, layout.names, layout.n_cols, **choice)
        values = parse_fast(path, layout, plan.usecols, delimiter, engine)
        if values is not None and len(values):
            found = _table(path, values, plan, None)
            if found is not None:
                return found
    with open(path, encoding="utf-8-sig", newline="") as fh:
        lines, rows = read_rows(path, fh, delimiter)
    if not rows:
        raise DataFileError(f"{path}: is empty (no rows)")
    if header is None:
        header = is_header(rows[0])
    names = [cell.strip() for cell in rows[0]] if header else None
    n_cols = len(rows[0])
    if header:
        lines, rows = lines[1:], rows[1:]
        if not rows:
            raise DataFileError(f"{path}: has a header but no data rows")
    plan = plan_columns(path, names, n_cols, **choice)
    values = cells_to_float(path, rows, lines, names, n_cols)
    return _table(path, values[:, plan.usecols], plan, lines)


def _table(path: Path, values: np.ndarray, plan: ColumnPlan,
           lines: list[int] | None) -> Dataset | None:
    """The data set in ``values`` (n, len(plan.usecols)); ``None`` when a label is not an
    integer and there are no line numbers to say where (the caller reads again, carefully)."""
    pos = {j: k for k, j in enumerate(plan.usecols)}
    index_dropped = plan.index is not None and index_rows(values[:, pos[plan.index]])
    if index_dropped:
        if not plan.features:
            raise DataFileError(f"{path}: has no feature columns besides the index column "
                                "and the label column")
        warnings.warn(f"{path}: the first column has no name and holds the row numbers "
                      f"0..{len(values) - 1} (the index pandas' to_csv writes); it is not "
                      "used as a feature (list it in columns=[...] to keep it)",
                      UserWarning, stacklevel=3)
    feats = plan.feature_columns(index_dropped)
    if list(feats) == plan.usecols:
        X = values
    else:
        X = np.ascontiguousarray(values[:, [pos[j] for j in feats]])
    y = None
    if plan.label is not None:
        column = values[:, pos[plan.label]]
        bad = np.isnan(column) | (column != np.round(np.nan_to_num(column)))
        if bad.any():
            if lines is None:
                return None
            i = int(np.argmax(bad))
            raise DataFileError(f"{path}: line {lines[i]}, {column_name(plan.names, plan.label)}"
                                f": labels must be integers, got {float(column[i])!r}")
        y = column.astype(np.int64)
    return Dataset(X=X, y=y, path=path, feature_names=plan.feature_names(index_dropped))


# ================================================================== Parquet


def _import_pyarrow():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ImportError(_PARQUET_HINT) from None
    return pa, pq


def write_parquet(
    path: str | os.PathLike,
    X,
    y=None,
    params: MixtureParams | None = None,
    *,
    force: bool = False,
    label_column: str = DEFAULT_LABEL_COLUMN,
    feature_names: Sequence[str] | None = None,
) -> Path:
    """Write a Parquet file: columns ``feature_names`` (default ``x0..x{D-1}``) and
    ``label_column``, exact floats.

    ``params`` go into the schema metadata under ``b"mogsgd"`` as JSON (floats
    written by ``repr``, so they read back exactly).  Needs pyarrow.
    """
    pa, pq = _import_pyarrow()
    path = Path(path)
    X = _check_X_for_writing(X)
    y = _check_y_for_writing(y, X.shape[0])
    names = _column_names(feature_names, X.shape[1])
    columns = {name: X[:, j] for j, name in enumerate(names)}
    if y is not None:
        if label_column in columns:
            raise ValidationError(f"label_column {label_column!r} clashes with a feature name")
        columns[label_column] = y
    meta = {"format_version": _FORMAT_VERSION,
            "params": None if params is None else params.to_dict()}
    table = pa.table(columns).replace_schema_metadata(
        {_PARQUET_META_KEY: json.dumps(meta).encode()}
    )
    with atomic_write(path, force=force) as tmp:
        pq.write_table(table, tmp)
    return path


def read_parquet(path: str | os.PathLike, *, label_column: LabelColumn = "auto",
                 columns: Sequence[ColumnRef] | None = None,
                 drop: Sequence[ColumnRef] | None = None) -> Dataset:
    """Read a Parquet file of numeric columns into a :class:`Dataset`.  Needs pyarrow.

    ``label_column``, ``columns`` and ``drop`` as in :func:`read_csv` (``"auto"`` uses a
    column named ``"label"``, else ``"target"``).  Nulls in feature columns become NaN;
    true parameters are read from the ``b"mogsgd"`` metadata written by
    :func:`write_parquet`.
    """
    pa, pq = _import_pyarrow()
    path = Path(path)
    _check_readable(path)
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise DataFileError(f"{path}: not a readable Parquet file (corrupt or truncated?): "
                            f"{exc}") from None
    names = list(table.column_names)
    if not names or table.num_rows == 0:
        raise DataFileError(f"{path}: holds no data ({table.num_rows} rows, {len(names)} "
                            "columns)")
    plan = plan_columns(path, names, len(names), label_column=label_column, columns=columns,
                        drop=drop)
    feature_index = list(plan.feature_columns(index_dropped=False))
    for j in feature_index + ([] if plan.label is None else [plan.label]):
        col = table.column(j)
        if not (pa.types.is_floating(col.type) or pa.types.is_integer(col.type)):
            raise DataFileError(f"{path}: column {names[j]!r} has type {col.type}; only numeric "
                                "columns can be read (leave it out with drop=[...])")
    all_f32 = all(table.column(j).type == pa.float32() for j in feature_index)
    dtype = np.float32 if all_f32 else np.float64
    X = np.empty((table.num_rows, len(feature_index)), dtype=dtype)
    for out, j in enumerate(feature_index):
        # nulls become NaN: integer columns with nulls arrive as float
        X[:, out] = table.column(j).to_numpy(zero_copy_only=False)
    X = _check_loaded_X(path, X)
    y = None
    if plan.label is not None:
        col = table.column(plan.label)
        if col.null_count:
            raise DataFileError(f"{path}: label column {names[plan.label]!r} has "
                                f"{col.null_count} missing values")
        y = _check_loaded_y(path, col.to_numpy(zero_copy_only=False), X.shape[0])
    params = _params_from_metadata(path, table.schema.metadata or {}, X.shape[1])
    return Dataset(X=X, y=y, params=params, path=path,
                   feature_names=tuple(names[j] for j in feature_index))


def _params_from_metadata(path, metadata: dict, n_features: int) -> MixtureParams | None:
    raw = metadata.get(_PARQUET_META_KEY)
    if raw is None:
        return None
    try:
        record = loads_json(raw, f"{path}: the mogsgd metadata", max_bytes=1 << 24)
        if record.get("params") is None:
            return None
        params = MixtureParams.from_dict(record["params"])
    except (ValueError, TypeError, AttributeError) as exc:
        raise DataFileError(f"{path}: invalid mogsgd metadata: {exc}") from None
    if params.n_features != n_features:
        raise DataFileError(f"{path}: stored parameters have {params.n_features} features but "
                            f"the file has {n_features} feature columns")
    return params
