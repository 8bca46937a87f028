"""Resumable training: checkpoints of the full SGD state, written while fitting.

``SGDGaussianMixture(checkpoint_path=path, checkpoint_every=N)`` writes a
checkpoint every ``N`` epochs, at the start of every restart and when the fit
ends; ``fit(X, resume=path)`` continues from it.  A checkpoint holds
everything the rest of the fit depends on, so a run that is interrupted and
resumed ends with bit-for-bit the parameters of a run that was never
interrupted:

* the settings (``get_params()``) and a fingerprint of the data (shape, dtype,
  SHA-256 of the bytes): resuming with other data or other settings is refused;
* the standardiser and the RNG state that drew the validation split;
* the restart being run, the best run of the earlier restarts, and where the
  current restart is: the RNG state before its initialisation, its starting
  parameters, or its :class:`~mogsgd.train.TrainState` (parameters, optimiser
  state, RNG state, epoch, history, best-so-far, early-stopping counters).

Files use the envelope of :mod:`mogsgd.model_io` (versioned, checksummed,
lossless hex floats, atomic replace), with ``"format": "mogsgd-checkpoint"``.

A ``KeyboardInterrupt`` during ``fit`` writes the last complete epoch to the
checkpoint and is re-raised as :class:`TrainingInterrupted` (a
``KeyboardInterrupt``) carrying ``checkpoint_path`` and ``epoch``, so a command
line can say how to resume.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mogsgd._files import check_regular_file, lock_paths
from mogsgd.errors import ModelFileError, ValidationError
from mogsgd.model_io import (
    CHECKPOINT_FORMAT,
    Encoded,
    decode,
    encode,
    encode_floats,
    encode_settings,
    read_document,
    write_document,
)
from mogsgd.params import MixtureParams
from mogsgd.standardize import Standardizer
from mogsgd.state_checks import (
    check_int,
    check_params,
    check_rng_state,
    check_scaler,
    check_train_state,
)
from mogsgd.train import TrainState

__all__ = ["TrainingInterrupted", "Checkpoint", "CheckpointWriter", "read_checkpoint",
           "data_fingerprint", "is_checkpoint_file", "locked", "RESUME_SETTINGS"]

#: Settings that shape the trajectory up to the checkpoint and so must match on resume.
#: The others (max_epochs, max_iter, patience, tol, verbose, callback, warm_start,
#: checkpoint_path, checkpoint_every) may change: e.g. raise max_epochs to train longer.
RESUME_SETTINGS = ("n_components", "optimizer", "learning_rate", "schedule", "batch_size",
                   "momentum", "min_variance", "variance_floor", "early_stopping",
                   "validation_fraction", "n_init", "init", "weights_init", "means_init",
                   "variances_init", "standardize", "covariance_type", "precisions_init",
                   "init_params", "solver", "random_state", "dtype", "record_params")


class TrainingInterrupted(KeyboardInterrupt):
    """``fit`` was interrupted (Ctrl-C) and its state saved to ``checkpoint_path``.

    Attributes: ``checkpoint_path`` (Path), ``epoch`` (epochs completed in the
    current restart), ``restart`` (0-based), ``n_restarts``.
    """

    def __init__(self, checkpoint_path: Path, epoch: int, restart: int, n_restarts: int):
        self.checkpoint_path = Path(checkpoint_path)
        self.epoch = epoch
        self.restart = restart
        self.n_restarts = n_restarts
        where = f"epoch {epoch}" + (f" of restart {restart + 1}/{n_restarts}"
                                    if n_restarts > 1 else "")
        super().__init__(
            f"training interrupted after {where}; the state is saved in "
            f"{str(self.checkpoint_path)!r}: continue with fit(X, resume="
            f"{str(self.checkpoint_path)!r}) on the same data"
        )


def locked(path: str | os.PathLike | None):
    """Context manager: hold the lock on the checkpoint ``path`` (``None``: no-op) for a
    fit; raises :class:`mogsgd._files.PathLockedError` (an ``OSError``) at once when
    another fit holds it.  Re-entrant within a process (the CLI takes it too)."""
    return lock_paths(path, what="fit (checkpoint)")


def data_fingerprint(X: np.ndarray) -> dict:
    """Shape, dtype and SHA-256 of the bytes of ``X`` (as validated), to recognise the data."""
    a = np.ascontiguousarray(X)
    digest = hashlib.sha256(a.view(np.uint8).reshape(-1)).hexdigest()
    return {"n_samples": int(a.shape[0]), "n_features": int(a.shape[1]),
            "dtype": a.dtype.str, "sha256": digest}


def is_checkpoint_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` starts like a mogsgd checkpoint (cheap; used before overwriting it)."""
    try:
        check_regular_file(path, "checkpoint")  # a FIFO would block the open below
        with open(path, "rb") as fh:
            head = fh.read(200)
    except OSError:
        return False
    return f'"format": "{CHECKPOINT_FORMAT}"'.encode() in head


