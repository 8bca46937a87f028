"""The ``mogsgd`` command line: parsing and printing only; the work is done by the library.

Every failure a user can cause is reported as one line on stderr, with exit status 2 for
a command that cannot run as given (an option, a combination of options, a column the
file does not have, an output that exists without ``--force``, a missing optional package:
the CLI's own checks and the library's :class:`~mogsgd.errors.SettingsError`) and 3 for
data or files that cannot be used (unreadable, malformed, NaN without ``--missing
marginalize``, fewer rows than ``-k``, columns that do not match the model); an
interrupted fit exits with 130 (Ctrl-C) or 143 (SIGTERM) after saving its checkpoint;
output cut short by a closed pipe (``| head``) ends quietly with 141; anything else is a
bug in mogsgd, shown with its traceback and exit status 1.
``--debug`` shows the traceback of every error.  The safety nets around a fit (locks,
signals, the resume command, divergence) are in :mod:`mogsgd.cli_safety`.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shlex
import signal
import sys
import time
import traceback
import warnings
from pathlib import Path

import numpy as np

from mogsgd.cli_safety import (
    Interrupts,
    cli_flags,
    divergence,
    json_safe,
    one_line,
    resume_command,
)
from mogsgd.covariance import COVARIANCE_TYPES

__all__ = ["main", "build_parser"]

PROG = "mogsgd"
#: ``fit -k`` when not given (the option's default is None so that ``--resume`` can tell
#: whether it was given)
DEFAULT_K = 3
BUG_REPORT = "https://github.com/mogsgd/mogsgd/issues"


#: Exit statuses (documented in ``mogsgd --help`` and the README).
EXIT_OK, EXIT_BUG, EXIT_USAGE, EXIT_DATA, EXIT_PIPE = 0, 1, 2, 3, 141
EXIT_STATUS_HELP = (
    "exit status: 0 done; 1 a bug in mogsgd (with a traceback, please report it); 2 a usage\n"
    "error, fixed by changing the command (an option out of range, options that cannot go\n"
    "together, a column the file does not have, an output that exists without --force, a\n"
    "missing optional package); 3 a data or file error, fixed by changing the files (missing,\n"
    "unreadable or malformed, NaN without --missing marginalize, fewer rows than -k, columns\n"
    "that do not match the model, an output folder that does not exist); 130/143\n"
    "interrupted (a fit saves its checkpoint first); 141 output cut short by a closed pipe.")


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: the message and where to find help, no usage dump."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


class CLIError(Exception):
    """A problem with the data or files, to report as one line (phrased for the user):
    exit status 3."""


class UsageError(CLIError):
    """A command that cannot run as given (options, existing outputs): exit status 2."""


# ----------------------------------------------------------------- helpers
def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not np.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _k_range(text: str) -> list[int]:
    """``"1..10"``, ``"2,3,5"`` or ``"4"`` -> a list of component counts."""
    try:
        if ".." in text:
            lo, hi = (int(t) for t in text.split("..", 1))
            ks = list(range(lo, hi + 1))
        else:
            ks = [int(t) for t in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a range like 1..10 or a list like 2,3,5, got {text!r}") from None
    if not ks or min(ks) < 1:
        raise argparse.ArgumentTypeError(f"component counts must be >= 1, got {text!r}")
    return ks


def _emit_json(obj) -> None:
    """Valid JSON only: NaN and infinity become null (``json_safe``)."""
    print(json.dumps(json_safe(obj), indent=2, allow_nan=False))


def _info(args, msg: str) -> None:
    if not getattr(args, "quiet", False):
        print(msg, file=sys.stderr)


def _column_list(text: str | None) -> list[str] | None:
    """``--columns a,b,3`` -> ``["a", "b", "3"]`` (names, or positions from 0)."""
    if text is None:
        return None
    items = [t.strip() for t in text.split(",")]
    if not all(items):
        raise UsageError(f"an empty column name in {text!r}: give names or positions (from 0) "
                         "separated by commas, e.g. --columns 'sepal length (cm)',2")
    return items


def _data_choice(args) -> dict:
    """The columns options as the readers take them (``--label-column none`` -> None)."""
    label = getattr(args, "label_column", "auto")
    return {"label_column": None if str(label).lower() == "none" else label,
            "columns": _column_list(getattr(args, "columns", None)),
            "drop": _column_list(getattr(args, "drop", None))}


def _load_data(args):
    """The data file of ``args`` with the columns options applied; unless quiet (``-q``,
    ``--json``), one line on stderr says which rows and columns were read."""
    from mogsgd.io import load_dataset

    data = load_dataset(args.data, **_data_choice(args))
    if not getattr(args, "json", False):
        _info(args, _describe(data))
    return data


def _describe(data) -> str:
    """``read 150 rows x 4 features ('a', 'b', ...) from i.csv; labels: yes``."""
    names = data.feature_names
    shown = ""
    if names:
        listed = ", ".join(repr(n) for n in names[:6]) + (", ..." if len(names) > 6 else "")
        shown = f" ({listed})"
    labels = "; with labels" if data.y is not None else ""
    return (f"read {data.n_samples} rows x {data.n_features} features{shown} from "
            f"{data.path}{labels}")


def _open_stream(args, columns: list[str] | None = None):
    """``args.data`` opened for streaming, with the columns options (CSV and Parquet);
    ``columns`` replaces ``--columns``."""
    from mogsgd import stream

    choice = _data_choice(args)
    if columns is not None:
        choice.update(columns=columns, drop=None)
    suffix = Path(args.data).suffix.lower()
    if (choice["columns"] or choice["drop"]) and suffix not in (".csv", ".parquet", ".pq") \
            and not Path(args.data).is_dir():
        raise UsageError("--columns and --drop choose columns of CSV and Parquet files; "
                         f"{args.data} has none (select the columns before saving it)")
    label = choice["label_column"]
    return stream.open_source(args.data, columns=choice["columns"], drop=choice["drop"],
                              label_column="label" if label == "auto" else label)


def _load_model(path: str):
    # as SGDMixture: importing scikit-learn (for SGDGaussianMixture) takes seconds
    from mogsgd.mixture import SGDMixture

    return SGDMixture.load(path)


def _check_features(model, X, what: str) -> None:
    if X.shape[1] != model.n_features_in_:
        raise CLIError(f"{what} has {X.shape[1]} features but the model was fitted with "
                       f"{model.n_features_in_}")


def _model_order(model, names, what: str) -> list[int] | None:
    """Where each of the model's columns is among the data's ``names``: ``None`` when they
    are the same (or either has no names).  Columns in another order are matched by name;
    a missing or an extra column is refused, naming it and the fix."""
    fitted = getattr(model, "feature_names_in_", None)
    if fitted is None or not names:
        return None
    fitted, names = [str(n) for n in fitted], [str(n) for n in names]
    if names == fitted:
        return None
    missing = [n for n in fitted if n not in names]
    extra = [n for n in names if n not in fitted]
    if missing or extra:
        why = []
        if missing:
            why.append(f"lacks the column(s) {', '.join(map(repr, missing))}")
        if extra:
            why.append(f"has column(s) the model was not fitted on: "
                       f"{', '.join(map(repr, extra))} (leave them out with --drop "
                       f"{shlex.quote(','.join(extra))})")
        raise CLIError(f"{what} {'; and '.join(why)}; the model's columns are "
                       f"{', '.join(map(repr, fitted))}")
    return [names.index(n) for n in fitted]


def _record_names(est, names) -> None:
    """The data file's column names as the model's ``feature_names_in_`` (saved with it):
    a fit on the array read from a file with a header is named like a fit on a frame."""
    if names:
        est.feature_names_in_ = np.asarray([str(n) for n in names], dtype=object)


@contextlib.contextmanager
def _matched_by_name():
    """Inference on an array whose columns the command has matched to the model's names
    already: scikit-learn's "X does not have valid feature names" does not apply."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="X does not have valid feature names")
        yield


