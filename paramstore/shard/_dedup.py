"""The dedup table: each client's last applied push sequence and the result it got.

Exactly-once needs only the last one per client, because a client has at most one push
in flight per store group (it retries that one until it is answered, then moves on): a
repeat of the last sequence is a retry and gets the stored result; an older sequence can
only come from a stale retry and is refused, never applied.

Forgetting a client could let a retry of its last push apply twice, so a client is
forgotten only to make room in a full table, and only once it has been idle for
``ShardLimits.dedup_idle_ms`` of log time (the group's clock, carried by the Push entries:
every replica ages the same entries alike). That is safe as long as no client retries for
that long: a ``StoreClient`` gives up after its deadline (30 s by default), the idle time
is an hour. Without such idle clients a full table refuses new clients.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DedupEntry", "DedupTable"]


@dataclass(slots=True)
class DedupEntry:
    last_sequence: int
    last_result: bytes  # the encoded ShardResult of last_sequence
    last_ms: int = 0  # log time of the push that recorded it


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

    def shortfall(self, new_clients: int) -> int:
        """How many clients must be forgotten to take ``new_clients`` more."""
        return max(0, len(self._clients) + new_clients - self.clients_max)

    def idle(self, now_ms: int, idle_ms: int) -> list[str]:
        """The clients idle for ``idle_ms`` at log time ``now_ms``, longest idle first (ties
        by id: every replica picks the same)."""
        since = now_ms - idle_ms
        return [
            cid
            for _, cid in sorted((e.last_ms, cid) for cid, e in self._clients.items() if e.last_ms <= since)
        ]

    def forget(self, client_ids: list[str]) -> None:
        for client_id in client_ids:
            del self._clients[client_id]

    def record(self, client_id: str, sequence: int, result: bytes, now_ms: int = 0) -> None:
        entry = self._clients.get(client_id)
        if entry is None:
            assert len(self._clients) < self.clients_max, "room_for is checked first"
            self._clients[client_id] = DedupEntry(sequence, result, now_ms)
            return
        assert sequence > entry.last_sequence, "only a newer push replaces a client's result"
        entry.last_sequence = sequence
        entry.last_result = result
        entry.last_ms = now_ms

    def items(self) -> list[tuple[str, DedupEntry]]:
        """Every client, sorted by id (the snapshot order)."""
        return sorted(self._clients.items())
