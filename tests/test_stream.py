"""Out-of-core sources, the shuffle buffer, and streaming fit / score / predict."""

import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import random_params, sample_mixture

from mogsgd import MixtureParams, SGDGaussianMixture, stream
from mogsgd.data import as_chunks, is_out_of_core, write_npy
from mogsgd.density import log_prob
from mogsgd.em import combine_stats, em_loop, em_stats, fit_em
from mogsgd.errors import DataFileError, ValidationError
from mogsgd.estimator import Standardizer

SRC = str(Path(stream.__file__).resolve().parents[1])

TRUE = MixtureParams.from_moments([0.5, 0.3, 0.2], [[0, 0, 0], [5, 5, 0], [-5, 4, 3]],
                                  [[1, 1, 1], [0.5, 1.4, 1], [2, 0.3, 1]])


def data(n=4000, seed=101):
    return sample_mixture(np.random.default_rng(seed), TRUE, n)


@pytest.fixture(scope="module")
def fitted():
    X, _ = data(3000, 7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return SGDGaussianMixture(3, random_state=3, max_epochs=5).fit(X)


def write_parquet_dir(path: Path, X, y, files=2, row_group_size=300):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.mkdir()
    for i, (xs, ys) in enumerate(zip(np.array_split(X, files), np.array_split(y, files),
                                     strict=True)):
        table = pa.table({**{f"x{j}": xs[:, j] for j in range(X.shape[1])}, "label": ys})
        pq.write_table(table, path / f"part-{i}.parquet", row_group_size=row_group_size)
    return path


def write_zarr(path: Path, X, chunk=250):
    import zarr

    z = zarr.open_array(store=str(path), mode="w", shape=X.shape, chunks=(chunk, X.shape[1]),
                        dtype=X.dtype)
    z[:] = X
    return z


def rows_of(source, order=None):
    return np.concatenate([c for _, c in source.chunks(order)])


# ------------------------------------------------------------------- sources
def test_open_source_recognises_npy_parquet_and_zarr(tmp_path):
    X, y = data(1000)
    np.save(tmp_path / "x.npy", X)
    write_parquet_dir(tmp_path / "pq", X, y)
    write_zarr(tmp_path / "x.zarr", X)
    write_zarr(tmp_path / "plainzarr", X)
    kinds = {"x.npy": stream.NpySource, "pq": stream.ParquetSource,
             "pq/part-0.parquet": stream.ParquetSource, "x.zarr": stream.ZarrSource,
             "plainzarr": stream.ZarrSource}
    for name, kind in kinds.items():
        src = stream.open_source(tmp_path / name, chunk_rows=None)
        assert isinstance(src, kind), name
        expect = X[:500] if name.endswith("part-0.parquet") else X
        assert src.n_features == 3 and src.n_samples == len(expect)
        np.testing.assert_array_equal(rows_of(src), expect)
        order = np.random.default_rng(0).permutation(src.n_chunks)
        np.testing.assert_array_equal(np.sort(rows_of(src, order), axis=0),
                                      np.sort(expect, axis=0))
    assert stream.open_source(tmp_path / "pq").columns == ["x0", "x1", "x2"]  # label skipped
    assert stream.open_source(tmp_path / "pq").n_chunks == 4                # row groups
    assert stream.open_source(tmp_path / "x.npy", chunk_rows=300).n_chunks == 4


def test_should_stream_directories_stores_and_big_files(tmp_path):
    X, y = data(1000)
    np.save(tmp_path / "x.npy", X)
    write_parquet_dir(tmp_path / "pq", X, y)
    write_zarr(tmp_path / "x.zarr", X)
    (tmp_path / "x.csv").write_text("1,2\n")
    assert stream.should_stream(tmp_path / "pq") and stream.should_stream(tmp_path / "x.zarr")
    assert not stream.should_stream(tmp_path / "x.npy")
    assert stream.should_stream(tmp_path / "x.npy", above_bytes=1000)
    assert stream.should_stream(tmp_path / "x.csv", above_bytes=0)  # large CSV streams too
    assert not stream.should_stream(tmp_path / "x.csv", above_bytes=1000)


def test_open_source_names_unreadable_inputs(tmp_path):
    (tmp_path / "x.txt").write_text("1,2\n")
    np.save(tmp_path / "flat.npy", np.arange(5.0))
    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    with pytest.raises(DataFileError, match="cannot stream"):
        stream.open_source(tmp_path / "x.txt")
    with pytest.raises(DataFileError, match="no such file"):
        stream.open_source(tmp_path / "missing.npy")
    with pytest.raises(DataFileError, match="shape"):
        stream.open_source(tmp_path / "flat.npy")
    with pytest.raises(DataFileError, match="not a readable"):
        stream.open_source(tmp_path / "bad.npy")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataFileError, match="no .parquet"):
        stream.open_source(tmp_path / "empty")


