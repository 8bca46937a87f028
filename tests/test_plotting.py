"""Figures: non-empty images of the right size, honest geometry, consistent colours, safe files."""

from __future__ import annotations

import io
import os

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_rgb, to_rgba  # noqa: E402
from matplotlib.patches import Ellipse  # noqa: E402
from PIL import Image  # noqa: E402

from mogsgd import plotting as P  # noqa: E402
from mogsgd.datasets import make_mixture  # noqa: E402
from mogsgd.density import log_prob  # noqa: E402
from mogsgd.params import MixtureParams  # noqa: E402

DPI = 40


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def d2():
    return make_mixture(300, n_features=2, n_components=3, separation=3.0, random_state=0)


@pytest.fixture(scope="module")
def d3():
    return make_mixture(300, n_features=3, n_components=4, separation=2.0, random_state=1)


@pytest.fixture(scope="module")
def d1():
    return make_mixture(300, n_features=1, n_components=2, separation=3.0, random_state=2)


def make_history(truth: MixtureParams, n_epochs: int = 6, as_dicts: bool = False) -> dict:
    """A hand-made training history: parameters sliding from a bad start to the truth."""
    start = MixtureParams(np.zeros_like(truth.means), np.full_like(truth.log_sigma, 1.5),
                          np.zeros_like(truth.logits))
    params = []
    for t in range(n_epochs):
        a = t / (n_epochs - 1)
        p = MixtureParams(*((1 - a) * s + a * e for s, e in zip(start, truth, strict=True)))
        params.append(p.to_dict() if as_dicts else p)
    nll = list(3.0 + 2.0 * np.exp(-np.arange(n_epochs)))
    return {
        "epoch": list(range(1, n_epochs + 1)),
        "train_nll": nll,
        "val_nll": [None if t % 2 else v + 0.05 for t, v in enumerate(nll)],
        "lr": [0.1 * 0.5**t for t in range(n_epochs)],
        "time": list(0.1 * np.arange(1, n_epochs + 1)),
        "params": params,
    }


def png_of(fig, dpi=DPI) -> Image.Image:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def assert_good_image(fig, dpi=DPI):
    """The PNG has the figure's size in pixels and real content (not a blank canvas)."""
    img = png_of(fig, dpi)
    w, h = fig.get_size_inches()
    assert img.size == (round(w * dpi), round(h * dpi))
    pixels = np.asarray(img)
    non_white = np.mean(np.any(pixels < 245, axis=-1))
    assert non_white > 0.03, f"almost blank image ({non_white:.1%} non-white)"
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 20


def ellipses(ax, prefix="component"):
    # pair plots add their ellipses as artists (they must not widen the set limits)
    return {p.get_gid(): p for p in [*ax.patches, *ax.artists] if isinstance(p, Ellipse)
            and (p.get_gid() or "").startswith(prefix)}


def rgb(color):
    return np.asarray(to_rgb(color))


# --------------------------------------------------------------- every figure


