"""Exit statuses of the real ``mogsgd`` command: 2 when the command must change (the
user's options), 3 when the files must (their content), one line on stderr either way."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import mogsgd
from mogsgd.errors import ColumnChoiceError, DataFileError, SettingsError, ValidationError

USAGE, DATA = 2, 3

CASES = [
    # the options themselves
    (["fit", "{d}", "-k", "0"], USAGE, "positive integer"),
    (["fit", "{d}", "--seed", "-1"], USAGE, "--seed must be a non-negative integer"),
    (["fit", "{d}", "--missing", "marginalize", "--covariance-type", "full"], USAGE,
     "--missing marginalize is not supported with --covariance-type full"),
    (["fit", "{d}", "--solver", "em", "--checkpoint", "{tmp}/c.ckpt"], USAGE,
     "--checkpoint and --resume work with --solver sgd or online_em"),
    (["select", "{d}", "--heldout-fraction", "1.5"], USAGE,
     "--heldout-fraction must be in [0, 1)"),
    (["sample", "{model}", "-n", "5", "--out", "{tmp}/s.xyz"], USAGE,
     "unknown data file suffix '.xyz'"),
    (["fit", "{d}", "--out", "{model}"], USAGE, "exists; pass --force"),
    (["fit", "{d}", "--warm-start", "{model}", "-k", "3", "--out", "{tmp}/w.json"], USAGE,
     "--warm-start continues with the model's settings, but -k 3 (the model has 2)"),
    # columns named in the options that the file does not have
    (["fit", "{d}", "--columns", "a,zz"], USAGE, "no column named 'zz'"),
    (["fit", "{d}", "--label-column", "7"], USAGE, "position 7 is out of range"),
    (["fit", "{d}", "--drop", "a,b"], USAGE, "has no feature columns left"),
    (["fit", "{d}", "--label-column", "a", "--columns", "a"], USAGE,
     "is the label column and cannot also be a feature"),
    (["fit", "{d}", "--weight-column", "nope"], USAGE, "no column 'nope' for --weight-column"),
    (["plot", "{d}", "--features", "zz", "--out", "{tmp}/f"], USAGE, "no column named 'zz'"),
    (["evaluate", "{model}", "{d}", "--columns", "zz"], USAGE, "no column named 'zz'"),
    # the files' content
    (["fit", "{tmp}/missing.csv"], DATA, "no such file"),
    (["fit", "{nan}"], DATA, "contains NaN (first at row 3, column 1)"),
    (["fit", "{d}", "-k", "200"], DATA, "at least 200 are needed"),
    (["fit", "{only_label}"], DATA, "has no feature columns left"),
    (["fit", "{d}", "--weight-column", "b"], DATA, "--weight-column must be non-negative"),
    (["predict", "{model}", "{nan}"], DATA, "contains NaN"),
    (["predict", "{model}", "{d}", "--columns", "a"], DATA, "lacks the column(s) 'b'"),
    (["evaluate", "{d}", "{d}"], DATA, "model"),
    (["fit", "{d}", "--resume", "{model}", "--out", "{tmp}/r.json"], DATA,
     "is a mogsgd model file, not a checkpoint file; load it with mogsgd.model_io.load_model,"
     " or continue training it with --warm-start"),
    (["fit", "{d}", "--out", "{tmp}/no/such/dir/m.json"], DATA, "does not exist"),
]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("exit")
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(0.0, 1.0, (50, 2)), rng.normal(5.0, 1.0, (50, 2))])
    np.savetxt(tmp / "d.csv", X, delimiter=",", header="a,b", comments="")
    X[3, 1] = np.nan
    np.savetxt(tmp / "nan.csv", X, delimiter=",", header="a,b", comments="")
    (tmp / "only_label.csv").write_text("label\n0\n1\n")
    model = tmp / "m.json"
    assert _mogsgd("fit", tmp / "d.csv", "-k", 2, "--solver", "em", "--out", model,
                   "-q").returncode == 0
    return {"d": tmp / "d.csv", "nan": tmp / "nan.csv", "only_label": tmp / "only_label.csv",
            "model": model, "tmp": tmp}


def _mogsgd(*argv):
    src = str(Path(mogsgd.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": src, "MPLBACKEND": "Agg"}
    return subprocess.run([sys.executable, "-m", "mogsgd", *map(str, argv)], env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("argv, status, needle", CASES,
                         ids=[" ".join(c[0][:1] + c[0][2:4]) for c in CASES])
def test_exit_status_says_whether_the_command_or_the_files_must_change(files, argv, status,
                                                                       needle):
    run = _mogsgd(*[a.format(**files) for a in argv])
    errors = [line for line in run.stderr.splitlines() if ": error: " in line]
    assert run.returncode == status, run.stderr
    assert len(errors) == 1 and "Traceback" not in run.stderr, run.stderr
    assert run.stderr.strip().splitlines()[-1] == errors[0]     # notes before it, if any
    assert errors[0].startswith(f"mogsgd {argv[0]}: error: "), errors[0]
    assert needle in errors[0], errors[0]


def test_settings_errors_are_validation_errors_and_column_choices_data_file_errors():
    from mogsgd.settings import fit_settings

    assert issubclass(SettingsError, ValidationError) and issubclass(SettingsError, ValueError)
    assert issubclass(ColumnChoiceError, SettingsError)
    assert issubclass(ColumnChoiceError, DataFileError)
    from mogsgd import SGDGaussianMixture

    params = SGDGaussianMixture(2, missing="marginalize", covariance_type="full").get_params()
    with pytest.raises(SettingsError, match="missing='marginalize' is not supported"):
        fit_settings(params)


def test_warm_start_of_a_model_fitted_by_batch_em_continues_it(files):
    run = _mogsgd("fit", files["d"], "--warm-start", files["model"], "--out",
                  files["tmp"] / "warm.json", "-q")
    assert run.returncode == 0, run.stderr
    assert not list(files["tmp"].glob("warm.json.checkpoint"))


_COMMAND = """
import sys
from mogsgd.cli import main
status = main(sys.argv[1:])
print({"status": status, "sklearn": "sklearn" in sys.modules})
"""


@pytest.mark.parametrize("argv", [["predict", "{model}", "{d}"],
                                  ["evaluate", "{model}", "{d}"],
                                  ["sample", "{model}", "-n", "5", "--out", "{tmp}/s5.csv"]])
def test_commands_on_a_saved_model_import_no_scikit_learn(files, argv):
    """Model files load as :class:`mogsgd.mixture.SGDMixture` on the command line (importing
    scikit-learn takes seconds; ``mogsgd plot --model`` spent a fifth of its time there)."""
    argv = [a.format(**files) for a in argv]
    out = subprocess.run([sys.executable, "-c", _COMMAND, *argv, "-q"], capture_output=True,
                         text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(Path(mogsgd.__file__).resolve()
                                                               .parents[1])})
    assert eval(out.stdout.strip().splitlines()[-1]) == {"status": 0, "sklearn": False}, \
        out.stderr
