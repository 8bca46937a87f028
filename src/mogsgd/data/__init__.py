"""Where rows live: one dispatcher, :func:`as_source`, and one protocol, :class:`Source`.

:func:`as_source` is the only place in the package that looks at the type of ``X``:

==========================================  ===============================================
input                                       source
==========================================  ===============================================
NumPy array, list, a small ``np.memmap``,   :class:`~mogsgd.data.memory.MemorySource`
anything ``np.asarray`` reads
a path (``.npy``, ``.zarr``, ``.csv``,      :class:`~mogsgd.data.chunked.ChunkedSource`
Parquet file or folder), a ``np.memmap``
or an h5py-like dataset over 64 MiB,
a ``ChunkSource``, a Zarr
array, a re-iterable of chunks or a
function returning an iterator
a one-shot iterator of chunks               :class:`~mogsgd.data.chunked.OneShotSource`
a Dask array or data frame with a           :class:`~mogsgd.data.dask.DaskSource`
``dask.distributed`` client (streamed
through this process without one)
a ``torch.Tensor``, a CUDA DLPack array,    :class:`~mogsgd.data.tensor.TensorSource`
or any array with ``device="cpu"/"cuda"``
==========================================  ===============================================

Torch and Dask are imported only when such an input arrives.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Iterator

import numpy as np

from mogsgd.backends import uses_torch
from mogsgd.data.base import (
    CAPABILITIES,
    ROW_FUNCTIONS,
    FitPlan,
    Model,
    Prepared,
    Source,
    check_fit_rows,
)
from mogsgd.data.chunked import ChunkedSource, OneShotSource, write_npy
from mogsgd.data.memory import MemorySource
from mogsgd.errors import FallbackWarning
from mogsgd.stream import (
    STREAM_SUFFIXES,
    ArraySource,
    ChunkSource,
    IterableSource,
    NpySource,
    ZarrSource,
    is_dask_array,
    open_source,
)
from mogsgd.validation import check_positive_int

__all__ = ["as_source", "as_chunks", "is_out_of_core", "Source", "Prepared", "FitPlan",
           "Model", "CAPABILITIES", "ROW_FUNCTIONS", "MemorySource", "ChunkedSource",
           "OneShotSource", "check_fit_rows", "write_npy"]


def _is_dask_dataframe(X) -> bool:
    return type(X).__module__.startswith("dask.dataframe") and hasattr(X, "to_dask_array")


def _is_zarr(X) -> bool:
    return type(X).__module__.startswith("zarr")


def is_out_of_core(X) -> bool:
    """Whether ``X`` is read chunk by chunk rather than loaded: a ``ChunkSource``, a
    ``PathLike``, a string that ends in ``.npy``, ``.zarr``, ``.csv``, ``.parquet`` or
    ``.pq`` or names a directory, an iterator of chunks, a function returning one, a Zarr
    array, and a Dask array or data frame.  False for NumPy arrays (memmaps included), lists, other
    strings (refused later as not numeric) and everything else array-like."""
    if isinstance(X, ChunkSource | os.PathLike):
        return True
    if isinstance(X, str):
        return X.lower().endswith(STREAM_SUFFIXES) or os.path.isdir(X)
    if isinstance(X, np.ndarray | list | tuple) or hasattr(X, "__array__") and not (
            is_dask_array(X) or _is_zarr(X)):
        return False
    if isinstance(X, Iterator) or callable(X):
        return True
    return _is_zarr(X) or is_dask_array(X) or _is_dask_dataframe(X)


def as_chunks(X, *, chunk_rows: int | None = None,
              buffer_rows: int | None = None) -> ChunkSource:
    """``X`` as a :class:`~mogsgd.stream.ChunkSource`: a source (returned as is, with new
    sizes if given), a path (:func:`mogsgd.stream.open_source`), an ``np.memmap``, a Zarr or
    Dask array, other arrays, an iterator, a re-iterable of chunks or a function returning
    an iterator."""
    if isinstance(X, ChunkSource):
        if chunk_rows is not None:
            X.chunk_rows = check_positive_int("chunk_rows", chunk_rows)
        if buffer_rows is not None:
            X.buffer_rows = check_positive_int("buffer_rows", buffer_rows)
        return X
    if isinstance(X, str | os.PathLike):
        return open_source(X, chunk_rows=chunk_rows, buffer_rows=buffer_rows)
    if isinstance(X, np.memmap):
        return NpySource(X, chunk_rows=chunk_rows, buffer_rows=buffer_rows)
    if _is_zarr(X):
        return ZarrSource(X, chunk_rows=chunk_rows, buffer_rows=buffer_rows)
    if _is_dask_dataframe(X):
        X = X.to_dask_array(lengths=True)
    if hasattr(X, "shape") and hasattr(X, "__getitem__") and not isinstance(X, list | tuple):
        return ArraySource(X, chunk_rows=chunk_rows, buffer_rows=buffer_rows)
    return IterableSource(X, chunk_rows=chunk_rows, buffer_rows=buffer_rows)


#: A memory-mapped array, or another array-like whose rows are read on indexing (an h5py
#: dataset), larger than this is streamed chunk by chunk (never copied whole into memory); a
#: smaller one is read as an ordinary array.
MEMMAP_STREAM_BYTES = 64 << 20

#: Attributes of objects whose memory is already in this process (or on a device): those
#: are never streamed by size.
_IN_MEMORY_PROTOCOLS = ("__array_interface__", "__array_struct__", "__cuda_array_interface__",
                        "__dlpack__", "__arrow_c_array__")


def _not_in_memory(X) -> bool:
    """``X`` is a ``np.memmap``, or a 2-D array-like with ``shape``, ``dtype`` and
    ``__getitem__`` that exposes no memory buffer (an h5py dataset, a lazily loaded array):
    indexing it reads rows.  Data frames (no ``dtype``), sparse matrices, tensors and
    NumPy arrays are not."""
    if isinstance(X, np.memmap):
        return True
    if (isinstance(X, np.ndarray | list | tuple) or is_dask_array(X) or _is_zarr(X)
            or type(X).__module__.startswith("scipy.sparse")
            or any(hasattr(X, name) for name in _IN_MEMORY_PROTOCOLS)):
        return False
    shape = getattr(X, "shape", None)
    return (hasattr(X, "dtype") and hasattr(X, "__getitem__") and isinstance(shape, tuple)
            and len(shape) == 2)


def _large_unloaded(X) -> bool:
    """``X`` is not in memory (:func:`_not_in_memory`) and holds more than
    :data:`MEMMAP_STREAM_BYTES`: it is streamed, never copied whole."""
    if not _not_in_memory(X):
        return False
    try:
        nbytes = int(np.prod(X.shape, dtype=np.float64)) * np.dtype(X.dtype).itemsize
    except (TypeError, ValueError):
        return False
    return nbytes > MEMMAP_STREAM_BYTES


def _chunked(chunks: ChunkSource) -> ChunkedSource:
    return ChunkedSource(chunks) if chunks.reiterable else OneShotSource(chunks)


def _dask_client():
    """The default ``dask.distributed`` client, or ``None`` (no client, or no Dask)."""
    if "distributed" not in sys.modules:
        return None
    from mogsgd.distributed import get_client

    return get_client()


def as_source(X, *, device=None, inference: bool = False) -> Source:
    """Wrap ``X`` as the :class:`Source` for its kind (see the module docstring).

    ``device`` is the estimator's setting (:mod:`mogsgd.backends`).  With ``inference``
    a model that asks for a torch device scores host data on the NumPy path instead when
    torch or the device is not available here (a model file is portable), with a
    :class:`~mogsgd.errors.FallbackWarning`.
    """
    if isinstance(X, Source):
        return X
    if is_dask_array(X) or _is_dask_dataframe(X):
        client = _dask_client()
        if client is not None or inference:  # inference is lazy: map_blocks, no client
            from mogsgd.data.dask import DaskSource

            return DaskSource(X, client)
        from mogsgd.distributed import as_dask_2d

        return _chunked(ArraySource(as_dask_2d(X)))
    if is_out_of_core(X) or _large_unloaded(X):
        return _chunked(as_chunks(X))
    if uses_torch(device, X):
        if inference and device is not None and not _torch_device_usable(device, X):
            warnings.warn(f"the model asks for device={device!r}, which is not available "
                          "here; scoring on the CPU with NumPy instead (same results up to "
                          "rounding)", FallbackWarning, stacklevel=3)
            return MemorySource(X)
        from mogsgd.data.tensor import TensorSource

        return TensorSource(X, device)
    return MemorySource(X)


def _torch_device_usable(device, X) -> bool:
    """Whether torch imports and ``device`` exists here (for host input only)."""
    from mogsgd.backends import is_cuda_dlpack, is_torch_tensor

    if is_torch_tensor(X) or is_cuda_dlpack(X):
        return True
    try:
        import torch
    except ImportError:
        return False
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        return True  # let the tensor source say what is wrong with it
    return dev.type != "cuda" or torch.cuda.is_available()
