"""Hostile files, special paths, far points and concurrent runs (issue #14): nothing hangs,
nothing crashes, nothing is lost.  Every test names the property it protects."""

import io
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

import mogsgd
from mogsgd import SGDGaussianMixture
from mogsgd.cli import main
from mogsgd.model_io import _checksum, load_model

SRC = str(Path(mogsgd.__file__).resolve().parents[1])
ENV = {**os.environ, "PYTHONPATH": SRC, "MPLBACKEND": "Agg"}


def cli(*argv, timeout=90, **kwargs):
    """The real command line in a subprocess (a hang fails the test instead of blocking it)."""
    return subprocess.run([sys.executable, "-m", "mogsgd", *map(str, argv)], env=ENV,
                          capture_output=True, text=True, timeout=timeout, **kwargs)


def run(capsys, *argv):
    """The command line in-process: (exit status, stdout, stderr)."""
    capsys.readouterr()
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def assert_one_line_error(status, err, *needles):
    assert status in (2, 3), err   # a usage error or a data/file error (tests/test_cli.py)
    lines = err.strip().splitlines()
    errors = [line for line in lines if ": error: " in line]
    assert len(errors) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in errors[0], err


@pytest.fixture
def data(tmp_path):
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(-4, 1, (150, 2)), rng.normal(4, 1, (150, 2))])
    path = tmp_path / "data.npy"
    np.save(path, X)
    return path


@pytest.fixture
def model(tmp_path, data, capsys):
    path = tmp_path / "model.json"
    assert run(capsys, "fit", data, "-k", 2, "--epochs", 5, "--out", path, "-q")[0] == 0
    return path


# ------------------------------------------------------------ 1. special files
@pytest.mark.parametrize("argv", [
    ["evaluate", "{fifo_json}", "{data}"],
    ["predict", "{fifo_json}", "{data}"],
    ["fit", "{data}", "--resume", "{fifo_json}", "--out", "{out}"],
    ["fit", "{fifo_parquet}", "--out", "{out}"],
    ["fit", "{fifo_parquet}", "--stream", "always", "--out", "{out}"],
    ["evaluate", "/dev/zero", "{data}"],
    ["fit", "{data}", "--warm-start", "/dev/zero", "--out", "{out}"],
])
def test_special_files_are_refused_at_once(tmp_path, data, argv):
    os.mkfifo(tmp_path / "m.json")
    os.mkfifo(tmp_path / "d.parquet")
    names = {"fifo_json": tmp_path / "m.json", "fifo_parquet": tmp_path / "d.parquet",
             "data": data, "out": tmp_path / "out.json"}
    t0 = time.monotonic()
    result = cli(*[a.format(**names) for a in argv], timeout=60)
    assert time.monotonic() - t0 < 60
    assert_one_line_error(result.returncode, result.stderr, "not a regular file")


def test_oversized_model_file_is_refused_before_it_is_read(tmp_path, data, capsys):
    big = tmp_path / "big.json"
    with open(big, "wb") as fh:
        fh.truncate((1 << 30) + 1)  # sparse: over the 1 GiB cap without using the disk
    t0 = time.monotonic()
    assert_one_line_error(*run(capsys, "evaluate", big, data)[::2], "over the limit")
    assert time.monotonic() - t0 < 10


# --------------------------------------------------------------- 2. deep JSON
DEEP = "[" * 100_000 + "]" * 100_000


def test_deeply_nested_model_and_checkpoint_files_are_refused(tmp_path, data, capsys):
    for kind in ("model", "checkpoint"):
        path = tmp_path / f"deep.{kind}"
        path.write_text(f'{{"format": "mogsgd-{kind}", "body": {DEEP}}}')
        argv = (["evaluate", path, data] if kind == "model"
                else ["fit", data, "--resume", path, "--out", tmp_path / "o.json"])
        assert_one_line_error(*run(capsys, *argv)[::2], "nests")


def test_deeply_nested_parquet_metadata_is_refused(tmp_path, capsys):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    table = pa.table({"x0": np.arange(20.0)}).replace_schema_metadata({b"mogsgd": DEEP})
    pq.write_table(table, tmp_path / "d.parquet")
    assert_one_line_error(*run(capsys, "fit", tmp_path / "d.parquet", "-k", 1,
                               "--out", tmp_path / "o.json")[::2], "nests")


# ---------------------------------------------------------- 3. forged headers
def forged_npy(shape=(10**12, 20)) -> bytes:
    from numpy.lib import format as npformat

    buf = io.BytesIO()
    npformat.write_array_header_1_0(buf, {"descr": "<f8", "fortran_order": False,
                                          "shape": shape})
    return buf.getvalue() + np.zeros(60).tobytes()