def _aligned_X(args, model, data) -> np.ndarray:
    """The data's rows with their columns in the model's order (matched by name)."""
    order = _model_order(model, data.feature_names, str(args.data))
    X = data.X
    if order is not None:
        _info(args, f"{args.data}: columns matched to the model's by name (another order)")
        X = np.ascontiguousarray(X[:, order])
    _check_features(model, X, str(args.data))
    return X


def _aligned_stream(args, model):
    """``args.data`` opened for streaming with its columns in the model's order."""
    source = _open_stream(args)
    order = _model_order(model, _stream_names(source), str(args.data))
    if order is not None:
        _info(args, f"{args.data}: columns matched to the model's by name (another order)")
        source = _open_stream(args, columns=[str(n) for n in model.feature_names_in_])
    _check_features(model, np.empty((0, source.n_features)), str(args.data))
    return source


def _stream_names(source) -> list[str] | None:
    names = getattr(source, "feature_names", None) or getattr(source, "columns", None)
    return None if names is None else [str(n) for n in names]


# ---------------------------------------------------------------- commands
def cmd_generate(args) -> int:
    from mogsgd.datasets import make_mixture
    from mogsgd.io import save_dataset

    X, y, params = make_mixture(
        args.n_samples, args.n_features, args.n_components, separation=args.separation,
        mean_range=tuple(args.mean_range), sigma_range=tuple(args.sigma_range),
        random_state=args.seed)
    path = save_dataset(args.out, X, y, params, force=args.force)
    summary = {"path": str(path), "n_samples": len(X), "n_features": X.shape[1],
               "n_components": params.n_components, "weights": params.weights}
    if args.json:
        _emit_json(summary)
    else:
        _info(args, f"wrote {len(X)} points, {X.shape[1]} features, {params.n_components} "
                    f"components to {path}")
    return 0


def _estimator_from_args(args, checkpoint: Path | None):
    # SGDGaussianMixture without scikit-learn's base classes: importing scikit-learn
    # would take longer than fitting a small file (the model file is the same)
    from mogsgd.mixture import SGDMixture

    if args.warm_start:
        est = _load_model(args.warm_start)
        _refuse_other_settings(args, est.get_params(), "--warm-start", "model")
        # the saved model's solver runs (not --solver's default): batch EM keeps no checkpoint
        changes = {"warm_start": True,
                   "checkpoint_path": None if est.solver == "em" else checkpoint,
                   "record_params": args.figures is not None}
        if args.epochs is not None:
            changes["max_epochs"] = args.epochs
        return est.set_params(**changes)
    if args.resume:
        est = SGDMixture.from_checkpoint(args.resume)
        changes = {"checkpoint_path": args.resume}
        if args.epochs is not None:
            changes["max_epochs"] = args.epochs
        return est.set_params(**changes)
    return SGDMixture(
        n_components=args.n_components or DEFAULT_K, optimizer=args.optimizer,
        learning_rate=args.lr, schedule=args.schedule, batch_size=args.batch_size,
        max_epochs=args.epochs, early_stopping=not args.no_early_stopping,
        patience=args.patience, n_init=args.n_init, init=args.init, solver=args.solver,
        random_state=args.seed, record_params=args.figures is not None,
        checkpoint_path=checkpoint, checkpoint_every=args.checkpoint_every,
        missing=args.missing, covariance_type=args.covariance_type,
        variance_floor=args.variance_floor,
    )


def _split_weights(data, column: str | None):
    """``(X, w, names)``: the named column of the data file taken out as sample weights,
    and the names of the remaining (feature) columns."""
    names = list(data.feature_names or [])
    if column is None:
        return data.X, None, names or None
    if column not in names:
        listed = ", ".join(names) or "unnamed (use a CSV or Parquet file with a header)"
        raise UsageError(f"no column {column!r} for --weight-column; the columns are {listed}")
    j = names.index(column)
    return np.delete(data.X, j, axis=1), data.X[:, j], names[:j] + names[j + 1:]


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class _Progress:
    """A per-epoch progress bar (tqdm on stderr) showing the current NLLs."""

    def __init__(self, enabled: bool, total: int | None, desc: str) -> None:
        self.bar = None
        if enabled and _is_terminal(sys.stderr):  # no bar in a log file or a pipe
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="epoch", file=sys.stderr,
                            dynamic_ncols=True, leave=True)

    def __call__(self, state) -> None:
        if self.bar is None:
            return None
        h = state.history
        post = {"train_nll": f"{h['train_nll'][-1]:.4f}"}
        if h["val_nll"] and h["val_nll"][-1] is not None:
            post["val_nll"] = f"{h['val_nll'][-1]:.4f}"
        self.bar.set_postfix(post, refresh=False)
        self.bar.update(1)
        return None

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _streamed(args) -> bool:
    """Whether to stream ``args.data`` instead of loading it (``--stream``)."""
    from mogsgd import stream

    if args.stream == "never":
        return False
    if args.stream == "always":
        if Path(args.data).suffix.lower() not in stream.STREAM_SUFFIXES \
                and not Path(args.data).is_dir():
            raise UsageError("--stream always needs a .npy, .csv, Parquet or Zarr file (or a "
                             f"folder of Parquet files); got {args.data}")
        return True
    return stream.should_stream(args.data)


