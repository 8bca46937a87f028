"""Dask scaling: local SGD versus synchronous SGD versus one process, with a cost model.

    PYTHONPATH=src python benchmarks/bench_dask_scaling.py [--rows 2e6] [--out SCALE-dask.md]

Measured in one run on this machine:

1. **One process**: the default ``SGDGaussianMixture(3).fit(X)`` of ``--rows`` rows (wall
   time, held-out log-likelihood on 200k fresh rows) and the compiled training throughput
   (rows per second of one epoch, from ``history_["time"]``) -- the per-row compute cost
   ``c`` of the cost model.
2. **Dask, local SGD (the default)** on a ``LocalCluster`` of 2 single-threaded worker
   processes: the default fit (wall time from ``fit`` call to return, cluster already
   running, held-out log-likelihood) and the training throughput; and with 4 thread workers
   in one process (threads stand in for machines; they share the 2 cores here).
3. **Dask, synchronous SGD** (``mode="sync"``), 2 processes: training throughput at batch
   1024 (one epoch).
4. The round-trip latency ``L`` of one task per worker (submit + gather of a no-op on data
   already there) and the bytes one synchronisation moves (pickled parameters and Adam
   state).

Cost model (per epoch of ``n`` rows on ``P`` workers, each holding ``n / P`` rows):

* local SGD, ``R = sync_rows`` rows per worker per round: a round costs ``R c + L + P g``
  (``g``: the driver's per-worker cost of gathering and averaging one state), so
  ``rows/s = P R / (R c + L + P g)``;
* synchronous SGD, batch ``B``: a step costs ``B c / P + L_step + P g_step``, so
  ``rows/s = B / (B c / P + L_step + P g_step)``.

The predictions for 8, 64 and 512 workers use ``c`` measured here, and a network latency of
1 ms per round trip (a data-centre network plus the scheduler) and 10 Gbit/s (the bytes per
synchronisation are negligible at that bandwidth); they are written next to the 2-worker
measurement they are calibrated against.
"""

from __future__ import annotations

import argparse
import pickle
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parents[1] / "src"))

from mogsgd import SGDGaussianMixture  # noqa: E402

MEANS = np.array([[0.0, 0.0, 0.0], [3.0, 3.0, 0.0], [-3.0, 2.0, 2.0]])
SIGMAS = np.array([[1.0, 1.0, 1.0], [0.7, 1.2, 1.0], [1.5, 0.5, 1.0]])
WEIGHTS = np.array([0.5, 0.3, 0.2])