@pytest.mark.parametrize("stream", ["never", "always"])
def test_npy_header_claiming_a_huge_shape_is_refused(tmp_path, capsys, stream):
    (tmp_path / "d.npy").write_bytes(forged_npy())
    assert_one_line_error(*run(capsys, "fit", tmp_path / "d.npy", "--stream", stream,
                               "--out", tmp_path / "o.json")[::2], "header claims")


def test_npz_member_claiming_a_huge_shape_is_refused(tmp_path, capsys):
    with zipfile.ZipFile(tmp_path / "d.npz", "w") as z:
        z.writestr("X.npy", forged_npy())
    assert_one_line_error(*run(capsys, "fit", tmp_path / "d.npz",
                               "--out", tmp_path / "o.json")[::2], "header claims")


# ------------------------------------------------------------------ 4. 1-D Zarr
def test_one_dimensional_zarr_array_is_refused(tmp_path, capsys):
    zarr = pytest.importorskip("zarr")
    z = zarr.open(str(tmp_path / "d.zarr"), mode="w", shape=(100,), dtype="f8")
    z[:] = 1.0
    assert_one_line_error(*run(capsys, "fit", tmp_path / "d.zarr", "--out",
                               tmp_path / "o.json")[::2], "shape (100,)")


# ------------------------------------------------------ 5. a model saved for CUDA
@pytest.fixture
def cuda_model(tmp_path, model):
    est = load_model(model)
    est.device = "cuda"
    path = tmp_path / "cuda.json"
    est.save(path)
    return path


def test_model_saved_for_cuda_scores_on_the_cpu_without_a_gpu(cuda_model, model, data,
                                                               capsys):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the model runs there")
    status, out, err = run(capsys, "predict", cuda_model, data, "--proba")
    assert status == 0, err
    assert err.count("device='cuda'") == 1 and "NumPy" in err  # says so, once
    assert out == run(capsys, "predict", model, data, "--proba")[1]


BLOCK_TORCH = """
import importlib.abc, sys

class NoTorch(importlib.abc.MetaPathFinder):  # import torch raises, as without the extra
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] == "torch":
            raise ImportError(f"{name} is blocked")

sys.meta_path.insert(0, NoTorch())
from mogsgd.cli import main
raise SystemExit(main(sys.argv[1:]))
"""


def test_model_saved_for_cuda_scores_without_torch_installed(cuda_model, data):
    result = subprocess.run([sys.executable, "-c", BLOCK_TORCH, "evaluate", str(cuda_model),
                             str(data), "--json"], env=ENV, capture_output=True, text=True,
                            timeout=90)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and result.stderr.count("device='cuda'") == 1
    assert json.loads(result.stdout)["n_samples"] == 300


# ------------------------------------------------------ 6. decoded model state
def tamper(path: Path, edit) -> None:
    doc = json.loads(path.read_text())
    edit(doc["body"]["fitted"])
    doc["checksum"] = _checksum(doc)  # a forger recomputes it: the checksum is no signature
    path.write_text(json.dumps(doc))


def _means_as_huge_ints(f):
    means = f["params_"]["fields"]["means"]
    means.update({"__ndarray__": "<i8", "data": [10**30] * len(means["data"])})


def _negative_scale(f):
    f["scaler_scale"]["data"] = [(-1.0).hex()] * len(f["scaler_scale"]["data"])


def _zero_variance(f):
    f["params_"]["fields"]["log_sigma"]["data"][0] = (-1000.0).hex()


def _zero_variance_std(f):
    f["params_std"]["fields"]["log_sigma"]["data"][0] = (-1000.0).hex()


def _history_five(f):
    f["history_"] = 5


@pytest.mark.parametrize("edit, argv, field", [
    (_means_as_huge_ints, ["evaluate", "{model}", "{data}"], "params_"),
    (_history_five, ["plot", "{data}", "--model", "{model}", "--out", "{figs}"], "history_"),
    (_negative_scale, ["fit", "{data}", "--warm-start", "{model}", "--out", "{out}"],
     "scaler_scale"),
    (_zero_variance, ["predict", "{model}", "{data}", "--proba"], "params_.log_sigma"),
    (_zero_variance_std, ["predict", "{model}", "{data}", "--proba"], "variance is 0"),
])
def test_tampered_model_state_is_refused_naming_the_field(tmp_path, data, model, capsys,
                                                         edit, argv, field):
    tamper(model, edit)
    names = {"model": model, "data": data, "figs": tmp_path / "figs",
             "out": tmp_path / "o.json"}
    status, out, err = run(capsys, *[a.format(**names) for a in argv])
    assert_one_line_error(status, err, field)
    assert "nan" not in out.lower()


