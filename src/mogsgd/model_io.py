"""Model and checkpoint files: lossless, versioned, checksummed JSON written atomically.

A file is one JSON object::

    {"format": "mogsgd-model" | "mogsgd-checkpoint",
     "format_version": 1,
     "mogsgd_version": "0.1.0",
     "created": "2026-01-01T00:00:00Z",
     "summary": {...},      # weights, means, variances as decimals, for people; not read back
     "body": {...},         # everything that is read back
     "checksum": "sha256:..."}

Lossless: every float (scalars and arrays, float64 or float32) is stored as
``float.hex`` text, which round-trips bit for bit, NaN and infinities included;
arrays keep their dtype and shape; Python ints (the 128-bit PCG64 state
included) are JSON integers.  Only the types in :data:`_TYPES` are written, and
only those are read back — nothing in a file is ever executed.

Safe: the checksum (SHA-256 of the canonical JSON of everything else) catches
truncation and corruption; a file of another kind, of a newer format or not
from mogsgd at all is refused with :class:`~mogsgd.errors.ModelFileError`.
Writes go to a temporary file in the target's directory, are flushed to disk,
then moved into place in one step (:func:`atomic_write_text`), so an
interrupted save leaves the previous file intact; an existing file is only
replaced with ``force=True``.

Public entry points: :func:`save_model`, :func:`load_model` (also
``SGDGaussianMixture.save`` / ``SGDGaussianMixture.load``) and
:func:`read_model_info`.  Checkpoints (:mod:`mogsgd.checkpoint`) use the same
envelope through :func:`write_document` / :func:`read_document`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import json
import numbers
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from mogsgd.errors import ModelFileError, ValidationError
from mogsgd.optim import AdamState, MomentumState, SGDState
from mogsgd.params import MixtureParams
from mogsgd.train import TrainState

__all__ = [
    "FORMAT_VERSION",
    "MODEL_FORMAT",
    "CHECKPOINT_FORMAT",
    "save_model",
    "load_model",
    "read_model_info",
    "write_document",
    "read_document",
    "encode",
    "decode",
    "encode_settings",
    "atomic_write_text",
]

#: Version of the file layout written by this mogsgd; files with a larger number are refused.
FORMAT_VERSION = 1
MODEL_FORMAT = "mogsgd-model"
CHECKPOINT_FORMAT = "mogsgd-checkpoint"
_FORMATS = (MODEL_FORMAT, CHECKPOINT_FORMAT)
_WHAT = {MODEL_FORMAT: "model", CHECKPOINT_FORMAT: "checkpoint"}


def _package_version() -> str:
    from mogsgd import __version__

    return __version__


# ---------------------------------------------------------------- the codec
class _Unencodable(TypeError):
    def __init__(self, where: str, value: Any) -> None:
        super().__init__(f"{where}: cannot store a {type(value).__name__} ({value!r:.80})")
        self.where = where


def _namedtuple_codec(cls):
    return (lambda obj: obj._asdict(), lambda fields: cls(**fields))


#: Structured types written to files: tag -> (class, to_fields, from_fields).
_TYPES: dict[str, tuple[type, Any, Any]] = {
    "MixtureParams": (MixtureParams,
                      lambda p: {"means": p.means, "log_sigma": p.log_sigma, "logits": p.logits},
                      lambda f: MixtureParams(**f)),
    "SGDState": (SGDState, *_namedtuple_codec(SGDState)),
    "MomentumState": (MomentumState, *_namedtuple_codec(MomentumState)),
    "AdamState": (AdamState, *_namedtuple_codec(AdamState)),
    "TrainState": (TrainState,
                   lambda s: {f.name: getattr(s, f.name) for f in dataclasses.fields(s)},
                   lambda f: TrainState(**f)),
}


def _encode_array(a: np.ndarray, where: str) -> dict:
    if a.dtype.kind == "f" and a.dtype.itemsize <= 8:
        data = [float(x).hex() for x in a.ravel().tolist()]
    elif a.dtype.kind in "biu":
        data = a.ravel().tolist()
    else:
        raise _Unencodable(where, a)
    return {"__ndarray__": a.dtype.str, "shape": list(a.shape), "data": data}


def encode(obj: Any, where: str = "$") -> Any:
    """A JSON-ready copy of ``obj`` from which :func:`decode` rebuilds it bit for bit.

    Handles None, bool, int, float, str, lists, tuples, dicts with string keys,
    NumPy scalars, arrays and dtypes, paths, and the types in :data:`_TYPES`.
    Raises ``TypeError`` naming the JSON path of anything else.
    """
    if obj is None or isinstance(obj, bool | str):
        return obj
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, numbers.Integral):
        return int(obj)
    if isinstance(obj, float | np.floating):
        out = {"__float__": float(obj).hex()}
        if isinstance(obj, np.floating):
            out["dtype"] = obj.dtype.str
        return out
    if isinstance(obj, np.ndarray):
        return _encode_array(obj, where)
    if isinstance(obj, np.dtype) or (isinstance(obj, type) and issubclass(obj, np.generic)):
        return {"__dtype__": np.dtype(obj).str}
    if isinstance(obj, os.PathLike):
        return {"__path__": os.fspath(obj)}
    for tag, (cls, to_fields, _) in _TYPES.items():
        if type(obj) is cls:
            fields = to_fields(obj)
            return {"__type__": tag,
                    "fields": {k: encode(v, f"{where}.{k}") for k, v in fields.items()}}
    if isinstance(obj, list):
        return [encode(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, tuple):
        return {"__tuple__": [encode(v, f"{where}[{i}]") for i, v in enumerate(obj)]}
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, str) or k.startswith("__"):
                raise _Unencodable(f"{where} key", k)
            out[k] = encode(v, f"{where}.{k}")
        return out
    raise _Unencodable(where, obj)


def _decode_float(text: str, where: str) -> float:
    try:
        return float.fromhex(text)
    except (TypeError, ValueError):
        raise ModelFileError(f"{where}: {text!r} is not a hexadecimal float") from None


def decode(obj: Any, where: str = "$") -> Any:
    """Inverse of :func:`encode`; raises :class:`ModelFileError` on anything unexpected."""
    if obj is None or isinstance(obj, bool | int | str):
        return obj
    if isinstance(obj, float):  # never written: every float is stored as hex text
        raise ModelFileError(f"{where}: bare decimal number {obj!r}; floats are stored as hex")
    if isinstance(obj, list):
        return [decode(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if not isinstance(obj, dict):
        raise ModelFileError(f"{where}: unexpected JSON value {obj!r:.80}")
    tags = [k for k in obj if k.startswith("__")]
    if not tags:
        return {k: decode(v, f"{where}.{k}") for k, v in obj.items()}
    tag = tags[0]
    try:
        if tag == "__float__":
            value = _decode_float(obj["__float__"], where)
            return np.dtype(obj["dtype"]).type(value) if "dtype" in obj else value
        if tag == "__ndarray__":
            dtype = np.dtype(obj["__ndarray__"])
            if dtype.kind == "f":
                data = [_decode_float(x, where) for x in obj["data"]]
            elif dtype.kind in "biu":
                data = obj["data"]
            else:
                raise ModelFileError(f"{where}: arrays of dtype {dtype} are not stored")
            return np.array(data, dtype=dtype).reshape(obj["shape"])
        if tag == "__dtype__":
            return np.dtype(obj["__dtype__"]).type
        if tag == "__path__":
            return Path(obj["__path__"])
        if tag == "__tuple__":
            return tuple(decode(v, f"{where}[{i}]") for i, v in enumerate(obj["__tuple__"]))
        if tag == "__type__" and obj["__type__"] in _TYPES:
            _, _, from_fields = _TYPES[obj["__type__"]]
            fields = {k: decode(v, f"{where}.{k}") for k, v in obj["fields"].items()}
            return from_fields(fields)
    except ModelFileError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ModelFileError(f"{where}: malformed {tag} record ({exc})") from None
    raise ModelFileError(f"{where}: unknown record type {obj.get(tag)!r} ({tag})")


def encode_settings(settings: dict) -> tuple[dict, dict[str, str]]:
    """Encode ``get_params()``; values that cannot be stored (a callback, a Generator given
    as ``random_state``) are left out and returned as ``{name: repr}``."""
    stored, unsaved = {}, {}
    for name, value in settings.items():
        try:
            stored[name] = encode(value, f"settings.{name}")
        except TypeError:
            unsaved[name] = repr(value)[:200]
    return stored, unsaved


# ------------------------------------------------------------ atomic writes
def _write_text(fh, text: str) -> None:
    """Write ``text`` to an open file (a separate function so tests can make it fail midway)."""
    fh.write(text)


def _check_target(path: Path, force: bool, what: str) -> None:
    if path.is_dir():
        raise IsADirectoryError(f"{str(path)!r} is a directory; give a file name for the {what}")
    if path.exists() and not force:
        raise FileExistsError(
            f"{str(path)!r} already exists; refusing to overwrite it (pass force=True to "
            "replace it, or choose another file name)"
        )
    parent = path.parent
    if not parent.is_dir():
        raise FileNotFoundError(
            f"cannot write {str(path)!r}: directory {str(parent)!r} does not exist"
        )


def atomic_write_text(path: str | os.PathLike, text: str, *, force: bool = False,
                      what: str = "file") -> Path:
    """Write ``text`` (UTF-8) to ``path`` so that readers see the old file or the new one.

    The text goes to a temporary file in the same directory, is flushed and
    fsync-ed, then moved onto ``path`` with ``os.replace`` (``force=True``) or a
    hard link that fails if ``path`` exists (``force=False``: nothing is ever
    replaced, even a file that appeared meanwhile).  On any error, including
    ``KeyboardInterrupt``, the temporary file is removed and ``path`` is untouched.
    """
    target = Path(path)
    _check_target(target, force, what)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.",
                                    suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            _write_text(fh, text)
            fh.flush()
            os.fsync(fh.fileno())
        # mkstemp makes the file private; give it the mode a plain open() would
        os.chmod(tmp, target.stat().st_mode & 0o7777 if target.exists() else _default_mode())
        if force:
            os.replace(tmp, target)
        else:
            _link_no_clobber(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return target


def _default_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _link_no_clobber(tmp: Path, target: Path) -> None:
    try:
        os.link(tmp, target)
    except FileExistsError:
        raise FileExistsError(
            f"{str(target)!r} appeared while it was being written; refusing to overwrite it "
            "(pass force=True to replace it)"
        ) from None
    except OSError:  # file systems without hard links
        if target.exists():
            raise FileExistsError(
                f"{str(target)!r} already exists; refusing to overwrite it (pass force=True)"
            ) from None
        os.replace(tmp, target)


# -------------------------------------------------------------- the envelope
def _canonical(doc: dict) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode("ascii")


def _checksum(doc: dict) -> str:
    rest = {k: v for k, v in doc.items() if k != "checksum"}
    return "sha256:" + hashlib.sha256(_canonical(rest)).hexdigest()


def write_document(path: str | os.PathLike, kind: str, body: dict, *, summary: dict | None = None,
                   force: bool = False) -> Path:
    """Write an encoded ``body`` in the versioned, checksummed envelope (see module doc)."""
    if kind not in _FORMATS:
        raise ValueError(f"unknown file kind {kind!r}")
    doc = {
        "format": kind,
        "format_version": FORMAT_VERSION,
        "mogsgd_version": _package_version(),
        "created": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "summary": summary or {},
        "body": body,
    }
    doc["checksum"] = _checksum(doc)
    text = json.dumps(doc, indent=1, ensure_ascii=True, allow_nan=False) + "\n"
    return atomic_write_text(path, text, force=force, what=_WHAT[kind])


def read_document(path: str | os.PathLike, kind: str) -> dict:
    """Read and verify a file written by :func:`write_document`; returns the whole document.

    Raises ``FileNotFoundError`` for a missing file and :class:`ModelFileError`
    for one that is not valid JSON (truncated, binary), not from mogsgd, of the
    other kind, of a newer format version, or whose checksum does not match.
    """
    what = _WHAT[kind]
    p = Path(path)
    if p.is_dir():
        raise ModelFileError(f"{str(p)!r} is a directory, not a mogsgd {what} file")
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} file {str(p)!r} does not exist") from None
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        if raw.lstrip()[:1] == b"{" and b'"mogsgd-' in raw[:200]:
            raise ModelFileError(
                f"{str(p)!r} is a truncated or corrupt mogsgd {what} file ({exc}); "
                f"restore it from a backup or write it again"
            ) from None
        raise ModelFileError(
            f"{str(p)!r} is not a mogsgd {what} file (it is not JSON text: {exc})"
        ) from None
    if not isinstance(doc, dict) or doc.get("format") not in _FORMATS:
        raise ModelFileError(
            f"{str(p)!r} is not a mogsgd {what} file (no \"format\": \"{kind}\" header)"
        )
    if doc["format"] != kind:
        hint = ("resume training from it with fit(X, resume=path)" if kind == MODEL_FORMAT
                else "load it with mogsgd.model_io.load_model")
        raise ModelFileError(
            f"{str(p)!r} is a mogsgd {_WHAT[doc['format']]} file, not a {what} file; {hint}"
        )
    version = doc.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ModelFileError(f"{str(p)!r} has an invalid format_version {version!r}")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{str(p)!r} uses {what} format version {version} (written by mogsgd "
            f"{doc.get('mogsgd_version', '?')}); this mogsgd {_package_version()} reads "
            f"versions up to {FORMAT_VERSION}: upgrade mogsgd to read it"
        )
    if doc.get("checksum") != _checksum(doc):
        raise ModelFileError(
            f"{str(p)!r} is corrupt: its checksum does not match its content (was it edited "
            "or damaged?); restore it from a backup or write it again"
        )
    if not isinstance(doc.get("body"), dict):
        raise ModelFileError(f"{str(p)!r} has no body")
    return doc


def _decode_body(path, body: dict, where: str = "body") -> Any:
    try:
        return decode(body, where)
    except ModelFileError as exc:
        raise ModelFileError(f"{str(path)!r}: {exc}") from None
    except (ValidationError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{str(path)!r}: inconsistent {where}: {exc}") from None


def _summary(params: MixtureParams) -> dict:
    def plain(a):
        return [x if np.isfinite(x) else str(x) for x in np.asarray(a, float).ravel().tolist()]

    k, d = params.n_components, params.n_features
    return {"n_components": k, "n_features": d,
            "weights": plain(params.weights),
            "means": [plain(row) for row in params.means],
            "variances": [plain(row) for row in params.variances],
            "note": "decimal copy for reading; the exact values are in body"}


# ------------------------------------------------------------------- models
def save_model(estimator, path: str | os.PathLike, *, force: bool = False) -> Path:
    """Save a fitted :class:`~mogsgd.estimator.SGDGaussianMixture` to ``path`` (JSON).

    Everything is kept bit for bit: the parameters (data units and standardised),
    the standardiser, the training state (so ``warm_start`` / ``partial_fit``
    continue exactly), ``history_``, the fit attributes and the settings
    (``get_params()``).  Settings that cannot be stored (a ``callback``
    function, a ``Generator`` as ``random_state``) are left out with a
    ``UserWarning`` and come back as ``None``.

    Refuses to replace an existing file unless ``force=True``
    (``FileExistsError``); the write is atomic.  Returns the path written.
    """
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(estimator, "params_")
    settings, unsaved = encode_settings(estimator.get_params(deep=False))
    if unsaved:
        warnings.warn(
            f"not saved (they come back as None): {', '.join(sorted(unsaved))}",
            UserWarning, stacklevel=2,
        )
    body = {
        "estimator": type(estimator).__name__,
        "settings": settings,
        "unsaved_settings": unsaved,
        "fitted": encode(estimator._get_fit_state(), "fitted"),
    }
    return write_document(path, MODEL_FORMAT, body, summary=_summary(estimator.params_),
                          force=force)


def read_model_info(path: str | os.PathLike) -> dict:
    """Header of a model file without building the estimator: ``format``,
    ``format_version``, ``mogsgd_version``, ``created``, ``n_components``,
    ``n_features`` and ``settings`` (decoded).  Verifies the file like :func:`load_model`."""
    doc = read_document(path, MODEL_FORMAT)
    settings = _decode_body(path, doc["body"].get("settings", {}), "settings")
    fitted = doc["body"].get("fitted", {})
    n_features = fitted.get("n_features_in_") if isinstance(fitted, dict) else None
    return {k: doc.get(k) for k in ("format", "format_version", "mogsgd_version", "created")} | {
        "n_components": settings.get("n_components"), "n_features": n_features,
        "settings": settings}


def load_model(path: str | os.PathLike, *, n_features: int | None = None):
    """Load a model written by :func:`save_model`; returns a fitted ``SGDGaussianMixture``.

    The loaded estimator scores, predicts and samples exactly as the saved one.
    With ``n_features`` (the data's feature count) a model fitted on another
    number of features is refused with a :class:`~mogsgd.errors.ValidationError`
    naming both counts.  Later calls with data of the wrong width are refused
    the same way, naming the file.

    Raises ``FileNotFoundError`` or :class:`~mogsgd.errors.ModelFileError`
    (truncated, corrupt, foreign, checkpoint instead of model, newer format).
    """
    from mogsgd.estimator import SGDGaussianMixture

    doc = read_document(path, MODEL_FORMAT)
    body = doc["body"]
    if body.get("estimator") != SGDGaussianMixture.__name__:
        raise ModelFileError(
            f"{str(path)!r} holds a {body.get('estimator')!r}, not an SGDGaussianMixture"
        )
    settings = _decode_body(path, body.get("settings"), "settings")
    fitted = _decode_body(path, body.get("fitted"), "fitted")
    if not isinstance(settings, dict) or not isinstance(fitted, dict):
        raise ModelFileError(f"{str(path)!r}: settings and fitted state must be records")
    try:
        estimator = SGDGaussianMixture(**settings)
    except TypeError as exc:
        raise ModelFileError(f"{str(path)!r}: unknown settings ({exc})") from None
    try:
        estimator._set_fit_state(fitted)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{str(path)!r}: inconsistent fitted state ({exc})") from None
    estimator._source = f"the model loaded from {str(path)!r}"
    if n_features is not None and n_features != estimator.n_features_in_:
        raise ValidationError(
            f"the model in {str(path)!r} was fitted on {estimator.n_features_in_} features "
            f"but the data has {n_features}; use a model fitted on data with {n_features} "
            "features, or select the columns the model was fitted on"
        )
    return estimator
