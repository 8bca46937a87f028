"""The compiled fast path (mogsgd.fast) against the NumPy reference it replaces.

The reference functions (gradients.nll_grad_sums, density.nll / log_prob, the
Python training loop) are the independent implementation; the kernels must agree
to 1e-12 relative, and the compiled epoch must equal the Python loop over the same
kernel bit for bit.  No timings here: speed is measured by ``python -m benchmarks``.
"""

import math
import tracemalloc
import warnings

import numpy as np
import pytest
from conftest import random_params, sample_mixture

from mogsgd import density, fast, gradients
from mogsgd.covariance import ops
from mogsgd.errors import FallbackWarning
from mogsgd.params import MixtureParams
from mogsgd.train import TrainConfig, train

pytestmark = pytest.mark.skipif(not fast.available(),
                                reason=f"compiled path unavailable: {fast.unavailable_reason()}")

GROUPS = ("means", "log_sigma", "logits")


def assert_sums_close(got, ref, rtol=1e-12):
    """Relative agreement; gradient sums are compared on the scale of their terms
    (``W = weight_sum``), since a sum that cancels to ~0 has no relative precision."""
    assert got.weight_sum == pytest.approx(ref.weight_sum, rel=rtol)
    assert got.nll_sum == pytest.approx(ref.nll_sum, rel=rtol)
    for name in GROUPS:
        a, b = getattr(got, name), getattr(ref, name)
        assert a.shape == b.shape and a.dtype == b.dtype, name
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * ref.weight_sum, err_msg=name)


# ------------------------------------------------------------- exp and log
def _elementwise(fn_name):
    from numba import njit

    from mogsgd.fast import simd

    fn = getattr(simd, fn_name)

    @njit(fastmath=simd.EXACT_MATH, error_model="numpy")
    def apply(a, out):
        for i in range(a.size):
            out[i] = fn(a[i])

    return apply


def ulps(got, ref):
    return np.abs(got - ref) / np.spacing(np.abs(ref))


def test_vexp_within_one_ulp_of_libm(rng):
    x = np.concatenate([-rng.uniform(0, 745, 20000), rng.uniform(-1, 1, 20000),
                        rng.uniform(-700, 709, 5000), [-708.4, -708.3, 709.7, -1e-300, 1e-300]])
    out = np.empty_like(x)
    _elementwise("vexp")(x, out)
    ref = np.array([math.exp(v) for v in x])
    normal = ref > np.finfo(float).tiny
    assert ulps(out[normal], ref[normal]).max() <= 1.0
    # gradual underflow is rounded once: within one subnormal step
    assert np.abs(out[~normal] - ref[~normal]).max() <= 5e-324


def test_vexp_edge_values_are_exact():
    x = np.array([0.0, -0.0, -745.2, -800.0, -1e300, 1.0, np.nan, -np.inf])
    out = np.empty_like(x)
    _elementwise("vexp")(x, out)
    assert out[0] == 1.0 and out[1] == 1.0
    assert out[2] == 0.0 and out[3] == 0.0 and out[4] == 0.0
    assert out[5] == pytest.approx(math.e, rel=2e-16)
    assert np.isnan(out[6]) and out[7] == 0.0   # NaN marks missing values downstream


def test_vexp_neg_within_one_ulp_and_flushes_subnormals(rng):
    x = np.concatenate([-rng.uniform(0, 708.3, 20000), -rng.uniform(0, 1, 20000),
                        [0.0, -708.38, -708.4, -745.0, -1e300, -np.inf, np.nan]])
    out = np.empty_like(x)
    _elementwise("vexp_neg")(x, out)
    ref = np.array([math.exp(v) if np.isfinite(v) else (0.0 if v < 0 else v) for v in x])
    normal = x >= -708.38
    assert ulps(out[normal], ref[normal]).max() <= 1.0
    assert out[-7] == 1.0
    assert np.all(out[-5:-1] == 0.0) and np.isnan(out[-1])


def test_vlog_within_two_ulp_of_libm(rng):
    x = np.concatenate([rng.uniform(1, 64, 20000), np.exp(rng.uniform(-700, 700, 20000)),
                        1 + rng.uniform(-1e-6, 1e-6, 2000), [2.0, 0.5, 1e-300, 1e300]])
    out = np.empty_like(x)
    _elementwise("vlog")(x, out)
    ref = np.array([math.log(v) for v in x])
    assert ulps(out, ref).max() <= 2.0
    special = np.array([1.0, np.nan])
    _elementwise("vlog")(special, out[:2])
    assert out[0] == 0.0 and np.isnan(out[1])


