"""The compiled fast path: fused NLL + gradient kernels and a compiled training epoch.

:func:`nll_grad_sums`, :func:`nll_grad`, :func:`nll`, :func:`log_prob` and
:func:`responsibilities` are drop-in replacements for the NumPy reference functions of
:mod:`mogsgd.gradients` and :mod:`mogsgd.density` (same arguments, same results to ~1e-13
relative), computed by numba kernels that make one pass over ``X`` with SIMD
``exp``/``log`` and no ``(n, K)`` temporaries other than the output
(:mod:`mogsgd.fast.kernels`).  :mod:`mogsgd.api` puts them behind the public functions
``mogsgd.nll_grad``, ``mogsgd.nll``, ``mogsgd.log_prob`` and ``mogsgd.responsibilities``.
The NumPy functions stay the reference and the fallback.  ``X`` with NaN (missing values,
which the reference marginalises) is detected by the NaN it gives the kernel's
log-likelihood and handed to the reference, and so are parameters whose ``1 / sigma`` is
beyond the float range (data at scales near 1e-308 or 1e308, scored in data units), which
the reference handles in log space (eq. 52).

Backends: ``"numpy"`` (the reference), ``"numba"`` (this package; an error if it
cannot run) and ``"auto"`` (numba when it works, else NumPy with one
:class:`~mogsgd.errors.FallbackWarning`).
"""

from __future__ import annotations

import functools
import math
import threading
import warnings

import numpy as np

from mogsgd import density, gradients
from mogsgd.covariance import finalize as family_finalize
from mogsgd.covariance import ops, spherical
from mogsgd.covariance.spherical import SphericalParams
from mogsgd.errors import FallbackWarning
from mogsgd.gradients import GradSums
from mogsgd.params import MixtureParams
from mogsgd.validation import check_choice

__all__ = ["BACKENDS", "available", "unavailable_reason", "resolve_backend",
           "nll_grad_sums", "nll_grad", "nll", "log_prob", "responsibilities", "nll_fn_for",
           "kernels_for", "compiled_epoch", "permutations", "epoch_order", "em_stats",
           "threaded_passes"]

BACKENDS = ("auto", "numpy", "numba")


@functools.cache
def _probe() -> str | None:
    """``None`` when the kernels import, compile and agree with the reference on a tiny
    problem; otherwise the reason they cannot be used.  Runs once per process."""
    try:
        import numba

        if numba.config.DISABLE_JIT:
            return "NUMBA_DISABLE_JIT is set"
        from mogsgd.fast import kernels  # noqa: F401  (compiles lazily)

        rng = np.random.default_rng(0)
        p = MixtureParams(rng.normal(size=(2, 2)), rng.normal(size=(2, 2)) * 0.1,
                          rng.normal(size=2))
        X = rng.normal(size=(5, 2))
        got = _numba_sums(X, p, None, need_grad=True)
        ref = gradients.nll_grad_sums(X, p)
        if not np.allclose(got.means, ref.means, rtol=1e-9, atol=1e-12):
            return "the compiled kernel disagrees with the NumPy reference on this machine"
    except Exception as exc:  # ImportError, numba's typing/lowering errors, ...
        return f"{type(exc).__name__}: {exc}"
    return None


def available() -> bool:
    """Whether the compiled kernels can run here (numba importable and working)."""
    return _probe() is None


def unavailable_reason() -> str | None:
    """Why :func:`available` is false, or ``None``."""
    return _probe()


@functools.cache
def _warn_fallback(reason: str) -> None:
    # functools.cache makes this warn once per process and reason
    warnings.warn(f"the compiled fast path is unavailable ({reason}); using the NumPy "
                  "reference implementation, which is several times slower",
                  FallbackWarning, stacklevel=4)


