"""Matplotlib figures for data, fitted mixtures and training runs.

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
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.animation import FuncAnimation, PillowWriter
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Ellipse, Patch
from matplotlib.ticker import FuncFormatter, MaxNLocator

from mogsgd._files import atomic_write, check_writable
from mogsgd.density import log_prob, responsibilities, weighted_log_prob
from mogsgd.errors import ValidationError
from mogsgd.metrics import match_components, parameter_errors
from mogsgd.params import MixtureParams
from mogsgd.validation import check_data

__all__ = [
    "COMPONENT_COLORS",
    "component_color",
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
    "save_figure",
]

#: Okabe & Ito (2008) colour-blind-safe palette, ordered for contrast on white
#: (yellow, the weakest on white, comes last).  Black is kept for the mixture.
COMPONENT_COLORS: tuple[str, ...] = (
    "#0072B2",  # blue
    "#E69F00",  # orange
    "#009E73",  # bluish green
    "#D55E00",  # vermillion
    "#CC79A7",  # reddish purple
    "#56B4E9",  # sky blue
    "#F0E442",  # yellow
)
MIXTURE_COLOR = "#000000"
DATA_COLOR = "#7f7f7f"
#: Colours for series that are not components (train/validation, optimisers).
SERIES_COLORS: tuple[str, ...] = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00",
                                  "#56B4E9", "#000000")
_REFERENCE_STYLES = ("--", ":", "-.", (0, (5, 1, 1, 1, 1, 1)))
_SIGMA_LINEWIDTHS = (2.0, 1.4, 1.0, 0.8)
_SIGMA_ALPHAS = (1.0, 0.75, 0.5, 0.35)
_FEATURE_LINESTYLES = ("-", "--", ":", "-.")
_MIN_PNG_DPI = 150

History = Mapping[str, Sequence]


# ============================================================ small helpers


def component_color(k: int) -> str:
    """The colour of component ``k`` in every figure (Okabe–Ito, cycling after 7)."""
    return COMPONENT_COLORS[int(k) % len(COMPONENT_COLORS)]


def marginal_params(params: MixtureParams, dims: Sequence[int]) -> MixtureParams:
    """The exact marginal mixture over features ``dims`` of a diagonal model.

    Integrating out the other features of ``N(mu_k, diag sigma_k^2)`` leaves
    ``N(mu_k[dims], diag sigma_k[dims]^2)``, with the same weights.
    Returns a MixtureParams with K components in ``len(dims)`` features.
    """
    idx = list(dims)
    return MixtureParams(params.means[:, idx], params.log_sigma[:, idx], params.logits)


def _new_axes(ax: Axes | None, figsize=(6.4, 5.0)) -> Axes:
    if ax is not None:
        return ax
    _, ax = plt.subplots(figsize=figsize, layout="constrained")
    return ax


def _new_figure(fig: Figure | None, figsize) -> Figure:
    if fig is not None:
        return fig
    return plt.figure(figsize=figsize, layout="constrained")


def _style(ax: Axes, grid: bool = True) -> None:
    ax.spines[["top", "right"]].set_visible(False)
    if grid:
        ax.grid(True, color="0.85", linewidth=0.6)
        ax.set_axisbelow(True)


def _check_X(X) -> np.ndarray:
    return check_data(X, allow_nan=True)


def _check_params(params, n_features: int | None = None, name: str = "params") -> MixtureParams:
    if not isinstance(params, MixtureParams):
        raise TypeError(f"{name} must be a MixtureParams, got {type(params).__name__}")
    if n_features is not None and params.n_features != n_features:
        raise ValidationError(
            f"{name} has {params.n_features} features but X has {n_features}"
        )
    return params


def _check_y(y, n_samples: int) -> np.ndarray | None:
    if y is None:
        return None
    arr = np.asarray(y)
    if arr.shape != (n_samples,):
        raise ValidationError(f"y must have shape ({n_samples},), got {arr.shape}")
    if arr.dtype.kind not in "iu":
        if arr.dtype.kind == "f" and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise ValidationError(f"y must hold integer labels, got dtype {arr.dtype}")
    return arr


def _check_dims(dims, n_features: int, count: int = 2) -> tuple[int, ...]:
    try:
        out = tuple(int(d) for d in dims)
    except TypeError:
        raise ValidationError(f"dims must be a sequence of {count} feature indices, "
                              f"got {dims!r}") from None
    if len(out) != count or len(set(out)) != count:
        raise ValidationError(f"dims must be {count} distinct feature indices, got {dims!r}")
    for d in out:
        if not 0 <= d < n_features:
            raise ValidationError(f"dims {dims!r} out of range for {n_features} features")
    return out


def _feature_label(names: Sequence[str] | None, d: int) -> str:
    return str(names[d]) if names is not None else f"$x_{{{d}}}$"


def _label_colors(y: np.ndarray) -> np.ndarray:
    """An RGBA row per point: label k in component_color(k), negative labels grey."""
    from matplotlib.colors import to_rgba_array

    palette = to_rgba_array(list(COMPONENT_COLORS))
    colors = palette[np.mod(y, len(COMPONENT_COLORS))]
    colors[y < 0] = to_rgba_array([DATA_COLOR])[0]
    return colors


def _point_style(n: int) -> dict:
    """Marker size and opacity that keep 50 or 50,000 points readable."""
    size = float(np.clip(3000.0 / max(n, 1), 2.0, 25.0))
    alpha = 0.75 if n <= 500 else 0.5 if n <= 5000 else 0.3
    return {"s": size, "alpha": alpha, "linewidths": 0}


def _draw_ellipses(ax: Axes, params2: MixtureParams, n_std: Sequence[float], *,
                   linestyle="-", colors=None, gid_prefix="component",
                   scale_width: float = 1.0) -> list[Ellipse]:
    """Axis-aligned ellipses with semi-axes ``r * sigma_k`` for a 2-feature model."""
    patches = []
    sigma = params2.sigma
    for k in range(params2.n_components):
        color = component_color(k) if colors is None else colors[k]
        for i, r in enumerate(n_std):
            e = Ellipse(
                xy=tuple(params2.means[k]), width=2 * r * sigma[k, 0], height=2 * r * sigma[k, 1],
                angle=0.0, fill=False, edgecolor=color, linestyle=linestyle,
                linewidth=scale_width * _SIGMA_LINEWIDTHS[min(i, 3)],
                alpha=_SIGMA_ALPHAS[min(i, 3)], zorder=3,
            )
            e.set_gid(f"{gid_prefix}{k}-{r:g}sigma")
            ax.add_patch(e)
            patches.append(e)
    return patches


def _draw_means(ax: Axes, means2: np.ndarray, *, marker="X", size=110, colors=None,
                zorder=5, **kwargs):
    k = means2.shape[0]
    cols = [component_color(i) for i in range(k)] if colors is None else colors
    return ax.scatter(means2[:, 0], means2[:, 1], c=cols, marker=marker, s=size,
                      edgecolors=kwargs.pop("edgecolors", "black"),
                      linewidths=kwargs.pop("linewidths", 1.0), zorder=zorder, **kwargs)


def _sigma_label(n_std: Sequence[float]) -> str:
    return ", ".join(f"{r:g}σ" for r in n_std) + " ellipses"


def _component_handles(k: int, params: MixtureParams | None, prefix="component") -> list:
    handles = []
    for i in range(k):
        label = f"{prefix} {i}"
        if params is not None:
            label += f"  (π = {params.weights[i]:.2f})"
        handles.append(Line2D([], [], linestyle="none", marker="o", markersize=7,
                              color=component_color(i), label=label))
    return handles


def _legend(ax: Axes, handles: list, **kwargs):
    if not handles:
        return None
    kwargs.setdefault("loc", "best")
    kwargs.setdefault("fontsize", "small")
    kwargs.setdefault("framealpha", 0.9)
    kwargs.setdefault("ncols", 2 if len(handles) > 7 else 1)
    return ax.legend(handles=handles, **kwargs)


def _padded_range(values: np.ndarray, pad: float = 0.05) -> tuple[float, float]:
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    lo, hi = (float(v.min()), float(v.max())) if v.size else (0.0, 1.0)
    span = hi - lo if hi > lo else max(abs(hi), 1.0)
    return lo - pad * span, hi + pad * span


# ===================================================================== 1-D


def _default_bins(n: int) -> int:
    """About 1.5 sqrt(n) bins, between 10 and 80: finer than numpy's "auto" for mixtures."""
    return int(np.clip(1.5 * np.sqrt(n), 10, 80))


