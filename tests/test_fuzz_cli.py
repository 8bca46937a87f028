"""Fuzzing the command line with a seeded corpus: mutated model files, mutated data files
and random argument lists.  Every run must end within its time limit with exit 0, or with
exit 2 and one error line; never a traceback, a hang, or NaN / Infinity in the output.

The corpus is drawn from fixed seeds, so a failure reproduces exactly: the assertion
message holds the command line (its files are in the test's tmp_path)."""

import copy
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import mogsgd
from mogsgd.cli import main
from mogsgd.model_io import _checksum

SRC = str(Path(mogsgd.__file__).resolve().parents[1])
LIMIT_S = 30
NUMBER = re.compile(r"(?<![A-Za-z_])(nan|NaN|-?inf|-?Infinity)(?![A-Za-z_])")


class Hang(BaseException):
    """A run went past its time limit (BaseException: the CLI must not catch it)."""


def _alarm(signum, frame):
    raise Hang


def check_run(capsys, argv: list) -> int:
    """Run ``mogsgd argv`` in-process and assert the contract; returns the exit status."""
    argv = [str(a) for a in argv]
    capsys.readouterr()
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, LIMIT_S)
    try:
        status = main(argv)
    except SystemExit as exc:  # argparse's own exit (usage errors, --help)
        status = exc.code
    except Hang:
        pytest.fail(f"mogsgd {' '.join(argv)}: no answer within {LIMIT_S} s")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    out, err = capsys.readouterr()
    check_output(argv, status, out, err)
    return status


def check_output(argv, status, out: str, err: str) -> None:
    where = f"mogsgd {' '.join(map(str, argv))}\n--- stdout\n{out[-2000:]}\n--- stderr\n{err}"
    assert "Traceback" not in err and "this is a bug" not in err, where
    assert status in (0, 2, 3), where       # done, usage error, data/file error
    if status in (2, 3):
        errors = [line for line in err.splitlines() if "error:" in line]
        assert len(errors) == 1, where
    assert not NUMBER.search(out), where
    if status == 0 and "--json" in argv:
        json.loads(out, parse_constant=lambda c: pytest.fail(f"{c} in JSON: {where}"))


