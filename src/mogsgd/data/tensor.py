"""Torch tensors (and CUDA arrays that speak DLPack, e.g. CuPy): rows stay on the device.

Validation uses the estimator's own checks on a host sample of at most :data:`SAMPLE_ROWS`
evenly strided rows (all rows for smaller data) plus a full finiteness check on the device;
the standardiser is fitted on that sample (it only conditions the problem; results map back
to data units exactly, eq. 33); the validation split is a ``torch.randperm`` seeded from the
caller's generator; initialisation sees :data:`INIT_ROWS` rows drawn as on the NumPy path.
Training runs the one training loop with :class:`mogsgd.backends.torch_train.TorchEngine`.
Inference returns the input's kind: a tensor for a tensor (on its device), a CuPy array for
a CuPy array, NumPy otherwise.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from mogsgd.backends import import_torch, is_cuda_dlpack, is_torch_tensor
from mogsgd.backends.torch_ops import log_prob, log_resp, nll, to_torch
from mogsgd.backends.torch_train import TorchEngine, seeded_randperm
from mogsgd.data.base import (
    FitPlan,
    Model,
    Prepared,
    Source,
    check_fit_rows,
    check_width,
    row_function,
    split_rows,
)
from mogsgd.errors import ValidationError
from mogsgd.params import MixtureParams
from mogsgd.standardize import Standardizer
from mogsgd.validation import check_data, check_sample_weight

torch = import_torch()

__all__ = ["TensorSource", "resolve_device", "SAMPLE_ROWS", "INIT_ROWS"]

#: Rows (evenly strided) copied to the host to validate messages and fit the standardiser.
SAMPLE_ROWS = 1 << 20

#: Rows the initialisation sees, drawn as on the NumPy path (``init_params(max_rows=...)``).
INIT_ROWS = 20_000

_TORCH_ROW_FUNCTIONS = {
    "score_samples": lambda X, p: log_prob(X, p),
    "predict_proba": lambda X, p: torch.exp(log_resp(X, p)),
    "predict": lambda X, p: torch.argmax(log_resp(X, p), dim=1),
}


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


def _host_sample(X) -> np.ndarray:
    """At most :data:`SAMPLE_ROWS` evenly strided rows of ``X`` as NumPy (all rows if fewer)."""
    if X.dtype == torch.bfloat16:  # NumPy has no bfloat16
        X = X.float()
    if X.ndim == 0:
        return X.cpu().numpy()
    step = max(1, -(-X.shape[0] // SAMPLE_ROWS))
    return X[::step].cpu().numpy()


def _transform(scaler: Standardizer, X):
    """:meth:`Standardizer.transform` on the device: ``(x - c) / s`` in float64, cast back."""
    center = torch.as_tensor(scaler.center, device=X.device)
    scale = torch.as_tensor(scaler.scale, device=X.device)
    return ((X - center) / scale).to(X.dtype)


class TensorSource(Source):
    """A tensor on its device, or host data moved to the ``device`` the estimator names."""

    kind = "tensor"

    def __init__(self, X, device=None) -> None:
        self.X = X
        self.device = resolve_device(device, X)
        shape = tuple(getattr(X, "shape", np.shape(X)))
        self.n_features = shape[1] if len(shape) == 2 else None

    def _checked(self, dtype: np.dtype, check):
        """``(X on the device in dtype, host sample)``; ``check(array) -> array`` validates the
        host sample (all of ``X`` for host input); non-finite values anywhere are reported as
        that check reports them."""
        X = self.X
        tensor = (X.detach().to(self.device) if is_torch_tensor(X)
                  else torch.from_dlpack(X).to(self.device) if is_cuda_dlpack(X) else None)
        if tensor is None:  # host input: validate all of it with the NumPy checks
            host = check(X)
            host = host if host.flags.writeable else host.copy()  # torch wants writable memory
            tensor = torch.from_numpy(host)
            return tensor.to(self.device), _host_sample(tensor)
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

    def _weights(self, sample_weight, n: int):
        """``(weights on the device, weights of the host sample's rows)``, or Nones."""
        if sample_weight is None:
            return None, None
        if is_torch_tensor(sample_weight):
            sample_weight = sample_weight.detach().cpu().numpy()
        w = check_sample_weight(sample_weight, n)
        step = max(1, -(-n // SAMPLE_ROWS))     # the rows of _host_sample
        return torch.as_tensor(w, device=self.device), w[::step]

    def prepare(self, plan: FitPlan, rng: np.random.Generator, *, sample_weight=None,
                scaler: Standardizer | None = None, check_rows=None) -> Prepared:
        X, sample = self._checked(plan.dtype, lambda a: check_fit_rows(a, plan))
        w, sample_w = self._weights(sample_weight, X.shape[0])
        d = X.shape[1]
        check_width(d, None if scaler is None else len(scaler.center))
        if scaler is None:
            scaler = plan.fit_scaler(sample, sample_w)
        Z = _transform(scaler, X)
        n_val = plan.n_validation(len(Z))
        Z_train, w_train, Z_val, w_val = split_rows(
            Z, w, seeded_randperm(rng, self.device)(len(Z)), n_val)

        return Prepared(
            n_features=d, scaler=scaler, train=Z_train, train_weight=w_train, val=Z_val,
            val_weight=w_val, init_rows=_init_rows(Z_train), em_stats=_no_em,
            train_loglik=_no_em, lower_bound=_lower_bound(X, w, scaler), engine=TorchEngine)

    def blocks(self, plan: FitPlan, sample_weight=None) -> Iterator[Source]:
        yield self

    def prepare_block(self, plan: FitPlan, model: Model | None, *, sample_weight=None,
                      scaler: Standardizer | None = None) -> Prepared:
        if model is None:
            X, sample = self._checked(plan.dtype, lambda a: check_fit_rows(a, plan))
        else:
            X, sample = self._checked(model.params.dtype, lambda a: self._host_check(a, model))
        w, sample_w = self._weights(sample_weight, X.shape[0])
        if scaler is None:
            scaler = plan.fit_scaler(sample, sample_w)
        Z = _transform(scaler, X)
        return Prepared(
            n_features=X.shape[1], scaler=scaler, train=Z, train_weight=w,
            init_rows=_init_rows(Z), em_stats=_no_em, train_loglik=_no_em,
            lower_bound=_lower_bound(X, w, scaler), engine=TorchEngine)

    @staticmethod
    def _host_check(a, model: Model) -> np.ndarray:
        return check_data(a, n_features=model.n_features, owner=model.owner,
                          dtype=model.params.dtype, allow_nan=model.allow_nan)

    def map_rows(self, name: str, model: Model):
        Xt, _ = self._checked(model.params.dtype, lambda a: self._host_check(a, model))
        if not isinstance(model.params, MixtureParams):
            # full, tied, spherical: the NumPy reference on the host, returned as a tensor
            out = torch.as_tensor(row_function(name, model)(Xt.detach().cpu().numpy(),
                                                            model.params))
        else:
            out = _TORCH_ROW_FUNCTIONS[name](Xt, to_torch(model.params, self.device, Xt.dtype))
        return self._output(out)

    def loglik_sum(self, model: Model, sample_weight=None) -> tuple[float, float]:
        ll = self.map_rows("score_samples", model)
        ll = np.asarray(ll.detach().cpu().numpy() if is_torch_tensor(ll) else ll,
                        dtype=np.float64)
        if sample_weight is None:
            return float(ll.sum()), float(len(ll))
        if is_torch_tensor(sample_weight):
            sample_weight = sample_weight.detach().cpu().numpy()
        w = check_sample_weight(sample_weight, len(ll))
        return float(w @ ll), float(w.sum())

    def _output(self, out):
        X = self.X
        if is_torch_tensor(X):
            return out.to(X.device)
        if is_cuda_dlpack(X) and type(X).__module__.split(".")[0] == "cupy":
            import cupy

            return cupy.from_dlpack(out)
        return out.cpu().numpy()


def _no_em(params: MixtureParams):  # the support table refuses EM for tensors first
    raise ValidationError("solver='em' runs on the NumPy path only; use solver='sgd' with a "
                          "device, or device='cpu-numpy'")


def _init_rows(Z):
    """The rows initialisation sees: at most :data:`INIT_ROWS` of ``Z``, drawn as the NumPy
    path draws them (``rng.choice(n, INIT_ROWS, replace=False)``), copied to the host."""
    def draw(rng: np.random.Generator) -> np.ndarray:
        rows = Z
        if rows.shape[0] > INIT_ROWS:
            idx = rng.choice(rows.shape[0], size=INIT_ROWS, replace=False)
            rows = rows[torch.as_tensor(idx, device=rows.device)]
        return rows.cpu().numpy()

    return draw


def _lower_bound(X, w, scaler: Standardizer):
    """Mean log-likelihood of the rows ``X`` (weights ``w``) in data units, on the device."""
    def lower_bound(params: MixtureParams) -> float:
        data = scaler.to_data(params)
        return float(-nll(X, to_torch(data, X.device, X.dtype), w))

    return lower_bound
