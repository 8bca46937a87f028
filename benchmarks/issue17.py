"""The speed goals of issue 17 (covariance types), each against its anchors in one run.

====  ==========================================================  ========================
goal  measured                                                    anchors (same run)
====  ==========================================================  ========================
17.1  one pass of the NLL and its analytic gradient, full          the NumPy reference
      covariances, D = 16, K = 8 (compiled kernel, one thread);    (same maths, BLAS on one
      every covariance type's compiled pass against diag's         thread); PyTorch autograd
17.2  time to EM quality (held-out LL within 0.01 nats/point of    scikit-learn's default
      converged EM) of the default ``covariance_type="full"`` fit  ``covariance_type="full"``
      on 1e6 correlated rows, D = 16, K = 8                        fit; a PyTorch autograd
                                                                  loop (Adam, batch 256)
====  ==========================================================  ========================
"""

from __future__ import annotations

import time
import warnings

import numpy as np

from benchmarks.common import (
    best_of,
    correlated_set,
    fit_with_held_out_marks,
    numba_threads,
    optional_torch,
)
from benchmarks.goals import Row, _check
from benchmarks.issue15 import interleaved
from mogsgd.errors import ConvergenceWarning

K, D = 8, 16
LOG_2PI = float(np.log(2.0 * np.pi))


def _blas_threads(n: int | None):
    """A context limiting BLAS (OpenBLAS/MKL) to ``n`` threads (``None``: unchanged)."""
    import contextlib

    if n is None:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=n, user_api="blas")


# --------------------------------------------------------------- PyTorch anchors
def _torch_leaves(torch, params):
    return [torch.tensor(np.array(a, dtype=np.float64), requires_grad=True) for a in params]


def _torch_full_nll(torch, X, means, log_chol, logits):
    """The obvious autograd code for full covariances (log-Cholesky of the precision, eq.
    40): per component ``z = (x - mu_k) U_k``, ``log N = sum log U_dd - |z|^2 / 2 - D/2
    log 2 pi``, logsumexp over K; returns the summed NLL."""
    d = X.shape[1]
    mask = torch.triu(torch.ones(d, d, dtype=X.dtype), 1)
    cols = []
    for k in range(means.shape[0]):
        A = log_chol[k]
        U = A * mask + torch.diag(torch.exp(torch.diagonal(A)))
        z = (X - means[k]) @ U
        cols.append(torch.diagonal(A).sum() - 0.5 * (z * z).sum(1))
    wlp = torch.stack(cols, 1) - 0.5 * d * LOG_2PI + torch.log_softmax(logits, 0)
    return -torch.logsumexp(wlp, 1).sum()


# --------------------------------------------------------------- 17.1
def _difference(got, ref) -> float:
    """Largest difference of two gradient sums: the NLL's relative, each gradient field's
    over the weight ``W`` (the scale of the sums' terms, as goal 1 measures it: near the
    optimum a gradient is a small difference of large sums)."""
    err = abs(got.nll_sum - ref.nll_sum) / abs(ref.nll_sum)
    for a, b in zip(got[2:], ref[2:], strict=True):
        err = max(err, float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) / ref.weight_sum)
    return err


