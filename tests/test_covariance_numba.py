"""The compiled full/tied pass (``mogsgd.fast.full_kernel``) agrees with the NumPy family."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numba")

from mogsgd.covariance import FULL, TIED  # noqa: E402
from mogsgd.fast import full_kernel  # noqa: E402


def rel_err(actual, expected) -> float:
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    scale = max(float(np.max(np.abs(expected))), float(np.max(np.abs(actual))), 1e-300)
    return float(np.max(np.abs(actual - expected))) / scale


def setup(family, k: int, d: int, n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    A = np.triu(rng.normal(0.0, 0.4, size=(k, d, d)))
    means = rng.normal(0.0, 2.0, size=(k, d))
    logits = rng.normal(size=k)
    params = (FULL.params_type.create(means, A, logits) if family is FULL
              else TIED.params_type.create(means, A[0], logits))
    X = rng.normal(0.0, 2.5, size=(n, d))
    X[0] = 80.0  # a far outlier: responsibilities underflow to exactly 0 for some k
    return params, X, rng.uniform(0.1, 2.0, size=n)


@pytest.mark.parametrize("family", [FULL, TIED], ids=["full", "tied"])
@pytest.mark.parametrize("k, d, n", [(1, 1, 5), (3, 1, 300), (1, 4, 9), (3, 4, 257),
                                     (8, 16, 1000), (2, 3, full_kernel.CHUNK_ROWS + 3)])
@pytest.mark.parametrize("weighted", [False, True])
def test_kernel_grad_sums_agree_with_numpy(family, k, d, n, weighted):
    params, X, w = setup(family, k, d, n)
    w = w if weighted else None
    ref = family.nll_grad_sums(X, params, w)
    got = full_kernel.nll_grad_sums(family, X, params, w)
    assert type(got) is type(ref)
    for field, a, b in zip(ref._fields, got, ref, strict=True):
        assert rel_err(a, b) < 1e-12, field


@pytest.mark.parametrize("family", [FULL, TIED], ids=["full", "tied"])
def test_kernel_log_prob_components_agree_with_numpy(family):
    params, X, _ = setup(family, 4, 5, 600)
    assert rel_err(full_kernel.log_prob_components(family, X, params),
                   family.log_prob_components(X, params)) < 1e-13


@pytest.mark.parametrize("family", [FULL, TIED], ids=["full", "tied"])
@pytest.mark.parametrize("parallel", [False, True])
def test_loglik_pass_agrees_with_numpy(family, parallel):
    """``full_kernel.log_prob`` and ``nll`` (the log-sum-exp inside the kernel, no gradient
    sums) equal the NumPy family's, far rows included (handed to the family, eq. 52)."""
    from mogsgd.covariance import ops

    params, X, w = setup(family, 4, 5, 2 * full_kernel.CHUNK_ROWS + 11)
    X[7] = 1e12   # beyond every component's saturation point: the family's scaled form
    ref = ops.log_prob(X, params)
    got = full_kernel.log_prob(family, X, params, parallel=parallel)
    assert rel_err(got, ref) < 1e-13 and np.isfinite(got).all()
    for weights in (None, w):
        assert rel_err(full_kernel.nll(family, X, params, weights, parallel=parallel),
                       ops.nll(X, params, weights)) < 1e-13


@pytest.mark.parametrize("family", [FULL, TIED], ids=["full", "tied"])
def test_float32_rows_are_read_as_they_are(family):
    """C-contiguous float32 rows go through the kernel without a float64 copy of ``X``, and
    give exactly the sums of the same values in float64."""
    params, X, w = setup(family, 3, 6, 1000)
    X32 = X.astype(np.float32)
    for fn in (full_kernel.nll_grad_sums, full_kernel.em_stats):
        a, b = fn(family, X32, params, w), fn(family, X32.astype(np.float64), params, w)
        for x, y in zip(a, b, strict=True):
            assert np.array_equal(x, y)
    assert full_kernel._prepare(family, X32, params)[0] is X32


def test_parallel_and_serial_chunks_give_the_same_bits():
    params, X, w = setup(FULL, 3, 4, 2 * full_kernel.CHUNK_ROWS + 11)
    a = full_kernel.nll_grad_sums(FULL, X, params, w)
    b = full_kernel.nll_grad_sums(FULL, X, params, w, parallel=True)
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(x, y)


