"""Local SGD on Dask: each worker trains on its own rows, the driver averages.

Synchronous data-parallel SGD (:class:`mogsgd.distributed.DaskData` in ``mode="sync"``)
makes one round trip to every worker per optimiser step: exact, but latency-bound (on a
LocalCluster a step costs milliseconds; on a real network more).  Local SGD (periodic model
averaging, ``mode="local"``, the default) makes one round trip per *round*: in a round every
worker runs ``H`` optimiser steps of the same update rule on its own rows -- compiled, as a
single-process epoch is -- from the same parameters and optimiser state, and the driver
averages the workers' parameters and optimiser states, weighted by the rows each used.
``H`` is set by ``sync_rows`` (rows per worker per round, :data:`SYNC_ROWS` by default) so
that each round's compute dwarfs its round trip.

What is exact and what is not: with one worker (or one round per epoch on one shard) a
round is exactly a single-process compiled epoch over that worker's rows in the order of
``fast.epoch_order(default_rng(seed), ...)``; with several workers the average of ``P`` local
trajectories is not the single trajectory of synchronous SGD, but every row is used once per
epoch, the workers start each round together, and the mixture's log-likelihood is smooth
enough that the average of nearby iterates stays in the basin (tested: the held-out
log-likelihood matches the in-memory fit within 0.01 nats per row).

Communication per round and worker: the parameters and optimiser state out and back,
``8 K (2D + 1)`` bytes each for the parameters plus twice that for Adam's moments -- about
0.5 kB for ``K = 3, D = 3`` -- and a few hundred bytes of task framing.
"""

from __future__ import annotations

import copy
import threading
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from mogsgd import fast
from mogsgd.covariance.ops import PARAMS_TYPES
from mogsgd.optim import AdamState, MomentumState, SGDState
from mogsgd.params import MixtureParams, tree_map
from mogsgd.train import TrainConfig, make_stepper

__all__ = ["LocalSGDEngine", "local_round", "average_states", "SYNC_ROWS"]

#: Rows each worker trains on between two averagings, by default.
SYNC_ROWS = 1 << 20


#: On a worker: epoch orders by ``(seed, rows, features)`` -- the one in use (an epoch of
#: several rounds slices it again) and the next one, drawn in the background while the
#: driver averages and scores (as :func:`mogsgd.fast.permutations` does in one process).
#: An order depends on nothing else, so an entry can never be stale; at most
#: ``_ORDER_ENTRIES`` of them are kept.
_ORDERS: dict[tuple[int, int, int], Future] = {}
_ORDER_ENTRIES = 8
_ORDERS_LOCK = threading.Lock()
_ORDER_POOL: list = []


def _order(seed: int, n: int, d: int, *, ahead: bool = False) -> Future:
    """The order ``fast.epoch_order(default_rng(seed), n, d)``: drawn here, or in the
    background (``ahead``), or taken from :data:`_ORDERS`."""
    key = (seed, n, d)
    with _ORDERS_LOCK:
        if key in _ORDERS:
            return _ORDERS[key]
        if ahead:
            if not _ORDER_POOL:
                _ORDER_POOL.append(ThreadPoolExecutor(1, thread_name_prefix="mogsgd-order"))
            future = _ORDER_POOL[0].submit(fast.epoch_order, np.random.default_rng(seed), n, d)
        else:
            future = Future()
            future.set_result(fast.epoch_order(np.random.default_rng(seed), n, d))
        _ORDERS[key] = future
        while len(_ORDERS) > _ORDER_ENTRIES:
            del _ORDERS[next(iter(_ORDERS))]   # the oldest first
        return future


def local_round(X: np.ndarray, params: MixtureParams, opt_state, config: TrainConfig,
                n_local: int, lo: int, hi: int, seed: int, next_seed: int | None = None):
    """On a worker: the optimiser steps over rows ``order[lo:hi]`` of its shard ``X``, with
    ``order = fast.epoch_order(default_rng(seed), len(X), n_features)`` -- one epoch's order,
    the same as a single process draws for those rows (a permutation, block-shuffled for
    large shards; :mod:`mogsgd.fast.shuffle`).  Compiled where
    :func:`mogsgd.fast.compiled_epoch` can; else the same :class:`~mogsgd.train.Stepper`
    steps in Python.  ``next_seed``: the next epoch's seed, whose order is then drawn in
    the background (:func:`_order`).  Returns ``(params, opt_state, nll_total, rows)``."""
    n, d = X.shape
    order = _order(seed, n, d).result()[lo:hi]
    if next_seed is not None:
        _order(next_seed, n, d, ahead=True)
    if not len(order):
        return params, opt_state, 0.0, 0.0
    grad_sums_fn, _ = fast.kernels_for("auto")
    compiled = fast.compiled_epoch(config, n_local, grad_sums_fn, X, None, params)
    if compiled is not None:
        return compiled(order, params, opt_state)
    stepper = make_stepper(config, n_local, grad_sums_fn)
    batch = min(config.batch_size, n_local)
    total = 0.0
    for start in range(0, len(order), batch):
        idx = order[start:start + batch]
        params, opt_state, value = stepper.step(params, opt_state, X[idx], None)
        total += value * len(idx)
    return params, opt_state, total, float(len(order))


