"""What the command line adds around a fit so that nothing hangs, crashes or is lost.

* :class:`Interrupts`: Ctrl-C (SIGINT) and SIGTERM stop a fit the same way (its
  checkpoint is saved); a second signal while that state, or the model, is being
  written is ignored instead of aborting the write.
* :func:`resume_command`: the exact, shell-quoted command that continues an
  interrupted fit (with every option that defines the data).
* :func:`divergence`: why a fitted model must not be saved (non-finite fit, variances
  beyond anything the data can give), or ``None``.
* :func:`json_safe` and :func:`one_line`: output that is valid JSON and errors that
  are one line; :func:`cli_flags`: library messages in the flags a user types.
"""

from __future__ import annotations

import contextlib
import re
import shlex
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np

__all__ = ["Interrupts", "resume_command", "divergence", "json_safe", "one_line",
           "DATA_OPTIONS", "cli_flags", "FLAGS"]

#: Options of ``mogsgd fit`` that decide which rows and columns are the data: a printed
#: resume command repeats them (everything else is stored in the checkpoint).
#: dest -> (flag, default)
DATA_OPTIONS = {"label_column": ("--label-column", "auto"), "stream": ("--stream", "auto"),
                "columns": ("--columns", None), "drop": ("--drop", None)}

#: The library's parameter names and the command-line flags that set them: messages a
#: command prints name the flags (``--missing marginalize``, not ``missing='marginalize'``).
FLAGS = {"n_components": "-k", "solver": "--solver", "optimizer": "--optimizer",
         "learning_rate": "--lr", "schedule": "--schedule", "batch_size": "--batch-size",
         "max_epochs": "--epochs", "patience": "--patience", "n_init": "--n-init",
         "init": "--init", "random_state": "--seed", "checkpoint_path": "--checkpoint",
         "checkpoint_every": "--checkpoint-every", "missing": "--missing",
         "label_column": "--label-column", "columns": "--columns", "drop": "--drop",
         "warm_start": "--warm-start", "sample_weight": "--weight-column",
         "covariance_type": "--covariance-type", "heldout_fraction": "--heldout-fraction",
         "variance_floor": "--variance-floor"}
_ASSIGNED = re.compile(r"(?<![\w.])(" + "|".join(FLAGS) + r")=('[^']*'|\[[^\]]*\]|[\w.+-]+)")
# a bare name is replaced only when it cannot be an English word (it has an underscore)
_BARE = re.compile(r"(?<![\w.\-])(" + "|".join(n for n in FLAGS if "_" in n) + r")(?![\w=(])")


class Interrupts:
    """Within ``with Interrupts(prog) as guard``: the first SIGINT or SIGTERM raises
    ``KeyboardInterrupt`` (``guard.signum`` says which); later ones, and any during
    ``with guard.saving():``, are reported and ignored so a write in progress
    completes.  Outside the main thread it does nothing."""

    def __init__(self, prog: str) -> None:
        self.prog = prog
        self.signum: int | None = None
        self._saving = False
        self._old: dict = {}

    def __enter__(self) -> Interrupts:
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.getsignal(s)
                signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._old.items():
            signal.signal(s, handler)

    def _handle(self, signum, frame) -> None:
        if self.signum is not None or self._saving:
            print(f"{self.prog}: saving, please wait", file=sys.stderr)
            return
        self.signum = signum
        raise KeyboardInterrupt

    @contextlib.contextmanager
    def saving(self) -> Iterator[None]:
        self._saving = True
        try:
            yield
        finally:
            self._saving = False

    @property
    def exit_status(self) -> int:
        return 128 + (self.signum or signal.SIGINT)


def resume_command(args, checkpoint: Path, out: Path) -> str:
    """``mogsgd fit DATA --resume CHECKPOINT --out OUT`` plus the data options, quoted."""
    parts = ["mogsgd", "fit", str(args.data), "--resume", str(checkpoint), "--out", str(out)]
    for dest, (flag, default) in DATA_OPTIONS.items():
        value = getattr(args, dest, default)
        if value != default:
            parts += [flag, str(value)]
    for flag, on in (("--force", args.force), ("--json", args.json), ("-q", args.quiet)):
        if on:
            parts.append(flag)
    if args.figures:
        parts += ["--figures", str(args.figures)]
    return " ".join(shlex.quote(p) for p in parts)


def divergence(est, X: np.ndarray | None = None) -> str | None:
    """Why ``est`` is not a model to save, or ``None``: a non-finite log-likelihood or
    weight, or a variance that is infinite, zero or (with ``X``) far beyond the spread of
    the data, which only a diverged optimiser produces.  Variances are compared as
    logarithms (``2 log sigma``), so data at scales near 1e-310 or 1e300, whose variances
    are beyond the float range (the model holds ``log sigma``), are not mistaken for it."""
    with np.errstate(all="ignore"):
        if not np.isfinite(est.lower_bound_):
            return f"its log-likelihood is {est.lower_bound_}"
        if not np.all(np.isfinite(est.weights_)):
            return "its weights are not finite"
        # each feature's variance per component (K, D): covariances_ itself for diag
        cov = np.asarray(est.params_.variances, dtype=np.float64)
        log_sigma = getattr(getattr(est, "params_", None), "log_sigma", None)
        shared = log_sigma is not None and np.ndim(log_sigma) == 1  # spherical: one sigma_k
        if log_sigma is not None and np.ndim(log_sigma) in (1, 2):
            log_var = np.broadcast_to(2.0 * np.asarray(log_sigma, dtype=np.float64)
                                      .reshape(len(log_sigma), -1), cov.shape)
        else:
            log_var = np.log(cov)
        bad = ~np.isfinite(log_var)
        if X is not None:
            X = np.asarray(X, dtype=np.float64)
            # log of the range, halved first so that it cannot overflow
            log_range = np.log(np.nanmax(X, axis=0) / 2 - np.nanmin(X, axis=0) / 2) + np.log(2)
            if shared and np.isfinite(log_range).any():  # one variance for every feature:
                log_range = np.full_like(log_range, np.max(log_range[np.isfinite(log_range)]))
            bad |= np.isfinite(log_range) & (log_var > np.log(1e6) + 2.0 * log_range)
    if bad.any():
        k, d = np.argwhere(bad)[0]
        name = (f"covariances_[{k}, {d}]" if np.shape(est.covariances_) == cov.shape
                else f"the variance of feature {d} in component {k}")
        return (f"{name} = exp({float(log_var[k, d]):.6g}) is beyond anything the data "
                "can give")
    return None


def json_safe(obj):
    """``obj`` with arrays as lists and NaN / infinity as ``None`` (JSON has no such
    numbers; ``json.dumps`` would print the invalid tokens ``NaN`` / ``Infinity``)."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, np.generic):
        return json_safe(obj.item())
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def cli_flags(message: str) -> str:
    """``message`` with the library's ``name=value`` and ``snake_case`` parameter names
    written as the command-line flags (:data:`FLAGS`): ``missing='marginalize'`` becomes
    ``--missing marginalize``, ``max_epochs`` ``--epochs``, ``columns=[...]`` ``--columns
    ...``."""
    def assigned(m: re.Match) -> str:
        value = m.group(2).strip("'")
        value = {"None": "none", "True": "", "[...]": "..."}.get(value, value)
        return f"{FLAGS[m.group(1)]} {value}".rstrip()

    return _BARE.sub(lambda m: FLAGS[m.group(1)], _ASSIGNED.sub(assigned, message))


def one_line(message: str) -> str:
    """The message with its lines joined (a library may raise a multi-line one)."""
    return " ".join(line.strip() for line in str(message).splitlines() if line.strip())
