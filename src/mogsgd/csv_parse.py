"""CSV of numbers, read fast: the layout of the first row, the column plan, the engines.

Reading a CSV file is three steps, shared by the in-memory reader
(:func:`mogsgd.io.read_csv`) and the streamed one (:class:`mogsgd.csv_source.CsvSource`):

1. :func:`sniff` reads the first non-blank row only: the column count, the names when it
   is a header (:func:`is_header`), and where the data start (byte offset and line).
2. :func:`plan_columns` decides which columns are features, which one holds labels and
   whether the first column is a candidate index (an unnamed first column, as written by
   ``pandas.DataFrame.to_csv``; it is left out when it holds the row numbers ``0..n-1``).
3. :func:`parse_fast` parses the data rows with a columnar engine: pyarrow's CSV reader
   when pyarrow is installed (multi-threaded, exact), else NumPy's C ``loadtxt`` (exact).
   It returns ``None`` for anything unusual (text, ragged rows, ``inf``, whitespace-only
   lines, quoting it cannot follow); the caller then reads the same rows with
   :func:`read_rows` and :func:`cells_to_float`, the careful line-by-line reader whose
   errors name the line and the column.  Both give bit-identical numbers (every engine
   rounds decimal text correctly, so ``%.17g`` round-trips float64 exactly).

pandas is not used: its exact mode (``float_precision="round_trip"``) was slower than
NumPy's reader in the same run (``benchmarks/results.md``), and its default mode is not
exact.
"""

from __future__ import annotations

import csv
import io
import itertools
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mogsgd.errors import ColumnChoiceError, DataFileError

__all__ = ["MISSING_TOKENS", "ENGINES", "Layout", "ColumnPlan", "sniff", "is_header",
           "is_number_or_missing", "plan_columns", "resolve_column", "parse_fast",
           "read_rows", "cells_to_float", "column_name", "engine_for", "index_rows",
           "INDEX_NAMES"]

#: Cells read as a missing value (NaN), compared after stripping, case-insensitively.
MISSING_TOKENS = frozenset({"", "na", "n/a", "nan", "null", "none"})
#: The spellings of :data:`MISSING_TOKENS` the fast engine recognises (every letter case).
_NULL_SPELLINGS = sorted({"".join(c) for t in MISSING_TOKENS
                          for c in itertools.product(*({ch.lower(), ch.upper()} for ch in t))})
#: Header cells that mark the first column as a candidate index (pandas writes "" for an
#: unnamed index; a frame read back and written again has "Unnamed: 0").
INDEX_NAMES = ("", "Unnamed: 0")
#: ``engine=`` values: "auto" is pyarrow when importable, else "numpy".
ENGINES = ("auto", "pyarrow", "numpy", "python")
#: The first row is read with at most this many bytes (a header of ~100k columns).
_MAX_FIRST_ROW = 1 << 24

ColumnRef = str | int


def is_number_or_missing(cell: str) -> bool:
    text = cell.strip()
    if text.lower() in MISSING_TOKENS:
        return True
    try:
        float(text)
    except ValueError:
        return False
    return True


def is_header(row: Sequence[str]) -> bool:
    """Whether a first row is a header: one of its cells is not a number, or it is the
    header pandas writes for a frame with an unnamed index and unnamed columns
    (``,0,1,...,m-2``)."""
    if not all(is_number_or_missing(cell) for cell in row):
        return True
    cells = [cell.strip() for cell in row]
    return len(cells) > 1 and cells[0] == "" and cells[1:] == [str(j) for j in
                                                                range(len(cells) - 1)]


@dataclass(frozen=True)
class Layout:
    """What the first non-blank row of a CSV file says.

    ``names``: the header's cells (stripped), or ``None`` without a header; ``n_cols``;
    ``data_start``: byte offset of the first byte after the header (or of the first row
    without one); ``skip_lines``: physical lines before that offset; ``first_line``: the
    1-based line number of the first row (header or data).
    """

    names: list[str] | None
    n_cols: int
    data_start: int
    skip_lines: int
    first_line: int