def _fit_streamed(args, out: Path, guard: Interrupts) -> int:
    """Fit data too large to load: chunks from disk, a shuffle buffer, one pass to score."""
    if args.resume or args.checkpoint or args.weight_column or args.warm_start:
        raise UsageError("streamed fits do not support --resume, --checkpoint, --weight-column "
                         "or --warm-start; use --stream never to load the data instead")
    source = _open_stream(args)
    est = _estimator_from_args(args, None)
    show = not (args.quiet or args.json) and est.solver != "em"
    progress = _Progress(show, est.max_epochs, f"fit ({est.solver}, streamed)")
    est.set_params(callback=progress if show else None)
    t0 = time.perf_counter()
    try:
        est.fit(source)
    finally:
        progress.close()
    seconds = time.perf_counter() - t0
    est.set_params(callback=None)
    _record_names(est, _stream_names(source))
    _save_fitted(est, out, args, guard, None)
    n = source.n_samples
    total = est.lower_bound_ * n  # lower_bound_ is the mean log-likelihood of every row
    summary = {"model": str(out), "method": est.solver, "optimizer": est.optimizer,
               "streamed": True, "n_samples": n, "n_components": est.n_components,
               "epochs": est.n_iter_, "total_epochs": _total_epochs(est),
        "converged": est.converged_, "seconds": seconds,
               "nll": -est.lower_bound_,
               "bic": -2.0 * total + est.n_parameters() * np.log(n),
               "aic": -2.0 * total + 2.0 * est.n_parameters(),
               "weights": est.weights_, "means": est.means_, **_covariance_summary(est),
               "feature_names": _stream_names(source)}
    if args.json:
        _emit_json(summary)
    else:
        _info(args, f"fitted {est.n_components} components to {n} streamed rows in "
                    f"{seconds:.2f} s ({est.n_iter_} epochs); NLL {summary['nll']:.4f} per "
                    f"point")
        _info(args, f"model written to {out}")
    return 0


#: Below this many ``rows x components x features`` a loaded fit runs on the NumPy
#: reference: this process fits once, and importing numba and loading the compiled
#: kernels (1-2 s) would take longer than the whole NumPy fit (0.1-0.3 s at 1000 x 3, K=3).
ONE_SHOT_NUMPY_WORK = 30_000


def _one_shot_backend(est, X) -> str:
    """The ``backend`` for fitting and scoring ``X`` in this one-shot process: ``"numpy"``
    for small data when the estimator's is ``"auto"`` (the results agree to rounding)."""
    small = X.shape[0] * X.shape[1] * est.n_components <= ONE_SHOT_NUMPY_WORK
    return "numpy" if est.backend == "auto" and small else est.backend


def _save_fitted(est, out: Path, args, guard: Interrupts, X, backend: str | None = None) -> None:
    """Save the model unless the fit diverged; a signal cannot abort the write.  The file
    records ``backend`` (the user's choice) when this process fitted with another one."""
    from mogsgd.model_io import save_model

    why = divergence(est, X)
    if why is not None:
        raise CLIError(f"the fit diverged ({why}); nothing was saved: lower the learning "
                       "rate (--lr), or try --solver em")
    used = est.backend
    with guard.saving():
        try:
            est.set_params(backend=backend or used)
            save_model(est, out, force=args.force)
        finally:
            est.set_params(backend=used)


def _covariance_summary(est) -> dict:
    """``variances``: each feature's variance per component (``covariances_`` for diag); the
    other types add ``covariance_type`` and ``covariances`` in scikit-learn's shape."""
    out = {"variances": est.params_.variances}
    if est.covariance_type != "diag":
        out.update(covariance_type=est.covariance_type, covariances=est.covariances_)
    return out


def _remove_failed(checkpoint: Path | None) -> None:
    """A checkpoint this run created can only reproduce its failure: remove it (a
    checkpoint resumed from, or named by an earlier run, is kept)."""
    if checkpoint is not None and checkpoint.exists():
        checkpoint.unlink()


def _same_file(a, b) -> bool:
    return a is not None and b is not None and \
        os.path.realpath(str(a)) == os.path.realpath(str(b))


def _auto_checkpoint(out: Path) -> Path:
    """``OUT.checkpoint``; a name too long for the file system is shortened with a hash."""
    name = out.name + ".checkpoint"
    if len(name.encode()) > 200:
        digest = hashlib.sha256(out.name.encode()).hexdigest()[:16]
        name = out.name.encode()[:120].decode(errors="ignore") + f"~{digest}.checkpoint"
    return out.with_name(name)


def _check_fit_targets(args, out: Path, checkpoint: Path | None) -> None:
    """Refuse, before any training, output paths that would clash or fail at the end."""
    paths = {"--out": out, "--checkpoint": checkpoint, "--resume": args.resume,
             "--warm-start": args.warm_start}
    for flag, path in paths.items():
        if flag != "--resume" and flag != "--warm-start" and path is not None \
                and _same_file(path, args.data):
            raise UsageError(f"{flag} {path} is the data file; choose another file name")
    if _same_file(out, checkpoint) or _same_file(out, args.resume):
        raise UsageError(f"--out {out} is also the checkpoint; choose another file name")
    for path in (out, checkpoint):
        parent = None if path is None else path.parent if str(path.parent) else Path(".")
        if parent is not None and not parent.is_dir():
            raise CLIError(f"cannot write {path}: directory {parent} does not exist")
    if out.is_dir():
        raise UsageError(f"--out {out} is a directory; give a file name")
    if out.exists() and not out.is_file():
        raise UsageError(f"--out {out} is not a regular file (a FIFO or device); choose "
                         "another file name")
    if args.figures:
        _check_figures_target(Path(args.figures), args.force)


#: Figures ``fit --figures`` may write (each as .png and .svg).
FIT_FIGURES = ("density", "predictions", "pairs", "fit_vs_truth", "learning_curves",
               "parameter_paths")