def resolve_backend(backend: str = "auto") -> str:
    """``"numpy"`` or ``"numba"``: what ``backend`` means on this machine.

    ``"auto"`` falls back to ``"numpy"`` with one :class:`FallbackWarning` per process;
    an explicit ``"numba"`` that cannot run raises ``RuntimeError`` with the reason.
    """
    check_choice("backend", backend, BACKENDS)
    if backend == "numpy":
        return "numpy"
    reason = _probe()
    if reason is None:
        return "numba"
    if backend == "numba":
        raise RuntimeError(f"backend='numba' cannot run: {reason}")
    _warn_fallback(reason)
    return "numpy"


# --------------------------------------------------------------------- kernels
def _derived(params: MixtureParams):
    """Float64 parameters and their derived arrays ``1/sigma`` (K, D), ``c_k`` (K,),
    ``log pi`` (K,) and ``pi`` (K,), computed by the same compiled code as the epoch kernel
    (so a Python loop over :func:`nll_grad` and the compiled epoch round alike)."""
    from mogsgd.fast import kernels as kern

    p = params if params.dtype == np.float64 else params.astype(np.float64)
    k, d = p.means.shape
    inv_sigma, cst = np.empty((k, d)), np.empty(k)
    log_w, weights = np.empty(k), np.empty(k)
    kern.prepare(p.means, p.log_sigma, p.logits, inv_sigma, cst, log_w, weights)
    return p, inv_sigma, cst, log_w, weights


def _as_rows(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X)
    if X.dtype not in (np.float64, np.float32):
        X = X.astype(np.float64)
    return np.ascontiguousarray(X)


def _weights_arg(sample_weight, n: int):
    if sample_weight is None:
        return np.empty(0), False
    w = np.ascontiguousarray(sample_weight, dtype=np.float64)
    if w.shape != (n,):
        raise ValueError(f"sample_weight must have shape ({n},), got {w.shape}")
    return w, True


_TINY = float(np.finfo(np.float64).tiny)


def _in_range(inv_sigma: np.ndarray) -> bool:
    """Whether every ``1 / sigma`` is a positive normal float: the kernels multiply by it
    (the reference also handles the others, in log space)."""
    return bool(((inv_sigma >= _TINY) & (inv_sigma < np.inf)).all())


def _numba_sums(X, params: MixtureParams, sample_weight, *, need_grad: bool,
                block: int | None = None) -> GradSums | None:
    """The kernel's :class:`GradSums`, or ``None`` where it cannot compute them
    (:func:`_in_range`)."""
    from mogsgd.fast import kernels as kern

    X = _as_rows(X)
    n = X.shape[0]
    p, inv_sigma, cst, log_w, weights = _derived(params)
    if not _in_range(inv_sigma):
        return None
    k, d = p.means.shape
    if X.ndim != 2 or X.shape[1] != d:
        raise ValueError(f"X must have shape (n, {d}), got {X.shape}")
    w, has_w = _weights_arg(sample_weight, n)
    block = kern.block_for(k, d, n) if block is None else int(block)
    means = np.ascontiguousarray(p.means)
    parts, part_rows = kern.partition(n)
    if parts == 1:
        acc = np.zeros(kern.acc_length(k, d))
        kern.range_sums(X, 0, n, w, has_w, means, inv_sigma, cst, log_w, need_grad, block, acc)
    else:
        if _parallel_safe():
            accs = kern.chunked_sums(X, w, has_w, means, inv_sigma, cst, log_w, need_grad,
                                     block, part_rows)
        else:  # the same parts one after the other: the same sums, bit for bit
            accs = np.zeros((parts, kern.acc_length(k, d)))
            for c in range(parts):
                lo = c * part_rows
                kern.range_sums(X, lo, min(n, lo + part_rows), w, has_w, means, inv_sigma,
                                cst, log_w, need_grad, block, accs[c])
        acc = accs[0].copy()
        for row in accs[1:]:  # in order, as the compiled epoch adds a batch's parts
            acc += row
    nk = acc[2:2 + k]
    rz = acc[2 + k:2 + k + k * d].reshape(k, d)
    rz2 = acc[2 + k + k * d:].reshape(k, d)
    weight_sum = float(acc[1]) if has_w else float(n)
    dtype = params.dtype
    return GradSums(
        nll_sum=float(-acc[0]),
        weight_sum=weight_sum,
        means=(-rz * inv_sigma).astype(dtype, copy=False),
        log_sigma=(nk[:, None] - rz2).astype(dtype, copy=False),
        logits=(weight_sum * weights - nk).astype(dtype, copy=False),
    )


