"""The torch backend against the NumPy reference: math at 1e-12 (float64), float32 at its stated
tolerance, the on-device loop step for step, the estimator's device= option.

Everything here runs on CPU tensors (CI has no GPU).  The fused Triton kernel is
checked in Triton's CPU interpreter when Triton is installed (a subprocess with
``TRITON_INTERPRET=1``); tests marked ``gpu`` need a CUDA device and skip without one.
"""

import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import random_params, sample_mixture

torch = pytest.importorskip("torch")

import mogsgd  # noqa: E402
from mogsgd import MixtureParams, SGDGaussianMixture  # noqa: E402
from mogsgd.backends import torch_ops as T  # noqa: E402
from mogsgd.backends import uses_torch  # noqa: E402
from mogsgd.backends.torch_train import (  # noqa: E402
    opt_state_to_numpy,
    opt_state_to_torch,
)
from mogsgd.density import distance, log_prob_and_log_resp  # noqa: E402
from mogsgd.errors import ValidationError  # noqa: E402
from mogsgd.gradients import nll_grad_sums  # noqa: E402
from mogsgd.optim import make_optimizer  # noqa: E402
from mogsgd.train import TrainConfig, train, train_torch  # noqa: E402

CUDA = torch.cuda.is_available()
gpu = pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
SRC = str(Path(__file__).resolve().parents[1] / "src")

#: float32 sums over rows agree with float64 to this fraction of their condition scale
#: (the same sum over absolute values of the per-row terms): about 84 float32 ulps.
F32_TOL = 1e-5


def tensors(*arrays, dtype=torch.float64):
    return [None if a is None else torch.as_tensor(a, dtype=dtype) for a in arrays]


def case(rng, k, d, n, *, outliers=False, weighted=False):
    p = random_params(rng, k, d)
    X, _ = sample_mixture(rng, p, n)
    if outliers and n >= 2:
        X[0] = p.means[0] + 60 * p.sigma.max()          # 60+ standard deviations from all
        X[-1] = -p.means[-1] - 80 * p.sigma.max()
    w = rng.uniform(0, 3, size=n) if weighted else None
    return p, X, w


def assert_sums_close(got, want, rtol):
    assert got.nll_sum == pytest.approx(want.nll_sum, rel=rtol)
    assert got.weight_sum == pytest.approx(want.weight_sum, rel=rtol)
    for name in ("means", "log_sigma", "logits"):
        a, b = getattr(got, name), getattr(want, name)
        scale = max(np.max(np.abs(b)), 1.0)
        np.testing.assert_allclose(a, b, rtol=0, atol=rtol * scale, err_msg=name)


# ------------------------------------------------------------------ the math
SHAPES = [(1, 1, 1), (1, 3, 17), (2, 1, 50), (3, 2, 64), (3, 3, 500), (4, 5, 301), (8, 2, 999)]


