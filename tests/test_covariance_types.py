"""``SGDGaussianMixture(covariance_type=...)``: every covariance type through the one
pipeline, as a product over the types x solvers x input kinds where behaviour varies.

The maths of each family is tested in ``test_covariance_families.py`` and
``test_covariance_derivations.py``; here the estimator: recovery of correlated mixtures,
agreement with scikit-learn's ``GaussianMixture`` (attributes, scores, BIC and the fitted
optimum), standardisation mapped back, the variance floor, model files, checkpoints,
scikit-learn's parameter names and the clear refusals.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from conftest import component_covariance
from scipy.optimize import linear_sum_assignment
from sklearn.datasets import load_iris, load_wine
from sklearn.mixture import GaussianMixture

from mogsgd import SGDGaussianMixture, make_mixture
from mogsgd.checkpoint import read_checkpoint
from mogsgd.covariance import COVARIANCE_TYPES, family_of, get_family
from mogsgd.errors import ConvergenceWarning, ValidationError
from mogsgd.model_io import FORMAT_VERSION

TYPES = list(COVARIANCE_TYPES)
SOLVERS = ["sgd", "em", "online_em"]


def quiet_fit(X, sample_weight=None, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return SGDGaussianMixture(**kwargs).fit(X, sample_weight=sample_weight)


def sklearn_with(est: SGDGaussianMixture) -> GaussianMixture:
    """A scikit-learn ``GaussianMixture`` holding ``est``'s fitted parameters."""
    gm = GaussianMixture(est.n_components, covariance_type=est.covariance_type)
    for name in ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_"):
        setattr(gm, name, getattr(est, name))
    gm.converged_, gm.n_iter_, gm.lower_bound_ = True, 1, 0.0
    return gm


