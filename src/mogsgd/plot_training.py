"""Figures of a training run: learning curves, optimiser comparisons, parameter paths, GIFs.

A *history* is a mapping of per-epoch lists as recorded by :func:`mogsgd.train.train`:
``"epoch"``, ``"train_nll"``, ``"val_nll"`` (None where not measured), ``"lr"``,
``"time"`` (cumulative seconds) and, when recorded, ``"params"`` (one MixtureParams,
or its ``to_dict()``, per epoch, in data units, optionally preceded by the
starting point as epoch 0).  Colours follow
:func:`mogsgd.plotting.component_color`.  Re-exported from :mod:`mogsgd.plotting`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.animation import FuncAnimation, PillowWriter
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter

from mogsgd._files import atomic_write, check_writable
from mogsgd._plot_common import (
    DATA_COLOR,
    FEATURE_LINESTYLES,
    REFERENCE_STYLES,
    SERIES_COLORS,
    History,
    add_legend,
    apply_style,
    check_dims,
    check_params,
    check_X,
    component_color,
    component_handles,
    component_marker,
    draw_ellipses,
    draw_means,
    marginal_params,
    new_axes,
    new_figure,
    padded_range,
    point_style,
)
from mogsgd.covariance.ops import PARAMS_TYPES, permute_components
from mogsgd.errors import ValidationError
from mogsgd.metrics import match_components
from mogsgd.params import MixtureParams

__all__ = [
    "plot_learning_curves",
    "plot_optimizer_comparison",
    "plot_parameter_paths",
    "animate_fit",
    "plot_selection",
]


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
    """Log x axis when useful, labelled with plain numbers (1, 10, 100), not powers.

    An x that starts at 0 (epoch 0, the starting point) gets a symlog axis,
    linear on [0, 1] and logarithmic beyond.
    """
    if _use_log_x(xs, logx):
        finite = xs[np.isfinite(xs)]
        if finite.size and finite.min() <= 0:
            ax.set_xscale("symlog", linthresh=1.0, linscale=0.5)
            # symlog's margins would reach into negative epochs
            ax.set_xlim(left=float(finite.min()), right=float(finite.max()) * 1.05)
        else:
            ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))


def _use_log_x(xs: np.ndarray, logx) -> bool:
    if logx != "auto":
        return bool(logx)
    xs = xs[np.isfinite(xs)]
    positive = xs[xs > 0]
    return bool(positive.size and np.all(xs >= 0) and positive.max() / positive.min() >= 30)


def _draw_references(ax: Axes, reference: Mapping[str, float] | None) -> list:
    handles = []
    for i, (name, value) in enumerate((reference or {}).items()):
        h = ax.axhline(float(value), color="0.25", linewidth=1.1,
                       linestyle=REFERENCE_STYLES[i % len(REFERENCE_STYLES)],
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
    ax = new_axes(ax, (6.8, 4.6))
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
    apply_style(ax)
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
    add_legend(legend_ax, handles, loc="upper right")
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
    ax = new_axes(ax, (6.8, 4.6))
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
    apply_style(ax)
    add_legend(ax, handles, loc="upper right")
    return ax


def _params_epochs(history: History, n_params: int) -> tuple[np.ndarray, int]:
    """Epoch of each ``history["params"]`` entry, and 1 if entry 0 is the starting point.

    The training loop records the starting parameters as entry 0 (epoch 0) and
    then one entry per epoch, so ``params`` may be one longer than ``epoch``.
    """
    epochs = _history_series(history, "epoch")
    if epochs is None:
        return np.arange(n_params, dtype=float), 1
    if epochs.size == n_params:
        return epochs, 0
    if epochs.size + 1 == n_params:
        return np.concatenate([[epochs[0] - 1.0], epochs]), 1
    raise ValidationError(f"history has {n_params} parameter records for {epochs.size} epochs; "
                          "expected one per epoch, optionally plus the starting point")


def _params_sequence(history: History) -> list[MixtureParams]:
    raw = history.get("params") if isinstance(history, Mapping) else None
    if not raw:
        raise ValidationError(
            "history has no 'params' list; record it during training (record_params=...)"
        )
    out = [p if type(p) in PARAMS_TYPES else MixtureParams.from_dict(p) for p in raw]
    shape = (out[0].n_components, out[0].n_features)
    if any((p.n_components, p.n_features) != shape for p in out):
        raise ValidationError("history['params'] entries differ in K or D")
    return out


def _aligned_sequence(seq: list[MixtureParams], true: MixtureParams | None):
    """Reorder every epoch's components by the final epoch's match to ``true``."""
    if true is None:
        return seq
    check_params(true, seq[-1].n_features, "true")
    perm = match_components(true.means, seq[-1].means)
    return [permute_components(p, perm) for p in seq]


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
    ``to_dict()``), one per epoch, in data units, optionally preceded by the
    starting parameters (epoch 0).  With ``true`` the components
    are matched to the true ones by the final means, and the true values are
    drawn as dotted lines.

    Returns
    -------
    Figure
    """
    seq = _aligned_sequence(_params_sequence(history), true)
    k, d = seq[0].n_components, seq[0].n_features
    epochs, _ = _params_epochs(history, len(seq))
    means = np.stack([p.means for p in seq])  # (T, K, D)
    sigma = np.stack([p.sigma for p in seq])
    weights = np.stack([p.weights for p in seq])
    fig = new_figure(fig, (12.0, 6.0))
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
        i, j = check_dims(dims, d)
        if X is not None:
            Xc = check_X(X)
            ax.scatter(Xc[:, i], Xc[:, j], color=DATA_COLOR, zorder=1,
                       **{**point_style(Xc.shape[0]), "alpha": 0.2})
        for c in range(k):
            color = component_color(c)
            ax.plot(means[:, c, i], means[:, c, j], color=color, linewidth=1.6, zorder=3,
                    marker=".", markersize=3, gid=f"path{c}")
            ax.scatter(means[0, c, i], means[0, c, j], s=55, facecolors="white",
                       edgecolors=color, linewidths=2.0, zorder=4)
            ax.scatter(means[-1, c, i], means[-1, c, j], s=110, marker=component_marker(c),
                       color=color,
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
        add_legend(ax, component_handles(k, None) + marker_handles)
    apply_style(ax)

    ax = axes["sigmas"]
    if d <= 4:
        for c in range(k):
            for f in range(d):
                ax.plot(epochs, sigma[:, c, f], color=component_color(c), linewidth=1.5,
                        linestyle=FEATURE_LINESTYLES[f])
                if true is not None:
                    ax.axhline(true.sigma[c, f], color=component_color(c), linewidth=0.8,
                               linestyle=FEATURE_LINESTYLES[f], alpha=0.45)
        ax.set_ylabel("σ")
        add_legend(ax, [Line2D([], [], color="0.3", linestyle=FEATURE_LINESTYLES[f],
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
        apply_style(a)
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

    Uses ``history["params"]`` (one MixtureParams per epoch, in data units,
    optionally preceded by the starting point) and,
    for the frame titles, ``history["epoch"]`` and ``history["train_nll"]``
    when present.  The file is written atomically; an existing file is refused
    unless ``force=True``.  With ``true`` its ellipses are drawn dashed and the
    colours follow the matched true components.

    Returns
    -------
    Path
        ``path``.
    """
    X = check_X(X)
    n, d = X.shape
    if d < 2:
        raise ValidationError("animate_fit needs at least 2 features; plot the 1-D fit "
                              "with plot_parameter_paths instead")
    i, j = check_dims(dims, d)
    if isinstance(fps, bool) or not isinstance(fps, int) or fps < 1:
        raise ValidationError(f"fps must be a positive integer, got {fps!r}")
    seq = _aligned_sequence(_params_sequence(history), true)
    if seq[0].n_features != d:
        raise ValidationError(f"history params have {seq[0].n_features} features but X has {d}")
    path = check_writable(path, force=force)
    epochs, offset = _params_epochs(history, len(seq))
    nlls = _history_series(history, "train_nll")
    frames = [marginal_params(p, (i, j)) for p in seq]

    fig = Figure(figsize=figsize, layout="constrained")
    ax = fig.add_subplot()
    ax.scatter(X[:, i], X[:, j], color=DATA_COLOR, zorder=1, **point_style(n))
    if true is not None:
        draw_ellipses(ax, marginal_params(true, (i, j)), n_std, linestyle="--",
                       gid_prefix="true", scale_width=0.8)
    ellipses = draw_ellipses(ax, frames[0], n_std)
    mean_markers = draw_means(ax, frames[0].means)
    all_means = np.concatenate([f.means for f in frames])
    ax.set_xlim(*padded_range(np.concatenate([X[:, i], all_means[:, 0]]), 0.05))
    ax.set_ylim(*padded_range(np.concatenate([X[:, j], all_means[:, 1]]), 0.05))
    ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel(f"$x_{{{i}}}$")
    ax.set_ylabel(f"$x_{{{j}}}$")
    apply_style(ax)
    add_legend(ax, component_handles(frames[0].n_components, None)
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
        for c, marker in enumerate(mean_markers):
            marker.set_offsets(p2.means[c:c + 1])
        text = f"Fit during training: epoch {int(epochs[t])}"
        if t < offset:
            text += " (start)"
        elif nlls is not None and t - offset < nlls.size and np.isfinite(nlls[t - offset]):
            text += f", training NLL {nlls[t - offset]:.4f}"
        title.set_text(text)
        return [*ellipses, *mean_markers, title]

    anim = FuncAnimation(fig, update, frames=len(frames), blit=False, repeat=False)
    with atomic_write(path, force=force) as tmp:
        anim.save(tmp, writer=PillowWriter(fps=fps), dpi=dpi)
    return path




def plot_selection(result, *, ax: Axes | None = None) -> Axes:
    """BIC, AIC (left axis) and held-out log-likelihood per point (right axis) against K.

    ``result`` is a :class:`mogsgd.selection.SelectionResult`; the best K by each
    criterion is marked.  Returns the Axes.
    """
    rows = list(getattr(result, "rows", []))
    if not rows:
        raise ValidationError("the selection result has no rows to plot")
    if len(result.covariance_types) > 1:
        return _plot_selection_by_type(result, rows, ax)
    ax = new_axes(ax)
    ks = np.array([r["k"] for r in rows])
    for key, label, color, marker in (("bic", "BIC", SERIES_COLORS[0], "o"),
                                      ("aic", "AIC", SERIES_COLORS[1], "s")):
        values = np.array([r[key] for r in rows])
        ax.plot(ks, values, marker=marker, color=color, label=label)
        best = result.best(key)
        ax.scatter([best], [values[ks == best][0]], s=160, facecolors="none",
                   edgecolors=color, linewidths=2, zorder=5)
    ax.set_xlabel("number of components K")
    ax.set_ylabel("information criterion (lower is better)")
    ax.set_xticks(ks)
    twin = ax.twinx()
    held = np.array([r["heldout_ll"] for r in rows])
    color = SERIES_COLORS[2]
    twin.plot(ks, held, marker="^", color=color, linestyle="--",
              label="held-out log-likelihood / point")
    best = result.best("heldout_ll")
    twin.scatter([best], [held[ks == best][0]], s=160, facecolors="none", edgecolors=color,
                 linewidths=2, zorder=5)
    twin.set_ylabel("held-out log-likelihood per point (higher is better)", color=color)
    handles = ax.get_lines() + twin.get_lines()
    ax.legend(handles, [h.get_label() for h in handles], loc="center right", fontsize=8,
              title="circled: best K", title_fontsize=8)
    ax.set_title(f"Choosing K: BIC picks {result.best('bic')}, held-out likelihood "
                 f"picks {best}")
    apply_style(ax)
    return ax


def _plot_selection_by_type(result, rows: list[dict], ax: Axes | None) -> Axes:
    """:func:`plot_selection` with several covariance types: BIC (solid, left axis) and
    held-out log-likelihood per point (dashed, right axis) per type against K; the best
    (type, K) by each is circled."""
    ax = new_axes(ax)
    twin = ax.twinx()
    for i, name in enumerate(result.covariance_types):
        mine = [r for r in rows if r["covariance_type"] == name]
        ks = [r["k"] for r in mine]
        color = SERIES_COLORS[i % len(SERIES_COLORS)]
        ax.plot(ks, [r["bic"] for r in mine], marker="o", color=color, label=f"BIC, {name}")
        twin.plot(ks, [r["heldout_ll"] for r in mine], marker="^", color=color,
                  linestyle="--", alpha=0.7, label=f"held-out LL, {name}")
    for axis, criterion in ((ax, "bic"), (twin, "heldout_ll")):
        best = result.best_row(criterion)
        axis.scatter([best["k"]], [best[criterion]], s=160, facecolors="none",
                     edgecolors="black", linewidths=2, zorder=5)
    ax.set_xlabel("number of components K")
    ax.set_ylabel("BIC (lower is better)")
    ax.set_xticks(sorted({r["k"] for r in rows}))
    twin.set_ylabel("held-out log-likelihood per point (higher is better)")
    handles = ax.get_lines() + twin.get_lines()
    ax.legend(handles, [h.get_label() for h in handles], loc="center right", fontsize=7,
              title="circled: best", title_fontsize=8)
    ax.set_title(f"Choosing the covariance type and K: BIC picks {result.best_type('bic')}, "
                 f"K={result.best('bic')}")
    apply_style(ax)
    return ax
