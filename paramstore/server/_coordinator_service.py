"""The coordinator's client API (``proto/coordinator_service.proto``) over one replica.

Mutations go through the Raft log as encoded ``Command`` entries, stamped by the leader
with its clock (the log clock that expires sessions and leases). A command is decoded here
before it is proposed, so a malformed one is refused without taking a log slot. Reads wait
for a ReadIndex barrier and are then served from the local state machine; with
``serializable`` set they skip the barrier (fast, possibly stale).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import NoReturn

import grpc

from consensus.errors import InvalidRequestError, NotLeaderError, ProposalDroppedError, RaftError
from consensus.messages import ConfChange, ConfChangeType, Entry
from consensus.runtime import NodeStoppedError
from paramstore.coordinator import (
    CommandDecodeError,
    CoordinatorError,
    CoordinatorStateMachine,
    KeyValue,
    Tick,
    decode_command,
    encode_command,
)
from paramstore.coordinator._codec import member_to_proto, spec_to_proto
from paramstore.server._replica import Replica
from paramstore.server._session_stream import serve_session
from proto import coordinator_pb2 as pb
from proto import coordinator_service_pb2 as api
from proto import coordinator_service_pb2_grpc as api_grpc

__all__ = [
    "LEADER_ADDRESS_METADATA",
    "LEADER_ID_METADATA",
    "CoordinatorService",
    "NotifyingStateMachine",
]

log = logging.getLogger("paramstore.coordinator.service")

LEADER_ID_METADATA = "paramstore-leader-id"
LEADER_ADDRESS_METADATA = "paramstore-leader-address"

# A client that sets no deadline still gets one: no request waits forever.
_DEFAULT_TIMEOUT_S = 10.0
_RANGE_LIMIT_DEFAULT = 1000
_RANGE_LIMIT_MAX = 10_000
_WATCH_BATCH_MAX = 1000
# A watch without a client deadline ends after this long; the client re-watches from
# next_revision.
_WATCH_DURATION_MAX_S = 3600.0
_WATCH_IDLE_WAKE_S = 1.0
_TRANSFER_WAIT_S = 3.0

_MEMBERSHIP = {
    api.MEMBERSHIP_CHANGE_ADD_LEARNER: ConfChangeType.ADD_LEARNER,
    api.MEMBERSHIP_CHANGE_PROMOTE_LEARNER: ConfChangeType.PROMOTE_LEARNER,
    api.MEMBERSHIP_CHANGE_REMOVE_NODE: ConfChangeType.REMOVE_NODE,
    api.MEMBERSHIP_CHANGE_ADD_VOTER: ConfChangeType.ADD_VOTER,
}


class NotifyingStateMachine:
    """The coordinator state machine, plus wake-ups whenever it changes, so that watches and
    the membership follower react to applies instead of polling.

    A waiter may name a key prefix: it then wakes only for an apply that changed a key under
    it (or a restore, or ``notify``), so a follower of a few rarely written keys does not run
    once per put."""

    def __init__(self, machine: CoordinatorStateMachine) -> None:
        self.machine = machine
        # waiter -> (key prefix or None for any change, the revision it has seen)
        self._waiters: dict[asyncio.Future[None], tuple[str | None, int]] = {}

    def apply(self, entry: Entry) -> object:
        result = self.machine.apply(entry)
        self._notify(everyone=False)
        return result

    def snapshot(self) -> bytes:
        return self.machine.snapshot()

    def restore(self, data: bytes) -> None:
        self.machine.restore(data)
        self._notify(everyone=True)

    def notify(self) -> None:
        """Wake the waiters for a change that is not an apply (a leader change, say)."""
        self._notify(everyone=True)

    def _notify(self, *, everyone: bool) -> None:
        revision = self.machine.revision
        woken = []
        checked = []
        for waiter, (prefix, seen) in self._waiters.items():
            if everyone or prefix is None or self._changed_under(prefix, seen):
                woken.append(waiter)
            elif seen != revision:
                checked.append((waiter, prefix))
        for waiter, prefix in checked:
            # Checked up to here: the next apply looks at its own changes only.
            self._waiters[waiter] = (prefix, revision)
        for waiter in woken:
            del self._waiters[waiter]
            if not waiter.done():
                waiter.set_result(None)

    def _changed_under(self, prefix: str, seen_revision: int) -> bool:
        try:
            return bool(self.machine.changes_since(seen_revision, prefix, 1).changes)
        except CoordinatorError:
            return True  # history compacted past it: the waiter re-reads

    async def wait_changed(self, timeout_s: float, prefix: str | None = None) -> None:
        """Wait (at most ``timeout_s``) for the next change (under ``prefix`` if given)."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters[waiter] = (prefix, self.machine.revision)
        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
        # arrives as the waiter completes, and the caller's loop would never end.
        try:
            async with asyncio.timeout(timeout_s):
                await waiter
        except TimeoutError:
            pass
        finally:
            self._waiters.pop(waiter, None)


