"""``python -m benchmarks [--quick] [--only GOALS] [--out DIR]``: run, print, write results.md."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:  # run from a source checkout without installing
    sys.path.insert(0, str(ROOT / "src"))

GOALS = ("1", "2", "3", "4", "5", "13.R", "13.T", "15.1", "15.2", "15.3", "15.4", "15.5",
         "15.6", "15.7", "15.8", "16.4", "17.1", "17.2")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true",
                        help="fewer repetitions and smaller sweeps (under a minute)")
    parser.add_argument("--only", default=",".join(GOALS),
                        help="comma-separated goals to run (default: all of "
                        f"{','.join(GOALS)}; 13.x are issue 13's, 15.x issue 15's, 16.x "
                        "issue 16's, 17.x issue 17's)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent,
                        help="directory for results.md, scaling.png, scaling.json")
    args = parser.parse_args(argv)
    goals = [g.strip() for g in args.only.split(",") if g.strip()]
    unknown = sorted(set(goals) - set(GOALS))
    if unknown:
        parser.error(f"unknown goal(s) {', '.join(unknown)}; choose from {', '.join(GOALS)}")
    args.out.mkdir(parents=True, exist_ok=True)

    from benchmarks import goals as G
    from benchmarks import issue13, issue15, issue16, issue17
    from benchmarks.common import machine
    from mogsgd import fast

    if not fast.available():
        print(f"note: compiled path unavailable ({fast.unavailable_reason()}); the mogsgd "
              "rows below measure the NumPy fallback", file=sys.stderr)
    started = time.perf_counter()
    load_before = _load()
    rows = []
    runners = {"1": lambda: G.full_pass(args.quick), "2": lambda: G.minibatch(args.quick),
               "3": lambda: G.em_quality(args.quick), "4": lambda: G.scaling(args.quick, args.out),
               "5": lambda: G.memory(args.quick),
               **{goal: (lambda fn=fn: fn(args.quick))
                  for goal, fn in (issue13.RUNNERS | issue15.RUNNERS
                                   | issue16.RUNNERS | issue17.RUNNERS).items()}}
    loads = []
    for goal in goals:
        t0 = time.perf_counter()
        new = runners[goal]()
        rows += new
        loads.append(f"{goal}: {_load()}")
        print(f"[goal {goal} done in {time.perf_counter() - t0:.1f} s]", file=sys.stderr)
    info = machine()
    info["load average (1 min) at start / end"] = f"{load_before} / {_load()}"
    info["load average (1 min) after each goal"] = ", ".join(loads)
    text = render(rows, info, args, time.perf_counter() - started)
    print(text)
    (args.out / "results.md").write_text(text)
    return 0


def _load() -> str:
    """The 1-minute load average (other processes competing for the cores), if known."""
    import os

    try:
        return f"{os.getloadavg()[0]:.2f}"
    except (AttributeError, OSError):
        return "unknown"


def render(rows, info: dict, args, seconds: float) -> str:
    command = "python -m benchmarks" + (" --quick" if args.quick else "")
    if args.only != ",".join(GOALS):
        command += f" --only {args.only}"
    lines = [
        "# mogsgd benchmark results", "",
        f"Command: `{command}` (from the repository root), "
        f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}, {seconds:.0f} s.",
        "Figures are the best (minimum) wall-clock time of several runs; float64 throughout.",
        "Every anchor is re-measured in the same run.  See `benchmarks/README.md` for what "
        "each row means.", "",
        "| machine | |", "|---|---|",
        *[f"| {k} | {v} |" for k, v in info.items()], "",
        "| goal | measurement | figure | compared with | ratio | target | met |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cells = [r.goal, r.what, r.figure, r.anchor, r.ratio, r.target, r.met]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
