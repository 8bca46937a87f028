"""Model and checkpoint files: lossless, versioned, checksummed JSON written atomically.

A file is one JSON object::

    {"format": "mogsgd-model" | "mogsgd-checkpoint",
     "format_version": 2,
     "mogsgd_version": "0.1.0",
     "created": "2026-01-01T00:00:00Z",
     "summary": {...},      # weights, means, covariances as decimals, for people; not read back
     "body": {...},         # everything that is read back
     "checksum": "sha256:..."}

Lossless: every float (scalars and arrays, float64 or float32) is stored as
``float.hex`` text, which round-trips bit for bit (infinities and -0.0 too; a
NaN is stored as ``"nan:<bits>"`` to keep its sign and payload);
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

import dataclasses
import datetime
import hashlib
import json
import numbers
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

import mogsgd
from mogsgd._files import atomic_write, loads_json, read_capped
from mogsgd.covariance import CentredStats, FullParams, OnlineState, SphericalParams, TiedParams
from mogsgd.covariance.ops import family_of
from mogsgd.em import EMStats
from mogsgd.errors import ModelFileError, ValidationError
from mogsgd.online_em import OnlineEMState
from mogsgd.optim import AdamState, MomentumState, SGDState
from mogsgd.params import MixtureParams
from mogsgd.state_checks import check_fitted_state
from mogsgd.train import TrainState

__all__ = [
    "register_estimator",
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
#: Version 2 added the covariance types (``covariance_type`` in the settings, the records
#: ``FullParams``, ``TiedParams``, ``SphericalParams``, ``OnlineState``, ``CentredStats``);
#: a version-1 file is a diagonal model and loads unchanged.
FORMAT_VERSION = 2
MODEL_FORMAT = "mogsgd-model"
CHECKPOINT_FORMAT = "mogsgd-checkpoint"
_FORMATS = (MODEL_FORMAT, CHECKPOINT_FORMAT)
_WHAT = {MODEL_FORMAT: "model", CHECKPOINT_FORMAT: "checkpoint"}
#: Largest model or checkpoint file read (a model with per-epoch parameter paths of a
#: large mixture is a few MiB; this only stops a wrong path from filling the memory).
MAX_FILE_BYTES = 1 << 30


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
    "OnlineEMState": (OnlineEMState, *_namedtuple_codec(OnlineEMState)),
    "EMStats": (EMStats, *_namedtuple_codec(EMStats)),
    # the other covariance families (format version 2); create() validates on reading
    "FullParams": (FullParams, lambda p: p._asdict(), lambda f: FullParams.create(**f)),
    "TiedParams": (TiedParams, lambda p: p._asdict(), lambda f: TiedParams.create(**f)),
    "SphericalParams": (SphericalParams, lambda p: p._asdict(),
                        lambda f: SphericalParams.create(**f)),
    "OnlineState": (OnlineState, *_namedtuple_codec(OnlineState)),
    "CentredStats": (CentredStats, *_namedtuple_codec(CentredStats)),
    "TrainState": (TrainState,
                   lambda s: {f.name: getattr(s, f.name) for f in dataclasses.fields(s)},
                   lambda f: TrainState(**f)),
}


_UINT = {4: np.uint32, 8: np.uint64}


def _hex_floats(a: np.ndarray) -> list[str]:
    """``float.hex`` of every element; a NaN as ``"nan:<bits>"`` to keep its sign and payload."""
    flat = a.ravel()
    data = [x.hex() for x in flat.tolist()]
    if "nan" in data:
        for i in np.flatnonzero(np.isnan(flat)):
            data[i] = f"nan:{int(flat[i:i + 1].view(_UINT[a.dtype.itemsize])[0]):x}"
    return data


def _hex_float(x: float) -> str:
    text = x.hex()
    return text if text != "nan" else _hex_floats(np.array([x]))[0]


def _unhex_floats(data: list, dtype: np.dtype, where: str) -> np.ndarray:
    if not isinstance(data, list):
        raise ModelFileError(f"{where}: array data must be a list")
    out = np.array([_decode_float(x, where) if not str(x).startswith("nan:") else np.nan
                    for x in data], dtype=dtype)
    for i, x in enumerate(data):
        if str(x).startswith("nan:"):
            out[i:i + 1].view(_UINT[dtype.itemsize])[0] = int(x[4:], 16)
    return out


def _encode_array(a: np.ndarray, where: str) -> dict:
    if a.dtype.kind == "f" and a.dtype.itemsize in _UINT:
        data = _hex_floats(a)
    elif a.dtype.kind in "biu":
        data = a.ravel().tolist()
    else:
        raise _Unencodable(where, a)
    return {"__ndarray__": a.dtype.str, "shape": list(a.shape), "data": data}


class Encoded:
    """A value already in the form :func:`encode` gives (lets writers cache encodings)."""

    __slots__ = ("json",)

    def __init__(self, json_value: Any) -> None:
        self.json = json_value


def encode_floats(values: list) -> list:
    """The items of a ``"__floats__"`` record: hex text per float, ``None`` kept."""
    return [None if v is None else _hex_float(v) for v in values]


def encode(obj: Any, where: str = "$") -> Any:
    """A JSON-ready copy of ``obj`` from which :func:`decode` rebuilds it bit for bit.

    Handles None, bool, int, float, str, lists, tuples, dicts with string keys,
    NumPy scalars, arrays and dtypes, paths, and the types in :data:`_TYPES`.
    Raises ``TypeError`` naming the JSON path of anything else.
    """
    if obj is None or isinstance(obj, bool | str):
        return obj
    if isinstance(obj, Encoded):
        return obj.json
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, numbers.Integral):
        return int(obj)
    if type(obj) is float:
        return {"__float__": _hex_float(obj)}
    if isinstance(obj, np.floating):
        return {"__float__": _hex_floats(np.array([obj]))[0], "dtype": obj.dtype.str}
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
        if obj and all(type(v) is float or v is None for v in obj):
            # per-epoch histories: one record for the list, not one per number
            return {"__floats__": encode_floats(obj)}
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
            dtype = np.dtype(obj.get("dtype", "<f8"))
            value = _unhex_floats([obj["__float__"]], dtype, where)[0]
            return value if "dtype" in obj else float(value)
        if tag == "__floats__":
            items = obj["__floats__"]
            if not isinstance(items, list):
                raise ModelFileError(f"{where}: __floats__ must hold a list")
            return [None if x is None else float(_unhex_floats([x], np.dtype("<f8"), where)[0])
                    for x in items]
        if tag == "__ndarray__":
            dtype = np.dtype(obj["__ndarray__"])
            if dtype.kind == "f" and dtype.itemsize in _UINT:
                data = _unhex_floats(obj["data"], dtype, where)
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
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
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


def atomic_write_text(path: str | os.PathLike, text: str, *, force: bool = False) -> Path:
    """Write ``text`` (UTF-8) to ``path`` so that readers see the old file or the new one.

    :func:`mogsgd._files.atomic_write` provides the temporary file next to
    ``path`` and the final move (``os.replace`` with ``force=True``; without it
    a no-clobber link, so an existing file is never replaced); the text is
    flushed and fsync-ed before the move.  On any error, ``KeyboardInterrupt``
    included, the temporary file is removed and ``path`` is untouched.
    """
    with atomic_write(path, force=force) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
            _write_text(fh, text)
            fh.flush()
            os.fsync(fh.fileno())
    return Path(path)


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
    # models are indented for reading; checkpoints, rewritten every few epochs, are compact
    indent = 1 if kind == MODEL_FORMAT else None
    text = json.dumps(doc, indent=indent, ensure_ascii=True, allow_nan=False) + "\n"
    return atomic_write_text(path, text, force=force)


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
        raw = read_capped(p, f"{what} file", MAX_FILE_BYTES)
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} file {str(p)!r} does not exist") from None
    try:
        doc = loads_json(raw, f"{str(p)!r}")
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        if raw.lstrip()[:1] == b"{" and b'"mogsgd-' in raw[:200]:
            raise ModelFileError(
                f"{str(p)!r} is a truncated or corrupt mogsgd {what} file ({exc}); "
                f"restore it from a backup or write it again"
            ) from None
        raise ModelFileError(
            f"{str(p)!r} is not a mogsgd {what} file (it is not JSON text: {exc})"
        ) from None
    except ValueError as exc:  # nested too deep, or a number too long to read
        raise ModelFileError(f"{str(p)!r} is not a mogsgd {what} file: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") not in _FORMATS:
        raise ModelFileError(
            f"{str(p)!r} is not a mogsgd {what} file (no \"format\": \"{kind}\" header)"
        )
    if doc["format"] != kind:
        hint = ("resume training from it with fit(X, resume=path)" if kind == MODEL_FORMAT
                else "load it with mogsgd.model_io.load_model, or continue training it with "
                "warm_start=True")
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
        a = np.asarray(a, float)
        if a.ndim > 1:
            return [plain(row) for row in a]
        return [x if np.isfinite(x) else str(x) for x in a.ravel().tolist()]

    family = family_of(params)
    k, d = params.n_components, params.n_features
    with np.errstate(over="ignore", under="ignore"):
        covariances = family.covariances(params)
    return {"n_components": k, "n_features": d, "covariance_type": family.name,
            "weights": plain(params.weights),
            "means": plain(params.means),
            "variances" if family.name == "diag" else "covariances": plain(covariances),
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
    fitted = estimator.export_fit_state()   # refuses an unfitted estimator
    settings, unsaved = encode_settings(estimator.get_params(deep=False))
    if unsaved:
        warnings.warn(
            f"not saved (they come back as None): {', '.join(sorted(unsaved))}",
            UserWarning, stacklevel=2,
        )
    body = {
        "estimator": estimator.model_name,   # SGDMixture's files load as the estimator
        "settings": settings,
        "unsaved_settings": unsaved,
        "fitted": encode(fitted, "fitted"),
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


#: Estimator classes model files can hold, by name (:func:`register_estimator`).
_ESTIMATORS: dict[str, type] = {}


def register_estimator(cls: type) -> type:
    """Let :func:`load_model` build ``cls`` (the estimator registers itself on import, so
    persistence never imports the estimator).  ``cls`` has ``export_fit_state()`` and
    ``restore_fit_state(fitted, origin)``."""
    _ESTIMATORS[cls.__name__] = cls
    return cls


def _estimator_class(name) -> type | None:
    """The registered class ``name``; the package's lazily loaded estimator is loaded (and
    so registered) on first use."""
    if isinstance(name, str) and name not in _ESTIMATORS and name in mogsgd.__all__:
        getattr(mogsgd, name)
    return _ESTIMATORS.get(name) if isinstance(name, str) else None


def load_model(path: str | os.PathLike, *, n_features: int | None = None, as_class=None):
    """Load a model written by :func:`save_model`; returns a fitted ``SGDGaussianMixture``
    (or ``as_class``, a class whose ``model_name`` is the one the file records, such as
    :class:`mogsgd.mixture.SGDMixture`: the command line's, without scikit-learn).

    The loaded estimator scores, predicts and samples exactly as the saved one.
    With ``n_features`` (the data's feature count) a model fitted on another
    number of features is refused with a :class:`~mogsgd.errors.ValidationError`
    naming both counts.  Later calls with data of the wrong width are refused
    the same way, naming the file.

    Raises ``FileNotFoundError`` or :class:`~mogsgd.errors.ModelFileError`
    (truncated, corrupt, foreign, checkpoint instead of model, newer format).
    """
    doc = read_document(path, MODEL_FORMAT)
    body = doc["body"]
    cls = as_class if as_class is not None and body.get("estimator") == as_class.model_name \
        else None if as_class is not None else _estimator_class(body.get("estimator"))
    if cls is None:
        raise ModelFileError(
            f"{str(path)!r} holds a {body.get('estimator')!r}, not an SGDGaussianMixture"
        )
    settings = _decode_body(path, body.get("settings"), "settings")
    fitted = _decode_body(path, body.get("fitted"), "fitted")
    if not isinstance(settings, dict) or not isinstance(fitted, dict):
        raise ModelFileError(f"{str(path)!r}: settings and fitted state must be records")
    # a checkpoint file belongs to the fit that wrote it: a loaded model never writes to it
    settings = {**settings, "checkpoint_path": None} if "checkpoint_path" in settings \
        else settings
    try:
        estimator = cls(**settings)
    except TypeError as exc:
        raise ModelFileError(f"{str(path)!r}: unknown settings ({exc})") from None
    try:
        check_fitted_state(fitted, estimator.n_components, estimator.covariance_type)
    except ValueError as exc:
        raise ModelFileError(f"{str(path)!r}: invalid fitted state: {exc}") from None
    try:
        estimator.restore_fit_state(fitted, origin=f"the model loaded from {str(path)!r}")
    except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
        raise ModelFileError(f"{str(path)!r}: inconsistent fitted state ({exc})") from None
    if n_features is not None and n_features != estimator.n_features_in_:
        raise ValidationError(
            f"the model in {str(path)!r} was fitted on {estimator.n_features_in_} features "
            f"but the data has {n_features}; use a model fitted on data with {n_features} "
            "features, or select the columns the model was fitted on"
        )
    return estimator
