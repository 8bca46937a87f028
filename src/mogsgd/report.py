"""The demo: generate the seed's data sets, fit them every way, write figures and a report.

:func:`run_demo` composes the library — data generation, SGD/momentum/Adam and
EM fits through :class:`~mogsgd.estimator.SGDGaussianMixture`, metrics and
plots — and adds no math of its own.  It writes every figure (PNG + SVG), an
animation (GIF), ``report.md`` and a self-contained ``report.html`` (figures
embedded as base64) into one folder.
"""

from __future__ import annotations

import base64
import html
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mogsgd import __version__
from mogsgd.density import nll

__all__ = ["DemoResult", "run_demo", "METHODS"]

#: (label, estimator keyword arguments) of the fits the demo compares.
METHODS = (
    ("SGD", {"optimizer": "sgd"}),
    ("Momentum", {"optimizer": "momentum"}),
    ("Adam", {"optimizer": "adam"}),
    ("EM", {"solver": "em"}),
)


@dataclass
class DemoResult:
    """Where the demo wrote its outputs, and the comparison table it computed."""

    out_dir: Path
    report_html: Path
    report_md: Path
    figures: dict[str, Path] = field(default_factory=dict)
    rows: list[dict] = field(default_factory=list)
    covariance_rows: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def _prepare_out_dir(out_dir: Path, force: bool) -> None:
    if out_dir.exists() and any(out_dir.iterdir()) and not force:
        raise FileExistsError(
            f"{out_dir} already exists and is not empty; choose another --out or pass --force "
            "to overwrite the demo's files in it")
    out_dir.mkdir(parents=True, exist_ok=True)