def test_parallel_and_serial_em_stats_give_the_same_bits():
    params, X, w = setup(TIED, 3, 5, 2 * full_kernel.CHUNK_ROWS + 11)
    a = full_kernel.em_stats(TIED, X, params, w)
    b = full_kernel.em_stats(TIED, X, params, w, parallel=True)
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(x, y)


def test_kernel_is_repeatable_to_the_bit():
    params, X, _ = setup(FULL, 3, 6, 999)
    a = full_kernel.nll_grad_sums(FULL, X, params)
    b = full_kernel.nll_grad_sums(FULL, X, params)
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(x, y)


# ------------------------------------------------- every family through mogsgd.fast
def family_setup(name: str, k: int, d: int, n: int, seed: int = 1):
    """Parameters of family ``name`` with correlated (full/tied) or unequal (spherical,
    diag) spreads, rows around them plus one far outlier, and weights."""
    from mogsgd.covariance import get_family

    rng = np.random.default_rng(seed)
    family = get_family(name)
    means = rng.normal(0.0, 2.0, size=(k, d))
    weights = rng.dirichlet(np.full(k, 2.0))
    if name in ("full", "tied"):
        B = rng.normal(size=(k, d, d)) / np.sqrt(d)
        cov = B @ np.swapaxes(B, 1, 2) + 0.3 * np.eye(d)
        cov = cov[0] if name == "tied" else cov
    elif name == "spherical":
        cov = rng.uniform(0.3, 3.0, size=k)
    else:
        cov = rng.uniform(0.3, 3.0, size=(k, d))
    params = family.init_from_moments(weights, means, cov, 1e-6)
    X = rng.normal(0.0, 2.5, size=(n, d))
    X[0] = 60.0
    return params, X, rng.uniform(0.1, 2.0, size=n)


FAMILY_NAMES = ("full", "tied", "diag", "spherical")


@pytest.mark.parametrize("name", FAMILY_NAMES)
@pytest.mark.parametrize("k, d, n", [(1, 1, 7), (3, 5, 513), (8, 16, 2000),
                                     (2, 3, full_kernel.CHUNK_ROWS + 5)])
@pytest.mark.parametrize("weighted", [False, True])
def test_compiled_pass_agrees_with_reference_for_every_family(name, k, d, n, weighted):
    """``mogsgd.fast`` (compiled: the diagonal kernel for diag and spherical, the full kernel
    for full and tied) against the family's NumPy reference: gradient sums, E-step
    statistics, log-density and responsibilities to 1e-10 relative."""
    from mogsgd import fast
    from mogsgd.covariance import ops

    params, X, w = family_setup(name, k, d, n)
    w = w if weighted else None
    got, ref = fast.nll_grad_sums(X, params, w), ops.nll_grad_sums(X, params, w)
    assert type(got) is type(ref)
    for field, a, b in zip(ref._fields, got, ref, strict=True):
        assert rel_err(a, b) < 1e-10, field
    got, ref = fast.em_stats(X, params, w), ops.em_stats(X, params, w)
    for field in ("ll_sum", "weight_sum", "nk", "sx", "sxx"):
        assert rel_err(getattr(got, field), getattr(ref, field)) < 1e-10, field
    assert rel_err(fast.log_prob(X, params), ops.log_prob(X, params)) < 1e-10
    assert rel_err(fast.responsibilities(X, params), ops.responsibilities(X, params)) < 1e-10
    assert abs(fast.nll(X, params, w) - ops.nll(X, params, w)) < 1e-10 * abs(ops.nll(X, params, w))


def test_spherical_compiled_pass_refuses_nan():
    """The diagonal kernel marginalises NaN; the spherical model has no such likelihood, so
    its compiled pass refuses NaN as the reference does."""
    from mogsgd import fast
    from mogsgd.errors import ValidationError

    params, X, _ = family_setup("spherical", 2, 3, 10)
    X[3, 1] = np.nan
    for fn in (fast.nll_grad_sums, fast.log_prob, fast.responsibilities, fast.em_stats, fast.nll):
        with pytest.raises(ValidationError, match="NaN"):
            fn(X, params)


