"""paramstore's fault-injection harness: nemeses, workloads, history checkers and reports.

``run_chaos(ChaosConfig(...))`` is what ``paramstore chaos`` runs: a local cluster of real
processes, a workload whose history reveals every lost, doubled or stale operation, a
seeded schedule of faults, the checkers, and a report directory.
"""

from paramstore.chaos._linearizability import check_linearizable, pair_history
from paramstore.chaos._nemesis import NEMESES
from paramstore.chaos._params_checker import check_params
from paramstore.chaos._report import CheckerVerdict, FaultWindow, Violation, write_report
from paramstore.chaos._runner import ChaosConfig, ChaosOutcome, run_chaos
from paramstore.chaos._workload import WorkloadConfig

__all__ = [
    "NEMESES",
    "ChaosConfig",
    "ChaosOutcome",
    "CheckerVerdict",
    "FaultWindow",
    "Violation",
    "WorkloadConfig",
    "check_linearizable",
    "check_params",
    "pair_history",
    "run_chaos",
    "write_report",
]