@pytest.mark.parametrize("d", range(1, 11))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_block_transposes_match_numpy(rng, d, dtype):
    from mogsgd.fast.simd import gather_rows, load_rows

    X = rng.normal(size=(500, d)).astype(dtype)
    xt = np.full((d, 256), np.nan)
    load_rows(X, 13, 203, xt)              # 25 groups of 8 and a tail of 3
    np.testing.assert_array_equal(xt[:, :203], X[13:216].T)
    rows = rng.permutation(500)
    gather_rows(X, rows, 7, 197, xt)
    np.testing.assert_array_equal(xt[:, :197], X[rows[7:204]].T)


# ------------------------------------------------------------ fused sums
@pytest.mark.parametrize("k, d, n", [(1, 1, 10), (3, 3, 1000), (2, 5, 333), (8, 16, 3000),
                                     (4, 9, 257), (5, 2, 40_000)])
def test_grad_sums_match_reference(rng, k, d, n):
    p = random_params(rng, k, d)
    X, _ = sample_mixture(rng, p, n)
    assert_sums_close(fast.nll_grad_sums(X, p), gradients.nll_grad_sums(X, p))


@pytest.mark.parametrize("n", [50, 40_000])
def test_weighted_grad_sums_match_reference(rng, n):
    p = random_params(rng, 3, 3)
    X, _ = sample_mixture(rng, p, n)
    w = rng.uniform(0, 3, size=n)
    assert_sums_close(fast.nll_grad_sums(X, p, w), gradients.nll_grad_sums(X, p, w))


def test_full_pass_over_many_chunks_matches_reference(rng):
    from mogsgd.fast.kernels import CHUNK_ROWS

    p = random_params(rng, 3, 3)
    X, _ = sample_mixture(rng, p, 5 * CHUNK_ROWS + 123)
    assert_sums_close(fast.nll_grad_sums(X, p), gradients.nll_grad_sums(X, p))


def test_result_does_not_depend_on_the_number_of_threads(rng):
    import numba

    p = random_params(rng, 3, 4)
    X, _ = sample_mixture(rng, p, 200_000)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = fast.nll_grad_sums(X, p)
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        many = fast.nll_grad_sums(X, p)
    finally:
        numba.set_num_threads(before)
    assert one.nll_sum == many.nll_sum
    for name in GROUPS:
        assert getattr(one, name).tobytes() == getattr(many, name).tobytes()


def test_far_outliers_match_reference(rng):
    p = random_params(rng, 3, 2)
    X, _ = sample_mixture(rng, p, 300)
    X[0] = p.means[0] + 60 * p.sigma.max()
    X[1] = -p.means[1] - 80 * p.sigma.max()
    X[2] = 1e6
    got = fast.nll_grad_sums(X, p)
    assert np.isfinite(got.nll_sum) and all(np.all(np.isfinite(getattr(got, f))) for f in GROUPS)
    assert_sums_close(got, gradients.nll_grad_sums(X, p))


def test_float32_data_and_parameters(rng):
    p = random_params(rng, 3, 3, dtype=np.float32)
    X, _ = sample_mixture(rng, p, 2000)
    X = X.astype(np.float32)
    got, ref = fast.nll_grad_sums(X, p), gradients.nll_grad_sums(X, p)
    # the kernel computes in float64: it agrees with the float32 reference to float32 precision
    assert_sums_close(got, ref, rtol=2e-5)
    assert got.means.dtype == np.float32
    # float32 data with float64 parameters: exact conversion, so float64 agreement
    p64 = p.astype(np.float64)
    assert_sums_close(fast.nll_grad_sums(X, p64), gradients.nll_grad_sums(X, p64))


def test_non_contiguous_and_integer_data(rng):
    p = random_params(rng, 2, 3)
    X, _ = sample_mixture(rng, p, 400)
    Xf = np.asfortranarray(X)
    assert_sums_close(fast.nll_grad_sums(Xf, p), gradients.nll_grad_sums(X, p))
    Xi = np.round(X).astype(np.int64)
    assert_sums_close(fast.nll_grad_sums(Xi, p), gradients.nll_grad_sums(Xi.astype(float), p))