# ------------------------------------------------- the compiled full/tied epoch
@pytest.mark.parametrize("name", ["full", "tied"])
@pytest.mark.parametrize("optimizer, case", [
    ("adam", "plain"), ("momentum", "plain"), ("nesterov", "plain"), ("sgd", "plain"),
    ("adam", "weighted"), ("momentum", "weighted"), ("adam", "far row"),
    ("adam", "floor active"), ("sgd", "floor active")])   # (momentum diverges on a far row)
def test_compiled_full_epoch_matches_the_python_loop(name, optimizer, case):
    """Given the same order of the rows, one compiled epoch (``fast.full_epoch``) equals the
    training loop's Python steps over ``fast.nll_grad_sums`` to rounding: parameters,
    optimiser state and the epoch's NLL sums -- with sample weights, with a batch holding a
    far row (handed to the Python step) and with the eigenvalue floor active (handed to
    the family's projection)."""
    from mogsgd import fast
    from mogsgd.fast.full_epoch import CompiledFullEpoch
    from mogsgd.train import TrainConfig, make_stepper

    params, X, w = family_setup(name, 3, 5, 700)
    if case == "far row":
        X[5] = 1e12   # every component beyond the saturation point (eq. 52)
    min_variance = 0.6 if case == "floor active" else 1e-6
    w = w / w.mean() if case == "weighted" else None
    config = TrainConfig(optimizer=optimizer, batch_size=64, min_variance=min_variance)
    stepper = make_stepper(config, len(X), fast.nll_grad_sums)
    order = np.random.default_rng(3).permutation(len(X))
    py, state, total, rows = params, stepper.init(params), 0.0, 0
    for lo in range(0, len(X), 64):
        idx = order[lo:lo + 64]
        py, state, value = stepper.step(py, state, X[idx], None if w is None else w[idx])
        total, rows = total + value * len(idx), rows + len(idx)
    epoch = CompiledFullEpoch(X, w, config.build_optimizer(len(X)), 64, min_variance,
                              stepper.step)
    got, got_state, got_total, got_rows = epoch(order, params, stepper.init(params))
    # the floor's eigendecomposition, every step, amplifies the rounding differences
    tol = 1e-6 if case == "floor active" else 1e-10
    assert type(got) is type(py) and got_rows == rows
    for a, b in zip(got, py, strict=True):
        assert rel_err(a, b) < tol
    assert got_state.count == state.count
    for a, b in zip(got_state[1:], state[1:], strict=True):
        for x, y in zip(a, b, strict=True):
            assert rel_err(x, y) < tol
    assert abs(got_total - total) <= tol * abs(total)
    if case == "floor active":   # the projection ran: the floor holds and binds
        from mogsgd.covariance import ops

        lam = np.linalg.eigvalsh(ops.family_of(got).covariances(got))
        assert lam.min() >= min_variance * (1 - 1e-9)


@pytest.mark.parametrize("name", ["full", "tied"])
def test_compiled_full_epoch_takes_float32_rows_without_a_copy(name):
    """float32 rows (a ``dtype=np.float32`` fit) run the compiled epoch, gathered batch by
    batch (no float64 copy of ``X``), with the result of the same values in float64."""
    from mogsgd import fast
    from mogsgd.fast.full_epoch import CompiledFullEpoch
    from mogsgd.train import TrainConfig, make_stepper

    params, X, _ = family_setup(name, 3, 5, 700)
    X32 = X.astype(np.float32)
    config = TrainConfig(batch_size=64)
    stepper = make_stepper(config, len(X), fast.nll_grad_sums)
    epoch = fast.compiled_epoch(config, len(X), fast.nll_grad_sums, X32, None, params,
                                stepper.step)
    assert isinstance(epoch, CompiledFullEpoch) and epoch.X is X32
    order = np.random.default_rng(3).permutation(len(X))
    got = epoch(order, params, stepper.init(params))
    ref = CompiledFullEpoch(X32.astype(np.float64), None, config.build_optimizer(len(X)), 64,
                            1e-6, stepper.step)(order, params, stepper.init(params))
    for a, b in zip(got[0], ref[0], strict=True):
        assert np.array_equal(a, b)
    assert got[2] == ref[2]
