"""The command line end to end in a temporary folder: every command, --help, --json, errors."""

import json
import subprocess
import sys

import numpy as np
import pytest

from mogsgd.cli import build_parser, main

COMMANDS = ["generate", "fit", "evaluate", "predict", "sample", "plot", "demo"]


def run(*argv):
    """Run the CLI in-process; returns (exit code, stdout, stderr) via capsys in callers."""
    return main([str(a) for a in argv])


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "data.npz"
    assert run("generate", "-n", 600, "-d", 2, "-k", 3, "--separation", 3, "--seed", 1,
               "--out", path, "-q") == 0
    return path


@pytest.fixture
def model(tmp_path, data):
    path = tmp_path / "model.json"
    assert run("fit", data, "-k", 3, "--epochs", 30, "--out", path, "-q") == 0
    return path


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "example" in out and f"mogsgd {command}" in out


def test_top_level_help_lists_commands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert all(c in out for c in COMMANDS)


def test_generate_writes_every_format(tmp_path, capsys):
    for suffix in ("npz", "npy", "csv", "parquet"):
        path = tmp_path / f"d.{suffix}"
        assert run("generate", "-n", 50, "--out", path, "--json") == 0
        summary = json.loads(capsys.readouterr().out)
        assert summary["n_samples"] == 50 and path.exists()


def test_generate_refuses_to_overwrite(tmp_path, capsys, data):
    assert run("generate", "--out", data) == 2
    err = capsys.readouterr().err
    assert "exists" in err and "--force" in err and "Traceback" not in err
    assert run("generate", "--out", data, "--force", "-q") == 0


def test_fit_json_summary_and_model(tmp_path, data, capsys):
    out = tmp_path / "m.json"
    assert run("fit", data, "-k", 3, "--epochs", 20, "--out", out, "--json") == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["epochs"] <= 20 and np.isfinite(summary["nll"])
    assert np.isclose(sum(summary["weights"]), 1.0)
    assert out.exists()


def test_fit_em_and_figures(tmp_path, data, capsys):
    out, figs = tmp_path / "em.json", tmp_path / "figs"
    assert run("fit", data, "--method", "em", "--out", out, "--figures", figs, "-q") == 0
    assert (figs / "density.png").exists() and (figs / "learning_curves.png").exists()


def test_fit_shows_a_progress_bar_on_a_terminal(tmp_path, data, capsys, monkeypatch):
    import mogsgd.cli

    monkeypatch.setattr(mogsgd.cli, "_is_terminal", lambda stream: True)
    assert run("fit", data, "--epochs", 5, "--no-early-stopping", "--out",
               tmp_path / "p.json") == 0
    err = capsys.readouterr().err
    assert "epoch" in err and "train_nll" in err


def test_evaluate_reports_labels_and_parameter_errors(model, data, capsys):
    assert run("evaluate", model, data, "--json") == 0
    result = json.loads(capsys.readouterr().out)
    assert result["accuracy"] > 0.95 and result["adjusted_rand_index"] > 0.9
    assert set(result["parameter_errors"]) == {"weights", "means", "sigmas"}
    assert np.isfinite(result["bic"]) and np.isfinite(result["aic"])


def test_predict_and_sample(tmp_path, model, data, capsys):
    labels = tmp_path / "labels.csv"
    assert run("predict", model, data, "--out", labels, "-q") == 0
    values = np.loadtxt(labels, delimiter=",", skiprows=1)
    assert values.shape == (600,) and set(np.unique(values)) <= {0, 1, 2}
    assert run("predict", model, data, "--proba") == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "p0,p1,p2" and len(lines) == 601
    samples = tmp_path / "s.npz"
    assert run("sample", model, "-n", 40, "--out", samples, "-q") == 0
    assert np.load(samples)["X"].shape == (40, 2)


def test_plot_data_and_model(tmp_path, model, data):
    folder = tmp_path / "plots"
    assert run("plot", data, "--model", model, "--out", folder, "-q") == 0
    assert {"data.png", "density.png", "predictions.png"} <= {p.name for p in folder.iterdir()}


