"""Dask: the worker side of data-parallel SGD, map-reduced EM and block-wise scoring.

Nothing here is new math: workers run the covariance family's
:func:`~mogsgd.covariance.ops.nll_grad_sums`, :func:`~mogsgd.covariance.ops.em_stats` and
:func:`~mogsgd.covariance.ops.log_prob` on their blocks (the E-step statistics and the
log-likelihood by the compiled passes of :mod:`mogsgd.fast` where numba runs), the driver
adds the results (:func:`~mogsgd.covariance.ops.combine`)
and :func:`mogsgd.train.train` runs the usual loop over :class:`DaskData`; the fit itself is
prepared by :class:`mogsgd.data.dask.DaskSource`.  Dask is optional (``pip install
mogsgd[dask]``); it is imported only when a Dask array arrives, and without it everything
else works.

Training
--------
With a ``dask.distributed`` client active, ``SGDGaussianMixture.fit(X)`` on a Dask array:

1. computes each row block of ``X`` once and keeps it in its worker's memory;
2. validates every block on its worker and gathers a random sample of its rows to the
   driver (:func:`sample_rows`): the held-out validation rows (the estimator's
   ``validation_fraction``, at most :data:`mogsgd.stream.MAX_VALIDATION_ROWS`) and the
   initialisation rows, from which the standardiser is fitted (exact when the sample
   holds every row);
3. makes each worker's training rows one standardised block there, without the held-out
   rows (:func:`standardized_shard`);
4. trains.  By default (``mode="local"``) with local SGD: every worker runs compiled steps
   on its own rows and the driver averages parameters and optimiser states every
   ``sync_rows`` rows per worker (:mod:`mogsgd.solvers.local_sgd`, :meth:`DaskData.shards`,
   :meth:`DaskData.map_shards`).  With ``mode="sync"``, synchronous data-parallel mini-batch
   SGD, described next.  An epoch reshuffles each block on its
   worker and has ``S = ceil(n_train / batch_size)`` steps; at step ``s`` block ``i``
   contributes its rows ``[s n_i / S, (s + 1) n_i / S)``, so a batch has about
   ``batch_size`` rows, stratified across blocks, and every row is used once per epoch.
   Each step the driver sends each worker the parameters and its slice bounds; the worker
   returns the additive gradient sums of its slice; the driver adds them, divides by the
   batch's row count and takes the optimiser step.  The sums are exact, so the step equals
   the single-machine step on the same rows up to the order of float additions.

EM (``solver="em"``, and the end-point refinement that ``refine="auto"`` runs after SGD)
map-reduces the sufficient statistics once per iteration: each worker computes its
``(K, D)``-sized statistics by the compiled pass where its rows are (:func:`block_em_stats`)
and the driver adds them -- one ``client.run`` round trip per iteration
(:func:`map_held`), the rows never move.

Communication per step
----------------------
Per worker and step: the parameters out, ``K (2D + 1)`` floats (means and log-sigmas
``K x D`` each, ``K`` logits), plus two integers per block; the gradient sums back,
``K (2D + 1) + 2`` floats.  That is ``8 K (2D + 1)`` bytes each way -- 168 bytes for
``K = 3, D = 3``, 6.6 kB for ``K = 20, D = 20`` -- independent of the batch size and of
``n``, plus a few hundred bytes of message framing.  The rows never move.

A step is one round trip driver -> scheduler -> workers -> driver.  It is sent with
``client.run`` (the workers read their blocks from memory, :func:`map_held`), which skips
the task bookkeeping and costs a third to a sixth of a task round trip; if a block is not
on the worker expected, the step falls back to one task per worker.  Local SGD's rounds
and EM's passes go the same way while a call's rows are bounded (:data:`RUN_CELLS`:
``client.run`` runs on the worker's event loop), else as tasks.  Either way a step is
latency-bound unless each worker's slice takes longer than the round trip: use large
batches (thousands of rows per worker; see ``benchmarks/SCALE.md``).  An EM iteration
moves ``K (3D + 1) + 2`` floats per worker back.

Scoring
-------
``score_samples``, ``predict`` and ``predict_proba`` return lazy Dask arrays computed block
by block on the workers (``map_blocks``); ``score``, ``bic`` and ``aic`` compute a sum.  The
values equal the in-memory ones up to the order of additions.

Pointing the same code at a cluster
-----------------------------------
::

    from dask.distributed import Client
    import dask.array as da

    client = Client("tcp://scheduler-host:8786")    # becomes the default client
    X = da.from_zarr("/shared/data.zarr")            # any Dask array the workers can read
    est = SGDGaussianMixture(8, batch_size=8192, max_epochs=3).fit(X)
    labels = est.predict(X)                          # lazy, computed on the workers

The workers need the same mogsgd installed.  Chunk ``X`` by rows into a few blocks per
worker.  Without a client a Dask array is streamed through this process, chunk by chunk,
with the local scheduler (:mod:`mogsgd.stream`); ``partial_fit`` always streams.
"""