def _parallel_safe() -> bool:
    """Whether this thread may launch numba's parallel kernel.  numba's ``workqueue``
    threading layer (used when neither TBB nor OpenMP is available) aborts on launches
    from several threads at once, so off the main thread it is used only under a
    thread-safe layer (``tbb``, ``omp``)."""
    if threading.current_thread() is threading.main_thread():
        return True
    import numba

    try:
        return numba.threading_layer() in ("tbb", "omp")
    except ValueError:  # no parallel kernel has run yet: the layer is not chosen
        return False


def _full_kernel(params):
    """The compiled module for a full or tied family's parameters, else ``None``."""
    if ops.family_of(params).name not in ("full", "tied"):
        return None
    from mogsgd.fast import full_kernel

    return full_kernel


def _spherical_sums(X, params, sample_weight, need_grad: bool) -> GradSums | None:
    """The diagonal kernel's sums for spherical ``params`` on their diagonal view
    (:func:`mogsgd.covariance.spherical.as_diagonal`: eq. 45 is eq. 9 with one sigma per
    component), or ``None`` where the spherical reference must run: ``X`` with NaN (which
    the spherical model refuses and the diagonal one would marginalise) or far rows."""
    sums = _numba_sums(X, spherical.as_diagonal(params), sample_weight, need_grad=need_grad)
    return None if sums is None or math.isnan(sums.nll_sum) else sums


def _family_sums(X, params, sample_weight):
    """Another family's gradient sums, compiled: full and tied by
    :mod:`mogsgd.fast.full_kernel` (eqs. 40-44, parallel over chunks of rows for large
    ``X``), spherical by the diagonal kernel with the log-sigma gradient summed over the
    features (eq. 45, :func:`mogsgd.covariance.spherical.pool_diagonal_sums`)."""
    if isinstance(params, SphericalParams):
        sums = _spherical_sums(X, params, sample_weight, need_grad=True)
        return (ops.nll_grad_sums(X, params, sample_weight) if sums is None
                else spherical.pool_diagonal_sums(sums))
    kernel = _full_kernel(params)
    return kernel.nll_grad_sums(ops.family_of(params), X, params, sample_weight,
                                parallel=_parallel_for(kernel, X))


def _parallel_for(kernel, X) -> bool:
    """Whether the full/tied ``kernel`` runs its chunks of ``X`` on numba's threads: more
    than one chunk, and a thread that may launch parallel kernels."""
    return np.shape(X)[0] > kernel.CHUNK_ROWS and _parallel_safe()


def _family_components(X, params) -> np.ndarray:
    """``log pi_k + log N_ik`` (n, K) of the full or tied family, compiled."""
    return _full_kernel(params).log_prob_components(ops.family_of(params), X, params)


def nll_grad_sums(X: np.ndarray, params: MixtureParams,
                  sample_weight: np.ndarray | None = None) -> GradSums:
    """:func:`mogsgd.gradients.nll_grad_sums` by the fused kernel (same :class:`GradSums`).

    Parallel over chunks of rows for large ``X``.  A NaN in ``X`` (a missing value) makes
    the kernel's NLL NaN; such input is then handed to the reference, which marginalises.
    Parameters of another covariance family take :func:`_family_sums`.
    """
    if not isinstance(params, MixtureParams):
        return _family_sums(X, params, sample_weight)
    sums = _numba_sums(X, params, sample_weight, need_grad=True)
    if sums is None or math.isnan(sums.nll_sum):
        return gradients.nll_grad_sums(X, params, sample_weight)
    return sums


