"""A CSV file streamed in blocks of whole lines: :class:`CsvSource`.

Opening the source reads the file once, without parsing it, in blocks of about
``chunk_bytes`` of text cut at line ends, and counts each block's non-blank lines (a
vectorised pass over the bytes); the row offsets of the blocks are then known, so blocks can
be read in any order like the chunks of a ``.npy`` file.  Each block is parsed by the
same engines as a whole file (:mod:`mogsgd.csv_parse`: pyarrow, else NumPy), and by the
careful line-by-line reader when they cannot, so errors name the file's line and column.

One row per line: a quoted field holding a line break cannot be streamed (load the file
instead).  Labels are not read (a column named ``"label"``/``"target"``, or
``label_column``, is skipped); ``columns`` and ``drop`` select the features as in
:func:`mogsgd.io.read_csv`.  An unnamed first column holding the row numbers (a pandas
index) is recognised on the first block and left out, with a warning.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from mogsgd._files import check_regular_file
from mogsgd.chunks import DEFAULT_CHUNK_BYTES, ChunkSource
from mogsgd.csv_parse import (
    ColumnRef,
    cells_to_float,
    index_rows,
    parse_fast,
    plan_columns,
    read_rows,
    sniff,
)
from mogsgd.errors import DataFileError
from mogsgd.io import read_csv

__all__ = ["CsvSource", "line_blocks", "CSV_CHUNK_BYTES"]

#: Text per block: about a 1 MiB chunk of float64 at the ~20 characters a ``%.17g`` value
#: and its delimiter take.
CSV_CHUNK_BYTES = 3 * DEFAULT_CHUNK_BYTES


def line_blocks(path, start: int, chunk_bytes: int, delimiter: str = ",",
                first_line: int = 1) -> Iterator[tuple[int, int, int, int]]:
    """``(byte_start, byte_end, first_line, n_rows)`` for consecutive blocks of whole lines
    of ``path`` from byte ``start``: about ``chunk_bytes`` each, ``n_rows`` the lines
    holding something besides blanks and delimiters."""
    blank = np.zeros(256, dtype=bool)
    blank[[ord(" "), ord("\t"), ord("\r"), ord("\n"), *delimiter.encode()]] = True
    with open(path, "rb") as fh:
        fh.seek(start)
        offset, line = start, first_line
        while True:
            piece = fh.read(chunk_bytes)
            if not piece:
                return
            if not piece.endswith(b"\n"):
                piece += fh.readline()
            raw = np.frombuffer(piece, dtype=np.uint8)
            ends = np.flatnonzero(raw == ord("\n"))
            if not piece.endswith(b"\n"):
                ends = np.append(ends, len(raw) - 1)
            filled = np.concatenate([[0], np.cumsum(~blank[raw])])
            starts = np.concatenate([[0], ends[:-1] + 1])
            rows = int(np.count_nonzero(filled[ends + 1] - filled[starts]))
            yield offset, offset + len(piece), line, rows
            offset += len(piece)
            line += len(ends)


class CsvSource(ChunkSource):
    """A CSV file of numbers, streamed in blocks of whole lines (module docstring).

    ``feature_names`` holds the names of the feature columns when the file has a header.
    """

    def __init__(self, path, *, label_column: ColumnRef | None = "auto",
                 columns: Sequence[ColumnRef] | None = None,
                 drop: Sequence[ColumnRef] | None = None, header: bool | None = None,
                 delimiter: str = ",", chunk_bytes: int | None = None,
                 buffer_rows: int | None = None, engine: str = "auto") -> None:
        path = Path(path)
        try:
            check_regular_file(path, "data file")
        except FileNotFoundError:
            raise DataFileError(f"{path}: no such file") from None
        except OSError as exc:
            raise DataFileError(str(exc)) from None
        layout = sniff(path, delimiter, header)
        if layout is None:
            read_csv(path, header=header, delimiter=delimiter)  # says what is wrong
            raise DataFileError(f"{path}: its first row spans several lines (a quoted line "
                                "break), which cannot be streamed; load it instead "
                                "(--stream never)")
        plan = plan_columns(path, layout.names, layout.n_cols, label_column=label_column,
                            columns=columns, drop=drop)
        blocks = list(line_blocks(path, layout.data_start, int(chunk_bytes or CSV_CHUNK_BYTES),
                                  delimiter, layout.skip_lines + 1))
        blocks = [b for b in blocks if b[3]]
        if not blocks:
            raise DataFileError(f"{path}: has a header but no data rows" if layout.names
                                else f"{path}: is empty (no rows)")
        self.path, self.layout, self.plan = path, layout, plan
        self.delimiter, self.engine, self.blocks = delimiter, engine, blocks
        self._usecols = sorted(set(plan.features) | ({plan.index} - {None}))
        sizes = [b[3] for b in blocks]
        self.index_dropped = False
        super().__init__(len(plan.feature_columns(False)), int(sum(sizes)),
                         chunk_rows=max(sizes), buffer_rows=buffer_rows, name=str(path))
        self._bounds = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        if plan.index is not None:
            first = self._values(0)
            self.index_dropped = index_rows(first[:, self._usecols.index(plan.index)])
            if self.index_dropped:
                warnings.warn(f"{path}: the first column has no name and holds the row "
                              "numbers 0, 1, ... (the index pandas' to_csv writes); it is "
                              "not used as a feature (list it in columns=[...] to keep it)",
                              UserWarning, stacklevel=2)
                self.n_features -= 1
        self.feature_names = plan.feature_names(self.index_dropped)

    def _values(self, i: int) -> np.ndarray:
        """Block ``i`` parsed: float64 of shape (rows, len(self._usecols))."""
        start, end, line, rows = self.blocks[i]
        with open(self.path, "rb") as fh:
            fh.seek(start)
            buf = fh.read(end - start)
        values = parse_fast(buf, self.layout, self._usecols, self.delimiter, self.engine)
        if values is None or len(values) != rows:
            try:
                text = buf.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataFileError(f"{self.path}: is not UTF-8 text near line {line} (a "
                                    f"binary file?): {exc}") from None
            lines, cells = read_rows(self.path, text.splitlines(keepends=True),
                                     self.delimiter, first_line=line)
            values = cells_to_float(self.path, cells, lines, self.plan.names,
                                    self.layout.n_cols)[:, self._usecols]
            if len(values) != rows:
                raise DataFileError(f"{self.path}: changed while it was being read (lines "
                                    f"{line}...); read it again")
        return values

    def read(self, i: int) -> np.ndarray:
        values = self._values(i)
        pos = {j: k for k, j in enumerate(self._usecols)}
        if self.index_dropped and not index_rows(values[:, pos[self.plan.index]],
                                                 int(self.bounds[i])):
            raise DataFileError(
                f"{self.path}: the unnamed first column held the row numbers at the start of "
                f"the file (a pandas index, left out) but not from line {self.blocks[i][2]}; "
                "choose the feature columns with columns=[...]")
        feats = self.plan.feature_columns(self.index_dropped)
        return values[:, [pos[j] for j in feats]]