from __future__ import annotations

from collections import defaultdict
from contextlib import contextmanager
from typing import NamedTuple

import numpy as np

from mogsgd import api, fast
from mogsgd.covariance.ops import combine, em_stats, nll_grad_sums
from mogsgd.errors import ValidationError
from mogsgd.gradients import GradSums
from mogsgd.params import MixtureParams
from mogsgd.validation import check_data

__all__ = ["get_client", "as_dask_2d", "persist_blocks", "DaskData", "batch_grad_sums",
           "map_held", "block_em_stats", "block_loglik", "RUN_CELLS",
           "sample_rows", "standardized_shard", "take_rows", "allocate", "block_function"]


def get_client(client=None):
    """``client``, else the default ``dask.distributed`` client, else ``None``."""
    if client is not None:
        return client
    try:
        from distributed import default_client
    except ImportError:
        return None
    try:
        return default_client()
    except ValueError:
        return None


def as_dask_2d(X, n_features: int | None = None):
    if type(X).__module__.startswith("dask.dataframe"):
        X = X.to_dask_array(lengths=True)
    if X.ndim != 2:
        raise ValidationError(f"X must be 2-D of shape (n_samples, n_features), got shape "
                              f"{X.shape}")
    if any(np.isnan(c) for c in X.chunks[0]):
        X = X.compute_chunk_sizes()
    if n_features is not None and X.shape[1] != n_features:
        raise ValidationError(f"X has {X.shape[1]} features, but SGDGaussianMixture is "
                              f"expecting {n_features} features as input")
    if len(X.chunks[1]) > 1:
        X = X.rechunk({1: -1})
    return X


# ------------------------------------------------------------- worker tasks
def _checked(x, n_features: int, dtype=None, allow_nan: bool = False) -> np.ndarray:
    return check_data(x, n_features=n_features, min_samples=0, owner="this Dask array",
                      dtype=dtype, allow_nan=allow_nan)


def _drawn(n: int, k: int, seed: int) -> np.ndarray:
    """The ``k`` of ``n`` rows a block gives to the driver's sample (seeded, so the worker
    draws the same rows again when it leaves them out)."""
    return np.random.default_rng(seed).choice(n, size=k, replace=False)


def sample_rows(x, n_features, dtype, allow_nan, seed, k):
    """Validate one block (on its worker) and return ``k`` of its rows drawn at random
    without replacement (:func:`standardized_shard` leaves the same rows out)."""
    x = _checked(x, n_features, dtype, allow_nan)
    return x[_drawn(len(x), k, seed)]


def standardized_shard(blocks, n_features, dtype, allow_nan, seeds, taken, held_out, scaler):
    """One worker's training rows: its blocks without the held-out rows -- the first
    ``held_out[i]`` of the ``taken[i]`` rows :func:`sample_rows` drew from block ``i`` with
    ``seeds[i]`` (the rest of the sample initialises and trains) -- concatenated and
    standardised by the estimator's ``Standardizer``: one block per worker, the order of
    the rows kept (every epoch draws its own order)."""
    rest = []
    for x, seed, k, v in zip(blocks, seeds, taken, held_out, strict=True):
        x = _checked(x, n_features, dtype, allow_nan)
        rest.append(np.delete(x, _drawn(len(x), k, seed)[:v], axis=0) if v else x)
    return scaler.transform(_concatenate(rest))


