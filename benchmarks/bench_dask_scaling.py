"""Dask scaling: local SGD versus synchronous SGD versus one process, with a cost model.

    PYTHONPATH=src python benchmarks/bench_dask_scaling.py [--rows 2e6] [--out SCALE-dask.md]

Measured in one run on this machine:

1. **One process**: the default ``SGDGaussianMixture(3).fit(X)`` of ``--rows`` rows (wall
   time, held-out log-likelihood on 200k fresh rows) and the compiled training throughput
   (rows per second of one epoch, from ``history_["time"]``).
2. **Dask, local SGD (the default)** on a ``LocalCluster`` of 2 single-threaded worker
   processes: the default fit (wall time from ``fit`` call to return, cluster already
   running, held-out log-likelihood), timed in ``--pairs`` pairs with the one-process
   default fit right before it (the load of a shared machine drifts: a pair sees about
   the same load; the median ratio is the figure) and the training throughput (fastest of
   3 epochs at the default batch: the default fit grows its batch before its EM
   refinement); and with 4 thread workers in one process (threads stand in for machines;
   they share the 2 cores here).
3. **Dask, synchronous SGD** (``mode="sync"``), 2 processes: training throughput at batch
   1024 (one epoch).
4. The cost model's inputs, each measured on its own, outside the fits it predicts:

   * ``c``, compute per row of a local round: :func:`~mogsgd.solvers.local_sgd.local_round`
     over a whole shard, timed *inside* a task on every worker at once (the workers share
     the machine's memory bandwidth and caches as they do in a fit), slowest worker;
   * ``L``, the median round trip of one task per worker on data already there (submit + gather of
     a no-op), and ``L_run``, the same through ``client.run`` (what synchronous SGD, local
     SGD's rounds and EM's passes use while a call's rows are bounded,
     :data:`mogsgd.distributed.RUN_CELLS`);
   * ``g``, the driver's cost of averaging one worker's state, and ``V``, its cost of
     scoring the validation rows once per epoch;
   * ``s(b)``, one optimiser step on ``b`` rows in one process (gradient sums + update):
     the compute of a synchronous step whose ``B`` rows are split over the workers;
   * the bytes one synchronisation moves (pickled parameters and Adam state).

Cost model (per epoch of ``n`` rows on ``P`` workers, each holding ``n / P`` rows):

* local SGD, ``R = sync_rows`` rows per worker per round (``k`` rounds per epoch): an epoch
  costs ``k (R c + L_run + P g) + V``, so ``rows/s = P k R / (k (R c + L_run + P g) + V)``
  (``L`` in place of ``L_run`` for rounds above ``RUN_CELLS`` values, sent as tasks);
* synchronous SGD, batch ``B``: a step costs ``s(B / P) + L_run + P g``, so
  ``rows/s = B / (s(B / P) + L_run + P g)``.

The predictions for 8, 64 and 512 workers use the inputs measured here with a network
latency of 1 ms per round trip (a data-centre network plus the scheduler) in place of
the round trip, and 10 Gbit/s (the bytes per synchronisation are negligible at that
bandwidth); they are written next to the 2-worker measurements they are checked against.
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


def round_trip(client, futures, workers, repeat: int = 50) -> tuple[float, float]:
    """Seconds for one task per worker on data already there, submitted and gathered; and
    for one ``client.run`` message to every worker (no task bookkeeping).  Medians: a
    training epoch pays the typical round trip many times, not the luckiest one."""
    tasks, runs = [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        client.gather([client.submit(_noop, f, pure=False, workers=[w])
                       for f, w in zip(futures, workers, strict=True)])
        tasks.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        client.run(_noop, 0, workers=workers)
        runs.append(time.perf_counter() - t0)
    return float(np.median(tasks)), float(np.median(runs))


def _timed_round(X_shard, params, opt_state, config, seed):
    """On a worker: the seconds one local round over its whole shard takes there, the next
    round's order drawn in the background meanwhile as in a fit."""
    from mogsgd.solvers.local_sgd import local_round

    t0 = time.perf_counter()
    local_round(X_shard, params, opt_state, config, len(X_shard), 0, len(X_shard), seed,
                seed + 1)
    return time.perf_counter() - t0


