"""Choosing the number of components K: fit each K, compare BIC, AIC and held-out likelihood.

BIC and AIC (eq. 38) are computed on the rows used for fitting; the held-out
log-likelihood on a random split that no fit sees.  The best K by each
criterion is reported; BIC's choice is the default recommendation.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from mogsgd._random import check_random_state
from mogsgd.errors import ValidationError
from mogsgd.validation import check_data, check_fraction, check_positive_int

__all__ = ["SelectionResult", "select_n_components"]


@dataclass
class SelectionResult:
    """One row per K: ``k, bic, aic, train_ll, heldout_ll, seconds`` (per-point LLs)."""

    rows: list[dict] = field(default_factory=list)
    models: dict = field(default_factory=dict)

    def best(self, criterion: str = "bic") -> int:
        """K with the lowest BIC/AIC or the highest held-out log-likelihood."""
        if criterion in ("bic", "aic"):
            return int(min(self.rows, key=lambda r: r[criterion])["k"])
        if criterion == "heldout_ll":
            return int(max(self.rows, key=lambda r: r[criterion])["k"])
        raise ValidationError(f"unknown criterion {criterion!r}; use 'bic', 'aic' or "
                              "'heldout_ll'")

    def to_markdown(self) -> str:
        marks = {c: self.best(c) for c in ("bic", "aic", "heldout_ll")}
        lines = ["| K | BIC | AIC | train LL / point | held-out LL / point | time (s) |",
                 "|---|---|---|---|---|---|"]
        for r in self.rows:
            cells = {"bic": format(r["bic"], ".1f"), "aic": format(r["aic"], ".1f"),
                     "heldout_ll": format(r["heldout_ll"], ".4f")}
            for c in cells:
                if marks[c] == r["k"]:
                    cells[c] = f"**{cells[c]}**"
            lines.append(f"| {r['k']} | {cells['bic']} | {cells['aic']} | {r['train_ll']:.4f} "
                         f"| {cells['heldout_ll']} | {r['seconds']:.2f} |")
        lines.append("")
        lines.append(f"Best K: BIC {marks['bic']}, AIC {marks['aic']}, held-out "
                     f"log-likelihood {marks['heldout_ll']} (bold).")
        return "\n".join(lines)


def select_n_components(
    X,
    ks=range(1, 11),
    *,
    heldout_fraction: float = 0.2,
    n_init: int = 3,
    random_state=None,
    progress=None,
    **estimator_kwargs,
) -> SelectionResult:
    """Fit ``SGDGaussianMixture(k)`` for every k in ``ks`` and tabulate the criteria.

    ``n_init`` restarts per K (the best is kept); other keyword arguments go to
    the estimator (e.g. ``solver="em"``, ``optimizer="sgd"``).  Returns a
    :class:`SelectionResult` with the fitted models in ``models``.
    """
    from mogsgd.estimator import SGDGaussianMixture

    ks = sorted({check_positive_int("k", int(k)) for k in ks})
    if not ks:
        raise ValidationError("ks is empty; give at least one number of components")
    check_fraction("heldout_fraction", heldout_fraction)
    X = check_data(X, min_samples=2)
    rng = check_random_state(random_state)
    order = rng.permutation(len(X))
    n_held = int(round(heldout_fraction * len(X)))
    held, fit_rows = X[order[:n_held]], X[order[n_held:]]
    if len(fit_rows) < max(ks) or (n_held and n_held < 1):
        raise ValidationError(f"{len(fit_rows)} rows to fit cannot support K={max(ks)}; "
                              "lower the largest K or the held-out fraction")
    result = SelectionResult()
    seed = int(rng.integers(2**31 - 1))
    for k in ks:
        if progress is not None:
            progress(k)
        t0 = time.perf_counter()
        est = SGDGaussianMixture(k, n_init=n_init, random_state=seed, **estimator_kwargs)
        est.fit(fit_rows)
        result.models[k] = est
        result.rows.append({
            "k": k, "bic": est.bic(fit_rows), "aic": est.aic(fit_rows),
            "train_ll": est.score(fit_rows),
            "heldout_ll": est.score(held) if n_held else float("nan"),
            "seconds": time.perf_counter() - t0,
        })
    return result
