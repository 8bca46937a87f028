"""Chunked rows: ``.npy``/Parquet/Zarr files and folders, iterators of chunks, Dask arrays
without a cluster -- anything :mod:`mogsgd.stream` reads as a
:class:`~mogsgd.stream.ChunkSource`.

Fitting a re-iterable source (:meth:`ChunkedSource.prepare`):

1. one pass counts the rows and draws a uniform random sample of up to
   ``MAX_VALIDATION_ROWS + INIT_ROWS`` rows (:func:`mogsgd.stream.scan`); the sample gives
   the standardiser (exact when it holds every row), the held-out validation rows (kept in
   memory, left out of training) and the initialisation rows;
2. the training loop reads epochs through the shuffle buffer
   (:class:`mogsgd.stream.StreamData`), EM streams its statistics once per iteration;
3. the final log-likelihood takes one more pass.

A one-shot iterator (:class:`OneShotSource`) can be read only once: a fit is then one
pass of ``partial_fit`` over consecutive blocks of ``buffer_rows`` rows.

Inference reads chunk by chunk and returns one array (:meth:`ChunkedSource.map_rows`);
:meth:`ChunkedSource.iter_rows` yields the per-chunk arrays and :func:`write_npy` writes
them to a ``.npy`` file (atomically) for outputs larger than memory.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from mogsgd import api
from mogsgd._files import atomic_write
from mogsgd.covariance.ops import combine, em_stats
from mogsgd.data.base import (
    ROW_FUNCTIONS,
    FitPlan,
    Model,
    Prepared,
    Source,
    check_fit_rows,
    check_width,
    row_function,
)
from mogsgd.data.memory import MemorySource
from mogsgd.params import MixtureParams
from mogsgd.standardize import Standardizer, impute_for_init
from mogsgd.stream import (
    INIT_ROWS,
    MAX_VALIDATION_BYTES,
    MAX_VALIDATION_ROWS,
    SCORE_BLOCK_BYTES,
    ChunkSource,
    StreamData,
    rows_for,
    scan,
)

__all__ = ["ChunkedSource", "OneShotSource", "write_npy", "consecutive_blocks"]


def _pieces(chunk: np.ndarray, n_components: int) -> Iterator[np.ndarray]:
    """Slices of a chunk small enough that no (rows, K) temporary exceeds 4 MiB."""
    rows = rows_for(SCORE_BLOCK_BYTES, max(n_components, chunk.shape[1]))
    for start in range(0, len(chunk), rows):
        yield chunk[start:start + rows]


def consecutive_blocks(source: ChunkSource, allow_nan: bool = False) -> Iterator[np.ndarray]:
    """Consecutive blocks of ``buffer_rows`` rows in the source's own order."""
    parts, rows = [], 0
    for _, chunk in source.chunks(allow_nan=allow_nan):
        while len(chunk):
            take = min(len(chunk), source.buffer_rows - rows)
            parts.append(chunk[:take])
            rows += take
            chunk = chunk[take:]
            if rows == source.buffer_rows:
                yield np.concatenate(parts)
                parts, rows = [], 0
    if parts:
        yield np.concatenate(parts)