@pytest.mark.parametrize("k, d, n", SHAPES)
@pytest.mark.parametrize("outliers", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
def test_grad_sums_match_numpy_reference(rng, k, d, n, outliers, weighted):
    p, X, w = case(rng, k, d, n, outliers=outliers, weighted=weighted)
    Xt, wt = tensors(X, w)
    got = T.sums_to_numpy(T.nll_grad_sums(Xt, T.to_torch(p), wt, kernel="torch"))
    assert_sums_close(got, nll_grad_sums(X, p, w), 1e-12)


def test_chunked_sums_equal_one_pass(rng):
    p, X, w = case(rng, 3, 4, 1000, outliers=True, weighted=True)
    Xt, wt = tensors(X, w)
    one = T.sums_to_numpy(T.nll_grad_sums(Xt, T.to_torch(p), wt, kernel="torch"))
    chunked = T.sums_to_numpy(T.nll_grad_sums(Xt, T.to_torch(p), wt, kernel="torch",
                                              chunk_rows=97))
    assert_sums_close(chunked, one, 1e-13)


def test_empty_input_gives_zero_sums(rng):
    p = random_params(rng, 3, 2)
    sums = T.nll_grad_sums(torch.zeros((0, 2), dtype=torch.float64), T.to_torch(p),
                           kernel="torch", chunk_rows=10)
    assert float(sums.weight_sum) == 0.0 and float(sums.nll_sum) == 0.0


@pytest.mark.parametrize("k, d, n", SHAPES[1:5])
def test_densities_match_numpy_reference(rng, k, d, n):
    p, X, w = case(rng, k, d, n, outliers=True, weighted=True)
    Xt, wt = tensors(X, w)
    tp = T.to_torch(p)
    lp, lr = log_prob_and_log_resp(X, p)
    np.testing.assert_allclose(T.log_prob(Xt, tp, chunk_rows=7).numpy(), lp, rtol=1e-12)
    np.testing.assert_allclose(T.log_resp(Xt, tp, chunk_rows=7).numpy(), lr, rtol=1e-12,
                               atol=1e-12)
    assert T.nll(Xt, tp, wt, chunk_rows=7) == pytest.approx(mogsgd.nll(X, p, w), rel=1e-12)
    assert T.nll(Xt, tp) == pytest.approx(mogsgd.nll(X, p), rel=1e-12)


def test_resp_rows_sum_to_one(rng):
    p, X, _ = case(rng, 4, 3, 200, outliers=True)
    resp = torch.exp(T.log_resp(*tensors(X), T.to_torch(p)))
    np.testing.assert_allclose(resp.sum(dim=1).numpy(), 1.0, rtol=1e-12)


def test_logsumexp_edge_cases():
    a = torch.tensor([[1000.0, 1000.0], [-np.inf, -np.inf], [0.0, -np.inf]], dtype=torch.float64)
    out = T.logsumexp(a, dim=1)
    assert out[0].item() == 1000.0 + np.log(2.0)
    assert out[1].item() == -np.inf
    assert out[2].item() == 0.0


def test_params_round_trip_and_flat_layout(rng):
    p = random_params(rng, 3, 2)
    tp = T.to_torch(p)
    assert T.to_numpy(tp).allclose(p, rtol=0)
    theta = T.ravel(tp)
    np.testing.assert_array_equal(theta.numpy(), p.ravel())
    back = T.unravel(theta, 3, 2)
    assert back.means.data_ptr() == theta.data_ptr()        # views, no copies


def condition_scales(X, p, w):
    """Each sum of GradSums taken over the absolute values of its per-row terms."""
    lp, lr = log_prob_and_log_resp(X, p)
    r = np.exp(lr) * w[:, None]
    s_means, s_log_sigma = np.empty(p.means.shape), np.empty(p.means.shape)
    for k in range(p.n_components):
        z = distance(X, p.means[k], p.log_sigma[k]).z
        s_means[k] = r[:, k] @ np.abs(z) / p.sigma[k]
        s_log_sigma[k] = r[:, k] @ (z * z + 1.0)
    return np.sum(w * np.abs(lp)), s_means, s_log_sigma, w.sum() * p.weights + r.sum(axis=0)


@pytest.mark.parametrize("k, d", [(2, 1), (3, 3), (5, 2), (8, 10)])
@pytest.mark.parametrize("spread", [1, 10, 60])
def test_float32_agrees_with_float64_within_stated_tolerance(k, d, spread):
    """float32 sums over 20,000 rows (some scaled out to ``spread`` times) agree with the float64
    reference to F32_TOL of their condition scale."""
    rng = np.random.default_rng(k * 100 + spread)
    p = random_params(rng, k, d)
    X, _ = sample_mixture(rng, p, 20_000)
    X[:50] *= spread
    w = rng.uniform(0, 2, size=len(X))
    want = nll_grad_sums(X, p, w)
    X32, w32 = tensors(X, w, dtype=torch.float32)
    got = T.sums_to_numpy(T.nll_grad_sums(X32, T.to_torch(p, dtype=torch.float32), w32,
                                          kernel="torch"))
    assert got.means.dtype == np.float32
    scales = condition_scales(X, p, w)
    assert abs(got.nll_sum - want.nll_sum) <= F32_TOL * scales[0]
    for name, scale in zip(("means", "log_sigma", "logits"), scales[1:], strict=True):
        err = np.abs(getattr(got, name) - getattr(want, name))
        assert np.all(err <= F32_TOL * scale), f"{name}: {np.max(err / scale):.2e}"


# ------------------------------------------------------------- the Triton kernel
def _triton_importable() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


INTERPRETER_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np, torch
    sys.path.insert(0, {tests!r})
    from conftest import random_params, sample_mixture
    from mogsgd.backends import torch_ops as T
    from mogsgd.backends.triton_kernel import grad_pieces
    out = []
    rng = np.random.default_rng(7)
    for k, d, n, weighted, dtype in [(1, 1, 5, False, torch.float64),
                                     (3, 3, 700, True, torch.float64),
                                     (5, 2, 1025, False, torch.float64),
                                     (3, 3, 700, True, torch.float32)]:
        p = random_params(rng, k, d)
        X, _ = sample_mixture(rng, p, n)
        X[0] = 60 * p.sigma.max() + p.means[0]
        w = torch.as_tensor(rng.uniform(0, 3, n)) if weighted else None
        Xt = torch.as_tensor(X, dtype=dtype)
        tp = T.to_torch(p, dtype=dtype)
        fused = T.sums_to_numpy(T.finish(grad_pieces(Xt, tp, w, block=256), tp))
        plain = T.sums_to_numpy(T.nll_grad_sums(Xt, tp, w, kernel="torch"))
        err = max(abs(fused.nll_sum - plain.nll_sum) / abs(plain.nll_sum),
                  abs(fused.weight_sum - plain.weight_sum) / plain.weight_sum,
                  *(float(np.max(np.abs(a - b)) / max(1.0, np.max(np.abs(b))))
                    for a, b in zip(fused[2:], plain[2:])))
        out.append([k, d, n, str(dtype), err])
    print(json.dumps(out))
""")


@pytest.mark.skipif(not _triton_importable(), reason="Triton is not installed")
def test_triton_kernel_matches_plain_torch_in_interpreter():
    """The fused kernel's logic (not its GPU compilation) in Triton's CPU interpreter."""
    env = {**os.environ, "TRITON_INTERPRET": "1",
           "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")])}
    script = INTERPRETER_SCRIPT.format(tests=str(Path(__file__).parent))
    run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    for k, d, n, dtype, err in json.loads(run.stdout.strip().splitlines()[-1]):
        tol = 1e-12 if dtype == "torch.float64" else 1e-4
        assert err < tol, (k, d, n, dtype, err)


@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("weighted", [False, True])
def test_cuda_grad_sums_match_numpy_reference(rng, weighted):
    p, X, w = case(rng, 3, 3, 100_003, outliers=True, weighted=weighted)
    want = nll_grad_sums(X, p, w)
    for kernel in ("torch", "auto"):
        Xt, wt = (None if a is None else torch.as_tensor(a, device="cuda") for a in (X, w))
        got = T.sums_to_numpy(T.nll_grad_sums(Xt, T.to_torch(p, "cuda"), wt, kernel=kernel))
        assert_sums_close(got, want, 1e-12)


@gpu
@pytest.mark.gpu
def test_cuda_float32_agrees_with_float64_within_stated_tolerance(rng):
    p, X, _ = case(rng, 3, 3, 1_000_000)
    w = np.ones(len(X))
    want = nll_grad_sums(X, p)
    scales = condition_scales(X, p, w)
    for kernel in ("torch", "auto"):
        got = T.sums_to_numpy(T.nll_grad_sums(
            torch.as_tensor(X, dtype=torch.float32, device="cuda"),
            T.to_torch(p, "cuda", torch.float32), kernel=kernel))
        assert abs(got.nll_sum - want.nll_sum) <= F32_TOL * scales[0]
        for name, scale in zip(("means", "log_sigma", "logits"), scales[1:], strict=True):
            assert np.all(np.abs(getattr(got, name) - getattr(want, name)) <= F32_TOL * scale)


# ---------------------------------------------------------------- the loop
@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "nesterov", "adam"])
def test_train_matches_numpy_loop_given_the_same_permutations(rng, optimizer):
    true = random_params(rng, 3, 2)
    X, _ = sample_mixture(rng, true, 1200)
    start = random_params(rng, 3, 2)
    w = rng.uniform(0.1, 2.0, size=1000)
    cfg = TrainConfig(optimizer=optimizer, schedule="cosine", max_epochs=3, batch_size=64,
                      min_variance=0.05)
    want = train(X[:1000], start, config=cfg, rng=np.random.default_rng(3), X_val=X[1000:],
                 sample_weight=w, record_params=lambda q: q)
    perms = np.random.default_rng(3)
    got = train_torch(*tensors(X[:1000]), start, config=cfg, rng=np.random.default_rng(3),
                      X_val=tensors(X[1000:])[0], sample_weight=tensors(w)[0],
                      record_params=lambda q: q, kernel="torch",
                      shuffle=lambda n: torch.as_tensor(perms.permutation(n)))
    assert got.params.allclose(want.params, rtol=1e-12, atol=1e-14)
    assert got.last_params.allclose(want.last_params, rtol=1e-12, atol=1e-14)
    for key in ("epoch", "lr"):
        assert got.history[key] == want.history[key]
    for key in ("train_nll", "val_nll"):
        np.testing.assert_allclose(got.history[key], want.history[key], rtol=1e-12)
    assert len(got.history["params"]) == 4
    assert type(got.opt_state) is type(want.opt_state)
    assert got.opt_state.count == want.opt_state.count
    for a, b in zip(got.opt_state[1:], want.opt_state[1:], strict=True):
        assert a.allclose(b, rtol=1e-10, atol=1e-15)
    assert np.all(got.params.variances >= 0.05 * (1 - 1e-12))


def test_opt_state_round_trip(rng):
    p = random_params(rng, 2, 3)
    state = make_optimizer("adam", 0.1).init(p)
    back = opt_state_to_numpy(opt_state_to_torch(state, "cpu", torch.float64), 2, 3)
    assert back.count == 0 and back.mu.allclose(state.mu, rtol=0)


def test_resumed_training_continues_exactly(rng):
    """Two epochs then two more from the returned state equal four epochs (default shuffle)."""
    true = random_params(rng, 2, 2)
    X, _ = sample_mixture(rng, true, 800)
    Xt = tensors(X)[0]
    cfg = TrainConfig(max_epochs=4, batch_size=100, early_stopping=False)
    whole = train_torch(Xt, true, config=cfg, rng=np.random.default_rng(1))
    rng_b = np.random.default_rng(1)
    half = train_torch(Xt, true, config=cfg, rng=rng_b, max_epochs=2)
    rest = train_torch(Xt, config=cfg, rng=rng_b, state=half, max_epochs=2)
    assert rest.epoch == 4
    assert rest.params.allclose(whole.params, rtol=0)
    # the state is NumPy: the NumPy loop can continue it
    more = train(X, config=cfg, rng=rng_b, state=rest, max_epochs=1)
    assert more.epoch == 5


def test_default_shuffle_is_seeded_by_the_numpy_generator(rng):
    true = random_params(rng, 2, 2)
    X, _ = sample_mixture(rng, true, 500)
    cfg = TrainConfig(max_epochs=2, batch_size=64, early_stopping=False)
    runs = [train_torch(tensors(X)[0], true, config=cfg, rng=np.random.default_rng(s))
            for s in (5, 5, 6)]
    assert runs[0].params.allclose(runs[1].params, rtol=0)
    assert not runs[0].params.allclose(runs[2].params, rtol=1e-9)


def test_online_em_is_refused_on_the_torch_loop(rng):
    p = random_params(rng, 2, 2)
    with pytest.raises(ValidationError, match="NumPy path"):
        train_torch(torch.zeros((10, 2), dtype=torch.float64), p,
                    config=TrainConfig(solver="online_em"))


# ----------------------------------------------------------- the estimator
def three_blobs(n, seed):
    true = MixtureParams.from_moments(
        np.array([0.5, 0.3, 0.2]), np.array([[0.0, 0, 0], [5, 5, 0], [-5, 4, 3]]),
        np.array([[1.0, 1, 1], [0.5, 1.4, 1], [2, 0.3, 1]]))
    return sample_mixture(np.random.default_rng(seed), true, n)[0]


@pytest.fixture(scope="module")
def blobs():
    return three_blobs(8000, 0), three_blobs(4000, 1)


def test_cpu_tensor_fit_matches_numpy_heldout_loglik(blobs):
    X, X_test = blobs
    kw = dict(n_components=3, random_state=0, batch_size=128)
    ref = SGDGaussianMixture(**kw).fit(X)
    dev = SGDGaussianMixture(**kw, device="cpu").fit(X)
    assert abs(dev.score(X_test) - ref.score(X_test)) < 0.01
    for name in ("weights_", "means_", "covariances_"):
        assert isinstance(getattr(dev, name), np.ndarray)
    assert dev.lower_bound_ == pytest.approx(-mogsgd.nll(X, dev.params_), rel=1e-12)
    assert dev.history_["epoch"] == list(range(1, dev.n_iter_ + 1))


def test_float32_fit_agrees_with_float64_fit(blobs):
    """Same seed, float32 vs float64 on the device path: held-out log-likelihood within 1e-3."""
    X, X_test = blobs
    kw = dict(n_components=3, random_state=0, batch_size=128)
    f64 = SGDGaussianMixture(**kw).fit(torch.as_tensor(X))
    f32 = SGDGaussianMixture(**kw, dtype=np.float32).fit(torch.as_tensor(X))
    assert f32.params_.dtype == np.float32 and f64.params_.dtype == np.float64
    assert abs(f32.score(X_test) - f64.score(X_test)) < 1e-3


def test_tensor_input_follows_the_input_kind(blobs):
    X, X_test = blobs
    Xt = torch.as_tensor(X)
    est = SGDGaussianMixture(3, random_state=0, max_epochs=3, early_stopping=False).fit(Xt)
    assert est.device is None and isinstance(est.means_, np.ndarray)
    t_test = torch.as_tensor(X_test)
    assert isinstance(est.score_samples(t_test), torch.Tensor)
    proba = est.predict_proba(t_test)
    assert isinstance(proba, torch.Tensor) and proba.shape == (len(X_test), 3)
    np.testing.assert_allclose(proba.sum(dim=1).numpy(), 1.0, rtol=1e-12)
    assert torch.equal(est.predict(t_test), proba.argmax(dim=1))
    # NumPy input takes the NumPy path and gives the same numbers
    np.testing.assert_allclose(est.score_samples(t_test).numpy(), est.score_samples(X_test),
                               rtol=1e-12)
    assert est.score(t_test) == pytest.approx(est.score(X_test), rel=1e-12)
    assert est.bic(t_test) == pytest.approx(est.bic(X_test), rel=1e-12)
    # fit then predict equals fit_predict on the device
    assert torch.equal(est.fit_predict(Xt), est.predict(Xt))


def test_numpy_input_with_device_returns_numpy(blobs):
    X, X_test = blobs
    est = SGDGaussianMixture(3, random_state=0, max_epochs=2, early_stopping=False,
                             device="cpu").fit(X)
    assert isinstance(est.score_samples(X_test), np.ndarray)
    assert isinstance(est.predict(X_test), np.ndarray)
    assert est.get_params()["device"] == "cpu"


def test_cpu_numpy_device_forces_the_numpy_path(blobs):
    X, _ = blobs
    assert not uses_torch("cpu-numpy", torch.as_tensor(X))
    assert uses_torch(None, torch.as_tensor(X)) and not uses_torch(None, X)
    est = SGDGaussianMixture(2, random_state=0, max_epochs=2, early_stopping=False,
                             device="cpu-numpy").fit(torch.as_tensor(X[:500]))
    assert isinstance(est.score_samples(torch.as_tensor(X[:10])), np.ndarray)


def test_partial_fit_on_the_device_improves_over_chunks(blobs):
    X, X_test = blobs
    est = SGDGaussianMixture(3, random_state=0, device="cpu")
    scores = []
    for chunk in np.array_split(X, 4):
        est.partial_fit(torch.as_tensor(chunk))
        scores.append(est.score(X_test))
    assert est.n_iter_ == 4 and scores[-1] > scores[0]


def test_warm_start_continues_on_the_device(blobs):
    X, _ = blobs
    est = SGDGaussianMixture(3, random_state=0, max_epochs=2, early_stopping=False,
                             warm_start=True, device="cpu").fit(X)
    est.set_params(max_epochs=2).fit(X)          # max_epochs more epochs, as on NumPy
    assert est.history_["epoch"] == [1, 2, 3, 4]


@pytest.mark.parametrize("device, msg", [(3, "device must be"), ("gpu7", "not a torch device")])
def test_bad_device_is_named(device, msg):
    with pytest.raises(ValidationError, match=msg):
        SGDGaussianMixture(2, device=device).fit(np.random.default_rng(0).normal(size=(50, 2)))


@pytest.mark.skipif(CUDA, reason="checks the message shown without a GPU")
def test_cuda_without_a_gpu_names_the_fix():
    with pytest.raises(ValidationError, match="sees no CUDA device"):
        SGDGaussianMixture(2, device="cuda").fit(np.zeros((10, 2)))


@pytest.mark.parametrize("kwargs", [{"solver": "em"}, {"solver": "online_em"}])
def test_other_solvers_are_refused_on_the_device(kwargs):
    with pytest.raises(ValidationError, match="NumPy path"):
        SGDGaussianMixture(2, device="cpu", **kwargs).fit(np.zeros((10, 2)))


def test_nonfinite_tensor_is_reported_with_its_row():
    X = torch.as_tensor(np.random.default_rng(0).normal(size=(3000, 2)))
    X[2500, 1] = float("nan")
    with pytest.raises(ValidationError, match="row 2500, column 1"):
        SGDGaussianMixture(2).fit(X)
    with pytest.raises(ValidationError, match="2-D"):
        SGDGaussianMixture(2).fit(X[:, 0])
    with pytest.raises(ValidationError, match="at least 3"):
        SGDGaussianMixture(3).fit(X[:2])


def test_wrong_feature_count_on_the_device_names_both_counts(blobs):
    X, _ = blobs
    est = SGDGaussianMixture(2, random_state=0, max_epochs=1, early_stopping=False).fit(
        torch.as_tensor(X))
    with pytest.raises(ValidationError, match="2 features.*expecting 3"):
        est.predict(torch.as_tensor(X[:, :2]))


def test_no_warnings_on_easy_data_on_the_device(blobs):
    X, _ = blobs
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        SGDGaussianMixture(3, random_state=0, device="cpu").fit(X)


def test_everything_else_works_without_torch():
    """With torch unimportable, the package, the estimator and a NumPy fit still work."""
    script = textwrap.dedent("""
        import importlib.abc, sys

        class NoTorch(importlib.abc.MetaPathFinder):   # import torch now raises ImportError
            def find_spec(self, name, path, target=None):
                if name.split(".")[0] == "torch":
                    raise ImportError(f"{name} is blocked")

        sys.meta_path.insert(0, NoTorch())
        import numpy as np
        import mogsgd
        from mogsgd import SGDGaussianMixture
        from mogsgd.backends import uses_torch
        X = np.random.default_rng(0).normal(size=(300, 2))
        est = SGDGaussianMixture(2, random_state=0, max_epochs=2).fit(X)
        assert not uses_torch(None, X)
        try:
            SGDGaussianMixture(2, device="cuda").fit(X)
        except ImportError as exc:
            assert "mogsgd[torch]" in str(exc)
        else:
            raise AssertionError("expected ImportError")
        assert "torch" not in sys.modules
        print("ok")
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-3000:]