def run_demo(
    out_dir: str | Path = "mogsgd-demo",
    *,
    seed: int = 0,
    force: bool = False,
    n_fit: int = 3000,
    progress: Callable[[str], None] | None = None,
) -> DemoResult:
    """Run the main job and write the report; returns a :class:`DemoResult`.

    1. The seed's data set: 1000 points, 2 features, 3 components — scatter with
       1/2/3-sigma ellipses and marginal densities.
    2. A 3-feature, 3-component data set of ``n_fit`` points (80% to fit, 20%
       held out), fitted by plain SGD, momentum, Adam and EM from the same
       initialisation scheme and seed; figures of the fit, learning curves,
       parameter paths, an animation, and a comparison table.
    3. Correlated data (2 features, 3 components with rotated covariances): the default
       SGD fit with every covariance type, their ellipses and a table of held-out NLL
       and BIC.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from mogsgd import plotting
    from mogsgd.datasets import make_mixture
    from mogsgd.estimator import SGDGaussianMixture
    from mogsgd.metrics import (
        adjusted_rand_index,
        align_components,
        matched_accuracy,
        parameter_errors,
    )

    say = progress or (lambda msg: None)
    start = time.perf_counter()
    out = Path(out_dir)
    _prepare_out_dir(out, force)
    result = DemoResult(out, out / "report.html", out / "report.md")

    def save(fig, name: str) -> None:
        paths = plotting.save_figure(fig, out / name, force=True)
        plt.close(fig)
        result.figures[name] = next(p for p in paths if p.suffix == ".png")

    # 1. the seed's two-dimensional data set
    say("generating the 2-D, 3-component, 1000-point data set")
    X2, y2, true2 = make_mixture(1000, 2, 3, separation=2.0, random_state=seed)
    ax = plotting.plot_data(X2, y2, true2, title="Seed data set: 1000 points, 3 components")
    save(ax.figure, "data_2d")
    save(plotting.plot_marginals(X2, true2, y2), "marginals_2d")
    # fitted components are matched to the true ones so colours agree across figures
    fit2 = align_components(true2, SGDGaussianMixture(3, random_state=seed).fit(X2).params_)
    ax = plotting.plot_density(X2, fit2)
    ax.set_title("Adam fit: log-density of the mixture")
    save(ax.figure, "density_2d")
    ax = plotting.plot_predictions(X2, fit2)
    save(ax.figure, "predictions_2d")

    # 2. the three-feature training example, every method
    say(f"generating the 3-feature, 3-component data set ({n_fit} points)")
    X, y, true = make_mixture(n_fit, 3, 3, separation=1.5, random_state=seed + 1)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(X))
    n_train = int(0.8 * len(X))
    tr, te = order[:n_train], order[n_train:]
    histories, fitted = {}, {}
    for label, kwargs in METHODS:
        say(f"fitting with {label}")
        t0 = time.perf_counter()
        est = SGDGaussianMixture(3, random_state=seed, record_params=True, **kwargs)
        est.fit(X[tr])
        seconds = time.perf_counter() - t0
        fitted[label] = est
        histories[label] = est.history_
        errors = parameter_errors(true, est.params_)
        pred = est.predict(X[te])
        result.rows.append({
            "method": label,
            "train NLL": -est.score(X[tr]),
            "test NLL": -est.score(X[te]),
            "BIC": est.bic(X[tr]),
            "epochs/iters": est.n_iter_,
            "time (s)": seconds,
            "accuracy": matched_accuracy(y[te], pred),
            "ARI": adjusted_rand_index(y[te], pred),
            "max weight error": errors["weights"],
            "max mean error": errors["means"],
            "max sigma error": errors["sigmas"],
        })
    aligned = {k: align_components(true, v.params_) for k, v in fitted.items()}
    em_nll = -fitted["EM"].score(X[tr])
    true_nll = nll(X[tr], true)
    reference = {"EM optimum": em_nll, "true parameters": true_nll}
    say("drawing the figures")
    save(plotting.plot_pairs(X[te], aligned["Adam"], y[te]), "pairs_3d")
    save(plotting.plot_fit_vs_truth(X[tr], fitted["SGD"].params_, true), "fit_vs_truth")
    for label in ("SGD", "Adam"):
        ax = plotting.plot_learning_curves(histories[label], reference=reference)
        ax.set_title(f"{label}: negative log-likelihood per point")
        save(ax.figure, f"learning_curves_{label.lower()}")
    sgd_like = {k: v for k, v in histories.items() if k != "EM"}
    ax = plotting.plot_optimizer_comparison(sgd_like, reference=reference)
    save(ax.figure, "optimizer_comparison")
    ax = plotting.plot_optimizer_comparison(sgd_like, reference=reference, x="time")
    save(ax.figure, "optimizer_comparison_time")
    # plain SGD from random data points, to watch the components travel to the clusters
    say("fitting plain SGD from random points for the parameter paths")
    walk = SGDGaussianMixture(3, optimizer="sgd", init="random_points", random_state=seed,
                              max_epochs=40, early_stopping=False, record_params=True)
    walk.fit(X[tr])
    save(plotting.plot_parameter_paths(walk.history_, X=X[tr], true=true), "parameter_paths")
    gif = plotting.animate_fit(X[tr], walk.history_, out / "sgd_fit.gif", true=true,
                               force=True)
    result.figures["animation"] = gif

    say("fitting correlated data with every covariance type")
    _covariance_types(result, save, seed)

    result.seconds = time.perf_counter() - start
    truth = {"weights": true.weights.tolist(), "means": true.means.tolist(),
             "variances": true.variances.tolist()}
    fits = {k: {"weights": a.weights.tolist(), "means": a.means.tolist(),
                "variances": a.variances.tolist()} for k, a in aligned.items()}
    _write_markdown(result, truth, fits, reference)
    _write_html(result, truth, fits, reference)
    (out / "summary.json").write_text(json.dumps(
        {"rows": result.rows, "covariance_types": result.covariance_rows,
         "reference": reference, "true": truth, "fits": fits,
         "seconds": result.seconds, "version": __version__}, indent=2))
    say(f"done in {result.seconds:.1f} s")
    return result


def _covariance_types(result: DemoResult, save, seed: int) -> None:
    """Section 3: one correlated data set fitted with each covariance type."""
    import matplotlib.pyplot as plt

    from mogsgd import plotting
    from mogsgd.covariance import COVARIANCE_TYPES
    from mogsgd.datasets import make_mixture
    from mogsgd.estimator import SGDGaussianMixture

    X, y, _ = make_mixture(1500, 2, 3, separation=2.0, random_state=seed + 2,
                           covariance_type="full")
    order = np.random.default_rng(seed).permutation(len(X))
    tr, te = order[:1200], order[1200:]
    fig, axes = plt.subplots(2, 2, figsize=(11.0, 9.5), layout="constrained")
    for ax, name in zip(axes.ravel(), COVARIANCE_TYPES, strict=True):
        t0 = time.perf_counter()
        est = SGDGaussianMixture(3, covariance_type=name, random_state=seed).fit(X[tr])
        seconds = time.perf_counter() - t0
        result.covariance_rows.append({
            "covariance_type": name, "parameters": est.n_parameters(),
            "train NLL": -est.score(X[tr]), "test NLL": -est.score(X[te]),
            "BIC": est.bic(X[tr]), "time (s)": seconds})
        plotting.plot_data(X[tr], y[tr], est.params_, ax=ax, n_std=(1, 2))
        ax.set_title(f"covariance_type={name!r}: test NLL {-est.score(X[te]):.3f}")
    save(fig, "covariance_types")


COVARIANCE_COLUMNS = ("covariance_type", "parameters", "train NLL", "test NLL", "BIC",
                      "time (s)")


# ------------------------------------------------------------------- writing
SECTIONS = (
    ("The seed's data set", ["data_2d", "marginals_2d"],
     "1000 points in 2 features drawn from 3 diagonal Gaussians; ellipses at 1, 2 and 3 "
     "standard deviations of the generating components."),
    ("A fit of the seed's data", ["density_2d", "predictions_2d"],
     "Adam with default settings. Left: log-density contours of the fitted mixture. Right: "
     "points coloured by their most responsible component, transparent where uncertain."),
    ("Three features: the fit", ["pairs_3d", "fit_vs_truth"],
     "Every 2-D projection of the held-out points with the Adam fit's ellipses; plain SGD's "
     "fitted components against the true ones (matched by assignment)."),
    ("Training", ["learning_curves_sgd", "learning_curves_adam", "optimizer_comparison",
                  "optimizer_comparison_time"],
     "Train and validation NLL per epoch against the EM optimum and the NLL of the true "
     "parameters; the three optimisers on one chart, by epoch and by wall time."),
    ("Parameter paths", ["parameter_paths", "animation"],
     "Plain SGD started from three random data points: the means travel across the data "
     "to the clusters while the standard deviations and weights settle."),
    ("Correlated data: covariance types", ["covariance_types"],
     "1500 points from 3 components with rotated (correlated) covariances, the default SGD "
     "fit with each covariance_type: full and tied ellipses rotate with the data, diagonal "
     "and spherical ones cannot (table: held-out NLL and BIC per type)."),
)

COLUMNS = ("method", "train NLL", "test NLL", "BIC", "epochs/iters", "time (s)", "accuracy",
           "ARI", "max weight error", "max mean error", "max sigma error")


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 1e4 else f"{v:.1f}"
    return str(v)


def _table_md(rows: list[dict], columns=COLUMNS) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(r[c]) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def _params_md(truth: dict, fits: dict) -> str:
    out = ["| component | true weight | " + " | ".join(f"{k} weight" for k in fits) + " |",
           "|" + "---|" * (2 + len(fits))]
    for j in range(len(truth["weights"])):
        cells = [f"{truth['weights'][j]:.3f}"] + [f"{f['weights'][j]:.3f}" for f in fits.values()]
        out.append(f"| {j} | " + " | ".join(cells) + " |")
    out += ["", "| component | true mean | " + " | ".join(f"{k} mean" for k in fits) + " |",
            "|" + "---|" * (2 + len(fits))]
    for j in range(len(truth["weights"])):
        cells = [_vec(truth["means"][j])] + [_vec(f["means"][j]) for f in fits.values()]
        out.append(f"| {j} | " + " | ".join(cells) + " |")
    out += ["", "| component | true variance | " + " | ".join(f"{k} variance" for k in fits)
            + " |", "|" + "---|" * (2 + len(fits))]
    for j in range(len(truth["weights"])):
        cells = [_vec(truth["variances"][j])] + [_vec(f["variances"][j]) for f in fits.values()]
        out.append(f"| {j} | " + " | ".join(cells) + " |")
    out += ["", "Fitted components are matched to the true ones by a minimum-cost assignment "
            "of their means."]
    return "\n".join(out)


def _vec(values) -> str:
    return "(" + ", ".join(f"{v:.3f}" for v in values) + ")"


def _write_markdown(result: DemoResult, truth, fits, reference) -> None:
    parts = [f"# mogsgd demo report\n\nmogsgd {__version__}; total run time "
             f"{result.seconds:.1f} s.\n",
             "## Comparison of methods (3 features, 3 components)\n",
             _table_md(result.rows), "",
             f"Reference NLL on the training rows: EM optimum {reference['EM optimum']:.4f}, "
             f"true parameters {reference['true parameters']:.4f}.\n",
             "## Fitted vs true parameters\n", _params_md(truth, fits), ""]
    for title, names, text in SECTIONS:
        parts.append(f"## {title}\n\n{text}\n")
        if "covariance_types" in names:
            parts += [_table_md(result.covariance_rows, COVARIANCE_COLUMNS), ""]
        for name in names:
            path = result.figures[name]
            parts.append(f"![{name}]({path.name})\n")
    result.report_md.write_text("\n".join(parts))


def _img_tag(path: Path) -> str:
    mime = "image/gif" if path.suffix == ".gif" else "image/png"
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(path.stem)}" src="data:{mime};base64,{data}">'


def _table_html(rows: list[dict], columns) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(r[c]))}</td>" for c in columns)
                   + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _write_html(result: DemoResult, truth, fits, reference) -> None:
    params_rows = []
    for label, f in [("true", truth), *fits.items()]:
        for j in range(len(f["weights"])):
            mean = ", ".join(f"{v:.3f}" for v in f["means"][j])
            var = ", ".join(f"{v:.3f}" for v in f["variances"][j])
            params_rows.append(f"<tr><td>{html.escape(label)}</td><td>{j}</td>"
                               f"<td>{f['weights'][j]:.3f}</td><td>{mean}</td><td>{var}</td></tr>")
    sections = []
    for title, names, text in SECTIONS:
        imgs = "".join(f"<figure>{_img_tag(result.figures[n])}</figure>" for n in names)
        table = _table_html(result.covariance_rows, COVARIANCE_COLUMNS) \
            if "covariance_types" in names else ""
        sections.append(f"<h2>{html.escape(title)}</h2><p>{html.escape(text)}</p>{table}"
                        f"<div class='figs'>{imgs}</div>")
    doc = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>mogsgd demo report</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }}
th, td {{ border: 1px solid #ccc; padding: 4px 8px; text-align: right; }}
th {{ background: #f0f0f0; }} td:first-child {{ text-align: left; }}
.figs {{ display: flex; flex-wrap: wrap; gap: 1em; }}
figure {{ margin: 0; }} img {{ max-width: 560px; height: auto; }}
</style></head><body>
<h1>mogsgd demo report</h1>
<p>mogsgd {html.escape(__version__)}; total run time {result.seconds:.1f} s.</p>
<h2>Comparison of methods (3 features, 3 components)</h2>
{_table_html(result.rows, COLUMNS)}
<p>Reference NLL on the training rows: EM optimum {reference['EM optimum']:.4f},
true parameters {reference['true parameters']:.4f}.</p>
<h2>Fitted vs true parameters</h2>
<table><tr><th>fit</th><th>component</th><th>weight</th><th>mean</th><th>variance</th></tr>
{''.join(params_rows)}</table>
{''.join(sections)}
</body></html>
"""
    result.report_html.write_text(doc)