# ------------------------------------------------- 7. failed fit, checkpoint
def test_failed_fit_removes_its_checkpoint_so_a_rerun_works(tmp_path, data, capsys):
    out = tmp_path / "m.json"
    status, _, err = run(capsys, "fit", data, "--lr", "1e10", "--epochs", 5, "--out", out,
                         "-q")
    assert_one_line_error(status, err, "diverged")
    assert not out.exists() and not (tmp_path / "m.json.checkpoint").exists()
    assert run(capsys, "fit", data, "--epochs", 5, "--out", out, "-q")[0] == 0


def test_force_replaces_a_stale_automatic_checkpoint(tmp_path, data, capsys):
    out = tmp_path / "m.json"
    (tmp_path / "m.json.checkpoint").write_text('{"format": "mogsgd-checkpoint"}')
    status, _, err = run(capsys, "fit", data, "--epochs", 3, "--out", out, "-q")
    assert_one_line_error(status, err, "--force")
    assert run(capsys, "fit", data, "--epochs", 3, "--out", out, "-q", "--force")[0] == 0
    assert out.exists() and not (tmp_path / "m.json.checkpoint").exists()


# ---------------------------------------------------------------- 8. locking
HOLD = """
import sys, time
from mogsgd._files import lock_paths
with lock_paths(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(60)
"""


@pytest.mark.parametrize("which", ["out", "checkpoint"])
def test_second_fit_on_a_locked_path_is_refused_before_training(tmp_path, data, capsys,
                                                                which):
    out = tmp_path / "m.json"
    target = out if which == "out" else tmp_path / "shared.ckpt"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(target)], env=ENV,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        t0 = time.monotonic()
        status, _, err = run(capsys, "fit", data, "--epochs", 200, "--out", out,
                             "--checkpoint", tmp_path / "shared.ckpt", "-q")
        assert time.monotonic() - t0 < 5  # refused at the start, not after training
        assert_one_line_error(status, err, "in use by another", f"process {holder.pid}")
        assert not out.exists()
    finally:
        holder.kill()
        holder.wait()
    assert run(capsys, "fit", data, "--epochs", 3, "--out", out, "-q")[0] == 0


def test_checkpoint_lock_is_reentrant_in_one_process(tmp_path):
    from mogsgd.checkpoint import locked

    with locked(tmp_path / "c.ckpt"), locked(tmp_path / "c.ckpt"):
        pass
    assert list(tmp_path.iterdir()) == []  # the lock file is gone after release


# ------------------------------------------------------- 9. resume command
def interrupt_at(monkeypatch, epoch: int) -> None:
    """Make the next in-process fit press Ctrl-C after ``epoch`` (the progress callback)."""
    from mogsgd import cli as cli_module

    original = cli_module._Progress.__call__

    def interrupt(self, state):
        original(self, state)
        if state.epoch == epoch:
            raise KeyboardInterrupt

    monkeypatch.setattr(cli_module._Progress, "__call__", interrupt)


def test_printed_resume_command_runs_as_printed(tmp_path, capsys, monkeypatch):
    folder = tmp_path / "my data ($x)"
    folder.mkdir()
    rng = np.random.default_rng(1)
    X = np.concatenate([rng.normal(-3, 1, (100, 2)), rng.normal(3, 1, (100, 2))])
    rows = "\n".join(f"{a!r},{b!r},{int(a > 0)}" for a, b in X.tolist())
    (folder / "d.csv").write_text("a,b,cls\n" + rows + "\n")
    out = folder / "model 'one'.json"
    interrupt_at(monkeypatch, 2)
    status, _, err = run(capsys, "fit", folder / "d.csv", "--label-column", "cls", "-k", 2,
                         "--epochs", 6, "--no-early-stopping", "--out", out)
    assert status == 130, err
    command = re.search(r"continue with: (.*)", err).group(1)
    argv = shlex.split(command)
    assert argv[:2] == ["mogsgd", "fit"] and "--label-column" in argv
    result = cli(*argv[1:])
    assert result.returncode == 0, result.stderr
    assert load_model(out).n_features_in_ == 2


