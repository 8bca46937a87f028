"""A whole training epoch compiled: batches, gradients, optimiser step and variance floor.

:func:`mogsgd.train.train` draws each epoch's order of the rows
(:func:`mogsgd.fast.shuffle.epoch_order`: ``rng.permutation(n)``, block-shuffled above 4
MiB of rows) as its Python loop does and hands it to :class:`CompiledEpoch`, which runs every
mini-batch of the epoch in one call of :func:`mogsgd.fast.kernels.train_epoch` -- no
Python per step.  The optimiser state goes in and comes out as the usual
:class:`~mogsgd.optim.AdamState` / :class:`~mogsgd.optim.MomentumState` /
:class:`~mogsgd.optim.SGDState` of :class:`~mogsgd.params.MixtureParams`, so
checkpoints and ``warm_start`` see no difference.

The learning rate of every step comes from the optimiser's own schedule, evaluated
in Python once per epoch (so any schedule works and rounds identically); the update
rules are written out in the kernel exactly as in :mod:`mogsgd.optim` and
:func:`mogsgd.train.make_stepper`.  Given the same permutation, the result equals
``train``'s Python loop over the fused :func:`mogsgd.fast.nll_grad_sums` bit for bit,
and its loop over the NumPy reference to ~1e-12.
"""

from __future__ import annotations

import os
import weakref

import numpy as np

from mogsgd._random import state_copy
from mogsgd.em import EMStats
from mogsgd.fast.shuffle import epoch_order
from mogsgd.online_em import OnlineEMState
from mogsgd.optim import AdamState, MomentumState, Optimizer, SGDState
from mogsgd.params import MixtureParams

__all__ = ["CompiledEpoch", "CompiledOnlineEM", "supports", "Permutations", "permutations"]

OPT_CODES = {"sgd": 0, "momentum": 1, "nesterov": 2, "adam": 3}

#: Training sets at least this long draw the next epoch's permutation in the background.
READ_AHEAD_ROWS = 1 << 16


def supports(optimizer: Optimizer | None, X: np.ndarray, params: MixtureParams) -> bool:
    """Whether :class:`CompiledEpoch` can run this optimiser (``None``: online EM,
    :class:`CompiledOnlineEM`) on this data: a built-in optimiser, float64 parameters,
    float32/float64 ``X`` without NaN."""
    import mogsgd.fast.kernels as kern

    X = np.asarray(X)
    return ((optimizer is None or optimizer.name in OPT_CODES)
            and params.dtype == np.float64
            and X.dtype in (np.float32, np.float64) and X.ndim == 2
            and not kern.has_nan(np.ascontiguousarray(X)))