def nll_grad(X: np.ndarray, params: MixtureParams,
             sample_weight: np.ndarray | None = None) -> tuple[float, MixtureParams]:
    """:func:`mogsgd.gradients.nll_grad` by the fused kernel: mean NLL and its gradient (of
    the parameters' own type, for every covariance family)."""
    return family_finalize(nll_grad_sums(X, params, sample_weight), type(params))


def nll(X: np.ndarray, params: MixtureParams, sample_weight: np.ndarray | None = None) -> float:
    """:func:`mogsgd.density.nll` by the fused kernel (no gradient sums are formed)."""
    if isinstance(params, SphericalParams):
        sums = _spherical_sums(X, params, sample_weight, need_grad=False)
        return (ops.nll(X, params, sample_weight) if sums is None
                else sums.nll_sum / sums.weight_sum)
    if not isinstance(params, MixtureParams):   # full, tied: the log-likelihood pass alone
        kernel = _full_kernel(params)
        return float(kernel.nll(ops.family_of(params), X, params, sample_weight,
                                parallel=_parallel_for(kernel, X)))
    sums = _numba_sums(X, params, sample_weight, need_grad=False)
    if sums is None or math.isnan(sums.nll_sum):
        return density.nll(X, params, sample_weight)
    return sums.nll_sum / sums.weight_sum


def _rows_out(X, params: MixtureParams, want_resp: bool) -> np.ndarray:
    """Per-row kernel output: ``log p(x_i)`` (n,) or ``gamma_ik`` (n, K), in parallel
    chunks for large ``X`` (each row's values do not depend on the split)."""
    from mogsgd.fast import kernels as kern

    X = _as_rows(X)
    p, inv_sigma, cst, log_w, _ = _derived(params)
    if not _in_range(inv_sigma):
        return (density.responsibilities if want_resp else density.log_prob)(X, params)
    k, d = p.means.shape
    if X.ndim != 2 or X.shape[1] != d:
        raise ValueError(f"X must have shape (n, {d}), got {X.shape}")
    n = X.shape[0]
    out, resp = np.empty(n), np.empty((n if want_resp else 0, k))
    run = (kern.chunked_log_prob if n > kern.CHUNK_ROWS and _parallel_safe()
           else kern.log_prob_rows)
    run(X, np.ascontiguousarray(p.means), inv_sigma, cst, log_w, kern.block_for(k, d, n), out,
        resp, want_resp)
    return resp if want_resp else out


def log_prob(X: np.ndarray, params: MixtureParams) -> np.ndarray:
    """:func:`mogsgd.density.log_prob` by the fused kernel: ``log p(x_i)``, shape (n,)."""
    if isinstance(params, SphericalParams):
        out = _rows_out(X, spherical.as_diagonal(params), want_resp=False)
        return ops.log_prob(X, params) if np.isnan(out).any() else out
    if not isinstance(params, MixtureParams):   # full, tied
        kernel = _full_kernel(params)
        return kernel.log_prob(ops.family_of(params), X, params,
                               parallel=_parallel_for(kernel, X))
    out = _rows_out(X, params, want_resp=False)
    if np.isnan(out).any():
        return density.log_prob(X, params)
    return out.astype(np.result_type(np.asarray(X).dtype, params.dtype), copy=False)


def responsibilities(X: np.ndarray, params: MixtureParams) -> np.ndarray:
    """:func:`mogsgd.density.responsibilities` by the fused kernel: ``gamma_ik``, shape
    (n, K), rows summing to one (eq. 11)."""
    if isinstance(params, SphericalParams):
        out = _rows_out(X, spherical.as_diagonal(params), want_resp=True)
        return ops.responsibilities(X, params) if np.isnan(out).any() else out
    if not isinstance(params, MixtureParams):
        wlp = _family_components(X, params)
        return np.exp(wlp - density.logsumexp(wlp, axis=1)[:, None])
    out = _rows_out(X, params, want_resp=True)
    if np.isnan(out).any():
        return density.responsibilities(X, params)
    return out.astype(np.result_type(np.asarray(X).dtype, params.dtype), copy=False)


