"""Shared pieces of the figures: the palette, input checks and drawing helpers.

Private to :mod:`mogsgd.plotting` and :mod:`mogsgd.plot_training`; the public names
(:data:`COMPONENT_COLORS`, :func:`component_color`, :func:`component_marker`,
:func:`marginal_params`) are re-exported from :mod:`mogsgd.plotting`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Ellipse, Patch

from mogsgd.covariance import FULL
from mogsgd.covariance.ops import PARAMS_TYPES, family_of, log_prob, weighted_log_prob
from mogsgd.errors import ValidationError
from mogsgd.params import MixtureParams
from mogsgd.validation import check_data

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
REFERENCE_STYLES = ("--", ":", "-.", (0, (5, 1, 1, 1, 1, 1)))
_SIGMA_LINEWIDTHS = (2.0, 1.4, 1.0, 0.8)
_SIGMA_ALPHAS = (1.0, 0.75, 0.5, 0.35)
FEATURE_LINESTYLES = ("-", "--", ":", "-.")
MIN_PNG_DPI = 150
# after the seven colours repeat, the marker shape tells the components apart
_MEAN_MARKERS = ("X", "P", "D")
_LEGEND_MARKERS = ("o", "s", "^")

History = Mapping[str, Sequence]


# ============================================================ small helpers


def component_color(k: int) -> str:
    """The colour of component ``k`` in every figure (Okabe–Ito, cycling after 7)."""
    return COMPONENT_COLORS[int(k) % len(COMPONENT_COLORS)]


def component_marker(k: int) -> str:
    """Marker of component ``k``'s mean: "X" for the first seven, then "P", then "D"."""
    return _MEAN_MARKERS[(int(k) // len(COMPONENT_COLORS)) % len(_MEAN_MARKERS)]


def marginal_params(params: MixtureParams, dims: Sequence[int]) -> MixtureParams:
    """The exact marginal mixture over features ``dims``.

    Integrating out the other features of ``N(mu_k, Sigma_k)`` leaves
    ``N(mu_k[dims], Sigma_k[dims, dims])``, with the same weights.  Returns a MixtureParams
    with K components in ``len(dims)`` features for a diagonal model, else full-covariance
    parameters (:class:`~mogsgd.covariance.FullParams`) holding the sub-blocks.
    """
    idx = list(dims)
    if isinstance(params, MixtureParams):
        return MixtureParams(params.means[:, idx], params.log_sigma[:, idx], params.logits)
    return FULL.init_from_moments(params.weights, params.means[:, idx],
                                  component_covariances(params)[:, idx][:, :, idx], 0.0)


def component_covariances(params) -> np.ndarray:
    """Every component's (D, D) covariance matrix, shape (K, D, D), for any family."""
    if isinstance(params, MixtureParams):
        return params.variances[:, :, None] * np.eye(params.n_features)
    cov = np.asarray(family_of(params).covariances(params))
    k, d = params.means.shape
    if cov.ndim == 1:                      # spherical (K,)
        return cov[:, None, None] * np.eye(d)
    return np.broadcast_to(cov, (k, d, d))


def new_axes(ax: Axes | None, figsize=(6.4, 5.0)) -> Axes:
    if ax is not None:
        return ax
    _, ax = plt.subplots(figsize=figsize, layout="constrained")
    return ax


def new_figure(fig: Figure | None, figsize) -> Figure:
    if fig is not None:
        return fig
    return plt.figure(figsize=figsize, layout="constrained")


def apply_style(ax: Axes, grid: bool = True) -> None:
    ax.spines[["top", "right"]].set_visible(False)
    if grid:
        ax.grid(True, color="0.85", linewidth=0.6)
        ax.set_axisbelow(True)


def check_X(X) -> np.ndarray:
    return check_data(X, allow_nan=True)


def check_params(params, n_features: int | None = None, name: str = "params") -> MixtureParams:
    if type(params) not in PARAMS_TYPES:
        raise TypeError(f"{name} must be a MixtureParams (or another covariance family's "
                        f"parameters), got {type(params).__name__}")
    if n_features is not None and params.n_features != n_features:
        raise ValidationError(
            f"{name} has {params.n_features} features but X has {n_features}"
        )
    return params


def check_y(y, n_samples: int) -> np.ndarray | None:
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


def check_dims(dims, n_features: int, count: int = 2) -> tuple[int, ...]:
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


def feature_label(names: Sequence[str] | None, d: int) -> str:
    return str(names[d]) if names is not None else f"$x_{{{d}}}$"


def label_colors(y: np.ndarray) -> np.ndarray:
    """An RGBA row per point: label k in component_color(k), negative labels grey."""
    from matplotlib.colors import to_rgba_array

    palette = to_rgba_array(list(COMPONENT_COLORS))
    colors = palette[np.mod(y, len(COMPONENT_COLORS))]
    colors[y < 0] = to_rgba_array([DATA_COLOR])[0]
    return colors


def point_style(n: int) -> dict:
    """Marker size and opacity that keep 50 or 50,000 points readable."""
    size = float(np.clip(3000.0 / max(n, 1), 2.0, 25.0))
    alpha = 0.75 if n <= 500 else 0.5 if n <= 5000 else 0.3
    return {"s": size, "alpha": alpha, "linewidths": 0}


def draw_ellipses(ax: Axes, params2: MixtureParams, n_std: Sequence[float], *,
                   linestyle="-", colors=None, gid_prefix="component",
                   scale_width: float = 1.0, autoscale: bool = True) -> list[Ellipse]:
    """Ellipses ``(x - mu_k)^T Sigma_k^-1 (x - mu_k) = r^2`` for a 2-feature model: axis
    aligned with semi-axes ``r * sigma_k`` for a diagonal one, rotated along the
    eigenvectors of ``Sigma_k`` (semi-axes ``r sqrt(lambda)``) otherwise; with
    ``autoscale=False`` they do not widen the data limits (cheaper, for axes whose limits
    are set by the caller)."""
    patches = []
    axes = ellipse_axes(params2)
    for k in range(params2.n_components):
        color = component_color(k) if colors is None else colors[k]
        width, height, angle = axes[k]
        for i, r in enumerate(n_std):
            e = Ellipse(
                xy=tuple(params2.means[k]), width=2 * r * width, height=2 * r * height,
                angle=angle, fill=False, edgecolor=color, linestyle=linestyle,
                linewidth=scale_width * _SIGMA_LINEWIDTHS[min(i, 3)],
                alpha=_SIGMA_ALPHAS[min(i, 3)], zorder=3,
            )
            e.set_gid(f"{gid_prefix}{k}-{r:g}sigma")
            if autoscale:
                ax.add_patch(e)
            else:
                e.set_clip_path(ax.patch)
                ax.add_artist(e)
            patches.append(e)
    return patches


def ellipse_axes(params2) -> list[tuple[float, float, float]]:
    """Per component of a 2-feature model: the 1-sigma semi-axes along x and y of its
    ellipse before rotation, and the rotation in degrees (0 for a diagonal model)."""
    if isinstance(params2, MixtureParams):
        return [(float(s[0]), float(s[1]), 0.0) for s in params2.sigma]
    out = []
    for cov in component_covariances(params2):
        lam, vec = np.linalg.eigh(cov)     # ascending: the major axis is the last
        angle = float(np.degrees(np.arctan2(vec[1, 1], vec[0, 1])))
        out.append((float(np.sqrt(lam[1])), float(np.sqrt(lam[0])), angle))
    return out


def draw_means(ax: Axes, means2: np.ndarray, *, marker=None, size=110, colors=None,
                zorder=5, edgecolors="black", linewidths=1.0) -> list:
    """One marker per component mean (shape from :func:`component_marker` unless given)."""
    out = []
    for k in range(means2.shape[0]):
        face = component_color(k) if colors is None else colors[k]
        edge = edgecolors if isinstance(edgecolors, str) else edgecolors[k]
        out.append(ax.scatter(means2[k, 0], means2[k, 1], color=face,
                              marker=component_marker(k) if marker is None else marker,
                              s=size, edgecolors=edge, linewidths=linewidths, zorder=zorder,
                              gid=f"mean{k}"))
    return out


def sigma_label(n_std: Sequence[float]) -> str:
    return ", ".join(f"{r:g}σ" for r in n_std) + " ellipses"


def component_handles(k: int, params: MixtureParams | None, prefix="component") -> list:
    handles = []
    for i in range(k):
        label = f"{prefix} {i}"
        if params is not None:
            label += f"  (π = {params.weights[i]:.2f})"
        marker = _LEGEND_MARKERS[(i // len(COMPONENT_COLORS)) % len(_LEGEND_MARKERS)]
        handles.append(Line2D([], [], linestyle="none", marker=marker, markersize=7,
                              color=component_color(i), label=label))
    return handles


def add_legend(ax: Axes, handles: list, **kwargs):
    if not handles:
        return None
    if len(handles) > 8 and kwargs.get("loc", "best") == "best":
        # a long legend would hide data: put it to the right of the axes
        kwargs.update(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    kwargs.setdefault("loc", "best")
    kwargs.setdefault("fontsize", "small")
    kwargs.setdefault("framealpha", 0.9)
    return ax.legend(handles=handles, **kwargs)


def padded_range(values: np.ndarray, pad: float = 0.05) -> tuple[float, float]:
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    lo, hi = (float(v.min()), float(v.max())) if v.size else (0.0, 1.0)
    span = hi - lo if hi > lo else max(abs(hi), 1.0)
    return lo - pad * span, hi + pad * span


# ===================================================================== 1-D


def _default_bins(n: int) -> int:
    """About 1.5 sqrt(n) bins, between 10 and 80: finer than numpy's "auto" for mixtures."""
    return int(np.clip(1.5 * np.sqrt(n), 10, 80))


def curve_handles(params: MixtureParams) -> list:
    handles = [Line2D([], [], color=component_color(k), linewidth=1.8,
                      label=f"component {k}  (π = {params.weights[k]:.2f})")
               for k in range(params.n_components)]
    handles.append(Line2D([], [], color=MIXTURE_COLOR, linewidth=1.8, linestyle="--",
                          label="mixture"))
    return handles


def plot_1d(ax: Axes, x: np.ndarray, y: np.ndarray | None, params1: MixtureParams | None,
             *, bins=None, xlabel: str = "", show_legend: bool = True) -> Axes:
    """Histogram (stacked by label) with weighted component densities and the mixture.

    Component curves are ``pi_k N(x | mu_k, sigma_k^2)``; the mixture, their sum,
    is drawn dashed on top so both stay visible where one component dominates.
    """
    x = np.asarray(x, dtype=np.float64)
    finite = np.isfinite(x)
    xs = x[finite]
    lo, hi = padded_range(xs, 0.02)
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
            # one filled step polygon per label (not a bar per bin: thousands of patches make
            # a pair plot of many labels take minutes to draw; and not ``stairs``, whose
            # patch limits are found segment by segment, a third of a pair plot's drawing)
            ax.fill_between(edges, np.append(bottom, bottom[-1]),
                            np.append(bottom + h, bottom[-1] + h[-1]), step="post",
                            color=color, alpha=0.35, linewidth=0)
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
        handles = curve_handles(params1)
    elif y is not None:
        handles = component_handles(int(np.max(y)) + 1, None, prefix="label")
    hist_label = "data (histogram" + (", stacked by label)" if y is not None else ")")
    handles.insert(0, Patch(facecolor=DATA_COLOR, alpha=0.35, label=hist_label))
    ax.set_xlim(lo, hi)
    ax.set_ylim(bottom=0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    apply_style(ax)
    if show_legend:
        add_legend(ax, handles)
    return ax


def grid_limits(x: np.ndarray, means: np.ndarray, sigma: np.ndarray) -> tuple[float, float]:
    lo, hi = padded_range(x, 0.05)
    lo = min(lo, float(np.min(means - 3 * sigma)))
    hi = max(hi, float(np.max(means + 3 * sigma)))
    return lo, hi

