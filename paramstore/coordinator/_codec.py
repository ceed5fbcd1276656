"""Conversion between the coordinator's value types and ``proto/coordinator.proto``.

``encode_command`` / ``decode_command`` for the log entries, ``encode_result`` /
``decode_result`` for what applying one gave. Decoding checks structure only (valid
protobuf, an operation present, known enum values); the state machine checks meaning.
Encoding a value protobuf cannot hold (a negative id, a str with lone surrogates) raises
``ValueError`` or ``TypeError`` from protobuf: that is a caller's bug, not a client error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from google.protobuf.message import DecodeError

from paramstore.coordinator._commands import (
    AddGroup,
    AssignShards,
    Command,
    CompareAndSet,
    Delete,
    DeletePrefix,
    DeleteRange,
    KeepAlive,
    Operation,
    Put,
    RegisterModel,
    RegisterWorker,
    RemoveGroup,
    Tick,
    UnregisterWorker,
)
from paramstore.coordinator._types import CommandResult, ErrorCode, GroupMember, LeafSpec, ModelSpec, SyncMode
from proto import coordinator_pb2 as pb

__all__ = [
    "CommandDecodeError",
    "decode_command",
    "decode_result",
    "encode_command",
    "encode_result",
    "member_from_proto",
    "member_to_proto",
    "spec_from_proto",
    "spec_to_proto",
]


class CommandDecodeError(ValueError):
    """Bytes that are not a well-formed coordinator command or result."""


# ---- pieces shared by commands and the snapshot ---------------------------------------------


def member_to_proto(member: GroupMember) -> pb.GroupMember:
    return pb.GroupMember(node_id=member.node_id, address=member.address)


def member_from_proto(message: pb.GroupMember) -> GroupMember:
    return GroupMember(node_id=message.node_id, address=message.address)


def spec_to_proto(spec: ModelSpec) -> pb.ModelSpec:
    new_spec: Callable[..., pb.ModelSpec] = pb.ModelSpec  # SyncMode is an IntEnum of the same numbers
    return new_spec(
        name=spec.name,
        leaves=[pb.LeafSpec(path=leaf.path, shape=leaf.shape, dtype=leaf.dtype) for leaf in spec.leaves],
        num_shards=spec.num_shards,
        optimizer_json=spec.optimizer_json,
        sync_mode=int(spec.sync_mode),
        staleness_bound=spec.staleness_bound,
    )


def spec_from_proto(message: pb.ModelSpec) -> ModelSpec:
    try:
        sync_mode = SyncMode(message.sync_mode)
    except ValueError:
        raise CommandDecodeError(f"ModelSpec.sync_mode: unknown value {message.sync_mode}") from None
    return ModelSpec(
        name=message.name,
        leaves=tuple(LeafSpec(leaf.path, tuple(leaf.shape), leaf.dtype) for leaf in message.leaves),
        num_shards=message.num_shards,
        optimizer_json=message.optimizer_json,
        sync_mode=sync_mode,
        staleness_bound=message.staleness_bound,
    )


# ---- commands -------------------------------------------------------------------------------


def _cas_to_proto(op: CompareAndSet) -> pb.CompareAndSet:
    message = pb.CompareAndSet(key=op.key, new_value=op.new_value, lease=op.lease)
    if op.expected_value is not None:
        message.expected_value = op.expected_value
    elif op.expected_version is not None:
        message.expected_version = op.expected_version
    else:
        message.expect_absent = True
    return message


def _op_to_proto(op: Operation) -> tuple[str, Any]:
    """The ``Command.op`` field name and its message for ``op``."""
    match op:
        case Put():
            return "put", pb.Put(key=op.key, value=op.value, lease=op.lease)
        case Delete():
            return "delete", pb.Delete(key=op.key)
        case DeleteRange():
            return "delete_range", pb.DeleteRange(start=op.start, end=op.end)
        case DeletePrefix():
            return "delete_prefix", pb.DeletePrefix(prefix=op.prefix)
        case CompareAndSet():
            return "compare_and_set", _cas_to_proto(op)
        case AddGroup():
            return "add_group", pb.AddGroup(
                group_id=op.group_id, members=[member_to_proto(m) for m in op.members]
            )
        case RemoveGroup():
            return "remove_group", pb.RemoveGroup(group_id=op.group_id)
        case AssignShards():
            assignments = [pb.ShardAssignment(shard=s, group_id=g) for s, g in op.assignments]
            return "assign_shards", pb.AssignShards(model=op.model, assignments=assignments)
        case RegisterWorker():
            return "register_worker", pb.RegisterWorker(
                worker_id=op.worker_id, model=op.model, ttl_ms=op.ttl_ms
            )
        case KeepAlive():
            return "keep_alive", pb.KeepAlive(worker_id=op.worker_id)
        case UnregisterWorker():
            return "unregister_worker", pb.UnregisterWorker(worker_id=op.worker_id)
        case RegisterModel():
            return "register_model", pb.RegisterModel(spec=spec_to_proto(op.spec))
        case Tick():
            return "tick", pb.Tick()
    raise TypeError(f"not a coordinator operation: {op!r}")


def encode_command(op: Operation, *, client_id: str = "", sequence: int = 0, now_ms: int = 0) -> bytes:
    """The log entry bytes of ``op`` in session (client_id, sequence), proposed at ``now_ms``."""
    field, message = _op_to_proto(op)
    command = pb.Command(client_id=client_id, sequence=sequence, now_ms=now_ms)
    getattr(command, field).CopyFrom(message)
    return command.SerializeToString(deterministic=True)


def _cas_from_proto(message: pb.CompareAndSet) -> CompareAndSet:
    expectation = message.WhichOneof("expected")
    if expectation is None:
        raise CommandDecodeError("CompareAndSet has no expectation")
    if expectation == "expect_absent" and not message.expect_absent:
        raise CommandDecodeError("CompareAndSet.expect_absent must be true when it is the expectation")
    return CompareAndSet(
        key=message.key,
        new_value=message.new_value,
        expected_value=message.expected_value if expectation == "expected_value" else None,
        expected_version=message.expected_version if expectation == "expected_version" else None,
        expect_absent=expectation == "expect_absent",
        lease=message.lease,
    )


def _op_from_proto(command: pb.Command) -> Operation:
    field = command.WhichOneof("op")
    match field:
        case "put":
            return Put(command.put.key, command.put.value, command.put.lease)
        case "delete":
            return Delete(command.delete.key)
        case "delete_range":
            return DeleteRange(command.delete_range.start, command.delete_range.end)
        case "delete_prefix":
            return DeletePrefix(command.delete_prefix.prefix)
        case "compare_and_set":
            return _cas_from_proto(command.compare_and_set)
        case "add_group":
            members = tuple(member_from_proto(m) for m in command.add_group.members)
            return AddGroup(command.add_group.group_id, members)
        case "remove_group":
            return RemoveGroup(command.remove_group.group_id)
        case "assign_shards":
            pairs = tuple((a.shard, a.group_id) for a in command.assign_shards.assignments)
            return AssignShards(command.assign_shards.model, pairs)
        case "register_worker":
            request = command.register_worker
            return RegisterWorker(request.worker_id, request.model, request.ttl_ms)
        case "keep_alive":
            return KeepAlive(command.keep_alive.worker_id)
        case "unregister_worker":
            return UnregisterWorker(command.unregister_worker.worker_id)
        case "register_model":
            return RegisterModel(spec_from_proto(command.register_model.spec))
        case "tick":
            return Tick()
    raise CommandDecodeError("command has no operation")


def decode_command(data: bytes) -> Command:
    """Raises ``CommandDecodeError`` for bytes that are not a well-formed command."""
    command = pb.Command()
    try:
        command.ParseFromString(data)
    except DecodeError as exc:
        raise CommandDecodeError(f"not a coordinator command: {exc}") from None
    op = _op_from_proto(command)
    return Command(op=op, client_id=command.client_id, sequence=command.sequence, now_ms=command.now_ms)


# ---- results --------------------------------------------------------------------------------


def encode_result(result: CommandResult) -> bytes:
    new_result: Callable[..., pb.CommandResult] = pb.CommandResult  # ErrorCode: same numbers
    message = new_result(
        code=int(result.code),
        message=result.message,
        revision=result.revision,
        config_number=result.config_number,
        key_version=result.key_version,
        deleted=result.deleted,
        more=result.more,
        lease_deadline_ms=result.lease_deadline_ms,
    )
    return message.SerializeToString(deterministic=True)


def decode_result(data: bytes) -> CommandResult:
    """Raises ``CommandDecodeError`` for bytes that are not a well-formed result."""
    message = pb.CommandResult()
    try:
        message.ParseFromString(data)
    except DecodeError as exc:
        raise CommandDecodeError(f"not a coordinator command result: {exc}") from None
    try:
        code = ErrorCode(message.code)
    except ValueError:
        raise CommandDecodeError(f"CommandResult.code: unknown value {message.code}") from None
    return CommandResult(
        code=code,
        message=message.message,
        revision=message.revision,
        config_number=message.config_number,
        key_version=message.key_version,
        deleted=message.deleted,
        more=message.more,
        lease_deadline_ms=message.lease_deadline_ms,
    )
