"""``CoordinatorClient``: the asyncio client of the coordinator group.

It hides the group: it finds the leader (following the redirect hints in UNAVAILABLE
answers, else trying each address in turn), retries with capped exponential back-off
within one deadline per call, and makes retried commands safe with a client session:
each command carries (client_id, sequence) and a retry reuses the sequence, so the state
machine applies it once. Commands of one client go one at a time (the session remembers
only the last one's result); run several clients for concurrency. Commands travel on one
long-lived Session stream to the leader, shared by the clients of an event loop
(``_command_stream.py``), which costs far less per command than a unary call; reads and
the rest are unary calls.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import grpc

from paramstore.client._command_stream import CommandStreams, StreamBrokenError, command_streams
from paramstore.client._errors import (
    ClusterUnavailableError,
    CommandRejectedError,
    DeadlineExceededError,
    RequestInvalidError,
)
from paramstore.coordinator import (
    Change,
    ChangeKind,
    CommandResult,
    CompareAndSet,
    Delete,
    DeletePrefix,
    ErrorCode,
    KeyValue,
    Operation,
    Put,
    decode_result,
    encode_command,
)
from proto import coordinator_pb2 as pb
from proto import coordinator_service_pb2 as api
from proto import coordinator_service_pb2_grpc as api_grpc

__all__ = ["CoordinatorClient", "NodeStatus", "parse_addresses"]

_LEADER_ADDRESS_METADATA = "paramstore-leader-address"
_RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
_CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", 16 * 1024 * 1024),
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
    ("grpc.enable_retries", 0),
    ("grpc.initial_reconnect_backoff_ms", 50),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


def parse_addresses(text: str | Sequence[str]) -> list[str]:
    """``"h1:p1,h2:p2"`` (or a list of such) as a list of ``host:port``; raises ValueError."""
    items = text.split(",") if isinstance(text, str) else list(text)
    addresses = [item.strip() for item in items if item.strip()]
    if not addresses:
        raise ValueError("no coordinator address given (expected HOST:PORT[,HOST:PORT...])")
    for address in addresses:
        host, sep, port = address.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"coordinator address {address!r} is not HOST:PORT")
    return addresses


@dataclass(frozen=True, slots=True)
class NodeStatus:
    """One node's answer to Status, or ``error`` when it did not answer."""

    address: str
    response: api.StatusResponse | None
    error: str = ""


def _kv_from_proto(kv: pb.StoredKey) -> KeyValue:
    return KeyValue(
        key=kv.key, value=kv.value, version=kv.version, create_revision=kv.create_revision, lease=kv.lease
    )