def sniff(path: Path, delimiter: str = ",", header: bool | None = None) -> Layout | None:
    """The :class:`Layout` of ``path`` from its first non-blank row, or ``None`` when that
    row cannot be read on its own (not UTF-8, a quoted field spanning lines, no rows): the
    careful reader then reads the whole file and says what is wrong."""
    with open(path, "rb") as fh:
        offset = 3 if fh.read(3) == b"\xef\xbb\xbf" else 0
        fh.seek(offset)
        line = 0
        while True:
            raw = fh.readline(_MAX_FIRST_ROW)
            line += 1
            if not raw or (len(raw) == _MAX_FIRST_ROW and not raw.endswith(b"\n")):
                return None
            if raw.strip():
                break
            offset += len(raw)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if text.count('"') % 2:
        return None
    try:
        row = next(csv.reader([text], delimiter=delimiter, strict=True))
    except (csv.Error, StopIteration):
        return None
    has_header = is_header(row) if header is None else bool(header)
    names = [cell.strip() for cell in row] if has_header else None
    start = offset + len(raw) if has_header else offset
    return Layout(names=names, n_cols=len(row), data_start=start,
                  skip_lines=line if has_header else line - 1, first_line=line)


# ============================================================== column plan
def column_name(names: Sequence[str] | None, j: int) -> str:
    """How messages name column ``j`` (0-based): ``column 3 ('b')`` (1-based, as editors
    count)."""
    return f"column {j + 1} ({names[j]!r})" if names else f"column {j + 1}"


def resolve_column(path, ref: ColumnRef, names: Sequence[str] | None, n_cols: int,
                   what: str) -> int:
    """The 0-based position of a column given by name or by position (an int, or a
    string of digits that is not a column name; negative counts from the end)."""
    if isinstance(ref, bool) or not isinstance(ref, int | str | np.integer):
        raise TypeError(f"{what} must be a column name or position, got {ref!r}")
    if isinstance(ref, str) and names is not None and ref in names:
        return names.index(ref)
    if isinstance(ref, str) and re.fullmatch(r"\s*-?\d+\s*", ref):
        ref = int(ref)
    if isinstance(ref, int | np.integer):
        if not -n_cols <= ref < n_cols:
            raise ColumnChoiceError(f"{path}: {what} position {ref} is out of range for "
                                    f"{n_cols} columns (positions count from 0; -1 is the last)")
        return int(ref) % n_cols
    if names is None:
        raise ColumnChoiceError(f"{path}: has no header row, so the {what} {ref!r} cannot "
                                "be found by name; give its position (from 0; -1 is the last)")
    raise ColumnChoiceError(f"{path}: no column named {ref!r}; the columns are "
                            f"{', '.join(map(repr, names))}")


@dataclass(frozen=True)
class ColumnPlan:
    """Which columns of a table are read and what each is.

    ``features``: the feature columns' positions, in output order; ``label``: the label
    column's position or ``None``; ``index``: position 0 when the first column is an
    unnamed candidate index (kept as a feature unless it holds ``0..n-1``); ``names``:
    the header (or ``None``).  ``usecols`` lists every column to parse, in file order.
    """

    features: tuple[int, ...]
    label: int | None
    index: int | None
    names: tuple[str, ...] | None

    @property
    def usecols(self) -> list[int]:
        extra = [c for c in (self.label, self.index) if c is not None]
        return sorted(set(self.features) | set(extra))

    def feature_names(self, index_dropped: bool) -> tuple[str, ...] | None:
        cols = self.feature_columns(index_dropped)
        return None if self.names is None else tuple(self.names[j] for j in cols)

    def feature_columns(self, index_dropped: bool) -> tuple[int, ...]:
        if self.index is None:
            return self.features
        return self.features if index_dropped else (self.index, *self.features)


