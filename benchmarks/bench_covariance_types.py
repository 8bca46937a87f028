"""What each covariance type costs: one gradient pass and a default fit, same run.

    PYTHONPATH=src python benchmarks/bench_covariance_types.py [--n 20000] [--d 8] [--k 4]

On correlated data (``make_mixture(..., covariance_type="full")``) it times, per
``covariance_type``: one pass of the analytic gradient over all rows (the compiled kernels of
``mogsgd.fast``; least CPU time of several runs), the default ``SGDGaussianMixture`` fit
(wall time, one run), and reports the held-out log-likelihood per point beside scikit-learn's
``GaussianMixture(covariance_type=..., n_init=1)`` fitted on the same rows.  Only ratios
within one run mean anything on a shared machine; run with ``NUMBA_NUM_THREADS=1
OMP_NUM_THREADS=1`` to compare single-threaded kernels.
"""

from __future__ import annotations

import argparse
import time
import warnings

from sklearn.mixture import GaussianMixture

from mogsgd import SGDGaussianMixture, fast, make_mixture
from mogsgd.covariance import COVARIANCE_TYPES


def best_cpu_seconds(fn, repeats: int = 5) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--d", type=int, default=8)
    parser.add_argument("--k", type=int, default=4)
    args = parser.parse_args()
    X, _, _ = make_mixture(args.n + args.n // 4, args.d, args.k, separation=2.0,
                           random_state=0, covariance_type="full")
    train, test = X[:args.n], X[args.n:]
    print(f"n={args.n} (+{len(test)} held out), D={args.d}, K={args.k}, correlated data")
    print("| covariance_type | gradient pass ms | vs diag | default fit s | held-out LL "
          "| scikit-learn held-out LL | scikit-learn fit s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in COVARIANCE_TYPES:   # warm-up: compiled kernels load once per process
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est = SGDGaussianMixture(args.k, covariance_type=name, max_epochs=2,
                                     random_state=0).fit(train[:2000])
        fast.nll_grad_sums(train, est.params_)
    base = None
    for name in ("diag", *[t for t in COVARIANCE_TYPES if t != "diag"]):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            est = SGDGaussianMixture(args.k, covariance_type=name, random_state=0).fit(train)
            fit_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            ref = GaussianMixture(args.k, covariance_type=name, random_state=0).fit(train)
            ref_s = time.perf_counter() - t0
        params = est.params_   # the cost does not depend on the units
        pass_s = best_cpu_seconds(lambda params=params: fast.nll_grad_sums(train, params))
        base = pass_s if base is None else base
        print(f"| {name} | {pass_s * 1e3:.2f} | {pass_s / base:.1f}x | {fit_s:.2f} | "
              f"{est.score(test):.4f} | {ref.score(test):.4f} | {ref_s:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
