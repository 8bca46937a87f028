"""Out-of-core rows: chunked readers, one scan pass and the shuffle buffer.

SGD touches one mini-batch at a time, so the data never have to be in memory whole.  This
module reads them chunk by chunk and adds no math of its own; fitting, scoring and
prediction of a stream are the estimator's, through :mod:`mogsgd.data.chunked` (the
estimator wraps any input with :func:`mogsgd.data.as_source`).

Usage
-----
::

    from mogsgd import SGDGaussianMixture, stream

    est = SGDGaussianMixture(5, batch_size=4096, max_epochs=2).fit("big.npy")  # or a Path
    src = stream.open_source("parquet_dir/", buffer_rows=2_000_000)  # or .zarr, .npy
    est.fit(src)
    est.score(src), est.bic(src)                 # one pass each
    labels = est.predict(src)                    # one array, in file order
    for labels in est.iter_predict(src): ...     # or one array per chunk
    est.predict(src, out="labels.npy")           # or written to a .npy file
    est.fit(lambda: read_my_chunks())            # any function returning an iterator
    for chunk in live_feed:                      # a live stream, one chunk at a time
        est.partial_fit(chunk)

Sources
-------
A :class:`ChunkSource` yields the rows of a data set as validated 2-D float chunks:

=============================  ===========================================  =============
source                         one chunk is                                  chunk order
=============================  ===========================================  =============
``NpySource(path)``            ``chunk_rows`` rows of a memory-mapped        shuffled per
                               ``.npy`` (pages released after each chunk)    epoch
``ZarrSource(path or array)``  a whole number of the array's row chunks      shuffled
``ParquetSource(dir or file)`` one row group (numeric columns; a column      shuffled
                               named ``"label"`` is skipped)
``CsvSource(path)``            ~3 MiB of whole lines of a CSV file           shuffled
                               (:mod:`mogsgd.csv_source`)
``ArraySource(array)``         ``chunk_rows`` rows of any sliceable 2-D      shuffled
                               array (NumPy, ``np.memmap``, h5py, Dask)
``IterableSource(obj)``        whatever ``obj`` yields: a one-shot           as yielded
                               iterator, a re-iterable, or a function that
                               returns a fresh iterator
=============================  ===========================================  =============

:func:`open_source` picks the reader for a path (``.npy``; ``.zarr`` or a directory with
``zarr.json``/``.zarray``; ``.parquet``/``.pq`` or a directory of them; ``.csv``) and is
what a command line calls; :func:`mogsgd.data.as_chunks` wraps anything else chunked.
pyarrow and zarr are imported only when such a source is opened (``pip install
mogsgd[parquet]``, ``mogsgd[zarr]``).  A ``np.memmap``, or an h5py-like dataset (``shape``,
``dtype`` and row slicing, no memory buffer), of more than 64 MiB passed to the estimator is
streamed (:func:`mogsgd.data.as_source`); a smaller one is read as an ordinary array.

The shuffle buffer: how random the batches are
----------------------------------------------
Each epoch reads the chunks in a fresh random order (when the source allows random access)
into a buffer of ``B = buffer_rows`` rows.  Once the buffer is full, each arriving chunk of
``c`` rows replaces ``c`` buffer rows chosen uniformly at random without replacement, and the
displaced rows, in random order, are cut into the next mini-batches.  Hence:

* every row is used exactly once per epoch (the buffer is drained, shuffled, at the end);
* a mini-batch is a uniform random sample of the rows in the buffer when it was drawn;
* a row stays in the buffer while ``s`` further rows are read with probability
  ``(1 - c/B)^(s/c) ~ exp(-s/B)``: it waits on average ``B`` rows, and a batch mixes rows
  from about the last ``B`` rows read, i.e. from ``~B/c`` chunks taken in random order;
* with ``B >= n`` the batches are a uniformly random permutation of the data cut into
  batches: exactly the distribution of the in-memory path.

So randomness depends on the file's order only within a window of ``~B`` rows: data sorted on
disk (say by class) need ``B/c`` large enough that a window of ``B/c`` random chunks
represents the data (tens of chunks); an iterator that cannot be reordered needs ``B`` to
cover its slowest drift.  The defaults give 64 MiB buffers and 1 MiB chunks (``B/c = 64``).

Memory
------
Peak memory is the buffer plus a few chunks plus fixed samples, independent of ``n``:
``(buffer_rows + ~4 chunk_rows) * D * 8`` bytes (plus 4 bytes per buffered row while the
buffer drains), a held-out validation sample of at most :data:`MAX_VALIDATION_ROWS` rows
(32 MiB at most) and an initialisation sample of :data:`INIT_ROWS` rows.  Scoring splits
chunks so no ``(rows, K)`` temporary exceeds 4 MiB.  Measured: fitting 50 million rows of
3 features (1.2 GB on disk) peaks at under 300 MB of RSS (``benchmarks/SCALE.md``).

Fitting a stream (:mod:`mogsgd.data.chunked`)
---------------------------------------------
One pass counts the rows and draws a uniform random sample (:func:`scan`) for the
standardiser, the held-out validation rows and the initialisation; then the training loop
reads epochs through :class:`StreamData` and the shuffle buffer, and EM streams its
statistics once per iteration.  A one-shot iterator is read once, in blocks of
``buffer_rows`` rows fed to ``partial_fit``.  Scoring a stream is one pass with the
in-memory functions on each chunk, so it gives the in-memory results up to the order of
floating-point additions.
"""