def plan_columns(path, names: Sequence[str] | None, n_cols: int, *,
                 label_column: ColumnRef | None = "auto",
                 columns: Iterable[ColumnRef] | None = None,
                 drop: Iterable[ColumnRef] | None = None) -> ColumnPlan:
    """The :class:`ColumnPlan` for a table with ``n_cols`` columns and header ``names``.

    ``label_column``: ``"auto"`` (a column named ``"label"``, else ``"target"``, when the
    header has one), ``None`` (no labels) or a name / position.  ``columns``: the feature
    columns, by name or position, in this order (default: every column but the label, a
    detected index and ``drop``).  An unnamed first column (header cell ``""`` or
    ``"Unnamed: 0"``) becomes the plan's candidate ``index`` unless ``columns`` is given
    or it is the label column or dropped.
    """
    names = None if names is None else list(names)
    label = _label_position(path, label_column, names, n_cols)
    dropped = {resolve_column(path, c, names, n_cols, "column to drop")
               for c in ([] if drop is None else _as_list(drop))}
    index = None
    if columns is not None:
        features = [resolve_column(path, c, names, n_cols, "feature column")
                    for c in _as_list(columns)]
        repeated = sorted({j for j in features if features.count(j) > 1})
        if repeated:
            raise ColumnChoiceError(f"{path}: {column_name(names, repeated[0])} is listed "
                                    "twice in columns")
        if label is not None and label in features:
            raise ColumnChoiceError(f"{path}: {column_name(names, label)} is the label column "
                                    "and cannot also be a feature; pass label_column=None to "
                                    "use it as a feature")
        features = [j for j in features if j not in dropped]
    else:
        features = [j for j in range(n_cols) if j != label and j not in dropped]
        if names is not None and names[0] in INDEX_NAMES and features[:1] == [0] and n_cols > 1:
            index, features = 0, features[1:]
    if not features and index is None:
        # the arguments' fault when they chose or dropped columns, else the file's
        error = DataFileError if columns is None and drop is None else ColumnChoiceError
        raise error(f"{path}: has no feature columns left (label column "
                            f"{'none' if label is None else column_name(names, label)}, "
                            f"{len(dropped)} dropped, of {n_cols} columns)")
    return ColumnPlan(features=tuple(features), label=label, index=index,
                      names=None if names is None else tuple(names))


def _as_list(refs) -> list:
    return [refs] if isinstance(refs, str | int) else list(refs)


def _label_position(path, label_column, names, n_cols) -> int | None:
    if label_column is None:
        return None
    if isinstance(label_column, str) and label_column == "auto":
        for name in ("label", "target"):
            if names and name in names:
                return names.index(name)
        return None
    return resolve_column(path, label_column, names, n_cols, "label column")


def index_rows(column: np.ndarray, first_row: int = 0) -> bool:
    """Whether ``column`` holds the row numbers ``first_row, first_row + 1, ...``."""
    return bool(len(column)) and bool(np.array_equal(
        column, np.arange(first_row, first_row + len(column), dtype=np.float64)))


