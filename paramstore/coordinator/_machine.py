"""The coordinator's replicated state machine (sans-I/O: no clock, no randomness, no I/O).

``apply`` takes one committed log entry (an encoded ``Command``) and returns the encoded
``CommandResult``. Each command, in order:

1. moves the log clock to max(clock, the command's ``now_ms``) - the leader's clock when it
   proposed the command - so time comes only from the log and never goes back;
2. ends what expired by that clock: idle client sessions, then worker leases (the keys
   they own are deleted, and the config number goes up once for the batch);
3. checks the client session (exactly-once): a repeat of the client's last sequence returns
   the stored result without applying again; an older one is ``STALE_SEQUENCE``; a client
   without a session must start at sequence 1, else ``SESSION_EXPIRED``;
4. runs the operation, which either changes state and returns OK, or is refused with an
   error code and changes nothing; either way the result is stored in the session.

Reads (``get``, ``range``, ``prefix``, ``changes_since``, ``config``) are not commands:
the leader serves them from here after a ReadIndex barrier.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from google.protobuf.message import DecodeError

from consensus.messages import Entry
from paramstore.coordinator._cluster import ClusterState
from paramstore.coordinator._codec import CommandDecodeError, decode_command, encode_result
from paramstore.coordinator._commands import (
    AddGroup,
    AssignShards,
    Command,
    CompareAndSet,
    Delete,
    DeletePrefix,
    DeleteRange,
    KeepAlive,
    Put,
    RegisterModel,
    RegisterWorker,
    RemoveGroup,
    Tick,
    UnregisterWorker,
)
from paramstore.coordinator._kv import KeyValueStore
from paramstore.coordinator._limits import CoordinatorLimits
from paramstore.coordinator._sessions import SessionTable
from paramstore.coordinator._types import (
    CommandResult,
    Config,
    ErrorCode,
    GroupMember,
    KeyValue,
    ModelSpec,
    RangeResult,
    Rejected,
    SnapshotFormatError,
    WatchBatch,
    WorkerLease,
)
from paramstore.coordinator._validate import check_members, check_name, check_spec, show, spec_difference
from proto import coordinator_pb2 as pb

__all__ = ["SNAPSHOT_FORMAT_VERSION", "CoordinatorStateMachine"]

_SNAPSHOT_MAGIC = b"PSCOORD\x00"
_SNAPSHOT_HEADER = struct.Struct(">8sI")  # magic, format version; a CoordinatorState follows
SNAPSHOT_FORMAT_VERSION = 1


class CoordinatorStateMachine:
    """Key/value metadata, client sessions and the cluster configuration of one coordinator
    replica. Every replica that applies the same entries holds the same state."""

    def __init__(self, limits: CoordinatorLimits | None = None) -> None:
        self.limits = limits or CoordinatorLimits()
        self.clock_ms = 0
        self._kv = KeyValueStore(self.limits)
        self._sessions = SessionTable(self.limits)
        self._cluster = ClusterState(self.limits)
        self._handlers: dict[type, Callable[[Any], CommandResult]] = {
            Put: self._put,
            Delete: self._delete,
            DeleteRange: self._delete_range,
            DeletePrefix: self._delete_prefix,
            CompareAndSet: self._compare_and_set,
            AddGroup: self._add_group,
            RemoveGroup: self._remove_group,
            AssignShards: self._assign_shards,
            RegisterWorker: self._register_worker,
            KeepAlive: self._keep_alive,
            UnregisterWorker: self._unregister_worker,
            RegisterModel: self._register_model,
        }

    # ---- applying commands ------------------------------------------------------------------

    def apply(self, entry: Entry) -> bytes:
        """Apply one committed NORMAL entry; returns the encoded ``CommandResult``."""
        return self.apply_bytes(entry.data)

    def apply_bytes(self, data: bytes) -> bytes:
        if len(data) > self.limits.command_bytes_max:
            message = f"command is {len(data)} bytes, over the maximum {self.limits.command_bytes_max}"
            return encode_result(self._result(ErrorCode.TOO_LARGE, message))
        try:
            command = decode_command(data)
        except CommandDecodeError as exc:
            return encode_result(self._result(ErrorCode.INVALID_ARGUMENT, str(exc)))
        return self._apply_command(command)

    def _apply_command(self, command: Command) -> bytes:
        self._advance_clock(command.now_ms)
        if isinstance(command.op, Tick):
            if command.client_id or command.sequence:
                message = "Tick carries no session (client_id must be empty, sequence 0)"
                return encode_result(self._result(ErrorCode.INVALID_ARGUMENT, message))
            return encode_result(self._result())
        try:
            stored = self._check_session(command)
        except Rejected as rejected:
            return encode_result(self._result(rejected.code, rejected.message))
        if stored is not None:
            return stored
        try:
            result = self._handlers[type(command.op)](command.op)
        except Rejected as rejected:
            result = self._result(rejected.code, rejected.message)
        encoded = encode_result(result)
        self._sessions.record(command.client_id, command.sequence, encoded, self.clock_ms)
        return encoded

    def _advance_clock(self, now_ms: int) -> None:
        self.clock_ms = max(self.clock_ms, now_ms)
        self._sessions.expire(self.clock_ms)
        expired = self._cluster.expire_workers(self.clock_ms)
        for worker_id in expired:
            self._release_leased_keys(worker_id)
        if expired:
            self._cluster.bump()

    def _check_session(self, command: Command) -> bytes | None:
        """The stored result if ``command`` repeats the client's last one; None to apply it."""
        check_name("client_id", command.client_id, self.limits.client_id_bytes_max)
        if command.sequence < 1:
            raise Rejected(ErrorCode.INVALID_ARGUMENT, "sequence must be >= 1")
        session = self._sessions.get(command.client_id)
        if session is None:
            if command.sequence != 1:
                raise Rejected(
                    ErrorCode.SESSION_EXPIRED,
                    f"client {show(command.client_id)} has no session (it expired or was evicted) and "
                    f"sequence {command.sequence} does not start one (1 does); the command was not applied: "
                    "continue under a new client id",
                )
            return None
        if command.sequence > session.last_sequence:
            return None
        self._sessions.touch(command.client_id, self.clock_ms)
        if command.sequence == session.last_sequence:
            return session.last_result
        raise Rejected(
            ErrorCode.STALE_SEQUENCE,
            f"sequence {command.sequence} of client {show(command.client_id)} is older than its last "
            f"applied sequence {session.last_sequence}; its result is no longer kept",
        )

    def _result(self, code: ErrorCode = ErrorCode.OK, message: str = "", **fields: Any) -> CommandResult:
        return CommandResult(
            code=code,
            message=message,
            revision=self._kv.revision,
            config_number=self._cluster.config_number,
            **fields,
        )

    # ---- key/value commands -----------------------------------------------------------------

    def _check_key(self, key: str, what: str = "key") -> None:
        check_name(what, key, self.limits.key_bytes_max)

    def _check_write(self, key: str, value: bytes, lease: str) -> None:
        self._check_key(key)
        if len(value) > self.limits.value_bytes_max:
            raise Rejected(
                ErrorCode.TOO_LARGE,
                f"value of {show(key)} is {len(value)} bytes, over the maximum {self.limits.value_bytes_max}",
            )
        if lease and self._cluster.worker(lease) is None:
            raise Rejected(ErrorCode.UNKNOWN_WORKER, f"lease {show(lease)} is not a registered worker")
        overflow = self._kv.room_for(key, value)
        if overflow is not None:
            raise Rejected(ErrorCode.RESOURCE_EXHAUSTED, f"cannot store {show(key)}: {overflow}")

    def _put(self, op: Put) -> CommandResult:
        self._check_write(op.key, op.value, op.lease)
        kv = self._kv.put(op.key, op.value, op.lease)
        return self._result(key_version=kv.version)

    def _delete(self, op: Delete) -> CommandResult:
        self._check_key(op.key)
        return self._result(deleted=int(self._kv.delete(op.key)))

    def _delete_range(self, op: DeleteRange) -> CommandResult:
        if op.start:
            self._check_key(op.start, "start")
        if op.end:
            self._check_key(op.end, "end")
            if op.end <= op.start:
                raise Rejected(
                    ErrorCode.INVALID_ARGUMENT, f"end {show(op.end)} must be after start {show(op.start)}"
                )
        keys, more = self._kv.keys_in(op.start, op.end or None, self.limits.delete_range_keys_max)
        for key in keys:
            self._kv.delete(key)
        return self._result(deleted=len(keys), more=more)

    def _delete_prefix(self, op: DeletePrefix) -> CommandResult:
        self._check_key(op.prefix, "prefix")
        keys, more = self._kv.keys_with_prefix(op.prefix, self.limits.delete_range_keys_max)
        for key in keys:
            self._kv.delete(key)
        return self._result(deleted=len(keys), more=more)

    def _compare_and_set(self, op: CompareAndSet) -> CommandResult:
        self._check_write(op.key, op.new_value, op.lease)
        current = self._kv.get(op.key)
        if op.expected_version is not None:
            if op.expected_version < 1:
                raise Rejected(
                    ErrorCode.INVALID_ARGUMENT, "expected_version must be >= 1 (use expect_absent)"
                )
            holds = current is not None and current.version == op.expected_version
            expectation = f"version {op.expected_version}"
        elif op.expected_value is not None:
            holds = current is not None and current.value == op.expected_value
            expectation = f"a value of {len(op.expected_value)} bytes"
        else:
            holds = current is None
            expectation = "no key"
        if not holds:
            found = "no key" if current is None else f"version {current.version}"
            message = f"{show(op.key)}: expected {expectation}, found {found}"
            return self._result(
                ErrorCode.CAS_MISMATCH, message, key_version=0 if current is None else current.version
            )
        kv = self._kv.put(op.key, op.new_value, op.lease)
        return self._result(key_version=kv.version)

    def _release_leased_keys(self, worker_id: str) -> None:
        for key in self._kv.leased_keys(worker_id):
            self._kv.delete(key)

    # ---- cluster commands -------------------------------------------------------------------

    def _known_group(self, group_id: int) -> tuple[GroupMember, ...]:
        members = self._cluster.groups.get(group_id)
        if members is None:
            raise Rejected(ErrorCode.UNKNOWN_GROUP, f"group {group_id} does not exist")
        return members

    def _known_model(self, name: str) -> ModelSpec:
        check_name("model name", name, self.limits.name_bytes_max)
        spec = self._cluster.models.get(name)
        if spec is None:
            raise Rejected(ErrorCode.UNKNOWN_MODEL, f"model {show(name)} is not registered")
        return spec

    def _known_worker(self, worker_id: str) -> WorkerLease:
        check_name("worker id", worker_id, self.limits.name_bytes_max)
        lease = self._cluster.worker(worker_id)
        if lease is None:
            raise Rejected(
                ErrorCode.UNKNOWN_WORKER,
                f"worker {show(worker_id)} is not registered (its lease may have expired): register again",
            )
        return lease

    def _add_group(self, op: AddGroup) -> CommandResult:
        if op.group_id < 1:
            raise Rejected(ErrorCode.INVALID_ARGUMENT, "group ids must be >= 1")
        members = check_members(op.members, self.limits)
        existing = self._cluster.groups.get(op.group_id)
        if existing is not None:
            if existing != members:
                raise Rejected(ErrorCode.GROUP_EXISTS, f"group {op.group_id} exists with other members")
            return self._result()
        if len(self._cluster.groups) >= self.limits.groups_max:
            raise Rejected(
                ErrorCode.RESOURCE_EXHAUSTED, f"the maximum of {self.limits.groups_max} groups exist"
            )
        self._cluster.groups[op.group_id] = members
        self._cluster.bump()
        return self._result()

    def _remove_group(self, op: RemoveGroup) -> CommandResult:
        self._known_group(op.group_id)
        owned = self._cluster.shards_owned_by(op.group_id)
        if owned:
            first = ", ".join(f"{show(model)}[{shard}]" for model, shard in owned[:4])
            raise Rejected(
                ErrorCode.GROUP_IN_USE,
                f"group {op.group_id} owns {len(owned)} shards ({first}...); assign them elsewhere first",
            )
        del self._cluster.groups[op.group_id]
        self._cluster.bump()
        return self._result()

    def _assign_shards(self, op: AssignShards) -> CommandResult:
        spec = self._known_model(op.model)
        seen: set[int] = set()
        for shard, group_id in op.assignments:
            if not 0 <= shard < spec.num_shards:
                raise Rejected(
                    ErrorCode.INVALID_ARGUMENT,
                    f"shard {shard} is outside model {show(op.model)}'s shards [0, {spec.num_shards})",
                )
            if shard in seen:
                raise Rejected(ErrorCode.INVALID_ARGUMENT, f"shard {shard} is assigned twice")
            seen.add(shard)
            self._known_group(group_id)
        shard_map = self._cluster.shard_maps[op.model]
        changed = [(shard, group_id) for shard, group_id in op.assignments if shard_map[shard] != group_id]
        for shard, group_id in changed:
            shard_map[shard] = group_id
        if changed:
            self._cluster.bump()
        return self._result()

    def _register_worker(self, op: RegisterWorker) -> CommandResult:
        check_name("worker id", op.worker_id, self.limits.name_bytes_max)
        self._known_model(op.model)
        if not self.limits.worker_ttl_ms_min <= op.ttl_ms <= self.limits.worker_ttl_ms_max:
            raise Rejected(
                ErrorCode.INVALID_ARGUMENT,
                f"ttl_ms must be in [{self.limits.worker_ttl_ms_min}, {self.limits.worker_ttl_ms_max}], "
                f"got {op.ttl_ms}",
            )
        existing = self._cluster.worker(op.worker_id)
        if existing is not None and existing.model != op.model:
            raise Rejected(
                ErrorCode.WORKER_EXISTS,
                f"worker {show(op.worker_id)} is registered for model {show(existing.model)}",
            )
        if existing is None and self._cluster.worker_count >= self.limits.workers_max:
            raise Rejected(
                ErrorCode.RESOURCE_EXHAUSTED,
                f"the maximum of {self.limits.workers_max} workers are registered",
            )
        deadline_ms = self._cluster.set_lease(op.worker_id, op.model, op.ttl_ms, self.clock_ms)
        if existing is None:
            self._cluster.bump()  # membership changed; a re-registration only renews
        return self._result(lease_deadline_ms=deadline_ms)

    def _keep_alive(self, op: KeepAlive) -> CommandResult:
        lease = self._known_worker(op.worker_id)
        deadline_ms = self._cluster.set_lease(op.worker_id, lease.model, lease.ttl_ms, self.clock_ms)
        return self._result(lease_deadline_ms=deadline_ms)

    def _unregister_worker(self, op: UnregisterWorker) -> CommandResult:
        self._known_worker(op.worker_id)
        self._cluster.remove_worker(op.worker_id)
        self._release_leased_keys(op.worker_id)
        self._cluster.bump()
        return self._result()

    def _register_model(self, op: RegisterModel) -> CommandResult:
        spec = check_spec(op.spec, self.limits)
        existing = self._cluster.models.get(spec.name)
        if existing is not None:
            if existing != spec:
                raise Rejected(
                    ErrorCode.SPEC_CONFLICT,
                    f"model {show(spec.name)} is registered with another spec "
                    f"(first difference: {spec_difference(existing, spec)})",
                )
            return self._result()
        if len(self._cluster.models) >= self.limits.models_max:
            raise Rejected(
                ErrorCode.RESOURCE_EXHAUSTED, f"the maximum of {self.limits.models_max} models exist"
            )
        self._cluster.add_model(spec)
        self._cluster.bump()
        return self._result()

    # ---- reads ------------------------------------------------------------------------------

    @property
    def revision(self) -> int:
        """The key/value store's revision: one per key modification."""
        return self._kv.revision

    @property
    def compacted_revision(self) -> int:
        """Changes up to this revision have left the watch history."""
        return self._kv.compacted_revision

    @property
    def config_number(self) -> int:
        return self._cluster.config_number

    def get(self, key: str) -> KeyValue | None:
        return self._kv.get(key)

    def range(self, start: str, end: str | None = None, limit: int = 1000) -> RangeResult:
        """Keys in [start, end) in order (``end`` None: no upper bound), at most ``limit``."""
        return self._kv.range(start, end, limit)

    def prefix(self, prefix: str, limit: int = 1000) -> RangeResult:
        return self._kv.prefix(prefix, limit)

    def changes_since(self, revision: int, prefix: str = "", limit: int = 1000) -> WatchBatch:
        """Changes after ``revision`` to keys under ``prefix``. Raises ``CoordinatorError``
        (``COMPACTED``) when some of them have left the history: re-read, then watch from the
        revision of that read."""
        return self._kv.changes_since(revision, prefix, limit)

    def config(self) -> Config:
        return self._cluster.config()

    def worker(self, worker_id: str) -> WorkerLease | None:
        return self._cluster.worker(worker_id)

    def last_sequence(self, client_id: str) -> int | None:
        """The client's last applied sequence, or None without a session."""
        session = self._sessions.get(client_id)
        return None if session is None else session.last_sequence

    def stats(self) -> dict[str, int]:
        return {
            "clock_ms": self.clock_ms,
            "revision": self._kv.revision,
            "compacted_revision": self._kv.compacted_revision,
            "config_number": self._cluster.config_number,
            "keys": len(self._kv),
            "kv_bytes": self._kv.kv_bytes,
            "sessions": len(self._sessions),
            "workers": self._cluster.worker_count,
            "groups": len(self._cluster.groups),
            "models": len(self._cluster.models),
        }

    # ---- snapshot ---------------------------------------------------------------------------

    def snapshot(self) -> bytes:
        """The whole state; the same state always gives the same bytes."""
        state = pb.CoordinatorState(clock_ms=self.clock_ms, limits_json=self.limits.to_json())
        self._kv.to_proto(state)
        self._sessions.to_proto(state)
        self._cluster.to_proto(state)
        header = _SNAPSHOT_HEADER.pack(_SNAPSHOT_MAGIC, SNAPSHOT_FORMAT_VERSION)
        return header + state.SerializeToString(deterministic=True)

    def restore(self, data: bytes) -> None:
        """Replace the whole state with a snapshot's. Raises ``SnapshotFormatError`` (and
        changes nothing) for bytes that are not a consistent state taken under these limits."""
        if len(data) < _SNAPSHOT_HEADER.size:
            raise SnapshotFormatError(f"snapshot of {len(data)} bytes is shorter than its header")
        magic, version = _SNAPSHOT_HEADER.unpack_from(data)
        if magic != _SNAPSHOT_MAGIC:
            raise SnapshotFormatError(f"not a coordinator snapshot (magic {magic!r})")
        if version != SNAPSHOT_FORMAT_VERSION:
            raise SnapshotFormatError(
                f"snapshot format version {version}; this build reads version {SNAPSHOT_FORMAT_VERSION}"
            )
        state = pb.CoordinatorState()
        try:
            state.ParseFromString(data[_SNAPSHOT_HEADER.size :])
        except DecodeError as exc:
            raise SnapshotFormatError(f"snapshot body does not decode: {exc}") from None
        if state.limits_json != self.limits.to_json():
            raise SnapshotFormatError(
                "the snapshot was taken under other limits; every replica must run with the same "
                f"CoordinatorLimits (snapshot: {state.limits_json}, here: {self.limits.to_json()})"
            )
        kv = KeyValueStore.from_proto(state, self.limits)
        sessions = SessionTable.from_proto(state, self.limits)
        cluster = ClusterState.from_proto(state, self.limits)
        for key in (stored.key for stored in state.keys if stored.lease):
            lease = kv.get(key)
            assert lease is not None
            if cluster.worker(lease.lease) is None:
                raise SnapshotFormatError(f"key {key!r} is leased to unknown worker {lease.lease!r}")
        self.clock_ms = state.clock_ms
        self._kv, self._sessions, self._cluster = kv, sessions, cluster