def test_iterable_sources_reread_or_refuse():
    X, _ = data(500)
    chunks = np.array_split(X, 7)
    for obj in (chunks, lambda: iter(chunks)):
        src = as_chunks(obj)
        assert src.reiterable and not src.random_access
        np.testing.assert_array_equal(rows_of(src), X)
        np.testing.assert_array_equal(rows_of(src), X)
        assert src.n_samples == 500
    once = as_chunks(iter(chunks))
    assert not once.reiterable
    np.testing.assert_array_equal(rows_of(once), X)
    with pytest.raises(ValidationError, match="read already"):
        rows_of(once)


def test_bad_chunk_is_named_with_its_row():
    X, _ = data(300)
    bad = X.copy()
    bad[250, 1] = np.nan
    with pytest.raises(ValidationError, match="chunk at row 200.*NaN.*row 50"):
        rows_of(stream.ArraySource(bad, chunk_rows=100))
    with pytest.raises(ValidationError, match="expecting 3 features"):
        rows_of(as_chunks([X[:10], X[:10, :2]]))


def test_is_stream_source_leaves_arrays_and_memmaps_alone(tmp_path):
    X, _ = data(100)
    np.save(tmp_path / "x.npy", X)
    mm = np.load(tmp_path / "x.npy", mmap_mode="r")
    for obj in (X, mm, X.tolist(), X.astype(np.float32), "data.txt"):
        assert not is_out_of_core(obj)
    for obj in (str(tmp_path / "x.npy"), tmp_path / "x.npy", str(tmp_path), "new.parquet",
                "data.csv",
                iter([X]), lambda: iter([X]), as_chunks(mm)):
        assert is_out_of_core(obj)
    src = as_chunks(mm, chunk_rows=30)
    assert isinstance(src, stream.NpySource)
    np.testing.assert_array_equal(rows_of(src), X)   # pages released after each chunk


# ------------------------------------------------------------------- moments
def test_stream_standardizer_is_the_in_memory_one_on_a_uniform_sample(tmp_path):
    X, _ = data(5000, 31)
    X[:, 1] = 1e3 + X[:, 1] * 1e-3
    sample = stream.scan(stream.ArraySource(X, chunk_rows=300), np.random.default_rng(0),
                         10_000)
    assert sample.n_samples == 5000 and len(sample.sample) == 5000   # holds every row
    np.testing.assert_array_equal(sample.sample, X[sample.index])
    exact = Standardizer.fit(sample.sample, True)
    ref = Standardizer.fit(X)
    np.testing.assert_allclose(exact.center, ref.center, rtol=1e-14)   # order of additions
    np.testing.assert_allclose(exact.scale, ref.scale, rtol=1e-12)
    part = stream.scan(stream.ArraySource(X, chunk_rows=300), np.random.default_rng(1), 2000)
    assert len(np.unique(part.index)) == 2000
    approx = Standardizer.fit(part.sample, True)
    # the median and IQR of 2000 of 5000 rows: within a few standard errors
    assert np.all(np.abs(approx.center - ref.center) < 0.1 * ref.scale)
    assert np.all(np.abs(approx.scale / ref.scale - 1) < 0.1)


def test_uniform_sample_is_uniform():
    counts = np.zeros(100)
    rows = np.arange(100.0)[:, None]
    rng = np.random.default_rng(2)
    for _ in range(400):
        found = stream.scan(stream.ArraySource(rows, chunk_rows=7), rng, 10)
        counts[found.index] += 1
    chi2 = ((counts - 40) ** 2 / 40).sum()
    assert chi2 < 150   # 99 degrees of freedom: P(chi2 > 150) ~ 1e-3


# ------------------------------------------------------------- shuffle buffer
@pytest.mark.parametrize("n, chunk, buffer, batch", [(1000, 64, 200, 32), (1000, 300, 100, 7),
                                                    (50, 10, 1000, 64), (999, 1, 50, 50)])