def test_missing_values_go_to_the_reference(rng):
    p = random_params(rng, 3, 3)
    X, _ = sample_mixture(rng, p, 200)
    X[5, 1] = np.nan
    X[9, 0] = np.nan
    ref = gradients.nll_grad_sums(X, p)
    got = fast.nll_grad_sums(X, p)
    assert got.nll_sum == ref.nll_sum and np.array_equal(got.means, ref.means)
    assert fast.nll(X, p) == density.nll(X, p)


def test_nll_and_log_prob_match_reference(rng):
    p = random_params(rng, 4, 3)
    X, _ = sample_mixture(rng, p, 5000)
    w = rng.uniform(0.1, 2, size=5000)
    assert fast.nll(X, p) == pytest.approx(density.nll(X, p), rel=1e-13)
    assert fast.nll(X, p, w) == pytest.approx(density.nll(X, p, w), rel=1e-13)
    np.testing.assert_allclose(fast.log_prob(X, p), density.log_prob(X, p), rtol=1e-13)
    value, grad = fast.nll_grad(X, p)
    ref_value, ref_grad = gradients.nll_grad(X, p)
    assert value == pytest.approx(ref_value, rel=1e-13)
    np.testing.assert_allclose(grad.ravel(), ref_grad.ravel(), rtol=1e-12, atol=1e-12)


def test_sums_over_chunks_combine_like_the_reference(rng):
    p = random_params(rng, 3, 2)
    X, _ = sample_mixture(rng, p, 3000)
    parts = gradients.combine_sums(fast.nll_grad_sums(c, p) for c in np.array_split(X, 7))
    assert_sums_close(parts, gradients.nll_grad_sums(X, p))


def test_full_pass_allocates_no_per_point_arrays_in_python(rng):
    p = random_params(rng, 3, 3)
    X, _ = sample_mixture(rng, p, 300_000)
    fast.nll_grad_sums(X, p)                   # compile outside the trace
    tracemalloc.start()
    try:
        fast.nll_grad_sums(X, p)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 0.05 * X.nbytes             # an (n, K) float64 array would be 1/1 of X


# --------------------------------------------------------- compiled epoch
def _loop_and_compiled(X, p, cfg, w=None, epochs=3, seed=1):
    """(Python loop over the fused kernel, compiled epoch, NumPy loop) from the same seed."""
    runs = []
    for kwargs in ({"grad_sums_fn": lambda *a: fast.nll_grad_sums(*a)}, {},
                   {"backend": "numpy"}):
        kw = {"backend": "numba", **kwargs}
        runs.append(train(X, p, config=cfg, rng=np.random.default_rng(seed), sample_weight=w,
                          max_epochs=epochs, **kw))
    return runs


