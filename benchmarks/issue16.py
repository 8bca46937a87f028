"""The goal of issue 16 that is a measurement: reading a CSV file, against pandas.

====  ==========================================================  ========================
goal  measured                                                    anchor (same run)
====  ==========================================================  ========================
16.4  ``mogsgd.io.read_csv`` of a 200,000 x 10 file written by      ``pandas.read_csv`` of
      ``mogsgd.io.write_csv`` (``%.17g``, 40 MB): best time of      the same file
      several interleaved runs, and the peak RSS the read adds in
      a fresh process (above the process after its imports)
====  ==========================================================  ========================

Rows for the other engines (NumPy's ``loadtxt``, used without pyarrow; the line-by-line
reader that names the line of an error) and for pandas' exact mode
(``float_precision="round_trip"``, which our readers match) show what each costs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.goals import Row, _check
from benchmarks.issue15 import _env, interleaved

#: The file of goal 16.4.
N_ROWS, N_COLS = 200_000, 10

_RSS_SCRIPT = r"""
import json, sys

def status(field):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024

path, who = sys.argv[1], sys.argv[2]
if who == "pandas":
    import pandas as pd
    read = lambda: pd.read_csv(path)
else:
    from mogsgd.io import read_csv
    from mogsgd.csv_parse import engine_for
    engine_for("auto")   # import the engine's module before the baseline
    read = lambda: read_csv(path, engine=who)
base = status("VmRSS")
with open("/proc/self/clear_refs", "w") as fh:
    fh.write("5")        # the peak (VmHWM) starts again from here
table = read()
print(json.dumps({"base": base, "peak": status("VmHWM")}))
"""


def _peak_mb(path: Path, who: str) -> tuple[float, float]:
    """``(added, total)``: MB the read adds to the peak RSS, and the peak itself."""
    out = subprocess.run([sys.executable, "-c", _RSS_SCRIPT, str(path), who],
                         capture_output=True, text=True, env=_env(), check=True)
    m = json.loads(out.stdout.strip().splitlines()[-1])
    return (m["peak"] - m["base"]) / 1e6, m["peak"] / 1e6


def csv_reading(quick: bool) -> list[Row]:
    """Goal 16.4: time and peak memory of reading a 200k x 10 CSV, against pandas."""
    import pandas as pd

    from mogsgd.csv_parse import engine_for
    from mogsgd.io import read_csv, write_csv

    g = "16.4 CSV reading"
    rows: list[Row] = []
    rng = np.random.default_rng(0)
    X = rng.normal(size=(N_ROWS, N_COLS)) * 10.0 ** rng.integers(-3, 4, (1, N_COLS))
    with tempfile.TemporaryDirectory() as tmp:
        path = write_csv(Path(tmp) / "data.csv", X)
        size_mb = os.path.getsize(path) / 1e6
        engine = engine_for("auto")
        assert np.array_equal(read_csv(path).X, X)   # exact, as written
        reps = 2 if quick else 5
        ours, theirs, exact = interleaved([
            lambda: read_csv(path), lambda: pd.read_csv(path),
            lambda: pd.read_csv(path, float_precision="round_trip")], reps)
        numpy_t, python_t = interleaved([lambda: read_csv(path, engine="numpy"),
                                         lambda: read_csv(path, engine="python")],
                                        1 if quick else 2)
        ours_mem, ours_total = _peak_mb(path, engine)
        pandas_mem, pandas_total = _peak_mb(path, "pandas")
    what = f"{N_ROWS:,} x {N_COLS} file, {size_mb:.0f} MB"
    rows.append(Row(g, f"anchor: `pandas.read_csv` (pandas {pd.__version__}), {what}",
                    f"{theirs:.3f} s; +{pandas_mem:.0f} MB peak RSS ({pandas_total:.0f} MB "
                    "total)"))
    rows.append(Row(g, "anchor: `pandas.read_csv(float_precision='round_trip')` (exact, as "
                       "ours)", f"{exact:.3f} s", "pandas.read_csv", f"{exact / theirs:.2f}x"))
    rows.append(Row(g, f"**mogsgd `io.read_csv`** (engine {engine!r}), time", f"{ours:.3f} s",
                    "pandas.read_csv", f"{ours / theirs:.2f}x", "<= 1.5x",
                    _check(ours <= 1.5 * theirs)))
    rows.append(Row(g, f"**mogsgd `io.read_csv`** (engine {engine!r}), peak RSS added by the "
                       "read", f"+{ours_mem:.0f} MB ({ours_total:.0f} MB total)",
                    "pandas.read_csv", f"{ours_mem / pandas_mem:.2f}x", "<= 1.5x",
                    _check(ours_mem <= 1.5 * pandas_mem)))
    rows.append(Row(g, "mogsgd `io.read_csv(engine='numpy')` (NumPy `loadtxt`, without "
                       "pyarrow)", f"{numpy_t:.3f} s", "pandas.read_csv",
                    f"{numpy_t / theirs:.2f}x"))
    rows.append(Row(g, "mogsgd `io.read_csv(engine='python')` (the line-by-line reader, "
                       "used for files the engines refuse)", f"{python_t:.3f} s",
                    "pandas.read_csv", f"{python_t / theirs:.2f}x"))
    return rows


RUNNERS = {"16.4": csv_reading}