def test_sigterm_saves_the_checkpoint_like_ctrl_c(tmp_path):
    rng = np.random.default_rng(2)
    np.save(tmp_path / "d.npy", rng.normal(size=(4000, 2)))
    proc = subprocess.Popen([sys.executable, "-m", "mogsgd", "fit", str(tmp_path / "d.npy"),
                             "--epochs", "100000", "--no-early-stopping", "--batch-size", "8",
                             "--checkpoint-every", "1", "--out", str(tmp_path / "m.json"),
                             "-q"], env=ENV, stderr=subprocess.PIPE, text=True)
    ckpt = tmp_path / "m.json.checkpoint"
    deadline = time.monotonic() + 60
    while not ckpt.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "terminated after epoch" in err and "--resume" in err
    assert ckpt.exists()


def test_second_signal_while_saving_is_ignored():
    from mogsgd.cli_safety import Interrupts

    with Interrupts("test") as guard:
        with guard.saving():
            os.kill(os.getpid(), signal.SIGINT)  # would abort the write: ignored
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
        os.kill(os.getpid(), signal.SIGINT)  # a second signal: ignored
    assert guard.signum == signal.SIGTERM


# ------------------------------------------------------- 10. far legal data
@pytest.mark.parametrize("method", ["em", "online_em"])
@pytest.mark.parametrize("far", [1e155, 1.7e308])
def test_em_fits_data_with_one_point_near_the_float_range(tmp_path, capsys, method, far):
    X = np.random.default_rng(0).normal(size=(200, 2))
    X[0, 0] = far
    np.save(tmp_path / "d.npy", X)
    status, _, err = run(capsys, "fit", tmp_path / "d.npy", "-k", 2, "--method", method,
                         "--epochs", 5, "--out", tmp_path / "m.json", "-q")
    assert status == 0, err
    assert "variances must be finite" not in err


@pytest.mark.parametrize("case", ["tiny_csv", "negative_max"])
def test_far_legal_data_beyond_init_and_em(tmp_path, capsys, case):
    if case == "tiny_csv":
        path = tmp_path / "d.csv"
        path.write_text("x\n1\n6.2e-183\n0\n0\n0\n")
        argv = ["-k", 1, "--batch-size", 1]
    else:
        X = 0.5 * np.random.default_rng(0).normal(size=(200, 2))  # robust scale < 1
        X[0, 0] = -1.7e308
        path = tmp_path / "d.npy"
        np.save(path, X)
        argv = ["-k", 2, "--solver", "em"]
    status, _, err = run(capsys, "fit", path, *argv, "--out", tmp_path / "m.json", "-q")
    assert status == 0, err


# ------------------------------------------------------- 12. errors and bugs
def test_every_user_failure_is_one_line_and_a_bug_shows_its_traceback(data, model, capsys,
                                                                      monkeypatch):
    from mogsgd import cli as cli_module

    def out_of_memory(args):
        raise MemoryError

    monkeypatch.setattr(cli_module, "cmd_evaluate", out_of_memory)
    monkeypatch.setattr(cli_module.build_parser, "__defaults__", None, raising=False)
    parser = cli_module.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    sub.choices["evaluate"].set_defaults(func=out_of_memory)
    monkeypatch.setattr(cli_module, "build_parser", lambda: parser)
    assert_one_line_error(*run(capsys, "evaluate", model, data)[::2], "out of memory")

    def bug(args):
        return {}["missing"]

    sub.choices["evaluate"].set_defaults(func=bug)
    status, _, err = run(capsys, "evaluate", model, data)
    assert status == 1 and "Traceback" in err and "KeyError" in err
    assert "this is a bug in mogsgd" in err


# ----------------------------------------------------------- minor findings
def test_diverged_fit_is_not_saved(tmp_path, data, capsys):
    status, _, err = run(capsys, "fit", data, "--lr", "1e10", "--epochs", 5,
                         "--out", tmp_path / "m.json")
    assert_one_line_error(status, err, "diverged", "--lr")
    assert "the model itself is fine" not in err and not (tmp_path / "m.json").exists()


def test_json_output_never_holds_nan_or_infinity(capsys):
    from mogsgd.cli import _emit_json

    _emit_json({"a": float("nan"), "b": np.array([np.inf, 1.0]), "c": np.float32("-inf")})
    text = capsys.readouterr().out
    assert json.loads(text, parse_constant=lambda c: pytest.fail(c)) == {
        "a": None, "b": [None, 1.0], "c": None}


def test_stale_temporary_files_of_dead_processes_are_cleaned(tmp_path, data, capsys):
    stale = tmp_path / ".m.json.999999999.0badc0de.partial.json"
    stale.write_text("left by kill -9")
    live = tmp_path / f".m.json.{os.getpid()}.0badc0de.partial.json"
    live.write_text("being written")
    assert run(capsys, "fit", data, "--epochs", 3, "--out", tmp_path / "m.json", "-q")[0] == 0
    assert not stale.exists() and live.exists()


