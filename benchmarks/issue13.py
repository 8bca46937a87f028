"""Issue 13's default-fit goals, each against its anchor in one run.

=====  ========================================================  ==========================
goal   measured                                                  anchor (same run)
=====  ========================================================  ==========================
13.R   the end-point refinement (``refine="auto"``): its time,   the same fit with
       EM steps, and the training NLL's distance to the EM       ``refine="none"``
       fixed point (K=1: the sample moments)
13.T   the default fit on iris, wine, breast_cancer, diabetes    scikit-learn's default
       (raw), K = 2, 3, 5, 10, 5-fold CV: held-out and training   ``GaussianMixture(diag)``
       log-likelihood, fit time                                   on the same folds
=====  ========================================================  ==========================
"""

from __future__ import annotations

import time
import warnings

import numpy as np

from benchmarks.bench_refine import gap_to_fixed_point, sets
from benchmarks.common import best_of
from benchmarks.goals import Row, _check


def refinement(quick: bool) -> list[Row]:
    """``refine="auto"`` against ``refine="none"`` on the sets of ``bench_refine.py``."""
    from mogsgd.estimator import SGDGaussianMixture

    g = "13.R refinement"
    rows: list[Row] = []
    reps = 2 if quick else 5
    for name, (X, k) in sets(quick).items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            SGDGaussianMixture(k, random_state=0, max_epochs=1).fit(X[:500])   # compile
            fits, times = {}, {}
            for refine in ("none", "auto"):
                def fit(refine=refine, k=k, X=X, fits=fits):
                    fits[refine] = SGDGaussianMixture(k, random_state=0, refine=refine).fit(X)
                times[refine] = best_of(fit, reps, warmup=0)
        est, raw = fits["auto"], fits["none"]
        gap, raw_gap = gap_to_fixed_point(est, X), gap_to_fixed_point(raw, X)
        extra = ""
        if k == 1:
            m = np.max(np.abs(est.means_[0] - X.mean(0)) / np.abs(X.mean(0)))
            v = np.max(np.abs(est.covariances_[0] / X.var(0) - 1))
            extra = f"; means / variances off the sample moments by {m:.0e} / {v:.0e} rel."
        rows.append(Row(g, f"anchor: `refine=\"none\"`, {name}: {raw.n_iter_} epochs, training "
                        f"NLL {raw_gap:.1e} above the EM fixed point",
                        f"{1e3 * times['none']:.1f} ms"))
        rows.append(Row(g, f"**default (`refine=\"auto\"`), {name}**: {est.n_iter_} epochs + "
                        f"{est.refine_iter_} EM steps, training NLL {gap:.1e} above the "
                        f"fixed point{extra}", f"{1e3 * times['auto']:.1f} ms",
                        "`refine=\"none\"`", f"{times['auto'] / times['none']:.2f}x",
                        "<= 1e-4 nats/row from the fixed point", _check(gap <= 1e-4)))
    return rows


def real_tables(quick: bool) -> list[Row]:
    """The default fit against scikit-learn's default on the four real tables of
    ``tests/test_real_data.py`` (one 5-fold shuffle; two in the test)."""
    from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris, load_wine
    from sklearn.mixture import GaussianMixture
    from sklearn.model_selection import KFold
    from sklearn.preprocessing import StandardScaler

    from mogsgd.estimator import SGDGaussianMixture

    g = "13.T real tables"
    tables = {"iris": load_iris().data, "wine": load_wine().data,
              "breast_cancer": load_breast_cancer().data,
              "diabetes (raw)": load_diabetes(scaled=False).data}
    rows: list[Row] = []
    for name, X in tables.items():
        cells = []
        for k in ((3, 10) if quick else (2, 3, 5, 10)):
            test, train, t_us, t_sk = [], [], 0.0, 0.0
            for fold, (tr, te) in enumerate(KFold(5, shuffle=True, random_state=0).split(X)):
                scaler = StandardScaler().fit(X[tr])
                A, B = scaler.transform(X[tr]), scaler.transform(X[te])
                t0 = time.perf_counter()
                ref = GaussianMixture(k, covariance_type="diag", random_state=fold).fit(A)
                t_sk += time.perf_counter() - t0
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    t0 = time.perf_counter()
                    ours = SGDGaussianMixture(k, random_state=fold).fit(A)
                    t_us += time.perf_counter() - t0
                test.append(ours.score(B) - ref.score(B))
                train.append(ours.score(A) - ref.score(A))
            cells.append(f"K={k}: {np.mean(test):+.3f} ({np.mean(train):+.3f}), "
                         f"{t_us / t_sk:.1f}x time")
        rows.append(Row(g, f"**default fit - scikit-learn's default, {name} {X.shape[0]} x "
                        f"{X.shape[1]}**: mean held-out (training) LL difference per row over "
                        f"5 folds, and fit time ratio", "; ".join(cells),
                        "scikit-learn default fit"))
    return rows


RUNNERS = {"13.R": refinement, "13.T": real_tables}