# ================================================================== engines
def engine_for(engine: str = "auto") -> str:
    """The engine ``engine`` names: ``"auto"`` is pyarrow when it imports, else numpy."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if engine != "auto":
        return engine
    try:
        import pyarrow.csv  # noqa: F401
    except ImportError:
        return "numpy"
    return "pyarrow"


def parse_fast(source: Path | bytes, layout: Layout, usecols: Sequence[int],
               delimiter: str = ",", engine: str = "auto") -> np.ndarray | None:
    """The data rows of ``source`` (a file, read from ``layout.data_start``, or the bytes
    of whole rows) as float64 of shape (n, len(usecols)), missing cells NaN; ``None``
    when the engine cannot read them exactly as :func:`read_rows` would (the caller then
    uses the careful reader).  Rows that are blank for the careful reader but not for the
    engine, ``inf``, text and ragged rows all give ``None``."""
    engine = engine_for(engine)
    if engine == "python":
        return None
    try:
        if engine == "pyarrow":
            values = _parse_pyarrow(source, layout, usecols, delimiter)
        else:
            values = _parse_numpy(source, layout, usecols, delimiter)
    except MemoryError:
        raise
    except Exception:  # noqa: BLE001 - anything the engine cannot read: the careful reader
        return None
    if values is None or np.isinf(values).any():
        return None
    if np.isnan(values).any() and np.isnan(values).all(axis=1).any():
        return None  # maybe a row of empty cells, which the careful reader skips as blank
    return values


def _parse_pyarrow(source, layout: Layout, usecols, delimiter) -> np.ndarray | None:
    import pyarrow as pa
    import pyarrow.csv as pc

    names = [f"f{j}" for j in range(layout.n_cols)]
    if isinstance(source, bytes | bytearray | memoryview):
        stream = pa.BufferReader(pa.py_buffer(source))
    else:  # read, not memory-mapped: mapped pages of the whole file would count as RSS
        stream = pa.OSFile(os.fspath(source))
        stream.seek(layout.data_start)
    with stream:
        table = pc.read_csv(
            stream,
            # one thread: each thread holds its own blocks in flight (about +30 MB peak
            # on a 40 MB file) for a gain that a 2-core machine does not see
            read_options=pc.ReadOptions(column_names=names, use_threads=False),
            parse_options=pc.ParseOptions(delimiter=delimiter),
            convert_options=pc.ConvertOptions(
                include_columns=[names[j] for j in usecols],
                column_types={names[j]: pa.float64() for j in usecols},
                null_values=_NULL_SPELLINGS, quoted_strings_can_be_null=True))
    out = np.empty((table.num_rows, len(usecols)), dtype=np.float64)
    for k in range(len(usecols)):
        row = 0  # chunk by chunk: ChunkedArray.to_numpy() would concatenate a copy first
        for chunk in table.column(k).chunks:
            out[row:row + len(chunk), k] = _float64_values(chunk)
            row += len(chunk)
    return out


def _float64_values(chunk) -> np.ndarray:
    """A float64 Arrow array's values as a NumPy view, nulls as NaN.  Read from its buffers
    (validity bitmap, values): pyarrow's own ``to_numpy`` imports pandas when it is
    installed, which costs more memory than the whole file."""
    validity, data = chunk.buffers()[:2]
    n, start = len(chunk), chunk.offset
    values = np.frombuffer(data, dtype=np.float64, count=n, offset=8 * start)
    if chunk.null_count:
        bits = np.unpackbits(np.frombuffer(validity, dtype=np.uint8), bitorder="little")
        values = np.where(bits[start:start + n].astype(bool), values, np.nan)
    return values


def _parse_numpy(source, layout: Layout, usecols, delimiter) -> np.ndarray | None:
    if isinstance(source, bytes | bytearray | memoryview):
        fh = io.StringIO(bytes(source).decode("utf-8"))
    else:
        fh = open(source, encoding="utf-8-sig", newline="")  # noqa: SIM115
        for _ in range(layout.skip_lines):
            fh.readline()
    with fh:
        return np.loadtxt(fh, delimiter=delimiter, usecols=list(usecols), dtype=np.float64,
                          comments=None, quotechar='"', ndmin=2, encoding=None)


# ========================================================== careful reader
def read_rows(path, lines: Iterable[str], delimiter: str = ",",
              first_line: int = 1) -> tuple[list[int], list[list[str]]]:
    """The non-blank rows of CSV text (``lines``, with their line ends) and the 1-based
    line number each starts on (counting from ``first_line``)."""
    numbers: list[int] = []
    rows: list[list[str]] = []
    reader = csv.reader(lines, delimiter=delimiter, strict=True)
    start = first_line
    try:
        for row in reader:
            if row and any(cell.strip() for cell in row):
                numbers.append(start)
                rows.append(row)
            start = first_line + reader.line_num
    except UnicodeDecodeError as exc:
        raise DataFileError(f"{path}: is not UTF-8 text (a binary file?): {exc}") from None
    except csv.Error as exc:
        raise DataFileError(f"{path}: malformed CSV near line {start}: {exc}") from None
    return numbers, rows


def cells_to_float(path, rows: list[list[str]], lines: list[int], names,
                   n_cols: int) -> np.ndarray:
    """Rows of text cells as float64 (n, n_cols): missing tokens NaN; ragged rows, text and
    ``inf`` are errors naming the line and the column."""
    for line, row in zip(lines, rows, strict=True):
        if len(row) != n_cols:
            raise DataFileError(f"{path}: line {line} has {len(row)} fields but the first row "
                                f"has {n_cols} (ragged rows)")
    cells = np.array(rows, dtype=str).reshape(len(rows), n_cols)
    try:
        values = cells.astype(np.float64)
    except ValueError:
        values = np.empty(cells.shape, dtype=np.float64)
        for i, row in enumerate(cells.tolist()):
            for j, cell in enumerate(row):
                text = cell.strip()
                if text.lower() in MISSING_TOKENS:
                    values[i, j] = np.nan
                    continue
                try:
                    values[i, j] = float(text)
                except ValueError:
                    raise DataFileError(f"{path}: line {lines[i]}, {column_name(names, j)}: "
                                        f"{cell!r} is not a number") from None
    inf = np.isinf(values)
    if inf.any():
        i, j = np.argwhere(inf)[0]
        raise DataFileError(f"{path}: line {lines[i]}, {column_name(names, j)}: infinite "
                            f"value {str(cells[i, j])!r} is not allowed")
    return values