def _mean(values: list, weights: np.ndarray):
    if type(values[0]) in PARAMS_TYPES:   # parameters of any covariance family, leaf-wise
        return tree_map(lambda *leaves: sum(w * np.asarray(a)
                                            for a, w in zip(leaves, weights, strict=True)),
                        *values)
    return sum(w * v for v, w in zip(values, weights, strict=True))


def average_states(params: list[MixtureParams], states: list, rows: np.ndarray):
    """Row-weighted average of the workers' parameters and optimiser states (the step
    count is the weighted mean, rounded)."""
    w = np.asarray(rows, dtype=np.float64) / float(np.sum(rows))
    avg = _mean(params, w)
    avg = tree_map(lambda a: np.asarray(a, dtype=params[0].means.dtype), avg)
    first = states[0]
    count = int(round(float(sum(wi * s.count for s, wi in zip(states, w, strict=True)))))
    if isinstance(first, AdamState):
        state = AdamState(count, _mean([s.mu for s in states], w),
                          _mean([s.nu for s in states], w))
    elif isinstance(first, MomentumState):
        state = MomentumState(count, _mean([s.velocity for s in states], w))
    else:
        state = SGDState(count)
    return avg, state


class LocalSGDEngine:
    """The epoch engine of :func:`mogsgd.train.train` for rows on Dask workers
    (``DaskData.mode == "local"``): rounds of :func:`local_round` on every worker, then
    :func:`average_states`.  Same four members as every engine."""

    def __init__(self, X, stepper, config: TrainConfig, rng: np.random.Generator, *,
                 sample_weight=None, X_val=None, val_weight=None, params=None,
                 grad_sums_fn=None, nll_fn=None) -> None:
        self.data, self.stepper, self.rng = X, stepper, rng
        self.X_val, self.val_weight, self.nll_fn = X_val, val_weight, nll_fn
        rows = [r for _, r, _ in X.shards()]
        self.rows = np.asarray(rows)
        self.n_local = int(max(rows))
        sync_rows = X.sync_rows or SYNC_ROWS
        self.rounds = max(1, -(-self.n_local // sync_rows))
        # the schedule counts steps per worker: an epoch is n_local / batch of them
        self.config = config
        # the next epoch's seeds are drawn with this epoch's (the workers draw its order
        # meanwhile); the generator's state reported is the one after this epoch's draw
        self.ahead = None
        self.state = copy.deepcopy(rng.bit_generator.state)

    def _seeds(self) -> list[int]:
        return [int(s) for s in self.rng.integers(0, 2**63 - 1, size=len(self.rows))]

    def epoch(self, params: MixtureParams, opt_state, more: bool):
        seeds = self.ahead if self.ahead is not None else self._seeds()
        self.state = copy.deepcopy(self.rng.bit_generator.state)
        self.ahead = self._seeds() if more else None
        total = count = 0.0
        for r in range(self.rounds):
            bounds = [(int(n * r // self.rounds), int(n * (r + 1) // self.rounds))
                      for n in self.rows]
            last = r + 1 == self.rounds and self.ahead is not None
            results = self.data.map_shards(
                local_round, (params, opt_state, self.config, self.n_local),
                [(lo, hi, s, self.ahead[j] if last else None)
                 for j, ((lo, hi), s) in enumerate(zip(bounds, seeds, strict=True))],
                rows=max(hi - lo for lo, hi in bounds))
            used = np.array([res[3] for res in results])
            keep = [i for i, u in enumerate(used) if u > 0]
            params, opt_state = average_states([results[i][0] for i in keep],
                                               [results[i][1] for i in keep], used[keep])
            total += sum(res[2] for res in results)
            count += float(used.sum())
        return params, opt_state, total, count

    def val_nll(self, params: MixtureParams) -> float | None:
        return None if self.X_val is None else self.nll_fn(self.X_val, params, self.val_weight)

    def rng_state(self) -> dict:
        return copy.deepcopy(self.state)

    def close(self) -> None:
        pass