def test_shuffle_buffer_emits_every_row_once(n, chunk, buffer, batch):
    rows = np.arange(n, dtype=np.float64)[:, None]
    chunks = (rows[i:i + chunk] for i in range(0, n, chunk))
    batches = list(stream.shuffled_batches(chunks, batch, buffer, np.random.default_rng(1)))
    np.testing.assert_array_equal(np.sort(np.concatenate(batches)[:, 0]), np.arange(n))
    assert all(len(b) == batch for b in batches[:-1]) and 0 < len(batches[-1]) <= batch


def test_shuffle_buffer_as_large_as_the_data_gives_uniform_permutations():
    rows = np.arange(4, dtype=np.float64)[:, None]
    rng = np.random.default_rng(2)
    counts = {}
    for _ in range(2400):
        out = tuple(np.concatenate(list(stream.shuffled_batches([rows[:3], rows[3:]], 4, 4,
                                                                rng)))[:, 0])
        counts[out] = counts.get(out, 0) + 1
    assert len(counts) == 24
    chi2 = sum((c - 100) ** 2 / 100 for c in counts.values())
    assert chi2 < 50  # 23 degrees of freedom: P(chi2 > 50) ~ 1e-3


def test_shuffle_buffer_residence_follows_the_documented_law():
    n, c, b = 200_000, 100, 2000
    rows = np.arange(n, dtype=np.float64)[:, None]
    out = np.concatenate(list(stream.shuffled_batches(
        (rows[i:i + c] for i in range(0, n, c)), 1000, b, np.random.default_rng(3))))[:, 0]
    read_at = out.astype(np.int64)
    steady = slice(2 * b, n - 4 * b)
    # a row emitted at position p was displaced when about p + B rows had been read
    residence = (np.arange(n) + b - read_at)[steady]
    assert abs(residence.mean() / b - 1) < 0.05
    survive = np.mean(residence > b)
    assert abs(survive - (1 - c / b) ** (b / c)) < 0.02


def test_stream_batches_mix_data_sorted_on_disk(tmp_path):
    X, y = data(20_000, 5)
    order = np.argsort(y, kind="stable")
    np.save(tmp_path / "sorted.npy", X[order])
    src = stream.open_source(tmp_path / "sorted.npy", chunk_rows=250, buffer_rows=4000)
    sdata = stream.StreamData(src, Standardizer(np.zeros(3), np.ones(3)))
    first = np.array([0.5, 0.3, 0.2])
    fractions = []
    for xb, _ in sdata.epoch_batches(400, np.random.default_rng(4)):
        labels = np.argmin(((xb[:, None] - TRUE.means[None]) ** 2).sum(-1), axis=1)
        fractions.append(np.bincount(labels, minlength=3) / len(xb))
    spread = np.abs(np.array(fractions[5:-5]) - first).mean()
    assert spread < 0.12   # file order would give batches of one label: spread ~ 0.6


# ------------------------------------------------------------------- scoring
def test_streamed_scores_equal_in_memory(tmp_path, fitted):
    X, y = data(2500, 11)
    np.save(tmp_path / "x.npy", X)
    write_parquet_dir(tmp_path / "pq", X, y)
    sources = [str(tmp_path / "x.npy"), stream.open_source(tmp_path / "pq"),
               stream.ArraySource(X, chunk_rows=333), lambda: iter(np.array_split(X, 9))]
    for src in sources:
        assert fitted.score(src) == pytest.approx(fitted.score(X), rel=1e-10)
        assert fitted.bic(src) == pytest.approx(fitted.bic(X), rel=1e-10)
        assert fitted.aic(src) == pytest.approx(fitted.aic(X), rel=1e-10)
        # inference on a path or a stream returns one array, like on an array
        for name in ("score_samples", "predict_proba", "predict"):
            out = getattr(fitted, name)(src)
            assert isinstance(out, np.ndarray)
            np.testing.assert_allclose(out, getattr(fitted, name)(X), rtol=1e-10, atol=1e-300)
            np.testing.assert_allclose(np.concatenate(list(fitted.iter_predict(src, name))),
                                       out, rtol=1e-10, atol=1e-300)


