"""The dedup table: each client's last applied push sequence and the result it got.

Exactly-once needs only the last one per client, because a client has at most one push
in flight per store group (it retries that one until it is answered, then moves on): a
repeat of the last sequence is a retry and gets the stored result; an older sequence can
only come from a stale retry and is refused, never applied.

Entries are never evicted: forgetting a client could let its retry apply twice. A full
table refuses new clients instead. TODO(issue 4, later): drop a client when the
coordinator reports its worker lease ended (a replicated ForgetClients command).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DedupEntry", "DedupTable"]


@dataclass(slots=True)
class DedupEntry:
    last_sequence: int
    last_result: bytes  # the encoded ShardResult of last_sequence


class DedupTable:
    def __init__(self, clients_max: int) -> None:
        self.clients_max = clients_max
        self._clients: dict[str, DedupEntry] = {}

    def __len__(self) -> int:
        return len(self._clients)

    def get(self, client_id: str) -> DedupEntry | None:
        return self._clients.get(client_id)

    def last_sequence(self, client_id: str) -> int:
        """0 for a client never seen (sequences start at 1)."""
        entry = self._clients.get(client_id)
        return 0 if entry is None else entry.last_sequence

    def room_for(self, new_clients: int) -> bool:
        return len(self._clients) + new_clients <= self.clients_max

    def record(self, client_id: str, sequence: int, result: bytes) -> None:
        entry = self._clients.get(client_id)
        if entry is None:
            assert len(self._clients) < self.clients_max, "room_for is checked first"
            self._clients[client_id] = DedupEntry(sequence, result)
            return
        assert sequence > entry.last_sequence, "only a newer push replaces a client's result"
        entry.last_sequence = sequence
        entry.last_result = result

    def items(self) -> list[tuple[str, DedupEntry]]:
        """Every client, sorted by id (the snapshot order)."""
        return sorted(self._clients.items())