def _curve_handles(params: MixtureParams) -> list:
    handles = [Line2D([], [], color=component_color(k), linewidth=1.8,
                      label=f"component {k}  (π = {params.weights[k]:.2f})")
               for k in range(params.n_components)]
    handles.append(Line2D([], [], color=MIXTURE_COLOR, linewidth=1.8, linestyle="--",
                          label="mixture"))
    return handles


def _plot_1d(ax: Axes, x: np.ndarray, y: np.ndarray | None, params1: MixtureParams | None,
             *, bins=None, xlabel: str = "", show_legend: bool = True) -> Axes:
    """Histogram (stacked by label) with weighted component densities and the mixture.

    Component curves are ``pi_k N(x | mu_k, sigma_k^2)``; the mixture, their sum,
    is drawn dashed on top so both stay visible where one component dominates.
    """
    x = np.asarray(x, dtype=np.float64)
    finite = np.isfinite(x)
    xs = x[finite]
    lo, hi = _padded_range(xs, 0.02)
    if params1 is not None:
        lo = min(lo, float(np.min(params1.means[:, 0] - 3.5 * params1.sigma[:, 0])))
        hi = max(hi, float(np.max(params1.means[:, 0] + 3.5 * params1.sigma[:, 0])))
    edges = np.histogram_bin_edges(xs, bins=_default_bins(xs.size) if bins is None else bins)
    width = np.diff(edges)
    n = max(xs.size, 1)
    if y is None:
        ax.hist(xs, bins=edges, density=True, color=DATA_COLOR, alpha=0.35,
                edgecolor="white", linewidth=0.4, label="data")
    else:
        labels = np.unique(y[finite])
        groups = [xs[y[finite] == lab] for lab in labels]
        weights = [np.full(g.size, 1.0 / n) for g in groups]
        # each label's share of the total density, stacked: heights add up to the histogram
        heights = [np.histogram(g, bins=edges, weights=w)[0] / width
                   for g, w in zip(groups, weights, strict=True)]
        bottom = np.zeros(len(width))
        for lab, h in zip(labels, heights, strict=True):
            color = DATA_COLOR if lab < 0 else component_color(lab)
            ax.bar(edges[:-1], h, width=width, bottom=bottom, align="edge", color=color,
                   alpha=0.35, edgecolor="white", linewidth=0.4)
            bottom += h
    handles = []
    if params1 is not None:
        grid = np.linspace(lo, hi, 400)[:, None]
        comp = np.exp(weighted_log_prob(grid, params1))
        mix = np.exp(log_prob(grid, params1))
        for k in range(params1.n_components):
            ax.plot(grid[:, 0], comp[:, k], color=component_color(k), linewidth=1.8,
                    gid=f"density-component{k}", zorder=3)
        ax.plot(grid[:, 0], mix, color=MIXTURE_COLOR, linewidth=1.8, linestyle="--",
                gid="density-mixture", zorder=4)
        handles = _curve_handles(params1)
    elif y is not None:
        handles = _component_handles(int(np.max(y)) + 1, None, prefix="label")
    hist_label = "data (histogram" + (", stacked by label)" if y is not None else ")")
    handles.insert(0, Patch(facecolor=DATA_COLOR, alpha=0.35, label=hist_label))
    ax.set_xlim(lo, hi)
    ax.set_ylim(bottom=0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    _style(ax)
    if show_legend:
        _legend(ax, handles)
    return ax


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
    X = _check_X(X)
    n, d = X.shape
    y = _check_y(y, n)
    if params is not None:
        _check_params(params, d)
    ax = _new_axes(ax)
    if d == 1:
        _plot_1d(ax, X[:, 0], y, params, xlabel=_feature_label(feature_names, 0))
        ax.set_title(title if title is not None else "Data" + (" and mixture" if params else ""))
        return ax
    i, j = _check_dims(dims, d)
    style = _point_style(n)
    colors = DATA_COLOR if y is None else _label_colors(y)
    ax.scatter(X[:, i], X[:, j], c=colors, zorder=2, **style)
    handles: list = []
    if params is not None:
        p2 = marginal_params(params, (i, j))
        _draw_ellipses(ax, p2, n_std)
        _draw_means(ax, p2.means)
        handles = _component_handles(params.n_components, params)
        handles += [
            Line2D([], [], linestyle="none", marker="X", markersize=9, color="white",
                   markeredgecolor="black", label="mean"),
            Line2D([], [], color="0.3", linewidth=1.4, label=_sigma_label(n_std)),
        ]
    elif y is not None:
        handles = _component_handles(int(max(y.max(), 0)) + 1, None, prefix="label")
    ax.set_xlabel(_feature_label(feature_names, i))
    ax.set_ylabel(_feature_label(feature_names, j))
    ax.set_aspect("equal", adjustable="datalim")
    if title is None:
        title = "Data" if params is None else f"Data and {params.n_components} components"
        if d > 2:
            title += f" (features {i}, {j} of {d})"
    ax.set_title(title)
    _style(ax)
    _legend(ax, handles)
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
    X = _check_X(X)
    n, d = X.shape
    _check_params(params, d)
    y = _check_y(y, n)
    cols = min(d, ncols)
    rows = -(-d // cols)
    fig = _new_figure(fig, (4.2 * cols, 3.4 * rows + 0.6))
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for f in range(d):
        _plot_1d(axes[f], X[:, f], y, marginal_params(params, [f]), bins=bins,
                 xlabel=_feature_label(feature_names, f), show_legend=False)
        axes[f].set_title(f"feature {_feature_label(feature_names, f)}")
    for ax in axes[d:]:
        ax.set_visible(False)
    hist_label = "data (histogram" + (", stacked by label)" if y is not None else ")")
    handles = [Patch(facecolor=DATA_COLOR, alpha=0.35, label=hist_label), *_curve_handles(params)]
    fig.legend(handles=handles, loc="outside lower center",
               ncols=len(handles) if len(handles) <= 6 else 4, fontsize="small", frameon=False)
    fig.suptitle("Marginal densities per feature")
    return fig


def _grid_limits(x: np.ndarray, means: np.ndarray, sigma: np.ndarray) -> tuple[float, float]:
    lo, hi = _padded_range(x, 0.05)
    lo = min(lo, float(np.min(means - 3 * sigma)))
    hi = max(hi, float(np.max(means + 3 * sigma)))
    return lo, hi


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
    X = _check_X(X)
    n, d = X.shape
    _check_params(params, d)
    ax = _new_axes(ax)
    if d == 1:
        _plot_1d(ax, X[:, 0], None, params, xlabel=_feature_label(feature_names, 0))
        ax.set_title("Mixture density")
        return ax
    i, j = _check_dims(dims, d)
    p2 = marginal_params(params, (i, j))
    x_lo, x_hi = _grid_limits(X[:, i], p2.means[:, 0], p2.sigma[:, 0])
    y_lo, y_hi = _grid_limits(X[:, j], p2.means[:, 1], p2.sigma[:, 1])
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
    names = f"{_feature_label(feature_names, i)}, {_feature_label(feature_names, j)}"
    cbar.set_label(f"log p({names})  [nats]")
    if show_data:
        style = _point_style(n)
        style["s"] = max(style["s"] * 0.6, 1.5)
        ax.scatter(X[:, i], X[:, j], color="white", edgecolors="black", zorder=2,
                   **{**style, "linewidths": 0.2, "alpha": min(style["alpha"] + 0.1, 0.8)})
    _draw_means(ax, p2.means, edgecolors="white", linewidths=1.2)
    ax.set_xlim(x_lo, x_hi)
    ax.set_ylim(y_lo, y_hi)
    ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel(_feature_label(feature_names, i))
    ax.set_ylabel(_feature_label(feature_names, j))
    title = "Log-density of the mixture"
    if d > 2:
        title += f" (marginal over features {i}, {j})"
    ax.set_title(title)
    handles = _component_handles(params.n_components, params, prefix="mean of component")
    for h in handles:
        h.set_marker("X")
        h.set_markeredgecolor("black")
    _legend(ax, handles, loc="upper right" if params.n_components <= 4 else "best")
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
    X = _check_X(X)
    n, d = X.shape
    _check_params(params, d)
    ax = _new_axes(ax)
    k = params.n_components
    resp = responsibilities(X, params)
    pred = np.argmax(resp, axis=1)
    conf = resp[np.arange(n), pred]
    rel = (conf - 1.0 / k) / (1.0 - 1.0 / k) if k > 1 else np.ones(n)
    colors = _label_colors(pred)
    colors[:, 3] = min_alpha + (1.0 - min_alpha) * np.clip(rel, 0.0, 1.0)
    style = _point_style(n)
    style.pop("alpha")
    style["s"] = max(style["s"], 6.0)
    handles = _component_handles(k, None, prefix="predicted")
    handles.append(Line2D([], [], linestyle="none", marker="o", markersize=7, color="0.2",
                          alpha=max(min_alpha, 0.3),
                          label=f"faint: uncertain (max γ ≈ 1/K = {1 / k:.2f})"))
    if d == 1:
        lo, hi = _grid_limits(X[:, 0], params.means[:, 0], params.sigma[:, 0])
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
        ax.set_xlabel(_feature_label(feature_names, 0))
    else:
        i, j = _check_dims(dims, d)
        ax.scatter(X[:, i], X[:, j], c=colors, zorder=2, **style)
        p2 = marginal_params(params, (i, j))
        _draw_ellipses(ax, p2, n_std, scale_width=0.7)
        _draw_means(ax, p2.means)
        ax.set_aspect("equal", adjustable="datalim")
        ax.set_xlabel(_feature_label(feature_names, i))
        ax.set_ylabel(_feature_label(feature_names, j))
    ax.set_title("Predicted components (opacity = max responsibility)")
    _style(ax)
    _legend(ax, handles)
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
) -> Figure:
    """Pair plot: every 2-D projection off the diagonal, 1-D marginals on it.

    Off-diagonal panel (row r, column c) plots feature ``c`` against feature
    ``r`` with the projected ellipses of ``params``; diagonal panels show the
    histogram of the feature with the weighted component densities and the
    mixture density (drawn on a twin axis so the row's y ticks stay those of
    the feature).

    Parameters
    ----------
    X : array of shape (n, D)
    params : MixtureParams with D features, optional
    y : int array of shape (n,), optional
    fig : an empty Figure, optional
    features : indices of the features to show (default: all)

    Returns
    -------
    Figure
    """
    X = _check_X(X)
    n, d = X.shape
    y = _check_y(y, n)
    if params is not None:
        _check_params(params, d)
    feats = list(range(d)) if features is None else [int(f) for f in features]
    if not feats or any(not 0 <= f < d for f in feats) or len(set(feats)) != len(feats):
        raise ValidationError(f"features must be distinct indices in 0..{d - 1}, got {features}")
    m = len(feats)
    size = max(2.3, min(3.2, 10.0 / m))
    fig = _new_figure(fig, (size * m + 0.4, size * m + 0.8))
    axes = fig.subplots(m, m, squeeze=False)
    limits = {}
    for f in feats:
        lo, hi = _padded_range(X[:, f], 0.05)
        if params is not None:
            lo = min(lo, float(np.min(params.means[:, f])))
            hi = max(hi, float(np.max(params.means[:, f])))
        limits[f] = (lo, hi)
    style = _point_style(n)
    style["s"] = style["s"] * 0.5
    colors = DATA_COLOR if y is None else _label_colors(y)
    for r, fr in enumerate(feats):
        for c, fc in enumerate(feats):
            ax = axes[r, c]
            if r == c:
                ax.set_ylim(*limits[fr])
                ax.tick_params(left=c == 0, labelleft=c == 0)
                hist_ax = ax.twinx()
                p1 = None if params is None else marginal_params(params, [fr])
                _plot_1d(hist_ax, X[:, fr], y, p1, bins=bins, show_legend=False)
                hist_ax.set_ylabel("")
                hist_ax.set_xlabel("")
                hist_ax.tick_params(right=False, labelright=False)
                hist_ax.grid(False)
                hist_ax.spines[["top", "right"]].set_visible(False)
                ax.spines[["top", "right"]].set_visible(False)
            else:
                ax.scatter(X[:, fc], X[:, fr], c=colors, zorder=2, **style)
                if params is not None:
                    p2 = marginal_params(params, (fc, fr))
                    _draw_ellipses(ax, p2, n_std, scale_width=0.7, gid_prefix=f"pair{r}{c}-c")
                    _draw_means(ax, p2.means, size=45, linewidths=0.7)
                ax.set_ylim(*limits[fr])
                _style(ax)
                ax.tick_params(labelleft=c == 0)
            ax.set_xlim(*limits[fc])
            ax.xaxis.set_major_locator(MaxNLocator(4))
            ax.yaxis.set_major_locator(MaxNLocator(4))
            ax.tick_params(labelbottom=r == m - 1, labelsize="small")
            if r == m - 1:
                ax.set_xlabel(_feature_label(feature_names, fc))
            if c == 0:
                ax.set_ylabel(_feature_label(feature_names, fr))
    handles: list = []
    if params is not None:
        handles = _component_handles(params.n_components, params)
        handles.append(Line2D([], [], color=MIXTURE_COLOR, linewidth=2.0,
                              linestyle="--", label="mixture density (diagonal panels)"))
        handles.append(Line2D([], [], color="0.3", linewidth=1.0, label=_sigma_label(n_std)))
    elif y is not None:
        handles = _component_handles(int(max(y.max(), 0)) + 1, None, prefix="label")
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
    X = _check_X(X)
    n, d = X.shape
    _check_params(fitted, d, "fitted")
    _check_params(true, d, "true")
    if fitted.n_components != true.n_components:
        raise ValidationError(f"fitted has {fitted.n_components} components, true has "
                              f"{true.n_components}")
    perm = match_components(true.means, fitted.means)
    aligned = MixtureParams(fitted.means[perm], fitted.log_sigma[perm], fitted.logits[perm])
    errors = parameter_errors(true, fitted)
    k = true.n_components
    fig = _new_figure(fig, (11.0, 9.0))
    axes = fig.subplot_mosaic([["data", "weights"], ["means", "sigmas"]],
                              width_ratios=[1.25, 1.0])
    ax = axes["data"]
    if d == 1:
        _plot_1d(ax, X[:, 0], None, None, xlabel=_feature_label(feature_names, 0),
                 show_legend=False)
        lo, hi = _grid_limits(X[:, 0], true.means[:, 0], true.sigma[:, 0])
        grid = np.linspace(lo, hi, 400)[:, None]
        for p, ls in ((true, "--"), (aligned, "-")):
            comp = np.exp(weighted_log_prob(grid, p))
            for c in range(k):
                ax.plot(grid[:, 0], comp[:, c], color=component_color(c), linestyle=ls,
                        linewidth=1.6)
        ax.set_xlim(lo, hi)
    else:
        i, j = _check_dims(dims, d)
        ax.scatter(X[:, i], X[:, j], color=DATA_COLOR, zorder=1,
                   **{**_point_style(n), "alpha": 0.25})
        t2, f2 = marginal_params(true, (i, j)), marginal_params(aligned, (i, j))
        _draw_ellipses(ax, t2, n_std, linestyle="--", gid_prefix="true")
        _draw_ellipses(ax, f2, n_std, gid_prefix="fitted")
        for c in range(k):
            ax.plot([t2.means[c, 0], f2.means[c, 0]], [t2.means[c, 1], f2.means[c, 1]],
                    color="black", linewidth=0.8, zorder=4)
        _draw_means(ax, f2.means)
        # an open ring drawn over the fitted cross, so both show when they coincide
        _draw_means(ax, t2.means, marker="o", size=230, colors=["none"] * k,
                    edgecolors=[component_color(c) for c in range(k)], linewidths=2.0,
                    zorder=6)
        ax.set_aspect("equal", adjustable="datalim")
        ax.set_xlabel(_feature_label(feature_names, i))
        ax.set_ylabel(_feature_label(feature_names, j))
    ax.set_title("(a) components: true dashed, fitted solid")
    _style(ax)
    _legend(ax, [
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
    _style(ax)
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
        lo, hi = _padded_range(np.concatenate([tv.ravel(), fv.ravel()]), 0.08)
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
        _style(ax)
        ax.legend(fontsize="small", loc="upper left")
    fig.suptitle("Fitted vs true parameters (components matched by their means)")
    return fig


# ========================================================= training figures


def _history_series(history: History, key: str) -> np.ndarray | None:
    """A history list as floats, ``None`` entries as NaN; ``None`` when absent or all missing."""
    if key not in history or history[key] is None:
        return None
    values = np.array([np.nan if v is None else float(v) for v in history[key]], dtype=float)
    if values.size == 0 or np.all(np.isnan(values)):
        return None
    return values


def _history_x(history: History, x: str, length: int) -> tuple[np.ndarray, str]:
    if x == "epoch":
        xs = _history_series(history, "epoch")
        xs = np.arange(1, length + 1, dtype=float) if xs is None else xs
        return xs, "epoch"
    if x == "time":
        xs = _history_series(history, "time")
        if xs is None:
            raise ValidationError("history has no 'time' entries; use x='epoch'")
        return xs, "wall-clock time (s)"
    raise ValidationError(f"x must be 'epoch' or 'time', got {x!r}")


def _set_x_scale(ax: Axes, xs: np.ndarray, logx) -> None:
    """Log x axis when useful, labelled with plain numbers (1, 10, 100), not powers."""
    if _use_log_x(xs, logx):
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))


def _use_log_x(xs: np.ndarray, logx) -> bool:
    if logx != "auto":
        return bool(logx)
    xs = xs[np.isfinite(xs)]
    return bool(xs.size and np.all(xs > 0) and xs.max() / xs.min() >= 30)


def _draw_references(ax: Axes, reference: Mapping[str, float] | None) -> list:
    handles = []
    for i, (name, value) in enumerate((reference or {}).items()):
        h = ax.axhline(float(value), color="0.25", linewidth=1.1,
                       linestyle=_REFERENCE_STYLES[i % len(_REFERENCE_STYLES)],
                       label=f"{name} ({float(value):.4g})", zorder=1)
        handles.append(h)
    return handles


def _nll_ylim(ax: Axes, series: list[np.ndarray], reference) -> None:
    """Lower limit just under the best value; upper limit skipping a huge first-epoch spike."""
    values = np.concatenate([s[np.isfinite(s)] for s in series])
    refs = [float(v) for v in (reference or {}).values()]
    lo = min([values.min(), *refs])
    tails = [s[np.isfinite(s)][1:] for s in series if np.isfinite(s).sum() > 3]
    hi = max([np.max(t) for t in tails if t.size] + refs) if tails else values.max()
    hi = max(hi, lo + 1e-9)
    if values.max() <= hi + 0.5 * (hi - lo):  # no spike worth cutting
        hi = values.max()
    pad = 0.05 * (hi - lo)
    ax.set_ylim(lo - pad, hi + pad)


def plot_learning_curves(
    history: History,
    *,
    ax: Axes | None = None,
    reference: Mapping[str, float] | None = None,
    x: str = "epoch",
    logx="auto",
    show_lr: bool = True,
) -> Axes:
    """Training and validation NLL per epoch, with reference levels and the learning rate.

    Parameters
    ----------
    history : mapping of lists
        ``"train_nll"`` (required), ``"epoch"``, ``"val_nll"`` (entries may be
        None, or the key absent), ``"lr"``, ``"time"`` (cumulative seconds).
    reference : mapping name -> NLL, optional
        Drawn as labelled horizontal lines, e.g. ``{"EM optimum": 2.31}``.
    x : "epoch" or "time"
    logx : "auto", True or False
        ``"auto"`` uses a log x axis when x spans a factor of 30 or more.
    show_lr : draw a varying learning rate on a right-hand log axis

    The best validation epoch is marked.  A first-epoch value far above the
    rest is left above the plotting area so the convergence stays readable.

    Returns
    -------
    Axes
    """
    train = _history_series(history, "train_nll")
    if train is None:
        raise ValidationError("history needs a non-empty 'train_nll' list")
    val = _history_series(history, "val_nll")
    xs, xlabel = _history_x(history, x, train.size)
    ax = _new_axes(ax, (6.8, 4.6))
    handles = [ax.plot(xs, train, color=SERIES_COLORS[0], linewidth=1.8, label="training",
                       gid="train_nll")[0]]
    series = [train]
    if val is not None:
        handles.append(ax.plot(xs, val, color=SERIES_COLORS[1], linewidth=1.8,
                               label="validation", gid="val_nll")[0])
        best = int(np.nanargmin(val))
        handles.append(ax.scatter([xs[best]], [val[best]], color=SERIES_COLORS[1], s=50,
                                  edgecolors="black", zorder=5,
                                  label=f"best validation ({val[best]:.4g})"))
        series.append(val)
    handles += _draw_references(ax, reference)
    _set_x_scale(ax, xs, logx)
    _nll_ylim(ax, series, reference)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("mean negative log-likelihood (nats)")
    _style(ax)
    legend_ax = ax
    lr = _history_series(history, "lr")
    if show_lr and lr is not None and np.nanmax(lr) > np.nanmin(lr) * (1 + 1e-9) > 0:
        ax_lr = ax.twinx()
        handles.append(ax_lr.plot(xs, lr, color="0.6", linewidth=1.2, drawstyle="steps-post",
                                  label="learning rate (right axis)", gid="lr")[0])
        ax_lr.set_yscale("log")
        ax_lr.set_ylabel("learning rate", color="0.4")
        ax_lr.tick_params(axis="y", colors="0.4", labelsize="small")
        ax_lr.spines[["top"]].set_visible(False)
        legend_ax = ax_lr  # drawn last, so the legend stays above the learning-rate line
    ax.set_title("Learning curves")
    _legend(legend_ax, handles, loc="upper right")
    return ax


def plot_optimizer_comparison(
    histories: Mapping[str, History],
    *,
    ax: Axes | None = None,
    reference: Mapping[str, float] | None = None,
    x: str = "epoch",
    metric: str = "val_nll",
    logx="auto",
) -> Axes:
    """One NLL curve per optimiser (e.g. SGD, momentum, Adam) on shared axes.

    Parameters
    ----------
    histories : mapping name -> history (as in :func:`plot_learning_curves`)
    reference : mapping name -> NLL, optional, drawn as horizontal lines
    x : "epoch" or "time" (wall clock, for a cost-aware comparison)
    metric : "val_nll" (default; falls back to "train_nll" for a run without
        validation, and says so in the legend) or "train_nll"

    Returns
    -------
    Axes
    """
    if not histories:
        raise ValidationError("histories is empty; pass a mapping name -> history")
    if metric not in ("val_nll", "train_nll"):
        raise ValidationError(f"metric must be 'val_nll' or 'train_nll', got {metric!r}")
    ax = _new_axes(ax, (6.8, 4.6))
    handles, series, all_x = [], [], []
    for i, (name, history) in enumerate(histories.items()):
        values, used = _history_series(history, metric), metric
        if values is None:
            values, used = _history_series(history, "train_nll"), "train_nll"
        if values is None:
            raise ValidationError(f"history {name!r} has neither {metric!r} nor 'train_nll'")
        xs, xlabel = _history_x(history, x, values.size)
        note = " (training)" if used != metric else ""
        final = values[np.isfinite(values)][-1]
        handles.append(ax.plot(xs, values, color=SERIES_COLORS[i % len(SERIES_COLORS)],
                               linewidth=1.8, label=f"{name}{note}: final {final:.4g}",
                               gid=f"optimizer-{name}")[0])
        series.append(values)
        all_x.append(xs)
    handles += _draw_references(ax, reference)
    _set_x_scale(ax, np.concatenate(all_x), logx)
    _nll_ylim(ax, series, reference)
    ax.set_xlabel(xlabel)
    what = "validation" if metric == "val_nll" else "training"
    ax.set_ylabel(f"{what} mean NLL (nats)")
    ax.set_title(f"Optimisers compared ({what} NLL vs {'epoch' if x == 'epoch' else 'time'})")
    _style(ax)
    _legend(ax, handles, loc="upper right")
    return ax


def _params_sequence(history: History) -> list[MixtureParams]:
    raw = history.get("params") if isinstance(history, Mapping) else None
    if not raw:
        raise ValidationError(
            "history has no 'params' list; record it during training (record_params=...)"
        )
    out = [p if isinstance(p, MixtureParams) else MixtureParams.from_dict(p) for p in raw]
    shape = (out[0].n_components, out[0].n_features)
    if any((p.n_components, p.n_features) != shape for p in out):
        raise ValidationError("history['params'] entries differ in K or D")
    return out


def _aligned_sequence(seq: list[MixtureParams], true: MixtureParams | None):
    """Reorder every epoch's components by the final epoch's match to ``true``."""
    if true is None:
        return seq
    _check_params(true, seq[-1].n_features, "true")
    perm = match_components(true.means, seq[-1].means)
    return [MixtureParams(p.means[perm], p.log_sigma[perm], p.logits[perm]) for p in seq]


def plot_parameter_paths(
    history: History,
    *,
    fig: Figure | None = None,
    dims: Sequence[int] = (0, 1),
    X=None,
    true: MixtureParams | None = None,
    logx="auto",
) -> Figure:
    """How the parameters moved during training, from ``history["params"]``.

    Three panels: (a) each mean's path through features ``dims`` (open
    circle at the start, cross at the end; over the data ``X`` if given, with
    true means as stars); (b) each ``sigma_kd`` per epoch (one line style per
    feature; the RMS sigma per component when D > 4); (c) each weight ``pi_k``
    per epoch.  ``history["params"]`` is a list of MixtureParams (or their
    ``to_dict()``), one per epoch, in data units.  With ``true`` the components
    are matched to the true ones by the final means, and the true values are
    drawn as dotted lines.

    Returns
    -------
    Figure
    """
    seq = _aligned_sequence(_params_sequence(history), true)
    k, d = seq[0].n_components, seq[0].n_features
    epochs, _ = _history_x(history, "epoch", len(seq))
    if epochs.size != len(seq):
        epochs = np.arange(1, len(seq) + 1, dtype=float)
    means = np.stack([p.means for p in seq])  # (T, K, D)
    sigma = np.stack([p.sigma for p in seq])
    weights = np.stack([p.weights for p in seq])
    fig = _new_figure(fig, (12.0, 6.0))
    axes = fig.subplot_mosaic([["paths", "sigmas"], ["paths", "weights"]],
                              width_ratios=[1.1, 1.0])

    ax = axes["paths"]
    if d == 1:
        for c in range(k):
            ax.plot(epochs, means[:, c, 0], color=component_color(c), linewidth=1.8)
            if true is not None:
                ax.axhline(true.means[c, 0], color=component_color(c), linestyle=":",
                           linewidth=1.0)
        ax.set_xlabel("epoch")
        ax.set_ylabel("mean  μ")
        _set_x_scale(ax, epochs, logx)
        ax.set_title("(a) means per epoch")
    else:
        i, j = _check_dims(dims, d)
        if X is not None:
            Xc = _check_X(X)
            ax.scatter(Xc[:, i], Xc[:, j], color=DATA_COLOR, zorder=1,
                       **{**_point_style(Xc.shape[0]), "alpha": 0.2})
        for c in range(k):
            color = component_color(c)
            ax.plot(means[:, c, i], means[:, c, j], color=color, linewidth=1.6, zorder=3,
                    marker=".", markersize=3, gid=f"path{c}")
            ax.scatter(means[0, c, i], means[0, c, j], s=55, facecolors="white",
                       edgecolors=color, linewidths=2.0, zorder=4)
            ax.scatter(means[-1, c, i], means[-1, c, j], s=110, marker="X", color=color,
                       edgecolors="black", linewidths=1.0, zorder=5)
        if true is not None:
            ax.scatter(true.means[:, i], true.means[:, j], s=160, marker="*",
                       c=[component_color(c) for c in range(k)], edgecolors="black",
                       linewidths=0.8, zorder=6)
        ax.set_aspect("equal", adjustable="datalim")
        ax.set_xlabel(f"$x_{{{i}}}$")
        ax.set_ylabel(f"$x_{{{j}}}$")
        ax.set_title("(a) paths of the means")
        marker_handles = [
            Line2D([], [], linestyle="none", marker="o", markerfacecolor="white",
                   markeredgecolor="0.2", markeredgewidth=2, label="start"),
            Line2D([], [], linestyle="none", marker="X", color="0.6", markeredgecolor="black",
                   markersize=9, label="end"),
        ]
        if true is not None:
            marker_handles.append(Line2D([], [], linestyle="none", marker="*", color="0.6",
                                         markeredgecolor="black", markersize=12,
                                         label="true mean"))
        _legend(ax, _component_handles(k, None) + marker_handles)
    _style(ax)

    ax = axes["sigmas"]
    if d <= 4:
        for c in range(k):
            for f in range(d):
                ax.plot(epochs, sigma[:, c, f], color=component_color(c), linewidth=1.5,
                        linestyle=_FEATURE_LINESTYLES[f])
                if true is not None:
                    ax.axhline(true.sigma[c, f], color=component_color(c), linewidth=0.8,
                               linestyle=_FEATURE_LINESTYLES[f], alpha=0.45)
        ax.set_ylabel("σ")
        _legend(ax, [Line2D([], [], color="0.3", linestyle=_FEATURE_LINESTYLES[f],
                            label=f"feature {f}") for f in range(d)],
                ncols=min(d, 4), loc="upper right")
        title = "(b) standard deviations $\\sigma_{kd}$"
    else:
        rms = np.sqrt(np.mean(sigma**2, axis=2))
        for c in range(k):
            ax.plot(epochs, rms[:, c], color=component_color(c), linewidth=1.5)
            if true is not None:
                ax.axhline(np.sqrt(np.mean(true.sigma[c] ** 2)), color=component_color(c),
                           linewidth=0.8, linestyle=":")
        ax.set_ylabel("RMS σ over features")
        title = f"(b) RMS standard deviation ({d} features)"
    ax.set_title(title + ("; true: faint" if true is not None else ""))
    ax.tick_params(labelbottom=False)

    ax2 = axes["weights"]
    for c in range(k):
        ax2.plot(epochs, weights[:, c], color=component_color(c), linewidth=1.6)
        if true is not None:
            ax2.axhline(true.weights[c], color=component_color(c), linewidth=1.0, linestyle=":")
    ax2.set_ylabel("weight  π")
    ax2.set_xlabel("epoch")
    ax2.set_title("(c) weights" + ("; true: dotted" if true is not None else ""))
    ax2.sharex(ax)
    for a in (ax, ax2):
        _set_x_scale(a, epochs, logx)
        _style(a)
    fig.suptitle("Parameter trajectories during training")
    return fig


def animate_fit(
    X,
    history: History,
    path: str | os.PathLike,
    *,
    fps: int = 8,
    dims: Sequence[int] = (0, 1),
    n_std: Sequence[float] = (1, 2),
    true: MixtureParams | None = None,
    force: bool = False,
    dpi: int = 100,
    figsize: tuple[float, float] = (6.0, 5.0),
) -> Path:
    """Write a GIF of the fitted ellipses moving over the data, one frame per epoch.

    Uses ``history["params"]`` (one MixtureParams per epoch, in data units) and,
    for the frame titles, ``history["epoch"]`` and ``history["train_nll"]``
    when present.  The file is written atomically; an existing file is refused
    unless ``force=True``.  With ``true`` its ellipses are drawn dashed and the
    colours follow the matched true components.

    Returns
    -------
    Path
        ``path``.
    """
    X = _check_X(X)
    n, d = X.shape
    if d < 2:
        raise ValidationError("animate_fit needs at least 2 features; plot the 1-D fit "
                              "with plot_parameter_paths instead")
    i, j = _check_dims(dims, d)
    if isinstance(fps, bool) or not isinstance(fps, int) or fps < 1:
        raise ValidationError(f"fps must be a positive integer, got {fps!r}")
    seq = _aligned_sequence(_params_sequence(history), true)
    if seq[0].n_features != d:
        raise ValidationError(f"history params have {seq[0].n_features} features but X has {d}")
    path = check_writable(path, force=force)
    epochs = _history_series(history, "epoch")
    nlls = _history_series(history, "train_nll")
    frames = [marginal_params(p, (i, j)) for p in seq]

    fig = Figure(figsize=figsize, layout="constrained")
    ax = fig.add_subplot()
    ax.scatter(X[:, i], X[:, j], color=DATA_COLOR, zorder=1, **_point_style(n))
    if true is not None:
        _draw_ellipses(ax, marginal_params(true, (i, j)), n_std, linestyle="--",
                       gid_prefix="true", scale_width=0.8)
    ellipses = _draw_ellipses(ax, frames[0], n_std)
    mean_markers = _draw_means(ax, frames[0].means)
    all_means = np.concatenate([f.means for f in frames])
    ax.set_xlim(*_padded_range(np.concatenate([X[:, i], all_means[:, 0]]), 0.05))
    ax.set_ylim(*_padded_range(np.concatenate([X[:, j], all_means[:, 1]]), 0.05))
    ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel(f"$x_{{{i}}}$")
    ax.set_ylabel(f"$x_{{{j}}}$")
    _style(ax)
    _legend(ax, _component_handles(frames[0].n_components, None)
            + ([Line2D([], [], color="0.3", linestyle="--", label="true")] if true else []),
            loc="upper right")
    title = ax.set_title("")

    def update(t: int):
        p2 = frames[t]
        sig = p2.sigma
        for idx, e in enumerate(ellipses):
            c, r = divmod(idx, len(n_std))
            e.set_center(tuple(p2.means[c]))
            e.set_width(2 * n_std[r] * sig[c, 0])
            e.set_height(2 * n_std[r] * sig[c, 1])
        mean_markers.set_offsets(p2.means)
        epoch = int(epochs[t]) if epochs is not None and epochs.size == len(frames) else t + 1
        text = f"Fit during training: epoch {epoch}"
        if nlls is not None and nlls.size == len(frames) and np.isfinite(nlls[t]):
            text += f", NLL {nlls[t]:.4f}"
        title.set_text(text)
        return [*ellipses, mean_markers, title]

    anim = FuncAnimation(fig, update, frames=len(frames), blit=False, repeat=False)
    with atomic_write(path, force=force) as tmp:
        anim.save(tmp, writer=PillowWriter(fps=fps), dpi=dpi)
    return path


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
    if isinstance(dpi, bool) or not isinstance(dpi, int | float) or dpi < _MIN_PNG_DPI:
        raise ValidationError(f"dpi must be at least {_MIN_PNG_DPI} for publication-quality "
                              f"PNGs, got {dpi!r}")
    if not isinstance(fig, Figure):
        fig = getattr(fig, "figure", fig)
        if not isinstance(fig, Figure):
            raise TypeError(f"fig must be a matplotlib Figure, got {type(fig).__name__}")
    targets = [Path(f"{os.fspath(path_stem)}.{f}") for f in fmts]
    for t in targets:
        check_writable(t, force=force)
    for fmt, target in zip(fmts, targets, strict=True):
        metadata = {"Date": None} if fmt == "svg" else {"CreationDate": None} if fmt == "pdf" \
            else {}
        with atomic_write(target, force=force) as tmp:
            fig.savefig(tmp, format=fmt, dpi=dpi, metadata=metadata, bbox_inches="tight")
    return targets
