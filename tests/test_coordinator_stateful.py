"""The key/value store and client sessions against a plain reference model (hypothesis).

Clients send fresh commands (sometimes skipping sequence numbers), retry earlier ones, and
the leader's clock moves on (and sometimes lags). The reference is written from the rules,
not from the implementation: a dict of keys, a list of changes, and a dict of sessions that
expire after the ttl and are evicted least-recently-active first. A client told
SESSION_EXPIRED carries on under a new id, as a real one does. Snapshots are taken and
restored in the middle of the run.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from paramstore.coordinator import (
    ChangeKind,
    CommandResult,
    CompareAndSet,
    CoordinatorLimits,
    CoordinatorStateMachine,
    Delete,
    DeletePrefix,
    ErrorCode,
    Operation,
    Put,
    decode_result,
    encode_command,
)

TTL_MS = 1_000
SESSIONS_MAX = 3
HISTORY_MAX = 16
LIMITS = CoordinatorLimits(
    session_ttl_ms=TTL_MS,
    sessions_max=SESSIONS_MAX,
    key_bytes_max=8,
    value_bytes_max=8,
    history_changes_max=HISTORY_MAX,
    history_bytes_max=1_000,  # never the binding bound here: compaction is by count only
)
KEYS = ("a", "ab", "b", "c")
SLOTS = 4

keys = st.sampled_from(KEYS)
values = st.binary(max_size=8)
operations = st.one_of(
    st.builds(Put, keys, values),
    st.builds(Delete, keys),
    st.builds(DeletePrefix, st.sampled_from(["a", "b"])),
    st.builds(CompareAndSet, keys, values, expected_version=st.integers(1, 12)),
    st.builds(CompareAndSet, keys, values, expected_value=values),
    st.builds(CompareAndSet, keys, values, expect_absent=st.just(True)),
)


@dataclass
class RefSession:
    last_sequence: int
    last_active_ms: int
    touched: int  # when it was last active, in commands: the eviction order
    result: bytes


@dataclass(frozen=True)
class Sent:
    client_id: str
    sequence: int
    op: Operation


class Reference:
    def __init__(self) -> None:
        self.kvs: dict[str, tuple[bytes, int, int]] = {}  # key -> (value, version, create_revision)
        self.changes: list[tuple[int, ChangeKind, str, bytes]] = []
        self.clock_ms = 0
        self.sessions: dict[str, RefSession] = {}
        self.touches = 0

    @property
    def revision(self) -> int:
        return len(self.changes)

    def _set(self, key: str, value: bytes) -> int:
        revision = self.revision + 1
        create = self.kvs[key][2] if key in self.kvs else revision
        self.kvs[key] = (value, revision, create)
        self.changes.append((revision, ChangeKind.PUT, key, value))
        return revision

    def _delete(self, key: str) -> None:
        del self.kvs[key]
        self.changes.append((self.revision + 1, ChangeKind.DELETE, key, b""))

    def execute(self, op: Operation) -> tuple[ErrorCode, int, int]:
        """(code, key_version, deleted) of a command that is applied."""
        if isinstance(op, Put):
            return ErrorCode.OK, self._set(op.key, op.value), 0
        if isinstance(op, Delete):
            if op.key not in self.kvs:
                return ErrorCode.OK, 0, 0
            self._delete(op.key)
            return ErrorCode.OK, 0, 1
        if isinstance(op, DeletePrefix):
            doomed = sorted(key for key in self.kvs if key.startswith(op.prefix))
            for key in doomed:
                self._delete(key)
            return ErrorCode.OK, 0, len(doomed)
        assert isinstance(op, CompareAndSet)
        current = self.kvs.get(op.key)
        if op.expect_absent:
            holds = current is None
        elif op.expected_version is not None:
            holds = current is not None and current[1] == op.expected_version
        else:
            holds = current is not None and current[0] == op.expected_value
        if not holds:
            return ErrorCode.CAS_MISMATCH, 0 if current is None else current[1], 0
        return ErrorCode.OK, self._set(op.key, op.new_value), 0

    def advance(self, now_ms: int) -> None:
        self.clock_ms = max(self.clock_ms, now_ms)
        for client_id in [c for c, s in self.sessions.items() if s.last_active_ms + TTL_MS <= self.clock_ms]:
            del self.sessions[client_id]

    def touch(self, session: RefSession) -> None:
        self.touches += 1
        session.touched = self.touches
        session.last_active_ms = self.clock_ms

    def open_session(self, client_id: str) -> RefSession:
        if len(self.sessions) >= SESSIONS_MAX:
            del self.sessions[min(self.sessions, key=lambda c: self.sessions[c].touched)]
        session = RefSession(0, self.clock_ms, 0, b"")
        self.sessions[client_id] = session
        return session


class CoordinatorKvModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.machine = CoordinatorStateMachine(LIMITS)
        self.ref = Reference()
        self.wall_ms = 1_000
        self.client_ids = [f"c{slot}" for slot in range(SLOTS)]
        self.next_sequence = dict.fromkeys(self.client_ids, 1)
        self.sent: list[Sent] = []

    def submit(self, sent: Sent, now_ms: int) -> CommandResult:
        """Apply on both and compare; returns the machine's result."""
        command = encode_command(sent.op, client_id=sent.client_id, sequence=sent.sequence, now_ms=now_ms)
        raw = self.machine.apply_bytes(command)
        result = decode_result(raw)
        ref = self.ref
        ref.advance(now_ms)
        session = ref.sessions.get(sent.client_id)
        if session is None and sent.sequence != 1:
            assert result.code == ErrorCode.SESSION_EXPIRED, result
        elif session is not None and sent.sequence == session.last_sequence:
            assert raw == session.result, (result, decode_result(session.result))
            ref.touch(session)
            return result  # the stored result: the revision of its time
        elif session is not None and sent.sequence < session.last_sequence:
            assert result.code == ErrorCode.STALE_SEQUENCE, result
            ref.touch(session)
        else:
            if session is None:
                session = ref.open_session(sent.client_id)
            code, key_version, deleted = ref.execute(sent.op)
            assert (result.code, result.key_version, result.deleted) == (code, key_version, deleted), result
            session.last_sequence = sent.sequence
            session.result = raw
            ref.touch(session)
        assert (result.revision, result.config_number) == (ref.revision, 0), result
        return result

    @rule(slot=st.integers(0, SLOTS - 1), op=operations, skip=st.sampled_from([0, 0, 0, 1, 3]))
    def fresh_command(self, slot: int, op: Operation, skip: int) -> None:
        client_id = self.client_ids[slot]
        sequence = self.next_sequence[client_id] + skip
        self.next_sequence[client_id] = sequence + 1
        sent = Sent(client_id, sequence, op)
        result = self.submit(sent, self.wall_ms)
        self.sent.append(sent)
        if result.code == ErrorCode.SESSION_EXPIRED:
            self.client_ids[slot] = renewed = f"{client_id}'"
            self.next_sequence[renewed] = 1

    @rule(data=st.data(), lag_ms=st.sampled_from([0, 0, 50, 2_000]))
    def retry_an_earlier_command(self, data: st.DataObject, lag_ms: int) -> None:
        if not self.sent:
            return
        sent = data.draw(st.sampled_from(self.sent[-12:]))
        self.submit(sent, max(0, self.wall_ms - lag_ms))  # a lagging leader's clock must not matter

    @rule(slot=st.integers(0, SLOTS - 1))
    def retry_a_clients_latest_command(self, slot: int) -> None:
        latest = [sent for sent in self.sent if sent.client_id == self.client_ids[slot]]
        if latest:
            self.submit(latest[-1], self.wall_ms)

    @rule(elapsed_ms=st.sampled_from([1, 100, 400, 999, 1_000, 1_500]))
    def time_passes(self, elapsed_ms: int) -> None:
        self.wall_ms += elapsed_ms

    @rule()
    def snapshot_and_restore(self) -> None:
        image = self.machine.snapshot()
        restored = CoordinatorStateMachine(LIMITS)
        restored.restore(image)
        assert restored.snapshot() == image
        self.machine = restored

    @invariant()
    def same_keys(self) -> None:
        kvs = self.machine.range("", None, limit=100).kvs
        assert {kv.key: (kv.value, kv.version, kv.create_revision) for kv in kvs} == self.ref.kvs
        assert self.machine.revision == self.ref.revision

    @invariant()
    def same_history(self) -> None:
        compacted = max(0, self.ref.revision - HISTORY_MAX)
        assert self.machine.compacted_revision == compacted
        batch = self.machine.changes_since(compacted, limit=100)
        assert [(c.revision, c.kind, c.key, c.value) for c in batch.changes] == self.ref.changes[compacted:]

    @invariant()
    def same_sessions(self) -> None:
        assert self.machine.clock_ms == self.ref.clock_ms
        assert self.machine.stats()["sessions"] == len(self.ref.sessions)
        for client_id, session in self.ref.sessions.items():
            assert self.machine.last_sequence(client_id) == session.last_sequence


CoordinatorKvModel.TestCase.settings = settings(max_examples=120, stateful_step_count=40, deadline=None)
TestCoordinatorKv = CoordinatorKvModel.TestCase