def _kv_to_proto(kv: KeyValue) -> pb.StoredKey:
    return pb.StoredKey(
        key=kv.key, value=kv.value, version=kv.version, create_revision=kv.create_revision, lease=kv.lease
    )


class CoordinatorService(api_grpc.CoordinatorServicer):
    """Serves one coordinator replica. ``clock_ms`` is the leader's clock for new commands."""

    def __init__(
        self,
        replica: Replica,
        machine: NotifyingStateMachine,
        *,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self._replica = replica
        self._machine = machine
        self._clock_ms = clock_ms
        self.last_proposal_monotonic = 0.0

    def register(self, server: grpc.aio.Server) -> None:
        api_grpc.add_CoordinatorServicer_to_server(self, server)

    # ---- commands -------------------------------------------------------------------------

    async def Execute(
        self, request: api.ExecuteRequest, context: grpc.aio.ServicerContext
    ) -> api.ExecuteResponse:
        try:
            result = await self._execute(request.command, _timeout(context))
        except _Refusal as refusal:
            await _abort_with(context, refusal)
        return api.ExecuteResponse(result=pb.CommandResult.FromString(result))

    async def Session(self, request_iterator: object, context: grpc.aio.ServicerContext) -> None:
        """Answers each command of the stream as soon as it is applied (or refused); see
        ``_session_stream.py`` for how commands and answers share messages."""
        await serve_session(context, self._session_answer)

    async def _session_answer(self, request: api.SessionRequest) -> api.SessionResponse:
        if request.request_id < 1:
            return _refused_answer(
                request.request_id, _Refusal(grpc.StatusCode.INVALID_ARGUMENT, "request_id must be >= 1")
            )
        timeout_s = request.timeout_ms / 1000 if request.timeout_ms else _DEFAULT_TIMEOUT_S
        try:
            result = await self._execute(request.command, _clamped_timeout(timeout_s))
        except _Refusal as refusal:
            return _refused_answer(request.request_id, refusal)
        return api.SessionResponse(request_id=request.request_id, result=pb.CommandResult.FromString(result))

    async def _execute(self, command: pb.Command, timeout_s: float) -> bytes:
        """Check ``command``, stamp it with the leader's clock and apply it: its encoded result.
        Raises _Refusal saying why it was not applied (or may not have been)."""
        if not command.client_id or command.sequence < 1:
            raise _Refusal(grpc.StatusCode.INVALID_ARGUMENT, "command needs client_id and sequence >= 1")
        if command.WhichOneof("op") in (None, "tick"):
            raise _Refusal(grpc.StatusCode.INVALID_ARGUMENT, "command.op must be set (and not tick)")
        command.now_ms = self._clock_ms()
        data = command.SerializeToString()
        try:
            decode_command(data)
        except CommandDecodeError as exc:
            raise _Refusal(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None
        return await self._apply(data, timeout_s)

    async def _apply(self, data: bytes, timeout_s: float) -> bytes:
        """Replicate one encoded command; its encoded result once applied here."""
        if not self._replica.is_leader:
            raise self._not_leader()
        self.last_proposal_monotonic = time.monotonic()
        try:
            result = await self._replica.node.propose(data, timeout_s)
        except NotLeaderError:
            raise self._not_leader() from None
        except ProposalDroppedError as exc:
            raise _Refusal(grpc.StatusCode.UNAVAILABLE, f"not applied, retry: {exc}") from None
        except TimeoutError:
            raise _Refusal(
                grpc.StatusCode.DEADLINE_EXCEEDED, "command not applied in time; outcome unknown"
            ) from None
        except NodeStoppedError as exc:
            raise _Refusal(grpc.StatusCode.UNAVAILABLE, str(exc)) from None
        assert isinstance(result, bytes)
        return result

    def _not_leader(self) -> _Refusal:
        leader_id, leader_address = self._replica.leader()
        where = f"node {leader_id} at {leader_address}" if leader_id else "not known yet"
        return _Refusal(
            grpc.StatusCode.UNAVAILABLE,
            f"not the leader; the leader is {where}",
            leader_id=leader_id,
            leader_address=leader_address,
        )

    async def propose_tick(self) -> None:
        """Advance the log clock (leases and sessions expire on it) while nobody writes."""
        data = encode_command(Tick(), now_ms=self._clock_ms())
        self.last_proposal_monotonic = time.monotonic()
        await self._replica.node.propose(data, _DEFAULT_TIMEOUT_S)

    # ---- reads ----------------------------------------------------------------------------

    async def Get(self, request: api.GetRequest, context: grpc.aio.ServicerContext) -> api.GetResponse:
        if not request.key:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "key must not be empty")
        await self._barrier(request.serializable, context)
        machine = self._machine.machine
        kv = machine.get(request.key)
        if kv is None:
            return api.GetResponse(found=False, revision=machine.revision)
        return api.GetResponse(found=True, kv=_kv_to_proto(kv), revision=machine.revision)

    async def Range(self, request: api.RangeRequest, context: grpc.aio.ServicerContext) -> api.RangeResponse:
        limit = request.limit or _RANGE_LIMIT_DEFAULT
        if limit > _RANGE_LIMIT_MAX:
            await _abort(
                context, grpc.StatusCode.INVALID_ARGUMENT, f"limit {limit} is over {_RANGE_LIMIT_MAX}"
            )
        if request.prefix and (request.start or request.end):
            await _abort(
                context, grpc.StatusCode.INVALID_ARGUMENT, "give either prefix or start/end, not both"
            )
        await self._barrier(request.serializable, context)
        machine = self._machine.machine
        if request.prefix:
            result = machine.prefix(request.prefix, limit)
        else:
            result = machine.range(request.start, request.end or None, limit)
        return api.RangeResponse(
            kvs=[_kv_to_proto(kv) for kv in result.kvs], more=result.more, revision=result.revision
        )

    async def Watch(self, request: api.WatchRequest, context: grpc.aio.ServicerContext):  # type: ignore[no-untyped-def]
        await self._barrier(False, context)
        machine = self._machine.machine
        after = request.start_revision - 1 if request.start_revision else machine.revision
        remaining = context.time_remaining()
        duration_s = _WATCH_DURATION_MAX_S if remaining is None else min(remaining, _WATCH_DURATION_MAX_S)
        deadline = time.monotonic() + duration_s
        while time.monotonic() < deadline:
            try:
                batch = machine.changes_since(after, request.prefix, _WATCH_BATCH_MAX)
            except CoordinatorError as exc:
                await _abort(context, grpc.StatusCode.OUT_OF_RANGE, exc.message)
            if batch.changes:
                yield api.WatchResponse(
                    changes=[
                        pb.Change(revision=c.revision, kind=int(c.kind), key=c.key, value=c.value)  # type: ignore[arg-type]
                        for c in batch.changes
                    ],
                    next_revision=batch.next_revision,
                    revision=batch.revision,
                )
            after = batch.next_revision
            if not batch.more:
                await self._machine.wait_changed(
                    min(_WATCH_IDLE_WAKE_S, max(0.0, deadline - time.monotonic())), request.prefix or None
                )

    async def GetConfig(
        self, request: api.GetConfigRequest, context: grpc.aio.ServicerContext
    ) -> api.GetConfigResponse:
        await self._barrier(request.serializable, context)
        machine = self._machine.machine
        config = machine.config()
        workers = []
        for worker_id in config.workers:
            lease = machine.worker(worker_id)
            if lease is not None:
                workers.append(pb.Worker(worker_id=worker_id, model=lease.model, ttl_ms=lease.ttl_ms))
        return api.GetConfigResponse(
            config_number=config.number,
            groups=[
                pb.Group(group_id=gid, members=[member_to_proto(m) for m in members])
                for gid, members in config.groups.items()
            ],
            models=[
                pb.Model(spec=spec_to_proto(spec), shard_groups=config.shard_maps[name])
                for name, spec in config.models.items()
            ],
            workers=workers,
        )

    # ---- operations -----------------------------------------------------------------------

    async def Status(
        self, request: api.StatusRequest, context: grpc.aio.ServicerContext
    ) -> api.StatusResponse:
        replica = self._replica
        core = replica.node.core
        leader_id, leader_address = replica.leader()
        peers = []
        for node_id, address in sorted(replica.addresses().items()):
            progress = core.progress(node_id) if replica.is_leader else None
            peers.append(
                api.PeerStatus(
                    node_id=node_id, address=address, match_index=progress.match if progress else 0
                )
            )
        machine = self._machine.machine
        return api.StatusResponse(
            cluster_id=replica.options.cluster_id,
            node_id=replica.options.node_id,
            address=replica.address,
            role=core.role.name.lower(),
            term=core.term,
            leader_id=leader_id,
            leader_address=leader_address,
            commit_index=core.commit_index,
            applied_index=core.applied_index,
            last_index=core.log.last_index,
            snapshot_index=core.log.snapshot_index,
            voters=list(core.conf.voters),
            learners=list(core.conf.learners),
            peers=peers,
            fsync=str(replica.options.fsync),
            revision=machine.revision,
            config_number=machine.config_number,
        )

    async def ChangeMembership(
        self, request: api.ChangeMembershipRequest, context: grpc.aio.ServicerContext
    ) -> api.ChangeMembershipResponse:
        change = _MEMBERSHIP.get(request.change)
        if change is None:
            await _abort(
                context, grpc.StatusCode.INVALID_ARGUMENT, f"unknown membership change {request.change}"
            )
        if request.node_id < 1:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "node_id must be >= 1")
        await self._require_leader(context)
        try:
            conf = await self._replica.node.change_membership(
                ConfChange(change, request.node_id), _timeout(context)
            )
        except NotLeaderError:
            await self._redirect(context)
        except InvalidRequestError as exc:
            await _abort(context, grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        except ProposalDroppedError as exc:
            await _abort(context, grpc.StatusCode.UNAVAILABLE, f"not applied, retry: {exc}")
        except TimeoutError:
            await _abort(context, grpc.StatusCode.DEADLINE_EXCEEDED, "membership change not applied in time")
        return api.ChangeMembershipResponse(voters=list(conf.voters), learners=list(conf.learners))

    async def TransferLeader(
        self, request: api.TransferLeaderRequest, context: grpc.aio.ServicerContext
    ) -> api.TransferLeaderResponse:
        await self._require_leader(context)
        node = self._replica.node
        try:
            node.transfer_leadership(request.target_id)
        except RaftError as exc:
            await _abort(context, grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        deadline = time.monotonic() + min(_TRANSFER_WAIT_S, _timeout(context))
        while node.core.leader_id != request.target_id:
            if time.monotonic() >= deadline:
                await _abort(context, grpc.StatusCode.DEADLINE_EXCEEDED, "leadership did not move in time")
            await self._machine.wait_changed(0.05)
        return api.TransferLeaderResponse()

    # ---- helpers --------------------------------------------------------------------------

    async def _barrier(self, serializable: bool, context: grpc.aio.ServicerContext) -> None:
        if serializable:
            return
        await self._require_leader(context)
        try:
            await self._replica.node.read_index(_timeout(context))
        except NotLeaderError:
            await self._redirect(context)
        except (ProposalDroppedError, NodeStoppedError) as exc:
            await _abort(context, grpc.StatusCode.UNAVAILABLE, f"read not served, retry: {exc}")
        except TimeoutError:
            await _abort(context, grpc.StatusCode.DEADLINE_EXCEEDED, "read barrier not reached in time")

    async def _require_leader(self, context: grpc.aio.ServicerContext | None) -> None:
        if not self._replica.is_leader:
            await self._redirect(context)

    async def _redirect(self, context: grpc.aio.ServicerContext | None) -> NoReturn:
        refusal = self._not_leader()
        if context is None:
            raise NotLeaderError(refusal.leader_id, "coordinator request")
        await _abort_with(context, refusal)


class _Refusal(Exception):
    """Why a command was not applied (or may not have been), as the gRPC status that says so.
    A node that does not lead names the leader when it knows it."""

    def __init__(
        self, code: grpc.StatusCode, details: str, *, leader_id: int = 0, leader_address: str = ""
    ) -> None:
        super().__init__(details)
        self.code = code
        self.details = details
        self.leader_id = leader_id
        self.leader_address = leader_address


def _refused_answer(request_id: int, refusal: _Refusal) -> api.SessionResponse:
    status: int = refusal.code.value[0]
    return api.SessionResponse(
        request_id=request_id,
        status=status,
        details=refusal.details,
        leader_id=refusal.leader_id,
        leader_address=refusal.leader_address,
    )


async def _abort_with(context: grpc.aio.ServicerContext, refusal: _Refusal) -> NoReturn:
    if refusal.leader_id or refusal.leader_address:
        context.set_trailing_metadata(
            ((LEADER_ID_METADATA, str(refusal.leader_id)), (LEADER_ADDRESS_METADATA, refusal.leader_address))
        )
    await _abort(context, refusal.code, refusal.details)


def _timeout(context: grpc.aio.ServicerContext | None) -> float:
    if context is None:
        return _DEFAULT_TIMEOUT_S
    remaining: float | None = context.time_remaining()
    if remaining is None:
        return _DEFAULT_TIMEOUT_S
    return _clamped_timeout(remaining)


def _clamped_timeout(timeout_s: float) -> float:
    return max(0.001, min(timeout_s, _DEFAULT_TIMEOUT_S * 6))


async def _abort(context: grpc.aio.ServicerContext | None, code: grpc.StatusCode, details: str) -> NoReturn:
    if context is None:
        raise RuntimeError(f"{code.name}: {details}")
    await context.abort(code, details)
    raise AssertionError("unreachable: context.abort raises")
