"""Scale benchmarks: out-of-core memory, streaming throughput, Dask step time.

    PYTHONPATH=src python benchmarks/bench_scale.py                 # everything (~10 min)
    PYTHONPATH=src python benchmarks/bench_scale.py --sizes 1e6 1e7 --skip dask

Three measurements, printed as tables (and saved as JSON with ``--json``):

1. **Peak RSS vs points on disk** (``rss``).  For each size a ``.npy`` file of ``n x 3``
   float64 rows from a 3-component mixture is written under ``--workdir``; then, each in
   a fresh child process whose peak RSS is read from ``os.wait4`` (the kernel's
   ``ru_maxrss`` of that child alone):

   * ``stream``: ``SGDGaussianMixture(3, batch_size=4096, max_epochs=1).fit(path)``,
     streaming with the default 64 MiB shuffle buffer and 1 MiB chunks (one scan pass,
     one training epoch, one pass for ``lower_bound_``);
   * ``sklearn-em``: ``np.load(path)`` (all in memory) and scikit-learn's
     ``GaussianMixture(3, covariance_type="diag", max_iter=3,
     init_params="random_from_data")``: three EM iterations only, to bound the time
     (its default k-means initialisation would add a k-means fit of all points);
   * ``baseline``: the imports alone (numpy, scikit-learn, mogsgd).

2. **Throughput** (``throughput``): rows per second of one training epoch (from
   ``history_["time"]``, so the scan and scoring passes are excluded) of the in-memory
   fit of an array versus the streaming fit of the same rows on disk, at two batch sizes;
   the fastest of ``--repeat`` runs.

3. **Dask step time** (``dask``): seconds per synchronous data-parallel SGD step on a
   ``LocalCluster`` of 2 single-threaded worker processes versus one process, at two batch
   sizes (one epoch each, from ``history_["time"]``, so including the epoch's reshuffle of
   every block on its worker; the fastest of ``--repeat`` runs).

The machine is shared, so timings are noisy (repeat and take the best if it matters);
memory figures are not.  Files are deleted at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve()
SRC = HERE.parents[1] / "src"

MEANS = np.array([[0.0, 0.0, 0.0], [5.0, 5.0, 0.0], [-5.0, 4.0, 3.0]])
SIGMAS = np.array([[1.0, 1.0, 1.0], [0.7, 1.2, 1.0], [1.5, 0.5, 1.0]])
WEIGHTS = np.array([0.5, 0.3, 0.2])


def make_rows(n: int, rng: np.random.Generator) -> np.ndarray:
    y = rng.choice(3, size=n, p=WEIGHTS)
    return MEANS[y] + rng.standard_normal((n, 3)) * SIGMAS[y]


def write_npy(path: Path, n: int, seed: int = 0, block: int = 1_000_000) -> None:
    """Write ``n x 3`` rows in blocks with plain writes (the writer never holds them all)."""
    rng = np.random.default_rng(seed)
    tmp = path.with_suffix(".partial")
    with open(tmp, "wb") as f:
        np.lib.format.write_array_header_1_0(
            f, {"descr": "<f8", "fortran_order": False, "shape": (n, 3)})
        for start in range(0, n, block):
            f.write(make_rows(min(block, n - start), rng).tobytes())
    os.replace(tmp, path)


# ---------------------------------------------------------------- children
def child(kind: str, path: str) -> dict:
    """Run one measured job in this (child) process and return what it reports."""
    warnings.simplefilter("ignore")
    import sklearn  # noqa: F401  (the baseline includes what the estimator imports)

    from mogsgd import SGDGaussianMixture

    t0 = time.perf_counter()
    if kind == "baseline":
        return {"seconds": 0.0}
    if kind == "stream":
        est = SGDGaussianMixture(3, batch_size=4096, max_epochs=1, random_state=0).fit(path)
        return {"seconds": time.perf_counter() - t0, "mean_loglik": est.lower_bound_,
                "epoch_seconds": est.history_["time"][0]}
    if kind == "sklearn-em":
        from sklearn.mixture import GaussianMixture

        X = np.load(path)
        t1 = time.perf_counter()
        gm = GaussianMixture(3, covariance_type="diag", max_iter=3, tol=0.0,
                             init_params="random_from_data", random_state=0).fit(X)
        return {"seconds": time.perf_counter() - t0, "load_seconds": t1 - t0,
                "mean_loglik": float(gm.lower_bound_)}
    raise ValueError(kind)


def measure(kind: str, path: Path) -> dict:
    """Peak RSS (MB) and the report of one child process."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(SRC), os.environ.get("PYTHONPATH")) if p)}
    proc = subprocess.Popen([sys.executable, str(HERE), "--child", kind, str(path)],
                            stdout=subprocess.PIPE, env=env)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise RuntimeError(f"child {kind} {path} failed with {proc.returncode}")
    report = json.loads(out.decode().strip().splitlines()[-1])
    report["peak_rss_mb"] = usage.ru_maxrss / 1024   # Linux reports KiB
    return report


