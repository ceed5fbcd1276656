"""Tunables of the transport, each named with its unit and checked once at construction."""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class TransportConfig:
    """Limits and timings of one ``Transport``.

    Sizes count encoded protobuf bytes. ``message_bytes_max`` is the gRPC send and receive
    limit on both ends (so every node of a group must use the same value); no batch is ever
    written larger than it, and a single message that cannot fit in it is refused by
    ``Transport.send``.
    """

    message_bytes_max: int = 64 * MIB
    # Batches are closed at this size (a single message larger than it travels alone).
    # Small enough that one batch does not hold a stream for long, large enough to carry
    # a 1 MiB snapshot chunk together with the heartbeats queued behind it.
    batch_bytes_max: int = 4 * MIB
    batch_messages_max: int = 4096
    # Per peer. When full, ``send`` drops the message it was given (see Transport.send).
    outbound_queue_messages_max: int = 4096
    outbound_queue_bytes_max: int = 128 * MIB
    # Only used when no ``on_message`` callback is given; when full the new message is dropped.
    inbound_queue_messages_max: int = 65_536
    # Inbound messages held back by a delay fault, waiting to be delivered.
    inbound_delayed_messages_max: int = 65_536

    connect_timeout_ms: float = 2_000.0
    # A write that does not finish in time means the peer stopped reading: the stream is
    # dropped (with the batch it was writing) and reconnected.
    write_timeout_ms: float = 10_000.0
    # Reconnect back-off: the n-th consecutive failure waits a time drawn uniformly from
    # [c/2, c] with c = min(backoff_max_ms, backoff_initial_ms * 2**(n-1)).
    backoff_initial_ms: float = 50.0
    backoff_max_ms: float = 2_000.0
    # The longest an idle sender waits before it looks at its stream again. Wake-ups are
    # event driven (a new message, a broken stream); this is only a deadline on the wait.
    idle_wake_ms: float = 1_000.0
    # HTTP/2 keepalive pings on an established stream find a peer that vanished without
    # closing its sockets (a pulled cable, a paused VM).
    keepalive_time_ms: int = 10_000
    keepalive_timeout_ms: int = 5_000
    # How long ``close`` waits for the sender tasks and the server to finish.
    close_timeout_ms: float = 5_000.0

    # Serve RaftAdmin (fault injection) on the transport's port. It has no authentication:
    # turn it off where whoever can reach the Raft port must not be able to cut links.
    admin_service: bool = True
    fault_rules_max: int = 64
    fault_delay_ms_max: float = 60_000.0
    # Drops caused by bad input are logged at most once per this interval and reason.
    drop_log_interval_ms: float = 5_000.0

    def __post_init__(self) -> None:
        for name in (
            "message_bytes_max",
            "batch_bytes_max",
            "batch_messages_max",
            "outbound_queue_messages_max",
            "outbound_queue_bytes_max",
            "inbound_queue_messages_max",
            "inbound_delayed_messages_max",
            "keepalive_time_ms",
            "keepalive_timeout_ms",
            "fault_rules_max",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"TransportConfig.{name} must be an integer >= 1, got {value!r}")
        for name in (
            "connect_timeout_ms",
            "write_timeout_ms",
            "backoff_initial_ms",
            "backoff_max_ms",
            "idle_wake_ms",
            "close_timeout_ms",
            "fault_delay_ms_max",
            "drop_log_interval_ms",
        ):
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"TransportConfig.{name} must be > 0, got {value!r}")
        if self.message_bytes_max > 2**31 - 1:
            raise ValueError(f"message_bytes_max must fit gRPC's 32-bit limit, got {self.message_bytes_max}")
        if self.batch_bytes_max > self.message_bytes_max:
            raise ValueError(
                f"batch_bytes_max ({self.batch_bytes_max}) must be <= message_bytes_max "
                f"({self.message_bytes_max})"
            )
        if self.outbound_queue_bytes_max < self.message_bytes_max:
            raise ValueError(
                f"outbound_queue_bytes_max ({self.outbound_queue_bytes_max}) must be >= "
                f"message_bytes_max ({self.message_bytes_max}), or the largest message could never queue"
            )
        if self.backoff_max_ms < self.backoff_initial_ms:
            raise ValueError(
                f"backoff_max_ms ({self.backoff_max_ms}) must be >= backoff_initial_ms "
                f"({self.backoff_initial_ms})"
            )