def _all_figures(d1, d2, d3):
    X, y, truth = d2
    X3, y3, truth3 = d3
    X1, y1, truth1 = d1
    h = make_history(truth)
    fitted = h["params"][-2]
    return {
        "data": lambda: P.plot_data(X, y, truth).figure,
        "data_no_labels": lambda: P.plot_data(X).figure,
        "data_D3": lambda: P.plot_data(X3, y3, truth3, dims=(1, 2)).figure,
        "data_D1": lambda: P.plot_data(X1, y1, truth1).figure,
        "marginals": lambda: P.plot_marginals(X3, truth3, y3),
        "marginals_D1": lambda: P.plot_marginals(X1, truth1),
        "density": lambda: P.plot_density(X, truth, grid_size=40).figure,
        "density_D3": lambda: P.plot_density(X3, truth3, dims=(0, 2), grid_size=40).figure,
        "density_D1": lambda: P.plot_density(X1, truth1).figure,
        "fit_vs_truth": lambda: P.plot_fit_vs_truth(X, fitted, truth),
        "fit_vs_truth_D1": lambda: P.plot_fit_vs_truth(X1, truth1, truth1),
        "predictions": lambda: P.plot_predictions(X, truth).figure,
        "predictions_D1": lambda: P.plot_predictions(X1, truth1).figure,
        "pairs": lambda: P.plot_pairs(X3, truth3, y3),
        "pairs_no_params": lambda: P.plot_pairs(X3),
        "pairs_D1": lambda: P.plot_pairs(X1, truth1),
        "learning": lambda: P.plot_learning_curves(h, reference={"EM optimum": 3.0}).figure,
        "learning_time": lambda: P.plot_learning_curves(h, x="time").figure,
        "optimizers": lambda: P.plot_optimizer_comparison(
            {"SGD": h, "Adam": make_history(truth, 8)}, reference={"truth": 3.0}).figure,
        "paths": lambda: P.plot_parameter_paths(h, X=X, true=truth),
        "paths_D1": lambda: P.plot_parameter_paths(make_history(truth1)),
        "paths_D3": lambda: P.plot_parameter_paths(make_history(truth3, as_dicts=True)),
    }


FIGURE_NAMES = [
    "data", "data_no_labels", "data_D3", "data_D1", "marginals", "marginals_D1", "density",
    "density_D3", "density_D1", "fit_vs_truth", "fit_vs_truth_D1", "predictions",
    "predictions_D1", "pairs", "pairs_no_params", "pairs_D1", "learning", "learning_time",
    "optimizers", "paths", "paths_D1", "paths_D3",
]


@pytest.mark.parametrize("name", FIGURE_NAMES)
def test_every_figure_is_a_non_empty_image_of_the_right_size(name, d1, d2, d3):
    figures = _all_figures(d1, d2, d3)
    assert sorted(figures) == sorted(FIGURE_NAMES)
    fig = figures[name]()
    assert_good_image(fig)
    titles = [ax.get_title() for ax in fig.axes] + [fig._suptitle.get_text() if fig._suptitle
                                                      else ""]
    assert any(titles), "no title"
    assert any(ax.get_xlabel() for ax in fig.axes), "no axis label"
    if name not in ("data_no_labels", "pairs_no_params"):  # nothing there to explain
        assert any(ax.get_legend() for ax in fig.axes) or fig.legends, "no legend"


def test_library_never_shows_or_writes(d1, d2, d3, tmp_path, monkeypatch):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)

    def forbidden(*args, **kwargs):
        raise AssertionError("plt.show() called by library code")

    monkeypatch.setattr(plt, "show", forbidden)
    for make in _all_figures(d1, d2, d3).values():
        make()
        plt.close("all")
    assert os.listdir(cwd) == []


def test_functions_draw_into_a_given_axes(d2):
    X, y, truth = d2
    fig, axes = plt.subplots(1, 3)
    assert P.plot_data(X, y, truth, ax=axes[0]) is axes[0]
    assert P.plot_predictions(X, truth, ax=axes[1]) is axes[1]
    assert P.plot_density(X, truth, ax=axes[2], grid_size=30) is axes[2]
    empty = plt.figure()
    assert P.plot_marginals(X, truth, fig=empty) is empty


# ------------------------------------------------------------------- geometry


@pytest.mark.parametrize("dims", [(0, 1), (1, 0)])
def test_ellipse_radii_are_the_sigmas(d2, dims):
    X, y, truth = d2
    ax = P.plot_data(X, y, truth, dims=dims, n_std=(1, 2, 3))
    found = ellipses(ax)
    assert len(found) == 3 * truth.n_components
    i, j = dims
    for k in range(truth.n_components):
        for r in (1, 2, 3):
            e = found[f"component{k}-{r}sigma"]
            assert e.width / 2 == pytest.approx(r * truth.sigma[k, i], rel=1e-12)
            assert e.height / 2 == pytest.approx(r * truth.sigma[k, j], rel=1e-12)
            assert e.get_center() == pytest.approx((truth.means[k, i], truth.means[k, j]))
            assert e.angle == 0.0


