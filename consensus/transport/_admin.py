"""The ``RaftAdmin`` service (fault injection and tick skew over gRPC) and a small client for it."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from types import TracebackType

import grpc

from consensus.tick_rate import TickRate, TickRateError
from consensus.transport._errors import FaultRuleError
from consensus.transport._faults import FaultDirection, FaultInjector, FaultRule
from proto import raft_service_pb2, raft_service_pb2_grpc

_DIRECTION_BY_WIRE: dict[int, FaultDirection] = {member.value: member for member in FaultDirection}


# The stubs type ``direction`` as the proto enum; our IntEnum carries the same numbers.
_new_fault_rule_proto: Callable[..., raft_service_pb2.FaultRule] = raft_service_pb2.FaultRule


def fault_rule_to_proto(rule_id: int, rule: FaultRule) -> raft_service_pb2.FaultRule:
    return _new_fault_rule_proto(
        id=rule_id,
        peers=sorted(rule.peers),
        direction=rule.direction,
        drop_probability=rule.drop_probability,
        duplicate_probability=rule.duplicate_probability,
        delay_ms_min=rule.delay_ms_min,
        delay_ms_max=rule.delay_ms_max,
        partition=rule.partition,
    )


def fault_rule_from_proto(proto: raft_service_pb2.FaultRule) -> FaultRule:
    """The rule a request describes (its ``id`` is ignored); ``FaultRuleError`` if impossible."""
    direction = _DIRECTION_BY_WIRE.get(proto.direction)
    if direction is None:
        raise FaultRuleError(
            f"FaultRule.direction: expected 1 (OUTBOUND), 2 (INBOUND) or 3 (BOTH), got {proto.direction}"
        )
    return FaultRule(
        peers=frozenset(proto.peers),
        direction=direction,
        drop_probability=proto.drop_probability,
        duplicate_probability=proto.duplicate_probability,
        delay_ms_min=proto.delay_ms_min,
        delay_ms_max=proto.delay_ms_max,
        partition=proto.partition,
    )


class AdminServicer(raft_service_pb2_grpc.RaftAdminServicer):
    """Serves one transport's ``FaultInjector`` and ``TickRate``."""

    def __init__(self, faults: FaultInjector, tick_rate: TickRate | None = None) -> None:
        self._faults = faults
        self._tick_rate = tick_rate if tick_rate is not None else TickRate()

    async def InjectFault(
        self, request: raft_service_pb2.InjectFaultRequest, context: grpc.aio.ServicerContext
    ) -> raft_service_pb2.InjectFaultResponse:
        try:
            rule_id = self._faults.add(fault_rule_from_proto(request.rule))
        except FaultRuleError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            raise  # not reached: abort raises
        return raft_service_pb2.InjectFaultResponse(rule_id=rule_id)

    async def ClearFaults(
        self, request: raft_service_pb2.ClearFaultsRequest, _context: grpc.aio.ServicerContext
    ) -> raft_service_pb2.ClearFaultsResponse:
        cleared = self._faults.clear(list(request.rule_ids) or None)
        return raft_service_pb2.ClearFaultsResponse(cleared=cleared)

    async def ListFaults(
        self, _request: raft_service_pb2.ListFaultsRequest, _context: grpc.aio.ServicerContext
    ) -> raft_service_pb2.ListFaultsResponse:
        rules = [fault_rule_to_proto(rule_id, rule) for rule_id, rule in self._faults.rules()]
        return raft_service_pb2.ListFaultsResponse(rules=rules, seed=self._faults.seed)

    async def SetTickRate(
        self, request: raft_service_pb2.SetTickRateRequest, context: grpc.aio.ServicerContext
    ) -> raft_service_pb2.SetTickRateResponse:
        try:
            previous = self._tick_rate.set(request.factor)
        except TickRateError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"SetTickRateRequest.factor: {exc}")
            raise  # not reached: abort raises
        return raft_service_pb2.SetTickRateResponse(
            previous_factor=previous, factor=self._tick_rate.factor, driven=self._tick_rate.driven
        )


class AdminClient:
    """Drives the fault rules and the tick rate of the transport listening at ``address``.

    Every call has a deadline of ``timeout_s``. Use as ``async with AdminClient(addr) as admin``.
    A rule the node refuses raises ``grpc.aio.AioRpcError`` with INVALID_ARGUMENT.
    """

    def __init__(self, address: str, timeout_s: float = 5.0) -> None:
        self.address = address
        self.timeout_s = timeout_s
        self._channel = grpc.aio.insecure_channel(address)
        self._stub = raft_service_pb2_grpc.RaftAdminStub(self._channel)

    async def inject_fault(self, rule: FaultRule) -> int:
        request = raft_service_pb2.InjectFaultRequest(rule=fault_rule_to_proto(0, rule))
        response: raft_service_pb2.InjectFaultResponse = await self._stub.InjectFault(
            request, timeout=self.timeout_s
        )
        return response.rule_id

    async def clear_faults(self, rule_ids: Iterable[int] = ()) -> int:
        """Remove the given rules, or every rule when none is given; returns how many went."""
        request = raft_service_pb2.ClearFaultsRequest(rule_ids=list(rule_ids))
        response: raft_service_pb2.ClearFaultsResponse = await self._stub.ClearFaults(
            request, timeout=self.timeout_s
        )
        return response.cleared

    async def list_faults(self) -> list[tuple[int, FaultRule]]:
        response: raft_service_pb2.ListFaultsResponse = await self._stub.ListFaults(
            raft_service_pb2.ListFaultsRequest(), timeout=self.timeout_s
        )
        return [(proto.id, fault_rule_from_proto(proto)) for proto in response.rules]

    async def set_tick_rate(self, factor: float) -> raft_service_pb2.SetTickRateResponse:
        """Scale the node's tick timer (1 restores it); INVALID_ARGUMENT outside [0.1, 10]."""
        response: raft_service_pb2.SetTickRateResponse = await self._stub.SetTickRate(
            raft_service_pb2.SetTickRateRequest(factor=factor), timeout=self.timeout_s
        )
        return response

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> AdminClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()