@dataclass
class Checkpoint:
    """A checkpoint as read back by :func:`read_checkpoint`.

    ``position`` says where the interrupted restart stands: ``rng_state`` (always,
    the RNG before its initialisation or, with ``start_params``, after it) and
    at most one of ``start_params`` / ``train_state``.
    """

    path: Path
    settings: dict
    unsaved_settings: dict
    data: dict
    center: np.ndarray
    scale: np.ndarray
    split_rng_state: dict
    n_restarts: int
    restart: int
    rng_state: dict
    start_params: MixtureParams | None
    train_state: TrainState | None
    best: dict | None
    complete: bool
    mogsgd_version: str
    format_version: int

    @property
    def epoch(self) -> int:
        """Epochs completed in the current restart."""
        return 0 if self.train_state is None else self.train_state.epoch

    def restore(self, settings: dict, rng: np.random.Generator):
        """Where a resumed fit starts: ``rng`` put back to before the validation split, and
        ``(standardiser, check_rows)`` where ``check_rows(X)`` refuses rows or ``settings``
        other than those the checkpoint was written with."""
        rng.bit_generator.state = copy.deepcopy(self.split_rng_state)

        def check_rows(X: np.ndarray) -> None:
            self.check_compatible(settings, X)

        return Standardizer(self.center, self.scale), check_rows

    def check_compatible(self, settings: dict, X: np.ndarray) -> None:
        """Refuse (``ValidationError``) data or settings other than those it was written with."""
        fp = data_fingerprint(X)
        if fp != self.data:
            d = self.data
            raise ValidationError(
                f"checkpoint {str(self.path)!r} was written while fitting other data "
                f"({d.get('n_samples')} x {d.get('n_features')} {np.dtype(d.get('dtype'))}, "
                f"sha256 {str(d.get('sha256'))[:12]}...); this X is {fp['n_samples']} x "
                f"{fp['n_features']} {np.dtype(fp['dtype'])} (sha256 {fp['sha256'][:12]}...). "
                "Resume with the same data (same rows, order and dtype)"
            )
        written = {"covariance_type": "diag", **self.settings}   # version 1: diagonal
        keys = [k for k in RESUME_SETTINGS if k in settings and k in written]
        mine, _ = encode_settings({k: settings[k] for k in keys})
        theirs, _ = encode_settings({k: written[k] for k in keys})
        differ = [k for k in keys if k in mine and k in theirs and mine[k] != theirs[k]]
        if differ:
            listing = ", ".join(f"{k}={written[k]!r} (now {settings[k]!r})"
                                for k in differ)
            raise ValidationError(
                f"checkpoint {str(self.path)!r} was written with other settings: {listing}; "
                "resume with the same settings, e.g. the estimator from "
                "SGDGaussianMixture.from_checkpoint(path)"
            )