def round_cost(client, shards, workers, params, opt_state, config, repeat: int = 6) -> float:
    """Seconds of one local-SGD round over a whole shard -- the compiled steps, and the
    wait for the order where its background draw (during the previous round, as in a fit)
    has not finished -- timed inside a task on every worker at once; the slowest worker
    of the fastest repetition (a round waits for its slowest worker)."""
    best = np.inf
    for seed in range(repeat):
        futures = [client.submit(_timed_round, f, params, opt_state, config, seed, pure=False,
                                 workers=[w]) for f, w in zip(shards, workers, strict=True)]
        times = client.gather(futures)
        if seed:   # the first one drew its own order
            best = min(best, max(times))
    return best


def step_cost(X, stepper, params, opt_state, repeat: int = 200) -> float:
    """Seconds of one optimiser step on the rows ``X`` in this process (gradient sums of
    the rows and the update)."""
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        stepper.step(params, opt_state, X, None)
        best = min(best, time.perf_counter() - t0)
    return best


def validation_cost(X_val, params, repeat: int = 20) -> float:
    """Seconds the driver spends scoring the validation rows once (once per epoch)."""
    from mogsgd import fast

    nll_fn = fast.kernels_for("auto")[1]
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        nll_fn(X_val, params, None)
        best = min(best, time.perf_counter() - t0)
    return best