class ChunkedSource(Source):
    """A re-iterable :class:`~mogsgd.stream.ChunkSource`: epochs, EM passes, scoring passes."""

    kind = "stream"

    def __init__(self, chunks: ChunkSource) -> None:
        self.chunks = chunks
        self.n_features = chunks.n_features

    def prepare(self, plan: FitPlan, rng: np.random.Generator, *, sample_weight=None,
                scaler: Standardizer | None = None, check_rows=None) -> Prepared:
        src, d = self.chunks, self.n_features
        check_width(d, None if scaler is None else len(scaler.center))
        cap = min(MAX_VALIDATION_ROWS, rows_for(MAX_VALIDATION_BYTES, d))
        found = scan(src, rng, cap + INIT_ROWS, dtype=plan.dtype, allow_nan=plan.allow_nan)
        sample = check_fit_rows(found.sample, plan)   # too few rows, too few distinct rows
        if scaler is None:
            scaler = plan.fit_scaler(sample)
        n_val = min(plan.n_validation(found.n_samples), cap)
        data = StreamData(src, scaler, found.index[:n_val], dtype=plan.dtype,
                          allow_nan=plan.allow_nan)

        def train_pieces(k: int) -> Iterator[np.ndarray]:
            for chunk in data.training_chunks():
                yield from _pieces(chunk, k)

        def train_loglik(params: MixtureParams) -> float:
            total, count = 0.0, 0
            for piece in train_pieces(params.n_components):
                total += float(api.log_prob(piece, params, backend=plan.backend).sum())
                count += len(piece)
            return total / count

        def lower_bound(params: MixtureParams) -> float:
            total, count = self._loglik(scaler.to_data(params), plan.dtype, plan.allow_nan,
                                        plan.backend)
            return total / count

        Z_val = scaler.transform(sample[:n_val]) if n_val else None

        def all_em_stats(params: MixtureParams):
            parts = [em_stats(piece, params) for piece in train_pieces(params.means.shape[0])]
            return combine(parts + ([] if Z_val is None else [em_stats(Z_val, params)]))

        return Prepared(
            n_features=d, scaler=scaler, train=data, val=Z_val,
            all_em_stats=all_em_stats,
            all_loglik=lambda params: lower_bound(params) + scaler.log_det,
            init_rows=impute_for_init(scaler.transform(sample[n_val:])),
            em_stats=lambda params: combine(
                em_stats(piece, params) for piece in train_pieces(params.means.shape[0])),
            train_loglik=train_loglik, lower_bound=lower_bound)

    def blocks(self, plan: FitPlan, sample_weight=None) -> Iterator[Source]:
        for block in consecutive_blocks(self.chunks, plan.allow_nan):
            yield MemorySource(block)

    def _loglik(self, params: MixtureParams, dtype, allow_nan: bool,
                backend: str = "auto") -> tuple[float, int]:
        total, count = 0.0, 0
        for _, chunk in self.chunks.chunks(dtype=dtype, allow_nan=allow_nan):
            for piece in _pieces(chunk, params.n_components):
                total += float(api.log_prob(piece, params, backend=backend).sum())
                count += len(piece)
        return total, count

    def _check_model(self, model: Model) -> None:
        check_width(self.n_features, model.n_features)

    def iter_rows(self, name: str, model: Model) -> Iterator[np.ndarray]:
        """:data:`ROW_FUNCTIONS` ``[name]`` per chunk, in the source's order."""
        self._check_model(model)
        fn = row_function(name, model)
        params = model.params
        for _, chunk in self.chunks.chunks(dtype=params.dtype, allow_nan=model.allow_nan):
            parts = [fn(piece, params) for piece in _pieces(chunk, params.means.shape[0])]
            yield parts[0] if len(parts) == 1 else np.concatenate(parts)

    def map_rows(self, name: str, model: Model):
        width, dtype = ROW_FUNCTIONS[name][1:]
        parts = list(self.iter_rows(name, model))
        if parts:
            return np.concatenate(parts)
        shape = (0,) if width is None else (0, model.params.means.shape[0])
        return np.empty(shape, dtype=dtype or model.params.dtype)

    def loglik_sum(self, model: Model, sample_weight=None) -> tuple[float, float]:
        self._check_model(model)
        total, count = self._loglik(model.params, model.params.dtype, model.allow_nan,
                                    model.backend)
        return total, float(count)


class OneShotSource(ChunkedSource):
    """A one-shot iterator: read once, so a fit is one pass of ``partial_fit`` over
    consecutive blocks, and nothing needs a second pass (EM, early stopping)."""

    kind = "one-shot iterator"


def write_npy(path, chunks: Iterable[np.ndarray], dtype, width: int | None) -> np.ndarray:
    """Write chunks to a new ``.npy`` file (refusing to replace one) through the package's
    atomic writer, and return it memory-mapped."""
    path = Path(path)
    dtype = np.dtype(dtype)
    with atomic_write(path, force=False) as tmp, open(tmp, "wb") as f:
        f.write(_npy_header(dtype, (0,) if width is None else (0, width)))
        n = 0
        for chunk in chunks:
            f.write(np.ascontiguousarray(chunk, dtype=dtype).tobytes())
            n += len(chunk)
        f.seek(0)
        f.write(_npy_header(dtype, (n,) if width is None else (n, width)))
        f.flush()
        os.fsync(f.fileno())
    return np.load(os.fspath(path), mmap_mode="r")


_NPY_HEADER_BYTES = 256


def _npy_header(dtype, shape: tuple) -> bytes:
    """A version-1.0 ``.npy`` header padded to a fixed length, so it can be rewritten in
    place once the number of rows is known."""
    text = repr({"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                 "fortran_order": False, "shape": shape})
    body_len = _NPY_HEADER_BYTES - 10
    text = text.ljust(body_len - 1) + "\n"
    return b"\x93NUMPY\x01\x00" + body_len.to_bytes(2, "little") + text.encode("latin1")