@pytest.mark.parametrize("optimizer", ["adam", "sgd", "momentum", "nesterov"])
@pytest.mark.parametrize("schedule", ["inverse_time", "cosine", "constant"])
@pytest.mark.parametrize("weighted", [False, True])
def test_compiled_epoch_equals_the_python_loop_bit_for_bit(rng, optimizer, schedule, weighted):
    p = random_params(rng, 3, 2)
    X, _ = sample_mixture(rng, p, 1000)
    w = rng.uniform(0.2, 3, size=1000) if weighted else None
    cfg = TrainConfig(optimizer=optimizer, schedule=schedule, batch_size=96,
                      early_stopping=False, min_variance=0.3)   # a floor that bites
    loop, compiled, numpy_loop = _loop_and_compiled(X, p, cfg, w)
    for f in GROUPS:
        assert getattr(compiled.params, f).tobytes() == getattr(loop.params, f).tobytes(), f
    assert compiled.history["train_nll"] == loop.history["train_nll"]
    assert compiled.history["val_nll"] == loop.history["val_nll"]
    assert compiled.opt_state.count == loop.opt_state.count == 3 * 11
    for a, b in zip(compiled.opt_state[1:], loop.opt_state[1:], strict=True):
        assert a.ravel().tobytes() == b.ravel().tobytes()
    assert compiled.rng_state == loop.rng_state == numpy_loop.rng_state
    # and the NumPy reference loop agrees to rounding
    np.testing.assert_allclose(compiled.params.ravel(), numpy_loop.params.ravel(),
                               rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(compiled.history["train_nll"], numpy_loop.history["train_nll"],
                               rtol=1e-10)


def test_compiled_training_matches_numpy_training_with_validation_and_early_stopping(rng):
    true = random_params(rng, 3, 3)
    X, _ = sample_mixture(rng, true, 6000)
    start = random_params(rng, 3, 3)
    cfg = TrainConfig(max_epochs=12, patience=2, tol=1e-3)
    runs = [train(X[:5000], start, config=cfg, rng=np.random.default_rng(3), X_val=X[5000:],
                  backend=b) for b in ("numba", "numpy")]
    fast_run, ref_run = runs
    assert fast_run.epoch == ref_run.epoch and fast_run.stopped == ref_run.stopped
    np.testing.assert_allclose(fast_run.params.ravel(), ref_run.params.ravel(), rtol=1e-10,
                               atol=1e-10)
    np.testing.assert_allclose(fast_run.history["val_nll"], ref_run.history["val_nll"],
                               rtol=1e-10)


def test_compiled_epochs_resume_exactly(rng):
    p = random_params(rng, 2, 3)
    X, _ = sample_mixture(rng, p, 700)
    cfg = TrainConfig(max_epochs=6, early_stopping=False, batch_size=64)
    straight = train(X, p, config=cfg, rng=np.random.default_rng(5))
    first = train(X, p, config=cfg, rng=np.random.default_rng(5), max_epochs=2)
    rest = train(X, config=cfg, rng=np.random.default_rng(99), state=first, max_epochs=4)
    assert rest.params.ravel().tobytes() == straight.params.ravel().tobytes()
    assert rest.history["train_nll"] == straight.history["train_nll"]


def test_python_loop_runs_where_the_epoch_cannot_be_compiled(rng):
    p = random_params(rng, 2, 2)
    X, _ = sample_mixture(rng, p, 300)
    cfg = TrainConfig(max_epochs=1)
    assert fast.compiled_epoch(cfg, 300, fast.nll_grad_sums, X, None, p) is not None
    online = TrainConfig(solver="online_em", max_epochs=1)   # compiled too (CompiledOnlineEM)
    assert fast.compiled_epoch(online, 300, fast.nll_grad_sums, X, None, p) is not None
    assert fast.compiled_epoch(online, 300, gradients.nll_grad_sums, X, None, p) is None
    assert fast.compiled_epoch(cfg, 300, gradients.nll_grad_sums, X, None, p) is None
    assert fast.compiled_epoch(cfg, 300, fast.nll_grad_sums, X, None,
                               p.astype(np.float32)) is None
    Xn = X.copy()
    Xn[0, 0] = np.nan
    assert fast.compiled_epoch(cfg, 300, fast.nll_grad_sums, Xn, None, p) is None
    calls = []

    def custom(Xb, params, wb):
        calls.append(len(Xb))
        return gradients.nll_grad_sums(Xb, params, wb)

    train(X, p, config=TrainConfig(max_epochs=1, batch_size=100), rng=rng, grad_sums_fn=custom)
    assert calls == [100, 100, 100]


# ---------------------------------------------------------------- fallback
@pytest.fixture
def broken_numba(monkeypatch):
    """Make the compiled path look unavailable for one test."""
    fast._probe.cache_clear()
    fast._warn_fallback.cache_clear()
    monkeypatch.setattr(fast, "_probe", lambda: "ImportError: No module named 'numba'")
    yield
    monkeypatch.undo()
    fast._warn_fallback.cache_clear()
    fast._probe.cache_clear()


def test_fallback_warns_once_and_uses_the_reference(rng, broken_numba):
    p = random_params(rng, 2, 2)
    X, _ = sample_mixture(rng, p, 300)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert fast.resolve_backend("auto") == "numpy"
        # the references: every covariance family's NumPy functions (diag: gradients, density)
        assert fast.kernels_for("auto") == (ops.nll_grad_sums, ops.nll)
        state = train(X, p, config=TrainConfig(max_epochs=2), rng=np.random.default_rng(0))
    fallbacks = [w for w in caught if issubclass(w.category, FallbackWarning)]
    assert len(fallbacks) == 1
    assert "numba" in str(fallbacks[0].message)
    ref = train(X, p, config=TrainConfig(max_epochs=2), rng=np.random.default_rng(0),
                backend="numpy")
    assert state.params.ravel().tobytes() == ref.params.ravel().tobytes()


def test_explicit_numba_backend_raises_when_unavailable(broken_numba):
    with pytest.raises(RuntimeError, match="backend='numba' cannot run"):
        fast.resolve_backend("numba")
    assert fast.resolve_backend("numpy") == "numpy"


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="backend"):
        fast.resolve_backend("cuda")