def nll_fn_for(backend: str = "auto"):
    """The ``nll`` of ``backend`` (resolved with :func:`resolve_backend`), for every family."""
    return nll if resolve_backend(backend) == "numba" else ops.nll


def em_stats(X: np.ndarray, params, sample_weight: np.ndarray | None = None):
    """The E-step statistics by the compiled pass: for ``diag`` from one fused gradient
    pass (:func:`mogsgd.em.stats_from_grad_sums`, no missing values), for ``spherical``
    the same on its diagonal view with ``sxx`` summed over the features
    (:func:`mogsgd.covariance.spherical.pool_diagonal_stats`), for full and tied by
    :func:`mogsgd.fast.full_kernel.em_stats` (parallel over chunks of rows for large ``X``)."""
    if isinstance(params, SphericalParams):
        sums = _spherical_sums(X, params, sample_weight, need_grad=True)
        if sums is None:
            return ops.em_stats(X, params, sample_weight)
        from mogsgd.em import stats_from_grad_sums

        return spherical.pool_diagonal_stats(
            stats_from_grad_sums(sums, spherical.as_diagonal(params)))
    if not isinstance(params, MixtureParams):
        kernel = _full_kernel(params)
        return kernel.em_stats(ops.family_of(params), X, params, sample_weight,
                               parallel=_parallel_for(kernel, X))
    from mogsgd.em import stats_from_grad_sums

    return stats_from_grad_sums(nll_grad_sums(X, params, sample_weight), params)


#: The reference gradient functions the compiled pass replaces.
REFERENCE_GRAD_SUMS = (gradients.nll_grad_sums, ops.nll_grad_sums)


def kernels_for(backend: str, grad_sums_fn=ops.nll_grad_sums):
    """``(grad_sums_fn, nll_fn)`` for :func:`mogsgd.train.train` under ``backend``.

    With the numba backend a reference gradient (:data:`REFERENCE_GRAD_SUMS`) is
    replaced by the fused :func:`nll_grad_sums` (a custom function is kept as given) and
    the validation NLL is :func:`nll`; with NumPy both are the reference functions
    (:mod:`mogsgd.covariance.ops`, every family).
    """
    if resolve_backend(backend) == "numpy":
        return grad_sums_fn, ops.nll
    if grad_sums_fn in REFERENCE_GRAD_SUMS:
        return nll_grad_sums, nll
    return grad_sums_fn, nll


def permutations(rng: np.random.Generator, n: int, compiled: bool, n_features: int = 1):
    """:func:`mogsgd.fast.epoch.permutations`: each epoch's order of the rows
    (:func:`epoch_order`), the next one drawn in the background while a compiled epoch
    runs."""
    from mogsgd.fast.epoch import permutations as make

    return make(rng, n, compiled, n_features)


def epoch_order(rng: np.random.Generator, n: int, n_features: int) -> np.ndarray:
    """:func:`mogsgd.fast.shuffle.epoch_order`: one epoch's order of ``n`` rows of
    ``n_features`` columns, ``rng.permutation(n)`` up to 4 MiB of rows, block-shuffled above."""
    from mogsgd.fast.shuffle import epoch_order as order

    return order(rng, n, n_features)


