"""Every covariance family against independent references, as a product over the registry.

References: central finite differences, torch autograd through
``torch.distributions`` densities, ``scipy.stats.multivariate_normal`` and scikit-learn's
``GaussianMixture`` internals.  A new family in ``FAMILIES`` gets the whole suite.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import special, stats
from sklearn.mixture import GaussianMixture
from sklearn.mixture._gaussian_mixture import _estimate_gaussian_parameters

from mogsgd import MixtureParams, online_em
from mogsgd.covariance import (
    FAMILIES,
    FULL,
    SPHERICAL,
    TIED,
    CovarianceFamily,
    combine,
    em_step,
    finalize,
    get_family,
    log_prob,
    log_prob_and_log_resp,
    online_em_init,
    online_em_step,
    sklearn_attributes,
    tree_map,
)
from mogsgd.covariance import cholesky as chol
from mogsgd.errors import ValidationError

NAMES = sorted(FAMILIES)
SHAPES = [(1, 1), (1, 3), (3, 1), (2, 2), (3, 4)]


# --------------------------------------------------------------------------- helpers
def rel_err(actual, expected, floor: float = 1e-300) -> float:
    """max |actual - expected| over the larger array's scale (at least ``floor``)."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    scale = max(float(np.max(np.abs(expected))), float(np.max(np.abs(actual))), floor)
    return float(np.max(np.abs(actual - expected))) / scale


def random_spd(rng, d: int, lo: float = 0.3, hi: float = 3.0) -> np.ndarray:
    Q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    return (Q * rng.uniform(lo, hi, size=d)) @ Q.T


def random_covariances(name: str, rng, k: int, d: int) -> np.ndarray:
    """Natural covariances in scikit-learn's shape for ``name``."""
    if name == "full":
        return np.stack([random_spd(rng, d) for _ in range(k)])
    if name == "tied":
        return random_spd(rng, d)
    if name == "diag":
        return rng.uniform(0.3, 3.0, size=(k, d))
    return rng.uniform(0.3, 3.0, size=k)


def random_params(name: str, rng, k: int, d: int):
    """Arbitrary *unconstrained* parameters (not built from moments)."""
    means = rng.normal(0.0, 2.0, size=(k, d))
    logits = rng.normal(0.0, 0.5, size=k)
    if name == "full":
        return FULL.params_type.create(means, np.triu(rng.normal(0.0, 0.4, size=(k, d, d))),
                                       logits)
    if name == "tied":
        return TIED.params_type.create(means, np.triu(rng.normal(0.0, 0.4, size=(d, d))), logits)
    if name == "diag":
        return MixtureParams(means, rng.normal(0.0, 0.3, size=(k, d)), logits)
    return SPHERICAL.params_type.create(means, rng.normal(0.0, 0.3, size=k), logits)


def random_data(rng, n: int, d: int, outliers: bool = False) -> np.ndarray:
    X = rng.normal(0.0, 2.5, size=(n, d))
    if outliers:
        X[0] = 60.0
        X[1] = -45.0 * np.arange(1, d + 1)
    return X


def parameter_mask(name: str, leaf_index: int, leaf: np.ndarray) -> np.ndarray:
    """True where an entry is a parameter (below the diagonal of ``log_chol`` is not)."""
    if name in ("full", "tied") and leaf_index == 1:
        return np.broadcast_to(np.triu(np.ones(leaf.shape[-2:], dtype=bool)), leaf.shape)
    return np.ones(leaf.shape, dtype=bool)


def summed_nll(family, X, params, w) -> float:
    lp = special.logsumexp(family.log_prob_components(X, params), axis=1)
    return float(-(w @ lp))


LD = np.longdouble  # 80-bit on x86-64: eps ~1e-19