def _check_figures_target(folder: Path, force: bool) -> None:
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"--figures {folder} is a file, not a folder; choose a folder name")
    if not force and folder.is_dir():
        existing = [folder / f"{name}.{ext}" for name in FIT_FIGURES for ext in ("png", "svg")
                    if (folder / f"{name}.{ext}").exists()]
        if existing:
            raise UsageError(f"{existing[0]} exists; pass --force to overwrite the figures or "
                             "choose another --figures folder")
    ancestor = folder
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not os.access(ancestor if str(ancestor) else ".", os.W_OK):
        raise CLIError(f"cannot write figures into {folder}: {ancestor} is not writable")


def _check_resume_settings(args) -> None:
    """``--resume`` continues with the checkpoint's settings: refuse options that differ."""
    from mogsgd.checkpoint import read_checkpoint

    _refuse_other_settings(args, read_checkpoint(args.resume).settings, "--resume", "checkpoint")


def _refuse_other_settings(args, saved: dict, flag: str, holder: str) -> None:
    """``flag`` continues a fit with the ``holder``'s settings ``saved``: refuse options
    given with other values (they would be ignored)."""
    given = {"-k": ("n_components", args.n_components, None),
             "--lr": ("learning_rate", args.lr, None),
             "--optimizer": ("optimizer", args.optimizer, "adam"),
             "--schedule": ("schedule", args.schedule, "inverse_time"),
             "--batch-size": ("batch_size", args.batch_size, 256),
             "--solver": ("solver", args.solver, "sgd"),
             "--n-init": ("n_init", args.n_init, 1),
             "--init": ("init", args.init, "auto"),
             "--covariance-type": ("covariance_type", args.covariance_type, "diag"),
             "--variance-floor": ("variance_floor", args.variance_floor, None),
             "--seed": ("random_state", args.seed, 0)}
    differ = [f"{option} {value} (the {holder} has {saved.get(name)!r})"
              for option, (name, value, default) in given.items()
              if value != default and name in saved and value != saved[name]]
    if differ:
        raise UsageError(f"{flag} continues with the {holder}'s settings, but "
                         f"{'; '.join(differ)}; drop these options to continue, or start a new "
                         "fit")


def _total_epochs(est) -> int:
    """Epochs (or EM iterations) over every fit of the model: with ``--warm-start`` the
    saved model's too (``n_iter_`` counts this fit only)."""
    epochs = est.history_.get("epoch") or [0]
    return int(epochs[-1])


def cmd_fit(args) -> int:
    from mogsgd._files import lock_paths

    out = Path(args.out) if args.out else Path(args.data).with_suffix(".model.json")
    if args.solver == "em" and (args.checkpoint or args.resume):
        raise UsageError("--checkpoint and --resume work with --solver sgd or online_em; batch "
                         "EM runs are short and keep no checkpoint")
    if args.weight_column and (args.checkpoint or args.resume):
        raise UsageError("--checkpoint/--resume do not support --weight-column yet")
    streamed = _streamed(args)
    # SGD and online EM always keep a checkpoint so that Ctrl-C can be resumed; an
    # automatic one is removed after a successful fit
    checkpoint = None
    if not streamed and args.solver != "em" and not args.weight_column:
        checkpoint = Path(args.checkpoint) if args.checkpoint else \
            Path(args.resume) if args.resume else _auto_checkpoint(out)
    _check_fit_targets(args, out, checkpoint)
    with lock_paths(out, checkpoint, what="mogsgd fit"), Interrupts(f"{PROG} fit") as guard:
        if out.exists() and not args.force:
            raise UsageError(f"{out} exists; pass --force to overwrite it or choose --out")
        if streamed:
            return _fit_streamed(args, out, guard)
        return _fit_loaded(args, out, checkpoint, guard)


def _fit_loaded(args, out: Path, checkpoint: Path | None, guard: Interrupts) -> int:
    from mogsgd.checkpoint import TrainingInterrupted

    auto = checkpoint is not None and not args.checkpoint and not args.resume
    if auto and checkpoint.exists():
        if not args.force:
            raise UsageError(f"{checkpoint} exists from an earlier interrupted fit; continue it "
                             f"with --resume {checkpoint}, or pass --force to start over")
        checkpoint.unlink()
    if args.resume:
        _check_resume_settings(args)
    data = _load_data(args)
    X, weights, names = _split_weights(data, args.weight_column)
    est = _estimator_from_args(args, checkpoint)
    chosen = est.backend
    est.set_params(backend=_one_shot_backend(est, X))
    if args.warm_start:  # the saved model's columns, matched by name
        order = _model_order(est, names, str(args.data))
        if order is not None:
            X, names = np.ascontiguousarray(X[:, order]), [names[j] for j in order]
    method = est.solver
    show = not (args.quiet or args.json) and method != "em"
    progress = _Progress(show, est.max_epochs, f"fit ({method}"
                         + (f"/{est.optimizer})" if method == "sgd" else ")"))
    est.set_params(callback=progress if show else None)
    fresh = checkpoint is not None and not checkpoint.exists()
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings(record=True) as caught:
            est.fit(X, sample_weight=weights, resume=args.resume)
    except TrainingInterrupted as exc:
        progress.close()
        what = "interrupted" if guard.signum in (None, signal.SIGINT) else "terminated"
        print(f"{PROG} fit: {what} after epoch {exc.epoch}; the training state is saved in "
              f"{exc.checkpoint_path}\n  continue with: "
              f"{resume_command(args, exc.checkpoint_path, out)}", file=sys.stderr)
        return guard.exit_status
    except Exception:
        _remove_failed(checkpoint if fresh else None)
        raise
    finally:
        progress.close()
    seconds = time.perf_counter() - t0
    est.set_params(callback=None)
    why = divergence(est, X)
    for w in caught:  # the estimator's overflow note does not apply to a diverged fit
        if why is None or "beyond the range" not in str(w.message):
            warnings.showwarning(_named(w.message, names), w.category, w.filename, w.lineno)
    _record_names(est, names)
    try:
        _save_fitted(est, out, args, guard, X, backend=chosen)
    except Exception:
        _remove_failed(checkpoint if fresh else None)
        raise
    if checkpoint is not None and not args.checkpoint and \
            _same_file(checkpoint, _auto_checkpoint(out)) and checkpoint.exists():
        checkpoint.unlink()  # the automatic checkpoint is done with
    with _matched_by_name():
        summary = {
            "model": str(out), "method": method, "optimizer": est.optimizer,
            "n_samples": len(X), "n_components": est.n_components,
            "epochs": est.n_iter_, "total_epochs": _total_epochs(est),
            "converged": est.converged_, "seconds": seconds,
            "nll": -est.score(X, sample_weight=weights),
            "bic": est.bic(X, sample_weight=weights), "aic": est.aic(X, sample_weight=weights),
            "weights": est.weights_, "means": est.means_, **_covariance_summary(est),
            "feature_names": names,
        }
        if args.figures:
            summary["figures"] = _fit_figures(est, data, X, names, Path(args.figures),
                                              args.force)
    if args.json:
        _emit_json(summary)
    else:
        _info(args, f"fitted {est.n_components} components in {seconds:.2f} s "
                    f"({est.n_iter_} {'iterations' if method == 'em' else 'epochs'}); "
                    f"NLL {summary['nll']:.4f} per point, BIC {summary['bic']:.1f}")
        _info(args, f"model written to {out}")
    return 0