def test_pair_plot_ellipses_are_the_projected_sigmas(d3):
    X, y, truth = d3
    fig = P.plot_pairs(X, truth, y, n_std=(1,))
    grid = fig.axes[:9]  # the 3x3 grid; twin axes for the diagonal come after
    ax = grid[0 * 3 + 2]  # row 0 (feature 0 on y), column 2 (feature 2 on x)
    found = ellipses(ax, "pair02")
    for k in range(truth.n_components):
        e = found[f"pair02-c{k}-1sigma"]
        assert e.width / 2 == pytest.approx(truth.sigma[k, 2])
        assert e.height / 2 == pytest.approx(truth.sigma[k, 0])


def test_fit_vs_truth_matches_components_before_drawing(d2):
    X, _, truth = d2
    perm = [2, 0, 1]
    shuffled = MixtureParams(truth.means[perm] + 0.5, truth.log_sigma[perm], truth.logits[perm])
    fig = P.plot_fit_vs_truth(X, shuffled, truth, n_std=(1,))
    ax = fig.axes[0]
    fitted = ellipses(ax, "fitted")
    for k in range(truth.n_components):
        e = fitted[f"fitted{k}-1sigma"]
        # fitted component matched to true k is drawn in colour k at true mean k + 0.5
        assert e.get_center() == pytest.approx(tuple(truth.means[k] + 0.5))
        assert np.allclose(e.get_edgecolor()[:3], rgb(P.component_color(k)))
        assert e.width / 2 == pytest.approx(truth.sigma[k, 0])


def test_1d_curves_come_from_the_density_module(d3):
    X, y, truth = d3
    fig = P.plot_marginals(X, truth, y)
    for d in range(3):
        line = next(li for li in fig.axes[d].lines if li.get_gid() == "density-mixture")
        xs, ys = line.get_data()
        expected = np.exp(log_prob(xs[:, None], P.marginal_params(truth, [d])))
        np.testing.assert_allclose(ys, expected, rtol=1e-12)
        comps = [li for li in fig.axes[d].lines if (li.get_gid() or "").startswith("density-c")]
        np.testing.assert_allclose(sum(li.get_ydata() for li in comps), ys, rtol=1e-10)


def test_density_contours_cover_the_top_of_log_p(d2):
    X, _, truth = d2
    ax = P.plot_density(X, truth, grid_size=50, span=8.0)
    cs = next(c for c in ax.collections if hasattr(c, "levels"))
    assert cs.levels[-1] - cs.levels[0] == pytest.approx(8.0)
    # the top level is the grid maximum of log p, never above the density at a mean
    assert cs.levels[-1] <= np.max(log_prob(truth.means, truth)) + 1e-9


def test_marginal_params_selects_columns(d3):
    _, _, truth = d3
    m = P.marginal_params(truth, [2, 0])
    np.testing.assert_array_equal(m.means, truth.means[:, [2, 0]])
    np.testing.assert_array_equal(m.log_sigma, truth.log_sigma[:, [2, 0]])
    np.testing.assert_array_equal(m.weights, truth.weights)


# -------------------------------------------------------------------- colours


def test_component_colours_are_consistent_across_figures(d2, d3):
    X, y, truth = d2
    X3, y3, truth3 = d3
    ax_a = P.plot_data(X, y, truth)
    ax_b = P.plot_data(X3, y3, truth3)
    fig_c = P.plot_marginals(X3, truth3)
    for k in range(3):
        expected = rgb(P.component_color(k))
        for ax in (ax_a, ax_b):
            assert np.allclose(ellipses(ax)[f"component{k}-1sigma"].get_edgecolor()[:3],
                               expected)
        line = next(li for li in fig_c.axes[0].lines if li.get_gid() == f"density-component{k}")
        assert np.allclose(to_rgb(line.get_color()), expected)
    # the scatter colours each point by its label in the same palette
    facecolors = ax_a.collections[0].get_facecolors()
    for k in range(3):
        assert np.allclose(facecolors[y == k][:, :3], rgb(P.component_color(k)))


