"""Dask: data-parallel SGD, map-reduced EM and block-wise scoring on a real LocalCluster.

One ``dask.distributed.LocalCluster`` with two worker processes is started and stopped by
the module fixture; every test here runs against it.
"""

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import random_params, sample_mixture

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

from mogsgd import MixtureParams, SGDGaussianMixture  # noqa: E402
from mogsgd import distributed as mdist  # noqa: E402
from mogsgd.density import log_prob  # noqa: E402
from mogsgd.em import em_stats  # noqa: E402
from mogsgd.gradients import finalize, nll_grad, nll_grad_sums  # noqa: E402

TRUE = MixtureParams.from_moments([0.5, 0.3, 0.2], [[0, 0, 0], [5, 5, 0], [-5, 4, 3]],
                                  [[1, 1, 1], [0.5, 1.4, 1], [2, 0.3, 1]])


@pytest.fixture(scope="module")
def client():
    src = str(Path(mdist.__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None, env={"PYTHONPATH": path},
                                  worker_dashboard_address=None) as cluster, \
            distributed.Client(cluster) as c:
        yield c


def data(n, seed):
    return sample_mixture(np.random.default_rng(seed), TRUE, n)[0]


def rel_err(a, b):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def test_cluster_has_two_worker_processes(client):
    info = client.scheduler_info()["workers"]
    assert len(info) == 2
    pids = set(client.run(os.getpid).values())
    assert len(pids) == 2 and os.getpid() not in pids


def test_combined_gradient_equals_the_single_machine_gradient(client):
    rng = np.random.default_rng(0)
    X = data(3000, 1)
    params = random_params(rng, 3, 3)
    blocks, sizes, workers = mdist.persist_blocks(client, da.from_array(X, chunks=(700, 3)))
    assert len(set(workers)) == 2          # the blocks live on both workers
    starts = np.concatenate([[0], np.cumsum(sizes)])
    for _ in range(3):
        bounds = []
        for n_i in sizes:
            a = int(rng.integers(0, n_i))
            bounds.append((a, int(rng.integers(a, n_i + 1))))
        rows = np.concatenate([X[s + a:s + b] for s, (a, b) in zip(starts, bounds, strict=False)])
        single = nll_grad_sums(rows, params)
        ref_value, ref_grad = nll_grad(rows, params)
        for fast in (True, False):   # client.run on the blocks in memory, or tasks
            combined = mdist.batch_grad_sums(client, blocks, bounds, params, workers,
                                             fast=fast)
            assert combined.weight_sum == len(rows)
            assert rel_err(combined.nll_sum, single.nll_sum) < 1e-12
            for field in ("means", "log_sigma", "logits"):
                assert rel_err(getattr(combined, field), getattr(single, field)) < 1e-12
            value, grad = finalize(combined)
            assert rel_err(value, ref_value) < 1e-12
            for a, b in zip(grad, ref_grad, strict=True):
                assert rel_err(a, b) < 1e-12
    # blocks not where the driver thinks they are: the fast path falls back to tasks
    wrong = workers[::-1] if workers[0] != workers[-1] else workers
    moved = mdist.batch_grad_sums(client, blocks, bounds, params, wrong)
    assert rel_err(moved.means, single.means) < 1e-12


def test_em_statistics_and_loglik_map_reduce_exactly(client):
    X = data(2000, 2)
    params = random_params(np.random.default_rng(1), 3, 3)
    blocks, sizes, workers = mdist.persist_blocks(client, da.from_array(X, chunks=(450, 3)))
    dd = mdist.DaskData(client, blocks, sizes, workers, 3)
    mine, ref = dd.em_stats(params), em_stats(X, params)
    for a, b in zip(mine, ref, strict=True):
        assert rel_err(a, b) < 1e-12
    total, count = dd.loglik(params)
    assert count == 2000
    assert total == pytest.approx(float(log_prob(X, params).sum()), rel=1e-12)


def test_epoch_batches_cover_every_row_once(client):
    X = np.arange(1000.0)[:, None] * [1.0, 1.0]
    blocks, sizes, workers = mdist.persist_blocks(client, da.from_array(X, chunks=(300, 2)))
    dd = mdist.DaskData(client, blocks, sizes, workers, 2)
    seen = []
    for batch, _ in dd.epoch_batches(128, np.random.default_rng(0)):
        assert 120 <= len(batch) <= 128
        seen.append(np.concatenate([client.submit(mdist.take_rows, p, a, b).result()
                                    for p, (a, b) in zip(dd.parts, batch.bounds, strict=True)]))
    np.testing.assert_array_equal(np.sort(np.concatenate(seen)[:, 0]), X[:, 0])


def test_fit_on_dask_matches_in_memory_quality(client):
    X, X_test = data(4000, 3), data(2000, 4)
    kw = {"random_state": 7, "max_epochs": 6, "batch_size": 512}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mem = SGDGaussianMixture(3, **kw).fit(X)
        est = SGDGaussianMixture(3, **kw).fit(da.from_array(X, chunks=(1000, 3)))
    assert abs(est.score(X_test) - mem.score(X_test)) < 0.03
    assert est.n_iter_ == 6 and est.n_features_in_ == 3
    assert est.lower_bound_ == pytest.approx(est.score(X), rel=1e-10)
    assert est.history_["val_nll"][-1] is not None
    # the fitted model continues with in-memory partial_fit
    est.partial_fit(X[:500])
    assert est.n_iter_ == 7


def test_dask_scoring_is_lazy_blockwise_and_exact(client):
    X = data(3000, 5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = SGDGaussianMixture(3, random_state=0, max_epochs=3).fit(X)
    Xd = da.from_array(X, chunks=(800, 3))
    lp = est.score_samples(Xd)
    assert isinstance(lp, da.Array) and lp.numblocks == (4,)
    np.testing.assert_allclose(lp.compute(), est.score_samples(X), rtol=1e-10)
    np.testing.assert_array_equal(est.predict(Xd).compute(), est.predict(X))
    proba = est.predict_proba(Xd)
    assert proba.shape == (3000, 3)
    np.testing.assert_allclose(proba.compute(), est.predict_proba(X), rtol=1e-10, atol=1e-300)
    assert est.score(Xd) == pytest.approx(est.score(X), rel=1e-10)
    assert est.bic(Xd) == pytest.approx(est.bic(X), rel=1e-10)
    assert est.aic(Xd) == pytest.approx(est.aic(X), rel=1e-10)
    with pytest.raises(ValueError, match="expecting 3 features"):
        est.score(da.zeros((10, 2), chunks=5))


def test_em_solver_on_dask(client):
    X = data(3000, 6)
    mem = SGDGaussianMixture(3, solver="em", random_state=1).fit(X)
    est = SGDGaussianMixture(3, solver="em", random_state=1).fit(da.from_array(X, chunks=750))
    assert abs(est.score(X) - mem.score(X)) < 0.01
    assert est.converged_


def test_bad_blocks_are_reported(client):
    X = data(500, 8)
    X[321, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        SGDGaussianMixture(3, max_epochs=1).fit(da.from_array(X, chunks=100))


# ------------------------------------------------------------------ local SGD
class _InProcessShards:
    """DaskData's shard protocol without a cluster: one shard per array, run here."""

    mode, sync_rows = "local", None

    def __init__(self, shards, n_features):
        self._shards = [(x, len(x), f"w{i}") for i, x in enumerate(shards)]
        self.shape = (sum(len(x) for x in shards), n_features)
        self.rows_per_trajectory = max(len(x) for x in shards)

    def shards(self):
        return self._shards

    def map_shards(self, fn, shared, per_shard, rows=None):
        return [fn(x, *shared, *extra)
                for (x, _, _), extra in zip(self._shards, per_shard, strict=True)]


@pytest.mark.parametrize("n", [5000, 200_000])   # a permutation; block-shuffled (> 4 MiB)
def test_local_sgd_with_one_worker_is_the_single_process_compiled_epoch_bit_for_bit(n):
    from mogsgd import fast
    from mogsgd.fast.epoch import CompiledEpoch
    from mogsgd.solvers.local_sgd import LocalSGDEngine
    from mogsgd.train import TrainConfig, make_stepper

    X = data(n, 40)
    config = TrainConfig(batch_size=128, max_epochs=3)
    start = SGDGaussianMixture(3, solver="em", max_iter=2, random_state=0).fit(X).params_
    stepper = make_stepper(config, len(X), fast.kernels_for("auto")[0])
    opt_state = stepper.init(start)
    engine = LocalSGDEngine(_InProcessShards([X], 3), stepper, config,
                            np.random.default_rng(5), params=start)
    got = engine.epoch(start, opt_state, True)
    seed = int(np.random.default_rng(5).integers(0, 2**63 - 1, size=1)[0])
    order = fast.epoch_order(np.random.default_rng(seed), len(X), X.shape[1])
    compiled = CompiledEpoch(X, None, config.build_optimizer(len(X)), 128, config.min_variance)
    want = compiled(order, start, opt_state)
    assert np.array_equal(got[0].ravel(), want[0].ravel())
    assert got[1].count == want[1].count and np.array_equal(got[1].mu.ravel(), want[1].mu.ravel())
    assert got[2] == want[2] and got[3] == want[3]


def test_local_sgd_draws_the_next_order_ahead_without_changing_the_run():
    """The next epoch's seeds are drawn with the current one's (the workers draw its order
    in the background), yet ``rng_state()`` is where the generator stands after the
    epoch: an engine rebuilt from it (batch growth) continues bit for bit."""
    from mogsgd import fast
    from mogsgd.solvers.local_sgd import LocalSGDEngine
    from mogsgd.train import TrainConfig, make_stepper

    X = data(6000, 48)
    shards = _InProcessShards([X[:3500], X[3500:]], 3)
    config = TrainConfig(batch_size=64, max_epochs=3)
    start = random_params(np.random.default_rng(2), 3, 3)
    stepper = make_stepper(config, 3500, fast.kernels_for("auto")[0])
    rng = np.random.default_rng(9)
    one = LocalSGDEngine(shards, stepper, config, rng, params=start)
    p, s, *_ = one.epoch(start, stepper.init(start), True)
    after_first = one.rng_state()
    want = one.epoch(p, s, False)
    rng_again = np.random.default_rng(9)
    rng_again.integers(0, 2**63 - 1, size=2)
    assert after_first == rng_again.bit_generator.state
    rebuilt_rng = np.random.default_rng()
    rebuilt_rng.bit_generator.state = after_first
    got = LocalSGDEngine(shards, stepper, config, rebuilt_rng, params=start).epoch(p, s, False)
    assert np.array_equal(got[0].ravel(), want[0].ravel()) and got[2] == want[2]


def test_local_sgd_averages_rows_weighted_states():
    from mogsgd.optim import AdamState
    from mogsgd.params import MixtureParams
    from mogsgd.solvers.local_sgd import average_states

    a = MixtureParams.from_moments([0.5, 0.5], [[0.0], [1.0]], [[1.0], [1.0]])
    b = MixtureParams.from_moments([0.5, 0.5], [[3.0], [4.0]], [[1.0], [1.0]])
    zero = MixtureParams.zeros_like(a)
    avg, state = average_states([a, b], [AdamState(10, a, zero), AdamState(12, b, zero)],
                                np.array([1.0, 3.0]))
    np.testing.assert_allclose(avg.means, 0.25 * a.means + 0.75 * b.means)
    np.testing.assert_allclose(state.mu.means, 0.25 * a.means + 0.75 * b.means)
    assert state.count == 12  # 0.25 * 10 + 0.75 * 12 = 11.5, rounded


def test_local_sgd_on_the_cluster_reaches_the_in_memory_fit(client):
    """The default Dask fit (local SGD, averaged per round) is as good as in memory."""
    from mogsgd.data.dask import DaskSource

    X, X_test = data(40_000, 41), data(10_000, 42)
    kw = {"random_state": 3, "batch_size": 256, "refine": "none"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mem = SGDGaussianMixture(3, **kw).fit(X)
        local = SGDGaussianMixture(3, **kw).fit(
            DaskSource(da.from_array(X, chunks=(10_000, 3)), client, sync_rows=5_000))
    assert abs(local.score(X_test) - mem.score(X_test)) < 0.01
    assert local.n_iter_ >= 1


def test_the_default_dask_fit_ends_like_the_in_memory_default(client):
    """``refine="auto"`` means the same on the cluster as in memory (issue 19): batch growth,
    then the map-reduced EM refinement to the fixed point; the held-out log-likelihood
    matches the in-memory default fit's."""
    X, X_test = data(40_000, 45), data(10_000, 46)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mem = SGDGaussianMixture(3, random_state=2).fit(X)
        est = SGDGaussianMixture(3, random_state=2).fit(da.from_array(X, chunks=(10_000, 3)))
        plain = SGDGaussianMixture(3, random_state=2, refine="none").fit(
            da.from_array(X, chunks=(10_000, 3)))
    assert mem.refine_iter_ > 0 and est.refine_iter_ > 0 and plain.refine_iter_ == 0
    # the stochastic budget counts passes over all rows, as in memory (not epochs of one
    # worker's share, which would be twice as many here)
    from mogsgd.solvers.runs import refined_epochs
    from mogsgd.train import TrainConfig

    assert est.n_iter_ <= refined_epochs(TrainConfig(), 36_000) < refined_epochs(TrainConfig(),
                                                                                 18_000)
    assert abs(est.score(X_test) - mem.score(X_test)) < 0.01
    assert est.converged_
    # the refinement ends on the optimum of all rows' likelihood, above SGD's last iterate
    assert est.score(X) >= plain.score(X) - 1e-6


def test_prepared_rows_are_the_data_split_into_training_and_held_out(client):
    """Each worker's standardised training block plus the held-out rows are exactly the
    rows of the array, each once (the sample is drawn without replacement and left out
    where it was drawn)."""
    from mogsgd.data.base import FitPlan
    from mogsgd.data.dask import DaskSource

    X = np.arange(6000.0).reshape(2000, 3)
    plan = FitPlan(n_components=2, batch_size=64, dtype=np.dtype(np.float64),
                   allow_nan=False, standardize=True, validation_fraction="auto",
                   holds_out=True)
    prepared = DaskSource(da.from_array(X, chunks=(300, 3)), client).prepare(
        plan, np.random.default_rng(0))
    blocks = mdist.map_held(client, np.concatenate,
                            [(w, [f]) for f, _, w in prepared.train.shards()])
    assert sum(len(b) for b in blocks) == prepared.train.shape[0] == 1800
    rows = np.concatenate(blocks + [prepared.val])
    scaler = prepared.scaler
    np.testing.assert_allclose(np.sort((rows * scaler.scale + scaler.center)[:, 0]), X[:, 0],
                               atol=1e-9)


def test_map_held_by_client_run_equals_tasks(client):
    """The ``client.run`` path (blocks read from worker memory) and the task path give the
    same per-worker results, in the same order; an unknown key falls back to tasks."""
    X = data(3000, 47)
    params = random_params(np.random.default_rng(3), 3, 3)
    blocks, sizes, workers = mdist.persist_blocks(client, da.from_array(X, chunks=(500, 3)))
    groups = {}
    for f, w in zip(blocks, workers, strict=True):
        groups.setdefault(w, []).append(f)
    held = sorted(groups.items())
    fast = mdist.map_held(client, mdist.block_loglik, held, (params,), fast=True)
    tasks = mdist.map_held(client, mdist.block_loglik, held, (params,), fast=False)
    assert fast == tasks
    assert sum(n for _, n in fast) == 3000
    moved = [(w, fs) for (_, fs), w in zip(held, reversed([w for w, _ in held]), strict=True)]
    assert mdist.map_held(client, mdist.block_loglik, moved, (params,)) == tasks


def test_sync_mode_stays_available(client):
    from mogsgd.data.dask import DaskSource

    X = data(3000, 43)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = SGDGaussianMixture(3, random_state=0, max_epochs=2, batch_size=1024).fit(
            DaskSource(da.from_array(X, chunks=(1000, 3)), client, mode="sync"))
    assert est.n_iter_ == 2
    with pytest.raises(ValueError, match="unknown mode"):
        DaskSource(da.from_array(X, chunks=(1000, 3)), client, mode="fast")


def test_checkpoints_on_the_cluster_are_refused_before_any_work(client, tmp_path):
    """Checkpoints cannot capture the workers' positions, so a Dask fit refuses them up
    front with one message naming the feature and the fix (issue 19: resume works across
    the cluster or is refused clearly); nothing is written."""
    from mogsgd.data.dask import DaskSource

    X = data(3000, 44)
    ckpt = tmp_path / "fit.ckpt"
    for kw in ({"checkpoint_path": ckpt}, {}):
        est = SGDGaussianMixture(3, random_state=0, **kw)
        source = DaskSource(da.from_array(X, chunks=(1000, 3)), client)
        with pytest.raises(ValueError, match="checkpoint_path/resume is not supported for "
                                             "Dask arrays .*load the rows"):
            est.fit(source, **({} if kw else {"resume": ckpt}))
    assert not ckpt.exists()


@pytest.mark.parametrize("covariance_type, solver", [("full", "sgd"), ("tied", "em"),
                                                     ("spherical", "sgd")])
def test_other_covariance_types_fit_on_the_cluster_like_in_memory(client, covariance_type,
                                                                   solver):
    from mogsgd import make_mixture

    X = make_mixture(6000, 3, 2, separation=3.0, random_state=5,
                     covariance_type=covariance_type)[0]
    Xd = da.from_array(X, chunks=(1500, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        on_cluster = SGDGaussianMixture(2, covariance_type=covariance_type, solver=solver,
                                        random_state=0).fit(Xd)
        in_memory = SGDGaussianMixture(2, covariance_type=covariance_type, solver=solver,
                                       random_state=0).fit(X)
    assert on_cluster.covariances_.shape == in_memory.covariances_.shape
    assert on_cluster.score(X) == pytest.approx(in_memory.score(X), abs=0.01)
    lazy = on_cluster.score_samples(Xd)          # inference stays lazy on the cluster
    np.testing.assert_allclose(lazy.compute(), on_cluster.score_samples(X), rtol=1e-10)
