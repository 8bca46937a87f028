"""SGD vs online EM vs batch EM: time to EM-level held-out log-likelihood.

    PYTHONPATH=src python benchmarks/bench_solvers.py [--quick] [--out benchmarks/SOLVERS.md]

For each data set a reference is measured in the same run: scikit-learn's EM run to
convergence (``tol=1e-6``, ``n_init=3``) gives the held-out log-likelihood per point that
"EM level" means.  Every solver is then fitted with its default settings (one
initialisation, timing includes it), and the table reports its fit time, its held-out
gap to the reference (nats per point; positive = worse) and whether it reached the
reference within 0.01 nats.  The winner per data set is the fastest solver within 0.01.
Timings are wall-clock on whatever machine runs this; the figures in SOLVERS.md say which.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

from sklearn.mixture import GaussianMixture  # noqa: E402

from mogsgd import MixtureParams, SGDGaussianMixture  # noqa: E402
from mogsgd.datasets import make_mixture, sample_mixture  # noqa: E402

TOLERANCE = 0.01


def datasets(quick: bool):
    """(name, X_train, X_test) triples drawn from seeded generators."""
    n = 50_000 if quick else 400_000
    rng = np.random.default_rng(0)
    out = []
    X, _, _ = make_mixture(n, 3, 3, separation=3.0, random_state=1)
    out.append(("separated D=3 K=3", X))
    hard = MixtureParams.from_moments([0.6, 0.3, 0.1], [[0, 0, 0], [1.5, 1, 0], [0, 2, 1.5]],
                                      [[1, 1, 1], [1.5, 0.8, 1], [0.6, 0.6, 0.6]])
    X, _ = sample_mixture(hard, n, random_state=2)
    out.append(("overlapping 0.6/0.3/0.1 D=3 K=3", X))
    X, _, _ = make_mixture(n // 2, 16, 8, separation=1.0, random_state=3)
    out.append(("D=16 K=8", X))
    result = []
    for name, X in out:
        order = rng.permutation(len(X))
        cut = int(0.8 * len(X))
        result.append((name, X[order[:cut]], X[order[cut:]]))
    return result


def solvers(k: int):
    return {
        "mogsgd SGD (Adam)": lambda: SGDGaussianMixture(k, random_state=0),
        "mogsgd plain SGD": lambda: SGDGaussianMixture(k, optimizer="sgd", random_state=0),
        "mogsgd online EM": lambda: SGDGaussianMixture(k, solver="online_em", random_state=0),
        "mogsgd batch EM": lambda: SGDGaussianMixture(k, solver="em", random_state=0),
        "sklearn EM (default)": lambda: GaussianMixture(k, covariance_type="diag",
                                                        random_state=0),
    }


def run(quick: bool) -> list[dict]:
    rows = []
    for name, X_train, X_test in datasets(quick):
        k = 8 if "K=8" in name else 3
        t0 = time.perf_counter()
        ref = GaussianMixture(k, covariance_type="diag", tol=1e-6, max_iter=2000, n_init=3,
                              random_state=0).fit(X_train)
        ref_ll = ref.score(X_test)
        rows.append({"data": name, "solver": "reference: sklearn EM tol 1e-6, n_init 3",
                     "seconds": time.perf_counter() - t0, "gap": 0.0, "reached": True})
        for label, make in solvers(k).items():
            est = make()
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                est.fit(X_train)
            seconds = time.perf_counter() - t0
            gap = ref_ll - est.score(X_test)
            rows.append({"data": name, "solver": label, "seconds": seconds, "gap": gap,
                         "reached": gap <= TOLERANCE})
            print(f"{name:35s} {label:25s} {seconds:8.2f} s  gap {gap:+.4f}", file=sys.stderr)
    return rows


def render(rows: list[dict], quick: bool, n_note: str) -> str:
    lines = ["# Solvers: time to EM-level held-out log-likelihood", "",
             f"Command: `PYTHONPATH=src python benchmarks/bench_solvers.py"
             f"{' --quick' if quick else ''}`; {n_note}.",
             f"Machine: {platform.processor() or platform.machine()}, Python "
             f"{platform.python_version()}, NumPy {np.__version__}. Default settings, one "
             "initialisation each, initialisation included in the time. Gap = reference "
             "held-out log-likelihood minus the solver's (nats per point, positive = worse).",
             "", "| data | solver | fit time (s) | held-out gap | within 0.01 |",
             "|---|---|---:|---:|:---:|"]
    for r in rows:
        lines.append(f"| {r['data']} | {r['solver']} | {r['seconds']:.2f} | {r['gap']:+.4f} | "
                     f"{'yes' if r['reached'] else 'no'} |")
    lines += ["", "Fastest solver within 0.01 nats of the reference, per data set:", ""]
    for data in dict.fromkeys(r["data"] for r in rows):
        ok = [r for r in rows if r["data"] == data and r["reached"]
              and not r["solver"].startswith("reference")]
        best = min(ok, key=lambda r: r["seconds"]) if ok else None
        lines.append(f"- {data}: " + (f"{best['solver']} ({best['seconds']:.2f} s)" if best
                                      else "none reached it"))
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="50,000 points instead of 400,000")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("SOLVERS.md"))
    args = parser.parse_args(argv)
    rows = run(args.quick)
    text = render(rows, args.quick, "50,000 points per data set (25,000 for D=16)" if args.quick
                  else "400,000 points per data set (200,000 for D=16), 80% to fit")
    print(text)
    args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