def take_rows(x, start, stop):
    return x[start:stop]


def _concatenate(parts):
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _shuffle_rows(x, seed):
    return x[np.random.default_rng(seed).permutation(len(x))]


def _slices(parts, bounds) -> np.ndarray:
    pieces = [p[a:b] for p, (a, b) in zip(parts, bounds, strict=True) if b > a]
    return pieces[0] if len(pieces) == 1 else np.concatenate(pieces)


def _worker_grad_sums(parts, params, bounds):
    """One worker's share of a step: gradient sums over its slices of the batch."""
    return nll_grad_sums(_slices(parts, bounds), params)


def block_em_stats(parts, params):
    """The E-step statistics of the blocks ``parts`` (on their worker, or the driver's
    validation rows), by the compiled pass (:func:`mogsgd.fast.em_stats`) where numba runs
    and a block has no missing values, else the family's reference."""
    compiled = fast.resolve_backend("auto") == "numba"
    return combine((fast.em_stats if compiled and not np.isnan(p).any() else em_stats)(p, params)
                   for p in parts if len(p))


def block_loglik(parts, params):
    """``(sum log p, n)`` over the blocks ``parts`` (compiled where numba runs)."""
    return (sum(float(api.log_prob(p, params).sum()) for p in parts if len(p)),
            sum(len(p) for p in parts))


def _on_first(parts, fn, *args):
    """``fn(parts[0], *args)``: a one-block call through :func:`map_held`."""
    return fn(parts[0], *args)


def block_function(x, fn, n_features, params, allow_nan=False):
    """A per-row inference function on one validated block (on its worker)."""
    return fn(_checked(x, n_features, params.dtype, allow_nan), params)


# ------------------------------------------------------------ the driver side
def allocate(total: int, sizes: list[int]) -> list[int]:
    """Split ``total`` rows across blocks in proportion to ``sizes`` (largest remainder)."""
    n = sum(sizes)
    if n == 0 or total == 0:
        return [0] * len(sizes)
    exact = [total * s / n for s in sizes]
    out = [int(e) for e in exact]
    for i in sorted(range(len(sizes)), key=lambda i: out[i] - exact[i])[:total - sum(out)]:
        out[i] += 1
    return [min(o, s) for o, s in zip(out, sizes, strict=True)]


class _Batch(NamedTuple):
    """One step's rows: ``bounds[i] = (start, stop)`` within block ``i``; ``len`` = row count."""

    bounds: list[tuple[int, int]]

    def __len__(self) -> int:
        return sum(b - a for a, b in self.bounds)

    @property
    def shape(self) -> tuple[int]:
        return (len(self),)


#: ``client.run`` (see :func:`map_held`) carries calls over at most this many values
#: (rows x features) per worker: it runs them on the worker's event loop, which must not
#: block for long; larger calls go as tasks (their latency is then small beside the compute).
RUN_CELLS = 1 << 24


@contextmanager
def _numba_threads_at_most(k: int):
    """numba's parallel kernels in this thread on at most ``k`` threads, restored after
    (numba's setting is per thread)."""
    try:
        import numba
    except ImportError:
        yield
        return
    before = numba.get_num_threads()
    numba.set_num_threads(max(1, min(k, before)))
    try:
        yield
    finally:
        numba.set_num_threads(before)


def _run_held(fn, plan, shared, dask_worker=None):
    """:func:`map_held`'s worker side: ``fn(blocks, *shared, *extra)`` with this worker's
    ``(keys, extra) = plan[address]``, the blocks read from its memory.  It computes on
    the worker's own threads (``nthreads``), as its tasks do: ``client.run`` runs on the
    worker's main thread, where numba's parallel kernels would otherwise take every core
    of the host -- shared with the host's other workers (measured on 2 workers of a 2-core
    machine: an E-step pass over 900,000 rows 43 ms on 2 numba threads each, 31 on 1)."""
    keys, extra = plan[dask_worker.address]
    nthreads = getattr(getattr(dask_worker, "state", None), "nthreads", None) or 1
    with _numba_threads_at_most(nthreads):
        return fn([dask_worker.data[k] for k in keys], *shared, *extra)


