"""Counters of what a schedule exercised, so a green run also shows it did something."""

from __future__ import annotations

from dataclasses import dataclass, fields

# The fields of the summary line, in order (its form is part of the CLI's contract).
SUMMARY_FIELDS = ("committed", "elections", "snapshots", "crashes", "reads", "conf_changes")


@dataclass(slots=True)
class SimStats:
    events: int = 0
    committed: int = 0  # distinct client payloads known committed
    elections: int = 0  # distinct (term, leader) pairs
    snapshots: int = 0  # snapshots installed from a leader (InstallSnapshot runs)
    compactions: int = 0
    crashes: int = 0
    mid_ready_crashes: int = 0
    restarts: int = 0
    reads: int = 0  # reads completed (and checked)
    conf_changes: int = 0  # configuration entries known committed
    conf_refused: int = 0
    transfers: int = 0
    proposals: int = 0
    acked: int = 0
    refused: int = 0  # NotLeaderError / ProposalDroppedError / node down
    partitions: int = 0
    messages: int = 0
    dropped: int = 0
    invalid_messages: int = 0
    sim_time_ms: int = 0

    def add(self, other: SimStats) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def summary_line(self, schedules: int, violations: int) -> str:
        counts = " ".join(f"{name}={getattr(self, name)}" for name in SUMMARY_FIELDS)
        return f"schedules={schedules} violations={violations} {counts}"

    def detail_line(self) -> str:
        names = (
            "events",
            "sim_time_ms",
            "proposals",
            "acked",
            "refused",
            "messages",
            "dropped",
            "invalid_messages",
            "partitions",
            "mid_ready_crashes",
            "restarts",
            "compactions",
            "transfers",
            "conf_refused",
        )
        return " ".join(f"{name}={getattr(self, name)}" for name in names)
