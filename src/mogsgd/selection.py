"""Choosing the number of components K (and the covariance type): fit each, compare BIC,
AIC and held-out likelihood.

BIC and AIC (eqs. 38, 51: each type counts its own free parameters) are computed on the
rows used for fitting; the held-out log-likelihood on a random split that no fit sees.
The best K (with several covariance types: the best type and K) by each criterion is
reported; BIC's choice is the default recommendation.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from mogsgd._random import check_random_state
from mogsgd.covariance import COVARIANCE_TYPES
from mogsgd.errors import SettingsError, ValidationError
from mogsgd.validation import check_choice, check_data, check_fraction, check_positive_int

__all__ = ["SelectionResult", "select_n_components"]


@dataclass
class SelectionResult:
    """One row per fitted (covariance type, K): ``covariance_type, k, bic, aic, train_ll,
    heldout_ll, seconds`` (per-point LLs).  ``models`` holds the fitted estimators, by K
    with one covariance type, by ``(covariance_type, K)`` with several."""

    rows: list[dict] = field(default_factory=list)
    models: dict = field(default_factory=dict)

    @property
    def covariance_types(self) -> list[str]:
        """The covariance types compared, in the order fitted."""
        return list(dict.fromkeys(r.get("covariance_type", "diag") for r in self.rows))

    def best_row(self, criterion: str = "bic") -> dict:
        """The row with the lowest BIC/AIC or the highest held-out log-likelihood."""
        if criterion in ("bic", "aic"):
            return min(self.rows, key=lambda r: r[criterion])
        if criterion == "heldout_ll":
            return max(self.rows, key=lambda r: r[criterion])
        raise SettingsError(f"unknown criterion {criterion!r}; use 'bic', 'aic' or "
                            "'heldout_ll'")

    def best(self, criterion: str = "bic") -> int:
        """K of :meth:`best_row` (with several covariance types, the best type's K)."""
        return int(self.best_row(criterion)["k"])

    def best_type(self, criterion: str = "bic") -> str:
        """The covariance type of :meth:`best_row`."""
        return self.best_row(criterion).get("covariance_type", "diag")

    def to_markdown(self) -> str:
        marks = {c: id(self.best_row(c)) for c in ("bic", "aic", "heldout_ll")}
        several = len(self.covariance_types) > 1
        lines = [("| covariance | " if several else "| ")
                 + "K | BIC | AIC | train LL / point | held-out LL / point | time (s) |",
                 "|---" * (7 if several else 6) + "|"]
        for r in self.rows:
            cells = {"bic": format(r["bic"], ".1f"), "aic": format(r["aic"], ".1f"),
                     "heldout_ll": format(r["heldout_ll"], ".4f")}
            for c in cells:
                if marks[c] == id(r):
                    cells[c] = f"**{cells[c]}**"
            lines.append(("| " + r["covariance_type"] + " " if several else "")
                         + f"| {r['k']} | {cells['bic']} | {cells['aic']} | "
                         f"{r['train_ll']:.4f} | {cells['heldout_ll']} | {r['seconds']:.2f} |")
        lines.append("")
        if several:
            named = {c: f"{self.best_type(c)}, K={self.best(c)}" for c in marks}
            lines.append(f"Best: BIC {named['bic']}; AIC {named['aic']}; held-out "
                         f"log-likelihood {named['heldout_ll']} (bold).")
        else:
            lines.append(f"Best K: BIC {self.best('bic')}, AIC {self.best('aic')}, held-out "
                         f"log-likelihood {self.best('heldout_ll')} (bold).")
        return "\n".join(lines)


def select_n_components(
    X,
    ks=range(1, 11),
    *,
    heldout_fraction: float = 0.2,
    n_init: int = 3,
    random_state=None,
    progress=None,
    covariance_types=None,
    **estimator_kwargs,
) -> SelectionResult:
    """Fit ``SGDGaussianMixture(k)`` for every k in ``ks`` and tabulate the criteria.

    ``covariance_types`` (e.g. ``["full", "tied", "diag", "spherical"]``) fits every type
    for every K, so BIC chooses the type and K together; ``None``: one type, the
    ``covariance_type`` keyword or ``"diag"``.  ``n_init`` restarts per fit (the best is
    kept); other keyword arguments go to the estimator (e.g. ``solver="em"``).
    ``progress(k)`` (``progress(k, covariance_type)`` with several types) is called before
    each fit.  Returns a
    :class:`SelectionResult` with the fitted models in ``models``.
    """
    from mogsgd.estimator import SGDGaussianMixture

    if covariance_types is None:
        covariance_types = [estimator_kwargs.pop("covariance_type", "diag")]
    elif "covariance_type" in estimator_kwargs:
        raise SettingsError("give covariance_types (the list to compare) or "
                            "covariance_type, not both")
    covariance_types = list(dict.fromkeys(covariance_types))
    for name in covariance_types:
        check_choice("covariance_type", name, COVARIANCE_TYPES)
    ks = sorted({check_positive_int("k", int(k)) for k in ks})
    if not ks:
        raise SettingsError("ks is empty; give at least one number of components")
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
    several = len(covariance_types) > 1
    for covariance_type in covariance_types:
        for k in ks:
            if progress is not None:
                progress(*((k, covariance_type) if several else (k,)))
            t0 = time.perf_counter()
            est = SGDGaussianMixture(k, n_init=n_init, random_state=seed,
                                     covariance_type=covariance_type, **estimator_kwargs)
            est.fit(fit_rows)
            result.models[(covariance_type, k) if several else k] = est
            result.rows.append(_row(est, covariance_type, k, fit_rows, held, t0))
    return result


def _row(est, covariance_type: str, k: int, fit_rows, held, t0: float) -> dict:
    return {"covariance_type": covariance_type,
            "k": k, "bic": est.bic(fit_rows), "aic": est.aic(fit_rows),
            "train_ll": est.score(fit_rows),
            "heldout_ll": est.score(held) if len(held) else float("nan"),
            "seconds": time.perf_counter() - t0}
