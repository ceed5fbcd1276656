"""Client sessions: the last applied sequence of each client and that command's result.

A session ends after ``session_ttl_ms`` without a command (on the log clock), or when the
table is full and a new client arrives (the least recently active session goes first).
Both are deterministic: the log clock only moves forward, so the order in which sessions
were last active is the order of the table, and the snapshot keeps that order.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from paramstore.coordinator._limits import CoordinatorLimits
from paramstore.coordinator._types import SnapshotFormatError
from proto import coordinator_pb2 as pb

__all__ = ["Session", "SessionTable"]


@dataclass(slots=True)
class Session:
    last_sequence: int
    last_active_ms: int
    last_result: bytes  # the encoded CommandResult of last_sequence


class SessionTable:
    def __init__(self, limits: CoordinatorLimits) -> None:
        self.limits = limits
        # Least recently active first.
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    def get(self, client_id: str) -> Session | None:
        return self._sessions.get(client_id)

    def expire(self, clock_ms: int) -> int:
        """End every session idle for ``session_ttl_ms`` or longer at ``clock_ms``; returns how many."""
        ended = 0
        while self._sessions:
            client_id, oldest = next(iter(self._sessions.items()))
            if oldest.last_active_ms + self.limits.session_ttl_ms > clock_ms:
                break
            del self._sessions[client_id]
            ended += 1
        return ended

    def touch(self, client_id: str, clock_ms: int) -> None:
        session = self._sessions[client_id]
        assert clock_ms >= session.last_active_ms, "the log clock never goes back"
        session.last_active_ms = clock_ms
        self._sessions.move_to_end(client_id)

    def record(self, client_id: str, sequence: int, result: bytes, clock_ms: int) -> None:
        """Remember ``result`` as the outcome of ``sequence``, the client's newest command."""
        session = self._sessions.get(client_id)
        if session is None:
            if len(self._sessions) >= self.limits.sessions_max:
                self._sessions.popitem(last=False)
            self._sessions[client_id] = Session(sequence, clock_ms, result)
            return
        assert sequence > session.last_sequence, "only a newer command replaces a session's result"
        session.last_sequence = sequence
        session.last_result = result
        self.touch(client_id, clock_ms)

    # ---- snapshot ---------------------------------------------------------------------------

    def to_proto(self, state: pb.CoordinatorState) -> None:
        for client_id, session in self._sessions.items():
            state.sessions.add(
                client_id=client_id,
                last_sequence=session.last_sequence,
                last_active_ms=session.last_active_ms,
                last_result=session.last_result,
            )

    @classmethod
    def from_proto(cls, state: pb.CoordinatorState, limits: CoordinatorLimits) -> SessionTable:
        table = cls(limits)
        if len(state.sessions) > limits.sessions_max:
            raise SnapshotFormatError(
                f"{len(state.sessions)} sessions, over the maximum {limits.sessions_max}"
            )
        previous_active_ms = 0
        for stored in state.sessions:
            if stored.client_id in table._sessions or stored.last_sequence < 1:
                raise SnapshotFormatError(f"session {stored.client_id!r} is repeated or has no sequence")
            if stored.last_active_ms < previous_active_ms or stored.last_active_ms > state.clock_ms:
                raise SnapshotFormatError(f"session {stored.client_id!r} is out of activity order")
            previous_active_ms = stored.last_active_ms
            table._sessions[stored.client_id] = Session(
                stored.last_sequence, stored.last_active_ms, stored.last_result
            )
        return table