def averaging_cost(params, opt_state, workers: int, repeat: int = 200) -> float:
    """Seconds the driver spends averaging ``workers`` states (:func:`average_states`)."""
    from mogsgd.solvers.local_sgd import average_states

    rows = np.ones(workers)
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        average_states([params] * workers, [opt_state] * workers, rows)
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv=None) -> int:
    import dask.array as da
    import distributed

    from mogsgd.data.dask import DaskSource
    from mogsgd.distributed import RUN_CELLS
    from mogsgd.train import TrainConfig

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=float, default=2e6)
    parser.add_argument("--sync-rows", type=int, default=1 << 20)
    parser.add_argument("--pairs", type=int, default=3,
                        help="one-process and Dask default fits timed back to back")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    n = int(args.rows)
    X, X_test = make_rows(n, 0), make_rows(200_000, 1)
    chunks = (max(1, n // 8), 3)
    rows = []

    def row(what, figure, note=""):
        rows.append((what, figure, note))
        print(f"{what}: {figure} {note}", flush=True)

    # warm-up: compile (or load the cache) before anything is timed
    timed_fit(lambda: SGDGaussianMixture(3, random_state=0, max_epochs=2), X[:20_000])
    # 1. one process
    mem, t_mem = timed_fit(lambda: SGDGaussianMixture(3, random_state=0), X)
    ll_mem = mem.score(X_test)
    rate_mem = epoch_rate(mem, int(0.9 * n))
    row("one process: default fit", f"{t_mem:.2f} s, held-out LL {ll_mem:.4f}",
        f"({mem.n_iter_} epochs, refinement {mem.refine_iter_} EM steps)")
    row("one process: training throughput", f"{rate_mem / 1e6:.2f} M rows/s",
        "(fastest epoch of the default fit, grown batch, validation scoring included)")

    # the cost model's inputs measured in this process (those on the cluster below)
    P, b = 2, 1024
    n_local = int(0.9 * n) // P
    rounds = max(1, -(-n_local // args.sync_rows))
    R = n_local // rounds
    scaled = (X - X.mean(0)) / X.std(0)
    shards = [np.ascontiguousarray(scaled[i * n_local:i * n_local + R]) for i in range(P)]
    params, opt_state = mem._state.params, mem._state.opt_state  # noqa: SLF001 - the model's inputs
    config = TrainConfig()
    g = averaging_cost(params, opt_state, P) / P
    n_val = min(100_000, n - int(0.9 * n))
    V = validation_cost(np.ascontiguousarray(scaled[-n_val:]), params)
    from mogsgd import fast
    from mogsgd.train import make_stepper

    stepper = make_stepper(config, n_local, fast.kernels_for("auto")[0])
    r_hi, r_lo = b // P, 2
    s_hi, s_lo = (step_cost(np.ascontiguousarray(scaled[:r]), stepper, params,
                            stepper.init(params)) for r in (r_hi, r_lo))
    nbytes = len(pickle.dumps((params, opt_state, config, n_local)))
    row("cost model: driver averaging per worker, g", f"{g * 1e6:.1f} us")
    row("cost model: driver scoring the validation rows once per epoch, V",
        f"{V * 1e3:.2f} ms", f"({n_val} rows)")
    row(f"cost model: one optimiser step in one process on {r_hi} rows, s({r_hi}), and on "
        f"{r_lo}, s({r_lo})", f"{s_hi * 1e6:.1f} us, {s_lo * 1e6:.1f} us")
    row("cost model: bytes per synchronisation and worker (task arguments)",
        f"{nbytes} B out, about the same back")

    results = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                           dashboard_address=None)
        client = distributed.Client(cluster)
    try:
        Xd = da.from_array(X, chunks=chunks)
        # warm the workers' compiled kernels
        timed_fit(lambda: SGDGaussianMixture(3, random_state=0, max_epochs=1, refine="none"),
                  DaskSource(da.from_array(X[:40_000], chunks=(10_000, 3)), client,
                             sync_rows=args.sync_rows))
        # the model's inputs on the cluster, then the throughputs they predict right after
        # (the load of a shared machine drifts within a minute)
        futures = client.scatter([np.zeros(1)] * 2, broadcast=False)
        workers = sorted(client.scheduler_info()["workers"])
        L, L_run = round_trip(client, futures, workers)
        row("cost model: round trip, one task per worker (2 processes), L", f"{L * 1e3:.2f} ms")
        row("cost model: round trip, one client.run message to every worker, L_run",
            f"{L_run * 1e3:.2f} ms")
        shard_futures = [client.scatter(x, workers=[w]) for x, w in
                         zip(shards, workers, strict=True)]
        c = round_cost(client, shard_futures, workers, params, opt_state, config) / R
        del shard_futures
        row("cost model: compute per row of a round on each worker, c "
            "(permutation + compiled steps, all workers at once)",
            f"{c * 1e9:.1f} ns", f"(one round = {R} rows per worker, {rounds} per epoch)")
        # 2. local SGD: the throughput the model predicts, epochs at the fixed default batch
        # (the default fit stops sooner), validation scored per epoch
        fixed, _ = timed_fit(lambda: SGDGaussianMixture(3, random_state=0, max_epochs=3,
                                                        refine="none"),
                             DaskSource(Xd, client, sync_rows=args.sync_rows))
        rate_local = epoch_rate(fixed, int(0.9 * n))
        results["local"] = rate_local
        row("Dask 2 processes, local SGD: training throughput",
            f"{rate_local / 1e6:.2f} M rows/s", "(fastest of 3 epochs at batch 256, "
            "validation scoring included)")
        # 3. synchronous SGD, one epoch at batch 1024
        sync, _ = timed_fit(lambda: SGDGaussianMixture(3, random_state=0, max_epochs=1,
                                                       batch_size=1024, refine="none"),
                            DaskSource(Xd, client, mode="sync"))
        rate_sync = epoch_rate(sync, int(0.9 * n))
        row("Dask 2 processes, synchronous SGD (batch 1024): training throughput",
            f"{rate_sync / 1e6:.3f} M rows/s")
        # the default fits: pairs of fits, one process then Dask, back to back (the
        # load of a shared machine drifts within a minute; each pair sees about the same)
        ratios = []
        for i in range(args.pairs):
            _, t_one = timed_fit(lambda: SGDGaussianMixture(3, random_state=0), X)
            local, t_local = timed_fit(lambda: SGDGaussianMixture(3, random_state=0),
                                       DaskSource(Xd, client, sync_rows=args.sync_rows))
            ll_local = local.score(X_test)
            ratios.append(t_local / t_one)
            row(f"pair {i + 1}: default fit, one process / Dask 2 processes (local SGD)",
                f"{t_one:.2f} s / {t_local:.2f} s: {ratios[-1]:.2f}x",
                f"(Dask: {local.n_iter_} epochs, refinement {local.refine_iter_} EM steps, "
                f"held-out LL {ll_local:.4f}, gap to one process {ll_local - ll_mem:+.4f})")
        row("Dask default fit / one-process default fit, median of the pairs",
            f"{float(np.median(ratios)):.2f}x", f"(goal: at most 1.5x; {args.pairs} pairs)")
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
                f"{epoch_rate(est4, int(0.9 * n)) / 1e6:.2f} M rows/s")

    # the cost model: nothing fitted to the 2-worker runs; c, g, V, s, L measured above
    L_local = L_run if R * X.shape[1] <= RUN_CELLS else L   # how a round is sent

    def local_rate(p, latency):
        return p * rounds * R / (rounds * (R * c + latency + p * g) + V)

    def step(rows):   # s(rows), linear between the two measured step sizes
        return s_lo + (rows - r_lo) * (s_hi - s_lo) / (r_hi - r_lo)

    def sync_rate(p, latency):
        return b / (step(b / p) + latency + p * g)

    pred_local_2, pred_sync_2 = local_rate(P, L_local), sync_rate(P, L_run)
    row("cost model check, 2 workers, local SGD",
        f"predicted {pred_local_2 / 1e6:.2f} vs measured {rate_local / 1e6:.2f} M rows/s",
        f"({(pred_local_2 / rate_local - 1) * 100:+.0f}%)")
    row("cost model check, 2 workers, synchronous SGD",
        f"predicted {pred_sync_2 / 1e6:.3f} vs measured {rate_sync / 1e6:.3f} M rows/s",
        f"({(pred_sync_2 / rate_sync - 1) * 100:+.0f}%)")
    net_L = 1e-3
    table = ["| workers | local SGD, predicted rows/s | synchronous SGD (batch 1024), "
             "predicted rows/s |", "|---|---|---|"]
    for p in (2, 8, 64, 512):
        table.append(f"| {p} | {local_rate(p, net_L) / 1e6:.1f} M | "
                     f"{sync_rate(p, net_L) / 1e6:.3f} M |")
    text = ["# Dask scaling: local SGD vs synchronous SGD (measured, then modelled)", "",
            f"`python benchmarks/bench_dask_scaling.py --rows {args.rows:g}` "
            f"(sync_rows {args.sync_rows}), {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
            "; 2-core shared machine.", "", "| measurement | figure | note |", "|---|---|---|"]
    text += [f"| {w} | {f} | {note} |" for w, f, note in rows]
    text += ["", "Model (inputs measured above, nothing fitted to the runs it predicts): local "
             f"SGD `rows/s = P k R / (k (R c + L' + P g) + V)` with L' = "
             f"{'L_run' if L_local == L_run else 'L'} (how a round is sent), R = {R} rows per "
             f"worker and round, k = {rounds} rounds per epoch; synchronous SGD `rows/s = B / "
             f"(s(B/P) + L_run + P g)` at B = {b}, with `s(r)` linear in r between the "
             f"measured s({r_lo}) and s({r_hi}). c = {c * 1e9:.1f} ns/row, "
             f"g = {g * 1e6:.1f} us per worker, V = {V * 1e3:.2f} ms. Predictions for larger "
             "clusters with a 1 ms "
             f"network round trip in place of L' and L_run (the {nbytes} B per "
             "synchronisation take microseconds at 10 Gbit/s):", ""] + table
    out = "\n".join(text) + "\n"
    print(out)
    if args.out is not None:
        args.out.write_text(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
