"""paramstore's fault-injection harness: nemeses, workloads, history checkers and reports.

``run_chaos(ChaosConfig(...))`` is what ``paramstore chaos`` runs: a local cluster of real
processes (or one ``paramstore up`` runs), a workload whose history reveals every lost,
doubled or stale operation, a seeded or scripted schedule of faults, the checkers, and a
report directory.
"""

from paramstore.chaos._attach import ClusterFileError, load_cluster_file
from paramstore.chaos._catalogue import NEMESES, defaults_for, needing_fsync_always, without_restarts
from paramstore.chaos._linearizability import check_linearizable, pair_history
from paramstore.chaos._params_checker import check_params
from paramstore.chaos._report import CheckerVerdict, FaultWindow, Violation, write_report
from paramstore.chaos._runner import ChaosConfig, ChaosOutcome, run_chaos
from paramstore.chaos._targets import ClusterShape
from paramstore.chaos._timeline import ScriptedFault, TimelineError, load_timeline, timeline_end
from paramstore.chaos._workload import WorkloadConfig

__all__ = [
    "NEMESES",
    "ChaosConfig",
    "ChaosOutcome",
    "CheckerVerdict",
    "ClusterFileError",
    "ClusterShape",
    "FaultWindow",
    "ScriptedFault",
    "TimelineError",
    "Violation",
    "WorkloadConfig",
    "check_linearizable",
    "check_params",
    "defaults_for",
    "load_cluster_file",
    "load_timeline",
    "needing_fsync_always",
    "pair_history",
    "run_chaos",
    "timeline_end",
    "without_restarts",
    "write_report",
]