def test_streamed_outputs_written_to_npy_files(tmp_path, fitted):
    X, _ = data(1200, 12)
    one_shot = iter(np.array_split(X, 5))
    labels = write_npy(tmp_path / "labels.npy", fitted.iter_predict(one_shot), np.int64, None)
    np.testing.assert_array_equal(labels, fitted.predict(X))
    np.testing.assert_array_equal(np.load(tmp_path / "labels.npy"), fitted.predict(X))
    proba = write_npy(tmp_path / "proba.npy",
                      fitted.iter_predict(stream.ArraySource(X, chunk_rows=100),
                                          "predict_proba"), np.float64, 3)
    assert proba.shape == (1200, 3)
    np.testing.assert_allclose(proba, fitted.predict_proba(X), rtol=1e-10, atol=1e-300)
    lp = write_npy(tmp_path / "lp.npy", fitted.iter_predict(iter([X]), "score_samples"), np.float64,
                   None)
    np.testing.assert_allclose(lp, fitted.score_samples(X), rtol=1e-10)
    with pytest.raises(FileExistsError):
        write_npy(tmp_path / "labels.npy", fitted.iter_predict(iter([X])), np.int64, None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.npy", "lp.npy", "proba.npy"]


def test_streamed_scoring_checks_the_feature_count(fitted):
    with pytest.raises(ValidationError, match="expecting 3 features"):
        fitted.score(iter([np.zeros((4, 2))]))


# ------------------------------------------------------------------- fitting
def test_stream_fit_matches_in_memory_fit(tmp_path):
    X, _ = data(6000, 21)
    X_test, _ = data(3000, 22)
    np.save(tmp_path / "x.npy", X)
    kw = {"random_state": 5, "max_epochs": 30}
    src = stream.open_source(tmp_path / "x.npy", chunk_rows=200, buffer_rows=1500)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mem = SGDGaussianMixture(3, **kw).fit(X)
        est = SGDGaussianMixture(3, **kw).fit(src)
    assert abs(est.score(X_test) - mem.score(X_test)) < 0.02
    assert est.n_features_in_ == 3 and est.n_iter_ <= 30
    assert est.lower_bound_ == pytest.approx(est.score(X), rel=1e-10)
    assert len(est.history_["val_nll"]) == est.n_iter_ and est.history_["val_nll"][0] is not None
    # fitting a path works the same, deterministically
    kw.update(max_epochs=2, early_stopping=False)
    again = SGDGaussianMixture(3, **kw).fit(str(tmp_path / "x.npy"))
    again2 = SGDGaussianMixture(3, **kw).fit(str(tmp_path / "x.npy"))
    np.testing.assert_array_equal(again.means_, again2.means_)


def test_stream_fit_of_parquet_zarr_and_iterables(tmp_path):
    X, y = data(3000, 23)
    X_test, _ = data(2000, 24)
    kw = {"random_state": 6, "max_epochs": 20, "early_stopping": False}
    mem = SGDGaussianMixture(3, **kw).fit(X)
    z = write_zarr(tmp_path / "x.zarr", X)
    for src in (stream.open_source(write_parquet_dir(tmp_path / "pq", X, y)), z,
                lambda: iter(np.array_split(X, 10))):
        est = SGDGaussianMixture(3, **kw).fit(src)
        assert abs(est.score(X_test) - mem.score(X_test)) < 0.03


def test_streamed_em_equals_in_memory_em():
    X, _ = data(3000, 25)
    start = random_params(np.random.default_rng(0), 3, 3)
    src = stream.ArraySource(X, chunk_rows=128)
    sdata = stream.StreamData(src, Standardizer(np.zeros(3), np.ones(3)))

    def stats_fn(p):
        return combine_stats(em_stats(c, p) for c in sdata.training_chunks())

    def loglik_fn(p):
        total = sum(float(log_prob(c, p).sum()) for _, c in src.chunks())
        return total / src.n_samples

    mine = em_loop(stats_fn, loglik_fn, start, max_iter=30, tol=1e-8)
    ref = fit_em(X, start, max_iter=30, tol=1e-8)
    assert mine.n_iter == ref.n_iter and mine.converged == ref.converged
    np.testing.assert_allclose(mine.log_likelihoods, ref.log_likelihoods, rtol=1e-10)
    for a, b in zip(mine.params, ref.params, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def test_stream_em_solver(tmp_path):
    X, _ = data(4000, 26)
    np.save(tmp_path / "x.npy", X)
    mem = SGDGaussianMixture(3, solver="em", random_state=2).fit(X)
    est = SGDGaussianMixture(3, solver="em", random_state=2).fit(tmp_path / "x.npy")
    assert abs(est.score(X) - mem.score(X)) < 0.01
    assert est.history_["train_nll"][-1] == pytest.approx(-est.score(X), abs=0.01)


def test_partial_fit_feeds_a_live_stream_and_continues_a_stream_fit(tmp_path):
    X, _ = data(6000, 27)
    est = SGDGaussianMixture(3, random_state=0)
    scores = []
    for chunk in np.array_split(X, 6):          # chunks arriving one at a time
        est.partial_fit(chunk)
        scores.append(est.score(X))
    assert est.n_iter_ == 6 and scores[-1] > scores[0]
    np.save(tmp_path / "x.npy", X)
    fit = SGDGaussianMixture(3, random_state=0, max_epochs=3,
                             early_stopping=False).fit(tmp_path / "x.npy")
    count = fit._state.opt_state.count
    fit.partial_fit(X[:500])
    assert fit.n_iter_ == 4 and fit._state.opt_state.count > count
    src = stream.open_source(tmp_path / "x.npy", buffer_rows=2500)
    fit.partial_fit(src)                        # one call per block of buffer_rows rows
    assert fit.n_iter_ == 7


def test_fit_on_a_one_shot_iterator_makes_one_pass():
    X, _ = data(6000, 28)
    gen = (c for c in np.array_split(X, 12))
    est = SGDGaussianMixture(3, random_state=1).fit(stream.IterableSource(gen, buffer_rows=2000))
    assert est.n_iter_ == 3   # blocks of buffer_rows rows
    assert est.score(X) > -6.0
    again = SGDGaussianMixture(3, random_state=1).fit(iter(np.array_split(X, 12)))
    assert again.n_iter_ == 1


def test_warm_start_continues_on_a_stream_as_in_memory(tmp_path):
    X, _ = data(3000, 29)
    np.save(tmp_path / "x.npy", X)
    kw = {"random_state": 0, "max_epochs": 2, "early_stopping": False, "warm_start": True}
    est, mem = SGDGaussianMixture(3, **kw), SGDGaussianMixture(3, **kw)
    est.fit(tmp_path / "x.npy")
    mem.fit(X)
    first = est.means_.copy()
    est.fit(tmp_path / "x.npy")          # max_epochs more epochs, from the saved state
    mem.fit(X)
    assert est.n_iter_ == mem.n_iter_ == 2 and est.history_["epoch"] == [1, 2, 3, 4]
    assert not np.array_equal(first, est.means_)


def test_missing_values_stream_with_marginalize(tmp_path, fitted):
    X, _ = data(2000, 32)
    X[np.random.default_rng(0).random(X.shape) < 0.1] = np.nan
    X[np.isnan(X).all(axis=1), 0] = 0.0
    np.save(tmp_path / "x.npy", X)
    with pytest.raises(ValidationError, match="NaN"):
        SGDGaussianMixture(3).fit(tmp_path / "x.npy")
    est = SGDGaussianMixture(3, missing="marginalize", max_epochs=3, random_state=0,
                             early_stopping=False)
    est.fit(tmp_path / "x.npy")
    assert np.isfinite(est.lower_bound_)
    assert est.score(tmp_path / "x.npy") == pytest.approx(est.score(X), rel=1e-10)
    with pytest.raises(ValidationError, match="sample_weight"):
        est.fit(tmp_path / "x.npy", sample_weight=np.ones(2000))


def test_dask_array_without_a_client_is_streamed():
    da = pytest.importorskip("dask.array")
    X, _ = data(2000, 30)
    Xd = da.from_array(X, chunks=(300, 3))
    src = as_chunks(Xd)
    assert src.n_chunks == 7
    np.testing.assert_array_equal(rows_of(src), X)
    est = SGDGaussianMixture(3, random_state=0, max_epochs=3, early_stopping=False).fit(Xd)
    assert est.score(Xd) == pytest.approx(est.score(X), rel=1e-10)


# --------------------------------------------------------- memory and imports
def run_python(code: str, tmp_path=None, timeout=120) -> str:
    env = {"PYTHONPATH": SRC, "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                         text=True, timeout=timeout, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_peak_memory_does_not_grow_with_the_file(tmp_path):
    path = tmp_path / "big.npy"
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float64, shape=(3_000_000, 3))
    rng = np.random.default_rng(0)
    for i in range(0, 3_000_000, 500_000):
        out[i:i + 500_000] = rng.normal(size=(500_000, 3)) + (i // 500_000 % 3) * 4
    out.flush()
    del out
    code = f"""
    import warnings, numpy as np
    from mogsgd import SGDGaussianMixture, stream

    def rss_mb(field):
        for line in open("/proc/self/status"):
            if line.startswith(field):
                return int(line.split()[1]) / 1024

    SGDGaussianMixture(3, max_epochs=1).fit(np.zeros((100, 3)) + np.arange(100)[:, None])
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")                     # reset the peak (VmHWM) to the current RSS
    base = rss_mb("VmRSS")
    src = stream.open_source({str(path)!r}, chunk_rows=20_000, buffer_rows=200_000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = SGDGaussianMixture(3, batch_size=8192, max_epochs=1, random_state=0).fit(src)
    print(rss_mb("VmHWM") - base)
    """
    grew_mb = float(run_python(code, tmp_path).strip())
    print(f"peak RSS grew by {grew_mb:.1f} MB fitting a 72 MB file")
    # the file is 72 MB; buffer 4.8 MB + chunks 0.5 MB + validation 2.4 MB + init 0.5 MB
    assert grew_mb < 36, f"peak RSS grew by {grew_mb:.1f} MB"


def test_everything_else_works_without_dask_pyarrow_and_zarr(tmp_path):
    code = """
    import sys, importlib.abc
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] in ("dask", "distributed", "pyarrow", "zarr"):
                raise ImportError(f"blocked {name}")
    sys.meta_path.insert(0, Block())
    import numpy as np
    import mogsgd, mogsgd.stream, mogsgd.distributed
    from mogsgd import SGDGaussianMixture
    X = np.random.default_rng(0).normal(size=(500, 2))
    np.save("x.npy", X)
    est = SGDGaussianMixture(2, max_epochs=2, random_state=0).fit("x.npy")
    est.fit(X)
    assert mogsgd.distributed.get_client() is None
    try:
        mogsgd.stream.ParquetSource("x.npy")
    except ImportError as e:
        print(e)
    """
    out = run_python(code, tmp_path)
    assert "pip install mogsgd[parquet]" in out


def test_a_large_memmap_is_streamed_without_a_full_copy(tmp_path, monkeypatch):
    """A memory-mapped array larger than MEMMAP_STREAM_BYTES takes the streaming path: the
    fit's Python allocations (tracemalloc) do not grow with the file (fixed samples and
    buffers only), and stay far below the larger file's size."""
    import tracemalloc

    import mogsgd.data as data_module

    monkeypatch.setattr(data_module, "MEMMAP_STREAM_BYTES", 8 << 20)
    import mogsgd.chunks

    monkeypatch.setattr(mogsgd.chunks, "DEFAULT_BUFFER_BYTES", 2 << 20)
    rng = np.random.default_rng(0)
    warm = rng.normal(size=(5000, 2))
    SGDGaussianMixture(2, max_epochs=1, random_state=0).fit(warm).predict(warm)  # imports
    SGDGaussianMixture(2, max_epochs=1, random_state=0).fit(lambda: iter([warm]))
    peaks = []
    for n in (1_000_000, 3_000_000):
        X = np.concatenate([rng.normal(0, 1, (n // 2, 2)), rng.normal(4, 1, (n // 2, 2))])
        np.save(tmp_path / "big.npy", X)
        del X
        mm = np.load(tmp_path / "big.npy", mmap_mode="r")
        assert data_module.as_source(mm).kind == "stream"
        tracemalloc.start()
        try:
            est = SGDGaussianMixture(2, max_epochs=1, batch_size=4096, random_state=0).fit(mm)
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
        assert est.n_iter_ == 1 and np.isfinite(est.lower_bound_)
        labels = est.predict(mm)
        assert isinstance(labels, np.ndarray) and labels.shape == (n,)
        del mm, labels, est
    assert peaks[1] < 1.2 * peaks[0] + (1 << 20), peaks     # 3x the rows, same memory
    assert peaks[1] < 48_000_000 / 2, peaks                 # the 48 MB file is never copied


class RowReader:
    """An h5py-like dataset: ``shape``, ``dtype`` and slicing that reads the rows from a
    ``.npy`` file into fresh memory, with no buffer protocol (``np.asarray`` would read it
    whole)."""

    def __init__(self, path):
        mm = np.load(path, mmap_mode="r")
        self.path, self.shape, self.dtype, self.offset = path, mm.shape, mm.dtype, mm.offset
        del mm

    def __getitem__(self, index):
        if not isinstance(index, slice):
            return self[:][index]
        lo, hi, _ = index.indices(self.shape[0])
        width = self.shape[1] * self.dtype.itemsize
        with open(self.path, "rb") as fh:
            fh.seek(self.offset + lo * width)
            data = np.fromfile(fh, dtype=self.dtype, count=max(0, hi - lo) * self.shape[1])
        return data.reshape(-1, self.shape[1])

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self[:], dtype=dtype)


def test_an_h5py_like_dataset_is_streamed_above_the_size_and_read_below(tmp_path, monkeypatch):
    import mogsgd.data as data_module

    rng = np.random.default_rng(1)
    X = np.concatenate([rng.normal(0, 1, (3000, 2)), rng.normal(5, 1, (3000, 2))])
    np.save(tmp_path / "x.npy", X)
    reader = RowReader(tmp_path / "x.npy")
    assert data_module.as_source(reader).kind == "array"          # 96 kB: read whole
    monkeypatch.setattr(data_module, "MEMMAP_STREAM_BYTES", 50_000)
    assert data_module.as_source(reader).kind == "stream"
    streamed = SGDGaussianMixture(2, max_epochs=2, random_state=0).fit(reader)
    assert streamed.n_features_in_ == 2 and np.isfinite(streamed.score(reader))
    assert streamed.predict(reader).shape == (6000,)
    # in-memory arrays, data frames, lists and tensors-like objects are never streamed by size
    assert data_module.as_source(X).kind == "array"
    assert data_module.as_source(X.tolist()).kind == "array"


def _write_mixture_npy(path, n):
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float64, shape=(n, 3))
    rng = np.random.default_rng(0)
    for i in range(0, n, 500_000):
        m = min(n, i + 500_000) - i
        out[i:i + m] = rng.normal(size=(m, 3)) + (i // 500_000 % 3) * 4
    out.flush()
    del out


@pytest.mark.parametrize("kind", ["memmap", "h5py-like"])
def test_a_memory_mapped_fit_allocates_no_full_copy(tmp_path, kind):
    """Peak RSS of ``fit(np.load(path, mmap_mode="r"))`` (and of an h5py-like reader) above
    the process's baseline, in a fresh process, on a 96 MB file with 2 MiB buffers, after a
    warm-up fit of a 12 MB file of the same kind: far below the file's size (the pages of
    the map are released after each chunk)."""
    _write_mixture_npy(tmp_path / "small.npy", 500_000)
    _write_mixture_npy(tmp_path / "big.npy", 4_000_000)
    open_x = "np.load({!r}, mmap_mode='r')" if kind == "memmap" else "RowReader({!r})"
    small, big = (open_x.format(str(tmp_path / f)) for f in ("small.npy", "big.npy"))
    code = f"""
    import sys, warnings, numpy as np
    sys.path.insert(0, {str(Path(__file__).parent)!r})
    import mogsgd.chunks, mogsgd.data
    from mogsgd import SGDGaussianMixture
    from test_stream import RowReader

    mogsgd.data.MEMMAP_STREAM_BYTES = 8 << 20
    mogsgd.chunks.DEFAULT_BUFFER_BYTES = 2 << 20

    def rss_mb(field):
        for line in open("/proc/self/status"):
            if line.startswith(field):
                return int(line.split()[1]) / 1024

    def fit(X):
        assert mogsgd.data.as_source(X).kind == "stream"
        est = SGDGaussianMixture(3, batch_size=8192, max_epochs=1, random_state=0).fit(X)
        return est.score(X)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit({small})                         # imports, compiled kernels, allocator pools
        X = {big}
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")                     # reset the peak (VmHWM) to the current RSS
        base = rss_mb("VmRSS")
        score = fit(X)
    print(rss_mb("VmHWM") - base, score)
    """
    grew_mb, score = map(float, run_python(code, tmp_path, timeout=300).split())
    print(f"{kind}: peak RSS grew by {grew_mb:.1f} MB fitting a 96 MB file")
    assert np.isfinite(score)
    assert grew_mb < 32, f"peak RSS grew by {grew_mb:.1f} MB fitting a 96 MB file"
