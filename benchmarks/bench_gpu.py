"""GPU benchmark: full-pass NLL + gradient throughput against named anchors, and time-to-EM-level
training at batch 65,536 on 1e8 points.

Run on a machine with an NVIDIA GPU, PyTorch with CUDA and Triton::

    PYTHONPATH=src python benchmarks/bench_gpu.py                  # 1e8 points, K=3, D=3
    PYTHONPATH=src python benchmarks/bench_gpu.py --n 10_000_000 --skip-train

Without a CUDA device it prints that nothing was measured and exits 0.
``--smoke-cpu`` runs the same code on CPU tensors with tiny sizes (no Triton path) only to
check that the script works; its figures are not GPU figures and are labelled so.

Full pass (one read of all n points, NLL and its gradient w.r.t. every parameter),
in float32 and float64, measured side by side in one run:

* anchor ``autograd``: hand-written log-sum-exp, gradient by ``torch.autograd``;
* anchor ``analytic torch ops``: :func:`mogsgd.backends.torch_ops.nll_grad_sums`
  with ``kernel="torch"`` (eqs. 13-19 in plain PyTorch operations);
* anchor ``analytic torch.compile``: the same per-chunk function through ``torch.compile``;
* ``ours: fused Triton``: ``kernel="triton"`` (:mod:`mogsgd.backends.triton_kernel`);
* ``read X (x.sum)``: one reduction over X, the practical memory-bandwidth bound.

Every path's NLL and gradient are checked against the fused result before timing.
Throughput is n / median time, in G points/s.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time

import numpy as np


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=float, default=1e8, help="points (default 1e8)")
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--d", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--chunk", type=int, default=1 << 24,
                    help="rows per chunk for the autograd and torch.compile anchors")
    ap.add_argument("--skip-train", action="store_true", help="only the full-pass table")
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--smoke-cpu", action="store_true",
                    help="check the script on CPU tensors (figures are NOT GPU figures)")
    args = ap.parse_args(argv)

    try:
        import torch
    except ImportError:
        print("PyTorch is not installed: nothing measured (pip install 'mogsgd[torch]').")
        return 0
    global DEVICE
    if args.smoke_cpu:
        DEVICE = "cpu"
        print("SMOKE RUN ON CPU TENSORS: these figures are not GPU figures.")
    elif not torch.cuda.is_available():
        print(f"No CUDA GPU present (torch {torch.__version__}): nothing measured. "
              "Run this on a machine with an NVIDIA GPU, PyTorch with CUDA and Triton.")
        return 0

    from mogsgd.backends.triton_kernel import available

    name = torch.cuda.get_device_name() if DEVICE == "cuda" else "cpu (smoke run)"
    print(f"device: {name}; torch {torch.__version__}; triton available: {available()}")
    n = int(args.n)
    results = {"device": name, "torch": torch.__version__, "n": n, "k": args.k, "d": args.d,
               "full_pass": [], "train": None}
    for dtype in (torch.float32, torch.float64):
        rows = full_pass(torch, n, args.k, args.d, dtype, args.repeats, args.chunk)
        results["full_pass"] += rows
        if DEVICE == "cuda":
            torch.cuda.empty_cache()
    print_table(results["full_pass"])
    if not args.skip_train:
        results["train"] = train_goal(torch, n, args.k, args.d)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)
    return 0


# ------------------------------------------------------------------ full pass
DEVICE = "cuda"


def sync(torch) -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def make_problem(torch, n, k, d, dtype, seed=0):
    """Data from a K-component mixture and parameters a little off the truth, on the GPU."""
    from mogsgd import MixtureParams
    from mogsgd.backends.torch_ops import to_torch

    rng = np.random.default_rng(seed)
    truth = MixtureParams(rng.uniform(-4, 4, (k, d)), np.log(rng.uniform(0.5, 1.5, (k, d))),
                          rng.normal(size=k))
    gen = torch.Generator(device=DEVICE).manual_seed(seed)
    t = to_torch(truth, DEVICE, dtype)
    labels = torch.multinomial(torch.softmax(t.logits, 0), n, replacement=True, generator=gen)
    X = torch.randn((n, d), device=DEVICE, dtype=dtype, generator=gen)
    X.mul_(torch.exp(t.log_sigma)[labels]).add_(t.means[labels])
    del labels
    start = MixtureParams(truth.means + 0.3, truth.log_sigma - 0.1, truth.logits * 0.5)
    return X, start, truth


def autograd_pass(torch, X, params, chunk):
    """Anchor: NLL with a hand-written log-sum-exp, gradient by autograd (chunked)."""
    from mogsgd.density import LOG_2PI

    leaves = [p.detach().clone().requires_grad_(True) for p in params]
    means, log_sigma, logits = leaves
    total = 0.0
    for a in range(0, X.shape[0], chunk):
        x = X[a:a + chunk]
        z = (x[:, None, :] - means) * torch.exp(-log_sigma)
        a_ik = (-0.5 * (z * z).sum(-1) - log_sigma.sum(-1) - 0.5 * x.shape[1] * LOG_2PI
                + torch.log_softmax(logits, 0))
        m = a_ik.amax(1, keepdim=True).detach()
        lp = (m + torch.log(torch.exp(a_ik - m).sum(1, keepdim=True))).squeeze(1)
        loss = -lp.sum()
        loss.backward()
        total += loss.detach()
    return total, [p.grad for p in leaves]


def full_pass(torch, n, k, d, dtype, repeats, chunk):
    from mogsgd.backends import torch_ops as T

    X, start, _ = make_problem(torch, n, k, d, dtype)
    params = T.to_torch(start, DEVICE, dtype)
    fused = "triton" if DEVICE == "cuda" else "torch"
    compiled_pieces = torch.compile(T._pieces_torch, dynamic=False)

    def compiled_pass():
        parts = [compiled_pieces(X[a:a + chunk], params, None)
                 for a in range(0, n, chunk)]
        pieces = T.GradPieces(*(sum(f[1:], f[0]) for f in zip(*parts, strict=True)))
        return T.finish(pieces, params)

    paths = {
        "anchor: autograd (hand-written log-sum-exp)": lambda: autograd_pass(
            torch, X, params, chunk),
        "anchor: analytic gradients, plain torch ops": lambda: T.nll_grad_sums(
            X, params, kernel="torch"),
        "anchor: analytic gradients, torch.compile": compiled_pass,
        "ours: fused Triton kernel": lambda: T.nll_grad_sums(X, params, kernel=fused),
        "read X once (X.sum), bandwidth bound": lambda: X.sum(dim=0),
    }
    reference = T.sums_to_numpy(T.nll_grad_sums(X, params, kernel=fused))
    rows = []
    for label, fn in paths.items():
        out = fn()                                   # warm-up (and compilation)
        agree = check(torch, label, out, reference, dtype)
        fn()
        times = []
        for _ in range(repeats):
            sync(torch)
            t0 = time.perf_counter()
            fn()
            sync(torch)
            times.append(time.perf_counter() - t0)
        t = statistics.median(times)
        rows.append({"path": label, "dtype": str(dtype).replace("torch.", ""),
                     "seconds": t, "gpoints_per_s": n / t / 1e9, "agrees": agree})
        print(f"  {rows[-1]['dtype']:8s} {label:48s} {t * 1e3:9.2f} ms  "
              f"{rows[-1]['gpoints_per_s']:7.2f} G points/s  agrees: {agree}", flush=True)
    return rows


def check(torch, label, out, reference, dtype) -> str:
    """Relative agreement of a path's NLL and gradient with the fused kernel's."""
    if label.startswith("read"):
        return "n/a"
    if label.startswith("anchor: autograd"):
        nll_sum, grads = float(out[0]), [g.detach().cpu().numpy() for g in out[1]]
    else:
        nll_sum, grads = float(out.nll_sum), [t.detach().cpu().numpy() for t in out[2:]]
    errs = [abs(nll_sum - reference.nll_sum) / abs(reference.nll_sum)]
    for g, r in zip(grads, reference[2:], strict=True):
        errs.append(float(np.max(np.abs(g - r)) / max(1.0, np.max(np.abs(r)))))
    return f"{max(errs):.1e}"


def print_table(rows) -> None:
    print("\n| path | float32 G points/s | float64 G points/s |")
    print("| --- | --- | --- |")
    for label in dict.fromkeys(r["path"] for r in rows):
        by = {r["dtype"]: r["gpoints_per_s"] for r in rows if r["path"] == label}
        f32, f64 = by.get("float32", math.nan), by.get("float64", math.nan)
        print(f"| {label} | {f32:.3g} | {f64:.3g} |")


# -------------------------------------------------------------------- training
def train_goal(torch, n, k, d, batch=65_536, n_test=1_000_000, gap=1e-3):
    if DEVICE != "cuda":
        n, batch, n_test = min(n, 200_000), 4096, 20_000
    """Fit at batch 65,536 on n points; seconds until the held-out log-likelihood is within
    ``gap`` nats of the generating model's (what EM on this much data reaches)."""
    from mogsgd import SGDGaussianMixture
    from mogsgd.backends.torch_ops import log_prob, to_torch

    X, _, truth = make_problem(torch, n + n_test, k, d, torch.float32, seed=1)
    X_test, X = X[n:], X[:n]
    target = float(log_prob(X_test.double(), to_torch(truth, DEVICE)).mean())
    trace = []
    clock = time.perf_counter()

    def callback(state):
        sync(torch)
        p = est._scaler.to_data(state.last_params)
        score = float(log_prob(X_test.double(), to_torch(p, DEVICE)).mean())
        trace.append((time.perf_counter() - clock, state.epoch, score))

    est = SGDGaussianMixture(k, batch_size=batch, dtype=np.float32, random_state=0,
                             max_epochs=20, callback=callback)
    clock = time.perf_counter()
    est.fit(X)
    total = time.perf_counter() - clock
    reached = next(((t, e, s) for t, e, s in trace if target - s < gap), None)
    print(f"\ntraining, n={n:,}, batch {batch:,}, float32: EM-level held-out "
          f"log-likelihood {target:.5f}")
    for t, e, s in trace:
        print(f"  epoch {e:3d}  {t:7.2f} s (with the held-out scoring)  held-out {s:.5f}  "
              f"gap {target - s:.2e}")
    verdict = (f"reached within {gap:g} nats after {reached[0]:.2f} s (epoch {reached[1]})"
               if reached else f"not within {gap:g} nats in {len(trace)} epochs")
    print(f"  {verdict}; fit() took {total:.2f} s in all")
    return {"target": target, "trace": trace, "seconds_to_target": reached and reached[0],
            "fit_seconds": total}


if __name__ == "__main__":
    sys.exit(main())
