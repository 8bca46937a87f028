"""Dask arrays on a ``dask.distributed`` cluster: rows stay on the workers.

:meth:`DaskSource.prepare` computes each row block once into its worker's memory, shuffles
and validates it there, gathers a random sample to the driver (the held-out validation rows
and the initialisation rows, from which the standardiser is fitted) and standardises the
training rows on the workers.  The training loop then runs synchronous data-parallel SGD
through :class:`mogsgd.distributed.DaskData` (gradient sums map-reduced per step) and EM
map-reduces its statistics once per iteration.  Inference returns lazy Dask arrays
computed block by block (``map_blocks``).  Without a client a Dask array is streamed
through this process instead (:class:`mogsgd.data.chunked.ChunkedSource`).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from mogsgd.covariance.ops import combine, em_stats, log_prob
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
    block_function,
    persist_blocks,
    shuffle_block,
    standardized_rows,
    take_rows,
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
        seeds = rng.integers(0, 2**63 - 1, size=len(raw))
        shuffled = [client.submit(shuffle_block, f, d, plan.dtype, plan.allow_nan, int(s),
                                  pure=False, workers=[w], allow_other_workers=True)
                    for f, s, w in zip(raw, seeds, workers, strict=True)]
        del raw
        # a random sample: the first rows of every shuffled block, in proportion to its size
        cap = min(MAX_VALIDATION_ROWS, rows_for(MAX_VALIDATION_BYTES, d))
        n_val = min(plan.n_validation(n), cap)
        val = allocate(n_val, sizes)
        init = allocate(min(INIT_ROWS, n - n_val),
                        [s - v for s, v in zip(sizes, val, strict=True)])
        sample = np.concatenate(client.gather([
            client.submit(take_rows, f, 0, v + i, pure=False, workers=[w],
                          allow_other_workers=True)
            for f, v, i, w in zip(shuffled, val, init, workers, strict=True)]))
        at = np.cumsum([0] + [v + i for v, i in zip(val, init, strict=True)])
        is_val = np.zeros(len(sample), dtype=bool)
        for a, v in zip(at, val, strict=False):
            is_val[a:a + v] = True
        sample = check_fit_rows(np.concatenate([sample[is_val], sample[~is_val]]), plan)
        if scaler is None:
            scaler = plan.fit_scaler(sample)
        Z_val = scaler.transform(sample[:n_val]) if n_val else None
        parts = [client.submit(standardized_rows, f, v, scaler, pure=False, workers=[w],
                               allow_other_workers=True)
                 for f, v, w in zip(shuffled, val, workers, strict=True)]
        del shuffled
        data = DaskData(client, parts, [s - v for s, v in zip(sizes, val, strict=True)],
                        workers, d, mode=self.mode, sync_rows=self.sync_rows)

        def train_loglik(params: MixtureParams) -> float:
            total, count = data.loglik(params)
            return total / count

        def lower_bound(params: MixtureParams) -> float:
            # all rows in data units = standardised mean log-likelihood - log_det (eq. 33)
            total, count = data.loglik(params)
            if Z_val is not None:
                total += float(log_prob(Z_val, params).sum())
                count += len(Z_val)
            return total / count - scaler.log_det

        def all_em_stats(params: MixtureParams):
            stats = data.em_stats(params)
            return stats if Z_val is None else combine([stats, em_stats(Z_val, params)])

        return Prepared(
            n_features=d, scaler=scaler, train=data, val=Z_val, all_em_stats=all_em_stats,
            all_loglik=lambda params: lower_bound(params) + scaler.log_det,
            init_rows=impute_for_init(scaler.transform(sample[n_val:])),
            em_stats=data.em_stats, train_loglik=train_loglik, lower_bound=lower_bound)

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