def test_palette_is_okabe_ito_and_cycles():
    okabe_ito = {"#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7"}
    assert set(P.COMPONENT_COLORS) == okabe_ito
    assert P.component_color(0) == P.component_color(len(P.COMPONENT_COLORS))


def test_prediction_opacity_follows_the_max_responsibility():
    params = MixtureParams.from_moments([0.5, 0.5], [[-3.0, 0.0], [3.0, 0.0]], np.ones((2, 2)))
    X = np.array([[-3.0, 0.0], [0.0, 0.0], [3.0, 0.0]])  # a mean, the midpoint, a mean
    ax = P.plot_predictions(X, params, min_alpha=0.1)
    colors = ax.collections[0].get_facecolors()
    assert colors[1, 3] == pytest.approx(0.1, abs=1e-6)  # gamma = (1/2, 1/2): faint
    assert colors[0, 3] > 0.99 and colors[2, 3] > 0.99
    assert np.allclose(colors[0, :3], rgb(P.component_color(0)))
    assert np.allclose(colors[2, :3], rgb(P.component_color(1)))


# ------------------------------------------------------------------- training


def test_learning_curves_handle_missing_validation(d2):
    h = make_history(d2[2])
    ax = P.plot_learning_curves(h, reference={"EM optimum": 2.9, "true parameters": 2.95})
    lines = {li.get_gid(): li for li in ax.lines}
    assert np.isnan(lines["val_nll"].get_ydata()[1])
    labels = [t.get_text() for t in ax.figure.legends + [a.get_legend() for a in
                                                            ax.figure.axes if a.get_legend()]
              for t in t.get_texts()]
    assert any("EM optimum" in s for s in labels) and any("learning rate" in s for s in labels)
    no_val = {k: v for k, v in h.items() if k != "val_nll"}
    ax2 = P.plot_learning_curves(no_val, show_lr=False)
    assert "val_nll" not in {li.get_gid() for li in ax2.lines}


def test_learning_curves_use_log_x_over_many_epochs():
    h = {"epoch": list(range(1, 201)), "train_nll": list(2 + 1 / np.arange(1, 201))}
    assert P.plot_learning_curves(h).get_xscale() == "log"
    assert P.plot_learning_curves(h, logx=False).get_xscale() == "linear"


def test_optimizer_comparison_falls_back_to_training_nll(d2):
    h = make_history(d2[2])
    no_val = {**h, "val_nll": [None] * len(h["val_nll"])}
    ax = P.plot_optimizer_comparison({"SGD": h, "Adam": no_val}, x="time")
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[0].startswith("SGD: final") and "(training)" in labels[1]
    assert ax.get_xlabel() == "wall-clock time (s)"


def test_parameter_paths_follow_the_means(d2):
    X, _, truth = d2
    h = make_history(truth)
    fig = P.plot_parameter_paths(h)
    path_ax = next(a for a in fig.axes if any(li.get_gid() == "path0" for li in a.lines))
    line = next(li for li in path_ax.lines if li.get_gid() == "path1")
    np.testing.assert_allclose(line.get_xdata(), [p.means[1, 0] for p in h["params"]])
    np.testing.assert_allclose(line.get_ydata(), [p.means[1, 1] for p in h["params"]])


def test_animation_has_one_frame_per_epoch(d2, tmp_path):
    X, _, truth = d2
    h = make_history(truth, n_epochs=5)
    path = P.animate_fit(X, h, tmp_path / "fit.gif", fps=5, true=truth, dpi=30,
                         figsize=(3.0, 2.5))
    with Image.open(path) as gif:
        assert gif.format == "GIF"
        assert gif.n_frames == 5
        assert gif.size == (90, 75)
    with pytest.raises(FileExistsError, match="force=True"):
        P.animate_fit(X, h, path, dpi=30, figsize=(3.0, 2.5))
    P.animate_fit(X, h, path, dpi=30, figsize=(3.0, 2.5), force=True)
    assert sorted(os.listdir(tmp_path)) == ["fit.gif"]