def compiled_epoch(config, n_train: int, grad_sums_fn, X: np.ndarray, sample_weight,
                   params: MixtureParams, python_step=None):
    """A :class:`~mogsgd.fast.epoch.CompiledEpoch` (solver ``"sgd"``) or
    :class:`~mogsgd.fast.epoch.CompiledOnlineEM` (``"online_em"``) for
    :func:`mogsgd.train.train`; for full or tied parameters with solver ``"sgd"`` and the
    training loop's ``python_step`` (for batches with far rows), a
    :class:`~mogsgd.fast.full_epoch.CompiledFullEpoch`.  ``None`` where the Python loop
    must run: a gradient function other than the fused one (:func:`kernels_for` gave the
    reference or a custom one), ``X`` not an in-memory array (a batch provider), float32
    parameters, ``X`` with NaN, the spherical family (its Python loop calls the diagonal
    kernel), or full/tied ``X`` that is not C-contiguous float32 or float64 (it is not
    copied).

    ``config`` is the :class:`~mogsgd.train.TrainConfig`; ``sample_weight`` the weights
    as ``train`` normalised them (mean one).
    """
    if (grad_sums_fn is not nll_grad_sums
            or not isinstance(X, np.ndarray)):  # batch providers (streams, Dask) stream
        return None
    from mogsgd.fast.epoch import CompiledEpoch, CompiledOnlineEM, supports

    if not isinstance(params, MixtureParams):
        return _compiled_full_epoch(config, n_train, X, sample_weight, params, python_step)
    optimizer = config.build_optimizer(n_train) if config.solver == "sgd" else None
    if not supports(optimizer, X, params):
        return None
    batch = min(config.batch_size, n_train)
    if config.solver == "online_em":  # train.make_stepper's settings
        return CompiledOnlineEM(
            X, sample_weight, batch, alpha=config.oem_alpha, t0=config.oem_t0,
            reg_covar=config.min_variance,
            average_after=-(-n_train // config.batch_size) if config.oem_average else None,
            threads=epoch_threads(batch))
    return CompiledEpoch(X, sample_weight, optimizer, batch, config.min_variance,
                         threads=epoch_threads(batch))


def _compiled_full_epoch(config, n_train, X, sample_weight, params, python_step):
    from mogsgd.fast.epoch import supports

    if (python_step is None or config.solver != "sgd" or _full_kernel(params) is None
            or X.dtype not in (np.float32, np.float64) or not X.flags.c_contiguous):
        return None
    optimizer = config.build_optimizer(n_train)
    if not supports(optimizer, X, params):
        return None
    from mogsgd.fast.full_epoch import CompiledFullEpoch

    return CompiledFullEpoch(X, sample_weight, optimizer, min(config.batch_size, n_train),
                             config.min_variance, python_step)


#: Whether compiled epochs run the parts of a large batch on numba's threads
#: (:func:`epoch_threads`).  Measured on an idle 2-core machine: 1.3-1.8x faster epochs at
#: batches of 4096 to 262,144 rows; on a machine whose cores are busy with other processes
#: it can be slower (``benchmarks/results.md``, goal 15.6).  Set it to ``False``, or
#: ``numba.set_num_threads(1)``, to keep epochs on one thread.
EPOCH_THREADS = True


def epoch_threads(batch: int) -> bool:
    """Whether a compiled epoch with batches of ``batch`` rows splits each batch's sums over
    numba's threads: :data:`EPOCH_THREADS`, batches of at least ``SPLIT_ROWS`` (4096) rows,
    more than one numba thread, and a thread that may launch parallel kernels.  The result
    is the same either way (:func:`mogsgd.fast.kernels.partition`)."""
    from mogsgd.fast import kernels as kern

    if not EPOCH_THREADS or batch < kern.SPLIT_ROWS:
        return False
    import numba

    return numba.get_num_threads() > 1 and _parallel_safe()


#: From this many rows on a batch EM runs its passes on numba's threads
#: (:func:`threaded_passes`): a pass then takes long enough that the Python around each
#: iteration costs nothing.
THREADED_EM_ROWS = 1 << 17


def threaded_passes(n_rows: int) -> bool:
    """Whether EM over ``n_rows`` in-memory rows runs one threaded pass per iteration
    (:func:`mogsgd.em.em_loop` over :func:`em_stats`) rather than the one-call compiled loop
    of :mod:`mogsgd.fast.batch_em` (one thread): at least :data:`THREADED_EM_ROWS` rows, more
    than one numba thread, and a thread that may launch parallel kernels.  Both sum the same
    parts of rows in the same order."""
    if n_rows < THREADED_EM_ROWS:
        return False
    import numba

    return numba.get_num_threads() > 1 and _parallel_safe()