@gpu
@pytest.mark.gpu
def test_cuda_fit_matches_cpu_fit(blobs):
    X, X_test = blobs
    kw = dict(n_components=3, random_state=0, batch_size=512)
    cpu = SGDGaussianMixture(**kw, device="cpu").fit(X)
    cuda = SGDGaussianMixture(**kw, device="cuda").fit(torch.as_tensor(X, device="cuda"))
    assert isinstance(cuda.means_, np.ndarray)
    assert abs(cuda.score(X_test) - cpu.score(X_test)) < 0.01
    out = cuda.score_samples(torch.as_tensor(X_test, device="cuda"))
    assert out.is_cuda


def test_only_gpu_dlpack_arrays_select_the_torch_path():
    """CuPy-like arrays (DLPack device type 2, CUDA) take the torch path; host arrays do not."""
    from mogsgd.backends import is_cuda_dlpack

    class FakeGpuArray:
        def __dlpack_device__(self):
            return (2, 0)

    class FakeHostArray:
        def __dlpack_device__(self):
            return (1, 0)

    assert is_cuda_dlpack(FakeGpuArray()) and uses_torch(None, FakeGpuArray())
    assert not is_cuda_dlpack(FakeHostArray()) and not uses_torch(None, FakeHostArray())
    assert not is_cuda_dlpack(np.zeros((2, 2))) and not is_cuda_dlpack([[1.0]])
