"""The anchors: what a user gets without mogsgd's kernels, re-measured in every run.

* :func:`naive_pass` -- the straightforward compiled loop: one point at a time, all
  K components, scalar ``math.exp`` / ``math.log`` (libm), numba, one thread.
* :func:`blocked_scalar_pass` -- the same blocked over points (structure of arrays,
  fast-math), still with scalar libm ``exp`` (numba's PyPI build has no SVML).
* :func:`scalar_transcendentals` / :func:`simd_transcendentals` -- the four
  ``exp``/``log`` calls per point (K = 3 exps and one log) and nothing else: scalar
  libm in a numba loop, and NumPy's SIMD ufuncs on cache-sized blocks (the practical
  limit for any kernel that evaluates them).
* :func:`torch_full_pass`, :func:`torch_minibatch_training` -- the obvious PyTorch
  autograd code (an (n, K, D) broadcast, ``logsumexp``, ``backward``; ``torch.optim.Adam``).

All compute the same NLL (and gradient where there is one) as the library.
"""

from __future__ import annotations

import math
import time

import numpy as np
from numba import njit

LOG_2PI = math.log(2.0 * math.pi)


@njit(cache=True)
def naive_pass(X, means, inv_sigma, cst, log_w, acc):
    """Sum of log p(x_i) and the gradient sums, one point at a time; ``acc`` as in
    ``mogsgd.fast.kernels``."""
    n, d_feat = X.shape
    n_comp = means.shape[0]
    lw = np.empty(n_comp)
    o_rz = 2 + n_comp
    o_rz2 = o_rz + n_comp * d_feat
    for i in range(n):
        m = -np.inf
        for k in range(n_comp):
            q = 0.0
            for d in range(d_feat):
                z = (X[i, d] - means[k, d]) * inv_sigma[k, d]
                q += z * z
            lw[k] = (-0.5 * q - cst[k]) + log_w[k]
            m = max(m, lw[k])
        s = 0.0
        for k in range(n_comp):
            lw[k] = math.exp(lw[k] - m)
            s += lw[k]
        acc[0] += m + math.log(s)
        acc[1] += 1.0
        for k in range(n_comp):
            r = lw[k] / s
            acc[2 + k] += r
            for d in range(d_feat):
                z = (X[i, d] - means[k, d]) * inv_sigma[k, d]
                acc[o_rz + k * d_feat + d] += r * z
                acc[o_rz2 + k * d_feat + d] += r * z * z


@njit(cache=True, fastmath=True)
def blocked_scalar_pass(X, means, inv_sigma, cst, log_w, acc, block):
    """The same sums, blocked over points in structure-of-arrays buffers, fast-math,
    but with scalar libm ``exp``/``log``."""
    n, d_feat = X.shape
    n_comp = means.shape[0]
    xt = np.empty((d_feat, block))
    lw = np.empty((n_comp, block))
    m = np.empty(block)
    s = np.empty(block)
    o_rz = 2 + n_comp
    o_rz2 = o_rz + n_comp * d_feat
    for start in range(0, n, block):
        nb = min(block, n - start)
        for j in range(nb):
            for d in range(d_feat):
                xt[d, j] = X[start + j, d]
        for j in range(nb):
            m[j] = -np.inf
            s[j] = 0.0
        for k in range(n_comp):
            for j in range(nb):
                lw[k, j] = 0.0
            for d in range(d_feat):
                mu = means[k, d]
                isg = inv_sigma[k, d]
                for j in range(nb):
                    z = (xt[d, j] - mu) * isg
                    lw[k, j] += z * z
            for j in range(nb):
                lw[k, j] = (-0.5 * lw[k, j] - cst[k]) + log_w[k]
                m[j] = max(m[j], lw[k, j])
        for k in range(n_comp):
            for j in range(nb):
                e = math.exp(lw[k, j] - m[j])
                lw[k, j] = e
                s[j] += e
        ll = 0.0
        for j in range(nb):
            ll += m[j] + math.log(s[j])
            s[j] = 1.0 / s[j]
        acc[0] += ll
        acc[1] += nb
        for k in range(n_comp):
            nk = 0.0
            for j in range(nb):
                lw[k, j] *= s[j]
                nk += lw[k, j]
            acc[2 + k] += nk
            for d in range(d_feat):
                mu = means[k, d]
                isg = inv_sigma[k, d]
                a = 0.0
                b = 0.0
                for j in range(nb):
                    z = (xt[d, j] - mu) * isg
                    a += lw[k, j] * z
                    b += lw[k, j] * z * z
                acc[o_rz + k * d_feat + d] += a
                acc[o_rz2 + k * d_feat + d] += b