def ref_summed_nll(name: str, X, leaves, w):
    """``-sum_i w_i log p(x_i)`` written from eqs. 9, 10, 39, 40, 45 in extended precision,
    independently of the library (so the differences below lose little to rounding)."""
    means, cov, logits = (np.asarray(a, dtype=LD) for a in leaves)
    X = np.asarray(X, dtype=LD)
    k, d = means.shape
    R = X[:, None, :] - means[None]                                    # (n, K, D)
    half_log_2pi = np.log(LD(2) * LD(np.pi)) / 2
    if name in ("full", "tied"):
        A = np.broadcast_to(cov, (k, d, d))
        U = np.triu(A, 1) + np.exp(np.diagonal(A, axis1=1, axis2=2))[:, :, None] * np.eye(d)
        Z = np.einsum("nkd,kde->nke", R, U)
        comp = -0.5 * (Z * Z).sum(-1) + np.trace(A, axis1=1, axis2=2) - d * half_log_2pi
    elif name == "diag":
        comp = -(0.5 * R * R * np.exp(-2 * cov) + cov + half_log_2pi).sum(-1)
    else:
        comp = -0.5 * (R * R).sum(-1) * np.exp(-2 * cov) - d * cov - d * half_log_2pi
    top = logits.max()
    log_w = logits - (top + np.log(np.exp(logits - top).sum()))
    wlp = comp + log_w
    m = wlp.max(axis=1, keepdims=True)
    lp = (m + np.log(np.exp(wlp - m).sum(axis=1, keepdims=True)))[:, 0]
    return -(np.asarray(w, dtype=LD) * lp).sum()


def central_diff_grad(family, X, params, w, h: float = 1e-6) -> list[np.ndarray]:
    """Central differences ``(f(+h) - f(-h)) / 2h`` of :func:`ref_summed_nll`.

    With far outliers the NLL is ~1e4 while some gradients are ~0.1 and a step moves
    an outlier's component log densities by ~1e4 h, so the step must be small and the
    rounding error ``eps |f| / h`` is kept down by extended precision.
    """
    leaves = [np.array(a, dtype=LD) for a in params]
    grads = []
    for j, leaf in enumerate(leaves):
        g = np.zeros(leaf.shape)
        mask = parameter_mask(family.name, j, leaf)
        for idx in zip(*np.nonzero(mask), strict=True):
            vals = []
            for step in (h, -h):
                moved = [a.copy() for a in leaves]
                moved[j][idx] += LD(step)
                vals.append(ref_summed_nll(family.name, X, moved, w))
            g[idx] = float((vals[0] - vals[1]) / (2 * LD(h)))
        grads.append(g)
    return grads


# ------------------------------------------------------------------- the registry
def test_registry_names_match_sklearn_covariance_types():
    assert set(FAMILIES) == {"full", "tied", "diag", "spherical"}
    for name in NAMES:
        assert get_family(name).name == name
    with pytest.raises(ValidationError, match="covariance_type must be one of"):
        get_family("banded")


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("k, d", [(1, 1), (3, 2), (4, 5), (2, 7)])
def test_n_parameters_equals_sklearn(name, k, d):
    rng = np.random.default_rng(0)
    gm = GaussianMixture(k, covariance_type=name)
    gm.means_ = rng.normal(size=(k, d))
    assert get_family(name).n_parameters(k, d) == gm._n_parameters()


# ------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("k, d", SHAPES)
@pytest.mark.parametrize("outliers", [False, True])
def test_gradient_matches_central_differences(name, k, d, outliers):
    rng = np.random.default_rng(100 * k + d)
    family = get_family(name)
    params = random_params(name, rng, k, d)
    X = random_data(rng, 25, d, outliers)
    w = rng.uniform(0.2, 2.0, size=len(X))
    sums = family.nll_grad_sums(X, params, w)
    assert sums.nll_sum == pytest.approx(summed_nll(family, X, params, w), rel=1e-12)
    assert sums.nll_sum == pytest.approx(float(ref_summed_nll(name, X, params, w)), rel=1e-12)
    assert sums.weight_sum == pytest.approx(w.sum(), rel=1e-14)
    numeric = central_diff_grad(family, X, params, w)
    for field, analytic, ref in zip(params._fields if hasattr(params, "_fields")
                                    else ("means", "log_sigma", "logits"),
                                    sums[2:], numeric, strict=True):
        err = rel_err(analytic, ref, floor=1e-6)  # K = 1: the logit gradient is exactly 0
        assert err < 1e-6, f"{name} K={k} D={d} {field}: relative error {err:.2e}"


@pytest.mark.parametrize("name", NAMES)
def test_gradient_is_zero_below_the_diagonal_and_params_keep_the_shape(name):
    rng = np.random.default_rng(1)
    params = random_params(name, rng, 3, 4)
    sums = get_family(name).nll_grad_sums(random_data(rng, 20, 4), params)
    for leaf, grad in zip(params, sums[2:], strict=True):
        assert grad.shape == np.shape(leaf)
    if name in ("full", "tied"):
        assert np.all(np.tril(sums.log_chol, -1) == 0)