# ---------------------------------------------------------------- sections
def bench_rss(sizes, workdir: Path, skip_sklearn: bool) -> list[dict]:
    rows = [{"kind": "baseline", "n": 0, **measure("baseline", workdir)}]
    print(f"baseline (imports only): peak RSS {rows[0]['peak_rss_mb']:.0f} MB", flush=True)
    for n in sizes:
        path = workdir / f"x_{n}.npy"
        if not path.exists():
            t = time.perf_counter()
            write_npy(path, n)
            print(f"wrote {path} ({path.stat().st_size / 1e9:.2f} GB) in "
                  f"{time.perf_counter() - t:.0f} s", flush=True)
        kinds = ["stream"] + ([] if skip_sklearn else ["sklearn-em"])
        for kind in kinds:
            r = {"kind": kind, "n": n, "file_mb": path.stat().st_size / 2**20,
                 **measure(kind, path)}
            rows.append(r)
            print(f"{kind:>10}  n={n:>11,}  peak RSS {r['peak_rss_mb']:8.0f} MB  "
                  f"{r['seconds']:7.1f} s", flush=True)
    return rows


def epoch_rate(est, n_train: int) -> float:
    return n_train / est.history_["time"][0]


def best_of(repeat: int, run):
    """The run with the shortest first epoch of ``repeat`` (the machine is shared)."""
    runs = [run() for _ in range(repeat)]
    return min(runs, key=lambda r: r[0].history_["time"][0])


def bench_throughput(n: int, workdir: Path, batch_sizes, repeat: int = 1) -> list[dict]:
    from mogsgd import SGDGaussianMixture

    path = workdir / f"x_{n}.npy"
    if not path.exists():
        write_npy(path, n)
    X = np.load(path)
    rows = []
    for b in batch_sizes:
        kw = {"batch_size": b, "max_epochs": 1, "early_stopping": False, "random_state": 0}
        for mode in ("in-memory", "stream"):
            def run(mode=mode, kw=kw):
                t = time.perf_counter()
                est = SGDGaussianMixture(3, **kw).fit(X if mode == "in-memory" else path)
                return est, time.perf_counter() - t

            est, total = best_of(repeat, run)
            r = {"mode": mode, "n": n, "batch_size": b, "rows_per_s": epoch_rate(est, n),
                 "epoch_seconds": est.history_["time"][0], "fit_seconds": total}
            rows.append(r)
            print(f"{mode:>10}  batch {b:>6}  {r['rows_per_s'] / 1e6:6.2f} M rows/s  "
                  f"(epoch {r['epoch_seconds']:.1f} s, fit {total:.1f} s)", flush=True)
    return rows


