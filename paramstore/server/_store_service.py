"""The store node's client API (``proto/store_service.proto``) over one shard replica.

Install and Push go through the group's Raft log; only the leader serves them (others
redirect, like the coordinator service). A push is checked against the leader's state
machine before it is queued (``ShardStateMachine.check_push``, the same rules ``apply``
runs), so bad input is refused without taking a log slot, and is then merged with the
concurrent pushes of the same model into one entry (``_store_batcher``). The state machine
checks every entry again when it applies it: the early check only saves the round trip.

Pulls wait for a ReadIndex barrier and are then copied out of the local state machine in
one go (no await in between, so a push applied meanwhile cannot tear a pull); with
``serializable`` any node serves them without the barrier.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import NoReturn

import grpc
import numpy as np
from google.protobuf.message import DecodeError

from consensus.errors import NotLeaderError, ProposalDroppedError, ProposalTooLargeError
from consensus.runtime import NodeStoppedError
from paramstore._piece_wire import Piece, PushMessage, encode_pull_responses, parse_push_request
from paramstore.server._coordinator_service import LEADER_ADDRESS_METADATA, LEADER_ID_METADATA
from paramstore.server._replica import Replica
from paramstore.server._service_handlers import add_servicer
from paramstore.server._store_batcher import BatcherLimits, PendingPush, PushBatcher, QueueFullError
from paramstore.shard import (
    ClientSequence,
    ErrorCode,
    KeyGradient,
    PushOp,
    ShardError,
    ShardResult,
    ShardStateMachine,
    WireTensor,
    accept_parts,
    all_finite,
    decode_result,
    decode_tensor,
    encode_drop,
    encode_release,
    encode_result,
)
from proto import shard_pb2 as shard_pb
from proto import store_service_pb2 as api
from proto import store_service_pb2_grpc as api_grpc

__all__ = ["ERROR_CODE_METADATA", "StoreService", "StoreServiceLimits"]

#: Trailing metadata of a refused request: the ``proto/shard.proto`` ErrorCode name.
ERROR_CODE_METADATA = "paramstore-error-code"

_DEFAULT_TIMEOUT_S = 10.0

_STATUS_OF_CODE = {
    ErrorCode.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorCode.TOO_LARGE: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorCode.SHAPE_MISMATCH: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorCode.DTYPE_MISMATCH: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorCode.NON_FINITE: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorCode.UNKNOWN_MODEL: grpc.StatusCode.NOT_FOUND,
    ErrorCode.UNKNOWN_KEY: grpc.StatusCode.NOT_FOUND,
    ErrorCode.SPEC_CONFLICT: grpc.StatusCode.FAILED_PRECONDITION,
    ErrorCode.STALE_SEQUENCE: grpc.StatusCode.FAILED_PRECONDITION,
    ErrorCode.PARTIAL_DUPLICATE: grpc.StatusCode.ABORTED,  # never reaches a client: re-proposed
    ErrorCode.RESOURCE_EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    # Retryable once the store group learns the worker / the step moves on.
    ErrorCode.NOT_A_WORKER: grpc.StatusCode.FAILED_PRECONDITION,
    ErrorCode.WRONG_STEP: grpc.StatusCode.FAILED_PRECONDITION,
    # The client refreshes its config and sends the keys to their new group.
    ErrorCode.WRONG_GROUP: grpc.StatusCode.FAILED_PRECONDITION,
}


@dataclass(frozen=True, slots=True)
class StoreServiceLimits:
    # One push's gradient bytes: one log entry must hold it (ReplicaOptions.entry_bytes_max).
    push_bytes_max: int = 16 << 20
    push_messages_max: int = 1 << 16  # messages of one push stream
    pull_bytes_max: int = 256 << 20  # weights of one pull
    piece_bytes_default: int = 1 << 20  # pull pieces (1 MiB: grpcio's sweet spot)
    piece_bytes_max: int = 16 << 20
    pull_wait_ms_default: int = 10_000  # BSP/SSP pulls waiting for their step
    pull_wait_ms_max: int = 120_000
    # Tensor bytes per AcceptShard part (one log entry each; slots included).
    move_part_bytes_default: int = 8 << 20
    move_parts_max: int = 1 << 16  # parts of one AcceptShard stream
    batcher: BatcherLimits = dataclasses.field(default_factory=BatcherLimits)


class StoreService(api_grpc.StoreServicer):
    """Serves one store replica of group ``group_id``."""

    def __init__(
        self,
        replica: Replica,
        machine: ShardStateMachine,
        *,
        group_id: int = 0,
        limits: StoreServiceLimits | None = None,
    ) -> None:
        self._replica = replica
        self._machine = machine
        self.group_id = group_id
        self.limits = limits or StoreServiceLimits()
        self.batcher = PushBatcher(self._propose_entry, self.limits.batcher)
        self.pulls = {"linearizable": 0, "serializable": 0}  # served since start
        # Set (and replaced) after every applied command: pulls waiting for a step wake up.
        self._applied = asyncio.Event()
        machine.listeners.append(self._on_applied)

    def _on_applied(self) -> None:
        self._applied.set()
        self._applied = asyncio.Event()

    def register(self, server: grpc.aio.Server) -> None:
        # The tensor streams go as bytes framed by hand (paramstore._piece_wire).
        service = api.DESCRIPTOR.services_by_name["Store"]
        add_servicer(server, self, service, raw_requests={"Push"}, raw_responses={"Pull"})

    async def close(self) -> None:
        await self.batcher.close()

    async def _propose_entry(self, data: bytes) -> object:
        return await self._replica.node.propose(data, _DEFAULT_TIMEOUT_S * 3)

    # ---- Install ------------------------------------------------------------------------------

    async def Install(
        self, request: api.InstallRequest, context: grpc.aio.ServicerContext
    ) -> api.InstallResponse:
        data = shard_pb.ShardCommand(install_keys=request.install).SerializeToString(deterministic=True)
        if len(data) > self._machine.limits.command_bytes_max:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"install: {len(data)} bytes, too large")
        raw = await self._propose_command(data, context)
        return api.InstallResponse(result=shard_pb.ShardResult.FromString(raw))

    # ---- Push ---------------------------------------------------------------------------------

    async def Push(
        self, request_iterator: AsyncIterator[bytes], context: grpc.aio.ServicerContext
    ) -> api.PushResponse:
        """Receives ``PushRequest`` messages as bytes (``register`` hands them over as they
        came): ``parse_push_request`` reads the gradients in place."""
        op = await self._receive_push(request_iterator, context)
        await self._require_leader(context)
        refusal = self._machine.check_push(op)
        cover = op.covers[0]
        if refusal is not None:
            if not refusal.ok:
                await _refuse(refusal, context)
            stored = next(r.result for r in refusal.replays if r.push == cover)
            return _push_response(dataclasses.replace(decode_result(stored), duplicate=True), 1)
        gradients = {item.key: decode_tensor(item.tensor) for item in op.gradients}
        push = PendingPush(
            model=op.model,
            cover=cover,
            config_number=op.config_number,
            gradients=gradients,
            nbytes=sum(g.nbytes for g in gradients.values()),
            finite=all(all_finite(g) for g in gradients.values()),
            step=op.step,
        )
        try:
            waiter = self.batcher.submit(push)
        except QueueFullError as exc:
            await _abort(context, grpc.StatusCode.UNAVAILABLE, f"{exc}; retry later")
        try:
            async with asyncio.timeout(_timeout(context)):
                result, merged = await asyncio.shield(waiter)
        except BaseException as exc:
            await self._abort_for(exc, context)
        if not result.ok:
            await _refuse(result, context)
        return _push_response(result, merged)

    async def _receive_push(
        self, request_iterator: AsyncIterator[bytes], context: grpc.aio.ServicerContext
    ) -> PushOp:
        """The stream as one ``Push`` command of one (client, sequence); INVALID_ARGUMENT for a
        malformed stream (header fields after the first message, a key split apart, a
        dtype that changes within a key, too many bytes)."""
        header: PushMessage | None = None
        pieces: dict[str, list[bytes | memoryview]] = {}
        dtypes: dict[str, int] = {}
        current = ""
        total_bytes = 0
        messages = 0
        async for raw in request_iterator:  # raw bytes (see register): pieces stay slices of them
            messages += 1
            if messages > self.limits.push_messages_max:
                await _abort(
                    context,
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"push stream of over {self.limits.push_messages_max} messages",
                )
            try:
                message = parse_push_request(raw)
            except DecodeError as exc:
                await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"push message {messages}: {exc}")
            if header is None:
                header = message
            elif message.has_header_fields:
                await _abort(
                    context, grpc.StatusCode.INVALID_ARGUMENT, "header fields go in the first message only"
                )
            for piece in message.pieces:
                total_bytes += len(piece.data)
                if total_bytes > self.limits.push_bytes_max:
                    await _abort(
                        context,
                        grpc.StatusCode.INVALID_ARGUMENT,
                        f"push is over {self.limits.push_bytes_max} gradient bytes",
                    )
                if piece.key != current:
                    if piece.key in pieces:
                        await _abort(
                            context,
                            grpc.StatusCode.INVALID_ARGUMENT,
                            f"the pieces of key {piece.key!r} are not one after the other",
                        )
                    current = piece.key
                    pieces[current] = []
                    dtypes[current] = piece.dtype
                elif dtypes[current] != piece.dtype:
                    await _abort(
                        context, grpc.StatusCode.INVALID_ARGUMENT, f"key {piece.key!r} changes dtype"
                    )
                pieces[current].append(piece.data)
        if header is None:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "empty push stream")
        if not header.model or not header.client_id or header.sequence < 1:
            await _abort(
                context, grpc.StatusCode.INVALID_ARGUMENT, "push needs model, client_id and sequence >= 1"
            )
        return PushOp(
            model=header.model,
            covers=(ClientSequence(header.client_id, header.sequence),),
            config_number=header.config_number,
            step=header.step,
            gradients=tuple(
                KeyGradient(key, WireTensor(dtypes[key], parts[0] if len(parts) == 1 else b"".join(parts)))
                for key, parts in pieces.items()
            ),
        )

    # ---- Pull ---------------------------------------------------------------------------------

    async def Pull(self, request: api.PullRequest, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        """Streams ``PullResponse`` messages, already serialized (``register`` sends them as
        they are)."""
        piece_bytes = request.piece_bytes_max or self.limits.piece_bytes_default
        if piece_bytes > self.limits.piece_bytes_max:
            await _abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"piece_bytes_max {piece_bytes} is over {self.limits.piece_bytes_max}",
            )
        if not request.serializable:
            await self._barrier(context)
        self.pulls["serializable" if request.serializable else "linearizable"] += 1
        if request.min_step or request.worker_id:
            await self._wait_ready(request, context)
        # From here to the copies: no await, so the weights are of one applied index.
        machine = self._machine
        try:
            keys = list(request.keys) or list(machine.keys(request.model))
            views = machine.pull(request.model, keys, copy=False)
            step = machine.step(request.model)
        except ShardError as exc:
            await _refuse(ShardResult(exc.code, exc.message), context)
        total = sum(v.nbytes for v in views.values())
        if total > self.limits.pull_bytes_max:
            await _abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"pull of {total} bytes is over {self.limits.pull_bytes_max}; ask for fewer keys",
            )
        # Every message is written before the first yield: one copy of each byte, straight
        # out of the weights, all of one applied index (paramstore._piece_wire).
        step_bytes = 4 * max(1, piece_bytes // 4)  # whole float32 elements
        pieces = [
            Piece(key, shard_pb.D_TYPE_FLOAT32, data[start : start + step_bytes])
            for key, view in views.items()
            for data in (view.reshape(-1).view(np.uint8).data,)
            for start in (range(0, data.nbytes, step_bytes) if data.nbytes else range(1))
        ]
        for message in encode_pull_responses(step, pieces, piece_bytes):
            yield message

    async def _wait_ready(self, request: api.PullRequest, context: grpc.aio.ServicerContext) -> None:
        """BSP/SSP: wait (bounded) until the model reached the pull's step or the worker is
        within the staleness bound. Applied entries wake the wait; so a follower serving a
        serializable pull waits for its own log to catch up."""
        wait_ms = request.wait_ms or self.limits.pull_wait_ms_default
        if wait_ms > self.limits.pull_wait_ms_max:
            await _abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"wait_ms {wait_ms} is over {self.limits.pull_wait_ms_max}",
            )
        try:
            async with asyncio.timeout(min(wait_ms / 1000, _timeout(context))):
                while not self._machine.pull_ready(request.model, request.min_step, request.worker_id):
                    await self._applied.wait()
        except ShardError as exc:
            await _refuse(ShardResult(exc.code, exc.message), context)
        except TimeoutError:
            await _abort(
                context,
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"model {request.model!r} did not reach step {request.min_step} (worker "
                f"{request.worker_id!r}) within {wait_ms} ms; retry to keep waiting",
            )

    # ---- Status -------------------------------------------------------------------------------

    async def Status(
        self, request: api.StatusRequest, context: grpc.aio.ServicerContext
    ) -> api.StatusResponse:
        replica = self._replica
        core = replica.node.core
        leader_id, leader_address = replica.leader()
        machine = self._machine
        counters = self.batcher.counters
        return api.StatusResponse(
            cluster_id=replica.options.cluster_id,
            group_id=self.group_id,
            node_id=replica.options.node_id,
            address=replica.address,
            role=core.role.name.lower(),
            term=core.term,
            leader_id=leader_id,
            leader_address=leader_address,
            commit_index=core.commit_index,
            applied_index=core.applied_index,
            last_index=core.log.last_index,
            models=[
                api.ModelStatus(
                    name=name,
                    step=machine.step(name),
                    keys=len(machine.keys(name)),
                    skipped_pushes=machine.skipped_pushes(name),
                    workers=sorted(machine.sync_state(name).clocks),
                    applied_pushes=machine.applied_pushes(name),
                )
                for name in machine.models()
            ],
            push_entries=counters["push_entries"],
            merged_entries=counters["merged_entries"],
            merged_pushes=counters["merged_pushes"],
            linearizable_pulls=self.pulls["linearizable"],
            serializable_pulls=self.pulls["serializable"],
        )

    # ---- shard moves ----------------------------------------------------------------------------

    async def ReleaseShard(
        self, request: shard_pb.ReleaseShard, context: grpc.aio.ServicerContext
    ) -> api.MoveResponse:
        return await self._propose_move(
            encode_release(request.model, request.shard, request.move_id), context
        )

    async def DropShard(
        self, request: shard_pb.DropShard, context: grpc.aio.ServicerContext
    ) -> api.MoveResponse:
        return await self._propose_move(encode_drop(request.model, request.shard, request.move_id), context)

    async def FetchShard(
        self, request: api.FetchShardRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[shard_pb.AcceptShard]:
        part_bytes = request.part_bytes_max or self.limits.move_part_bytes_default
        if part_bytes > self.limits.push_bytes_max:
            await _abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"part_bytes_max {part_bytes} is over {self.limits.push_bytes_max}",
            )
        await self._barrier(context)
        try:
            model, keys = self._machine.released_shard(request.model, request.shard, request.move_id)
        except ShardError as exc:
            await _refuse(ShardResult(exc.code, exc.message), context)
        # Built in one go (no await): a DropShard applied meanwhile cannot tear the parts.
        parts = list(accept_parts(model, request.shard, request.move_id, keys, part_bytes))
        for part in parts:
            yield part

    async def AcceptShard(
        self, request_iterator: AsyncIterator[shard_pb.AcceptShard], context: grpc.aio.ServicerContext
    ) -> api.MoveResponse:
        response: api.MoveResponse | None = None
        parts = 0
        async for part in request_iterator:
            parts += 1
            if parts > self.limits.move_parts_max:
                await _abort(
                    context, grpc.StatusCode.INVALID_ARGUMENT, f"over {self.limits.move_parts_max} parts"
                )
            response = await self._propose_move(
                shard_pb.ShardCommand(accept_shard=part).SerializeToString(deterministic=True), context
            )
            if part.last:
                break
        if response is None:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "empty AcceptShard stream")
        return response

    async def _propose_move(self, data: bytes, context: grpc.aio.ServicerContext) -> api.MoveResponse:
        raw = await self._propose_command(data, context)
        return api.MoveResponse(result=shard_pb.ShardResult.FromString(raw))

    async def _propose_command(self, data: bytes, context: grpc.aio.ServicerContext) -> bytes:
        """Propose one command at the leader; its encoded result, or the refusal as a status."""
        await self._require_leader(context)
        try:
            raw = await self._replica.node.propose(data, _timeout(context))
        except BaseException as exc:
            await self._abort_for(exc, context)
        assert isinstance(raw, bytes)
        result = decode_result(raw)
        if not result.ok:
            await _refuse(result, context)
        return raw

    # ---- helpers ------------------------------------------------------------------------------

    async def _barrier(self, context: grpc.aio.ServicerContext) -> None:
        await self._require_leader(context)
        try:
            await self._replica.node.read_index(_timeout(context))
        except BaseException as exc:
            await self._abort_for(exc, context)

    async def _require_leader(self, context: grpc.aio.ServicerContext) -> None:
        if not self._replica.is_leader:
            await self._redirect(context)

    async def _redirect(self, context: grpc.aio.ServicerContext) -> NoReturn:
        leader_id, leader_address = self._replica.leader()
        context.set_trailing_metadata(
            ((LEADER_ID_METADATA, str(leader_id)), (LEADER_ADDRESS_METADATA, leader_address))
        )
        where = f"node {leader_id} at {leader_address}" if leader_id else "not known yet"
        await _abort(context, grpc.StatusCode.UNAVAILABLE, f"not the leader; the leader is {where}")

    async def _abort_for(self, exc: BaseException, context: grpc.aio.ServicerContext) -> NoReturn:
        """The status for a failed propose or read barrier (re-raises anything else)."""
        if isinstance(exc, NotLeaderError):
            await self._redirect(context)
        if isinstance(exc, ProposalDroppedError | NodeStoppedError):
            await _abort(context, grpc.StatusCode.UNAVAILABLE, f"not applied, retry: {exc}")
        if isinstance(exc, ProposalTooLargeError):
            await _abort(context, grpc.StatusCode.RESOURCE_EXHAUSTED, f"{exc}; push fewer bytes at a time")
        if isinstance(exc, TimeoutError):
            await _abort(
                context,
                grpc.StatusCode.DEADLINE_EXCEEDED,
                "not applied in time; outcome unknown (a retry with the same sequence is safe)",
            )
        raise exc


def _push_response(result: ShardResult, merged: int) -> api.PushResponse:
    encoded = shard_pb.ShardResult.FromString(encode_result(result))
    return api.PushResponse(result=encoded, merged_pushes=merged)


def _timeout(context: grpc.aio.ServicerContext) -> float:
    remaining: float | None = context.time_remaining()
    if remaining is None:
        return _DEFAULT_TIMEOUT_S
    return max(0.001, min(remaining, _DEFAULT_TIMEOUT_S * 6))


async def _refuse(result: ShardResult, context: grpc.aio.ServicerContext) -> NoReturn:
    """A refusal of the shard state machine as a gRPC status, its code in the trailers."""
    context.set_trailing_metadata(((ERROR_CODE_METADATA, shard_pb.ErrorCode.Name(int(result.code))),))
    status = _STATUS_OF_CODE.get(result.code, grpc.StatusCode.UNKNOWN)
    await _abort(context, status, f"{result.code.name}: {result.message}")


async def _abort(context: grpc.aio.ServicerContext, code: grpc.StatusCode, details: str) -> NoReturn:
    await context.abort(code, details)
    raise AssertionError("unreachable: context.abort raises")