@pytest.mark.parametrize("argv, needle, status", [
    (["fit", "missing.npz"], "missing.npz", 3),
    (["fit", "{data}", "-k", "0"], "positive integer", 2),
    (["fit", "{data}", "--lr", "-1"], "positive number", 2),
    (["fit", "{data}", "--optimizer", "rmsprop"], "invalid choice", 2),
    (["evaluate", "{data}", "{data}"], "model", 3),
    (["fit", "{nan}"], "NaN", 3),
])
def test_errors_are_one_line_without_traceback(tmp_path, data, capsys, argv, needle, status):
    nan = tmp_path / "nan.csv"
    nan.write_text("x0,x1\n1,2\nnan,3\n4,5\n")
    argv = [a.format(data=data, nan=nan) for a in argv]
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse errors exit with 2
        code = exc.code
    err = capsys.readouterr().err
    assert code == status       # 2: usage, 3: data or file
    assert needle in err and "Traceback" not in err


def test_model_with_wrong_feature_count_is_refused(tmp_path, model, capsys):
    other = tmp_path / "d3.npz"
    assert run("generate", "-n", 30, "-d", 3, "--out", other, "-q") == 0
    assert run("evaluate", model, other) == 3      # a data error
    err = capsys.readouterr().err
    assert "3" in err and "2" in err and "features" in err


def test_console_script_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "mogsgd", "--version"], capture_output=True,
                         text=True, check=True)
    assert out.stdout.startswith("mogsgd ")


def test_parser_builds():
    assert build_parser().prog == "mogsgd"


def test_select_prints_the_table_and_plots(tmp_path, capsys):
    data = tmp_path / "sel.npz"
    assert run("generate", "-n", 900, "--separation", 3, "--seed", 3, "--out", data, "-q") == 0
    assert run("select", data, "--k", "1..4", "--n-init", 1, "--plot", tmp_path / "sel",
               "--json", "-q") == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["k"] for r in out["rows"]] == [1, 2, 3, 4] and out["best"]["bic"] == 3
    assert (tmp_path / "sel.png").exists()


def test_fit_online_em(tmp_path, data, capsys):
    assert run("fit", data, "--method", "online_em", "--out", tmp_path / "o.json",
               "--json") == 0
    assert json.loads(capsys.readouterr().out)["method"] == "online_em"
    assert not (tmp_path / "o.json.checkpoint").exists()  # removed after success


def test_ctrl_c_saves_a_checkpoint_and_resume_finishes_exactly(tmp_path, data, capsys,
                                                                monkeypatch):
    from mogsgd import cli
    from mogsgd.model_io import load_model

    common = ["fit", data, "--epochs", 8, "--no-early-stopping", "--seed", 3]
    assert run(*common, "--out", tmp_path / "straight.json", "-q") == 0

    original = cli._Progress.__call__

    def interrupt_at_epoch_3(self, state):
        original(self, state)
        if state.epoch == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(cli._Progress, "__call__", interrupt_at_epoch_3)
    out = tmp_path / "m.json"
    assert run(*common, "--out", out) == 130
    err = capsys.readouterr().err
    ckpt = tmp_path / "m.json.checkpoint"
    assert "interrupted after epoch 3" in err and f"--resume {ckpt}" in err
    assert ckpt.exists() and not out.exists() and "Traceback" not in err
    monkeypatch.undo()
    assert run("fit", data, "--resume", ckpt, "--out", out, "-q") == 0
    assert not ckpt.exists()
    a, b = load_model(tmp_path / "straight.json"), load_model(out)
    assert np.array_equal(a.params_.ravel(), b.params_.ravel())
    assert a.n_iter_ == b.n_iter_ == 8