def _named(message, names) -> Warning | str:
    """A near-constant-feature warning said with the data file's column names and the
    ``--drop`` that removes them; any other warning unchanged."""
    from mogsgd.errors import NearConstantWarning

    if not isinstance(message, NearConstantWarning) or not message.features:
        return message
    cols = [names[j] if names else str(j) for j in message.features]
    said = ", ".join(f"{c!r} (std {s:.3g}, mostly {v:.6g})" for c, s, v in
                     zip(cols[:5], message.spreads, message.values, strict=False))
    more = f" and {len(cols) - 5} more" if len(cols) > 5 else ""
    return (f"column(s) {said}{more} are constant or near-constant (at least 98% of the rows "
            "hold one value): every component's variance there sits at the variance floor, "
            "so a row with another value scores absurdly low; drop them with --drop "
            f"{shlex.quote(','.join(cols))}")


def _fit_figures(est, data, X, names, folder: Path, force: bool) -> list[str]:
    from mogsgd import plotting

    def draw(save):
        params = est.params_
        feats = _plot_features(None, X, names, params, data.y)
        _draw_model(save, X, params, data.y, names, feats)
        if data.params is not None and data.params.n_components == params.n_components \
                and X.shape[1] >= 2:
            save(plotting.plot_fit_vs_truth(X, params, data.params, dims=feats[:2],
                                            feature_names=names), "fit_vs_truth")
        save(plotting.plot_learning_curves(est.history_).figure, "learning_curves")
        if "params" in est.history_ and X.shape[1] >= 2:
            save(plotting.plot_parameter_paths(est.history_, X=X, true=data.params),
                 "parameter_paths")

    return [str(p) for p in _figures(folder, force, draw)]


