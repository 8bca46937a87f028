"""Shared pieces of the benchmarks: timing, the machine's description, data sets, threads."""

from __future__ import annotations

import contextlib
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from mogsgd.params import MixtureParams


def best_of(fn: Callable[[], object], repeats: int, warmup: int = 1,
            min_time: float = 0.0, max_repeats: int = 50) -> float:
    """Minimum wall-clock seconds of ``fn()`` over at least ``repeats`` runs (more, up to
    ``max_repeats``, until ``min_time`` seconds have been spent) after ``warmup`` runs.

    The minimum is the figure least disturbed by other processes on a shared machine.
    """
    for _ in range(warmup):
        fn()
    times: list[float] = []
    while len(times) < repeats or (sum(times) < min_time and len(times) < max_repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


@contextlib.contextmanager
def numba_threads(n: int | None):
    """Run the block with ``n`` numba threads (``None``: all of them)."""
    import numba

    before = numba.get_num_threads()
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS if n is None else n)
    try:
        yield
    finally:
        numba.set_num_threads(before)


def machine() -> dict[str, str]:
    """CPU model, core count, SIMD extensions and library versions."""
    import numba
    import sklearn

    info = {"cpu": platform.processor() or platform.machine()}
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    info["cores"] = str(os.cpu_count())
    with contextlib.suppress(Exception):
        import llvmlite.binding as ll

        info["llvm target"] = ll.get_host_cpu_name()
    with contextlib.suppress(Exception):
        from numpy._core._multiarray_umath import __cpu_features__ as feats

        simd = [f for f in ("AVX2", "FMA3", "AVX512F", "AVX512_SKX") if feats.get(f)]
        info["SIMD"] = ", ".join(simd) or "none of AVX2/AVX-512"
    info["python"] = platform.python_version()
    info["numpy"] = np.__version__
    info["numba"] = numba.__version__
    info["numba threads"] = str(numba.config.NUMBA_NUM_THREADS)
    info["scikit-learn"] = sklearn.__version__
    torch = optional_torch()
    info["torch"] = torch.__version__ if torch is not None else "not installed"
    return info


def optional_torch():
    """``torch`` if importable, else ``None`` (its rows are then skipped with a note)."""
    try:
        import torch
    except Exception:
        return None
    return torch


# ------------------------------------------------------------------- data sets
def mixture(rng: np.random.Generator, weights, means, sigmas, n: int) -> np.ndarray:
    """``n`` points (n, D) from a diagonal mixture, drawn without (n, K) temporaries."""
    weights, means, sigmas = map(np.asarray, (weights, means, sigmas))
    y = rng.choice(len(weights), size=n, p=weights)
    X = rng.standard_normal((n, means.shape[1]))
    X *= sigmas[y]
    X += means[y]
    return X


@dataclass
class DataSet:
    """A synthetic mixture with its truth: training rows, held-out rows, description."""

    name: str
    X: np.ndarray
    X_test: np.ndarray
    truth: MixtureParams
    note: str = ""
    extra: dict = field(default_factory=dict)


def easy_set(n: int, seed: int = 0) -> DataSet:
    """Three well separated, equally weighted components in D = 3."""
    rng = np.random.default_rng(seed)
    w = np.full(3, 1 / 3)
    mu = np.array([[-6.0, 0.0, 0.0], [0.0, 6.0, 0.0], [6.0, 0.0, 6.0]])
    sd = np.ones((3, 3))
    return DataSet("easy K=3 D=3", mixture(rng, w, mu, sd, n), mixture(rng, w, mu, sd, 100_000),
                   MixtureParams.from_moments(w, mu, sd**2), "separated by 6 sd, equal weights")


def hard_set(n: int, k: int, d: int, seed: int = 0) -> DataSet:
    """Overlapping components (means ~1.5 sd apart), unequal spreads, imbalanced weights:
    0.6/0.3/0.1 for K = 3, else geometric weights (ratio 0.75)."""
    rng = np.random.default_rng(1000 * k + d + seed)
    if k == 3:
        w = np.array([0.6, 0.3, 0.1])
    else:
        w = 0.75 ** np.arange(k)
        w /= w.sum()
    mu = rng.normal(scale=1.0, size=(k, d))
    sd = rng.uniform(0.7, 1.4, size=(k, d))
    X = mixture(rng, w, mu, sd, n)
    X_test = mixture(rng, w, mu, sd, 200_000)
    note = (f"weights {'/'.join(f'{v:.2g}' for v in w[:4])}{'...' if k > 4 else ''}, "
            "means N(0, 1), sd U(0.7, 1.4)")
    return DataSet(f"hard K={k} D={d}", X, X_test, MixtureParams.from_moments(w, mu, sd**2),
                   note)


def random_params(rng: np.random.Generator, k: int, d: int) -> MixtureParams:
    """Parameters in the range of standardised data."""
    return MixtureParams(means=rng.normal(size=(k, d)),
                         log_sigma=np.log(rng.uniform(0.6, 1.5, size=(k, d))),
                         logits=rng.normal(scale=0.3, size=k))


def correlated_set(n: int, k: int, d: int, seed: int = 0) -> DataSet:
    """:func:`hard_set`'s weights, means and spreads with every component rotated by its
    own uniformly random rotation ``Q_k``: ``Sigma_k = Q_k diag(sd_k^2) Q_k^T`` (full
    covariances, correlated features)."""
    from mogsgd.covariance import FULL

    rng = np.random.default_rng(1000 * k + d + seed)
    w = 0.75 ** np.arange(k)
    w /= w.sum()
    mu = rng.normal(scale=1.0, size=(k, d))
    sd = rng.uniform(0.7, 1.4, size=(k, d))
    Q, R = np.linalg.qr(rng.standard_normal((k, d, d)))
    Q = Q * np.sign(np.einsum("...dd->...d", R))[..., None, :]   # Haar: fix the signs
    cov = (Q * (sd**2)[:, None, :]) @ np.swapaxes(Q, -1, -2)
    truth = FULL.init_from_moments(w, mu, 0.5 * (cov + np.swapaxes(cov, -1, -2)), 0.0)
    X, _ = FULL.sample(truth, rng, n)
    X_test, _ = FULL.sample(truth, rng, 200_000)
    return DataSet(f"correlated K={k} D={d}", X, X_test, truth,
                   "hard set's weights/means/spreads, each component randomly rotated")


def fit_with_held_out_marks(est, ds) -> tuple[list[tuple[float, int, float]], float]:
    """Fit ``est`` on ``ds.X`` with the held-out log-likelihood of each epoch's parameters
    scored by a callback whose own time is not counted: ``(marks, seconds)``, ``marks``
    holding ``(seconds since the start, epoch, held-out LL)`` per epoch."""
    import warnings

    from mogsgd import fast
    from mogsgd.errors import ConvergenceWarning
    from mogsgd.standardize import Standardizer

    marks: list[tuple[float, int, float]] = []
    scoring = [0.0]
    scaler = Standardizer.fit(ds.X, True)   # the estimator's own (all rows, no weights)

    def callback(state):
        t = time.perf_counter()
        ll = -fast.nll(ds.X_test, scaler.to_data(state.params))
        marks.append((t - t0 - scoring[0], state.epoch, ll))
        scoring[0] += time.perf_counter() - t

    est.callback = callback
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        t0 = time.perf_counter()
        est.fit(ds.X)
        return marks, time.perf_counter() - t0 - scoring[0]