def map_held(client, fn, groups: list[tuple[str | None, list]], shared: tuple = (),
             extras: list[tuple] | None = None, *, fast: bool = True) -> list:
    """``fn(blocks_j, *shared, *extras[j])`` where ``groups[j] = (address, futures)`` live
    (``address`` ``None``: wherever Dask finds them); the results in group order.

    ``fast=True`` (one group per worker, addresses known) sends one ``client.run`` message
    to those workers, which read their blocks from memory: one round trip without the
    scheduler's task bookkeeping (a third to a sixth of a task round trip on a
    LocalCluster, ``benchmarks/SCALE.md``).  If a block is not where expected (moved,
    spilled elsewhere, lost) or ``fast=False``, one task per group, which Dask schedules
    wherever the data are."""
    extras = [()] * len(groups) if extras is None else extras
    addresses = [w for w, _ in groups]
    if fast and None not in addresses and len(set(addresses)) == len(addresses):
        plan = {w: ([f.key for f in fs], extra)
                for (w, fs), extra in zip(groups, extras, strict=True)}
        try:
            out = client.run(_run_held, fn, plan, shared, workers=addresses)
            return [out[w] for w in addresses]
        except (KeyError, ValueError, OSError):
            pass
    futures = [client.submit(fn, fs, *shared, *extra, pure=False,
                             workers=None if w is None else [w], allow_other_workers=True)
               for (w, fs), extra in zip(groups, extras, strict=True)]
    return client.gather(futures)


def batch_grad_sums(client, parts: list, bounds: list[tuple[int, int]], params: MixtureParams,
                    workers: list[str] | None = None, *, fast: bool = True) -> GradSums:
    """Gradient sums of the rows ``parts[i][a_i:b_i]``, computed where the blocks live and
    added on the driver (:func:`map_held`: one ``client.run`` message with ``fast=True``).
    ``parts`` are futures of NumPy blocks held in worker memory; ``workers[i]`` the address
    holding block ``i`` (``None``: ask the scheduler)."""
    if workers is None:
        who = client.who_has(parts)
        workers = [sorted(who[p.key])[0] if who.get(p.key) else None for p in parts]
    groups: dict[str | None, list[int]] = defaultdict(list)
    for i, (a, b) in enumerate(bounds):
        if b > a:
            groups[workers[i]].append(i)
    return combine(map_held(client, _worker_grad_sums,
                            [(w, [parts[i] for i in idx]) for w, idx in groups.items()],
                            (params,), [([bounds[i] for i in idx],) for idx in groups.values()],
                            fast=fast))


