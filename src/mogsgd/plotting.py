"""Matplotlib figures for data and fitted mixtures (and, re-exported, for training runs).

The training figures (learning curves, optimiser comparison, parameter paths,
the GIF) live in :mod:`mogsgd.plot_training` and are importable from here.
Every function takes ``ax=None`` (or ``fig=None`` for multi-panel figures),
draws into it (or into a new figure with constrained layout) and returns the
Axes or Figure; nothing is shown and nothing is written unless asked
(:func:`save_figure`, :func:`animate_fit`).  Densities come from
:mod:`mogsgd.density` only: for a diagonal model the marginal over a subset of
features is the mixture with those columns of ``means`` and ``log_sigma``
(:func:`marginal_params`), so 1-D and 2-D views are exact, not approximations.

Colours: component ``k`` is drawn in ``component_color(k)`` in every figure,
from the Okabe–Ito colour-blind-safe palette (:data:`COMPONENT_COLORS`,
repeating after seven components).  When a fitted model is compared with the
truth its components are first matched to the true ones
(:func:`mogsgd.metrics.match_components`), so colour ``k`` is true component
``k`` in those figures.  Ellipses are axis-aligned (diagonal covariances) with
semi-axes ``r * sigma`` for each ``r`` in ``n_std``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib import rcParams
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from mogsgd._files import atomic_write, check_writable
from mogsgd._plot_common import (
    COMPONENT_COLORS,
    DATA_COLOR,
    MIN_PNG_DPI,
    MIXTURE_COLOR,
    add_legend,
    apply_style,
    check_dims,
    check_params,
    check_X,
    check_y,
    component_color,
    component_handles,
    component_marker,
    curve_handles,
    draw_ellipses,
    draw_means,
    feature_label,
    grid_limits,
    label_colors,
    marginal_params,
    new_axes,
    new_figure,
    padded_range,
    plot_1d,
    point_style,
    sigma_label,
)
from mogsgd.covariance.ops import (
    log_prob,
    permute_components,
    responsibilities,
    weighted_log_prob,
)
from mogsgd.errors import ValidationError
from mogsgd.metrics import match_components, parameter_errors
from mogsgd.params import MixtureParams
from mogsgd.plot_training import (
    animate_fit,
    plot_learning_curves,
    plot_optimizer_comparison,
    plot_parameter_paths,
    plot_selection,
)

__all__ = [
    "COMPONENT_COLORS",
    "component_color",
    "component_marker",
    "marginal_params",
    "plot_data",
    "plot_marginals",
    "plot_density",
    "plot_fit_vs_truth",
    "plot_predictions",
    "plot_pairs",
    "plot_learning_curves",
    "plot_optimizer_comparison",
    "plot_parameter_paths",
    "animate_fit",
    "plot_selection",
    "save_figure",
    "informative_features",
    "PAIR_FEATURES",
]

#: A pair plot shows at most this many features by default (``informative_features``).
PAIR_FEATURES = 5
#: Largest side of a pair plot, inches (its panels shrink to fit).
MAX_PAIRS_INCHES = 15.0
#: A feature with one value in at least this share of its rows is chosen for a figure only
#: after every other feature (see :func:`informative_features`).
MOSTLY_ONE_VALUE = 0.9
#: Rows (evenly spaced) on which that share is counted.
MODE_ROWS = 20_000


# ======================================================= choosing features


def informative_features(X, params: MixtureParams | None = None, y=None, *,
                         count: int = PAIR_FEATURES) -> list[int]:
    """The ``count`` features that separate the components most, best first.

    With ``params``, feature ``d`` scores the share of its variance that the spread of the
    component means explains, ``R^2_d = sum_k pi_k (mu_kd - mu_d)^2 / var(x_d)`` with
    ``mu_d = sum_k pi_k mu_kd`` and ``var(x_d)`` the data's variance (not the components':
    a few components collapsed onto one value of a near-constant column would make any
    ratio to their variances huge).  With labels ``y`` instead, the same with the labels'
    frequencies and means (the classical ``eta^2``).  Without either it scores how far
    from one hump the feature looks: Sarle's bimodality coefficient
    ``(skewness^2 + 1) / kurtosis`` (1/3 for a normal, 5/9 for a uniform, up to 1 for two
    spikes).  Constant features score lowest, and features with one value in at least
    ``MOSTLY_ONE_VALUE`` of their rows (digits' border pixels, sparse indicator columns)
    rank after every other feature whatever their score: two spikes make the
    bimodality coefficient its largest, and a component sitting on the rare values makes
    ``R^2`` large, yet such a column makes a poor axis to look at.

    Returns
    -------
    list of int
        ``min(count, D)`` distinct feature indices, the highest score first.
    """
    X = check_X(X)
    n, d = X.shape
    if params is not None:
        check_params(params, d)
        w, means = params.weights, params.means
    elif y is not None and len(np.unique(check_y(y, n))) > 1:
        labels, codes = np.unique(check_y(y, n), return_inverse=True)
        w = np.bincount(codes, minlength=len(labels)) / n
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a feature missing in a class
            means = np.array([np.nanmean(X[codes == c], axis=0) for c in range(len(labels))])
        means = np.where(np.isfinite(means), means, np.nanmean(X, axis=0))
    else:
        return _ranked(_bimodality(X), count, _mostly_one_value(X))
    centre = w @ means
    with np.errstate(divide="ignore", invalid="ignore"):
        return _ranked((w @ (means - centre) ** 2) / np.nanvar(X, axis=0), count,
                       _mostly_one_value(X))


def _mostly_one_value(X: np.ndarray) -> np.ndarray:
    """Per feature: does one value hold at least ``MOSTLY_ONE_VALUE`` of the observed rows?

    Counted on at most ``MODE_ROWS`` evenly spaced rows (no randomness)."""
    rows = X[::max(1, len(X) // MODE_ROWS)]
    flags = np.zeros(X.shape[1], dtype=bool)
    for j in range(X.shape[1]):
        column = rows[:, j]
        column = column[~np.isnan(column)]
        if len(column):
            flags[j] = np.unique(column, return_counts=True)[1].max() >= (
                MOSTLY_ONE_VALUE * len(column))
    return flags


def _bimodality(X: np.ndarray) -> np.ndarray:
    """Sarle's bimodality coefficient per feature, NaN ignored; -inf for constant ones."""
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        z = (X - np.nanmean(X, axis=0)) / np.nanstd(X, axis=0)
        skew = np.nanmean(z ** 3, axis=0)
        kurt = np.nanmean(z ** 4, axis=0)
        return (skew ** 2 + 1.0) / kurt


def _ranked(score: np.ndarray, count: int, last: np.ndarray) -> list[int]:
    """Indices by decreasing score, the features flagged in ``last`` after all others."""
    score = np.where(np.isfinite(score), score, -np.inf)
    order = np.lexsort((-score, last))
    return [int(j) for j in order[:max(1, int(count))]]


# ============================================================ data figures


def plot_data(
    X,
    y=None,
    params: MixtureParams | None = None,
    *,
    ax: Axes | None = None,
    dims: Sequence[int] = (0, 1),
    n_std: Sequence[float] = (1, 2, 3),
    feature_names: Sequence[str] | None = None,
    title: str | None = None,
) -> Axes:
    """Scatter of the data coloured by component, with means and sigma ellipses.

    Parameters
    ----------
    X : array of shape (n, D)
    y : int array of shape (n,), optional
        Labels; label ``k`` is drawn in ``component_color(k)``.
    params : MixtureParams, optional
        Components drawn as mean markers and axis-aligned ellipses with
        semi-axes ``r * sigma_k`` for ``r`` in ``n_std``.
    dims : two feature indices
        The features on the x and y axes when D > 2 (the ellipses are then
        those of the exact 2-D marginal).
    feature_names : D names, optional; default ``x_0 .. x_{D-1}``

    With D = 1 the figure is a histogram (stacked by label) with the weighted
    component densities and the mixture density, not a scatter.

    Returns
    -------
    Axes
    """
    X = check_X(X)
    n, d = X.shape
    y = check_y(y, n)
    if params is not None:
        check_params(params, d)
    ax = new_axes(ax)
    if d == 1:
        plot_1d(ax, X[:, 0], y, params, xlabel=feature_label(feature_names, 0))
        ax.set_title(title if title is not None else "Data" + (" and mixture" if params else ""))
        return ax
    i, j = check_dims(dims, d)
    style = point_style(n)
    colors = DATA_COLOR if y is None else label_colors(y)
    ax.scatter(X[:, i], X[:, j], c=colors, zorder=2, **style)
    handles: list = []
    if params is not None:
        p2 = marginal_params(params, (i, j))
        draw_ellipses(ax, p2, n_std)
        draw_means(ax, p2.means)
        handles = component_handles(params.n_components, params)
        handles += [
            Line2D([], [], linestyle="none", marker="X", markersize=9, color="white",
                   markeredgecolor="black", label="mean"),
            Line2D([], [], color="0.3", linewidth=1.4, label=sigma_label(n_std)),
        ]
    elif y is not None:
        handles = component_handles(int(max(y.max(), 0)) + 1, None, prefix="label")
    ax.set_xlabel(feature_label(feature_names, i))
    ax.set_ylabel(feature_label(feature_names, j))
    ax.set_aspect("equal", adjustable="datalim")
    if title is None:
        title = "Data" if params is None else f"Data and {params.n_components} components"
        if d > 2:
            title += f" (2 of {d} features)" if feature_names is not None else \
                f" (features {i}, {j} of {d})"
    ax.set_title(title)
    apply_style(ax)
    add_legend(ax, handles)
    return ax


def plot_marginals(
    X,
    params: MixtureParams,
    y=None,
    *,
    fig: Figure | None = None,
    feature_names: Sequence[str] | None = None,
    bins=None,
    ncols: int = 3,
) -> Figure:
    """One panel per feature: histogram with weighted component densities and the mixture.

    The marginal of feature ``d`` of a diagonal mixture is the 1-D mixture
    ``sum_k pi_k N(x | mu_kd, sigma_kd^2)``; component curves are
    ``pi_k N(x | mu_kd, sigma_kd^2)`` so they add up to the mixture curve.

    Parameters
    ----------
    X : array of shape (n, D)
    params : MixtureParams with D features
    y : int array of shape (n,), optional; stacks the histogram by label
    fig : an empty Figure to draw into, optional
    ncols : panels per row

    Returns
    -------
    Figure
    """
    X = check_X(X)
    n, d = X.shape
    check_params(params, d)
    y = check_y(y, n)
    cols = min(d, ncols)
    rows = -(-d // cols)
    fig = new_figure(fig, (4.2 * cols, 3.4 * rows + 0.6))
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for f in range(d):
        plot_1d(axes[f], X[:, f], y, marginal_params(params, [f]), bins=bins,
                 xlabel=feature_label(feature_names, f), show_legend=False)
        axes[f].set_title(f"feature {feature_label(feature_names, f)}")
    for ax in axes[d:]:
        ax.set_visible(False)
    hist_label = "data (histogram" + (", stacked by label)" if y is not None else ")")
    handles = [Patch(facecolor=DATA_COLOR, alpha=0.35, label=hist_label), *curve_handles(params)]
    fig.legend(handles=handles, loc="outside lower center",
               ncols=len(handles) if len(handles) <= 6 else 4, fontsize="small", frameon=False)
    fig.suptitle("Marginal densities per feature")
    return fig


def plot_density(
    X,
    params: MixtureParams,
    *,
    ax: Axes | None = None,
    dims: Sequence[int] = (0, 1),
    span: float = 10.0,
    n_levels: int = 12,
    grid_size: int = 200,
    show_data: bool = True,
    feature_names: Sequence[str] | None = None,
) -> Axes:
    """Filled contours of ``log p(x)`` of the mixture, with the data on top.

    ``log p`` comes from :func:`mogsgd.density.log_prob` on a ``grid_size``
    square grid; for D > 2 it is the exact 2-D marginal over ``dims``.
    Levels cover ``[max log p - span, max log p]`` (nats); lower values get
    the bottom colour.  With D = 1 the density is drawn over a histogram.

    Returns
    -------
    Axes
        A colour bar labelled ``log p`` is added next to it.
    """
    X = check_X(X)
    n, d = X.shape
    check_params(params, d)
    ax = new_axes(ax)
    if d == 1:
        plot_1d(ax, X[:, 0], None, params, xlabel=feature_label(feature_names, 0))
        ax.set_title("Mixture density")
        return ax
    i, j = check_dims(dims, d)
    p2 = marginal_params(params, (i, j))
    x_lo, x_hi = grid_limits(X[:, i], p2.means[:, 0], p2.sigma[:, 0])
    y_lo, y_hi = grid_limits(X[:, j], p2.means[:, 1], p2.sigma[:, 1])
    gx, gy = np.meshgrid(np.linspace(x_lo, x_hi, grid_size), np.linspace(y_lo, y_hi, grid_size))
    logp = log_prob(np.column_stack([gx.ravel(), gy.ravel()]), p2).reshape(gx.shape)
    top = float(np.max(logp))
    levels = np.linspace(top - span, top, n_levels + 1)
    cs = ax.contourf(gx, gy, logp, levels=levels, cmap="viridis", extend="min", zorder=1)
    ax.contour(gx, gy, logp, levels=levels[::2], colors="white", linewidths=0.4, alpha=0.5,
               zorder=1)
    cbar = ax.figure.colorbar(cs, ax=ax)
    ticks = MaxNLocator(6).tick_values(top - span, top)
    cbar.set_ticks(ticks[(ticks >= top - span) & (ticks <= top)])
    names = f"{feature_label(feature_names, i)}, {feature_label(feature_names, j)}"
    cbar.set_label(f"log p({names})  [nats]")
    if show_data:
        style = point_style(n)
        style["s"] = max(style["s"] * 0.6, 1.5)
        ax.scatter(X[:, i], X[:, j], color="white", edgecolors="black", zorder=2,
                   **{**style, "linewidths": 0.2, "alpha": min(style["alpha"] + 0.1, 0.8)})
    draw_means(ax, p2.means, edgecolors="white", linewidths=1.2)
    ax.set_xlim(x_lo, x_hi)
    ax.set_ylim(y_lo, y_hi)
    ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel(feature_label(feature_names, i))
    ax.set_ylabel(feature_label(feature_names, j))
    title = "Log-density of the mixture"
    if d > 2:
        title += " (2-D marginal)" if feature_names is not None else \
            f" (marginal over features {i}, {j})"
    ax.set_title(title)
    handles = component_handles(params.n_components, params, prefix="mean of component")
    for c, h in enumerate(handles):
        h.set_marker(component_marker(c))
        h.set_markeredgecolor("black")
    add_legend(ax, handles, loc="upper right" if params.n_components <= 4 else "best")
    return ax


def plot_predictions(
    X,
    params: MixtureParams,
    *,
    ax: Axes | None = None,
    dims: Sequence[int] = (0, 1),
    n_std: Sequence[float] = (1, 2),
    min_alpha: float = 0.12,
    feature_names: Sequence[str] | None = None,
) -> Axes:
    """Points coloured by ``argmax_k gamma_ik`` with opacity from ``max_k gamma_ik``.

    Responsibilities come from :func:`mogsgd.density.responsibilities` on all
    D features.  Opacity maps ``max_k gamma_ik`` from its floor ``1/K`` (a toss-up,
    ``min_alpha``) to 1 (certain, opaque), so the uncertain points between
    components fade out.  With D = 1 the y axis shows ``max_k gamma_ik`` itself
    and the curves ``gamma_k(x)``.

    Returns
    -------
    Axes
    """
    X = check_X(X)
    n, d = X.shape
    check_params(params, d)
    ax = new_axes(ax)
    k = params.n_components
    resp = responsibilities(X, params)
    pred = np.argmax(resp, axis=1)
    conf = resp[np.arange(n), pred]
    rel = (conf - 1.0 / k) / (1.0 - 1.0 / k) if k > 1 else np.ones(n)
    colors = label_colors(pred)
    colors[:, 3] = min_alpha + (1.0 - min_alpha) * np.clip(rel, 0.0, 1.0)
    style = point_style(n)
    style.pop("alpha")
    style["s"] = max(style["s"], 6.0)
    handles = component_handles(k, None, prefix="predicted")
    handles.append(Line2D([], [], linestyle="none", marker="o", markersize=7, color="0.2",
                          alpha=max(min_alpha, 0.3),
                          label=f"faint: uncertain (max γ ≈ 1/K = {1 / k:.2f})"))
    if d == 1:
        lo, hi = grid_limits(X[:, 0], params.means[:, 0], params.sigma[:, 0])
        grid = np.linspace(lo, hi, 400)[:, None]
        gamma = responsibilities(grid, params)
        for c in range(k):
            ax.plot(grid[:, 0], gamma[:, c], color=component_color(c), linewidth=1.8)
        # the points as a jittered strip under the curves
        jitter = np.random.default_rng(0).uniform(-0.035, 0.035, n)
        ax.scatter(X[:, 0], -0.09 + jitter, c=colors, zorder=3, **style)
        ax.axhline(0.0, color="0.6", linewidth=0.6)
        ax.set_ylim(-0.14, 1.05)
        ax.set_yticks(np.linspace(0, 1, 6))
        ax.set_ylabel("responsibility  $\\gamma_k(x)$ (curves); points below")
        ax.set_xlabel(feature_label(feature_names, 0))
    else:
        i, j = check_dims(dims, d)
        ax.scatter(X[:, i], X[:, j], c=colors, zorder=2, **style)
        p2 = marginal_params(params, (i, j))
        draw_ellipses(ax, p2, n_std, scale_width=0.7)
        draw_means(ax, p2.means)
        ax.set_aspect("equal", adjustable="datalim")
        ax.set_xlabel(feature_label(feature_names, i))
        ax.set_ylabel(feature_label(feature_names, j))
    ax.set_title("Predicted components (opacity = max responsibility)")
    apply_style(ax)
    add_legend(ax, handles)
    return ax


def plot_pairs(
    X,
    params: MixtureParams | None = None,
    y=None,
    *,
    fig: Figure | None = None,
    features: Sequence[int] | None = None,
    n_std: Sequence[float] = (1, 2),
    feature_names: Sequence[str] | None = None,
    bins=None,
    corner: bool = False,
) -> Figure:
    """Pair plot: every 2-D projection off the diagonal, 1-D marginals on it.

    Off-diagonal panel (row r, column c) plots feature ``c`` against feature
    ``r`` with the projected ellipses of ``params``; diagonal panels show the
    histogram of the feature with the weighted component densities and the
    mixture density (drawn on a twin axis so the row's y ticks stay those of
    the feature).  With ``corner=True`` only the panels on and below the diagonal
    are drawn: each pair once (the upper triangle mirrors the lower one), in about
    60% of the time for five features.

    Parameters
    ----------
    X : array of shape (n, D)
    params : MixtureParams with D features, optional
    y : int array of shape (n,), optional
    fig : an empty Figure, optional
    features : indices of the features to show (default: all; see
        :func:`informative_features` to choose a few of many).  The figure is at most
        about ``MAX_PAIRS_INCHES`` (15 in) wide: panels shrink as features are added.
    corner : draw the lower triangle and the diagonal only

    Returns
    -------
    Figure
    """
    X = check_X(X)
    n, d = X.shape
    y = check_y(y, n)
    if params is not None:
        check_params(params, d)
    feats = list(range(d)) if features is None else [int(f) for f in features]
    if not feats or any(not 0 <= f < d for f in feats) or len(set(feats)) != len(feats):
        raise ValidationError(f"features must be distinct indices in 0..{d - 1}, got {features}")
    m = len(feats)
    # panels shrink with many features so that the figure stays within MAX_PAIRS_INCHES
    size = min(max(2.3, min(3.2, 10.0 / m)), MAX_PAIRS_INCHES / m)
    fig = new_figure(fig, (size * m + 0.4, size * m + 0.8))
    grid = fig.add_gridspec(m, m)
    # every panel first (twin axes for the histograms come after them in fig.axes)
    axes = {(r, c): fig.add_subplot(grid[r, c]) for r in range(m)
            for c in range(r + 1 if corner else m)}
    limits = {}
    for f in feats:
        lo, hi = padded_range(X[:, f], 0.05)
        if params is not None:
            lo = min(lo, float(np.min(params.means[:, f])))
            hi = max(hi, float(np.max(params.means[:, f])))
        limits[f] = (lo, hi)
    style = point_style(n)
    style["s"] = max(style["s"] * 0.5, 1.5)
    # tens of thousands of markers as SVG paths take seconds to write and to open: the
    # point clouds are embedded as images then (ellipses, curves and text stay vectors)
    style["rasterized"] = n * m * (m - 1) > 20_000
    colors = DATA_COLOR if y is None else label_colors(y)
    for r, fr in enumerate(feats):
        for c, fc in enumerate(feats[:r + 1] if corner else feats):
            ax = axes[r, c]
            if r == c:
                ax.set_ylim(*limits[fr])
                hist_ax = ax.twinx()   # (which moves the ticks back to the left: set after)
                # a corner plot's first row holds only the histogram: no feature scale there
                labelled = c == 0 and not (corner and m > 1)
                ax.tick_params(left=labelled, labelleft=labelled)
                p1 = None if params is None else marginal_params(params, [fr])
                plot_1d(hist_ax, X[:, fr], y, p1, bins=bins, show_legend=False)
                # the twin only holds the curves: no axis of its own to lay out or draw
                hist_ax.set_axis_off()
                ax.spines[["top", "right"]].set_visible(False)
            else:
                ax.scatter(X[:, fc], X[:, fr], c=colors, zorder=2, **style)
                if params is not None:
                    p2 = marginal_params(params, (fc, fr))
                    draw_ellipses(ax, p2, n_std, scale_width=0.7, gid_prefix=f"pair{r}{c}-c",
                                  autoscale=False)  # the limits are set below
                    draw_means(ax, p2.means, size=45, linewidths=0.7)
                ax.set_ylim(*limits[fr])
                apply_style(ax)
                ax.tick_params(labelleft=c == 0)
            ax.set_xlim(*limits[fc])
            ax.xaxis.set_major_locator(MaxNLocator(4))
            ax.yaxis.set_major_locator(MaxNLocator(4))
            ax.tick_params(labelbottom=r == m - 1, labelsize="small")
            if r == m - 1:
                ax.set_xlabel(feature_label(feature_names, fc))
            if c == 0 and (r > 0 or not corner or m == 1):
                ax.set_ylabel(feature_label(feature_names, fr))
    handles: list = []
    if params is not None:
        handles = component_handles(params.n_components, params)
        handles.append(Line2D([], [], color=MIXTURE_COLOR, linewidth=2.0,
                              linestyle="--", label="mixture density (diagonal panels)"))
        handles.append(Line2D([], [], color="0.3", linewidth=1.0, label=sigma_label(n_std)))
    elif y is not None:
        handles = component_handles(int(max(y.max(), 0)) + 1, None, prefix="label")
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 4),
                   fontsize="small", frameon=False)
    fig.suptitle("Pairwise projections" + (" with component ellipses" if params else ""))
    return fig