def make_rows(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y = rng.choice(3, size=n, p=WEIGHTS)
    return MEANS[y] + rng.standard_normal((n, 3)) * SIGMAS[y]


def epoch_rate(est, n_train: int) -> float:
    """Rows per second of the fastest training epoch (history times are cumulative)."""
    times = np.diff([0.0] + list(est.history_["time"]))
    return n_train / float(np.min(times))


def timed_fit(make, X):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        est = make().fit(X)
        return est, time.perf_counter() - t0


def _noop(x):
    return 0


def round_trip(client, futures, workers, repeat: int = 30) -> float:
    """Seconds for one task per worker on data already there, submitted and gathered."""
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        client.gather([client.submit(_noop, f, pure=False, workers=[w])
                       for f, w in zip(futures, workers, strict=True)])
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv=None) -> int:
    import dask.array as da
    import distributed

    from mogsgd.data.dask import DaskSource

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=float, default=2e6)
    parser.add_argument("--sync-rows", type=int, default=1 << 20)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    n = int(args.rows)
    X, X_test = make_rows(n, 0), make_rows(200_000, 1)
    chunks = (max(1, n // 8), 3)
    rows = []

    def row(what, figure, note=""):
        rows.append((what, figure, note))
        print(f"{what}: {figure} {note}", flush=True)

    # 1. one process
    mem, t_mem = timed_fit(lambda: SGDGaussianMixture(3, random_state=0), X)
    ll_mem = mem.score(X_test)
    rate_mem = epoch_rate(mem, int(0.9 * n))
    c = 1.0 / rate_mem
    row("one process: default fit", f"{t_mem:.2f} s, held-out LL {ll_mem:.4f}",
        f"({mem.n_iter_} epochs, refinement {mem.refine_iter_} EM steps)")
    row("one process: training throughput", f"{rate_mem / 1e6:.2f} M rows/s",
        f"(c = {c * 1e9:.1f} ns per row)")

    results = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                           dashboard_address=None)
        client = distributed.Client(cluster)
    try:
        Xd = da.from_array(X, chunks=chunks)
        # 2. local SGD, the default
        local, t_local = timed_fit(lambda: SGDGaussianMixture(3, random_state=0),
                                   DaskSource(Xd, client, sync_rows=args.sync_rows))
        ll_local = local.score(X_test)
        rate_local = epoch_rate(local, int(0.9 * n))
        results["local"] = rate_local
        row("Dask 2 processes, local SGD: default fit",
            f"{t_local:.2f} s, held-out LL {ll_local:.4f}",
            f"({local.n_iter_} epochs; {t_local / t_mem:.2f}x the one-process time; "
            f"LL gap {ll_local - ll_mem:+.4f})")
        row("Dask 2 processes, local SGD: training throughput",
            f"{rate_local / 1e6:.2f} M rows/s")
        # 3. synchronous SGD, one epoch at batch 1024
        sync, _ = timed_fit(lambda: SGDGaussianMixture(3, random_state=0, max_epochs=1,
                                                       batch_size=1024, refine="none"),
                            DaskSource(Xd, client, mode="sync"))
        rate_sync = epoch_rate(sync, int(0.9 * n))
        row("Dask 2 processes, synchronous SGD (batch 1024): training throughput",
            f"{rate_sync / 1e6:.3f} M rows/s")
        # 4. latency and bytes
        futures = client.scatter([np.zeros(1)] * 2, broadcast=False)
        workers = sorted(client.scheduler_info()["workers"])
        L = round_trip(client, futures, workers)
        state = (mem.params_, mem._state.opt_state)  # noqa: SLF001 - its size, for the model
        nbytes = len(pickle.dumps(state))
        row("round trip, one task per worker (2 processes)", f"{L * 1e3:.2f} ms")
        row("bytes per synchronisation and worker (parameters + Adam state)",
            f"{nbytes} B each way")
    finally:
        client.close()
        cluster.close()
    # 4 thread workers in one process
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with distributed.LocalCluster(n_workers=4, threads_per_worker=1, processes=False,
                                      dashboard_address=None) as lc, \
                distributed.Client(lc) as client4:
            est4, t4 = timed_fit(lambda: SGDGaussianMixture(3, random_state=0, max_epochs=2,
                                                            early_stopping=False,
                                                            refine="none"),
                                 DaskSource(da.from_array(X, chunks=chunks), client4,
                                            sync_rows=args.sync_rows))
            row("Dask 4 thread workers (sharing 2 cores), local SGD: training throughput",
                f"{epoch_rate(est4, n) / 1e6:.2f} M rows/s")

    # the cost model, calibrated on the 2-worker local-SGD round
    R, P = args.sync_rows, 2
    round_measured = P * R / rate_local
    g = max(0.0, (round_measured - R * c - L) / P)
    pred_local_2 = P * R / (R * c + L + P * g)
    b = 1024
    step_measured = b / rate_sync
    g_step = max(0.0, (step_measured - b * c / P - L) / P)
    pred_sync_2 = b / (b * c / P + L + P * g_step)
    row("cost model: per-worker driver cost g (local round) / g_step (sync step)",
        f"{g * 1e3:.3f} ms / {g_step * 1e3:.3f} ms", "(from the 2-worker measurements)")
    # prediction for 2 workers from the one-process c and the measured latency alone
    pred0 = P * R / (R * c + L)
    row("cost model check, 2 workers local SGD (c and L only, no fitted g)",
        f"predicted {pred0 / 1e6:.2f} vs measured {rate_local / 1e6:.2f} M rows/s",
        f"({(pred0 / rate_local - 1) * 100:+.0f}%)")
    net_L = 1e-3
    table = ["| workers | local SGD, predicted rows/s | synchronous SGD (batch 1024), "
             "predicted rows/s |", "|---|---|---|"]
    for p in (2, 8, 64, 512):
        loc = p * R / (R * c + net_L + p * g)
        syn = b / (b * c / p + net_L + p * g_step)
        table.append(f"| {p} | {loc / 1e6:.1f} M | {syn / 1e6:.3f} M |")
    text = ["# Dask scaling: local SGD vs synchronous SGD (measured, then modelled)", "",
            f"`PYTHONPATH=src python benchmarks/bench_dask_scaling.py --rows {args.rows:g}` "
            f"(sync_rows {R}), {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
            "2-core shared machine.", "", "| measurement | figure | note |", "|---|---|---|"]
    text += [f"| {w} | {f} | {note} |" for w, f, note in rows]
    text += ["", f"Predictions with c = {c * 1e9:.1f} ns/row (measured above), a 1 ms network "
             f"round trip, g = {g * 1e3:.3f} ms and g_step = {g_step * 1e3:.3f} ms per worker "
             f"(calibrated above; model at 2 workers: local {pred_local_2 / 1e6:.2f}, sync "
             f"{pred_sync_2 / 1e6:.3f} M rows/s):", ""] + table
    out = "\n".join(text) + "\n"
    print(out)
    if args.out is not None:
        args.out.write_text(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