def torch_reference(name, X, params, w):
    """The summed weighted NLL and its autograd gradient, via torch.distributions."""
    torch = pytest.importorskip("torch")
    t = {f: torch.tensor(np.asarray(a), dtype=torch.float64, requires_grad=True)
         for f, a in zip(("means", "cov", "logits"), params, strict=True)}
    Xt = torch.tensor(X, dtype=torch.float64)
    k, d = params.means.shape
    if name in ("full", "tied"):
        A = t["cov"] if name == "full" else t["cov"].expand(k, d, d)
        U = torch.triu(A, 1) + torch.diag_embed(torch.exp(torch.diagonal(A, dim1=-2, dim2=-1)))
        dist = torch.distributions.MultivariateNormal(t["means"], precision_matrix=U @ U.mT)
        comp = dist.log_prob(Xt[:, None, :])
    else:
        scale = torch.exp(t["cov"]) if name == "diag" else torch.exp(t["cov"])[:, None].expand(k, d)
        comp = torch.distributions.Normal(t["means"], scale).log_prob(Xt[:, None, :]).sum(-1)
    wlp = comp + torch.log_softmax(t["logits"], 0)
    nll = -(torch.tensor(w) * torch.logsumexp(wlp, 1)).sum()
    nll.backward()
    return float(nll.detach()), [t[f].grad.numpy() for f in ("means", "cov", "logits")]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("k, d", [(1, 1), (3, 4), (2, 6)])
def test_gradient_agrees_with_torch_autograd(name, k, d):
    rng = np.random.default_rng(7 * k + d)
    params = random_params(name, rng, k, d)
    X = random_data(rng, 40, d, outliers=True)
    w = rng.uniform(0.5, 1.5, size=len(X))
    nll, grads = torch_reference(name, X, params, w)
    sums = get_family(name).nll_grad_sums(X, params, w)
    assert rel_err(sums.nll_sum, nll) < 1e-12
    for analytic, ref in zip(sums[2:], grads, strict=True):
        mask = parameter_mask(name, 1, ref) if np.ndim(ref) == 3 - (name == "tied") else True
        assert rel_err(np.where(mask, analytic, 0.0), np.where(mask, ref, 0.0)) < 1e-10


@pytest.mark.parametrize("name", NAMES)
def test_grad_sums_of_row_blocks_combine_to_the_whole(name):
    rng = np.random.default_rng(2)
    family = get_family(name)
    params = random_params(name, rng, 3, 3)
    X = random_data(rng, 30, 3)
    whole = family.nll_grad_sums(X, params)
    parts = combine(family.nll_grad_sums(X[s], params) for s in (slice(0, 7), slice(7, 30)))
    for a, b in zip(whole, parts, strict=True):
        assert rel_err(a, b) < 1e-12
    value, grad = finalize(whole, family.params_type)
    assert value == pytest.approx(whole.nll_sum / 30)
    assert isinstance(grad, family.params_type)


# ------------------------------------------------------------------------ densities
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("k, d", SHAPES)
def test_log_prob_components_agree_with_scipy_and_sklearn(name, k, d):
    rng = np.random.default_rng(k + 10 * d)
    family = get_family(name)
    params = random_params(name, rng, k, d)
    X = random_data(rng, 30, d, outliers=True)
    ours = family.log_prob_components(X, params)
    cov = family.covariances(params)
    full_cov = {"full": lambda j: cov[j], "tied": lambda j: cov,
                "diag": lambda j: np.diag(cov[j]), "spherical": lambda j: cov[j] * np.eye(d)}[name]
    ref = np.stack([stats.multivariate_normal.logpdf(X, params.means[j], full_cov(j))
                    for j in range(k)], axis=1).reshape(len(X), k)
    ref = ref + special.log_softmax(params.logits)
    assert rel_err(ours, ref) < 1e-11
    gm = GaussianMixture(k, covariance_type=name)
    for key, value in sklearn_attributes(family, params).items():
        setattr(gm, key, value)
    assert rel_err(ours, gm._estimate_weighted_log_prob(X)) < 1e-12
    assert rel_err(log_prob(family, X, params), special.logsumexp(ref, axis=1)) < 1e-11