# --------------------------------------------------------------------- saving


def test_save_figure_writes_png_and_svg_without_overwriting(d2, tmp_path):
    fig = P.plot_data(*d2).figure
    paths = P.save_figure(fig, tmp_path / "data")
    assert [p.name for p in paths] == ["data.png", "data.svg"]
    with Image.open(paths[0]) as img:
        assert img.info["dpi"][0] == pytest.approx(150, abs=1)
    assert paths[1].read_text().lstrip().startswith("<?xml")
    with pytest.raises(FileExistsError, match="force=True"):
        P.save_figure(fig, tmp_path / "data")
    before = paths[0].stat().st_mtime_ns
    P.save_figure(fig, tmp_path / "data", force=True)
    assert sorted(os.listdir(tmp_path)) == ["data.png", "data.svg"]
    assert paths[0].stat().st_mtime_ns >= before


def test_save_figure_checks_every_target_first(d2, tmp_path):
    fig = P.plot_data(*d2).figure
    (tmp_path / "f.svg").write_text("keep")
    with pytest.raises(FileExistsError):
        P.save_figure(fig, tmp_path / "f")
    assert os.listdir(tmp_path) == ["f.svg"]  # no f.png written either


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"dpi": 72}, "at least 150"),
    ({"formats": ("png", "jpg")}, "formats must be drawn from"),
    ({"formats": ()}, "formats must be drawn from"),
])
def test_save_figure_rejects_bad_options(d2, tmp_path, kwargs, match):
    fig = P.plot_data(*d2).figure
    with pytest.raises(ValueError, match=match):
        P.save_figure(fig, tmp_path / "f", **kwargs)


# --------------------------------------------------------------------- errors


def test_clear_errors(d1, d2, d3):
    X, y, truth = d2
    X3, _, truth3 = d3
    with pytest.raises(ValueError, match="dims"):
        P.plot_data(X3, dims=(0, 3))
    with pytest.raises(ValueError, match="distinct"):
        P.plot_data(X3, dims=(1, 1))
    with pytest.raises(ValueError, match="params has 3 features but X has 2"):
        P.plot_data(X, params=truth3)
    with pytest.raises(ValueError, match=r"y must have shape \(300,\)"):
        P.plot_data(X, y[:10])
    with pytest.raises(ValueError, match="no 'params' list"):
        P.plot_parameter_paths({"epoch": [1], "train_nll": [1.0]})
    with pytest.raises(ValueError, match="at least 2 features"):
        P.animate_fit(d1[0], make_history(d1[2]), "never-written.gif")
    with pytest.raises(ValueError, match="'train_nll'"):
        P.plot_learning_curves({"epoch": [1, 2]})
    with pytest.raises(ValueError, match="x must be 'epoch' or 'time'"):
        P.plot_learning_curves(make_history(truth), x="step")
    with pytest.raises(TypeError, match="MixtureParams"):
        P.plot_density(X, {"means": truth.means})
    assert to_rgba(P.component_color(3))  # the palette entries are valid colours


def test_history_with_the_starting_point_as_epoch_zero(d2, tmp_path):
    X, _, truth = d2
    h = make_history(truth, n_epochs=6)
    h = {**h, **{k: h[k][1:] for k in ("epoch", "train_nll", "val_nll", "lr", "time")}}
    h["epoch"] = list(range(1, 6))  # five epochs, six parameter records: start + one per epoch
    fig = P.plot_parameter_paths(h)
    weights_ax = next(a for a in fig.axes if a.get_ylabel() == "weight  π")
    np.testing.assert_array_equal(weights_ax.lines[0].get_xdata(), np.arange(6))
    path = P.animate_fit(X, h, tmp_path / "fit.gif", dpi=30, figsize=(3.0, 2.5))
    with Image.open(path) as gif:
        assert gif.n_frames == 6
    with pytest.raises(ValueError, match="7 parameter records for 5 epochs"):
        P.plot_parameter_paths({**h, "params": h["params"] + h["params"][:1]})