from __future__ import annotations

import mmap
import os
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from mogsgd._files import check_npy_header, check_regular_file
from mogsgd.chunks import DEFAULT_BUFFER_BYTES, DEFAULT_CHUNK_BYTES, ChunkSource, rows_for
from mogsgd.csv_parse import plan_columns
from mogsgd.csv_source import CsvSource
from mogsgd.errors import DataFileError, ValidationError
from mogsgd.validation import check_data, check_positive_int

__all__ = [
    "ChunkSource",
    "ArraySource",
    "NpySource",
    "ZarrSource",
    "ParquetSource",
    "IterableSource",
    "open_source",
    "should_stream",
    "shuffled_batches",
    "scan",
    "ScanResult",
    "StreamData",
    "rows_for",
    "DEFAULT_CHUNK_BYTES",
    "DEFAULT_BUFFER_BYTES",
    "MAX_VALIDATION_ROWS",
    "INIT_ROWS",
]

#: Largest ``(rows, K)`` or ``(rows, D)`` temporary made while scoring a chunk.
SCORE_BLOCK_BYTES = 1 << 22
#: Held-out validation rows are kept in memory: at most this many, and at most 32 MiB.
MAX_VALIDATION_ROWS = 100_000
MAX_VALIDATION_BYTES = 1 << 25
#: Rows sampled for initialisation (``init_params`` seeds on at most this many anyway).
INIT_ROWS = 20_000

PARQUET_SUFFIXES = (".parquet", ".pq")


# =================================================================== sources
class ArraySource(ChunkSource):
    """Chunks of ``chunk_rows`` rows sliced from any 2-D array-like with ``shape`` and slicing.

    For a read-only ``np.memmap`` the pages of each chunk are released from the process
    (``madvise(MADV_DONTNEED)``) once the chunk is copied, so the resident memory stays
    bounded although the whole file is mapped.  A Dask array is read one of its own row
    chunks at a time (each computed by the current scheduler).
    """

    def __init__(self, array, *, chunk_rows: int | None = None,
                 buffer_rows: int | None = None, name: str | None = None) -> None:
        shape = getattr(array, "shape", None)
        if shape is None or len(shape) != 2:
            raise ValidationError(f"an array source must be 2-D (n_samples, n_features), got "
                                  f"shape {shape}")
        if any(s != s for s in shape):  # Dask arrays of unknown chunk sizes have NaN
            array = array.compute_chunk_sizes()
            shape = array.shape
        super().__init__(shape[1], shape[0], chunk_rows=chunk_rows, buffer_rows=buffer_rows,
                         name=name or f"{type(array).__name__} of shape {tuple(shape)}")
        self.array = array
        row_chunks = getattr(array, "chunks", None)
        if chunk_rows is None and is_dask_array(array):
            self._bounds = np.concatenate([[0], np.cumsum(row_chunks[0])]).astype(np.int64)

    def read(self, i: int) -> np.ndarray:
        a, b = int(self.bounds[i]), int(self.bounds[i + 1])
        out = np.array(self.array[a:b])
        _release_pages(self.array)
        return out