def plot_fit_vs_truth(
    X,
    fitted: MixtureParams,
    true: MixtureParams,
    *,
    fig: Figure | None = None,
    dims: Sequence[int] = (0, 1),
    n_std: Sequence[float] = (1, 2),
    feature_names: Sequence[str] | None = None,
) -> Figure:
    """Fitted against true parameters, components matched by their means.

    Four panels: (a) the data with true (dashed) and fitted (solid) ellipses
    and a segment from each true mean to its fitted mean (for D = 1: true
    dashed and fitted solid component densities); (b) weights, true vs fitted;
    (c) every mean coordinate ``mu_kd``, fitted against true; (d) every
    ``sigma_kd``, fitted against true, on the identity line when exact.
    Colour ``k`` is true component ``k`` and the fitted one matched to it.

    Returns
    -------
    Figure
    """
    X = check_X(X)
    n, d = X.shape
    check_params(fitted, d, "fitted")
    check_params(true, d, "true")
    if fitted.n_components != true.n_components:
        raise ValidationError(f"fitted has {fitted.n_components} components, true has "
                              f"{true.n_components}")
    perm = match_components(true.means, fitted.means)
    aligned = permute_components(fitted, perm)
    errors = parameter_errors(true, fitted)
    k = true.n_components
    fig = new_figure(fig, (11.0, 9.0))
    axes = fig.subplot_mosaic([["data", "weights"], ["means", "sigmas"]],
                              width_ratios=[1.25, 1.0])
    ax = axes["data"]
    if d == 1:
        plot_1d(ax, X[:, 0], None, None, xlabel=feature_label(feature_names, 0),
                 show_legend=False)
        lo, hi = grid_limits(X[:, 0], true.means[:, 0], true.sigma[:, 0])
        grid = np.linspace(lo, hi, 400)[:, None]
        for p, ls in ((true, "--"), (aligned, "-")):
            comp = np.exp(weighted_log_prob(grid, p))
            for c in range(k):
                ax.plot(grid[:, 0], comp[:, c], color=component_color(c), linestyle=ls,
                        linewidth=1.6)
        ax.set_xlim(lo, hi)
    else:
        i, j = check_dims(dims, d)
        ax.scatter(X[:, i], X[:, j], color=DATA_COLOR, zorder=1,
                   **{**point_style(n), "alpha": 0.25})
        t2, f2 = marginal_params(true, (i, j)), marginal_params(aligned, (i, j))
        draw_ellipses(ax, t2, n_std, linestyle="--", gid_prefix="true")
        draw_ellipses(ax, f2, n_std, gid_prefix="fitted")
        for c in range(k):
            ax.plot([t2.means[c, 0], f2.means[c, 0]], [t2.means[c, 1], f2.means[c, 1]],
                    color="black", linewidth=0.8, zorder=4)
        draw_means(ax, f2.means)
        # an open ring drawn over the fitted cross, so both show when they coincide
        draw_means(ax, t2.means, marker="o", size=230, colors=["none"] * k,
                    edgecolors=[component_color(c) for c in range(k)], linewidths=2.0,
                    zorder=6)
        ax.set_aspect("equal", adjustable="datalim")
        ax.set_xlabel(feature_label(feature_names, i))
        ax.set_ylabel(feature_label(feature_names, j))
    ax.set_title("(a) components: true dashed, fitted solid")
    apply_style(ax)
    add_legend(ax, [
        Line2D([], [], color="0.2", linestyle="--", label="true"),
        Line2D([], [], color="0.2", linestyle="-", label="fitted"),
        *([] if d == 1 else [
            Line2D([], [], linestyle="none", marker="o", markerfacecolor="none",
                   markeredgecolor="0.2", markeredgewidth=2, markersize=12,
                   label="true mean"),
            Line2D([], [], linestyle="none", marker="X", color="0.6", markeredgecolor="black",
                   markersize=9, label="fitted mean")]),
    ])

    ax = axes["weights"]
    pos = np.arange(k)
    colors = [component_color(c) for c in range(k)]
    ax.bar(pos - 0.2, true.weights, width=0.4, color="white", edgecolor=colors, hatch="///",
           linewidth=1.5, label="true")
    ax.bar(pos + 0.2, aligned.weights, width=0.4, color=colors, edgecolor="black",
           linewidth=0.6, label="fitted")
    ax.set_xticks(pos, [str(c) for c in range(k)])
    ax.set_xlabel("component")
    ax.set_ylabel("weight  π")
    ax.set_title(f"(b) weights   max |Δπ| = {errors['weights']:.3g}")
    apply_style(ax)
    ax.legend(handles=[Patch(facecolor="white", edgecolor="0.2", hatch="///", label="true"),
                       Patch(facecolor="0.5", edgecolor="black", label="fitted")],
              fontsize="small", loc="best")

    for key, tv, fv, title, sym in (
        ("means", true.means, aligned.means, f"(c) means   max |Δμ| = {errors['means']:.3g}",
         "μ"),
        ("sigmas", true.sigma, aligned.sigma,
         f"(d) standard deviations   max |Δσ| = {errors['sigmas']:.3g}", "σ"),
    ):
        ax = axes[key]
        lo, hi = padded_range(np.concatenate([tv.ravel(), fv.ravel()]), 0.08)
        ax.plot([lo, hi], [lo, hi], color="0.5", linewidth=1.0, linestyle=":", zorder=1,
                label="fitted = true")
        for c in range(k):
            ax.scatter(tv[c], fv[c], color=component_color(c), s=40, edgecolors="black",
                       linewidths=0.5, zorder=3)
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_aspect("equal", adjustable="box")
        ax.set_xlabel(f"true {sym} (all k, d)")
        ax.set_ylabel(f"fitted {sym} (all k, d)")
        ax.set_title(title)
        apply_style(ax)
        ax.legend(fontsize="small", loc="upper left")
    fig.suptitle("Fitted vs true parameters (components matched by their means)")
    return fig