def test_fit_with_weights_column_and_missing_values(tmp_path, capsys):
    rng = np.random.default_rng(0)
    X = np.r_[rng.normal(size=(150, 2)), rng.normal(size=(150, 2)) + 6]
    X[rng.random(X.shape) < 0.1] = np.nan
    X = X[~np.isnan(X).all(axis=1)]
    w = rng.integers(1, 3, size=len(X))
    path = tmp_path / "w.csv"
    lines = ["x0,x1,w"] + [",".join("" if np.isnan(v) else repr(float(v)) for v in row) + f",{wi}"
                           for row, wi in zip(X, w, strict=True)]
    path.write_text("\n".join(lines) + "\n")
    assert run("fit", path, "-k", 2, "--out", tmp_path / "m.json") == 3    # NaN: data
    err = capsys.readouterr().err
    assert "fit with --missing marginalize" in err and "missing='" not in err  # the flag
    assert run("fit", path, "-k", 2, "--missing", "marginalize", "--weight-column", "w",
               "--out", tmp_path / "m.json", "--json") == 0
    summary = json.loads(capsys.readouterr().out)
    assert len(summary["means"][0]) == 2 and np.isfinite(summary["nll"])
    assert run("fit", path, "--weight-column", "nope", "--missing", "marginalize",
               "--out", tmp_path / "n.json") == 2        # the option names no column: usage
    assert "no column 'nope'" in capsys.readouterr().err


def test_fit_warm_start_continues_a_saved_model(tmp_path, data, capsys):
    # a model fitted without early stopping (a warm start continues the saved fit's
    # early-stopping counter: a fit that stopped would stop again after one epoch)
    model = tmp_path / "model.json"
    assert run("fit", data, "-k", 3, "--epochs", 30, "--no-early-stopping", "--out", model,
               "-q") == 0
    out = tmp_path / "more.json"
    assert run("fit", data, "--warm-start", model, "--epochs", 5, "--out", out, "--json") == 0
    summary = json.loads(capsys.readouterr().out)
    # five more epochs, after the saved model's
    assert summary["epochs"] == 5 and summary["total_epochs"] > 5


def test_streamed_fit_evaluate_and_predict_match_in_memory(tmp_path, capsys):
    data = tmp_path / "big.npy"
    assert run("generate", "-n", 5000, "-d", 3, "--separation", 2, "--out", data, "-q") == 0
    model = tmp_path / "m.json"
    assert run("fit", data, "--stream", "always", "--epochs", 3, "--out", model, "--json",
               "-q") == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["streamed"] and summary["n_samples"] == 5000
    assert run("evaluate", model, data, "--stream", "always", "--json") == 0
    streamed = json.loads(capsys.readouterr().out)
    assert run("evaluate", model, data, "--stream", "never", "--json") == 0
    loaded = json.loads(capsys.readouterr().out)
    for key in ("nll", "bic", "aic"):
        assert streamed[key] == pytest.approx(loaded[key], rel=1e-10)
    assert summary["nll"] == pytest.approx(loaded["nll"], rel=1e-10)
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    assert run("predict", model, data, "--stream", "always", "--out", a, "-q") == 0
    assert run("predict", model, data, "--stream", "never", "--out", b, "-q") == 0
    assert a.read_text() == b.read_text()


def test_stream_always_streams_a_csv_and_refuses_other_files(tmp_path, capsys, data):
    csv = tmp_path / "d.csv"
    assert run("generate", "-n", 300, "--out", csv, "-q", "--seed", 3) == 0
    assert run("fit", csv, "--stream", "always", "--solver", "em", "--json", "--out",
               tmp_path / "x.json") == 0
    assert json.loads(capsys.readouterr().out)["streamed"] is True
    txt = tmp_path / "d.txt"
    txt.write_text("1,2\n")
    assert run("fit", txt, "--stream", "always", "--out", tmp_path / "y.json") == 2
    assert "--stream always needs" in capsys.readouterr().err


