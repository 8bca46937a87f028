"""How parameters move: the solver registry, the one restart loop and the support table.

``SOLVERS`` maps the estimator's ``solver=`` to an implementation with one method,
``run(prepared, start, settings, rng, *, state, writer, extend) -> Run``
(:mod:`mogsgd.solvers.runs`); :func:`fit_runs` runs the restarts for every input kind and
:func:`check_supported` refuses what an input kind cannot do
(:mod:`mogsgd.solvers.support`).
"""

from mogsgd.solvers.runs import (
    SOLVERS,
    EMSolver,
    Run,
    RunSettings,
    StochasticSolver,
    fit_runs,
    get_solver,
    partial_epoch,
)
from mogsgd.solvers.support import FEATURES, check_supported, support_table

__all__ = ["SOLVERS", "EMSolver", "Run", "RunSettings", "StochasticSolver", "fit_runs",
           "get_solver", "partial_epoch", "FEATURES", "check_supported", "support_table"]
