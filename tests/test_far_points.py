"""Points far beyond the data and data near the ends of the float range (issue #14 item 11,
eqs. 52-53 of ``docs/derivations.md``): every finite input gets a finite log-density,
responsibilities that sum to one, the label of its largest responsibility, and finite
gradients and EM statistics, on every path that computes them."""

import json
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from mogsgd import SGDGaussianMixture, density, em, fast, gradients
from mogsgd.cli import main
from mogsgd.covariance import FULL, SPHERICAL, TIED, FullParams, SphericalParams, TiedParams
from mogsgd.errors import ConvergenceWarning
from mogsgd.params import MixtureParams

#: Finite floats of every magnitude: tiny, ordinary, 1e154 (where squares overflow) and up
#: to the end of the range, with either sign.
FAR = st.one_of(
    st.floats(-10.0, 10.0),
    st.floats(-1.7e308, 1.7e308, allow_nan=False, allow_infinity=False),
    st.sampled_from([1e154, -1e154, 1e200, -1e300, 1.7e308, -1.7e308, 1e-310, 5e-324]),
)
ROWS = arrays(np.float64, st.tuples(st.integers(1, 6), st.just(2)), elements=FAR)
FAST = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


def blobs(n=300, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 2))
    X[: n // 2] += 5.0
    return X


def fit_quietly(X, **kwargs):
    kwargs = {"n_components": 2, "max_epochs": 20, "random_state": 0, **kwargs}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return SGDGaussianMixture(**kwargs).fit(X)


def assert_well_defined(model, X):
    """Finite scores, responsibilities that sum to one, labels = argmax."""
    scores = model.score_samples(X)
    assert np.all(np.isfinite(scores)), scores
    proba = model.predict_proba(X)
    assert np.all(np.isfinite(proba)) and np.all(proba >= 0), proba
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(model.predict(X), np.argmax(proba, axis=1))
    assert np.isfinite(model.score(X))


@pytest.fixture(scope="module", params=["numpy", "numba"])
def clean_model(request):
    return fit_quietly(blobs(), backend=request.param)


# -------------------------------------------------------- a clean model, far rows
@FAST
@given(X=ROWS)
def test_far_rows_scored_by_a_clean_model_are_well_defined(clean_model, X):
    assert_well_defined(clean_model, X)


@pytest.mark.parametrize("far", [1e154, 1e200, 1.7e308, -1.7e308])
def test_issue_cases_new_point_beyond_1e154(clean_model, far):
    """The reported failure: NaN probabilities and label 0 for a point at >= 1e154."""
    X = np.array([[far, 0.0], [far, far], [0.0, far]])
    assert_well_defined(clean_model, X)
    # far along the first feature on the side of the blob at 5: that blob's component
    near_five = int(np.argmin(np.abs(clean_model.means_[:, 0] - 5.0)))
    if far > 0:
        assert clean_model.predict(X)[0] == near_five


# -------------------------------------------------------- fits with far data
@pytest.mark.parametrize("solver", ["sgd", "em", "online_em"])
def test_one_outlier_at_1e200_gives_a_finite_nll_and_no_nan_row(solver):
    X = blobs()
    X[0, 0] = 1e200
    model = fit_quietly(X, n_components=3, solver=solver)
    assert_well_defined(model, X)


@pytest.mark.parametrize("solver", ["sgd", "em", "online_em"])
def test_data_scaled_by_1e_minus_310_has_finite_scores_as_the_warning_says(solver):
    X = blobs() * 1e-310
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = SGDGaussianMixture(2, solver=solver, max_epochs=20, random_state=0).fit(X)
    promises = [w for w in caught if "scores are finite" in str(w.message)]
    assert promises, [str(w.message) for w in caught]
    assert_well_defined(model, X)
    unit = fit_quietly(blobs(), solver=solver)
    # the same model in other units: log p drops by D log s (eq. 33)
    np.testing.assert_allclose(model.score_samples(X),
                               unit.score_samples(blobs()) - 2 * np.log(1e-310), rtol=1e-6)


# ------------------------------------------------- every path that computes it
def random_params(rng, k=3, d=2):
    return MixtureParams(rng.normal(0, 3, size=(k, d)), rng.normal(0, 0.5, size=(k, d)),
                         rng.normal(size=k))


@FAST
@given(X=ROWS, seed=st.integers(0, 2**16))
def test_numpy_and_numba_agree_and_stay_finite_on_far_rows(X, seed):
    params = random_params(np.random.default_rng(seed))
    X = np.r_[X, np.random.default_rng(seed).normal(size=(40, 2))]
    lp = density.log_prob(X, params)
    assert np.all(np.isfinite(lp))
    np.testing.assert_allclose(fast.log_prob(X, params), lp, rtol=1e-12)
    ref = gradients.nll_grad_sums(X, params)
    got = fast.nll_grad_sums(X, params)
    for name in ref._fields:
        want, have = np.asarray(getattr(ref, name)), np.asarray(getattr(got, name))
        assert np.all(np.isfinite(want)) and np.all(np.isfinite(have)), name
        scale = max(1.0, float(np.max(np.abs(want))))
        assert np.max(np.abs(have - want)) <= 1e-11 * scale, name
    stats = em.em_stats(X, params)
    for name in ("nk", "sx", "sxx"):
        assert np.all(np.isfinite(getattr(stats, name))), name
    resp = density.responsibilities(X, params)
    np.testing.assert_allclose(resp.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    np.testing.assert_allclose(fast.responsibilities(X, params), resp, rtol=0, atol=1e-12)


def test_compiled_epoch_stays_finite_with_a_far_row():
    """The compiled training epoch recomputes far rows in its own batches (eq. 53)."""
    from mogsgd.fast.epoch import CompiledEpoch
    from mogsgd.optim import make_optimizer

    rng = np.random.default_rng(3)
    X = rng.normal(size=(64, 2))
    X[5] = [1e150, -1e150]   # the standardiser's limit; with sigma = 1e-3, h ~ 1e306
    params = MixtureParams(rng.normal(size=(2, 2)), np.full((2, 2), -3.4), np.zeros(2))
    opt = make_optimizer("adam", 0.01)
    epoch = CompiledEpoch(X, None, opt, 8, 1e-6)
    new, state, total, rows = epoch(rng.permutation(64), params, opt.init(params))
    assert np.all(np.isfinite(new.ravel())) and np.isfinite(total) and rows == 64
    assert np.all(np.isfinite(state.nu.ravel()))


FAMILIES = {
    "spherical": (SPHERICAL, lambda r: SphericalParams.create(
        r.normal(0, 3, (3, 2)), r.normal(0, 0.5, 3), r.normal(size=3))),
    "full": (FULL, lambda r: FullParams.create(
        r.normal(0, 3, (3, 2)), np.triu(r.normal(0, 0.3, (3, 2, 2))), r.normal(size=3))),
    "tied": (TIED, lambda r: TiedParams.create(
        r.normal(0, 3, (3, 2)), np.triu(r.normal(0, 0.3, (2, 2))), r.normal(size=3))),
}


@pytest.mark.parametrize("name", list(FAMILIES))
@FAST
@given(X=ROWS, seed=st.integers(0, 2**16))
def test_every_covariance_family_is_finite_on_far_rows(name, X, seed):
    from mogsgd.covariance import log_prob_and_log_resp

    family, make = FAMILIES[name]
    rng = np.random.default_rng(seed)
    params = make(rng)
    X = np.r_[X, rng.normal(size=(20, 2))]
    lp, log_resp = log_prob_and_log_resp(family, X, params)
    assert np.all(np.isfinite(lp))
    np.testing.assert_allclose(np.exp(log_resp).sum(axis=1), 1.0, rtol=0, atol=1e-12)
    sums = family.nll_grad_sums(X, params)
    for field in sums:
        assert np.all(np.isfinite(field))
    stats = family.em_stats(X, params)
    for field in stats:
        assert np.all(np.isfinite(field))
    if name in ("full", "tied"):
        from mogsgd.fast import full_kernel

        got = full_kernel.nll_grad_sums(family, X, params)
        for want, have in zip(sums, got, strict=True):
            np.testing.assert_allclose(have, want, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(full_kernel.log_prob_components(family, X, params),
                                   family.log_prob_components(X, params), rtol=1e-12)


@FAST
@given(X=ROWS, seed=st.integers(0, 2**16))
def test_torch_agrees_with_numpy_on_far_rows(X, seed):
    torch = pytest.importorskip("torch")
    from mogsgd.backends import torch_ops as T

    params = random_params(np.random.default_rng(seed))
    X = np.r_[X, np.random.default_rng(seed).normal(size=(10, 2))]
    Xt = torch.as_tensor(X)
    np.testing.assert_allclose(T.log_prob(Xt, T.to_torch(params)).numpy(),
                               density.log_prob(X, params), rtol=1e-12)
    got = T.sums_to_numpy(T.nll_grad_sums(Xt, T.to_torch(params), kernel="torch"))
    ref = gradients.nll_grad_sums(X, params)
    for name in ref._fields:
        want, have = np.asarray(getattr(ref, name)), np.asarray(getattr(got, name))
        assert np.all(np.isfinite(have)), name
        assert np.max(np.abs(have - want)) <= 1e-11 * max(1.0, float(np.max(np.abs(want))))


# ------------------------------------------------------------------- the CLI
def strict_json(text: str):
    def refuse(constant):
        raise AssertionError(f"{constant} in JSON output")

    return json.loads(text, parse_constant=refuse)


def _numbers(obj):
    if isinstance(obj, dict):
        for v in obj.values():
            yield from _numbers(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _numbers(v)
    elif isinstance(obj, int | float) and not isinstance(obj, bool):
        yield obj


def test_cli_json_of_a_fit_with_an_outlier_and_of_far_points_is_strict_and_finite(
        tmp_path, capsys):
    X = blobs(200)
    X[0, 0] = 1e200
    np.save(tmp_path / "d.npy", X)
    far = np.array([[1e154, 0.0], [-1.7e308, 1e300], [0.0, 1e-310], [2.0, 3.0]])
    np.save(tmp_path / "far.npy", far)
    model = tmp_path / "m.json"
    capsys.readouterr()
    assert main(["fit", str(tmp_path / "d.npy"), "-k", "3", "--epochs", "5", "--out",
                 str(model), "--json", "-q"]) == 0
    fitted = strict_json(capsys.readouterr().out)
    assert np.isfinite(fitted["nll"]) and all(np.isfinite(v) for v in _numbers(fitted))
    assert main(["evaluate", str(model), str(tmp_path / "far.npy"), "--json"]) == 0
    scored = strict_json(capsys.readouterr().out)
    assert None not in scored.values() and all(np.isfinite(v) for v in _numbers(scored))
    assert main(["predict", str(model), str(tmp_path / "far.npy"), "--proba"]) == 0
    out = capsys.readouterr().out
    assert "nan" not in out.lower() and "inf" not in out.lower()
    rows = np.loadtxt(out.splitlines()[1:], delimiter=",")
    np.testing.assert_allclose(rows.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("solver", ["sgd", "em", "online_em"])
@pytest.mark.parametrize("scale", [1e-310, 1e300])
def test_cli_fits_data_at_the_ends_of_the_float_range(tmp_path, capsys, solver, scale):
    """Variances beyond the float range (the model holds log sigma) are not a diverged fit."""
    np.save(tmp_path / "d.npy", blobs(200) * scale)
    capsys.readouterr()
    status = main(["fit", str(tmp_path / "d.npy"), "-k", "2", "--solver", solver, "--epochs",
                   "3", "--out", str(tmp_path / "m.json"), "-q"])
    err = capsys.readouterr().err
    assert status == 0, err
    assert main(["evaluate", str(tmp_path / "m.json"), str(tmp_path / "d.npy"), "--json"]) == 0
    assert np.isfinite(strict_json(capsys.readouterr().out)["nll"])


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_cli_fits_an_outlier_at_1e200_with_every_covariance_type(tmp_path, capsys,
                                                                 covariance_type):
    """A spherical variance shared by a feature holding the outlier is no divergence."""
    X = blobs(200)
    X[0, 0] = 1e200
    np.save(tmp_path / "d.npy", X)
    capsys.readouterr()
    status = main(["fit", str(tmp_path / "d.npy"), "-k", "3", "--covariance-type",
                   covariance_type, "--epochs", "5", "--out", str(tmp_path / "m.json"), "-q"])
    assert status == 0, capsys.readouterr().err
    far = np.array([[1e154, 0.0], [-1.7e308, 1e300], [2.0, 3.0]])
    np.save(tmp_path / "far.npy", far)
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "m.json"), str(tmp_path / "far.npy"), "--json"]) == 0
    assert np.isfinite(strict_json(capsys.readouterr().out)["nll"])