def _release_pages(array) -> None:
    """Drop a read-only memmap's pages from this process (the page cache keeps them)."""
    mm = getattr(array, "_mmap", None)
    if mm is None or getattr(array, "mode", None) != "r" or not hasattr(mm, "madvise"):
        return
    try:
        mm.madvise(mmap.MADV_DONTNEED)
    except (OSError, ValueError, AttributeError):  # not supported here: memory just grows
        pass


class NpySource(ArraySource):
    """A ``.npy`` file (or an ``np.memmap`` of one) read through a memory map, chunk by chunk."""

    def __init__(self, path_or_memmap, *, chunk_rows: int | None = None,
                 buffer_rows: int | None = None) -> None:
        if isinstance(path_or_memmap, np.memmap):
            mm, path = path_or_memmap, getattr(path_or_memmap, "filename", None)
        else:
            path = Path(path_or_memmap)
            _check_exists(path)
            with open(path, "rb") as fh:
                check_npy_header(fh, os.fstat(fh.fileno()).st_size, str(path))
            try:
                mm = np.load(path, mmap_mode="r", allow_pickle=False)
            except (ValueError, OSError) as exc:
                raise DataFileError(f"{path}: not a readable .npy file: {exc}") from None
            if not isinstance(mm, np.ndarray):
                raise DataFileError(f"{path}: not a .npy array file")
        if mm.ndim != 2:
            raise DataFileError(f"{path}: holds an array of shape {mm.shape}; a data file "
                                "must hold shape (n_samples, n_features)")
        _check_numeric(path, mm.dtype)
        super().__init__(mm, chunk_rows=chunk_rows, buffer_rows=buffer_rows, name=str(path))
        self.path = path