def full_pass(quick: bool) -> list[Row]:
    """One NLL + gradient pass over ``n`` correlated rows, D = 16, K = 8."""
    from mogsgd import fast
    from mogsgd.covariance import FULL, get_family, ops

    g = "17.1 full-covariance pass"
    n = 65_536 if quick else 524_288
    reps = 2 if quick else 3
    ds = correlated_set(n, K, D)
    X = (ds.X - ds.X.mean(0)) / ds.X.std(0)
    params = FULL.from_data(ds.truth, ds.X.mean(0), ds.X.std(0))   # the fit's own units
    rows: list[Row] = []
    with _blas_threads(1), numba_threads(1):   # one thread each: CPU time, interleaved
        t_np, t_one = interleaved([lambda: FULL.nll_grad_sums(X, params),
                                   lambda: fast.nll_grad_sums(X, params)], reps,
                                  clock=time.process_time)
    t_np_all = best_of(lambda: FULL.nll_grad_sums(X, params), reps)
    t_all = best_of(lambda: fast.nll_grad_sums(X, params), reps)
    rate = lambda t: f"{n / t / 1e6:.2f} M points/s ({1e3 * t:.0f} ms)"  # noqa: E731
    rows.append(Row(g, f"anchor: NumPy reference `FULL.nll_grad_sums` (BLAS on 1 thread; "
                    f"least CPU time), {n} rows", rate(t_np)))
    rows.append(Row(g, "anchor: the same, BLAS on all threads (wall-clock)", rate(t_np_all)))
    torch = optional_torch()
    t_torch = None
    if torch is not None:
        Xt = torch.from_numpy(X)
        leaves = _torch_leaves(torch, params)

        def run():
            for t in leaves:
                t.grad = None
            loss = _torch_full_nll(torch, Xt, *leaves)
            loss.backward()
            return loss.item()

        t_torch = best_of(run, reps)
        rows.append(Row(g, f"anchor: PyTorch {torch.__version__} autograd, full batch "
                        f"({torch.get_num_threads()} threads)", rate(t_torch)))
    import numba

    rows.append(Row(g, "**mogsgd compiled kernel (`fast.nll_grad_sums`), 1 thread** (least "
                    "CPU time, runs interleaved with the NumPy reference's)",
                    rate(t_one), "NumPy reference, 1 thread", f"{t_np / t_one:.1f}x", ">= 10x",
                    _check(t_np / t_one >= 10)))
    rows.append(Row(g, f"mogsgd compiled kernel, {numba.get_num_threads()} threads (wall-clock)",
                    rate(t_all),
                    "NumPy reference, all threads", f"{t_np_all / t_all:.1f}x"))
    if t_torch is not None:
        rows.append(Row(g, "mogsgd compiled kernel, all threads", "",
                        "PyTorch autograd full batch", f"{t_torch / t_all:.1f}x"))
    err = _difference(fast.nll_grad_sums(X, params), FULL.nll_grad_sums(X, params))
    rows.append(Row(g, "agreement with the NumPy reference (NLL relative; gradients on the "
                    "scale of the sums' terms, / W)", f"{err:.1e}", "", "", "<= 1e-10",
                    _check(err <= 1e-10)))
    # every covariance type's compiled pass on the same rows, against diag's
    times = {}
    with numba_threads(1):
        fits = {}
        for name in ("diag", "spherical", "tied", "full"):
            fam = get_family(name)
            if name == "full":
                fits[name] = params
            elif name == "tied":
                fits[name] = fam.init_from_moments(params.weights, params.means,
                                                   FULL.covariances(params)[0], 0.0)
            else:
                var = np.einsum("kdd->kd", FULL.covariances(params))
                fits[name] = fam.init_from_moments(
                    params.weights, params.means, var.mean(1) if name == "spherical" else var,
                    0.0)
        fns = [lambda p=p: fast.nll_grad_sums(X, p) for p in fits.values()]
        for name, t in zip(fits, interleaved(fns, reps, clock=time.process_time), strict=True):
            times[name] = t
        for name, p in fits.items():
            if name in ("spherical", "tied"):
                times[name + "_err"] = _difference(fast.nll_grad_sums(X[:20_000], p),
                                                   ops.nll_grad_sums(X[:20_000], p))
    for name in ("spherical", "tied", "full"):
        extra = (f"; agrees with its NumPy reference to {times[name + '_err']:.0e}"
                 if name + "_err" in times else "")
        target, met = "", ""
        if name == "spherical":   # the diagonal kernel plus a sum over features
            target, met = "<= 1.5x diag", _check(times[name] / times["diag"] <= 1.5)
        rows.append(Row(g, f"compiled pass, covariance_type={name!r}, 1 thread (CPU time){extra}",
                        f"{1e3 * times[name]:.0f} ms", f"diag ({1e3 * times['diag']:.0f} ms)",
                        f"{times[name] / times['diag']:.1f}x the cost", target, met))
    return rows