# ------------------------------------------------------------------ the corpus
@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A small data set and a model fitted to it."""
    folder = tmp_path_factory.mktemp("fuzz-base")
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(-3, 1, (60, 2)), rng.normal(3, 1, (60, 2))])
    np.save(folder / "data.npy", X)
    assert main(["fit", str(folder / "data.npy"), "-k", "2", "--epochs", "3", "--out",
                 str(folder / "model.json"), "-q"]) == 0
    return folder


LEAVES = [None, True, -1, 0, 10**30, -(10**30), 2**64, 1e308, "nan", "inf", "-0x1.f4p+9",
          "0x1.0p+1023", "", "x" * 300, [], {}, [[[]]], {"__float__": "nan:7ff8"},
          {"__ndarray__": "<i8", "shape": [2, 2], "data": [10**30] * 4},
          {"__ndarray__": "<f8", "shape": [10**9, 10**9], "data": []},
          {"__type__": "MixtureParams", "fields": {}}, {"__tuple__": 5}, {"__dtype__": "O"},
          {"__path__": "/dev/zero"}]


def _leaves(obj, path=()):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _leaves(v, path + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _leaves(v, path + (i,))
    yield path


def _set(obj, path, value):
    for key in path[:-1]:
        obj = obj[key]
    obj[path[-1]] = value


def mutate_model(doc: dict, rng: np.random.Generator) -> dict:
    """A copy of the model document with 1-3 values replaced, checksum recomputed (so the
    mutation reaches the decoder and the state checks, not just the checksum)."""
    doc = copy.deepcopy(doc)
    body_paths = [p for p in _leaves(doc["body"]) if p]
    for _ in range(rng.integers(1, 4)):
        path = body_paths[rng.integers(len(body_paths))]
        value = LEAVES[rng.integers(len(LEAVES))]
        try:
            _set(doc["body"], path, copy.deepcopy(value))
        except (KeyError, IndexError, TypeError):
            pass
        body_paths = [p for p in _leaves(doc["body"]) if p]
    doc["checksum"] = _checksum(doc)
    return doc


def mutate_bytes(raw: bytes, rng: np.random.Generator) -> bytes:
    data = bytearray(raw)
    kind = rng.integers(4)
    if kind == 0 and data:  # flip bytes
        for i in rng.integers(0, len(data), size=rng.integers(1, 8)):
            data[i] = rng.integers(256)
    elif kind == 1:  # truncate
        data = data[: rng.integers(0, len(data) + 1)]
    elif kind == 2:  # insert junk
        i = rng.integers(0, len(data) + 1)
        data[i:i] = rng.integers(0, 256, size=rng.integers(1, 64)).astype(np.uint8).tobytes()
    else:  # duplicate a slice
        i, j = sorted(rng.integers(0, len(data) + 1, size=2))
        data[j:j] = data[i:j]
    return bytes(data)


CSV_TOKENS = ["1", "-2.5", "0", "1e308", "-1e308", "6.2e-183", "nan", "", "NA", "inf", "abc",
              "1,2", "0x10", "9" * 400, "1e-320", " 3 ", '"4"', "1e155"]


def random_csv(rng: np.random.Generator) -> str:
    n, d = rng.integers(0, 12), rng.integers(1, 4)
    header = ",".join(["x", "y", "label", "w", "x"][:d]) if rng.random() < 0.7 else None
    rows = [",".join(CSV_TOKENS[rng.integers(len(CSV_TOKENS))] if rng.random() < 0.3
                     else repr(float(rng.normal(0, 10 ** rng.integers(0, 4))))
                     for _ in range(d)) for _ in range(n)]
    return "\n".join(([header] if header else []) + rows) + "\n"


def random_array(rng: np.random.Generator) -> np.ndarray:
    shape = [(rng.integers(0, 40), rng.integers(1, 4)), (rng.integers(0, 10),),
             (2, 2, 2), ()][rng.choice(4, p=[0.7, 0.1, 0.1, 0.1])]
    dtype = [np.float64, np.float32, np.int64, bool, np.complex64][
        rng.choice(5, p=[0.5, 0.2, 0.1, 0.1, 0.1])]
    X = (rng.normal(size=shape) * 10.0 ** rng.integers(0, 300)).astype(dtype)
    if X.size and X.dtype.kind == "f" and rng.random() < 0.4:
        X.flat[rng.integers(X.size)] = [np.nan, np.inf, 1.7e308, -1.7e308, 1e-310][
            rng.integers(5)]
    return X


# ------------------------------------------------------------------- the tests
def test_fuzz_mutated_model_files(tmp_path, base, capsys):
    rng = np.random.default_rng(2026)
    doc = json.loads((base / "model.json").read_text())
    raw = (base / "model.json").read_bytes()
    data = base / "data.npy"
    for i in range(120):
        path = tmp_path / f"m{i}.json"
        if i % 3 == 0:
            path.write_bytes(mutate_bytes(raw, rng))
        else:
            path.write_text(json.dumps(mutate_model(doc, rng)))
        command = [["evaluate", path, data, "--json"], ["predict", path, data, "--proba"],
                   ["sample", path, "-n", 20, "--out", tmp_path / f"s{i}.csv"],
                   ["evaluate", path, data]][i % 4]
        if i % 15 == 7:
            command = ["fit", data, "--warm-start", path, "--epochs", 1, "-q",
                       "--out", tmp_path / f"w{i}.json"]
        check_run(capsys, command)


def test_fuzz_mutated_data_files(tmp_path, base, capsys):
    rng = np.random.default_rng(14)
    model = base / "model.json"
    npy_raw = (base / "data.npy").read_bytes()
    for i in range(110):
        kind = i % 4
        if kind == 0:
            path = tmp_path / f"d{i}.csv"
            path.write_text(random_csv(rng))
        elif kind == 1:
            path = tmp_path / f"d{i}.npy"
            np.save(path, random_array(rng))
        elif kind == 2:
            path = tmp_path / f"d{i}.npy"
            path.write_bytes(mutate_bytes(npy_raw, rng))
        else:
            path = tmp_path / f"d{i}.npz"
            np.savez(path, X=random_array(rng), y=rng.integers(0, 3, size=rng.integers(0, 5)))
            if rng.random() < 0.5:
                path.write_bytes(mutate_bytes(path.read_bytes(), rng))
        method = ["sgd", "em", "online_em"][i % 3]
        if i % 2 == 0:
            command = ["fit", path, "-k", int(rng.integers(1, 4)), "--method", method,
                       "--epochs", 2, "--batch-size", int(rng.integers(1, 64)), "--json",
                       "--out", tmp_path / f"m{i}.json"]
        else:
            command = [["evaluate", model, path, "--json"],
                       ["predict", model, path, "--proba"]][(i // 2) % 2]
        check_run(capsys, command)


def far_rows(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` two-column rows of every magnitude, 1e-320 to 1.7e308, either sign."""
    X = rng.normal(size=(n, 2))
    far = rng.random((n, 2)) < 0.3
    magnitude = 10.0 ** rng.uniform(-320, 308.2, size=(n, 2))
    return np.where(far, np.sign(X) * np.minimum(magnitude, 1.7e308), X)


