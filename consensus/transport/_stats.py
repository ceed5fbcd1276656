"""Counters of one transport, and rate-limited log lines for what it drops."""

from __future__ import annotations

import logging
import time

# Per peer: outbound counters are keyed by the recipient, inbound ones by the sender.
PEER_COUNTERS: tuple[str, ...] = (
    # outbound
    "messages_sent",
    "bytes_sent",  # RaftBatch bytes written (messages plus framing), as the receiver counts them
    "batches_sent",
    "messages_dropped_queue_full",
    "messages_dropped_unknown_peer",
    "messages_dropped_write_failed",  # in a batch whose write failed: lost with the stream
    "messages_dropped_fault_out",
    "messages_duplicated_fault_out",  # extra copies made
    "messages_delayed_fault_out",
    "messages_refused_oversize",
    "messages_discarded",  # still queued when the peer was removed or the transport closed
    "connects",
    "connect_failures",
    "streams_broken",
    # inbound
    "messages_received",  # arrived, decoded and addressed to this node (before inbound faults)
    "bytes_received",
    "batches_received",
    "messages_dropped_invalid",  # failed to decode, or its sender is not the stream's sender
    "messages_dropped_wrong_recipient",
    "messages_dropped_fault_in",
    "messages_duplicated_fault_in",
    "messages_delayed_fault_in",
    "messages_dropped_inbound_full",
)

# Counters that do not belong to one peer.
GLOBAL_COUNTERS: tuple[str, ...] = (
    "batches_malformed",  # did not parse as a RaftBatch (the sender is unknown)
    "batches_without_sender",  # parsed but carried no from_node
    "batches_wrong_recipient",  # for another node id (their messages count per peer too)
    "deliver_errors",  # the on_message callback raised
)

_DROP_COUNTERS: tuple[str, ...] = tuple(
    name
    for name in PEER_COUNTERS
    if name.startswith("messages_dropped") or name in ("messages_refused_oversize", "messages_discarded")
)

# Peer ids come off the wire; past this many distinct ids, the rest share the entry of id 0.
PEERS_TRACKED_MAX = 1024
OTHER_PEERS = 0


class TransportStats:
    def __init__(self, peers_tracked_max: int = PEERS_TRACKED_MAX) -> None:
        self._peers: dict[int, dict[str, int]] = {}
        self._peers_tracked_max = peers_tracked_max
        self.totals: dict[str, int] = dict.fromkeys(GLOBAL_COUNTERS, 0)

    def peer(self, peer_id: int) -> dict[str, int]:
        """The counters of ``peer_id`` (created on first use)."""
        counters = self._peers.get(peer_id)
        if counters is None:
            if len(self._peers) >= self._peers_tracked_max:
                peer_id = OTHER_PEERS
                counters = self._peers.get(peer_id)
            if counters is None:
                counters = dict.fromkeys(PEER_COUNTERS, 0)
                self._peers[peer_id] = counters
        return counters

    def peer_ids(self) -> list[int]:
        return sorted(self._peers)

    def snapshot_peer(self, peer_id: int) -> dict[str, int]:
        counters = dict(self._peers.get(peer_id) or dict.fromkeys(PEER_COUNTERS, 0))
        counters["messages_dropped"] = sum(counters[name] for name in _DROP_COUNTERS)
        return counters


class DropLog:
    """Logs one line per reason at most once per interval, saying how many it held back."""

    def __init__(self, logger: logging.Logger, interval_s: float) -> None:
        self._logger = logger
        self._interval_s = interval_s
        self._last_logged: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, reason: str, text: str, exc_info: bool = False) -> None:
        now = time.monotonic()
        last = self._last_logged.get(reason)
        if last is not None and now - last < self._interval_s:
            self._suppressed[reason] = self._suppressed.get(reason, 0) + 1
            return
        suppressed = self._suppressed.pop(reason, 0)
        self._last_logged[reason] = now
        suffix = f" ({suppressed} more like it not logged)" if suppressed else ""
        self._logger.warning("%s%s", text, suffix, exc_info=exc_info)