@njit(cache=True)
def scalar_transcendentals(A, L):
    """``sum_i log(L_i) + exp(A_0i) + exp(A_1i) + exp(A_2i)``: 4 libm calls per point."""
    total = 0.0
    for i in range(L.shape[0]):
        total += math.exp(A[0, i]) + math.exp(A[1, i]) + math.exp(A[2, i]) + math.log(L[i])
    return total


def simd_transcendentals(A: np.ndarray, L: np.ndarray, block: int = 4096) -> float:
    """The same four calls per point with NumPy's SIMD ``exp``/``log`` on blocks of
    ``block`` points (the buffers stay in L1/L2)."""
    e = np.empty((A.shape[0], block))
    lg = np.empty(block)
    total = 0.0
    for start in range(0, L.shape[0], block):
        stop = min(L.shape[0], start + block)
        nb = stop - start
        np.exp(A[:, start:stop], out=e[:, :nb])
        np.log(L[start:stop], out=lg[:nb])
        total += lg[0] + e[0, 0]
    return total


# ---------------------------------------------------------------------- torch
def _torch_nll(torch, X, means, log_sigma, logits):
    """The obvious autograd code: broadcast to (n, K, D), logsumexp over K."""
    z = (X[:, None, :] - means) * torch.exp(-log_sigma)
    log_norm = log_sigma.sum(-1) + 0.5 * X.shape[1] * LOG_2PI
    wlp = -0.5 * (z * z).sum(-1) - log_norm + torch.log_softmax(logits, 0)
    return -torch.logsumexp(wlp, 1).sum()


def torch_full_pass(torch, X: np.ndarray, params):
    """A closure running one full-batch NLL + gradient by autograd; returns the NLL sum."""
    Xt = torch.from_numpy(X)
    leaves = [torch.tensor(np.array(a), requires_grad=True) for a in params]

    def run():
        for t in leaves:
            t.grad = None
        loss = _torch_nll(torch, Xt, *leaves)
        loss.backward()
        return loss.detach().item()

    return run, leaves


def torch_minibatch_training(torch, X: np.ndarray, params, n_steps: int, batch: int = 256,
                             lr: float = 0.02, seed: int = 0) -> float:
    """Seconds for ``n_steps`` Adam steps on shuffled batches of ``batch`` rows (shuffling,
    batch gathering, forward, backward and optimiser step included)."""
    Xt = torch.from_numpy(X)
    leaves = [torch.tensor(np.array(a), requires_grad=True) for a in params]
    opt = torch.optim.Adam(leaves, lr=lr)
    gen = torch.Generator().manual_seed(seed)
    n = Xt.shape[0]
    order = torch.randperm(n, generator=gen)
    pos = 0
    t0 = time.perf_counter()
    for _ in range(n_steps):
        if pos + batch > n:
            order = torch.randperm(n, generator=gen)
            pos = 0
        idx = order[pos:pos + batch]
        pos += batch
        opt.zero_grad()
        loss = _torch_nll(torch, Xt[idx], *leaves) / batch
        loss.backward()
        opt.step()
    return time.perf_counter() - t0
