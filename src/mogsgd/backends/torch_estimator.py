"""``SGDGaussianMixture`` on the torch backend: the estimator's fit, partial_fit and inference
for ``device="cpu"/"cuda"`` or tensor input.

Like the estimator itself this adds no math.  It follows
:meth:`mogsgd.estimator.SGDGaussianMixture.fit` step by step, with the data on
the device throughout: validation (the estimator's own checks on a sample of
rows, plus a full finiteness check on the device), standardisation, the
validation split (``torch.randperm``), initialisation, training
(:func:`mogsgd.backends.torch_train.train_torch`) and the final log-likelihood.
Results land on the estimator's public attributes as NumPy, exactly as on the
NumPy path; inference returns arrays of the input's kind (a tensor for a tensor,
a CuPy array for a CuPy array, NumPy otherwise).

Two steps look at a sample of at most :data:`SAMPLE_ROWS` evenly strided rows
copied to the host, which equals all rows for smaller data: fitting the
standardiser (:class:`mogsgd.estimator.Standardizer`; it only conditions the
problem, and results are mapped back to data units exactly, eq. 33) and
k-means++ initialisation, which samples 20,000 rows on the NumPy path too.
Not on this path: ``solver="em"``/``"online_em"``, checkpoints and ``resume``.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.utils.validation import check_is_fitted

from mogsgd._random import check_random_state
from mogsgd.backends import import_torch, is_cuda_dlpack, is_torch_tensor
from mogsgd.backends.torch_ops import log_prob, log_resp, nll, to_torch
from mogsgd.backends.torch_train import seeded_randperm, train_torch
from mogsgd.errors import ConvergenceWarning, ValidationError
from mogsgd.init import init_params
from mogsgd.train import TrainConfig

torch = import_torch()

__all__ = ["fit", "partial_fit", "infer", "resolve_device", "SAMPLE_ROWS", "INIT_ROWS"]

#: Rows (evenly strided) copied to the host to validate messages and fit the standardiser.
SAMPLE_ROWS = 1 << 20

#: Rows the initialisation sees, drawn as on the NumPy path (``init_params(max_rows=...)``).
INIT_ROWS = 20_000


# ---------------------------------------------------------------- device and data
def resolve_device(device, X):
    """The ``torch.device`` a call computes on: ``device`` if given, else the input's."""
    if device is None:
        if is_torch_tensor(X):
            return X.device
        return torch.from_dlpack(X).device
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValidationError(f"device={device!r} is not a torch device ({exc}); use None, "
                              "'cpu-numpy', 'cpu', 'cuda' or 'cuda:N'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValidationError(f"device={device!r} but torch {torch.__version__} sees no CUDA "
                              "device; use device='cpu' (torch on CPU) or None (NumPy)")
    return dev


def _to_torch_dtype(dtype) -> torch.dtype:
    return torch.float32 if np.dtype(dtype) == np.float32 else torch.float64


def _as_tensor(X, device):
    """``X`` as a tensor on ``device``: tensors and CUDA DLPack arrays without a host copy,
    anything else through NumPy."""
    if is_torch_tensor(X):
        return X.detach().to(device)
    if is_cuda_dlpack(X):
        return torch.from_dlpack(X).to(device)
    return None