# --------------------------------------------------------------- 17.2
def _converged_em(ds, start, max_iter: int):
    """EM (compiled E-step, closed-form full M-step with scikit-learn's ``reg_covar``) from
    ``start`` until the extrapolated remaining gain (:func:`mogsgd.em.remaining_gain`) is
    below 1e-6 nats/point or ``max_iter`` iterations: ``(held-out LL, remaining gain
    estimated at the end, iterations, converged, seconds)``.  At the cap the remaining gain
    (of the training LL) is added to the reference, so that the target is not lowered."""
    from mogsgd import fast
    from mogsgd.covariance import ops
    from mogsgd.em import em_loop, remaining_gain

    t0 = time.perf_counter()
    res = em_loop(lambda p: fast.em_stats(ds.X, p), lambda p: -fast.nll(ds.X, p), start,
                  max_iter=max_iter, tol=1e-6, reg_covar=1e-6, update=ops.m_step,
                  extrapolate=True)
    lls = res.log_likelihoods
    rest = 0.0 if res.converged or len(lls) < 3 else remaining_gain(*lls[-3:])
    return (-fast.nll(ds.X_test, res.params), rest, res.n_iter, res.converged,
            time.perf_counter() - t0)


def _ours(ds, target: float):
    """The default full-covariance fit with a per-epoch held-out score (not timed):
    ``(time to target or None, epoch, total seconds, final held-out LL, epochs)``.  The
    fit's returned parameters count too: if only they reach the target, the time is the
    whole fit's."""
    from mogsgd import SGDGaussianMixture

    est = SGDGaussianMixture(K, covariance_type="full", random_state=0)
    marks, total = fit_with_held_out_marks(est, ds)
    final = est.score(ds.X_test)
    reached = next(((t, f"after epoch {e}") for t, e, ll in marks if ll >= target), None)
    if reached is None and final >= target:
        reached = (total, "the fit's result")
    return reached, total, final, est.n_iter_, est


def _torch_loop(torch, ds, start, target: float, budget_s: float):
    """The obvious PyTorch loop (autograd on :func:`_torch_full_nll`, ``torch.optim.Adam`` at
    mogsgd's default rate 0.02, batches of 256 shuffled rows of the standardised data) from
    mogsgd's starting parameters, scored on the held-out rows every 1000 steps (not
    timed) until ``target`` or ``budget_s`` seconds: ``(seconds or None, steps, LL)``."""
    from mogsgd import fast
    from mogsgd.covariance import FULL

    center, scale = ds.X.mean(0), ds.X.std(0)
    Xt = torch.from_numpy((ds.X - center) / scale)
    leaves = _torch_leaves(torch, FULL.from_data(start, center, scale))
    opt = torch.optim.Adam(leaves, lr=0.02)
    gen = torch.Generator().manual_seed(0)
    n, batch, steps, spent = Xt.shape[0], 256, 0, 0.0
    order, pos = torch.randperm(n, generator=gen), 0
    ll = -np.inf
    while spent < budget_s:
        t0 = time.perf_counter()
        for _ in range(1000):
            if pos + batch > n:
                order, pos = torch.randperm(n, generator=gen), 0
            idx = order[pos:pos + batch]
            pos += batch
            opt.zero_grad()
            loss = _torch_full_nll(torch, Xt[idx], *leaves) / batch
            loss.backward()
            opt.step()
            with torch.no_grad():   # the log-Cholesky stays upper triangular
                leaves[1].copy_(torch.triu(leaves[1]))
        spent += time.perf_counter() - t0
        steps += 1000
        means, log_chol, logits = (t.detach().numpy() for t in leaves)
        try:
            p = FULL.to_data(FULL.params_type.create(means, log_chol, logits), center, scale)
            ll = -fast.nll(ds.X_test, p)
        except Exception:   # diverged (non-finite parameters)
            return None, steps, -np.inf, spent
        if ll >= target:
            return spent, steps, ll, spent
    return None, steps, ll, spent