class CompiledEpoch:
    """``epoch(order, params, opt_state) -> (params, opt_state, nll_total, row_total)``:
    the new parameters and optimiser state, and the sums ``train`` divides for the
    epoch's mean training NLL.

    Parameters
    ----------
    X : array (n, D), float32 or float64, no NaN
    sample_weight : array (n,) or None
        Weights normalised to mean one, as :func:`mogsgd.train.train` passes them.
    optimizer : Optimizer from :func:`mogsgd.optim.make_optimizer` (sgd, momentum,
        nesterov or adam)
    batch_size : int
    min_variance : float
        The variance floor of eq. 26, applied after every step.
    block : int or None
        Rows per block in the kernel (the default suits L1/L2 caches).
    threads : bool
        Run the parts of a batch of at least ``SPLIT_ROWS`` rows
        (:func:`mogsgd.fast.kernels.partition`) on numba's threads; the result is the same
        either way.
    """

    def __init__(self, X: np.ndarray, sample_weight: np.ndarray | None, optimizer: Optimizer,
                 batch_size: int, min_variance: float, block: int | None = None,
                 threads: bool = False) -> None:
        import mogsgd.fast.kernels as kern

        self._kern = kern
        self.X = np.ascontiguousarray(X)
        self.w, self.has_w = kernel_weights(sample_weight)
        self.optimizer = optimizer
        self.opt = OPT_CODES[optimizer.name]
        self.batch = int(min(batch_size, self.X.shape[0]))
        self.block = None if block is None else int(block)
        self.threads = bool(threads)
        self.log_sigma_floor = float(0.5 * np.log(min_variance))  # as project_variance_floor
        hp = optimizer.hyperparams
        self.schedule = hp["learning_rate"]
        self.b1 = float(hp.get("b1", 0.9))
        self.b2 = float(hp.get("b2", 0.999))
        self.eps = float(hp.get("eps", 1e-8))
        self.beta = float(hp.get("beta", 0.9))

    def learning_rates(self, count: int, n_steps: int) -> np.ndarray:
        """``eta_t`` for the steps ``count, ..., count + n_steps - 1`` (eq. 24)."""
        return learning_rates(self.schedule, count, n_steps)

    def __call__(self, order: np.ndarray, params: MixtureParams, opt_state):
        k, d = params.n_components, params.n_features
        n = order.shape[0]
        n_steps = -(-n // self.batch)
        count = int(opt_state.count)
        # ravel() concatenates into a new array: the kernel may update it in place
        theta = params.ravel().astype(np.float64, copy=False)
        if isinstance(opt_state, AdamState):
            s1 = opt_state.mu.ravel().astype(np.float64, copy=False)
            s2 = opt_state.nu.ravel().astype(np.float64, copy=False)
        elif isinstance(opt_state, MomentumState):
            s1, s2 = opt_state.velocity.ravel().astype(np.float64, copy=False), np.empty(0)
        else:
            s1, s2 = np.empty(0), np.empty(0)
        lrs = self.learning_rates(count, n_steps)
        block = self.block or self._kern.block_for(k, d, self.batch)
        total, rows = self._kern.train_epoch(
            self.X, np.ascontiguousarray(order, dtype=np.int64), self.w, self.has_w,
            self.batch, theta, k, self.opt, s1, s2, count, lrs, self.b1, self.b2, self.eps,
            self.beta, self.log_sigma_floor, block, self.threads)
        new = MixtureParams.unravel(theta, k, d)
        count += n_steps
        if isinstance(opt_state, AdamState):
            state = AdamState(count, MixtureParams.unravel(s1, k, d),
                              MixtureParams.unravel(s2, k, d))
        elif isinstance(opt_state, MomentumState):
            state = MomentumState(count, MixtureParams.unravel(s1, k, d))
        else:
            state = SGDState(count)
        return new, state, float(total), float(rows)



class CompiledOnlineEM:
    """``epoch(order, params, state) -> (params, state, nll_total, row_total)`` for online
    EM: the batch loop of :func:`mogsgd.online_em.online_em_step` (eqs. 36, 37) in one call
    of :func:`mogsgd.fast.online_em_kernel.online_em_epoch`.  ``state`` is the
    :class:`~mogsgd.online_em.OnlineEMState` that goes in and comes out, as in the Python
    loop; the results equal that loop's to ~1e-12 (the statistics come from the fused sums
    instead of :func:`mogsgd.em.em_stats`).

    Parameters: ``X`` (n, D) float32/float64 without NaN, ``sample_weight`` normalised to
    mean one (or ``None``), ``batch_size``, the online-EM settings ``alpha``, ``t0``,
    ``reg_covar`` and ``average_after`` (``None``: no averaging), ``threads`` as for
    :class:`CompiledEpoch`.
    """

    def __init__(self, X: np.ndarray, sample_weight: np.ndarray | None, batch_size: int, *,
                 alpha: float, t0: float, reg_covar: float, average_after: int | None,
                 threads: bool = False) -> None:
        import mogsgd.fast.online_em_kernel as oem

        self._kern = oem
        self.X = np.ascontiguousarray(X)
        self.w, self.has_w = kernel_weights(sample_weight)
        self.batch = int(min(batch_size, self.X.shape[0]))
        self.alpha, self.t0, self.reg_covar = float(alpha), float(t0), float(reg_covar)
        self.average_after = -1 if average_after is None else int(average_after)
        self.threads = bool(threads)

    def __call__(self, order: np.ndarray, params: MixtureParams, state: OnlineEMState):
        from mogsgd.fast.kernels import block_for

        k, d = params.n_components, params.n_features
        theta = params.ravel().astype(np.float64)
        s = state.stats
        nk = np.array(s.nk, dtype=np.float64)
        nkd, sx, sxx = (np.array(a, dtype=np.float64).ravel() for a in (s.nkd, s.sx, s.sxx))
        has_avg = state.average is not None
        avg = state.average.ravel().astype(np.float64) if has_avg else np.empty_like(theta)
        total, rows, count, has_avg, n_avg = self._kern.online_em_epoch(
            self.X, np.ascontiguousarray(order, dtype=np.int64), self.w, self.has_w,
            self.batch, theta, k, nk, nkd, sx, sxx, int(state.count), self.alpha, self.t0,
            self.reg_covar, self.average_after, avg, has_avg, int(state.n_averaged),
            block_for(k, d, self.batch), self.threads)
        stats = EMStats(0.0, 1.0, nk, nkd.reshape(k, d), sx.reshape(k, d), sxx.reshape(k, d))
        average = MixtureParams.unravel(avg, k, d) if has_avg else None
        new_state = OnlineEMState(int(count), stats, average, int(n_avg))
        return MixtureParams.unravel(theta, k, d), new_state, float(total), float(rows)


def learning_rates(schedule, count: int, n_steps: int) -> np.ndarray:
    """``eta_t`` of ``schedule`` (a number or a function of the step) for the steps
    ``count, ..., count + n_steps - 1`` (eq. 24), evaluated in Python once per epoch so
    any schedule works and rounds as in the Python loop."""
    if not callable(schedule):
        return np.full(n_steps, float(schedule))
    return np.fromiter(map(schedule, range(count, count + n_steps)), dtype=np.float64,
                       count=n_steps)


def kernel_weights(sample_weight) -> tuple[np.ndarray, bool]:
    """The kernels' ``(w, has_w)``: float64 weights, or an empty array and ``False``."""
    if sample_weight is None:
        return np.empty(0), False
    return np.ascontiguousarray(sample_weight, dtype=np.float64), True


class Permutations:
    """Each epoch's order of the rows (:func:`~mogsgd.fast.shuffle.epoch_order`), the next
    epoch's drawn while this one runs.

    :meth:`next` returns exactly what ``epoch_order(rng, n, n_features)`` would at that point
    of the Generator's stream, and :meth:`rng_state` the Generator's state right after that
    draw -- what ``train`` records per epoch.  With ``ahead=True`` the following draw
    starts at once in a background thread (NumPy's shuffle releases the GIL, and so do
    the compiled epochs), hiding its ~10 ms per million rows behind the epoch's work on
    another core.  :meth:`close` waits for it and puts the Generator back to the state
    after the last permutation used, as if no read-ahead had happened; it also runs when
    the object is garbage collected (e.g. after an exception).
    """

    def __init__(self, rng: np.random.Generator, n: int, ahead: bool = True,
                 n_features: int = 1) -> None:
        self.rng, self.n, self.n_features = rng, n, n_features
        self._box: dict = {"state": None, "pending": None}
        self._finalizer = None
        if ahead:
            from concurrent.futures import ThreadPoolExecutor

            pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mogsgd-permutation")
            self._box["pool"] = pool
            self._finalizer = weakref.finalize(self, _settle, rng, self._box)

    def next(self, more: bool = True) -> np.ndarray:
        """The permutation of the next epoch; ``more=False`` says no epoch is planned after
        it, so nothing is drawn ahead."""
        box = self._box
        if box["pending"] is not None:
            order, box["state"] = box["pending"].result()
            box["pending"] = None
        else:
            order, box["state"] = _draw(self.rng, self.n, self.n_features)
        if more and "pool" in box:  # the worker must not hold ``self``: it could finalise it
            box["pending"] = box["pool"].submit(_draw, self.rng, self.n, self.n_features)
        return order

    def rng_state(self) -> dict:
        """The Generator's state right after the last permutation returned by :meth:`next`."""
        return state_copy(self._box["state"])

    def close(self) -> None:
        """Drop the read-ahead draw and restore the Generator (see the class docstring)."""
        if self._finalizer is not None:
            self._finalizer()


def _draw(rng: np.random.Generator, n: int, n_features: int):
    order = epoch_order(rng, n, n_features)
    return order, state_copy(rng.bit_generator.state)


def _settle(rng: np.random.Generator, box: dict) -> None:
    pending = box.pop("pending", None)
    if pending is not None:
        pending.result()
        rng.bit_generator.state = box["state"]
    box["pool"].shutdown(wait=True)


def permutations(rng: np.random.Generator, n: int, compiled: bool,
                 n_features: int = 1) -> Permutations:
    """The :class:`Permutations` ``train`` uses: reading ahead only for compiled epochs on
    data large enough to be worth a thread, on a machine with more than one core."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return Permutations(rng, n, ahead=compiled and n >= READ_AHEAD_ROWS and (cores or 1) > 1,
                        n_features=n_features)