@pytest.mark.parametrize("name", NAMES)
def test_far_points_have_finite_log_prob_and_responsibilities(name):
    rng = np.random.default_rng(3)
    family = get_family(name)
    params = random_params(name, rng, 3, 2)
    X = np.array([[1e4, -1e4], [0.0, 0.0], [-3e5, 2.0]])
    lp, lr = log_prob_and_log_resp(family, X, params)
    assert np.all(np.isfinite(lp)) and np.all(lr <= 0)
    assert np.allclose(np.exp(lr).sum(axis=1), 1.0, rtol=1e-14)
    sums = family.nll_grad_sums(X, params)
    assert all(np.all(np.isfinite(g)) for g in sums)


@pytest.mark.parametrize("name", ["full", "tied", "spherical"])
def test_nan_is_refused_with_a_pointer_to_diag(name):
    family = get_family(name)
    params = random_params(name, np.random.default_rng(0), 2, 2)
    with pytest.raises(ValidationError, match="covariance_type='diag'"):
        family.log_prob_components(np.array([[0.0, np.nan]]), params)


@pytest.mark.parametrize("name", ["full", "tied"])
def test_any_unconstrained_factor_gives_a_positive_definite_precision(name):
    rng = np.random.default_rng(4)
    for _ in range(20):
        params = random_params(name, rng, 2, 5)
        params = params._replace(log_chol=np.triu(rng.normal(0.0, 3.0, params.log_chol.shape)))
        prec = get_family(name).precisions(params)
        assert np.all(np.linalg.eigvalsh(prec) > 0)
        np.linalg.cholesky(get_family(name).covariances(params))


# ------------------------------------------------------------------- sklearn attributes
@pytest.mark.parametrize("name", NAMES)
def test_sklearn_attributes_round_trip_from_a_fitted_gaussian_mixture(name):
    rng = np.random.default_rng(5)
    X = np.concatenate([rng.normal(size=(80, 3)), rng.normal(4.0, 0.5, size=(60, 3))])
    gm = GaussianMixture(2, covariance_type=name, random_state=0).fit(X)
    family = get_family(name)
    params = family.init_from_moments(gm.weights_, gm.means_, gm.covariances_, 1e-12)
    shapes = {"full": (2, 3, 3), "tied": (3, 3), "diag": (2, 3), "spherical": (2,)}
    for key, value in sklearn_attributes(family, params).items():
        ref = getattr(gm, key)
        assert value.shape == ref.shape
        if key.startswith("cov") or key.startswith("prec"):
            assert value.shape == shapes[name]
        assert rel_err(value, ref) < 1e-12, key


# ----------------------------------------------------------------------------- EM
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("k, d", [(1, 1), (3, 2), (2, 4)])
def test_m_step_agrees_with_sklearn_estimate_gaussian_parameters(name, k, d):
    rng = np.random.default_rng(11 * k + d)
    family = get_family(name)
    params = random_params(name, rng, k, d)
    X = random_data(rng, 60, d) + 100.0  # far from the origin: centred statistics matter
    params = params._replace(means=params.means + 100.0) if name != "diag" else \
        params.replace(means=params.means + 100.0)
    resp = np.exp(log_prob_and_log_resp(family, X, params)[1])
    nk, means, covs = _estimate_gaussian_parameters(X, resp, 1e-6, name)
    new = family.m_step(family.em_stats(X, params), params, 1e-6)
    assert rel_err(np.exp(special.log_softmax(new.logits)), nk / nk.sum()) < 1e-12
    assert rel_err(new.means, means) < 1e-12
    assert rel_err(family.covariances(new), covs) < 1e-9


@pytest.mark.parametrize("name", NAMES)
def test_weighted_m_step_equals_duplicated_rows(name):
    rng = np.random.default_rng(6)
    family = get_family(name)
    params = random_params(name, rng, 2, 3)
    X = random_data(rng, 20, 3)
    counts = rng.integers(1, 4, size=20)
    a = family.m_step(family.em_stats(X, params, counts.astype(float)), params, 1e-6)
    b = family.m_step(family.em_stats(np.repeat(X, counts, axis=0), params), params, 1e-6)
    for x, y in zip(a, b, strict=True):
        assert rel_err(x, y) < 1e-11


