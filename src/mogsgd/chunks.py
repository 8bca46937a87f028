"""The protocol of rows read chunk by chunk: :class:`ChunkSource`.

Every chunked reader (:mod:`mogsgd.stream`: ``.npy``, Zarr, Parquet, arrays, iterators;
:mod:`mogsgd.csv_source`: CSV) is a subclass; the fit, the scan pass and the shuffle buffer
(:mod:`mogsgd.stream`, :mod:`mogsgd.data.chunked`) only use this interface.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from mogsgd.errors import ValidationError
from mogsgd.validation import check_data, check_positive_int

__all__ = ["ChunkSource", "rows_for", "DEFAULT_CHUNK_BYTES", "DEFAULT_BUFFER_BYTES"]

#: Target size of one chunk read from disk.
DEFAULT_CHUNK_BYTES = 1 << 20
#: Target size of the shuffle buffer.
DEFAULT_BUFFER_BYTES = 1 << 26


def rows_for(nbytes: int, width: int, itemsize: int = 8) -> int:
    return max(1, int(nbytes) // (itemsize * max(1, int(width))))


class ChunkSource:
    """Rows of a data set, read chunk by chunk.

    Attributes
    ----------
    n_features : int
    n_samples : int or None
        ``None`` until known (an iterator's length is known after one full pass).
    chunk_rows : int
        Rows per chunk (the unit of reading; for Zarr and Parquet set by the file layout).
    buffer_rows : int
        Rows in the shuffle buffer (see the module docstring).
    random_access : bool
        Chunks can be read in any order (the training loop shuffles their order).
    reiterable : bool
        The rows can be read more than once (needed for several epochs).
    """

    random_access = True
    reiterable = True

    def __init__(self, n_features: int, n_samples: int | None, *, chunk_rows: int | None,
                 buffer_rows: int | None, name: str) -> None:
        self.n_features = int(n_features)
        self.n_samples = None if n_samples is None else int(n_samples)
        self.chunk_rows = (check_positive_int("chunk_rows", chunk_rows) if chunk_rows
                           is not None else rows_for(DEFAULT_CHUNK_BYTES, n_features))
        self.buffer_rows = (check_positive_int("buffer_rows", buffer_rows) if buffer_rows
                            is not None else rows_for(DEFAULT_BUFFER_BYTES, n_features))
        self.name = name
        self._bounds: np.ndarray | None = None

    # random access -------------------------------------------------------
    @property
    def bounds(self) -> np.ndarray:
        """Row offsets of the chunks, shape (n_chunks + 1,): chunk i is rows [b[i], b[i+1])."""
        if self._bounds is None:
            self._bounds = np.append(np.arange(0, self.n_samples, self.chunk_rows),
                                     self.n_samples).astype(np.int64)
        return self._bounds

    @property
    def n_chunks(self) -> int:
        return len(self.bounds) - 1

    def read(self, i: int) -> np.ndarray:
        """The raw chunk ``i`` (not yet validated); sources without random access (plain
        iterators) override ``_iter_raw`` instead and refuse this."""
        raise TypeError(f"{type(self).__name__} has no random access to chunk {i}; "
                        "iterate it instead")

    def _iter_raw(self) -> Iterator[np.ndarray]:
        for i in range(self.n_chunks):
            yield self.read(i)

    # both ------------------------------------------------------------------
    def chunks(self, order: Iterable[int] | None = None, *, allow_nan: bool = False,
               dtype=None) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(row_offset, chunk)`` pairs; each chunk is a validated (rows, D) float array
        of ``dtype`` (default: float32 stays float32, anything else becomes float64).

        ``order`` (random-access sources only) lists the chunks to read, in that order;
        the default is file order.  Empty chunks are skipped.
        """
        if self.random_access:
            b = self.bounds
            for i in (range(self.n_chunks) if order is None else order):
                start = int(b[i])
                chunk = self._checked(self.read(int(i)), start, allow_nan, dtype)
                if len(chunk):
                    yield start, chunk
            return
        offset = 0
        for raw in self._iter_raw():
            chunk = self._checked(raw, offset, allow_nan, dtype)
            if len(chunk):
                yield offset, chunk
                offset += len(chunk)
        self.n_samples = offset

    def _checked(self, raw, offset: int, allow_nan: bool, dtype) -> np.ndarray:
        try:
            return check_data(raw, n_features=self.n_features, allow_nan=allow_nan,
                              owner="this stream", min_samples=0, dtype=dtype)
        except (ValidationError, TypeError) as exc:
            raise type(exc)(f"{self.name}, chunk at row {offset}: {exc}") from None

    def __repr__(self) -> str:
        n = "?" if self.n_samples is None else self.n_samples
        return (f"{type(self).__name__}({self.name}, n_samples={n}, "
                f"n_features={self.n_features}, chunk_rows={self.chunk_rows}, "
                f"buffer_rows={self.buffer_rows})")
