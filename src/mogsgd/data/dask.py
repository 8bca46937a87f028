"""Dask arrays on a ``dask.distributed`` cluster: rows stay on the workers.

:meth:`DaskSource.prepare` computes each row block once into its worker's memory,
validates it there, gathers a random sample of rows to the driver (the held-out validation
rows and the initialisation rows, from which the standardiser is fitted) and makes each
worker's training rows one standardised block there.  The training loop then runs local
SGD (or, ``mode="sync"``, synchronous data-parallel SGD) through
:class:`mogsgd.distributed.DaskData`, and EM -- the solver, or the refinement after SGD --
map-reduces its statistics once per iteration.  Inference returns lazy Dask arrays
computed block by block (``map_blocks``).  Without a client a Dask array is streamed
through this process instead (:class:`mogsgd.data.chunked.ChunkedSource`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

import numpy as np

from mogsgd.covariance.ops import combine
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
from mogsgd.data.chunked import consecutive_blocks
from mogsgd.data.memory import MemorySource
from mogsgd.distributed import (
    DaskData,
    allocate,
    as_dask_2d,
    block_em_stats,
    block_function,
    block_loglik,
    persist_blocks,
    sample_rows,
    standardized_shard,
)
from mogsgd.params import MixtureParams
from mogsgd.standardize import Standardizer, impute_for_init
from mogsgd.stream import (
    INIT_ROWS,
    MAX_VALIDATION_BYTES,
    MAX_VALIDATION_ROWS,
    ArraySource,
    rows_for,
)
from mogsgd.validation import check_choice, check_positive_int

__all__ = ["DaskSource"]


class DaskSource(Source):
    """A Dask array (or data frame) with a distributed client."""

    kind = "dask"

    def __init__(self, X, client, *, mode: str = "local", sync_rows: int | None = None) -> None:
        """``mode="local"`` (default): local SGD, every worker trains on its own rows and the
        driver averages every ``sync_rows`` rows per worker
        (:mod:`mogsgd.solvers.local_sgd`); ``"sync"``: synchronous data-parallel SGD, one
        round trip per optimiser step (exact per step, latency-bound)."""
        self.X = as_dask_2d(X)
        self.client = client
        self.n_features = self.X.shape[1]
        self.mode = check_choice("mode", mode, ("local", "sync"))
        self.sync_rows = check_positive_int("sync_rows", sync_rows, allow_none=True)

    def prepare(self, plan: FitPlan, rng: np.random.Generator, *, sample_weight=None,
                scaler: Standardizer | None = None, check_rows=None) -> Prepared:
        client, X = self.client, self.X
        n, d = X.shape
        check_width(d, None if scaler is None else len(scaler.center))
        raw, sizes, workers = persist_blocks(client, X)
        seeds = [int(s) for s in rng.integers(0, 2**63 - 1, size=len(raw))]
        # a random sample, drawn from every block in proportion to its size
        cap = min(MAX_VALIDATION_ROWS, rows_for(MAX_VALIDATION_BYTES, d))
        n_val = min(plan.n_validation(n), cap)
        val = allocate(n_val, sizes)
        init = allocate(min(INIT_ROWS, n - n_val),
                        [s - v for s, v in zip(sizes, val, strict=True)])
        taken = [v + i for v, i in zip(val, init, strict=True)]
        sample = np.concatenate(client.gather([
            client.submit(sample_rows, f, d, plan.dtype, plan.allow_nan, s, k, pure=False,
                          workers=[w], allow_other_workers=True)
            for f, s, k, w in zip(raw, seeds, taken, workers, strict=True)]))
        at = np.cumsum([0] + taken)
        is_val = np.zeros(len(sample), dtype=bool)
        for a, v in zip(at, val, strict=False):
            is_val[a:a + v] = True
        sample = check_fit_rows(np.concatenate([sample[is_val], sample[~is_val]]), plan)
        if scaler is None:
            scaler = plan.fit_scaler(sample)
        Z_val = scaler.transform(sample[:n_val]) if n_val else None
        # the training rows: one standardised block per worker, made where its blocks are
        groups: dict[str, list[int]] = defaultdict(list)
        for i, w in enumerate(workers):
            groups[w].append(i)
        held = sorted(groups.items())
        parts = [client.submit(standardized_shard, [raw[i] for i in idx], d, plan.dtype,
                               plan.allow_nan, [seeds[i] for i in idx], [taken[i] for i in idx],
                               [val[i] for i in idx], scaler, pure=False, workers=[w],
                               allow_other_workers=True)
                 for w, idx in held]
        del raw
        data = DaskData(client, parts,
                        [sum(sizes[i] - val[i] for i in idx) for _, idx in held],
                        [w for w, _ in held], d, mode=self.mode, sync_rows=self.sync_rows)

        def train_loglik(params: MixtureParams) -> float:
            total, count = data.loglik(params)
            return total / count

        def lower_bound(params: MixtureParams) -> float:
            # all rows in data units = standardised mean log-likelihood - log_det (eq. 33)
            total, count = data.loglik(params)
            if Z_val is not None:
                val_total, val_count = block_loglik([Z_val], params)
                total, count = total + val_total, count + val_count
            return total / count - scaler.log_det

        def all_em_stats(params: MixtureParams):
            stats = data.em_stats(params)
            return stats if Z_val is None else combine([stats, block_em_stats([Z_val], params)])

        return Prepared(
            n_features=d, scaler=scaler, train=data, val=Z_val, all_em_stats=all_em_stats,
            all_loglik=lambda params: lower_bound(params) + scaler.log_det,
            init_rows=impute_for_init(scaler.transform(sample[n_val:])),
            em_stats=data.em_stats, train_loglik=train_loglik, lower_bound=lower_bound,
            cheap_passes=True)

    def blocks(self, plan: FitPlan, sample_weight=None) -> Iterator[Source]:
        for block in consecutive_blocks(ArraySource(self.X), plan.allow_nan):
            yield MemorySource(block)

    def map_rows(self, name: str, model: Model):
        """A lazy Dask array: (n,) or (n, K), computed block by block on the workers."""
        check_width(self.n_features, model.n_features)
        fn, (width, dtype) = row_function(name, model), ROW_FUNCTIONS[name][1:]
        params = model.params
        dtype = np.dtype(dtype or params.dtype)
        if width is None:
            return self.X.map_blocks(block_function, fn, model.n_features, params,
                                     model.allow_nan, drop_axis=1, dtype=dtype,
                                     meta=np.empty(0, dtype=dtype))
        return self.X.map_blocks(block_function, fn, model.n_features, params, model.allow_nan,
                                 chunks=(self.X.chunks[0], (params.means.shape[0],)),
                                 dtype=dtype, meta=np.empty((0, 0), dtype=dtype))

    def loglik_sum(self, model: Model, sample_weight=None) -> tuple[float, float]:
        import dask

        lp = self.map_rows("score_samples", model)
        (total,) = dask.compute(lp.sum())
        return float(total), float(lp.shape[0])
