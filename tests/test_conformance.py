"""The conformance grid: every input kind x every solver x {weights, none} x {fit,
partial_fit, score, predict} reaches the in-memory result to rounding, or raises the
support table's error before any work (in the style of optax's optimiser test product).

The settings make every kind's fit deterministic and comparable: the user's initial
parameters, one full batch per epoch (so the order of rows does not matter) and no early
stopping.  A new input kind (add it to ``KIND_FACTORIES``) or a new solver (the registry
``mogsgd.solvers.SOLVERS``) gets the whole grid.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from mogsgd import SGDGaussianMixture
from mogsgd.data import as_source, write_npy
from mogsgd.data.base import KINDS
from mogsgd.errors import ValidationError
from mogsgd.solvers import FEATURES, SOLVERS

N, D, K = 240, 2, 2


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    X = np.concatenate([rng.normal(0.0, 1.0, (N // 2, D)),
                        rng.normal(4.0, 0.5, (N // 2, D))]) * [1.0, 30.0] + [5.0, -2.0]
    w = rng.integers(1, 4, N).astype(float)
    return X, w


X, W = _data()


def _one_shot(X, tmp_path):
    return iter(np.array_split(X, 4))


def _npy(X, tmp_path):
    path = tmp_path / "x.npy"
    if not path.exists():
        np.save(path, X)
    return str(path)


def _memmap(X, tmp_path):
    return np.load(_npy(X, tmp_path), mmap_mode="r")


def _chunks(X, tmp_path):
    parts = np.array_split(X, 3)
    return lambda: iter(parts)


def _dask(X, tmp_path):
    da = pytest.importorskip("dask.array")
    return da.from_array(X, chunks=(100, D))


def _dask_cluster(X, tmp_path):
    """On the cluster, synchronous SGD: exact per step (local SGD, the default, averages
    the workers' trajectories and is held to the in-memory quality in tests/test_dask.py)."""
    from distributed import default_client

    from mogsgd.data.dask import DaskSource

    return DaskSource(_dask(X, tmp_path), default_client(), mode="sync")


def _tensor(X, tmp_path):
    torch = pytest.importorskip("torch")
    return torch.as_tensor(X)


#: name -> (make the input from X, kind key of mogsgd.data.base.KINDS, needs a cluster)
KIND_FACTORIES = {
    "array": (lambda X, tmp_path: X, "array", False),
    "memmap": (_memmap, "array", False),
    "npy-path": (_npy, "stream", False),
    "re-iterable-chunks": (_chunks, "stream", False),
    "one-shot-iterator": (_one_shot, "one-shot iterator", False),
    "dask-streamed": (_dask, "stream", False),
    "dask-cluster": (_dask_cluster, "dask", True),
    "torch-tensor": (_tensor, "tensor", False),
}


@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("distributed")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                      dashboard_address=None) as lc, \
                distributed.Client(lc) as client:
            yield client


@pytest.fixture
def make_input(request, tmp_path):
    """``make(name) -> input``; a cluster client is active only for the cluster kind."""
    def make(name):
        factory, _, needs_cluster = KIND_FACTORIES[name]
        if needs_cluster:
            request.getfixturevalue("cluster")
        return factory(X, tmp_path)

    return make


def _settings(solver: str) -> dict:
    start = SGDGaussianMixture(K, solver="em", max_iter=1, random_state=0).fit(X)
    return dict(n_components=K, solver=solver, random_state=0, batch_size=4 * N,
                early_stopping=False, max_epochs=3, max_iter=3, tol=0.0, refine="none",
                weights_init=start.weights_, means_init=start.means_,
                variances_init=start.covariances_)


def _expected_error(kind_key: str, solver: str, weights: bool, partial: bool) -> str | None:
    """The support table's verdict: the feature refused first, or None if it all works."""
    caps = KINDS[kind_key][1]
    asked = [f"solver={solver!r}"] if f"solver={solver!r}" in FEATURES else []
    asked += ["sample_weight"] if weights else []
    asked += ["partial_fit"] if partial else []
    for feature in asked:
        if FEATURES[feature][0] not in caps:
            return f"{feature} is not supported for"
    if partial and solver == "em":
        return "partial_fit is not supported for solver='em'"
    return None


def _reference(solver: str, weights: bool, partial: bool,
               passes: int = 2) -> SGDGaussianMixture:
    """The in-memory fit; ``partial``: ``passes`` calls of ``partial_fit``."""
    est = SGDGaussianMixture(**_settings(solver))
    w = W if weights else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if partial:
            for _ in range(passes):
                est.partial_fit(X, sample_weight=w)
        else:
            est.fit(X, sample_weight=w)
    return est