def time_to_em_quality(quick: bool) -> list[Row]:
    """Time to EM quality on 1e6 correlated rows (initialisation counted on every side)."""
    from sklearn.mixture import GaussianMixture

    from mogsgd import SGDGaussianMixture
    from mogsgd.covariance import FULL

    g = "17.2 time to EM quality, full"
    n = 100_000 if quick else 1_000_000
    ds = correlated_set(n, K, D)
    label = f"{ds.name}, {n:.0e} rows"
    with warnings.catch_warnings():   # compile every kernel for this shape outside the clock
        warnings.simplefilter("ignore", ConvergenceWarning)
        SGDGaussianMixture(K, covariance_type="full", random_state=0,
                           max_epochs=2).fit(ds.X[:20_000])
    t0 = time.perf_counter()
    gm = GaussianMixture(K, covariance_type="full", random_state=0).fit(ds.X)
    t_sk = time.perf_counter() - t0
    ll_sk = gm.score(ds.X_test)
    start = FULL.init_from_moments(gm.weights_, gm.means_, gm.covariances_, 0.0)
    ll_em, rest, it_conv, conv, t_conv = _converged_em(ds, start, 30 if quick else 60)
    ll_conv = ll_em + (rest if np.isfinite(rest) else 0.0)
    ref = max(ll_sk, ll_conv)
    target = ref - 0.01
    state = ("converged: extrapolated remaining gain < 1e-6 nats/point" if conv else
             f"stopped at the cap; the extrapolated remaining gain {rest:.1e} nats/point is "
             "added")
    rows = [
        Row(g, f"anchor: scikit-learn GaussianMixture(covariance_type='full') default fit, "
            f"{label} ({gm.n_iter_} iterations, k-means init included)",
            f"{t_sk:.2f} s, held-out LL {ll_sk:.4f}"),
        Row(g, f"reference: converged EM = EM continued from scikit-learn's fit ({it_conv} "
            f"more iterations, {state}; mogsgd's compiled E-step, {t_conv:.0f} s)",
            f"held-out LL {ll_conv:.4f}"),
    ]
    reached, total, final, epochs, est = _ours(ds, target)
    rows.append(Row(g, f"mogsgd SGDGaussianMixture(covariance_type='full') defaults: whole "
                    f"fit ({epochs} epochs + EM refinement of {est.refine_iter_} steps)",
                    f"{total:.2f} s, held-out LL {final:.4f}", "scikit-learn default fit",
                    f"{total / t_sk:.2f}x the time"))
    what = (f"**mogsgd time to a held-out LL >= converged EM's - 0.01 = {target:.4f}**")
    if reached is None:
        rows.append(Row(g, what, "not reached", "scikit-learn default fit", "", "<= 0.25x",
                        "**no**"))
    else:
        t_q, when = reached
        rows.append(Row(g, f"{what} ({when})", f"{t_q:.2f} s", "scikit-learn default fit",
                        f"{t_q / t_sk:.2f}x the time", "<= 0.25x", _check(t_q / t_sk <= 0.25)))
    torch = optional_torch()
    if torch is not None:
        init = SGDGaussianMixture(K, covariance_type="full", random_state=0, max_epochs=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            start = init.fit(ds.X).params_
        budget = 20.0 if quick else 60.0
        t_t, steps, ll_t, spent = _torch_loop(torch, ds, start, target, budget)
        if t_t is None:
            rows.append(Row(g, f"anchor: PyTorch {torch.__version__} autograd loop (Adam, "
                            f"batch 256, mogsgd's start), {steps} steps in {spent:.0f} s "
                            f"({1e3 * spent / max(steps, 1):.0f} ms/step)",
                            f"target not reached (held-out LL {ll_t:.4f})"))
        else:
            rows.append(Row(g, f"anchor: PyTorch {torch.__version__} autograd loop (Adam, "
                            f"batch 256, mogsgd's start; initialisation not counted)",
                            f"{t_t:.2f} s to the target ({steps} steps)"))
    from mogsgd import fast

    rows.append(Row(g, "for reference: held-out LL of the true parameters",
                    f"{-fast.nll(ds.X_test, ds.truth):.4f}"))
    return rows


RUNNERS = {"17.1": full_pass, "17.2": time_to_em_quality}