class ZarrSource(ArraySource):
    """A Zarr array (a path to a store, or an opened array), read in whole row chunks.

    ``chunk_rows`` defaults to the largest multiple of the array's row chunk that is at
    most :data:`DEFAULT_CHUNK_BYTES` (at least one row chunk).  A group is accepted when it
    holds an array named ``"X"`` or exactly one 2-D array.
    """

    def __init__(self, path_or_array, *, chunk_rows: int | None = None,
                 buffer_rows: int | None = None) -> None:
        if isinstance(path_or_array, str | os.PathLike):
            array = _open_zarr(Path(path_or_array))
            name = str(path_or_array)
        else:
            array, name = path_or_array, None
        if len(array.shape) != 2:
            raise DataFileError(f"{name or 'the Zarr array'}: holds an array of shape "
                                f"{tuple(array.shape)}; a data array must have shape "
                                "(n_samples, n_features)")
        _check_numeric(name or "the Zarr array", array.dtype)
        if chunk_rows is None:
            row_chunk = int(array.chunks[0])
            per = max(1, rows_for(DEFAULT_CHUNK_BYTES, array.shape[1]) // row_chunk)
            chunk_rows = per * row_chunk
        super().__init__(array, chunk_rows=chunk_rows, buffer_rows=buffer_rows, name=name)


def _open_zarr(path: Path):
    try:
        import zarr
    except ImportError:
        raise ImportError("reading Zarr needs zarr: pip install mogsgd[zarr]") from None
    _check_exists(path)
    try:
        node = zarr.open(store=str(path), mode="r")
    except Exception as exc:  # zarr raises several types for a non-store
        raise DataFileError(f"{path}: not a readable Zarr store: {exc}") from None
    if hasattr(node, "shape"):
        return node
    arrays = {name: a for name, a in node.arrays() if len(a.shape) == 2}
    if "X" in arrays:
        return arrays["X"]
    if len(arrays) == 1:
        return next(iter(arrays.values()))
    raise DataFileError(f"{path}: a Zarr group with {len(arrays)} 2-D arrays "
                        f"({', '.join(sorted(arrays)) or 'none'}); name the data array 'X' "
                        "or open it yourself and pass ZarrSource(array)")


class ParquetSource(ChunkSource):
    """A Parquet file or a directory of them, read one row group at a time.

    Numeric columns are the features, in file order; ``label_column`` (default ``"label"``,
    as written by ``mogsgd.io``) is skipped when present, or pass ``columns`` explicitly.
    Nulls become NaN.  Every file must have the same feature columns.  A chunk is a whole
    row group: write large files with bounded row groups (pyarrow's default is 1 Mi rows).
    """

    def __init__(self, path, *, columns: list[str] | None = None,
                 label_column: str | None = "label", buffer_rows: int | None = None,
                 drop: list[str] | None = None) -> None:
        pa, pq = _import_pyarrow()
        path = Path(path)
        _check_exists(path)
        if path.is_dir():
            found = [p for p in path.rglob("*") if not p.is_dir()]
            files = sorted(p for p in found
                           if p.suffix.lower() in PARQUET_SUFFIXES and p.is_file())
            if not files:
                raise DataFileError(f"{path}: a directory with no .parquet or .pq files")
            others = sorted(set(found) - set(files))
            if others:
                warnings.warn(f"{path}: skipping {len(others)} entries that are not Parquet "
                              f"files (e.g. {others[0].name!r}); only .parquet and .pq files "
                              "are read", UserWarning, stacklevel=2)
        else:
            files = [path]
        groups, sizes = [], []
        for f in files:
            try:
                meta = pq.ParquetFile(f).metadata
                schema = pq.read_schema(f)
            except (pa.ArrowException, OSError) as exc:
                raise DataFileError(f"{f}: not a readable Parquet file: {exc}") from None
            names = self._feature_columns(f, schema, columns, label_column, pa, drop)
            if not groups:
                self.columns = names
            elif names != self.columns:
                raise DataFileError(f"{f}: has feature columns {names}, but {files[0]} has "
                                    f"{self.columns}")
            for g in range(meta.num_row_groups):
                groups.append((f, g))
                sizes.append(meta.row_group(g).num_rows)
        super().__init__(len(self.columns), int(sum(sizes)), chunk_rows=max(sizes, default=1) or 1,
                         buffer_rows=buffer_rows, name=str(path))
        self.files, self.groups = files, groups
        self._bounds = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self._open: tuple[Path, Any] | None = None

    @staticmethod
    def _feature_columns(f, schema, columns, label_column, pa, drop=None) -> list[str]:
        """The feature columns' names: ``columns`` and ``drop`` (names or positions) and
        the label column resolved as :func:`mogsgd.csv_parse.plan_columns` does; the
        default label column ``"label"`` is skipped when present."""
        label = "auto" if label_column == "label" else label_column
        plan = plan_columns(f, schema.names, len(schema.names), label_column=label,
                            columns=columns, drop=drop)
        names = [schema.names[j] for j in plan.feature_columns(index_dropped=False)]
        for name in names:
            field = schema.field(name)
            if not (pa.types.is_floating(field.type) or pa.types.is_integer(field.type)):
                raise DataFileError(f"{f}: column {field.name!r} has type {field.type}; pass "
                                    "columns=[...] to choose the numeric feature columns (or "
                                    "leave it out with drop=[...])")
        return names

    def read(self, i: int) -> np.ndarray:
        _, pq = _import_pyarrow()
        f, g = self.groups[i]
        if self._open is None or self._open[0] != f:
            self._open = (f, pq.ParquetFile(f))
        table = self._open[1].read_row_group(g, columns=self.columns)
        cols = [table.column(j).to_numpy(zero_copy_only=False) for j in range(len(self.columns))]
        all_f32 = all(c.dtype == np.float32 for c in cols)
        out = np.empty((table.num_rows, len(cols)), dtype=np.float32 if all_f32 else np.float64)
        for j, c in enumerate(cols):
            out[:, j] = c
        return out

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_open"] = None
        return state


def _import_pyarrow():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ImportError("reading Parquet needs pyarrow: pip install mogsgd[parquet]") from None
    return pa, pq


class IterableSource(ChunkSource):
    """Chunks from an iterator, a re-iterable (a list of arrays...) or a function returning a
    fresh iterator.  Each chunk is anything :func:`mogsgd.validation.check_data` accepts.

    A one-shot iterator (``iter(obj) is obj``) can be read once only.  The first chunk is
    read on construction to learn ``n_features`` (for a one-shot iterator it is kept and
    yielded first).
    """

    random_access = False

    def __init__(self, obj, *, buffer_rows: int | None = None, chunk_rows: int | None = None,
                 name: str | None = None) -> None:
        if callable(obj):
            self._factory: Callable[[], Iterator] | None = obj
            self.reiterable = True
        elif isinstance(obj, Iterator):
            self._factory = None
            self.reiterable = False
        elif isinstance(obj, Iterable):
            self._factory = lambda: iter(obj)
            self.reiterable = True
        else:
            raise TypeError(f"cannot stream a {type(obj).__name__}: pass an iterator of chunks, "
                            "a list of chunks, a function returning an iterator, a path or an "
                            "array")
        self._iterator = None if self._factory is not None else obj
        self._head = None
        first = next(iter(self._new_iterator()), None)
        if first is None:
            raise ValidationError("the stream yielded no chunks")
        first = check_data(first, name="the first chunk", min_samples=0)
        if self._factory is None:
            self._head = first
        super().__init__(first.shape[1], None, chunk_rows=chunk_rows, buffer_rows=buffer_rows,
                         name=name or f"{type(obj).__name__} of chunks")
        self._consumed = False

    def _new_iterator(self):
        return self._factory() if self._factory is not None else self._iterator

    def _iter_raw(self) -> Iterator[np.ndarray]:
        if self._factory is not None:
            yield from self._factory()
            return
        if self._consumed:
            raise ValidationError(f"{self.name}: this one-shot iterator has been read already; "
                                  "pass a list of chunks or a function returning a fresh "
                                  "iterator to read it again")
        self._consumed = True
        head, self._head = self._head, None
        yield head
        yield from self._iterator

    @property
    def bounds(self) -> np.ndarray:
        raise TypeError(f"{self.name} is read sequentially; it has no chunk bounds")


def _check_exists(path: Path) -> None:
    """A regular file or a directory; a FIFO or device is refused before it is opened."""
    try:
        check_regular_file(path, "data file", allow_dir=True)
    except FileNotFoundError:
        raise DataFileError(f"{path}: no such file or directory") from None
    except OSError as exc:
        raise DataFileError(str(exc)) from None


def _check_numeric(path, dtype) -> None:
    """Streamed data must be numeric, as loaded data must (bools are refused by both)."""
    if np.dtype(dtype).kind not in "iuf":
        raise DataFileError(f"{path}: X must be numeric, the file holds dtype {dtype}")


def open_source(path, *, chunk_rows: int | None = None, buffer_rows: int | None = None,
                columns: list | None = None, label_column: str | int | None = "label",
                drop: list | None = None) -> ChunkSource:
    """Open a data file for streaming, recognised by its suffix or layout.

    * ``*.npy``: :class:`NpySource` (memory-mapped);
    * ``*.zarr`` or a directory holding ``zarr.json`` / ``.zarray`` / ``.zgroup``:
      :class:`ZarrSource`;
    * ``*.parquet`` / ``*.pq`` or a directory of them: :class:`ParquetSource`;
    * ``*.csv``: :class:`mogsgd.csv_source.CsvSource`.

    ``columns``, ``drop`` (names or positions) and ``label_column`` choose the feature
    columns of Parquet and CSV files; the label column (default: one named ``"label"``,
    else ``"target"``) is skipped when present.

    Raises :class:`~mogsgd.errors.DataFileError` for anything else.
    """
    path = Path(path)
    _check_exists(path)
    suffix = path.suffix.lower()
    if path.is_file() and suffix == ".npy":
        return NpySource(path, chunk_rows=chunk_rows, buffer_rows=buffer_rows)
    if suffix == ".zarr" or (path.is_dir() and any(
            (path / m).exists() for m in ("zarr.json", ".zarray", ".zgroup"))):
        return ZarrSource(path, chunk_rows=chunk_rows, buffer_rows=buffer_rows)
    if suffix in PARQUET_SUFFIXES or path.is_dir():
        return ParquetSource(path, columns=columns, label_column=label_column,
                             buffer_rows=buffer_rows, drop=drop)
    if suffix == ".csv":
        return CsvSource(path, columns=columns, drop=drop, buffer_rows=buffer_rows,
                         label_column="auto" if label_column == "label" else label_column)
    raise DataFileError(f"{path}: cannot stream this kind of file; use a .npy file, a .zarr "
                        "store, a .csv file, or a .parquet file or directory of them")


#: Files larger than this are streamed by :func:`should_stream` (a command line's default).
STREAM_ABOVE_BYTES = 1 << 30


def should_stream(path, above_bytes: int = STREAM_ABOVE_BYTES) -> bool:
    """Whether a command line should stream ``path`` rather than load it: a directory (a
    Parquet data set or a Zarr store) or a ``.zarr`` always; a ``.npy``, ``.csv`` or
    Parquet file larger than ``above_bytes`` (1 GiB by default); anything else never."""
    path = Path(path)
    if path.suffix.lower() == ".zarr" or path.is_dir():
        return True
    if path.suffix.lower() in STREAM_SUFFIXES and path.is_file():
        return path.stat().st_size > above_bytes
    return False


#: A string ending in one of these (or naming a directory) is taken for a path to stream.
STREAM_SUFFIXES = (".npy", ".zarr", ".csv") + PARQUET_SUFFIXES


def is_dask_array(X) -> bool:
    """A Dask array (checked without importing Dask)."""
    return type(X).__module__.startswith("dask.array") and hasattr(X, "chunks")


# =============================================================== one scan pass
class _BottomK:
    """A uniform random sample of ``size`` rows without replacement: the rows with the
    smallest of i.i.d. uniform keys.  Any prefix (by key) is itself a uniform sample."""

    def __init__(self, size: int, rng: np.random.Generator) -> None:
        self.size, self.rng = max(1, int(size)), rng
        self.keys = np.empty(0)
        self.index = np.empty(0, dtype=np.int64)
        self.rows: np.ndarray | None = None

    def add(self, offset: int, chunk: np.ndarray) -> None:
        keys = self.rng.random(len(chunk))
        if len(self.keys) >= self.size:
            take = np.flatnonzero(keys < self.keys.max())
        else:
            take = np.arange(len(chunk))
        if self.rows is None:
            self.rows = np.empty((0, chunk.shape[1]), dtype=chunk.dtype)
        keys = np.concatenate([self.keys, keys[take]])
        index = np.concatenate([self.index, offset + take])
        rows = np.concatenate([self.rows, chunk[take]])
        if len(keys) > self.size:
            keep = np.argpartition(keys, self.size - 1)[:self.size]
            keys, index, rows = keys[keep], index[keep], rows[keep]
        self.keys, self.index, self.rows = keys, index, rows

    def sorted(self) -> tuple[np.ndarray, np.ndarray]:
        order = np.argsort(self.keys, kind="stable")
        return self.rows[order], self.index[order]


class ScanResult(NamedTuple):
    """What one pass over a source learns: ``n_samples`` and a uniform random sample of
    rows (``sample``, (m, D)), ordered randomly, with their row numbers (``index``)."""

    n_samples: int
    sample: np.ndarray
    index: np.ndarray


def scan(source: ChunkSource, rng: np.random.Generator, sample_rows: int, *,
         allow_nan: bool = False, dtype=None) -> ScanResult:
    """One pass: count the rows and keep a uniform random sample of ``sample_rows`` of them
    (all of them when there are fewer)."""
    sampler = _BottomK(sample_rows, rng)
    n = 0
    for offset, chunk in source.chunks(allow_nan=allow_nan, dtype=dtype):
        sampler.add(offset, chunk)
        n += len(chunk)
    if sampler.rows is None:
        sample, index = np.empty((0, source.n_features)), np.empty(0, dtype=np.int64)
    else:
        sample, index = sampler.sorted()
    return ScanResult(n, sample, index)


# ============================================================== shuffle buffer
class _Batcher:
    """Cuts a stream of row blocks into batches of exactly ``batch_size`` rows (the last
    one of an epoch may be smaller)."""

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self.parts: list[np.ndarray] = []
        self.rows = 0

    def push(self, rows: np.ndarray) -> Iterator[np.ndarray]:
        b, start = self.batch_size, 0
        if self.rows:
            need = b - self.rows
            self.parts.append(rows[:need])
            self.rows += len(self.parts[-1])
            start = need
            if self.rows < b:
                return
            yield np.concatenate(self.parts)
            self.parts, self.rows = [], 0
        while start + b <= len(rows):
            yield rows[start:start + b]
            start += b
        if start < len(rows):
            self.parts, self.rows = [rows[start:]], len(rows) - start

    def flush(self) -> Iterator[np.ndarray]:
        if self.rows:
            yield np.concatenate(self.parts)
            self.parts, self.rows = [], 0


def shuffled_batches(chunks: Iterable[np.ndarray], batch_size: int, buffer_rows: int,
                     rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Mini-batches of ``batch_size`` rows from a stream of chunks, through a shuffle buffer.

    The buffer fills with the first ``buffer_rows`` rows; then each arriving chunk of ``c``
    rows swaps places with ``c`` buffer rows drawn uniformly without replacement, which
    (in random order) become the next batches.  At the end the buffer is shuffled and
    emitted.  Every row is emitted exactly once; see the module docstring for how random
    the batches are.  Memory: ``buffer_rows`` rows plus about two chunks.
    """
    batcher = _Batcher(check_positive_int("batch_size", batch_size))
    cap = check_positive_int("buffer_rows", buffer_rows)
    buf, filled = None, 0
    for chunk in chunks:
        if buf is None:
            buf = np.empty((cap, chunk.shape[1]), dtype=chunk.dtype)
        if filled < cap:
            take = min(cap - filled, len(chunk))
            buf[filled:filled + take] = chunk[:take]
            filled += take
            chunk = chunk[take:]
        while len(chunk):
            c = min(len(chunk), cap)
            pos = rng.choice(cap, size=c, replace=False)
            out = buf[pos]
            buf[pos] = chunk[:c]
            chunk = chunk[c:]
            yield from batcher.push(out)
    if buf is not None:  # drain in a random order, a piece at a time (no second buffer)
        order = np.arange(filled, dtype=np.int32 if filled < 2**31 else np.int64)
        rng.shuffle(order)
        piece = max(batch_size, 1 << 16)
        for start in range(0, filled, piece):
            yield from batcher.push(buf[order[start:start + piece]])
    yield from batcher.flush()


class StreamData:
    """A batch provider for :func:`mogsgd.train.train`: the training rows of a source.

    ``shape`` is (n_train, D).  :meth:`epoch_batches` reads the chunks in a fresh random
    order (random-access sources), drops the held-out rows ``exclude`` (sorted global row
    numbers), standardises each chunk with ``scaler`` and passes it through the shuffle
    buffer.
    """

    def __init__(self, source: ChunkSource, scaler, exclude: np.ndarray | None = None,
                 *, allow_nan: bool = False, dtype=None) -> None:
        self.source, self.scaler = source, scaler
        self.allow_nan, self.dtype = allow_nan, dtype
        self.exclude = (np.empty(0, dtype=np.int64) if exclude is None
                        else np.sort(np.asarray(exclude, dtype=np.int64)))
        if source.n_samples is None:
            raise ValidationError(f"{source.name}: its length must be known (read it once)")
        self.shape = (source.n_samples - len(self.exclude), source.n_features)

    def __len__(self) -> int:
        return self.shape[0]

    def training_chunks(self, rng: np.random.Generator | None = None) -> Iterator[np.ndarray]:
        """Standardised training chunks; in a random chunk order when ``rng`` is given."""
        src = self.source
        order = (rng.permutation(src.n_chunks) if rng is not None and src.random_access
                 else None)
        ex = self.exclude
        for offset, chunk in src.chunks(order, allow_nan=self.allow_nan, dtype=self.dtype):
            if ex.size:
                lo, hi = np.searchsorted(ex, [offset, offset + len(chunk)])
                if hi > lo:
                    keep = np.ones(len(chunk), dtype=bool)
                    keep[ex[lo:hi] - offset] = False
                    chunk = chunk[keep]
            if len(chunk):
                yield self.scaler.transform(chunk)

    def epoch_batches(self, batch_size: int, rng: np.random.Generator):
        """One epoch: ``(X_batch, None)`` pairs (no sample weights)."""
        for batch in shuffled_batches(self.training_chunks(rng), batch_size,
                                      self.source.buffer_rows, rng):
            yield batch, None