class DaskData:
    """A batch provider for :func:`mogsgd.train.train` whose rows live on Dask workers.

    ``parts`` are futures of standardised NumPy blocks (the training rows), ``workers``
    their addresses.  :meth:`epoch_batches` reshuffles every block on its worker and yields
    :class:`_Batch` slice lists; :meth:`grad_sums_fn` computes a batch's gradient sums on
    the workers.
    """

    def __init__(self, client, parts: list, sizes: list[int], workers: list[str],
                 n_features: int, *, mode: str = "local", sync_rows: int | None = None) -> None:
        self.client, self.parts, self.sizes, self.workers = client, parts, sizes, workers
        self.shape = (int(sum(sizes)), n_features)
        self.fast = True
        self.mode, self.sync_rows = mode, sync_rows
        self._shards: list | None = None

    def __len__(self) -> int:
        return self.shape[0]

    def _submit(self, fn, i, *args):
        return self.client.submit(fn, self.parts[i], *args, pure=False,
                                  workers=[self.workers[i]], allow_other_workers=True)

    def epoch_batches(self, batch_size: int, rng: np.random.Generator):
        from distributed import wait

        seeds = rng.integers(0, 2**63 - 1, size=len(self.parts))
        self.parts = [self._submit(_shuffle_rows, i, int(s)) for i, s in enumerate(seeds)]
        wait(self.parts)
        self.workers = _holders(self.client, self.parts)
        steps = -(-self.shape[0] // batch_size)
        for s in range(steps):
            yield _Batch([(n * s // steps, n * (s + 1) // steps) for n in self.sizes]), None

    def grad_sums_fn(self, batch: _Batch, params: MixtureParams, sample_weight=None) -> GradSums:
        """The batch's gradient sums, computed on the workers and added here."""
        return batch_grad_sums(self.client, self.parts, batch.bounds, params, self.workers,
                               fast=self.fast)

    def _held(self) -> list[tuple[str, list]]:
        """``(address, futures)`` per worker: its shard under local SGD (made once), else
        the blocks it holds now."""
        if self.mode == "local":
            return [(w, [shard]) for shard, _, w in self.shards()]
        groups: dict[str, list[int]] = defaultdict(list)
        for i, w in enumerate(self.workers):
            if self.sizes[i]:
                groups[w].append(i)
        return [(w, [self.parts[i] for i in idx]) for w, idx in sorted(groups.items())]

    def _per_worker(self, fn, params):
        """``fn(blocks, params)`` on every worker's rows, one round trip."""
        rows = max(self.sizes) if self.mode != "local" else self.rows_per_trajectory
        return map_held(self.client, fn, self._held(), (params,),
                        fast=self.fast and rows * self.shape[1] <= RUN_CELLS)

    @property
    def rows_per_trajectory(self) -> int:
        """Rows one optimiser walks through per epoch: all of them (``"sync"``), or the
        largest worker's share (``"local"``: every worker runs its own steps)."""
        if self.mode == "sync":
            return self.shape[0]
        return max(r for _, r, _ in self.shards())

    def shards(self) -> list[tuple[object, int, str]]:
        """The training rows as one block per worker: ``(future, rows, address)``, made
        once (the blocks a worker holds, concatenated where they are; a worker's one block
        as it is, as :class:`~mogsgd.data.dask.DaskSource` makes them)."""
        if self._shards is None:
            from distributed import wait

            groups: dict[str, list[int]] = defaultdict(list)
            for i, w in enumerate(self.workers):
                if self.sizes[i]:
                    groups[w].append(i)
            self._shards = [
                (self.parts[idx[0]] if len(idx) == 1 else
                 self.client.submit(_concatenate, [self.parts[i] for i in idx], pure=False,
                                    workers=[w], allow_other_workers=True),
                 sum(self.sizes[i] for i in idx), w)
                for w, idx in sorted(groups.items())]
            wait([f for f, _, _ in self._shards])   # in memory before client.run reads them
        return self._shards

    def map_shards(self, fn, shared: tuple, per_shard: list[tuple], *,
                   rows: int | None = None) -> list:
        """``fn(shard, *shared, *per_shard[j])`` on the worker holding shard ``j`` (one
        round trip, :func:`map_held`; the rows never move); the results in shard order.
        ``rows``: the rows one call works on at most (``None``: the whole shard), which
        decides whether the call may go by ``client.run`` (:data:`RUN_CELLS`)."""
        rows = self.rows_per_trajectory if rows is None else rows
        return map_held(self.client, _on_first, [(w, [shard]) for shard, _, w in self.shards()],
                        (fn, *shared), per_shard,
                        fast=self.fast and rows * self.shape[1] <= RUN_CELLS)

    def em_stats(self, params: MixtureParams):
        """Map-reduced :class:`~mogsgd.em.EMStats` of all training rows."""
        return combine(self._per_worker(block_em_stats, params))

    def loglik(self, params: MixtureParams) -> tuple[float, int]:
        """``(sum log p, n)`` over all training rows, map-reduced."""
        parts = self._per_worker(block_loglik, params)
        return sum(p[0] for p in parts), sum(p[1] for p in parts)


def persist_blocks(client, X) -> tuple[list, list[int], list[str]]:
    """Compute each row block of ``X`` once into worker memory: ``(futures, sizes,
    worker addresses)``, one entry per block."""
    from distributed import wait

    X = as_dask_2d(X)
    futures = client.compute(list(X.to_delayed().ravel()))
    wait(futures)
    return futures, [int(c) for c in X.chunks[0]], _holders(client, futures)


def _holders(client, futures) -> list[str]:
    """The address of a worker holding each future's data."""
    who = client.who_has(futures)
    return [sorted(who[f.key])[0] for f in futures]