# ================================================================== saving


def save_figure(
    fig: Figure,
    path_stem: str | os.PathLike,
    formats: Sequence[str] = ("png", "svg"),
    dpi: int = 150,
    *,
    force: bool = False,
) -> list[Path]:
    """Write ``fig`` as ``path_stem.<format>`` for each format (PNG at >= 150 dpi, SVG, PDF).

    Every target is checked before anything is written, so an existing file
    (without ``force=True``) leaves no partial set behind; each file is
    written atomically.  SVG and PDF carry no creation date, so the same
    figure gives the same bytes.

    Returns
    -------
    list of Path
        The files written, in the order of ``formats``.
    """
    allowed = ("png", "svg", "pdf")
    fmts = [str(f).lower().lstrip(".") for f in formats]
    bad = [f for f in fmts if f not in allowed]
    if not fmts or bad:
        raise ValidationError(f"formats must be drawn from {allowed}, got {tuple(formats)}")
    if isinstance(dpi, bool) or not isinstance(dpi, int | float) or dpi < MIN_PNG_DPI:
        raise ValidationError(f"dpi must be at least {MIN_PNG_DPI} for publication-quality "
                              f"PNGs, got {dpi!r}")
    if not isinstance(fig, Figure):
        fig = getattr(fig, "figure", fig)
        if not isinstance(fig, Figure):
            raise TypeError(f"fig must be a matplotlib Figure, got {type(fig).__name__}")
    targets = [Path(f"{os.fspath(path_stem)}.{f}") for f in fmts]
    for t in targets:
        check_writable(t, force=force)
    # lay the figure out and measure its tight bounding box once, not once per file:
    # savefig would lay it out and measure every artist's extent again before each file
    # (much of a pair plot's saving time); the engine is restored after
    engine = fig.get_layout_engine()
    fig.draw_without_rendering()
    bbox = fig.get_tightbbox().padded(float(rcParams["savefig.pad_inches"]))
    fig.set_layout_engine("none")
    try:
        for fmt, target in zip(fmts, targets, strict=True):
            metadata = {"Date": None} if fmt == "svg" else {"CreationDate": None} \
                if fmt == "pdf" else {}
            with atomic_write(target, force=force) as tmp:
                fig.savefig(tmp, format=fmt, dpi=dpi, metadata=metadata, bbox_inches=bbox)
    finally:
        if engine is not None:
            fig.set_layout_engine(engine)
    return targets

