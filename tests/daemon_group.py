"""Several daemons of one Raft group in one event loop, as the service tests run them."""

from __future__ import annotations

import asyncio
import time
from typing import Generic, Protocol, TypeVar

from paramstore.server import Replica

LEADER_DEADLINE_S = 20.0


class HasReplica(Protocol):
    @property
    def replica(self) -> Replica: ...


D = TypeVar("D", bound=HasReplica)


class DaemonGroup(Generic[D]):
    """The group's daemons, and waits (with a deadline) for its single leader."""

    def __init__(self, daemons: list[D]) -> None:
        self.daemons = daemons

    @property
    def addresses(self) -> list[str]:
        return [d.replica.address for d in self.daemons]

    async def leader(self) -> D:
        deadline = time.monotonic() + LEADER_DEADLINE_S
        while time.monotonic() < deadline:
            leaders = [d for d in self.daemons if d.replica.is_leader]
            if len(leaders) == 1:
                return leaders[0]
            await asyncio.sleep(0.01)
        raise AssertionError("no single leader elected in time")

    async def followers(self) -> list[D]:
        leader = await self.leader()
        return [d for d in self.daemons if d is not leader]
