"""The compiled full-covariance pass against the NumPy reference, D = 16, K = 8.

    PYTHONPATH=src python benchmarks/bench_full_kernel.py [--threads 1]

Times ``FULL.nll_grad_sums`` (NumPy, BLAS) and ``fast.full_kernel.nll_grad_sums``
(serial kernel) on the same rows and parameters -- least CPU time of several runs --
for a few batch sizes, and prints the speed-up as a Markdown table.  ``--threads`` caps
BLAS threads (set before NumPy loads) so both run on one core.
"""

from __future__ import annotations

import argparse
import os
import sys

parser = argparse.ArgumentParser()
parser.add_argument("--threads", type=int, default=1)
parser.add_argument("--sizes", type=int, nargs="*", default=[256, 4096, 65536])
args = parser.parse_args()
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(args.threads)

import time  # noqa: E402

import numpy as np  # noqa: E402

from mogsgd.covariance import FULL  # noqa: E402
from mogsgd.fast import full_kernel  # noqa: E402


def best_cpu_seconds(fn, repeats: int = 7, min_time: float = 1.0) -> float:
    """Least CPU time (``time.process_time``) of ``fn()`` over the runs, after one warm-up.

    CPU time, not wall time: on a machine shared with other jobs a process that is
    descheduled loses wall time but not CPU time.  Both sides run on one thread.
    """
    fn()
    times: list[float] = []
    while len(times) < repeats or sum(times) < min_time:
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return min(times)


def main() -> int:
    rng = np.random.default_rng(0)
    k, d = 8, 16
    covs = np.stack([np.eye(d) + 0.3 * np.ones((d, d)) for _ in range(k)])
    params = FULL.init_from_moments(np.full(k, 1 / k), rng.normal(0, 2, (k, d)), covs, 1e-6)
    print(f"K={k} D={d}, BLAS threads={args.threads}")
    print("| rows | NumPy ms | kernel ms | speed-up |")
    print("|---:|---:|---:|---:|")
    for n in args.sizes:
        X = rng.normal(0, 2, (n, d))
        t_np = best_cpu_seconds(lambda X=X: FULL.nll_grad_sums(X, params))
        t_nb = best_cpu_seconds(lambda X=X: full_kernel.nll_grad_sums(FULL, X, params))
        print(f"| {n} | {t_np * 1e3:.2f} | {t_nb * 1e3:.2f} | {t_np / t_nb:.1f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
