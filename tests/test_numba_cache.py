"""Kernels loaded from numba's on-disk cache run as the freshly compiled ones do.

A clean checkout compiles every kernel in the test process, so the suite alone never runs a
kernel that a *later* process loads from the cache -- the path every user's second run
takes, and the one where a cached kernel calling a ``parallel=True`` function crashed the
interpreter (segmentation fault, fixed in fdf5f77).  Here the same fits run in two fresh
processes one after the other (the first compiles what is not cached yet and writes it, the
second loads it): both must exit normally with results identical to this process's.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from mogsgd import SGDGaussianMixture, make_mixture

# batch EM on >= 2**17 rows runs threaded passes; the default fit of >= 100k rows takes the
# large-data path (k-means++ init, one epoch, EM refinement to the statistical resolution)
_ROWS = 140_000
_FITS = {
    "diag": {},
    "full": {"covariance_type": "full"},
    "tied": {"covariance_type": "tied"},
    "em": {"solver": "em"},
    "online_em": {"solver": "online_em", "max_epochs": 2},
}

_SCRIPT = """
import json, sys
from mogsgd import SGDGaussianMixture, make_mixture
fits = json.loads(sys.argv[1])
X = make_mixture(int(sys.argv[2]), 3, 3, random_state=0)[0]
print(json.dumps({name: float(SGDGaussianMixture(3, random_state=0, **options).fit(X).score(X))
                  for name, options in fits.items()}))
"""


def _scores_in_a_fresh_process() -> dict[str, float]:
    done = subprocess.run([sys.executable, "-c", _SCRIPT, json.dumps(_FITS), str(_ROWS)],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_kernels_loaded_from_the_cache_give_the_same_fits():
    first = _scores_in_a_fresh_process()    # compiles what the cache lacks
    second = _scores_in_a_fresh_process()   # loads every kernel from the cache
    X = make_mixture(_ROWS, 3, 3, random_state=0)[0]
    here = {name: float(SGDGaussianMixture(3, random_state=0, **options).fit(X).score(X))
            for name, options in _FITS.items()}
    assert first == second == here
    assert all(np.isfinite(v) for v in here.values())