def test_symlog_axis_when_epochs_start_at_zero():
    h = {"epoch": list(range(0, 100)), "train_nll": list(2 + 1 / np.arange(1, 101))}
    assert P.plot_learning_curves(h).get_xscale() == "symlog"


def test_markers_tell_components_apart_once_colours_repeat(d2):
    X, _, _ = d2
    k = len(P.COMPONENT_COLORS) + 1
    assert P.component_marker(0) == "X" and P.component_marker(k - 1) == "P"
    assert P.component_color(0) == P.component_color(k - 1)
    params = MixtureParams(np.arange(2.0 * k).reshape(k, 2) * 5, np.zeros((k, 2)), np.zeros(k))
    ax = P.plot_data(X, params=params)
    means = {c.get_gid(): c for c in ax.collections if (c.get_gid() or "").startswith("mean")}
    assert len(means) == k
    legend = ax.get_legend()
    assert legend.get_bbox_to_anchor() is not None and len(legend.get_texts()) == k + 2


def test_informative_features_rank_the_separating_feature_first():
    rng = np.random.default_rng(0)
    n = 600
    y = np.repeat([0, 1, 2], n // 3)
    X = rng.normal(size=(n, 8))
    X[:, 5] += 6.0 * y           # separates the three groups
    X[:, 2] += 1.5 * y           # a little
    X[:, 7] = 3.0                # constant
    assert P.informative_features(X, y=y, count=2) == [5, 2]
    params = MixtureParams.from_moments(np.ones(3) / 3, np.array(
        [[0, 0, 0, 0, 0, 0, 0, 3], [0, 0, 1.5, 0, 0, 6, 0, 3], [0, 0, 3, 0, 0, 12, 0, 3]]),
        np.ones((3, 8)))
    assert P.informative_features(X, params, count=3)[:2] == [5, 2]
    bimodal = rng.normal(size=(n, 3))
    bimodal[:, 1] = np.where(rng.random(n) < 0.5, -4.0, 4.0) + rng.normal(0, 0.3, n)
    assert P.informative_features(bimodal, count=1) == [1]
    assert 7 not in P.informative_features(X, count=7)   # constant: last


def test_informative_features_rank_mostly_one_value_columns_last():
    # a sparse column (95% zeros, rare large values) is two spikes: the highest possible
    # bimodality coefficient, and a component sitting on its rare rows separates it
    # perfectly -- yet it makes a useless axis (digits' border pixels)
    rng = np.random.default_rng(1)
    n = 1000
    y = np.repeat([0, 1], n // 2)
    X = rng.normal(size=(n, 4))
    X[:, 1] += 3.0 * y
    X[:, 3] = np.where(rng.random(n) < 0.05, 16.0, 0.0)
    assert P._bimodality(X)[3] > P._bimodality(X)[1]
    assert list(P._mostly_one_value(X)) == [False, False, False, True]
    assert P.informative_features(X, count=4)[-1] == 3
    params = MixtureParams.from_moments(np.array([0.95, 0.05]), np.array(
        [[0.0, 1.5, 0.0, 0.0], [0.0, 1.5, 0.0, 16.0]]), np.ones((2, 4)))
    assert P.informative_features(X, params, count=4)[-1] == 3
    assert P.informative_features(X, y=y, count=1) == [1]
    # missing values are ignored when counting, and an all-missing column is not flagged
    X[::3, 3] = np.nan
    X[:, 2] = np.nan
    assert list(P._mostly_one_value(X)) == [False, False, False, True]