@pytest.mark.parametrize("flag", ["--out", "--checkpoint"])
def test_out_or_checkpoint_equal_to_the_data_file_is_refused(tmp_path, data, capsys, flag):
    before = data.read_bytes()
    argv = ["fit", data, "--epochs", 3, flag, data, "--force"]
    if flag == "--checkpoint":
        argv += ["--out", tmp_path / "m.json"]
    assert_one_line_error(*run(capsys, *argv)[::2], "is the data file")
    assert data.read_bytes() == before


def test_out_equal_to_the_checkpoint_is_refused(tmp_path, data, capsys):
    path = tmp_path / "same.json"
    assert_one_line_error(*run(capsys, "fit", data, "--out", path, "--checkpoint",
                               path)[::2], "also the checkpoint")


def test_file_names_near_name_max_can_be_written(tmp_path, data, capsys):
    out = tmp_path / ("m" * 245 + ".json")
    assert run(capsys, "fit", data, "--epochs", 3, "--out", out, "-q")[0] == 0
    assert load_model(out).n_components == 3
    assert [p.name for p in tmp_path.iterdir() if p.name != "data.npy"] == [out.name]


def test_non_parquet_files_in_a_data_folder_are_named(tmp_path, capsys):
    pytest.importorskip("pyarrow")
    from mogsgd.io import save_dataset

    folder = tmp_path / "parts"
    folder.mkdir()
    save_dataset(folder / "a.parquet", np.random.default_rng(0).normal(size=(50, 2)))
    (folder / "notes.txt").write_text("hello")
    status, _, err = run(capsys, "fit", folder, "-k", 1, "--epochs", 2,
                         "--out", tmp_path / "m.json", "-q")
    assert status == 0 and "notes.txt" in err and "not Parquet" in err


def test_bool_npy_is_refused_loaded_and_streamed(tmp_path, capsys):
    np.save(tmp_path / "b.npy", np.zeros((20, 2), dtype=bool))
    for stream in ("never", "always"):
        assert_one_line_error(*run(capsys, "fit", tmp_path / "b.npy", "--stream", stream,
                                   "--out", tmp_path / "m.json")[::2], "dtype bool")


def test_resume_refuses_other_settings(tmp_path, data, capsys, monkeypatch):
    interrupt_at(monkeypatch, 1)
    out = tmp_path / "m.json"
    assert run(capsys, "fit", data, "-k", 2, "--epochs", 5, "--out", out)[0] == 130
    monkeypatch.undo()
    ckpt = tmp_path / "m.json.checkpoint"
    status, _, err = run(capsys, "fit", data, "--resume", ckpt, "-k", 4, "--lr", 0.5,
                         "--out", out)
    assert_one_line_error(status, err, "-k 4", "--lr 0.5")
    assert run(capsys, "fit", data, "--resume", ckpt, "-k", 2, "--out", out, "-q")[0] == 0


def test_loaded_model_does_not_reuse_the_checkpoint_path(tmp_path):
    X = np.random.default_rng(0).normal(size=(100, 2))
    est = SGDGaussianMixture(2, max_epochs=3, checkpoint_path=tmp_path / "c.ckpt")
    est.fit(X)   # (no budget warning: the refinement ends it on EM's fixed point)
    assert est.converged_
    est.save(tmp_path / "m.json")
    assert load_model(tmp_path / "m.json").checkpoint_path is None


def test_unwritable_figures_target_is_refused_before_training(tmp_path, data, capsys):
    (tmp_path / "figs").write_text("a file")
    status, _, err = run(capsys, "fit", data, "--figures", tmp_path / "figs",
                         "--out", tmp_path / "m.json")
    assert_one_line_error(status, err, "--figures")
    assert not (tmp_path / "m.json").exists()


def test_checkpoint_with_em_is_refused(tmp_path, data, capsys):
    assert_one_line_error(*run(capsys, "fit", data, "--method", "em", "--checkpoint",
                               tmp_path / "c.ckpt", "--out", tmp_path / "m.json")[::2],
                          "--solver sgd or online_em")


def test_numpy_runtime_warnings_do_not_reach_the_user(tmp_path, capsys):
    X = np.random.default_rng(0).normal(size=(200, 2))
    X[0, 0] = 1e155
    np.save(tmp_path / "d.npy", X)
    status, _, err = run(capsys, "fit", tmp_path / "d.npy", "-k", 2, "--epochs", 3,
                         "--out", tmp_path / "m.json", "-q")
    assert "encountered in" not in err and "RuntimeWarning" not in err
