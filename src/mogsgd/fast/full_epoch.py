"""A whole training epoch compiled for the full and tied covariance families.

:class:`CompiledFullEpoch` is :class:`mogsgd.fast.epoch.CompiledEpoch` for
:class:`~mogsgd.covariance.FullParams` and :class:`~mogsgd.covariance.TiedParams`: every
mini-batch of the epoch -- gathering its rows, the fused NLL + gradient sums of
:mod:`mogsgd.fast.full_kernel` (eqs. 40-44), the optimiser step
(:func:`mogsgd.fast.kernels.optimizer_step`, as in :mod:`mogsgd.optim`) -- runs in one
call of :func:`train_epoch`, with no Python per step.  Two rare events hand one step back
to Python and the kernel then continues: a batch with far rows (a non-finite sum; the
reference computes eqs. 52, 53 in a scaled form), run by the training loop's own step; and
a factor that may violate the eigenvalue floor (``||U||_F^2 > 1 / v_min``, the cheap test
of :func:`mogsgd.covariance.cholesky.project_factor`), projected by the family (eq. 46).

Given the same order of the rows the result equals the Python loop of
:func:`mogsgd.train.train` over :func:`mogsgd.fast.nll_grad_sums` to rounding (the
gradient of eqs. 41-43 is summed in another order).  Per step it saves the Python loop's
fixed cost (about 0.3-0.5 ms: a few dozen small NumPy calls), several times the kernel's
own work on a batch of 256 rows at D = 16, K = 8.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from mogsgd.covariance import ops
from mogsgd.density import LOG_2PI
from mogsgd.fast.epoch import learning_rates
from mogsgd.fast.full_kernel import GRAD, range_in, workspace
from mogsgd.fast.kernels import optimizer_step
from mogsgd.optim import AdamState, MomentumState, SGDState

__all__ = ["CompiledFullEpoch", "train_epoch", "OK", "FAR", "PROJECT"]

#: :func:`train_epoch`'s status: the epoch is done; a batch has far rows (its step is left
#: to Python); a factor needs the eigenvalue-floor projection (after the step).
OK, FAR, PROJECT = 0, 1, 2

_JIT = {"cache": True, "error_model": "numpy", "nogil": True}


@njit(**_JIT)
def _factors(theta, k, d, tied, means, U, const, log_w):
    """``means`` (K, D4, padded), the padded upper factors ``U`` (K, D4, D4; eq. 39),
    ``log pi_k`` (eq. 12) and ``const_k = sum_d A_kdd - D/2 log 2 pi + log pi_k`` (eq. 40)
    from the flat parameters."""
    kd = k * d
    nf = 1 if tied else k
    off_a = kd + nf * d * d
    for i in range(k):
        for a in range(d):
            means[i, a] = theta[i * d + a]
    top = theta[off_a]
    for i in range(1, k):
        top = max(top, theta[off_a + i])
    s = 0.0
    for i in range(k):
        s += math.exp(theta[off_a + i] - top)
    lse = top + math.log(s)
    for i in range(k):
        log_w[i] = theta[off_a + i] - lse
        f = 0 if tied else i
        base = kd + f * d * d
        trace = 0.0
        for a in range(d):
            trace += theta[base + a * d + a]
            U[i, a, a] = math.exp(theta[base + a * d + a])
            for e in range(a + 1, d):
                U[i, a, e] = theta[base + a * d + e]
        const[i] = trace - 0.5 * d * LOG_2PI + log_w[i]


@njit(**_JIT)
def train_epoch(X, order, w, has_w, batch, theta, k, tied, opt, s1, s2, count, lrs, b1, b2,
                eps, beta, frob_max, first):
    """Steps ``first, first + 1, ...`` of an epoch over the batches ``order[0:batch]``,
    ``order[batch:2 batch]``, ...; updates ``theta`` (the fields of the parameters, raveled
    in order), ``s1``, ``s2`` (the flat optimiser state) in place.

    Per batch, as :func:`mogsgd.train.make_stepper`: the summed NLL and its gradient
    (eqs. 40-44; pooled over components for tied), times ``1 / |B|``, then the optimiser
    step at the learning rate ``lrs[step]``.  Returns ``(next step, status, sum_b NLL_b
    |B_b|, sum_b |B_b|)`` with ``status`` :data:`OK` (the epoch is done), :data:`FAR` (the
    batch ``next step`` has far rows and was not stepped) or :data:`PROJECT` (after step
    ``next step - 1`` a factor has ``||U||_F^2 > frob_max`` and may need the floor).
    """
    n = order.shape[0]
    d = X.shape[1]
    d4 = -(-d // 4) * 4
    kd = k * d
    nf = 1 if tied else k
    off_l = kd
    off_a = kd + nf * d * d
    n_steps = -(-n // batch)
    Xb = np.empty((batch, d))
    wb = np.empty(batch if has_w else 0)
    means = np.zeros((k, d4))   # padded with zeros, as the kernel wants them
    U = np.zeros((k, d4, d4))
    const = np.empty(k)
    log_w = np.empty(k)
    acc = np.zeros(2)
    nk = np.zeros(k)
    gz = np.zeros((k, d4))
    M = np.zeros((k, d4, d4))
    g = np.zeros_like(theta)
    empty = np.empty((0, k))
    no_rows = np.empty(0)
    xt, R, Z, lw, top, lp, coef, gk, gr, wk = workspace(k, d, d4)
    total = 0.0
    rows = 0.0
    step = first
    while step < n_steps:
        lo = step * batch
        nb = min(n, lo + batch) - lo
        for j in range(nb):
            r = order[lo + j]
            for a in range(d):
                Xb[j, a] = X[r, a]
            if has_w:
                wb[j] = w[r]
        _factors(theta, k, d, tied, means, U, const, log_w)
        acc[:] = 0.0
        nk[:] = 0.0
        gz[:] = 0.0
        M[:] = 0.0
        range_in(Xb, 0, nb, wb, has_w, means, U, const, GRAD, acc, nk, gz, M, empty, no_rows,
                 xt, R, Z, lw, top, lp, coef, gk, gr, wk)
        finite = np.isfinite(acc[0])
        for i in range(k):
            for a in range(d):
                finite = finite and np.isfinite(gz[i, a])
                for e in range(a, d):
                    finite = finite and np.isfinite(M[i, a, e])
        if not finite:
            return step, FAR, total, rows
        scale = 1.0 / nb
        wsum = acc[1] if has_w else float(nb)
        g[off_l:off_a] = 0.0
        for i in range(k):
            for a in range(d):   # eq. 41: -U_k sum g z
                s = 0.0
                for e in range(a, d):
                    s += U[i, a, e] * gz[i, e]
                g[i * d + a] = -s * scale
            base = off_l + (0 if tied else i) * d * d
            for a in range(d):   # eqs. 42, 43 (eq. 44: summed over k for tied)
                g[base + a * d + a] += (M[i, a, a] * U[i, a, a] - nk[i]) * scale
                for e in range(a + 1, d):
                    g[base + a * d + e] += M[i, a, e] * scale
            g[off_a + i] = (wsum * math.exp(log_w[i]) - nk[i]) * scale   # eq. 17
        optimizer_step(theta, g, opt, s1, s2, count, lrs[step], b1, b2, eps, beta)
        count += 1
        total += -acc[0] * scale * nb
        rows += nb
        step += 1
        for f in range(nf):   # project_factor's cheap test: lambda_min >= 1 / ||U||_F^2
            base = off_l + f * d * d
            frob = 0.0
            for a in range(d):
                frob += math.exp(2.0 * theta[base + a * d + a])
                for e in range(a + 1, d):
                    frob += theta[base + a * d + e] ** 2
            if frob > frob_max:
                return step, PROJECT, total, rows
    return step, OK, total, rows


def _ravel(params) -> np.ndarray:
    return np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in params])


def _unravel(theta: np.ndarray, like):
    out, pos = [], 0
    for a in like:
        size = np.size(a)
        out.append(theta[pos:pos + size].reshape(np.shape(a)).copy())
        pos += size
    return type(like)(*out)


class CompiledFullEpoch:
    """``epoch(order, params, opt_state) -> (params, opt_state, nll_total, row_total)`` for
    full or tied parameters (see the module docstring).

    Parameters: ``X`` (n, D) float64 or float32 without NaN; ``sample_weight`` normalised to
    mean one (or ``None``); ``optimizer`` from :func:`mogsgd.optim.make_optimizer`; ``batch_size``;
    ``min_variance`` (the eigenvalue floor, eq. 46); ``python_step(params, opt_state, Xb,
    wb) -> (params, opt_state, batch NLL)``, the training loop's own step, for batches with
    far rows.
    """

    def __init__(self, X: np.ndarray, sample_weight, optimizer, batch_size: int,
                 min_variance: float, python_step) -> None:
        from mogsgd.fast.epoch import OPT_CODES, kernel_weights

        # C-contiguous float32 rows are gathered (and converted) batch by batch, not copied
        self.X = (X if X.dtype in (np.float32, np.float64) and X.flags.c_contiguous
                  else np.ascontiguousarray(X, dtype=np.float64))
        self.w, self.has_w = kernel_weights(sample_weight)
        self.sample_weight = sample_weight
        self.optimizer = optimizer
        self.opt = OPT_CODES[optimizer.name]
        self.batch = int(min(batch_size, self.X.shape[0]))
        self.min_variance = float(min_variance)
        self.python_step = python_step
        hp = optimizer.hyperparams
        self.b1, self.b2 = float(hp.get("b1", 0.9)), float(hp.get("b2", 0.999))
        self.eps, self.beta = float(hp.get("eps", 1e-8)), float(hp.get("beta", 0.9))
        self.schedule = hp["learning_rate"]

    def _state(self, opt_state, params):
        if isinstance(opt_state, AdamState):
            return _ravel(opt_state.mu), _ravel(opt_state.nu)
        if isinstance(opt_state, MomentumState):
            return _ravel(opt_state.velocity), np.empty(0)
        return np.empty(0), np.empty(0)

    def _opt_state(self, count: int, s1, s2, params):
        if self.opt == 3:
            return AdamState(count, _unravel(s1, params), _unravel(s2, params))
        if self.opt in (1, 2):
            return MomentumState(count, _unravel(s1, params))
        return SGDState(count)

    def __call__(self, order: np.ndarray, params, opt_state):
        family = ops.family_of(params)
        tied = family.name == "tied"
        k = params.means.shape[0]
        order = np.ascontiguousarray(order, dtype=np.int64)
        n_steps = -(-order.shape[0] // self.batch)
        count = int(opt_state.count)
        lrs = learning_rates(self.schedule, count, n_steps)
        theta = _ravel(params)
        s1, s2 = self._state(opt_state, params)
        frob_max = 1.0 / self.min_variance
        step, total, rows = 0, 0.0, 0.0
        while True:
            nxt, status, t, r = train_epoch(
                self.X, order, self.w, self.has_w, self.batch, theta, k, tied, self.opt, s1,
                s2, count, lrs, self.b1, self.b2, self.eps, self.beta, frob_max, step)
            count += nxt - step
            step, total, rows = nxt, total + t, rows + r
            if status == OK:
                break
            params = _unravel(theta, params)
            if status == PROJECT:
                params = family.project_floor(params, self.min_variance)
            else:   # FAR: this batch by the training loop's own step (the reference's sums)
                idx = order[step * self.batch:(step + 1) * self.batch]
                wb = None if self.sample_weight is None else self.sample_weight[idx]
                params, state, value = self.python_step(
                    params, self._opt_state(count, s1, s2, params), self.X[idx], wb)
                s1, s2 = self._state(state, params)
                count, step = count + 1, step + 1
                total, rows = total + value * len(idx), rows + len(idx)
            theta = _ravel(params)
        return _unravel(theta, params), self._opt_state(count, s1, s2, params), total, rows