class CoordinatorClient:
    """Talks to the coordinator group at ``addresses``. Use as ``async with``."""

    def __init__(
        self,
        addresses: Sequence[str] | str,
        *,
        client_id: str | None = None,
        deadline_s: float = 10.0,
        attempt_timeout_s: float = 2.0,
        attempts_max: int = 200,
        backoff_initial_s: float = 0.01,
        # An election takes a few hundred ms: waiting longer than this between rounds only
        # adds to the failover a caller sees.
        backoff_max_s: float = 0.1,
    ) -> None:
        self.addresses = parse_addresses(addresses)
        if deadline_s <= 0 or attempt_timeout_s <= 0 or attempts_max < 1:
            raise ValueError("deadline_s and attempt_timeout_s must be > 0 and attempts_max >= 1")
        self.client_id = client_id or f"client-{uuid.uuid4().hex}"
        self.deadline_s = deadline_s
        self.attempt_timeout_s = attempt_timeout_s
        self.attempts_max = attempts_max
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.sequence = 0
        self._leader: str | None = None
        self._next_index = 0
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._stubs: dict[str, api_grpc.CoordinatorStub] = {}
        self._command_streams: CommandStreams | None = None  # the loop's, once joined
        self._command_lock = asyncio.Lock()
        self._rng = random.Random()
        self.retries = 0

    async def __aenter__(self) -> CoordinatorClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        streams, self._command_streams = self._command_streams, None
        if streams is not None:
            await streams.leave()
        channels = list(self._channels.values())
        self._channels.clear()
        self._stubs.clear()
        for channel in channels:
            await channel.close()

    # ---- commands -------------------------------------------------------------------------

    async def execute(self, op: Operation, *, deadline_s: float | None = None) -> CommandResult:
        """Apply ``op`` exactly once; returns its result (which may be a refusal)."""
        async with self._command_lock:
            self.sequence += 1
            data = encode_command(op, client_id=self.client_id, sequence=self.sequence)
            command = pb.Command.FromString(data)

            async def attempt(address: str, timeout_s: float) -> pb.CommandResult:
                return await self._command_attempt(address, command, timeout_s)

            result = await self._retrying("Execute", attempt, deadline_s)
            return decode_result(result.SerializeToString())

    async def _checked(self, op: Operation) -> CommandResult:
        result = await self.execute(op)
        if not result.ok:
            raise CommandRejectedError(result)
        return result

    async def put(self, key: str, value: bytes, *, lease: str = "") -> CommandResult:
        return await self._checked(Put(key, value, lease))

    async def delete(self, key: str) -> CommandResult:
        return await self._checked(Delete(key))

    async def delete_prefix(self, prefix: str) -> CommandResult:
        return await self._checked(DeletePrefix(prefix))

    async def compare_and_set(
        self,
        key: str,
        new_value: bytes,
        *,
        expected_value: bytes | None = None,
        expected_version: int | None = None,
        expect_absent: bool = False,
    ) -> tuple[bool, CommandResult]:
        """(True, result) if the expectation held and the value was set; (False, result) on
        a mismatch (``result.key_version`` is the key's current version)."""
        op = CompareAndSet(
            key,
            new_value,
            expected_value=expected_value,
            expected_version=expected_version,
            expect_absent=expect_absent,
        )
        result = await self.execute(op)
        if result.code == ErrorCode.CAS_MISMATCH:
            return False, result
        if not result.ok:
            raise CommandRejectedError(result)
        return True, result

    # ---- reads ----------------------------------------------------------------------------

    async def get(self, key: str, *, serializable: bool = False) -> KeyValue | None:
        response = await self._call("Get", api.GetRequest(key=key, serializable=serializable))
        return _kv_from_proto(response.kv) if response.found else None

    async def range(
        self,
        *,
        prefix: str = "",
        start: str = "",
        end: str = "",
        limit: int = 0,
        serializable: bool = False,
    ) -> tuple[list[KeyValue], bool, int]:
        """(key/values, more, revision) of one page."""
        request = api.RangeRequest(
            prefix=prefix, start=start, end=end, limit=limit, serializable=serializable
        )
        response = await self._call("Range", request)
        return [_kv_from_proto(kv) for kv in response.kvs], response.more, response.revision

    async def watch(self, prefix: str, start_revision: int, *, duration_s: float) -> AsyncIterator[Change]:
        """Changes under ``prefix`` from ``start_revision`` on, for ``duration_s`` seconds."""
        stub = await self._leader_stub(duration_s)
        call = stub.Watch(api.WatchRequest(prefix=prefix, start_revision=start_revision), timeout=duration_s)
        try:
            async for batch in call:
                for change in batch.changes:
                    yield Change(change.revision, ChangeKind(change.kind), change.key, change.value)
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                raise
        finally:
            call.cancel()

    async def config(self, *, serializable: bool = False) -> api.GetConfigResponse:
        response: api.GetConfigResponse = await self._call(
            "GetConfig", api.GetConfigRequest(serializable=serializable)
        )
        return response

    # ---- operations -----------------------------------------------------------------------

    async def status_all(self, timeout_s: float = 2.0) -> list[NodeStatus]:
        """Every configured node's own status, asked in parallel (unreachable ones say why)."""

        async def one(address: str) -> NodeStatus:
            try:
                response = await self._stub(address).Status(api.StatusRequest(), timeout=timeout_s)
            except grpc.aio.AioRpcError as exc:
                return NodeStatus(address, None, f"{exc.code().name}: {exc.details()}")
            return NodeStatus(address, response)

        return list(await asyncio.gather(*(one(address) for address in self.addresses)))

    async def change_membership(self, change: int, node_id: int) -> api.ChangeMembershipResponse:
        request = api.ChangeMembershipRequest(change=change, node_id=node_id)  # type: ignore[arg-type]
        response: api.ChangeMembershipResponse = await self._call("ChangeMembership", request)
        return response

    async def transfer_leader(self, target_id: int) -> None:
        await self._call("TransferLeader", api.TransferLeaderRequest(target_id=target_id))

    # ---- the retry loop ---------------------------------------------------------------------

    async def _call(self, method: str, request: Any, deadline_s: float | None = None) -> Any:
        async def attempt(address: str, timeout_s: float) -> Any:
            try:
                return await getattr(self._stub(address), method)(request, timeout=timeout_s)
            except grpc.aio.AioRpcError as exc:
                raise _AttemptFailed(exc.code(), exc.details() or "", _leader_hint(exc)) from None

        return await self._retrying(method, attempt, deadline_s)

    async def _command_attempt(self, address: str, command: pb.Command, timeout_s: float) -> pb.CommandResult:
        """One try of ``command`` on the event loop's Session stream to ``address``."""
        if self._command_streams is None:
            self._command_streams = command_streams(_open_channel)
            self._command_streams.join()
        streams = self._command_streams
        stream = await streams.stream(address)
        try:
            response = await stream.request(command, timeout_s)
        except StreamBrokenError as exc:
            await streams.retire(stream)
            raise _AttemptFailed(exc.code, exc.details, None) from None
        except TimeoutError:
            raise _AttemptFailed(grpc.StatusCode.DEADLINE_EXCEEDED, "no answer in time", None) from None
        if response.status == grpc.StatusCode.OK.value[0]:
            return response.result
        code = _STATUS_BY_NUMBER.get(response.status, grpc.StatusCode.UNKNOWN)
        if code == grpc.StatusCode.UNAVAILABLE and response.leader_address != address:
            # Not (or no longer) the leader: its stream is of no more use.
            await streams.retire(stream)
        raise _AttemptFailed(code, response.details, response.leader_address or None)

    async def _retrying(
        self,
        method: str,
        attempt: Callable[[str, float], Awaitable[Any]],
        deadline_s: float | None,
    ) -> Any:
        """``attempt(address, timeout_s)`` until it succeeds, fails for good, or the deadline
        passes; it follows leader hints and backs off between rounds of the nodes."""
        deadline = time.monotonic() + (deadline_s or self.deadline_s)
        last_error = "no attempt made"
        backoff_s = self.backoff_initial_s
        for attempt_number in range(self.attempts_max):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            address = self._pick_address()
            try:
                return await attempt(address, min(self.attempt_timeout_s, remaining))
            except _AttemptFailed as exc:
                last_error = f"{address}: {exc.code.name}: {exc.details}"
                if exc.code == grpc.StatusCode.INVALID_ARGUMENT:
                    raise RequestInvalidError(exc.details or "invalid request") from None
                if exc.code not in _RETRYABLE:
                    raise ClusterUnavailableError(f"{method} failed: {last_error}") from None
                self._leader = exc.leader_hint if exc.leader_hint in self.addresses else None
                if self._leader is None:
                    self._next_index += 1
            self.retries += 1
            if self._leader is not None and attempt_number == 0:
                continue  # a fresh redirect: go there at once
            if self._leader is None and (attempt_number + 1) % len(self.addresses) != 0:
                continue  # try the other nodes before waiting: one of them may lead already
            await asyncio.sleep(
                min(backoff_s * self._rng.uniform(0.5, 1.0), max(0.0, deadline - time.monotonic()))
            )
            backoff_s = min(self.backoff_max_s, backoff_s * 2)
        if "DEADLINE_EXCEEDED" in last_error:
            raise DeadlineExceededError(
                f"{method}: no answer within {deadline_s or self.deadline_s:.1f} s ({last_error})"
            )
        raise ClusterUnavailableError(
            f"cannot reach a coordinator leader at {','.join(self.addresses)} (last error: {last_error})"
        )

    async def _leader_stub(self, timeout_s: float) -> api_grpc.CoordinatorStub:
        """The stub of the leader (found with a cheap Status round)."""
        deadline = time.monotonic() + min(timeout_s, self.deadline_s)
        while time.monotonic() < deadline:
            for status in await self.status_all(min(self.attempt_timeout_s, timeout_s)):
                if status.response is not None and status.response.role == "leader":
                    self._leader = status.address
                    return self._stub(status.address)
            await asyncio.sleep(self.backoff_max_s / 4)
        raise ClusterUnavailableError(f"no coordinator leader among {','.join(self.addresses)}")

    def _pick_address(self) -> str:
        if self._leader is not None:
            return self._leader
        return self.addresses[self._next_index % len(self.addresses)]

    def _stub(self, address: str) -> api_grpc.CoordinatorStub:
        stub = self._stubs.get(address)
        if stub is None:
            channel = self._channels[address] = _open_channel(address)
            stub = api_grpc.CoordinatorStub(channel)
            self._stubs[address] = stub
        return stub


def _open_channel(address: str) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(address, options=_CHANNEL_OPTIONS)


_STATUS_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}


class _AttemptFailed(Exception):
    """One try that got an error status; ``leader_hint`` is the leader it named, if any."""

    def __init__(self, code: grpc.StatusCode, details: str, leader_hint: str | None) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details
        self.leader_hint = leader_hint


def _leader_hint(exc: grpc.aio.AioRpcError) -> str | None:
    for key, value in exc.trailing_metadata() or ():
        if key == _LEADER_ADDRESS_METADATA and value:
            return str(value)
    return None
