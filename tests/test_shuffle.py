"""Block-shuffled epochs (mogsgd.fast.shuffle): every row once per epoch, uniform positions,
uniform orders inside a window, batches that mix blocks, and training that uses them the
same way on every path."""

from itertools import permutations
from math import comb, factorial

import numpy as np
import pytest
from conftest import random_params, sample_mixture
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chisquare

from mogsgd import fast
from mogsgd.fast import shuffle
from mogsgd.fast.shuffle import block_rows, epoch_order
from mogsgd.train import TrainConfig, train


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 3000), st.integers(1, 64), st.integers(1, 9), st.integers(0, 2**32 - 1))
def test_every_row_is_visited_exactly_once_per_epoch(n, block, window, seed):
    order = epoch_order(np.random.default_rng(seed), n, 3, block=block, window_blocks=window,
                        above=0)
    assert order.dtype == np.int64 and order.shape == (n,)
    np.testing.assert_array_equal(np.sort(order), np.arange(n))


def test_up_to_the_threshold_the_order_is_rng_permutation():
    a, b = np.random.default_rng(4), np.random.default_rng(4)
    n = 5000
    np.testing.assert_array_equal(epoch_order(a, n, 3, above=n), b.permutation(n))
    assert a.bit_generator.state == b.bit_generator.state
    assert shuffle.shuffle_above(3) == (1 << 22) // 24 == 174_762


def test_default_blocks_hold_about_block_bytes_of_rows():
    assert block_rows(3) == 512 and block_rows(1) == 2048 and block_rows(64) == 32
    assert block_rows(10_000) == 8
    for d in (1, 3, 5, 16, 64):
        assert block_rows(d) * d * 8 <= shuffle.BLOCK_BYTES < 2 * block_rows(d) * d * 8


def test_a_rows_position_in_the_epoch_is_uniform():
    """Blocks of 8 rows, windows of 4 blocks, n = 256: over 4000 epochs the position of each
    of a few rows, in 16 bins of 16 positions, passes a chi-square test of uniformity."""
    rng = np.random.default_rng(0)
    n, epochs = 256, 4000
    where = np.empty((epochs, n), dtype=np.int64)
    for e in range(epochs):
        order = epoch_order(rng, n, 3, block=8, window_blocks=4, above=0)
        where[e, order] = np.arange(n)
    for row in (0, 7, 8, 100, 255):
        counts = np.bincount(where[:, row] // 16, minlength=16)
        assert chisquare(counts).pvalue > 1e-4, (row, counts)
    # and every position is equally likely to hold a given row, on average over rows
    np.testing.assert_allclose(where.mean(axis=0), (n - 1) / 2, atol=6)


def test_the_order_inside_a_window_is_a_uniform_permutation():
    """One window of one block of 4 rows (n = 4): all 24 orders, equally often."""
    rng = np.random.default_rng(1)
    draws = 24_000
    seen = {p: 0 for p in permutations(range(4))}
    for _ in range(draws):
        seen[tuple(epoch_order(rng, 4, 1, block=4, window_blocks=1, above=0))] += 1
    assert len(seen) == factorial(4)
    assert chisquare(list(seen.values())).pvalue > 1e-4, seen


def test_batches_mix_the_blocks_of_their_window():
    """Sorted data (row i in block i // 8), windows of 16 blocks: a batch of 32 rows holds as
    many distinct blocks as 32 draws without replacement from the window's 128 rows do."""
    rng = np.random.default_rng(2)
    block, window, batch, n = 8, 16, 32, 8 * 16 * 50
    distinct = []
    for _ in range(20):
        order = epoch_order(rng, n, 3, block=block, window_blocks=window, above=0)
        for start in range(0, n, batch):
            distinct.append(len(np.unique(order[start:start + batch] // block)))
    m = block * window
    expected = window * (1 - comb(m - block, batch) / comb(m, batch))
    assert np.mean(distinct) == pytest.approx(expected, rel=0.02)
    # a window's rows come from window_blocks whole blocks
    order = epoch_order(rng, n, 3, block=block, window_blocks=window, above=0)
    for start in range(0, n, m):
        assert len(np.unique(order[start:start + m] // block)) == window


def test_training_uses_the_block_order_on_every_path(monkeypatch):
    """Above the threshold the compiled epochs, the Python loop over the fused kernel and the
    NumPy loop all walk the same block-shuffled order (equal results, bit for bit for the
    first two), and that order is not ``rng.permutation``."""
    rng = np.random.default_rng(3)
    p = random_params(rng, 3, 2)
    X, _ = sample_mixture(rng, p, 3000)
    cfg = TrainConfig(batch_size=64, early_stopping=False)

    def runs():
        out = []
        for kw in ({"backend": "numba"},
                   {"backend": "numba", "grad_sums_fn": lambda *a: fast.nll_grad_sums(*a)},
                   {"backend": "numpy"}):
            out.append(train(X, p, config=cfg, rng=np.random.default_rng(9), max_epochs=2,
                             **kw))
        return out

    plain = runs()
    monkeypatch.setattr(shuffle, "BLOCK_SHUFFLE_BYTES", 1000 * 2 * 8)   # 1000 rows
    compiled, loop, numpy_loop = runs()
    assert compiled.params.ravel().tobytes() == loop.params.ravel().tobytes()
    assert compiled.rng_state == loop.rng_state == numpy_loop.rng_state
    np.testing.assert_allclose(compiled.params.ravel(), numpy_loop.params.ravel(), rtol=1e-10,
                               atol=1e-10)
    assert not np.allclose(compiled.params.ravel(), plain[0].params.ravel(), rtol=1e-6)
    gen = np.random.default_rng(9)
    expected = [epoch_order(gen, 3000, 2) for _ in range(2)]
    assert compiled.rng_state == gen.bit_generator.state
    assert not np.array_equal(expected[0], np.random.default_rng(9).permutation(3000))
