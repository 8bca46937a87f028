"""The compiled full-covariance pass against the NumPy reference, D = 16, K = 8.

    PYTHONPATH=src:benchmarks python benchmarks/bench_full_kernel.py [--threads 1]

Times ``FULL.nll_grad_sums`` (NumPy, BLAS) and ``fast.full_kernel.nll_grad_sums``
(serial kernel) on the same rows and parameters, best of several runs, for a few batch
sizes, and prints the speed-up.  ``--threads`` caps BLAS threads (set before NumPy
loads) so both run on one core.
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

import numpy as np  # noqa: E402
from common import best_of  # noqa: E402

from mogsgd.covariance import FULL  # noqa: E402
from mogsgd.fast import full_kernel  # noqa: E402


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
        t_np = best_of(lambda X=X: FULL.nll_grad_sums(X, params), repeats=5, min_time=1.0)
        t_nb = best_of(lambda X=X: full_kernel.nll_grad_sums(FULL, X, params), repeats=5,
                       min_time=1.0)
        print(f"| {n} | {t_np * 1e3:.2f} | {t_nb * 1e3:.2f} | {t_np / t_nb:.1f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
