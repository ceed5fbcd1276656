"""Tunables of one Raft node, in ticks (the driver decides how long a tick is)."""

from __future__ import annotations

from dataclasses import dataclass

from consensus.messages import ConfState


@dataclass(frozen=True, slots=True)
class RaftConfig:
    """Configuration of one ``RaftCore``.

    ``initial_conf`` is the membership a brand-new cluster starts with (ignored once the log
    or a snapshot carries a config). A node joining an existing cluster passes the cluster's
    current membership plus itself, so that it accepts messages from the members.
    """

    node_id: int
    initial_conf: ConfState
    election_timeout_ticks: int = 10
    heartbeat_interval_ticks: int = 1
    pre_vote: bool = True
    check_quorum: bool = True
    # Lease reads trust that no other leader can exist before followers' election timers
    # run out; ``lease_clock_drift_ticks`` is subtracted from that window as the margin for
    # bounded clock drift. Off by default: ReadIndex confirms leadership with a round trip.
    lease_read: bool = False
    lease_clock_drift_ticks: int = 2
    entries_per_append_max: int = 4096
    append_bytes_max: int = 4 * 1024 * 1024
    appends_in_flight_max: int = 64
    snapshot_chunk_bytes_max: int = 1024 * 1024
    uncommitted_entries_max: int = 1_000_000
    pending_reads_max: int = 100_000
    # A learner may be promoted only when its log is within this many entries of the
    # leader's last index.
    learner_catchup_entries_max: int = 1000
    # On a commit the leader tells every follower at once with an (empty) append, as etcd's
    # raft does. Off: followers learn a new commit index from the next append or heartbeat,
    # at most ``heartbeat_interval_ticks`` later. That removes a message and its answer per
    # follower from each commit of a lone writer (they compete for the CPU with its next
    # request), and delays only the followers' applies, which no write waits for.
    broadcast_commit: bool = True

    @property
    def lost_append_rounds(self) -> int:
        """Heartbeat rounds a follower in REPLICATE may answer, with appends outstanding,
        before its leader takes the appends for lost and probes it again: an election
        timeout's worth."""
        return -(-self.election_timeout_ticks // self.heartbeat_interval_ticks)

    def __post_init__(self) -> None:
        if self.node_id <= 0:
            raise ValueError(f"node_id must be a positive integer, got {self.node_id}")
        if self.heartbeat_interval_ticks < 1:
            raise ValueError(f"heartbeat_interval_ticks must be >= 1, got {self.heartbeat_interval_ticks}")
        if self.election_timeout_ticks <= self.heartbeat_interval_ticks:
            raise ValueError(
                "election_timeout_ticks must exceed heartbeat_interval_ticks, got "
                f"{self.election_timeout_ticks} <= {self.heartbeat_interval_ticks}"
            )
        if self.lease_read and not self.check_quorum:
            raise ValueError("lease_read requires check_quorum (a leader must step down on losing quorum)")
        if not 0 <= self.lease_clock_drift_ticks < self.election_timeout_ticks:
            raise ValueError(
                "lease_clock_drift_ticks must be in [0, election_timeout_ticks), got "
                f"{self.lease_clock_drift_ticks}"
            )
        for name in (
            "entries_per_append_max",
            "append_bytes_max",
            "appends_in_flight_max",
            "snapshot_chunk_bytes_max",
            "uncommitted_entries_max",
            "pending_reads_max",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