def match(estimated: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """The permutation of estimated components nearest the true means."""
    cost = ((estimated[:, None, :] - truth[None, :, :]) ** 2).sum(-1)
    rows, cols = linear_sum_assignment(cost)
    return rows[np.argsort(cols)]


def correlated(covariance_type: str, n: int = 3000, seed: int = 0):
    """Well separated, rotated (correlated features) mixture data of ``covariance_type``."""
    X, y, truth = make_mixture(n, 3, 2, separation=3.0, random_state=seed,
                               covariance_type=covariance_type)
    return X, y, truth


# ------------------------------------------------------ recovery: types x solvers x kinds
def as_kind(kind: str, X: np.ndarray, tmp_path):
    if kind == "array":
        return X
    path = tmp_path / "X.npy"
    np.save(path, X)
    return str(path)


@pytest.mark.parametrize("kind", ["array", "stream"])
@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("covariance_type", TYPES)
def test_recovers_the_true_mixture(covariance_type, solver, kind, tmp_path):
    X, _, truth = correlated(covariance_type)
    family = get_family(covariance_type)
    est = quiet_fit(as_kind(kind, X, tmp_path), n_components=2, covariance_type=covariance_type,
                    solver=solver, random_state=0)
    order = match(est.means_, truth.means)
    true_cov = family.covariances(truth)
    got_cov = est.covariances_ if covariance_type == "tied" else est.covariances_[order]
    assert np.abs(est.means_[order] - truth.means).max() < 0.2
    assert np.abs(est.weights_[order] - truth.weights).max() < 0.03
    assert np.abs(got_cov - true_cov).max() < 0.15 * np.abs(true_cov).max()
    # and the likelihood of the truth, per point, on these rows
    truth_ll = float(family_of(truth).log_prob_components(X, truth).max(axis=1).mean())
    assert est.score(X) > truth_ll - 0.05


# ------------------------------------------- the default fit against scikit-learn's optimum
DATA = {
    "separated": lambda: make_mixture(2000, 2, 3, separation=4.0, random_state=1)[0],
    "overlapping": lambda: make_mixture(2000, 2, 3, separation=1.0, random_state=2)[0],
    "correlated": lambda: make_mixture(2000, 3, 3, separation=2.0, random_state=3,
                                       covariance_type="full")[0],
    "iris": lambda: load_iris().data,
    "wine": lambda: load_wine().data,
}


@pytest.mark.parametrize("k", [3, 5])
@pytest.mark.parametrize("covariance_type", TYPES)
@pytest.mark.parametrize("data", list(DATA))
def test_default_sgd_fit_is_within_002_nats_of_sklearn_n_init_5(data, covariance_type, k):
    """Issue 17's goal on the objective both fits optimise, the mean log-likelihood of the
    training rows: the default fit (one run) is at most 0.02 nats per row below the best of
    scikit-learn's five.  Before the initial candidates were polished in the fit's own family
    (they were polished only for ``diag``) and the refinement kept a polished start that SGD
    had left, the gaps with K=5 on wine were -0.27 (full) and -0.73 (spherical)."""
    X = DATA[data]()
    ours = quiet_fit(X, n_components=k, covariance_type=covariance_type, random_state=0)
    ref = GaussianMixture(k, covariance_type=covariance_type, n_init=5, random_state=0).fit(X)
    assert ours.score(X) > ref.score(X) - 0.02


def test_the_refinement_never_ends_below_where_it_started():
    """EM from a start at its own fixed point (nearly singular covariances) can lose a few
    units of rounding; the refinement then keeps its start instead of returning the
    stochastic end point it moved away from (full, K=10 on wine: SGD left the polished start
    at -2.22 nats per row for -12.3, and the fit ended there)."""
    from types import SimpleNamespace

    from mogsgd.em import EMResult
    from mogsgd.solvers.runs import SOLVERS, Run, refine

    X = load_wine().data
    est = quiet_fit(X, n_components=2, covariance_type="full", random_state=0)
    good = est._params_std   # noqa: SLF001 - the fit's own coordinates
    bad = good._replace(means=good.means + 1.0)
    lls = {id(good): -2.0, id(bad): -12.0}
    loglik = lambda p: lls[id(p)]   # noqa: E731
    # EM's first log-likelihood is its start's; from the good start it loses rounding
    rounded = lambda p, **options: EMResult(p, [lls[id(p)], lls[id(p)] - 1e-9],  # noqa: E731
                                            [0.0, 0.0], True, 1)
    prepared = SimpleNamespace(all_loglik=loglik, train_loglik=loglik, em_fit=rounded,
                               em_stats=object(), in_memory=True, cheap_passes=True,
                               n_features=X.shape[1], train=X, val=None,
                               scaler=SimpleNamespace(log_det=1.0))
    settings = SimpleNamespace(refine="auto", min_variance=1e-6, covariance_type="full",
                               n_components=2, config=SimpleNamespace(early_stopping=True))
    run = refine(Run(bad, None, score=13.0, n_iter=5, start=good), SOLVERS["sgd"], prepared,
                 settings)
    assert run.params is good and run.score == pytest.approx(3.0)


# --------------------------------------------------- scikit-learn's attributes and scores
@pytest.fixture(scope="module")
def fitted():
    """One EM fit per type on correlated data (EM: deterministic and quick)."""
    X = correlated("full", n=1500, seed=4)[0]
    return X, {t: quiet_fit(X, n_components=2, covariance_type=t, solver="em", random_state=0)
               for t in TYPES}


@pytest.mark.parametrize("covariance_type", TYPES)
def test_fitted_attributes_have_sklearns_shapes_and_relations(fitted, covariance_type):
    X, models = fitted
    est = models[covariance_type]
    k, d = 2, X.shape[1]
    shape = {"full": (k, d, d), "tied": (d, d), "diag": (k, d), "spherical": (k,)}
    for name in ("covariances_", "precisions_", "precisions_cholesky_"):
        assert getattr(est, name).shape == shape[covariance_type], name
    assert est.means_.shape == (k, d) and est.weights_.shape == (k,)
    cov, prec, chol = est.covariances_, est.precisions_, est.precisions_cholesky_
    if covariance_type in ("full", "tied"):
        np.testing.assert_allclose(prec @ cov, np.broadcast_to(np.eye(d), cov.shape),
                                   atol=1e-9)
        np.testing.assert_allclose(chol @ np.swapaxes(chol, -1, -2), prec, rtol=1e-10)
        assert np.all(np.tril(chol, -1) == 0)          # upper triangular, as scikit-learn
    else:
        np.testing.assert_allclose(prec * cov, 1.0, rtol=1e-12)
        np.testing.assert_allclose(chol ** 2, prec, rtol=1e-12)


@pytest.mark.parametrize("covariance_type", TYPES)
def test_scores_predictions_bic_aic_equal_sklearns_for_the_same_parameters(fitted,
                                                                       covariance_type):
    X, models = fitted
    est = models[covariance_type]
    ref = sklearn_with(est)
    np.testing.assert_allclose(est.score_samples(X), ref.score_samples(X), rtol=1e-9)
    np.testing.assert_allclose(est.predict_proba(X), ref.predict_proba(X), atol=1e-9)
    assert np.array_equal(est.predict(X), ref.predict(X))
    assert est.n_parameters() == ref._n_parameters()
    assert est.bic(X) == pytest.approx(ref.bic(X), rel=1e-10)
    assert est.aic(X) == pytest.approx(ref.aic(X), rel=1e-10)


@pytest.mark.parametrize("covariance_type", TYPES)
def test_sample_has_the_fitted_moments(fitted, covariance_type):
    _, models = fitted
    est = models[covariance_type]
    Xs, ys = est.sample(40_000, random_state=1)
    assert Xs.shape == (40_000, est.n_features_in_) and set(ys) <= {0, 1}
    family = get_family(covariance_type)
    for k in range(2):
        rows = Xs[ys == k]
        assert np.abs(rows.mean(axis=0) - est.means_[k]).max() < 0.1
        emp = np.cov(rows.T)
        want = component_covariance(est.covariances_, family.name, k, len(emp))
        assert np.abs(emp - want).max() < 0.1 * np.abs(want).max()


# ------------------------------------------------------------- standardisation and floor
@pytest.mark.parametrize("covariance_type", ["full", "tied"])
def test_standardisation_maps_covariance_matrices_back(covariance_type):
    # EM on X and on the affinely mapped s * X + c: the same optimum, mapped
    X = correlated(covariance_type, n=1500, seed=5)[0]
    s, c = np.array([1.0, 100.0, 0.01]), np.array([5.0, -300.0, 2.0])
    a = quiet_fit(X, n_components=2, covariance_type=covariance_type, solver="em",
                  random_state=0, tol=1e-10)
    b = quiet_fit(X * s + c, n_components=2, covariance_type=covariance_type, solver="em",
                  random_state=0, tol=1e-10)
    order = match(b.means_, a.means_ * s + c)
    np.testing.assert_allclose(b.means_[order], a.means_ * s + c, rtol=1e-6, atol=1e-6)
    scaled = a.covariances_ * np.outer(s, s)
    got = b.covariances_ if covariance_type == "tied" else b.covariances_[order]
    np.testing.assert_allclose(got, scaled, rtol=1e-5, atol=1e-9 * np.abs(scaled).max())
    assert b.score(X * s + c) == pytest.approx(a.score(X) - np.log(s).sum(), abs=1e-6)


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("covariance_type", TYPES)
def test_the_variance_floor_holds_for_every_eigenvalue(covariance_type, solver):
    # a feature that is an exact linear combination of two others: a singular covariance
    rng = np.random.default_rng(6)
    X = rng.normal(size=(600, 2)) @ [[1.0, 0.5], [0.0, 1.0]]
    X = np.column_stack([X, X[:, 0] - 2.0 * X[:, 1]])
    X[:300] += 5.0
    floor = 1e-3
    est = quiet_fit(X, n_components=2, covariance_type=covariance_type, solver=solver,
                    standardize=False, min_variance=floor, random_state=0)
    cov = np.asarray(est.covariances_)
    if covariance_type in ("full", "tied"):
        eig = np.linalg.eigvalsh(cov)
    else:
        eig = cov
    assert eig.min() >= floor * (1 - 1e-9)
    assert np.isfinite(est.score(X))


# ----------------------------------------------------------- model files and checkpoints
@pytest.mark.parametrize("covariance_type", TYPES)
def test_model_files_round_trip_every_type(fitted, covariance_type, tmp_path):
    X, models = fitted
    est = models[covariance_type]
    path = tmp_path / "m.json"
    est.save(path)
    doc = json.loads(path.read_text())
    assert doc["format_version"] == FORMAT_VERSION == 2
    assert doc["summary"]["covariance_type"] == covariance_type
    back = SGDGaussianMixture.load(path)
    assert back.covariance_type == covariance_type
    assert np.array_equal(back.score_samples(X), est.score_samples(X))
    for name in ("covariances_", "precisions_cholesky_", "means_", "weights_"):
        assert np.array_equal(getattr(back, name), getattr(est, name)), name


def test_a_format_1_file_of_a_diagonal_model_still_loads(fitted, tmp_path):
    """A version-1 file: what mogsgd wrote before the covariance types (no covariance_type
    setting, format_version 1) -- made from today's file by removing what version 2 added."""
    from mogsgd.model_io import _checksum

    X, models = fitted
    est = models["diag"]
    path = tmp_path / "v1.json"
    est.save(path)
    doc = json.loads(path.read_text())
    for name in ("covariance_type", "precisions_init", "init_params", "reg_covar"):
        del doc["body"]["settings"][name]
    doc["body"]["settings"]["max_iter"] = 200          # version 1's default
    doc["summary"].pop("covariance_type")
    doc["format_version"] = 1
    doc["checksum"] = _checksum(doc)
    path.write_text(json.dumps(doc))
    back = SGDGaussianMixture.load(path)
    assert back.covariance_type == "diag"
    assert np.array_equal(back.score_samples(X), est.score_samples(X))


@pytest.mark.parametrize("solver", ["sgd", "online_em"])
@pytest.mark.parametrize("covariance_type", ["full", "tied", "spherical"])
def test_stop_resume_equals_a_straight_run(covariance_type, solver, tmp_path):
    X = correlated(covariance_type, n=400, seed=7)[0]
    kw = dict(n_components=2, covariance_type=covariance_type, solver=solver, max_epochs=8,
              batch_size=64, random_state=0, patience=50, refine="none")
    straight = quiet_fit(X, **kw)
    path = tmp_path / "ck.json"
    quiet_fit(X, checkpoint_path=path, callback=lambda state: state.epoch < 3, **kw)
    assert read_checkpoint(path).epoch == 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        resumed = SGDGaussianMixture(**kw).fit(X, resume=path)
    for a, b in zip(straight.params_, resumed.params_, strict=True):
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes()
    assert straight.history_["train_nll"] == resumed.history_["train_nll"]


def test_resume_refuses_another_covariance_type(tmp_path):
    X = correlated("full", n=300, seed=8)[0]
    path = tmp_path / "ck.json"
    quiet_fit(X, n_components=2, covariance_type="full", max_epochs=2, checkpoint_path=path)
    with pytest.raises(ValidationError, match="covariance_type='full' \\(now 'tied'\\)"):
        SGDGaussianMixture(2, covariance_type="tied", max_epochs=2).fit(X, resume=path)


# --------------------------------------------------- warm start, partial_fit, weights
@pytest.mark.parametrize("covariance_type", ["full", "tied", "spherical"])
def test_partial_fit_and_warm_start_continue_every_type(covariance_type):
    X = correlated(covariance_type, n=2000, seed=9)[0]
    est = SGDGaussianMixture(2, covariance_type=covariance_type, random_state=0)
    for block in np.array_split(X, 4):
        est.partial_fit(block)
    assert est.n_iter_ == 4 and est.means_.shape == (2, 3)
    assert est.score(X) > quiet_fit(X, n_components=2, covariance_type=covariance_type,
                                    solver="em", random_state=0).score(X) - 0.1
    warm = quiet_fit(X, n_components=2, covariance_type=covariance_type, warm_start=True,
                     max_epochs=3, random_state=0)
    before = warm.history_["epoch"][-1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warm.fit(X)
    assert warm.history_["epoch"][-1] > before


@pytest.mark.parametrize("covariance_type", ["full", "tied", "spherical"])
def test_integer_weights_equal_repeated_rows_for_em(covariance_type):
    X = correlated(covariance_type, n=300, seed=10)[0]
    w = np.random.default_rng(0).integers(0, 3, size=len(X))
    a = quiet_fit(X, w, n_components=2, covariance_type=covariance_type, solver="em",
                  random_state=0, tol=1e-12, standardize=False, means_init=X[:2])
    b = quiet_fit(np.repeat(X, w, axis=0), n_components=2, covariance_type=covariance_type,
                  solver="em", random_state=0, tol=1e-12, standardize=False, means_init=X[:2])
    order = match(b.means_, a.means_)    # the restarts draw differently: labels may swap
    np.testing.assert_allclose(b.means_[order], a.means_, rtol=1e-7, atol=1e-10)
    got = b.covariances_ if covariance_type == "tied" else b.covariances_[order]
    np.testing.assert_allclose(got, a.covariances_, rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("solver", ["sgd", "online_em"])
@pytest.mark.parametrize("covariance_type", ["full", "tied", "spherical"])
def test_full_batch_stochastic_fits_weigh_rows_like_repeats(covariance_type, solver):
    # n <= batch_size: the fit runs on the distinct rows with their total weights, so
    # integer weights and repeated rows are the same fit exactly
    X = correlated(covariance_type, n=120, seed=19)[0]
    w = np.random.default_rng(1).integers(1, 3, size=len(X))
    kw = dict(n_components=2, covariance_type=covariance_type, solver=solver,
              random_state=0, max_epochs=30)
    a = quiet_fit(X, w, **kw)
    b = quiet_fit(np.repeat(X, w, axis=0), **kw)
    np.testing.assert_allclose(a.covariances_, b.covariances_, rtol=1e-9)
    np.testing.assert_allclose(a.means_, b.means_, rtol=1e-9, atol=1e-12)


# -------------------------------------------------------- scikit-learn's parameter names
def test_init_params_maps_onto_init():
    X = correlated("full", n=300, seed=11)[0]
    for sk_name, ours in (("k-means++", "kmeans++"), ("kmeans", "kmeans"),
                          ("random", "random"), ("random_from_data", "random_points")):
        a = quiet_fit(X, n_components=2, init_params=sk_name, solver="em", max_iter=0,
                      random_state=0)
        b = quiet_fit(X, n_components=2, init=ours, solver="em", max_iter=0, random_state=0)
        assert np.array_equal(a.means_, b.means_), sk_name
    with pytest.raises(ValidationError, match="init='random' and init_params='kmeans'"):
        SGDGaussianMixture(2, init="random", init_params="kmeans").fit(X)
    with pytest.raises(ValidationError, match="unknown init_params .spectral.; choose one of"):
        SGDGaussianMixture(2, init_params="spectral").fit(X)


@pytest.mark.parametrize("covariance_type", TYPES)
def test_precisions_init_is_the_start(covariance_type):
    X = correlated("full", n=300, seed=12)[0]
    ref = GaussianMixture(2, covariance_type=covariance_type, random_state=0).fit(X)
    est = quiet_fit(X, n_components=2, covariance_type=covariance_type, solver="em",
                    max_iter=0, weights_init=ref.weights_, means_init=ref.means_,
                    precisions_init=ref.precisions_)
    np.testing.assert_allclose(est.precisions_, ref.precisions_, rtol=1e-8)
    np.testing.assert_allclose(est.means_, ref.means_, rtol=1e-10)


def test_reg_covar_is_refused_naming_min_variance():
    with pytest.raises(ValidationError, match="reg_covar.*set variance_floor for a floor in data "
                                              "units, or min_variance"):
        SGDGaussianMixture(2, reg_covar=1e-6).fit(np.random.default_rng(0).normal(size=(50, 2)))


@pytest.mark.parametrize("solver", ["sgd", "online_em"])
def test_max_iter_caps_the_epochs_of_the_stochastic_solvers(solver):
    X = correlated("diag", n=2000, seed=13)[0]
    est = quiet_fit(X, n_components=2, solver=solver, max_iter=5, random_state=0)
    assert est.n_iter_ == 5 and len(est.lower_bounds_) == 5
    both = quiet_fit(X, n_components=2, solver=solver, max_iter=7, max_epochs=3,
                     random_state=0)
    assert both.n_iter_ == 3


def test_max_iter_none_gives_em_its_default_budget():
    X = correlated("full", n=500, seed=14)[0]
    est = quiet_fit(X, n_components=2, covariance_type="full", solver="em", random_state=0)
    assert est.max_iter is None and est.converged_ and 0 < est.n_iter_ <= 200


# -------------------------------------------------------------------- clear refusals
@pytest.mark.parametrize("covariance_type", ["full", "tied", "spherical"])
def test_what_the_other_types_do_not_support_is_refused_in_one_line(covariance_type):
    X = np.random.default_rng(0).normal(size=(50, 2))
    cases = [
        (dict(missing="marginalize"), "missing='marginalize' is not supported with"),
        (dict(variances_init=np.ones((2, 2))), "give precisions_init"),
    ]
    for extra, msg in cases:
        with pytest.raises(ValidationError, match=msg) as info:
            SGDGaussianMixture(2, covariance_type=covariance_type, **extra).fit(X)
        assert "\n" not in str(info.value)
    # NaN without missing=: the fix named is one this type takes (not missing='marginalize')
    X[3, 1] = np.nan
    with pytest.raises(ValidationError, match="impute them") as info:
        SGDGaussianMixture(2, covariance_type=covariance_type).fit(X)
    assert "fit with missing=" not in str(info.value)
    assert "only covariance_type='diag' marginalises" in str(info.value)


@pytest.mark.parametrize("covariance_type", ["full", "tied"])
def test_data_beyond_the_factors_range_is_refused_in_one_line(covariance_type, tmp_path,
                                                              capsys):
    """Data at 1e-300 fit as the unit data do (standardisation makes scale irrelevant);
    at 1e-310 (subnormal) the precision factor in data units, ``diag(1/s) U'`` (eq. 50),
    overflows float64, and the fit says so in one line naming the fix (it failed with
    "log_chol contains NaN or infinite values" after fitting)."""
    from mogsgd.cli import main

    X = correlated(covariance_type, n=400, seed=21)[0]
    unit = quiet_fit(X, n_components=2, covariance_type=covariance_type, random_state=0)
    tiny = quiet_fit(X * 1e-300, n_components=2, covariance_type=covariance_type,
                     random_state=0)
    np.testing.assert_allclose(tiny.score(X * 1e-300) - 3 * np.log(1e300), unit.score(X),
                               rtol=1e-6)
    with pytest.raises(ValidationError, match="multiply X by a constant") as info:
        SGDGaussianMixture(2, covariance_type=covariance_type).fit(X * 1e-310)
    assert "\n" not in str(info.value)
    np.save(tmp_path / "d.npy", X * 1e-310)
    capsys.readouterr()
    assert main(["fit", str(tmp_path / "d.npy"), "-k", "2", "--covariance-type",
                 covariance_type, "--out", str(tmp_path / "m.json"), "-q"]) == 3
    err = capsys.readouterr().err.strip()
    assert "multiply X by a constant" in err and "\n" not in err and "Traceback" not in err


def test_an_unknown_covariance_type_is_refused():
    with pytest.raises(ValidationError, match="unknown covariance_type .banded.; choose one of"):
        SGDGaussianMixture(2, covariance_type="banded").fit(np.zeros((10, 2)))


def test_a_tensor_fit_of_another_type_is_refused_with_the_fix():
    torch = pytest.importorskip("torch")
    X = torch.randn(100, 2, dtype=torch.float64)
    with pytest.raises(ValidationError, match="not supported for torch tensors.*'cpu-numpy'"):
        SGDGaussianMixture(2, covariance_type="full").fit(X)
    # a model fitted on the NumPy path scores tensors (on the host), returning a tensor
    est = quiet_fit(X.numpy(), n_components=2, covariance_type="full", random_state=0)
    out = est.score_samples(X)
    assert isinstance(out, torch.Tensor)
    np.testing.assert_allclose(out.numpy(), est.score_samples(X.numpy()), rtol=1e-12)


def test_default_diag_is_unchanged_by_the_new_parameters():
    X = correlated("diag", n=500, seed=15)[0]
    a = quiet_fit(X, n_components=2, random_state=0)
    b = quiet_fit(X, n_components=2, random_state=0, covariance_type="diag",
                  init_params=None, reg_covar=None, precisions_init=None, max_iter=None)
    assert a.params_.allclose(b.params_, rtol=0) and a.covariances_.shape == (2, 3)


# ------------------------------------------------------------ selection, plots, CLI
def test_select_chooses_the_covariance_type_and_k_by_bic():
    from mogsgd.selection import select_n_components

    X = make_mixture(1500, 2, 3, separation=3.0, random_state=16, covariance_type="full")[0]
    result = select_n_components(X, [2, 3, 4], n_init=1, random_state=0, solver="em",
                                 covariance_types=["full", "spherical"])
    assert result.covariance_types == ["full", "spherical"]
    assert (result.best_type("bic"), result.best("bic")) == ("full", 3)
    assert set(result.models) == {(t, k) for t in ("full", "spherical") for k in (2, 3, 4)}
    table = result.to_markdown()
    assert "| covariance | K |" in table and "Best: BIC full, K=3" in table


def test_plots_draw_rotated_ellipses_from_the_covariance_sub_block():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Ellipse

    from mogsgd import plotting

    X, y, truth = correlated("full", n=600, seed=17)
    est = quiet_fit(X, n_components=2, covariance_type="full", solver="em", random_state=0)
    ax = plotting.plot_data(X, y, est.params_, dims=(0, 2), n_std=(1,))
    ellipses = [p for p in ax.patches if isinstance(p, Ellipse)]
    assert len(ellipses) == 2
    for k, e in enumerate(ellipses):
        sub = est.covariances_[k][np.ix_([0, 2], [0, 2])]
        lam, vec = np.linalg.eigh(sub)
        assert e.width == pytest.approx(2 * np.sqrt(lam[1]), rel=1e-9)
        assert e.height == pytest.approx(2 * np.sqrt(lam[0]), rel=1e-9)
        # the major axis lies along the top eigenvector (up to its sign)
        angle = np.radians(e.angle)
        assert abs(np.cos(angle) * vec[0, 1] + np.sin(angle) * vec[1, 1]) == pytest.approx(1.0)
    for fig in (plotting.plot_pairs(X, est.params_, y),
                plotting.plot_density(X, est.params_).figure,
                plotting.plot_fit_vs_truth(X, est.params_, truth)):
        assert fig.axes
    plt.close("all")


def test_the_readme_python_snippet_runs_twice_in_a_row(tmp_path, monkeypatch):
    """The README's first Python example (which saves a model file) can be re-run: the
    second run replaces the file it wrote (issue 16 item 6)."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    snippet = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
    assert "save(" in snippet
    monkeypatch.chdir(tmp_path)
    for _ in range(2):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            exec(compile(snippet, "README.md", "exec"), {})
    assert (tmp_path / "model.json").exists()


def test_cli_fits_and_selects_covariance_types(tmp_path):
    """``mogsgd fit --covariance-type`` and ``mogsgd select --covariance-type``, through the
    real command."""
    import subprocess
    import sys
    from pathlib import Path

    X = correlated("full", n=800, seed=18)[0]
    data = tmp_path / "data.npy"
    np.save(data, X)
    env = {"PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src"),
           "PATH": "/usr/bin:/bin"}

    def mogsgd(*argv):
        return subprocess.run([sys.executable, "-m", "mogsgd", *map(str, argv)],
                              capture_output=True, text=True, env=env, timeout=300)

    out = mogsgd("fit", data, "-k", 2, "--covariance-type", "full", "--out",
                 tmp_path / "m.json", "-q")
    assert out.returncode == 0, out.stderr
    est = SGDGaussianMixture.load(tmp_path / "m.json")
    assert est.covariance_type == "full" and est.covariances_.shape == (2, 3, 3)
    out = mogsgd("select", data, "--k", "1..3", "--covariance-type", "full", "spherical",
                 "--n-init", 1, "--solver", "em", "--json", "-q")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["best"]["bic"] == {"covariance_type": "full", "k": 2}
    assert {r["covariance_type"] for r in result["rows"]} == {"full", "spherical"}
    out = mogsgd("fit", data, "--covariance-type", "banded", "-q")
    assert out.returncode == 2 and "banded" in out.stderr and "Traceback" not in out.stderr