def bench_dask(n: int, batch_sizes, n_workers: int = 2, repeat: int = 1) -> list[dict]:
    import dask.array as da
    from distributed import Client, LocalCluster

    from mogsgd import SGDGaussianMixture

    X = make_rows(n, np.random.default_rng(1))
    rows = []
    env = {"PYTHONPATH": os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH"))
                                         if p), "OMP_NUM_THREADS": "1"}
    with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                      dashboard_address=None, env=env) as cluster, Client(cluster):
        Xd = da.from_array(X, chunks=(-(-n // n_workers), 3)).persist()
        for b in batch_sizes:
            kw = {"batch_size": b, "max_epochs": 1, "early_stopping": False,
                  "random_state": 0}
            steps = -(-n // b)
            for mode in ("single process", f"dask {n_workers} workers"):
                data = X if mode == "single process" else Xd
                est = best_of(repeat, lambda kw=kw, data=data: (
                    SGDGaussianMixture(3, **kw).fit(data), None))[0]
                per_step = est.history_["time"][0] / steps
                rows.append({"mode": mode, "n": n, "batch_size": b, "steps": steps,
                             "seconds_per_step": per_step})
                print(f"{mode:>16}  batch {b:>6}  {per_step * 1e3:8.2f} ms/step  "
                      f"({steps} steps)", flush=True)
    return rows


def table(rows, cols) -> str:
    head = "| " + " | ".join(c for c, _ in cols) + " |"
    rule = "|" + "|".join("---" for _ in cols) + "|"
    body = ["| " + " | ".join(fmt(r) for _, fmt in cols) + " |" for r in rows]
    return "\n".join([head, rule, *body])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--sizes", nargs="+", type=float, default=[1e6, 1e7, 5e7])
    ap.add_argument("--skip", nargs="*", default=[],
                    choices=["rss", "sklearn", "throughput", "dask"])
    ap.add_argument("--throughput-n", type=float, default=1e7)
    ap.add_argument("--dask-n", type=float, default=1e6)
    ap.add_argument("--repeat", type=int, default=3,
                    help="repeat each throughput / Dask timing and keep the fastest")
    ap.add_argument("--workdir", default="/tmp/mogsgd-bench")
    ap.add_argument("--keep", action="store_true", help="keep the data files")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(*args.child)))
        return 0
    warnings.simplefilter("ignore")
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    results = {"machine": {"cpu": _cpu(), "cores": os.cpu_count(),
                           "python": platform.python_version(), "numpy": np.__version__}}
    try:
        if "rss" not in args.skip:
            print("== peak RSS vs points on disk ==", flush=True)
            results["rss"] = bench_rss([int(s) for s in args.sizes], workdir,
                                       "sklearn" in args.skip)
        if "throughput" not in args.skip:
            print("== training throughput: in memory vs streamed ==", flush=True)
            results["throughput"] = bench_throughput(int(args.throughput_n), workdir,
                                                     (256, 4096), args.repeat)
        if "dask" not in args.skip:
            print("== Dask LocalCluster vs single process: time per step ==", flush=True)
            results["dask"] = bench_dask(int(args.dask_n), (1024, 65536),
                                         repeat=args.repeat)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print()
    if "rss" in results:
        print(table(results["rss"], [
            ("method", lambda r: r["kind"]), ("points", lambda r: f"{r['n']:,}"),
            ("peak RSS (MB)", lambda r: f"{r['peak_rss_mb']:.0f}"),
            ("wall time (s)", lambda r: f"{r['seconds']:.1f}")]))
        print()
    if "throughput" in results:
        print(table(results["throughput"], [
            ("mode", lambda r: r["mode"]), ("batch", lambda r: str(r["batch_size"])),
            ("rows/s (epoch)", lambda r: f"{r['rows_per_s'] / 1e6:.2f} M"),
            ("epoch (s)", lambda r: f"{r['epoch_seconds']:.1f}"),
            ("whole fit (s)", lambda r: f"{r['fit_seconds']:.1f}")]))
        print()
    if "dask" in results:
        print(table(results["dask"], [
            ("mode", lambda r: r["mode"]), ("batch", lambda r: str(r["batch_size"])),
            ("ms / step", lambda r: f"{r['seconds_per_step'] * 1e3:.2f}")]))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


def _cpu() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    sys.exit(main())
