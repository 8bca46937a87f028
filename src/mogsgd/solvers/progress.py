"""Progress messages of a fit on stdout, as scikit-learn's ``verbose`` prints them.

``verbose=1``: one line when each initialisation (restart) starts and one when it ends;
``verbose>=2``: also the time and the change of the mean log-likelihood every
:data:`INTERVAL` iterations (EM) or epochs (the stochastic solvers), the end line with the
time and the final mean log-likelihood, and the end-point refinement's step count.
"""

from __future__ import annotations

import time

__all__ = ["Progress", "INTERVAL"]

#: Iterations (epochs) between two progress lines at ``verbose>=2`` (scikit-learn's
#: ``verbose_interval`` default).
INTERVAL = 10


class Progress:
    """Prints one fit's progress; every method is silent at ``verbose=0``."""

    def __init__(self, verbose: int) -> None:
        self.verbose = int(verbose)
        self._start = self._last = time.perf_counter()
        self._previous: float | None = None
        self._count = 0

    def init_start(self, restart: int) -> None:
        """Initialisation number ``restart`` starts."""
        if self.verbose >= 1:
            print(f"Initialization {restart}", flush=True)
        self._start = self._last = time.perf_counter()
        self._previous, self._count = None, 0

    def iteration(self, loglik: float) -> None:
        """One iteration (epoch) ended with mean log-likelihood ``loglik``."""
        self._count += 1
        change = None if self._previous is None else loglik - self._previous
        self._previous = loglik
        if self.verbose >= 2 and self._count % INTERVAL == 0:
            now = time.perf_counter()
            change_text = "nan" if change is None else f"{change:.5f}"
            print(f"  Iteration {self._count}\t time lapse {now - self._last:.5f}s\t "
                  f"ll change {change_text}", flush=True)
            self._last = now

    def init_end(self, converged: bool, loglik: float | None) -> None:
        """The initialisation ended (``loglik``: its final mean log-likelihood, needed at
        ``verbose>=2``)."""
        if self.verbose < 1:
            return
        state = "converged" if converged else "did not converge"
        if self.verbose == 1:
            print(f"Initialization {state}.", flush=True)
        else:
            print(f"Initialization {state}. time lapse "
                  f"{time.perf_counter() - self._start:.5f}s\t lower bound {loglik:.5f}.",
                  flush=True)

    def refined(self, n_steps: int) -> None:
        """The run was refined by ``n_steps`` EM steps."""
        if self.verbose >= 2 and n_steps:
            print(f"  Refined with {n_steps} EM step(s).", flush=True)