def _assert_same_fit(est: SGDGaussianMixture, ref: SGDGaussianMixture) -> None:
    np.testing.assert_allclose(est.weights_, ref.weights_, rtol=1e-7)
    np.testing.assert_allclose(est.means_, ref.means_, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(est.covariances_, ref.covariances_, rtol=1e-7)
    assert est.n_iter_ == ref.n_iter_
    assert est.lower_bound_ == pytest.approx(ref.lower_bound_, rel=1e-9)


@pytest.mark.parametrize("partial", [False, True], ids=["fit", "partial_fit"])
@pytest.mark.parametrize("weights", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("solver", list(SOLVERS))
@pytest.mark.parametrize("kind", list(KIND_FACTORIES))
def test_every_kind_fits_like_an_array_or_refuses(kind, solver, weights, partial, make_input):
    kind_key = KIND_FACTORIES[kind][1]
    expected = _expected_error(kind_key, solver, weights, partial)
    est = SGDGaussianMixture(**_settings(solver))
    w = W if weights else None
    Xk = make_input(kind)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if expected is not None:
            with pytest.raises(ValidationError, match=expected.replace("(", r"\(")
                               .replace(")", r"\)")):
                (est.partial_fit if partial else est.fit)(Xk, sample_weight=w)
            assert not hasattr(est, "params_")   # refused before any work
            return
        if partial:
            est.partial_fit(Xk, sample_weight=w)
            est.partial_fit(make_input(kind), sample_weight=w)
        else:
            est.fit(Xk, sample_weight=w)
    if "multi_pass" not in KINDS[kind_key][1] and not partial:
        # read once: fit is one pass of partial_fit (documented in mogsgd.data.chunked)
        _assert_same_fit(est, _reference(solver, weights, True, passes=1))
    else:
        _assert_same_fit(est, _reference(solver, weights, partial))


@pytest.fixture(scope="module")
def fitted() -> SGDGaussianMixture:
    return _reference("em", False, False)


def _as_numpy(out) -> np.ndarray:
    if hasattr(out, "compute"):
        out = out.compute()
    if hasattr(out, "detach"):
        out = out.detach().cpu().numpy()
    return np.asarray(out)


@pytest.mark.parametrize("kind", list(KIND_FACTORIES))
def test_every_kind_scores_and_predicts_like_an_array(kind, fitted, make_input):
    for name in ("predict", "predict_proba", "score_samples"):
        out = getattr(fitted, name)(make_input(kind))
        # the input's kind out: a path or a stream gives one array (not a generator), a
        # Dask array a lazy Dask array, a tensor a tensor
        if kind.startswith("dask"):
            assert hasattr(out, "compute")
        elif kind == "torch-tensor":
            assert hasattr(out, "detach")
        else:
            assert isinstance(out, np.ndarray)
        np.testing.assert_allclose(_as_numpy(out), getattr(fitted, name)(X), rtol=1e-10,
                                   atol=1e-300)
    for name in ("score", "bic", "aic"):
        assert getattr(fitted, name)(make_input(kind)) == pytest.approx(
            getattr(fitted, name)(X), rel=1e-10)
    weighted = "weights" in KINDS[KIND_FACTORIES[kind][1]][1]
    if weighted:
        assert fitted.score(make_input(kind), sample_weight=W) == pytest.approx(
            fitted.score(X, sample_weight=W), rel=1e-10)
    else:
        with pytest.raises(ValidationError, match="sample_weight is not supported for"):
            fitted.score(make_input(kind), sample_weight=W)


def test_the_support_table_in_the_readme_is_the_one_in_code():
    from pathlib import Path

    from mogsgd.solvers import support_table

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    assert support_table() in readme


def test_every_kind_has_a_source_and_every_capability_is_known():
    from mogsgd.data.base import CAPABILITIES

    for name, (_, caps) in KINDS.items():
        assert caps <= set(CAPABILITIES), name
    assert {key for _, key, _ in KIND_FACTORIES.values()} == set(KINDS)
    assert as_source(X).kind == "array"


def test_streamed_npy_output_is_atomic(tmp_path, fitted):
    """A failure half-way leaves neither the file nor a temporary; an existing file is
    never replaced."""
    target = tmp_path / "labels.npy"

    def failing():
        yield fitted.predict(X[:10])
        raise RuntimeError("disk gone")

    with pytest.raises(RuntimeError, match="disk gone"):
        write_npy(target, failing(), np.int64, None)
    assert list(tmp_path.iterdir()) == []
    out = write_npy(target, fitted.iter_predict(iter(np.array_split(X, 3))), np.int64, None)
    np.testing.assert_array_equal(out, fitted.predict(X))
    with pytest.raises(FileExistsError):
        write_npy(target, iter([fitted.predict(X)]), np.int64, None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.npy"]


@pytest.mark.parametrize("kind", [k for k, (_, key, _) in KIND_FACTORIES.items()
                                  if "em" in KINDS[key][1] and "multi_pass" in KINDS[key][1]])
def test_the_end_point_refinement_is_the_same_for_every_kind(kind, make_input):
    """``refine="em"`` ends every kind with EM statistics on the same optimum."""
    settings = {**_settings("sgd"), "refine": "em"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = SGDGaussianMixture(**settings).fit(X)
        est = SGDGaussianMixture(**settings).fit(make_input(kind))
    assert ref.refine_iter_ > 0
    _assert_same_fit(est, ref)