def _figures(folder: Path, force: bool, draw) -> list[Path]:
    """Run ``draw(save)``; ``save(fig, name)`` writes ``folder/name.png`` and ``.svg``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mogsgd import plotting

    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def save(fig, name):
        written.extend(plotting.save_figure(getattr(fig, "figure", fig), folder / name,
                                            force=force))
        plt.close(getattr(fig, "figure", fig))

    draw(save)
    return written


def _plot_features(args, X, names, params, y) -> list[int]:
    """The features to draw: ``--features`` (names or positions), else every feature up to
    ``PAIR_FEATURES``, else the ones that separate the components most (said on stderr)."""
    from mogsgd import plotting
    from mogsgd.csv_parse import resolve_column

    chosen = _column_list(getattr(args, "features", None))
    d = X.shape[1]
    if chosen:
        feats = [resolve_column(args.data, c, names, d, "--features column") for c in chosen]
        if len(set(feats)) != len(feats):
            raise UsageError(f"--features lists a column twice: {args.features}")
        return feats
    if d <= plotting.PAIR_FEATURES:
        return list(range(d))
    feats = plotting.informative_features(X, params, y)
    if args is not None:
        how = "separate the components" if params is not None else \
            "separate the labels" if y is not None else "look the least like one hump"
        shown = ", ".join(repr(names[j]) if names else str(j) for j in feats)
        _info(args, f"{d} features: drawing the {len(feats)} that {how} most ({shown}); "
                    "choose others with --features")
    return feats


def _draw_model(save, X, params, y, names, feats) -> None:
    """The figures of data (and of a model, with ``params``) over the features ``feats``."""
    from mogsgd import plotting

    if params is not None and X.shape[1] >= 2:
        save(plotting.plot_density(X, params, dims=feats[:2], feature_names=names),
             "density")
        save(plotting.plot_predictions(X, params, dims=feats[:2], feature_names=names),
             "predictions")
    if len(feats) > 2:
        save(plotting.plot_pairs(X, params, y, features=feats, feature_names=names,
                                 corner=True), "pairs")


def cmd_evaluate(args) -> int:
    from mogsgd.metrics import adjusted_rand_index, matched_accuracy, parameter_errors

    model = _load_model(args.model)
    if _streamed(args):
        source = _aligned_stream(args, model)
        mean_ll = model.score(source)
        n, p = source.n_samples, model.n_parameters()
        result = {"n_samples": n, "nll": -mean_ll, "bic": -2 * mean_ll * n + p * np.log(n),
                  "aic": -2 * mean_ll * n + 2 * p, "streamed": True}
        return _print_result(args, result)
    data = _load_data(args)
    X = _aligned_X(args, model, data)
    with _matched_by_name():
        result = {"n_samples": len(X), "nll": -model.score(X), "bic": model.bic(X),
                  "aic": model.aic(X)}
        pred = model.predict(X) if data.y is not None else None
    if data.y is not None:
        result["accuracy"] = matched_accuracy(data.y, pred)
        result["adjusted_rand_index"] = adjusted_rand_index(data.y, pred)
    if data.params is not None and data.params.n_components == model.n_components:
        result["parameter_errors"] = parameter_errors(data.params, model.params_)
        from mogsgd.density import nll

        result["true_params_nll"] = nll(X, data.params)
    return _print_result(args, result)


def _print_result(args, result: dict) -> int:
    if args.json:
        _emit_json(result)
    else:
        width = max(len(k) for k in result)
        for k, v in result.items():
            if isinstance(v, dict):
                v = ", ".join(f"{a} {b:.4g}" for a, b in v.items())
            elif isinstance(v, float):
                v = f"{v:.6g}" if np.isfinite(v) else "not finite"
            print(f"{k:<{width}}  {v}")
    return 0


def cmd_predict(args) -> int:
    model = _load_model(args.model)
    header = [f"p{k}" for k in range(model.n_components)] if args.proba else ["label"]
    if _streamed(args):  # chunk by chunk: labels of data larger than memory
        source = _aligned_stream(args, model)
        chunks = (model.iter_predict(source, "predict_proba") if args.proba
                  else (c[:, None] for c in model.iter_predict(source)))
    else:
        X = _aligned_X(args, model, _load_data(args))
        with _matched_by_name():
            chunks = iter([model.predict_proba(X) if args.proba else model.predict(X)[:, None]])
    chunks = (_finite_rows(values, args.data) for values in chunks)
    fmt = "%d" if not args.proba else ("%.17g" if args.out else "%.6g")
    count = 0
    if args.out:
        from mogsgd._files import atomic_write

        with atomic_write(args.out, force=args.force) as tmp, open(tmp, "w") as fh:
            fh.write(",".join(header) + "\n")
            for values in chunks:
                np.savetxt(fh, values, delimiter=",", fmt=fmt)
                count += len(values)
        _info(args, f"wrote {count} predictions to {args.out}")
    else:
        print(",".join(header))
        for values in chunks:
            np.savetxt(sys.stdout, values, delimiter=",", fmt=fmt)
    return 0


def _finite_rows(values: np.ndarray, data) -> np.ndarray:
    """Refuse to print NaN: responsibilities of a row that no component can explain."""
    if values.dtype.kind == "f" and not np.all(np.isfinite(values)):
        i = int(np.argwhere(~np.isfinite(values))[0][0])
        raise CLIError(f"{data}: the model gives no finite responsibilities for a row "
                       f"(row {i} of a chunk); it is too far from every component")
    return values


def cmd_sample(args) -> int:
    from mogsgd.io import save_dataset

    model = _load_model(args.model)
    X, y = model.sample(args.n, random_state=args.seed)
    names = getattr(model, "feature_names_in_", None)
    path = save_dataset(args.out, X, y, force=args.force,
                        feature_names=None if names is None else [str(n) for n in names])
    _info(args, f"wrote {len(X)} samples to {path}")
    return 0


def cmd_plot(args) -> int:
    from mogsgd import plotting
    from mogsgd.plotting import marginal_params

    data = _load_data(args)
    params = data.params
    model = None
    X, names = data.X, data.feature_names
    if args.model:
        model = _load_model(args.model)
        X = _aligned_X(args, model, data)
        params = model.params_
        if getattr(model, "feature_names_in_", None) is not None:
            names = [str(n) for n in model.feature_names_in_]
    feats = _plot_features(args, X, names, params, data.y)
    sub = None if names is None else [names[j] for j in feats]

    def draw(save):
        if X.shape[1] <= 2 or len(feats) <= 2:
            dims = feats if len(feats) == 2 else (0, 1)
            save(plotting.plot_data(X, data.y, params, dims=dims, feature_names=names),
                 "data")
        if params is not None:
            save(plotting.plot_marginals(X[:, feats], marginal_params(params, feats), data.y,
                                         feature_names=sub), "marginals")
        if model is not None:
            _draw_model(save, X, params, data.y, names, feats)
            if model.history_.get("epoch"):
                save(plotting.plot_learning_curves(model.history_), "learning_curves")
        elif len(feats) > 2:
            save(plotting.plot_pairs(X, params, data.y, features=feats, feature_names=names,
                                     corner=True), "pairs")

    for p in _figures(Path(args.out), args.force, draw):
        _info(args, f"wrote {p}")
    return 0


def cmd_select(args) -> int:
    from mogsgd.selection import select_n_components

    data = _load_data(args)
    types = COVARIANCE_TYPES if "all" in args.covariance_type else args.covariance_type
    result = select_n_components(
        data.X, args.k, n_init=args.n_init, random_state=args.seed, solver=args.solver,
        heldout_fraction=args.heldout_fraction, covariance_types=types,
        progress=None if (args.quiet or args.json) else
        (lambda k, t="": _info(args, f"[select] fitting K={k} {t}".rstrip())))
    best = {c: result.best(c) for c in ("bic", "aic", "heldout_ll")}
    if len(result.covariance_types) > 1:
        best = {c: {"covariance_type": result.best_type(c), "k": k} for c, k in best.items()}
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from mogsgd import plotting

        written = plotting.save_figure(plotting.plot_selection(result).figure, args.plot,
                                       force=args.force)
        plt.close("all")
        _info(args, "wrote " + ", ".join(str(p) for p in written))
    if args.json:
        _emit_json({"rows": result.rows, "best": best})
    else:
        print(result.to_markdown())
    return 0


def cmd_demo(args) -> int:
    from mogsgd.report import run_demo

    result = run_demo(args.out, seed=args.seed, force=args.force,
                      progress=None if args.quiet else lambda m: _info(args, f"[demo] {m}"))
    if args.json:
        _emit_json({"report_html": result.report_html, "report_md": result.report_md,
                    "seconds": result.seconds, "rows": result.rows})
    else:
        print(f"report: {result.report_html.resolve()}")
        print(f"        {result.report_md.resolve()} ({result.seconds:.1f} s)")
    return 0


# ------------------------------------------------------------------ parser
EXAMPLES = {
    "generate": "mogsgd generate --n-samples 1000 --n-features 2 --n-components 3 "
                "--seed 0 --out data.npz",
    "fit": "mogsgd fit data.npz -k 3 --optimizer adam --epochs 50 --out model.json\n"
           "  mogsgd fit data.csv -k 3 --solver em --json",
    "evaluate": "mogsgd evaluate model.json data.npz --json",
    "predict": "mogsgd predict model.json data.npz --out labels.csv",
    "sample": "mogsgd sample model.json -n 500 --out samples.npz",
    "plot": "mogsgd plot data.npz --model model.json --out figures/",
    "demo": "mogsgd demo --out mogsgd-demo",
    "select": "mogsgd select data.npz --k 1..10 --plot selection",
}


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and epilogs kept as written; every option's default shown after its
    help (unless the help already says it, or there is none to show)."""

    def _get_help_string(self, action) -> str:
        text = action.help or ""
        default = action.default
        if "default" in text or default in (None, False, argparse.SUPPRESS) or \
                not action.option_strings:
            return text
        if isinstance(default, list | tuple):
            default = " ".join(map(str, default))
        return f"{text} (default: {default})"


def _sub(subparsers, name: str, help_text: str, func):
    p = subparsers.add_parser(
        name, help=help_text, description=help_text,
        epilog=f"example:\n  {EXAMPLES[name]}\n\n{EXIT_STATUS_HELP}",
        formatter_class=_HelpFormatter)
    p.set_defaults(func=func)
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="print nothing but results (no progress, no notes)")
    return p