def test_estimator_backends_agree(rng):
    from mogsgd.estimator import SGDGaussianMixture

    true = random_params(rng, 3, 2)
    X, _ = sample_mixture(rng, true, 3000)
    models = [SGDGaussianMixture(3, backend=b, random_state=0, max_epochs=5).fit(X)
              for b in ("numba", "numpy")]
    a, b = models
    np.testing.assert_allclose(a.means_, b.means_, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(a.weights_, b.weights_, rtol=1e-9, atol=1e-9)
    assert a.lower_bound_ == pytest.approx(b.lower_bound_, rel=1e-12)
    assert MixtureParams is type(a.params_)


_REPRO_SCRIPT = """
import hashlib, numpy as np
from mogsgd import fast
from mogsgd.params import MixtureParams
from mogsgd.train import TrainConfig, train
rng = np.random.default_rng(0)
p = MixtureParams(rng.normal(size=(3, 3)), rng.normal(size=(3, 3)) * 0.2, rng.normal(size=3))
X = rng.normal(size=(3000, 3)) * 1.5
s = fast.nll_grad_sums(X, p)
st = train(X, p, config=TrainConfig(max_epochs=2, batch_size=100, early_stopping=False),
           rng=np.random.default_rng(1), backend="numba")
parts = [np.array([s.nll_sum]), s.means, s.log_sigma, s.logits, st.params.ravel()]
print(hashlib.sha256(b"".join(np.ascontiguousarray(a).tobytes() for a in parts)).hexdigest())
"""


@pytest.mark.slow
def test_results_are_identical_whether_compiled_now_or_loaded_from_cache(tmp_path):
    """Summation order is fixed in the kernels, so a freshly compiled kernel and the same
    kernel loaded from numba's on-disk cache give the same bits (run in subprocesses
    sharing one fresh cache directory)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    src = str(Path(fast.__file__).resolve().parents[2])
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path),
           "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    runs = [subprocess.run([sys.executable, "-c", _REPRO_SCRIPT], env=env, check=True,
                           capture_output=True, text=True).stdout.strip() for _ in range(2)]
    assert any(tmp_path.rglob("*.nbi")), "the first run should have filled the cache"
    assert runs[0] == runs[1]


@pytest.mark.parametrize("stop_at", [None, 2])
def test_read_ahead_permutations_leave_everything_as_the_python_loop_does(rng, stop_at):
    from mogsgd.fast.epoch import READ_AHEAD_ROWS

    p = random_params(rng, 2, 2)
    X, _ = sample_mixture(rng, p, READ_AHEAD_ROWS + 1000)
    cfg = TrainConfig(max_epochs=4, early_stopping=False, batch_size=4096)
    callback = None if stop_at is None else (lambda s: s.epoch < stop_at)
    runs, gens = [], []
    for backend in ("numba", "numpy"):
        gen = np.random.default_rng(7)
        epochs = []
        runs.append(train(X, p, config=cfg, rng=gen, backend=backend,
                          callback=lambda s, e=epochs: (e.append(s.rng_state),
                                                        None if callback is None
                                                        else callback(s))[1]))
        gens.append((gen.bit_generator.state, epochs))
    (fast_gen, fast_states), (ref_gen, ref_states) = gens
    assert fast_states == ref_states                  # per-epoch states, as checkpoints see them
    assert fast_gen == ref_gen                        # the read-ahead draw was given back
    assert runs[0].epoch == runs[1].epoch == (stop_at or 4)
    np.testing.assert_allclose(runs[0].params.ravel(), runs[1].params.ravel(), rtol=1e-10,
                               atol=1e-10)
    assert gen_after_next_draw_matches(fast_gen, ref_gen, len(X))


def gen_after_next_draw_matches(a_state, b_state, n):
    a, b = np.random.default_rng(), np.random.default_rng()
    a.bit_generator.state, b.bit_generator.state = a_state, b_state
    return np.array_equal(a.permutation(n), b.permutation(n))


def test_read_ahead_is_given_back_after_an_exception(rng):
    from mogsgd.fast.epoch import Permutations

    gen = np.random.default_rng(3)
    ref = np.random.default_rng(3)
    perms = Permutations(gen, 100_000, ahead=True)
    first = perms.next()
    np.testing.assert_array_equal(first, ref.permutation(100_000))
    del perms                                          # as when an exception unwinds train()
    import gc

    gc.collect()
    assert gen.bit_generator.state == ref.bit_generator.state


def test_checkpointed_fit_with_compiled_epochs_resumes_bit_for_bit(rng, tmp_path):
    """Checkpoints see the same optimiser state and RNG state with compiled epochs: a fit
    stopped after epoch 3 and resumed from its checkpoint ends where a straight fit does."""
    from mogsgd.checkpoint import read_checkpoint
    from mogsgd.errors import ConvergenceWarning
    from mogsgd.estimator import SGDGaussianMixture

    true = random_params(rng, 2, 2)
    X, _ = sample_mixture(rng, true, 2000)
    kw = dict(n_components=2, max_epochs=8, batch_size=64, random_state=0, backend="numba")
    path = tmp_path / "ck.json"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        straight = SGDGaussianMixture(**kw).fit(X)
        SGDGaussianMixture(**kw, checkpoint_path=path, callback=lambda s: s.epoch < 3).fit(X)
        assert read_checkpoint(path).epoch == 3
        resumed = SGDGaussianMixture(**kw).fit(X, resume=path)
    assert resumed.params_.ravel().tobytes() == straight.params_.ravel().tobytes()
    assert resumed.history_["train_nll"] == straight.history_["train_nll"]
    assert resumed._state.rng_state == straight._state.rng_state


def test_full_pass_from_worker_threads_gives_the_same_sums(rng):
    """Dask and friends call the kernels from worker threads: same bits as the main thread."""
    from concurrent.futures import ThreadPoolExecutor

    p = random_params(rng, 3, 3)
    X, _ = sample_mixture(rng, p, 150_000)
    main = fast.nll_grad_sums(X, p)
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: fast.nll_grad_sums(X, p), range(4)))
    for r in results:
        assert r.nll_sum == main.nll_sum and r.means.tobytes() == main.means.tobytes()


def test_compiled_epoch_on_float32_data_matches_the_numpy_loop(rng):
    p = random_params(rng, 3, 5)
    X, _ = sample_mixture(rng, p, 1500)
    X = X.astype(np.float32)
    cfg = TrainConfig(max_epochs=3, early_stopping=False, batch_size=128)
    runs = [train(X, p, config=cfg, rng=np.random.default_rng(2), backend=b)
            for b in ("numba", "numpy")]
    np.testing.assert_allclose(runs[0].params.ravel(), runs[1].params.ravel(), rtol=1e-10,
                               atol=1e-10)


@pytest.mark.parametrize("batch", [5000, 40_000])
def test_large_batches_are_split_the_same_way_with_and_without_threads(rng, batch):
    """Batches of >= SPLIT_ROWS rows are summed in parts (kernels.partition): the compiled
    epoch with the parts on two threads, on one, and the Python loop over the fused kernel
    (which splits a full pass the same way) agree bit for bit."""
    from mogsgd.fast import kernels as kern
    from mogsgd.fast.epoch import CompiledEpoch

    assert kern.partition(batch)[0] >= 2
    p = random_params(rng, 3, 3)
    X, _ = sample_mixture(rng, p, 90_000)
    cfg = TrainConfig(batch_size=batch, early_stopping=False)
    opt = cfg.build_optimizer(len(X))
    order = np.random.default_rng(4).permutation(len(X))
    runs = [CompiledEpoch(X, None, opt, batch, cfg.min_variance, threads=t)(
        order, p, opt.init(p)) for t in (False, True)]
    assert runs[0][0].ravel().tobytes() == runs[1][0].ravel().tobytes()
    assert runs[0][2] == runs[1][2]
    loop = train(X, p, config=cfg, rng=np.random.default_rng(4), max_epochs=1,
                 grad_sums_fn=lambda *a: fast.nll_grad_sums(*a), backend="numba")
    assert loop.params.ravel().tobytes() == runs[0][0].ravel().tobytes()