def read_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read and verify a checkpoint file; raises ``FileNotFoundError`` or ``ModelFileError``."""
    doc = read_document(path, CHECKPOINT_FORMAT)
    body = doc["body"]
    try:
        b = decode(body, "body")
        pos = b["position"]
        ckpt = Checkpoint(
            path=Path(path), settings=b["settings"], unsaved_settings=b["unsaved_settings"],
            data=b["data"], center=b["scaler"]["center"], scale=b["scaler"]["scale"],
            split_rng_state=b["split_rng_state"], n_restarts=b["n_restarts"],
            restart=pos["restart"], rng_state=pos["rng_state"],
            start_params=pos["start_params"], train_state=pos["train_state"], best=b["best"],
            complete=b["complete"], mogsgd_version=doc["mogsgd_version"],
            format_version=doc["format_version"])
    except ModelFileError as exc:
        raise ModelFileError(f"{str(path)!r}: {exc}") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{str(path)!r}: incomplete checkpoint ({exc!r})") from None
    if not 0 <= ckpt.restart < max(ckpt.n_restarts, 1):
        raise ModelFileError(f"{str(path)!r}: restart {ckpt.restart} out of range")
    try:
        _check_checkpoint(ckpt)
    except (ValueError, TypeError) as exc:
        raise ModelFileError(f"{str(path)!r}: invalid checkpoint: {exc}") from None
    return ckpt


def _check_checkpoint(ckpt: Checkpoint) -> None:
    """Types, shapes, finiteness and signs of every decoded field (see state_checks)."""
    if not isinstance(ckpt.settings, dict) or not isinstance(ckpt.data, dict):
        raise ValueError("settings and data must be records")
    k = check_int("settings.n_components", ckpt.settings.get("n_components"), 1)
    d = check_int("data.n_features", ckpt.data.get("n_features"), 1)
    check_int("data.n_samples", ckpt.data.get("n_samples"), 1)
    check_int("n_restarts", ckpt.n_restarts, 1)
    check_scaler(ckpt.center, ckpt.scale, d)
    check_rng_state("split_rng_state", ckpt.split_rng_state)
    check_rng_state("position.rng_state", ckpt.rng_state)
    kind = ckpt.settings.get("covariance_type", "diag")   # format version 1: diag
    if ckpt.start_params is not None:
        check_params("position.start_params", ckpt.start_params, (k, d), covariance_type=kind)
    check_train_state("position.train_state", ckpt.train_state, (k, d), kind)
    if ckpt.best is not None:
        if not isinstance(ckpt.best, dict) or "params" not in ckpt.best:
            raise ValueError("best must be a record with params")
        check_params("best.params", ckpt.best["params"], (k, d), covariance_type=kind)
        check_train_state("best.state", ckpt.best.get("state"), (k, d), kind)
    if not isinstance(ckpt.complete, bool):
        raise ValueError("complete must be true or false")


def _snapshot(state: TrainState) -> TrainState:
    """A copy of ``state`` that later epochs cannot change.

    Parameters and optimiser states are immutable and the RNG state dict is
    replaced (not mutated) each epoch, so only the history lists are copied.
    """
    return TrainState(
        params=state.params, opt_state=state.opt_state, rng_state=state.rng_state,
        epoch=state.epoch, history={k: list(v) for k, v in state.history.items()},
        best_params=state.best_params, last_params=state.last_params,
        best_score=state.best_score, bad_epochs=state.bad_epochs, stopped=state.stopped,
        elapsed=state.elapsed)


class CheckpointWriter:
    """Follows a fit and writes its state to ``path``; used by ``SGDGaussianMixture.fit``.

    The estimator reports progress with :meth:`begin_restart`, :meth:`started`
    and :meth:`epoch_done` (the per-epoch callback); :meth:`save` writes the latest
    complete position, which is also what a ``KeyboardInterrupt`` saves.
    Every in-memory update replaces one reference at its end, so an interrupt
    at any instant leaves a consistent position behind.
    """

    def __init__(self, path: Path, every: int, settings: dict, X: np.ndarray, center, scale,
                 split_rng_state: dict, n_restarts: int) -> None:
        self.path = Path(path)
        self.every = every
        self.n_restarts = n_restarts
        stored, unsaved = encode_settings(settings)
        self._static = {
            "estimator": "SGDGaussianMixture",
            "settings": stored,
            "unsaved_settings": encode(unsaved),
            "data": encode(data_fingerprint(X)),
            "scaler": encode({"center": np.asarray(center), "scale": np.asarray(scale)}),
            "split_rng_state": encode(copy.deepcopy(split_rng_state)),
            "n_restarts": n_restarts,
        }
        self._position: dict[str, Any] | None = None
        self._best: dict | None = None
        self._written: tuple | None = None  # (position, complete) last written
        # encoded float histories of the current restart; they only grow, so each
        # write encodes the new epochs only
        self._history_cache: dict[str, list] = {}

    @property
    def started_any(self) -> bool:
        """Whether a restart has begun (before that there is nothing to save)."""
        return self._position is not None

    @property
    def epoch(self) -> int:
        state = None if self._position is None else self._position["train_state"]
        return 0 if state is None else state.epoch

    @property
    def restart(self) -> int:
        return 0 if self._position is None else self._position["restart"]

    def begin_restart(self, restart: int, rng: np.random.Generator, best: dict | None, *,
                      start_params: MixtureParams | None = None,
                      train_state: TrainState | None = None) -> None:
        """Restart ``restart`` begins (and the position is written): about to initialise
        from ``rng``, or, when resuming, from ``start_params`` or ``train_state``.
        ``best`` is the best finished run so far (a dict with ``params, state, history,
        score, converged, n_iter``)."""
        self._best = best
        self._history_cache = {}
        self._set({"restart": restart, "rng_state": copy.deepcopy(rng.bit_generator.state),
                   "start_params": start_params,
                   "train_state": None if train_state is None else _snapshot(train_state)})
        self.save()

    def started(self, params: MixtureParams, rng: np.random.Generator) -> None:
        """The current restart was initialised: it trains from ``params`` with ``rng`` as
        it is now."""
        self._set({**self._position, "start_params": params,
                   "rng_state": copy.deepcopy(rng.bit_generator.state)})

    def epoch_done(self, state: TrainState) -> None:
        """Per-epoch callback: remember the state; write every ``every`` epochs."""
        self._set({**self._position, "train_state": _snapshot(state)})
        if state.epoch % self.every == 0:
            self.save()

    def save(self, *, complete: bool = False) -> Path:
        """Write the latest position (atomically, replacing the previous checkpoint)."""
        if self._position is None:
            raise RuntimeError("nothing to checkpoint yet")
        if self._written is not None and self._written[0] is self._position \
                and self._written[1] == complete:
            return self.path
        body = dict(self._static)
        position = self._position
        if position["train_state"] is not None:
            state = position["train_state"]
            position = {**position, "train_state": dataclasses.replace(
                state, history=self._encoded_history(state.history))}
        body["position"] = encode(position, "position")
        body["best"] = encode(self._best, "best")
        body["complete"] = complete
        write_document(self.path, CHECKPOINT_FORMAT, body, force=True)
        self._written = (self._position, complete)
        return self.path

    def _encoded_history(self, history: dict) -> dict:
        """``encode(history)``, re-using the encodings of the epochs already written."""
        out = {}
        for key, values in history.items():
            kind, items = self._history_cache.get(key, (None, []))
            if len(items) > len(values):
                kind, items = None, []
            new = values[len(items):]
            floats = all(type(v) is float or v is None for v in new)
            if kind is None:
                kind = ("floats" if floats else "items") if values else None
            elif kind == "floats" and not floats:  # as encode() would: item by item
                kind, items, new = "items", [], values
            if kind == "floats":
                items.extend(encode_floats(new))
                out[key] = Encoded({"__floats__": list(items)})
            else:
                items.extend(encode(v, f"history.{key}") for v in new)
                out[key] = Encoded(list(items))
            self._history_cache[key] = (kind, items)
        return out

    def _set(self, position: dict) -> None:
        # one assignment, so an interrupt sees the old position or the new one
        self._position = position

    def interrupted(self) -> TrainingInterrupted:
        """Save the latest position and return the exception to raise."""
        path = self.save()
        return TrainingInterrupted(path, self.epoch, self.restart, self.n_restarts)