# ---------------------------------------------------- the real command's manners
def mogsgd_cli(*argv, **kwargs):
    """The real ``mogsgd`` command in a subprocess (stderr is a pipe, not a terminal)."""
    import os
    from pathlib import Path

    import mogsgd

    env = {**os.environ, "PYTHONPATH": str(Path(mogsgd.__file__).resolve().parents[1]),
           "MPLBACKEND": "Agg"}
    return subprocess.run([sys.executable, "-m", "mogsgd", *map(str, argv)], env=env,
                          capture_output=True, text=True, timeout=300, **kwargs)


def test_exit_status_tells_usage_errors_from_data_errors(tmp_path, data):
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("x0,x1\n1,2\n3,oops\n")
    nan_csv = tmp_path / "nan.csv"
    nan_csv.write_text("x0,x1\n1,2\n3,\n5,6\n")
    usage = [["fit", data, "--optimizer", "rmsprop"],          # argparse
             ["fit", data, "--epochs", "0"],
             ["generate", "--out", data],                        # exists without --force
             ["fit", data, "--solver", "em", "--checkpoint", tmp_path / "c"]]
    for argv in usage:
        run = mogsgd_cli(*argv)
        assert run.returncode == 2, (argv, run.stderr)
    for argv, needle in ([["fit", bad_csv], "line 3, column 2 ('x1'): 'oops'"],
                         [["fit", nan_csv], "--missing marginalize"],
                         [["evaluate", tmp_path / "nope.json", data], "does not exist"],
                         [["fit", tmp_path / "none.csv"], "no such file"]):
        run = mogsgd_cli(*argv)
        assert run.returncode == 3, (argv, run.stderr)
        assert needle in run.stderr and "Traceback" not in run.stderr
        assert [line for line in run.stderr.splitlines() if ": error: " in line] == \
            [run.stderr.strip().splitlines()[-1]], run.stderr
    top = mogsgd_cli("--help")
    assert "exit status: 0 done; 1 a bug" in top.stdout and "3 a data or file error" in \
        top.stdout


def test_a_bug_exits_1_with_its_traceback_and_says_it_is_a_bug(monkeypatch, capsys, data):
    import mogsgd.cli as cli

    def broken(args):
        raise RuntimeError("boom")

    monkeypatch.setattr(cli, "cmd_evaluate", broken)
    parser = cli.build_parser
    monkeypatch.setattr(cli, "build_parser", lambda: _with_func(parser(), "evaluate", broken))
    assert cli.main(["evaluate", str(data), str(data)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "RuntimeError: boom" in err and "this is a bug" in err


def _with_func(parser, command, func):
    for action in parser._subparsers._group_actions:
        action.choices[command].set_defaults(func=func)
    return parser


def test_output_into_a_closed_pipe_ends_quietly(tmp_path, model):
    import os
    from pathlib import Path

    import mogsgd

    big = tmp_path / "big.npy"
    np.save(big, np.random.default_rng(0).normal(size=(60_000, 2)))
    env = {**os.environ, "PYTHONPATH": str(Path(mogsgd.__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-m", "mogsgd", "predict", str(model), str(big),
                             "--proba"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().startswith("p0,p1")   # like `| head -1`
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 141, err
    assert "Broken pipe" not in err and "Traceback" not in err and "error" not in err, err


def test_help_gives_every_option_a_text_and_its_default():
    parser = build_parser()
    for command, sub in parser._subparsers._group_actions[0].choices.items():
        for action in sub._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, f"mogsgd {command} {action.option_strings[0]} has no help"
    fit_help = mogsgd_cli("fit", "--help").stdout
    for text in ("(default: adam)", "(default: 256)", "(default: inverse_time)",
                 "(default: error)", "(default: 3)", "--max-epochs"):
        assert text in fit_help, text


def test_no_progress_bar_when_stderr_is_not_a_terminal(tmp_path, data):
    run = mogsgd_cli("fit", data, "-k", 3, "--epochs", 3, "--out", tmp_path / "m.json")
    assert run.returncode == 0, run.stderr
    assert "fit (sgd" not in run.stderr and "epoch/s" not in run.stderr, run.stderr
    assert "model written to" in run.stderr