@pytest.mark.parametrize("name", NAMES)
def test_em_iterations_equal_sklearn_gaussian_mixture(name):
    rng = np.random.default_rng(8)
    d, k, n_iter = 3, 3, 6
    X = np.concatenate([rng.normal(0.0, 1.0, (70, d)), rng.normal(3.0, 0.7, (50, d)),
                        rng.normal(-2.0, 1.5, (40, d)) @ random_spd(rng, d)])
    family = get_family(name)
    weights = np.array([0.3, 0.3, 0.4])
    means = np.array([[0.5] * d, [2.5] * d, [-1.0] * d]) + rng.normal(0.0, 0.3, (k, d))
    cov = random_covariances(name, rng, k, d) + (name in ("diag", "spherical"))
    params = family.init_from_moments(weights, means, cov, 1e-12)
    for _ in range(n_iter):
        params, _ = em_step(family, X, params, reg_covar=1e-6)
    gm = GaussianMixture(k, covariance_type=name, max_iter=n_iter, tol=0.0, reg_covar=1e-6,
                         weights_init=weights, means_init=means,
                         precisions_init=family.precisions(
                             family.init_from_moments(weights, means, cov, 1e-12)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm.fit(X)
    ours = sklearn_attributes(family, params)
    for key in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        assert rel_err(ours[key], getattr(gm, key)) < 1e-9, key


@pytest.mark.parametrize("name", NAMES)
def test_em_never_decreases_the_log_likelihood(name):
    rng = np.random.default_rng(9)
    family = get_family(name)
    X = np.concatenate([rng.normal(0.0, 1.0, (50, 2)), rng.normal(4.0, 0.5, (50, 2))])
    params = random_params(name, rng, 3, 2)
    lls = []
    for _ in range(15):
        params, ll = em_step(family, X, params, reg_covar=0.0)
        lls.append(ll)
    assert np.all(np.diff(lls) >= -1e-10 * np.abs(lls[1:]))


@pytest.mark.parametrize("name", NAMES)
def test_em_stats_of_row_blocks_combine_to_the_whole(name):
    rng = np.random.default_rng(10)
    family = get_family(name)
    params = random_params(name, rng, 2, 3)
    X = random_data(rng, 30, 3)
    whole = family.em_stats(X, params)
    parts = combine(family.em_stats(X[s], params) for s in (slice(0, 11), slice(11, 30)))
    for a, b in zip(whole, parts, strict=True):
        assert rel_err(a, b) < 1e-12


@pytest.mark.parametrize("name", NAMES)
def test_dead_component_keeps_its_covariance(name):
    rng = np.random.default_rng(12)
    family = get_family(name)
    X = rng.normal(size=(30, 2))
    params = random_params(name, rng, 2, 2)
    if name == "diag":
        params = params.replace(means=np.array([[0.0, 0.0], [1e3, 1e3]]))
    else:
        params = params._replace(means=np.array([[0.0, 0.0], [1e3, 1e3]]))
    new = family.m_step(family.em_stats(X, params), params, 1e-6)
    assert all(np.all(np.isfinite(a)) for a in new)
    assert np.allclose(new.means[1], [1e3, 1e3])


# --------------------------------------------------------------------------- floor
@pytest.mark.parametrize("name", NAMES)
def test_floor_projection_keeps_every_covariance_eigenvalue_above_the_floor(name):
    rng = np.random.default_rng(13)
    family = get_family(name)
    v_min = 0.05
    for _ in range(10):
        params = random_params(name, rng, 3, 4)
        # squeeze the covariances well below the floor in some direction
        if name in ("full", "tied"):
            A = np.array(params.log_chol)
            A[..., 0, 0] += 4.0
            A[..., 1, 3] += 20.0
            params = params._replace(log_chol=A)
        elif name == "diag":
            params = params.replace(log_sigma=params.log_sigma - 3.0)
        else:
            params = params._replace(log_sigma=params.log_sigma - 3.0)
        projected = family.project_floor(params, v_min)
        cov = family.covariances(projected)
        eig = {"full": np.linalg.eigvalsh, "tied": np.linalg.eigvalsh}.get(name, np.asarray)(cov)
        assert np.all(eig >= v_min * (1 - 1e-9))
        again = family.project_floor(projected, v_min)
        for a, b in zip(again, projected, strict=True):
            assert rel_err(a, b) < 1e-9


@pytest.mark.parametrize("name", NAMES)
def test_floor_projection_leaves_feasible_parameters_untouched(name):
    rng = np.random.default_rng(14)
    family = get_family(name)
    params = random_params(name, rng, 3, 4)
    assert family.project_floor(params, 1e-6) is params


@pytest.mark.parametrize("name", ["full", "tied"])
def test_floor_projection_is_the_frobenius_nearest_feasible_covariance(name):
    rng = np.random.default_rng(15)
    v_min = 0.5
    cov = random_spd(rng, 4, lo=0.01, hi=3.0)
    projected = chol.floor_eigenvalues(cov, v_min)
    best = np.linalg.norm(cov - projected)
    for _ in range(200):
        T = random_spd(rng, 4, lo=v_min, hi=4.0)
        assert np.linalg.norm(cov - T) >= best - 1e-12
        # moving from the projection towards any feasible T does not get closer
        assert np.linalg.norm(cov - (0.99 * projected + 0.01 * T)) >= best - 1e-12


@pytest.mark.parametrize("name", NAMES)
def test_init_from_moments_applies_the_floor(name):
    rng = np.random.default_rng(16)
    family = get_family(name)
    cov = random_covariances(name, rng, 2, 3) * 1e-4
    params = family.init_from_moments([0.5, 0.5], rng.normal(size=(2, 3)), cov, 0.01)
    out = family.covariances(params)
    eig = np.linalg.eigvalsh(out) if name in ("full", "tied") else out
    assert np.all(eig >= 0.01 * (1 - 1e-9))


# ---------------------------------------------------------------- standardisation
@pytest.mark.parametrize("name", NAMES)
def test_to_data_from_data_round_trip_and_log_likelihood_shift(name):
    rng = np.random.default_rng(17)
    family = get_family(name)
    params = random_params(name, rng, 3, 4)
    center = rng.normal(0.0, 10.0, size=4)
    scale = family.admissible_scale(rng.uniform(0.01, 100.0, size=4))
    X_std = random_data(rng, 20, 4)
    X = center + X_std * scale
    data = family.to_data(params, center, scale)
    back = family.from_data(data, center, scale)
    for a, b in zip(back, params, strict=True):
        assert rel_err(a, b) < 1e-12
    shift = np.log(scale).sum()
    assert rel_err(log_prob(family, X, data), log_prob(family, X_std, params) - shift) < 1e-12
    # responsibilities are unchanged
    lr_data = log_prob_and_log_resp(family, X, data)[1]
    lr_std = log_prob_and_log_resp(family, X_std, params)[1]
    assert np.allclose(lr_data, lr_std, atol=1e-10)


def test_spherical_refuses_per_feature_scales_and_offers_a_common_one():
    params = random_params("spherical", np.random.default_rng(0), 2, 3)
    with pytest.raises(ValidationError, match="common scale"):
        SPHERICAL.to_data(params, np.zeros(3), np.array([1.0, 2.0, 3.0]))
    s = SPHERICAL.admissible_scale(np.array([1.0, 2.0, 4.0]))
    assert np.allclose(s, 2.0) and np.isclose(np.log(s).sum(), np.log(8.0))


# ----------------------------------------------------------------------- sampling
@pytest.mark.parametrize("name", NAMES)
def test_sample_has_the_model_moments(name):
    rng = np.random.default_rng(18)
    family = get_family(name)
    params = family.init_from_moments([0.3, 0.7], [[0.0, 0.0, 0.0], [10.0, -5.0, 3.0]],
                                      random_covariances(name, rng, 2, 3), 1e-6)
    X, y = family.sample(params, np.random.default_rng(0), 40_000)
    assert X.shape == (40_000, 3) and y.shape == (40_000,)
    assert abs(np.mean(y == 1) - 0.7) < 0.01
    cov = family.covariances(params)
    for j in range(2):
        pts = X[y == j]
        assert np.allclose(pts.mean(axis=0), params.means[j], atol=0.06)
        ref = cov if name == "tied" else cov[j] if name == "full" else cov[j] * np.eye(3)
        assert np.allclose(np.cov(pts.T), ref, atol=0.12)
    X2, y2 = family.sample(params, np.random.default_rng(0), 40_000)
    assert np.array_equal(X, X2) and np.array_equal(y, y2)


# ------------------------------------------------------------------- containers
@pytest.mark.parametrize("name", ["full", "tied", "spherical"])
def test_created_params_are_read_only_and_tree_map_keeps_the_type(name):
    params = random_params(name, np.random.default_rng(0), 2, 3)
    for leaf in params:
        assert not leaf.flags.writeable
    doubled = tree_map(lambda a: 2 * a, params)
    assert type(doubled) is type(params)
    assert np.allclose(doubled.means, 2 * params.means)


@pytest.mark.parametrize("name", ["full", "tied"])
def test_create_refuses_entries_below_the_diagonal(name):
    params = random_params(name, np.random.default_rng(0), 2, 3)
    A = np.array(params.log_chol)
    A[..., 2, 0] = 1.0
    with pytest.raises(ValidationError, match="upper triangular"):
        type(params).create(params.means, A, params.logits)


# ----------------------------------------------------------------------- online EM
@pytest.mark.parametrize("name", NAMES)
def test_initial_and_recentred_stats_reproduce_the_parameters(name):
    rng = np.random.default_rng(19)
    family = get_family(name)
    params = family.init_from_moments([0.2, 0.8], rng.normal(size=(2, 3)),
                                      random_covariances(name, rng, 2, 3), 1e-6)
    for pseudo in (family.initial_stats(params, 1e-3),
                  family.recentre(family.em_stats(random_data(rng, 20, 3), params), params,
                                   1e-3)):
        assert np.all(pseudo.sx == 0)
        back = family.m_step(pseudo, params, 1e-3)
        assert rel_err(family.covariances(back), family.covariances(params)) < 1e-12
        assert rel_err(back.means, params.means) < 1e-14


@pytest.mark.parametrize("name", NAMES)
def test_online_em_first_step_with_unit_step_size_is_a_batch_em_step(name):
    rng = np.random.default_rng(20)
    family = get_family(name)
    params = random_params(name, rng, 3, 2)
    X = random_data(rng, 40, 2)
    state = online_em_init(family, params, 1e-6)
    new, state, batch_nll = online_em_step(family, X, params, state, alpha=1.0, t0=0.0,
                                           reg_covar=1e-6)
    ref, ll = em_step(family, X, params, reg_covar=1e-6)
    assert batch_nll == pytest.approx(-ll, rel=1e-14)
    for a, b in zip(new, ref, strict=True):
        assert rel_err(a, b) < 1e-12
    assert state.count == 1


def test_online_em_on_the_diag_family_equals_mogsgd_online_em():
    rng = np.random.default_rng(21)
    params = random_params("diag", rng, 3, 2)
    X = random_data(rng, 90, 2)
    ours, ours_p = online_em_init(get_family("diag"), params, 1e-6), params
    ref, ref_p = online_em.online_em_init(params, 1e-6), params
    for b in range(6):
        batch = X[15 * b: 15 * (b + 1)]
        ours_p, ours, _ = online_em_step(get_family("diag"), batch, ours_p, ours)
        ref_p, ref, _ = online_em.online_em_step(batch, ref_p, ref)
    for a, b in zip(ours_p, ref_p, strict=True):
        assert rel_err(a, b) < 1e-13


def raw_online_em(name, X_batches, params, family, reg, alpha, t0):
    """Eq. 36 with *raw* statistics (s0, s1, s2) = mean of (g, g x, g x x^T), independently."""
    k, d = params.means.shape
    pi = np.exp(special.log_softmax(params.logits))
    cov = family.covariances(params)
    cov_k = {"full": lambda: cov, "tied": lambda: np.broadcast_to(cov, (k, d, d)),
             "spherical": lambda: cov[:, None, None] * np.eye(d)}[name]() - reg * np.eye(d)
    mu = np.array(params.means)
    s0, s1 = pi, pi[:, None] * mu
    s2 = pi[:, None, None] * (cov_k + mu[:, :, None] * mu[:, None, :])
    current = params
    for t, X in enumerate(X_batches, start=1):
        g = min(1.0, (t + t0) ** (-alpha))
        gamma = np.exp(log_prob_and_log_resp(family, X, current)[1])
        n = len(X)
        s0 = (1 - g) * s0 + g * gamma.sum(0) / n
        s1 = (1 - g) * s1 + g * gamma.T @ X / n
        s2 = (1 - g) * s2 + g * np.einsum("ik,id,ie->kde", gamma, X, X) / n
        mu = s1 / s0[:, None]
        scatter = s2 - s0[:, None, None] * mu[:, :, None] * mu[:, None, :]
        if name == "full":
            new_cov = scatter / s0[:, None, None] + reg * np.eye(d)
        elif name == "tied":
            new_cov = scatter.sum(0) / s0.sum() + reg * np.eye(d)
        else:
            new_cov = np.trace(scatter, axis1=1, axis2=2) / (d * s0) + reg
        current = family.init_from_moments(s0 / s0.sum(), mu, new_cov, 0.0)
    return current


@pytest.mark.parametrize("name", ["full", "tied", "spherical"])
def test_online_em_equals_the_raw_moment_recursion(name):
    rng = np.random.default_rng(22)
    family = get_family(name)
    params = family.init_from_moments([0.3, 0.7], [[0.0, 0.0, 0.0], [2.0, 1.0, -1.0]],
                                      random_covariances(name, rng, 2, 3), 1e-6)
    batches = [random_data(rng, 25, 3) for _ in range(6)]
    state, current = online_em_init(family, params, 1e-4), params
    for X in batches:
        current, state, _ = online_em_step(family, X, current, state, alpha=0.7, t0=1.0,
                                           reg_covar=1e-4)
    ref = raw_online_em(name, batches, params, family, 1e-4, 0.7, 1.0)
    assert rel_err(current.means, ref.means) < 1e-10
    assert rel_err(family.covariances(current), family.covariances(ref)) < 1e-10
    assert rel_err(special.softmax(current.logits), special.softmax(ref.logits)) < 1e-12


@pytest.mark.parametrize("name", NAMES)
def test_every_family_implements_the_protocol(name):
    family = get_family(name)
    assert isinstance(family, CovarianceFamily)
    for method in ("n_parameters", "init_from_moments", "log_prob_components",
                   "nll_grad_sums", "em_stats", "m_step", "project_floor", "covariances",
                   "precisions", "precisions_cholesky", "admissible_scale", "to_data",
                   "from_data", "sample", "initial_stats", "recentre"):
        assert callable(getattr(family, method)), method


@pytest.mark.parametrize("name", NAMES)
def test_m_step_keeps_precision_far_from_the_origin(name):
    # centred statistics: a covariance of order 1 at an offset of 1e7 is exact to ~1e-9,
    # where raw second moments (x^2 ~ 1e14) would keep only ~1e-2 of it
    rng = np.random.default_rng(23)
    family = get_family(name)
    d = 3
    X_local = rng.normal(size=(400, d)) @ np.diag([1.0, 0.5, 2.0])
    X = X_local + 1e7
    cov = np.cov(X_local.T, bias=True)
    ref = {"full": cov[None], "tied": cov, "diag": np.diag(cov)[None],
           "spherical": np.array([np.trace(cov) / d])}[name]
    params = family.init_from_moments([1.0], X[:1] + 0.5, ref * 2.0 + 0.1, 1e-12)
    new, _ = em_step(family, X, params, reg_covar=0.0)
    assert rel_err(new.means, X.mean(axis=0, keepdims=True)) < 1e-15
    assert rel_err(family.covariances(new), ref) < 1e-8


@pytest.mark.parametrize("name", NAMES)
def test_projected_gradient_descent_reaches_the_em_optimum(name):
    # the pieces an SGD solver will use: finalize, tree_map, project_floor
    rng = np.random.default_rng(24)
    family = get_family(name)
    X = np.concatenate([rng.normal(0.0, 1.0, (150, 2)) @ [[1.0, 0.6], [0.0, 0.8]],
                        rng.normal(0.0, 0.5, (100, 2)) + [4.0, 1.0]])
    unit = {"full": np.stack([np.eye(2)] * 2), "tied": np.eye(2), "diag": np.ones((2, 2)),
            "spherical": np.ones(2)}[name]
    start = family.init_from_moments([0.5, 0.5], [[0.5, 0.5], [3.0, 0.5]], unit, 1e-3)
    em = start
    for _ in range(300):
        em, _ = em_step(family, X, em, reg_covar=0.0)
    params = start
    for _ in range(1500):
        _, grad = finalize(family.nll_grad_sums(X, params), family.params_type)
        params = family.project_floor(tree_map(lambda p, g: p - 0.1 * g, params, grad), 1e-3)
    nll_gd = -log_prob(family, X, params).mean()
    nll_em = -log_prob(family, X, em).mean()
    assert nll_gd == pytest.approx(nll_em, abs=1e-5)