def _add_data_options(p) -> None:
    p.add_argument("--label-column", default="auto", metavar="NAME|POS",
                   help="the column holding labels, by name or position (from 0; -1 is the "
                        "last), 'none' for no labels (default: auto, a column named 'label' "
                        "or 'target')")
    p.add_argument("--columns", metavar="LIST",
                   help="the feature columns, names or positions (from 0) separated by commas, "
                        "in this order (default: every column but the labels, --drop and a "
                        "pandas index)")
    p.add_argument("--drop", metavar="LIST",
                   help="columns to leave out, names or positions separated by commas (default: "
                        "none; an unnamed first column holding 0..n-1, the index pandas "
                        "writes, is left out and said so)")


def _add_stream_option(p) -> None:
    p.add_argument("--stream", choices=["auto", "always", "never"], default="auto",
                   help="read the data chunk by chunk instead of loading it ('auto': folders, "
                        "Zarr stores and .npy, .csv and Parquet files over 1 GiB)")


def _add_output_options(p, *, json_help: str = "print the result as JSON") -> None:
    p.add_argument("--json", action="store_true", help=json_help)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Gaussian mixtures (diagonal, full, tied or spherical covariances) fitted "
                    "by mini-batch SGD with analytic "
                    "gradients.",
        epilog="examples:\n  mogsgd demo\n  " + "\n  ".join(
            EXAMPLES[k] for k in ("generate", "fit", "evaluate")) + "\n\n" + EXIT_STATUS_HELP,
        formatter_class=_HelpFormatter)
    from mogsgd import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = _sub(sub, "generate", "write a synthetic mixture data set (.npz/.npy/.csv/.parquet)",
             cmd_generate)
    p.add_argument("--n-samples", "-n", type=_positive_int, default=1000,
                   help="number of points")
    p.add_argument("--n-features", "-d", type=_positive_int, default=2,
                   help="number of features")
    p.add_argument("--n-components", "-k", type=_positive_int, default=3,
                   help="number of mixture components")
    p.add_argument("--separation", type=_positive_float, default=None,
                   help="minimum separation between means, in standard deviations (default: "
                        "none)")
    p.add_argument("--mean-range", type=float, nargs=2, default=(-10.0, 10.0),
                   metavar=("LOW", "HIGH"), help="range the means are drawn from")
    p.add_argument("--sigma-range", type=float, nargs=2, default=(0.5, 2.0),
                   metavar=("LOW", "HIGH"), help="range the standard deviations are drawn from")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--out", "-o", required=True,
                   help="output file (required); the suffix picks the format")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    _add_output_options(p, json_help="print a JSON summary")

    p = _sub(sub, "fit", "fit a mixture to a data file and write the model (JSON)", cmd_fit)
    p.add_argument("data", help="data file (.npz, .npy, .csv, .parquet, or a folder/.zarr to "
                                "stream)")
    p.add_argument("--n-components", "-k", type=_positive_int, default=None,
                   help=f"number of components (default: {DEFAULT_K})")
    p.add_argument("--solver", "--method", dest="solver", choices=["sgd", "em", "online_em"],
                   default="sgd", help="mini-batch SGD on the NLL, batch EM, or online EM "
                   "(--method is the old name); --optimizer picks SGD's update rule")
    p.add_argument("--optimizer", choices=["sgd", "momentum", "nesterov", "adam"],
                   default="adam", help="the update rule of --solver sgd")
    p.add_argument("--lr", type=_positive_float, default=None,
                   help="learning rate on standardised data (default: one per optimizer)")
    p.add_argument("--schedule", choices=["inverse_time", "constant", "cosine"],
                   default="inverse_time", help="how the learning rate decays")
    p.add_argument("--batch-size", type=_positive_int, default=256,
                   help="rows per mini-batch")
    p.add_argument("--epochs", "--max-epochs", dest="epochs", type=_positive_int, default=None,
                   help="epoch budget (default: about 4000 steps); --max-epochs is the same")
    p.add_argument("--patience", type=_positive_int, default=5,
                   help="epochs without a better validation NLL before stopping")
    p.add_argument("--no-early-stopping", action="store_true",
                   help="train for the whole --epochs budget")
    p.add_argument("--n-init", type=_positive_int, default=1,
                   help="restarts from different seeds; the best likelihood wins")
    p.add_argument("--init", choices=["auto", "kmeans++", "kmeans", "random_points"],
                   default="auto", help="how the components are seeded (auto: random rows "
                   "polished by EM on small data, else kmeans++)")
    p.add_argument("--covariance-type", choices=COVARIANCE_TYPES, default="diag",
                   help="covariance structure of each component (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--out", "-o", help="model file (default: DATA with .model.json)")
    p.add_argument("--figures", metavar="DIR",
                   help="also write figures of the fit into this folder (default: none)")
    p.add_argument("--force", action="store_true", help="overwrite existing files")
    _add_output_options(p, json_help="print a JSON summary, no progress bar")
    p.add_argument("--checkpoint", help="keep the training state in this file (default: MODEL"
                   ".checkpoint, removed after a successful fit); Ctrl-C saves it")
    p.add_argument("--checkpoint-every", type=_positive_int, default=10, metavar="N",
                   help="epochs between checkpoint writes")
    p.add_argument("--resume", metavar="CHECKPOINT",
                   help="continue an interrupted fit from its checkpoint (same data)")
    p.add_argument("--warm-start", metavar="MODEL",
                   help="continue training a saved model (its parameters and optimiser "
                        "state) for --epochs more epochs")
    p.add_argument("--missing", choices=["error", "marginalize"], default="error",
                   help="NaN or empty cells: refuse them, or integrate them out exactly")
    p.add_argument("--variance-floor", type=_positive_float, metavar="V",
                   help="a floor on every variance in data units, the same for every "
                        "feature (default: none; the floor is then one millionth of each "
                        "feature's variance)")
    p.add_argument("--weight-column", metavar="NAME",
                   help="a column of the data file holding sample weights (default: none)")
    _add_data_options(p)
    _add_stream_option(p)

    p = _sub(sub, "evaluate", "NLL, BIC, AIC and, with labels, accuracy and ARI", cmd_evaluate)
    p.add_argument("model", help="a model file written by mogsgd fit")
    p.add_argument("data", help="data file; its columns are matched to the model's by name")
    _add_output_options(p)
    _add_data_options(p)
    _add_stream_option(p)

    p = _sub(sub, "predict", "component labels (or responsibilities) for each row",
             cmd_predict)
    p.add_argument("model", help="a model file written by mogsgd fit")
    p.add_argument("data", help="data file; its columns are matched to the model's by name")
    p.add_argument("--proba", action="store_true", help="write responsibilities instead")
    p.add_argument("--out", "-o", help="CSV file (default: standard output)")
    p.add_argument("--force", action="store_true", help="overwrite an existing --out file")
    _add_data_options(p)
    _add_stream_option(p)

    p = _sub(sub, "sample", "draw points from a fitted model", cmd_sample)
    p.add_argument("model", help="a model file written by mogsgd fit")
    p.add_argument("-n", type=_positive_int, default=1000, help="number of points")
    p.add_argument("--seed", type=int, default=None,
                   help="random seed (default: the model's random_state)")
    p.add_argument("--out", "-o", required=True,
                   help="output file (required); the suffix picks the format")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")

    p = _sub(sub, "plot", "figures of a data set, and of a fit with --model", cmd_plot)
    p.add_argument("data", help="data file (.npz, .npy, .csv, .parquet)")
    p.add_argument("--model", help="a fitted model file (default: none, the data only)")
    p.add_argument("--out", "-o", default="figures", help="output folder")
    p.add_argument("--features", metavar="LIST",
                   help="the features to draw, names or positions separated by commas (default: "
                        "all up to 5, else the 5 that separate the components most)")
    p.add_argument("--force", action="store_true", help="overwrite existing figures")
    _add_data_options(p)

    p = _sub(sub, "select", "choose the number of components: BIC, AIC and held-out "
             "log-likelihood for each K", cmd_select)
    p.add_argument("data", help="data file (.npz, .npy, .csv, .parquet)")
    p.add_argument("--k", type=_k_range, default=list(range(1, 11)),
                   help="component counts: a range 1..10 or a list 2,3,5 (default: 1..10)")
    p.add_argument("--solver", "--method", dest="solver", choices=["sgd", "em", "online_em"],
                   default="sgd", help="how each K is fitted (--method is the old name)")
    p.add_argument("--covariance-type", nargs="+", choices=COVARIANCE_TYPES + ("all",),
                   default=["diag"], metavar="TYPE",
                   help="covariance types to compare (full, tied, diag, spherical or all; "
                        "default: diag); BIC then picks the type and K together")
    p.add_argument("--n-init", type=_positive_int, default=3, help="restarts per K")
    p.add_argument("--heldout-fraction", type=float, default=0.2,
                   help="share of the rows held out to score each K")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--plot", metavar="STEM",
                   help="write the criteria curves to STEM.png and STEM.svg (default: none)")
    p.add_argument("--force", action="store_true", help="overwrite existing figures")
    _add_output_options(p)
    _add_data_options(p)

    p = _sub(sub, "demo", "the main job: generate, fit every way, write figures and a report",
             cmd_demo)
    p.add_argument("--out", "-o", default="mogsgd-demo", help="output folder")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--force", action="store_true", help="reuse a non-empty output folder")
    _add_output_options(p, json_help="print where the report is, and its table, as JSON")
    return parser