def _host_sample(X) -> np.ndarray:
    """At most :data:`SAMPLE_ROWS` evenly strided rows of ``X`` as NumPy (all rows if fewer)."""
    if X.dtype == torch.bfloat16:  # NumPy has no bfloat16
        X = X.float()
    if X.ndim == 0:
        return X.cpu().numpy()
    step = max(1, -(-X.shape[0] // SAMPLE_ROWS))
    return X[::step].cpu().numpy()


def _checked(X, device, dtype: np.dtype, check):
    """``(X on device in dtype, host sample)``; ``check(array) -> array`` is the estimator's
    own validation, applied to the host sample (to all of ``X`` for host input), and
    non-finite values anywhere are reported as that check reports them."""
    tensor = _as_tensor(X, device)
    if tensor is None:  # host input: validate all of it with the NumPy checks
        host = check(X)
        host = host if host.flags.writeable else host.copy()  # torch wants writable memory
        tensor = torch.from_numpy(host)
        return tensor.to(device), _host_sample(tensor)
    if tensor.is_complex():
        raise ValidationError(f"Complex data not supported: X must be real-valued, got "
                              f"{tensor.dtype}")
    sample = check(_host_sample(tensor))
    out = tensor.to(_to_torch_dtype(dtype))
    bad = ~torch.isfinite(out)
    if bool(bad.any()):
        first = int(bad.any(dim=1).nonzero()[0, 0])
        check(tensor[: first + 1].cpu().numpy())  # raises with the row and column
        raise ValidationError(f"X contains non-finite values (first at row {first})")
    return out, sample


def _output(out, X):
    """Inference results in the input's kind: a tensor for a tensor (on its device), a CuPy
    array for a CuPy array, NumPy otherwise."""
    if is_torch_tensor(X):
        return out.to(X.device)
    if is_cuda_dlpack(X) and type(X).__module__.split(".")[0] == "cupy":
        import cupy

        return cupy.from_dlpack(out)
    return out.cpu().numpy()


def _transform(scaler, X):
    """:meth:`Standardizer.transform` on the device: ``(x - c) / s`` in float64, cast back."""
    center = torch.as_tensor(scaler.center, device=X.device)
    scale = torch.as_tensor(scaler.scale, device=X.device)
    return ((X - center) / scale).to(X.dtype)


# ---------------------------------------------------------------------- fitting
def fit(est, X, *, resume=None):
    """:meth:`SGDGaussianMixture.fit` on the torch backend; returns ``est``."""
    config = est._check_hyperparameters()
    if est.solver != "sgd":
        raise ValidationError(f"solver={est.solver!r} runs on the NumPy path only; use "
                              "solver='sgd' with a device, or device='cpu-numpy'")
    if resume is not None or est.checkpoint_path is not None:
        raise ValidationError("checkpoints (checkpoint_path, resume) are not supported on a "
                              "device yet; fit with device='cpu-numpy' to use them")
    device = resolve_device(est.device, X)
    X, sample = _checked(X, device, est._compute_dtype(), est._check_fit_data)
    rng = check_random_state(est.random_state)
    continuing = est.warm_start and hasattr(est, "params_")
    if continuing and X.shape[1] != est.n_features_in_:
        raise ValidationError(f"X has {X.shape[1]} features, but {type(est).__name__} is "
                              f"expecting {est.n_features_in_} features as input")
    if not continuing:
        from mogsgd.estimator import Standardizer

        est.n_features_in_ = X.shape[1]
        est._scaler = Standardizer.fit(sample, est.standardize)
    est._source = None
    Z = _transform(est._scaler, X)
    n_val = est._n_validation(len(Z))
    order = seeded_randperm(rng, device)(len(Z))
    Z_val = Z[order[:n_val]] if n_val else None
    Z_train = Z[order[n_val:]] if n_val else Z
    del order

    warm = continuing and getattr(est, "_state", None) is not None
    user = None if warm else est._user_init(est._scaler)
    best = None
    for _ in range(1 if warm or user is not None else est.n_init):
        state = est._state if warm else None
        start = None if warm else user if user is not None else _init(est, Z_train, rng)
        run = _run_sgd(est, Z_train, Z_val, config, rng, params=start, state=state)
        if best is None or run["score"] < best["score"]:
            best = run
    est._rng = rng
    _set_fitted(est, best, X)
    return est


def partial_fit(est, X):
    """:meth:`SGDGaussianMixture.partial_fit` on the torch backend: one epoch; returns ``est``."""
    config = est._check_hyperparameters()
    if est.solver != "sgd":
        raise ValidationError(f"solver={est.solver!r} runs on the NumPy path only")
    device = resolve_device(est.device, X)
    first = not hasattr(est, "params_") or getattr(est, "_state", None) is None
    if first:
        from mogsgd.estimator import Standardizer

        X, sample = _checked(X, device, est._compute_dtype(), est._check_fit_data)
        est._source = None
        est.n_features_in_ = X.shape[1]
        est._scaler = Standardizer.fit(sample, est.standardize)
        est._rng = check_random_state(est.random_state)
        Z = _transform(est._scaler, X)
        start = est._user_init(est._scaler)
        if start is None:
            start = _init(est, Z, est._rng)
        state = None
    else:
        X, _ = _checked(X, device, est.params_.dtype,
                        lambda a: est._validate(a, reset=False))
        Z = _transform(est._scaler, X)
        start, state = None, est._state
    no_stop = TrainConfig(**{**config.__dict__, "early_stopping": False})
    state = train_torch(Z, start, config=no_stop, rng=est._rng, state=state, max_epochs=1,
                        callback=est.callback, nll_offset=est._scaler.log_det,
                        record_params=est._scaler.to_data if est.record_params else None)
    _set_fitted(est, {"params": state.params, "state": state, "history": state.history,
                      "converged": False, "n_iter": state.epoch}, X)
    return est


def _init(est, Z_train, rng):
    """:func:`mogsgd.init.init_params` on (a sample of) the training rows, drawn as the NumPy
    path draws it: ``rng.choice(n, INIT_ROWS, replace=False)``."""
    n = Z_train.shape[0]
    if n > INIT_ROWS:
        idx = torch.as_tensor(rng.choice(n, size=INIT_ROWS, replace=False),
                              device=Z_train.device)
        Z_train = Z_train[idx]
    return init_params(Z_train.cpu().numpy(), est.n_components, est.init, rng,
                       est.min_variance, max_rows=INIT_ROWS)


def _run_sgd(est, Z_train, Z_val, config, rng, *, params=None, state=None) -> dict:
    """:meth:`SGDGaussianMixture._run_sgd` with :func:`train_torch`."""
    record = est._scaler.to_data if est.record_params else None
    state = train_torch(Z_train, params, config=config, rng=rng, X_val=Z_val, state=state,
                        callback=est.callback, record_params=record,
                        nll_offset=est._scaler.log_det)
    converged = bool(state.stopped)
    if not converged and config.early_stopping:
        warnings.warn(
            f"SGD stopped at its budget of {state.epoch} epochs before the validation NLL "
            "settled; raise max_epochs or the learning rate", ConvergenceWarning, stacklevel=4)
    return {"params": state.params, "state": state, "history": state.history,
            "score": state.best_score, "converged": converged or not config.early_stopping,
            "n_iter": state.epoch}


def _set_fitted(est, run: dict, X) -> None:
    """The estimator's ``_set_fitted`` with the log-likelihood of ``X`` computed on the device."""
    data = est._scaler.to_data(run["params"])
    lower_bound = float(-nll(X, to_torch(data, X.device, X.dtype)))
    est._set_fitted(run, X, lower_bound=lower_bound)


# -------------------------------------------------------------------- inference
def infer(est, X, what: str):
    """``score_samples`` (n,), ``predict_proba`` (n, K) or ``predict`` (n,) on the device."""
    check_is_fitted(est, "params_")
    device = resolve_device(est.device, X)
    Xt, _ = _checked(X, device, est.params_.dtype, lambda a: est._validate(a, reset=False))
    params = to_torch(est.params_, device, Xt.dtype)
    if what == "score_samples":
        out = log_prob(Xt, params)
    elif what == "predict_proba":
        out = torch.exp(log_resp(Xt, params))
    elif what == "predict":
        out = torch.argmax(log_resp(Xt, params), dim=1)
    else:  # pragma: no cover - the estimator passes one of the three
        raise ValueError(f"unknown inference {what!r}")
    return _output(out, X)
