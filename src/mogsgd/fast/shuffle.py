"""The order in which an epoch visits the training rows of an in-memory array.

Up to :data:`BLOCK_SHUFFLE_BYTES` bytes of rows (4 MiB: 174,762 rows of 3 float64 features,
:func:`shuffle_above`) the order is ``rng.permutation(n)``: the batches are a uniformly
random permutation of the rows cut into pieces.  Above it, a uniform permutation makes
every row a random memory access (a cache and TLB miss per row once the array is much
larger than the caches), and drawing it costs more per row than the epoch's own work, so
the epoch cost grows faster than ``n`` (a permuted epoch of 1e6 x 3 rows took twice as long
as a block-shuffled one).  Larger arrays are therefore **block-shuffled**:

1. the rows are cut into contiguous *blocks* of ``R`` rows (the last one shorter);
2. the blocks are put in a uniformly random order (``rng.permutation(n_blocks)``);
3. consecutive groups of ``W`` blocks of that order form *windows*; the rows of each window
   are put in a uniformly random order, and the windows are concatenated.

``R`` follows from the row width (:func:`block_rows`: about :data:`BLOCK_BYTES` bytes of
rows) and ``W`` is :data:`WINDOW_BLOCKS`, so a window holds about 1 MiB of rows and its
random accesses stay in the CPU's L2 cache.  For 3 float64 features: blocks of 512 rows,
windows of 32,768 rows.

The order inside a window is a Fisher-Yates shuffle driven by ``rng.random(m)``: step ``i``
(``i = m - 1, ..., 1``) swaps entry ``i`` with entry ``floor(u_i (i + 1))``, a uniform index
in ``0 .. i`` up to the 2^-53 resolution of a double.  It runs compiled (numba), several
times faster than ``rng.shuffle``; all randomness still comes from ``rng``.

What this keeps and what it changes (``tests/test_shuffle.py`` checks each point):

* every row is visited exactly once per epoch;
* with all blocks full (``R`` divides ``n``), a row's position in the epoch is uniform on
  ``0 .. n - 1``: its block lands in a uniform block slot, and within its window its place is
  uniform.  So a row is in the batch of step ``t`` with probability ``b / n``, and every
  batch gradient is an unbiased estimate of the full gradient (eq. 20);
* a batch is a uniform sample, without replacement, of the rows of one window: ``W``
  blocks taken from uniformly random places of the array.  Rows of the same block are
  therefore more likely to share a batch than under a full permutation, and the batch
  gradients are a little noisier on data stored sorted (e.g. by class): each batch mixes
  ``W = 64`` random stretches of ``R`` rows, not ``b`` independent rows;
* a seed gives the same order on every run and every machine.
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = ["BLOCK_SHUFFLE_BYTES", "BLOCK_BYTES", "WINDOW_BLOCKS", "block_rows", "shuffle_above",
           "epoch_order"]

#: Arrays with more bytes of rows than this (counted as float64) are block-shuffled; smaller
#: ones get ``rng.permutation``.  A few times a core's L2 cache.
BLOCK_SHUFFLE_BYTES = 1 << 22

#: Bytes of rows per block (rounded down to a power of two in rows).
BLOCK_BYTES = 1 << 14

#: Blocks per window.
WINDOW_BLOCKS = 64


def block_rows(n_features: int, itemsize: int = 8) -> int:
    """Rows per block: the largest power of two with at most :data:`BLOCK_BYTES` bytes of
    rows (at least 8)."""
    rows = max(8, BLOCK_BYTES // (itemsize * max(1, int(n_features))))
    return 1 << (rows.bit_length() - 1)


def _fill_window(blocks, block, n, u, out):
    """Write the rows of ``blocks`` (those ``< n``) into ``out`` and shuffle them with the
    uniforms ``u`` (Fisher-Yates, see the module docstring); returns how many."""
    m = 0
    for b in blocks:
        lo = b * block
        for r in range(lo, min(n, lo + block)):
            out[m] = r
            m += 1
    for i in range(m - 1, 0, -1):
        j = int(u[i] * (i + 1))
        t = out[i]
        out[i] = out[j]
        out[j] = t
    return m


def shuffle_above(n_features: int) -> int:
    """Rows of ``n_features`` float64 columns above which an epoch is block-shuffled:
    :data:`BLOCK_SHUFFLE_BYTES` of rows."""
    return BLOCK_SHUFFLE_BYTES // (8 * max(1, int(n_features)))


@functools.cache
def _compiled_fill_window():
    """:func:`_fill_window` compiled, on first use: arrays of at most
    :data:`BLOCK_SHUFFLE_BYTES` never need numba (nor the second it takes to import)."""
    from numba import njit

    return njit(cache=True, nogil=True)(_fill_window)


def epoch_order(rng: np.random.Generator, n: int, n_features: int, *,
                block: int | None = None, window_blocks: int = WINDOW_BLOCKS,
                above: int | None = None) -> np.ndarray:
    """One epoch's order of the rows ``0 .. n - 1`` (int64, each row once): a uniform
    permutation when ``n <= above`` (default :func:`shuffle_above`), else
    block-shuffled (module docstring) with blocks of ``block`` rows (default
    :func:`block_rows`) and windows of ``window_blocks`` blocks."""
    if n <= (shuffle_above(n_features) if above is None else above):
        return rng.permutation(n)
    block = block_rows(n_features) if block is None else int(block)
    blocks = rng.permutation(-(-n // block)).astype(np.int64)
    order = np.empty(n, dtype=np.int64)
    fill_window = _compiled_fill_window()
    pos = 0
    for w0 in range(0, len(blocks), window_blocks):
        group = blocks[w0:w0 + window_blocks]
        size = len(group) * block
        pos += fill_window(group, block, n, rng.random(size), order[pos:pos + size])
    return order