#: Failures a user can cause (bad input, files, settings, resources): one line, exit 2 or
#: 3 (:func:`exit_status`).  Anything else is a bug in mogsgd: its traceback is shown with a
#: request to report it.
USER_ERRORS = (CLIError, ValueError, TypeError, OSError, EOFError, ImportError, MemoryError,
               RecursionError)


def exit_status(exc: BaseException) -> int:
    """2 for a command that cannot run as given (its options: the CLI's own checks and the
    library's :class:`~mogsgd.errors.SettingsError`), 3 for data or files that cannot be
    used."""
    from mogsgd.errors import SettingsError

    if isinstance(exc, UsageError | SettingsError | FileExistsError | ImportError):
        return EXIT_USAGE
    return EXIT_DATA


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit status (:data:`EXIT_STATUS_HELP`): 0 success, 2 a
    usage error and 3 a data or file error (one line on stderr each), 130/143 interrupted /
    terminated, 141 a closed output pipe, 1 a bug (with traceback)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    with warnings.catch_warnings():
        if not args.debug:
            _one_line_warnings(args.command)
        try:
            return _run(args)
        except BrokenPipeError:
            return _closed_pipe()


def _closed_pipe() -> int:
    """The reader of our output went away (``mogsgd predict ... | head``): stop quietly, as
    a program killed by SIGPIPE would, and keep Python from complaining at exit when it
    flushes standard output."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return EXIT_PIPE


def _one_line_warnings(command: str) -> None:
    """Warnings as one line each (once per command), without the source line; NumPy's
    floating-point RuntimeWarnings (overflow in an intermediate step) are not for the user."""
    shown: set[str] = set()

    def show(message, category, filename, lineno, file=None, line=None):
        text = cli_flags(one_line(message))
        if category is RuntimeWarning or text in shown:   # each warning once per command
            return
        shown.add(text)
        print(f"{PROG} {command}: warning: {text}", file=sys.stderr)

    warnings.showwarning = show


def _run(args) -> int:
    try:
        with np.errstate(all="ignore") if not args.debug else contextlib.nullcontext():
            return args.func(args)
    except KeyboardInterrupt:
        print(f"{PROG} {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        raise
    except USER_ERRORS as exc:
        if args.debug:
            raise
        message = cli_flags(one_line(str(exc))) or type(exc).__name__
        if isinstance(exc, FileNotFoundError) and exc.filename and not exc.strerror:
            message = f"no such file: {exc.filename}"
        elif isinstance(exc, FileNotFoundError) and exc.filename and \
                "No such file" in (exc.strerror or ""):
            message = f"no such file: {exc.filename}"
        elif isinstance(exc, MemoryError):
            message = "out of memory" + (f" ({message})" if str(exc) else "") + \
                "; the data or the model is too large for this machine"
        elif isinstance(exc, RecursionError):
            message = "input nested too deeply to read"
        print(f"{PROG} {args.command}: error: {message}", file=sys.stderr)
        return exit_status(exc)
    except Exception:
        if args.debug:
            raise
        traceback.print_exc()
        print(f"{PROG} {args.command}: internal error: this is a bug in mogsgd, not a problem "
              f"with your input; please report it with the command and the traceback above "
              f"at {BUG_REPORT}", file=sys.stderr)
        return EXIT_BUG


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