def test_fuzz_far_rows(tmp_path, base, capsys):
    """Issue 14 item 11: rows far from the model, or data at extreme scales, are scored and
    fitted with finite numbers and strict JSON (eqs. 52-53)."""
    rng = np.random.default_rng(52)
    model = base / "model.json"
    for i in range(40):
        path = tmp_path / f"far{i}.npy"
        X = far_rows(rng, int(rng.integers(3, 40)))
        if i % 5 == 4:  # a whole data set at one extreme scale
            X = np.random.default_rng(i).normal(size=(60, 2)) * [1e-310, 1e300][i % 2]
        np.save(path, X)
        command = [["evaluate", model, path, "--json"], ["predict", model, path, "--proba"],
                   ["fit", path, "-k", 2, "--solver", ["sgd", "em", "online_em"][i % 3],
                    "--epochs", 2, "--json", "--out", tmp_path / f"m{i}.json"]][i % 3]
        status = check_run(capsys, command)
        if command[0] != "fit" or len(X) >= 4:
            assert status == 0, command


OPTIONS = {
    "-k": ["0", "1", "2", "-3", "1e3", "x", "100"],
    "--lr": ["0", "-1", "1e-300", "1e10", "nan", "inf", "0.1"],
    "--epochs": ["0", "1", "2", "-1", "a"],
    "--batch-size": ["0", "1", "7", "99999999"],
    "--method": ["sgd", "em", "online_em", "newton"],
    "--optimizer": ["sgd", "momentum", "nesterov", "adam", "lbfgs"],
    "--schedule": ["constant", "cosine", "inverse_time", "step"],
    "--n-init": ["1", "2", "0"],
    "--init": ["kmeans", "random_points", "kmeans++", "spectral"],
    "--seed": ["0", "-1", "99999999999999999999999", "x"],
    "--missing": ["error", "marginalize", "ignore"],
    "--label-column": ["auto", "label", "nope", ""],
    "--weight-column": ["w", "x0"],
    "--stream": ["auto", "never", "always"],
    "--checkpoint-every": ["1", "0"],
    "--patience": ["1", "0"],
}
FLAGS = ["--no-early-stopping", "--json", "-q", "--force"]


def test_fuzz_argument_lists(tmp_path, base, capsys):
    rng = np.random.default_rng(7)
    data = base / "data.npy"
    names = list(OPTIONS)
    for i in range(90):
        argv = ["fit", data, "--out", tmp_path / f"m{i}.json", "--epochs", 2]
        for name in rng.choice(names, size=rng.integers(1, 5), replace=False):
            values = OPTIONS[name]
            argv += [name, values[rng.integers(len(values))]]
        argv += [f for f in FLAGS if rng.random() < 0.3]
        if rng.random() < 0.15:
            argv += ["--checkpoint", [tmp_path / f"c{i}", data, tmp_path, "/dev/null"][
                rng.integers(4)]]
        if rng.random() < 0.1:
            argv += ["--resume", [base / "model.json", "/dev/zero", tmp_path / "nope"][
                rng.integers(3)]]
        check_run(capsys, argv)


@pytest.mark.parametrize("seed", range(4))
def test_fuzz_through_the_real_executable(tmp_path, base, seed):
    """A few cases end to end in a subprocess: the exit status and stderr of a real run."""
    rng = np.random.default_rng(100 + seed)
    doc = json.loads((base / "model.json").read_text())
    path = tmp_path / "m.json"
    path.write_text(json.dumps(mutate_model(doc, rng)))
    argv = [["evaluate", path, base / "data.npy", "--json"],
            ["predict", path, base / "data.npy"],
            ["fit", base / "data.npy", "--warm-start", path, "--epochs", 1, "--out",
             tmp_path / "o.json", "-q"],
            ["sample", path, "-n", 5, "--out", tmp_path / "s.npy"]][seed]
    env = {**os.environ, "PYTHONPATH": SRC, "MPLBACKEND": "Agg"}
    result = subprocess.run([sys.executable, "-m", "mogsgd", *map(str, argv)], env=env,
                            capture_output=True, text=True, timeout=LIMIT_S * 2)
    check_output(argv, result.returncode, result.stdout, result.stderr)
