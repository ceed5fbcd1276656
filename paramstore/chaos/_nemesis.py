"""Nemeses: the faults a chaos run injects into a ``LocalCluster``'s real processes.

* ``kill``: kill -9 a random node (coordinator or store), restart it when the fault ends;
* ``pause``: SIGSTOP a random node, SIGCONT it when the fault ends;
* ``leader``: kill -9 the current leader of a random group (the coordinator group or a
  store group), restart it when the fault ends;
* ``partition``: cut one random node of a random group off from its peers (every Raft
  message in and out dropped, through the node's ``RaftAdmin`` fault rules), or split a
  store group so that its leader is in the minority; healed when the fault ends;
* ``isolate-leader``: cut the current leader of a random group off from its peers (it may
  keep believing it leads for a while: the case ReadIndex exists for);
* ``links``: delay (5-50 ms), drop (10%) and duplicate (10%) the messages of a random node.

A ``Schedule`` draws, from one seed, which nemesis strikes when and where: faults of
``fault_s`` seconds separated by quiet gaps of ``gap_s``; every fault is healed before the
next one starts and at the end of the run, so a run always ends on a healthy cluster.
Every fault becomes a ``FaultWindow`` (name, start, end, what was done) for the report.
"""

from __future__ import annotations

import asyncio
import logging
import random
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from paramstore.commands._up import LocalCluster, _store_leader
from proto import raft_service_pb2 as raft_api
from proto import raft_service_pb2_grpc as raft_grpc

__all__ = ["NEMESES", "FaultRecord", "Schedule"]

log = logging.getLogger("paramstore.chaos")

NEMESES = ("kill", "pause", "leader", "partition", "isolate-leader", "links")

Node = tuple[int, int]  # (group, node id); group 0 = the coordinators


@dataclass
class FaultRecord:
    name: str
    start: float
    end: float | None
    detail: str


class _Cluster:
    """The fault-side view of a LocalCluster: its nodes, their processes and addresses."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster

    def nodes(self) -> list[Node]:
        coordinators = [(0, n) for n in self.cluster.addresses]
        stores = [(g, n) for g, members in self.cluster.store_addresses.items() for n in members]
        return coordinators + stores

    def groups(self) -> list[int]:
        return [0, *self.cluster.store_addresses]

    def members(self, group: int) -> dict[int, str]:
        return dict(self.cluster.addresses) if group == 0 else dict(self.cluster.store_addresses[group])

    def process(self, node: Node) -> Any:
        group, node_id = node
        return self.cluster.processes.get(node_id) if group == 0 else self.cluster.store_processes.get(node)

    def kill(self, node: Node) -> None:
        process = self.process(node)
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)

    def restart(self, node: Node) -> None:
        process = self.process(node)
        if process is not None and process.poll() is None:
            return
        group, node_id = node
        if group == 0:
            self.cluster.start_node(node_id)
        else:
            self.cluster.start_store(group, node_id)

    def signal(self, node: Node, signum: int) -> None:
        process = self.process(node)
        if process is not None and process.poll() is None:
            process.send_signal(signum)

    async def leader(self, group: int) -> int:
        if group == 0:
            try:
                return await asyncio.wait_for(self.cluster.wait_for_leader(3.0), 4.0)
            except (TimeoutError, RuntimeError):
                return 0
        return await _store_leader(list(self.members(group).values()))

    async def inject(self, node: Node, rule: raft_api.FaultRule) -> None:
        address = self.members(node[0])[node[1]]
        async with grpc.aio.insecure_channel(address) as channel:
            await raft_grpc.RaftAdminStub(channel).InjectFault(
                raft_api.InjectFaultRequest(rule=rule), timeout=2.0
            )

    async def clear(self, node: Node) -> None:
        address = self.members(node[0])[node[1]]
        try:
            async with grpc.aio.insecure_channel(address) as channel:
                await raft_grpc.RaftAdminStub(channel).ClearFaults(raft_api.ClearFaultsRequest(), timeout=2.0)
        except grpc.aio.AioRpcError as exc:  # a node that was restarted meanwhile has no rules
            log.info("clear faults on %s: %s", node, exc.code().name)


class Schedule:
    """Runs the seeded fault schedule until ``stop``; ``faults`` is the record of it."""

    def __init__(
        self,
        cluster: LocalCluster,
        nemeses: Sequence[str],
        seed: int,
        now: Callable[[], float],
        *,
        fault_s: float = 3.0,
        gap_s: float = 2.0,
    ) -> None:
        unknown = sorted(set(nemeses) - set(NEMESES))
        if unknown:
            raise ValueError(f"unknown nemesis {unknown}; expected some of {', '.join(NEMESES)}")
        self.view = _Cluster(cluster)
        self.nemeses = list(nemeses)
        self.rng = random.Random(seed)
        self.now = now
        self.fault_s = fault_s
        self.gap_s = gap_s
        self.faults: list[FaultRecord] = []
        self._heal: Callable[[], Any] | None = None

    async def run(self, stop: asyncio.Event) -> None:
        if not self.nemeses:
            await stop.wait()
            return
        while not stop.is_set():
            if await _wait(stop, self.gap_s):
                break
            name = self.rng.choice(self.nemeses)
            record = FaultRecord(name, self.now(), None, "")
            try:
                record.detail = await getattr(self, f"_{name.replace('-', '_')}")()
            except (grpc.aio.AioRpcError, OSError, RuntimeError) as exc:
                record.detail = f"could not inject: {exc}"
            self.faults.append(record)
            log.info("fault %s: %s", name, record.detail)
            await _wait(stop, self.fault_s)
            await self.heal()
            record.end = self.now()

    async def heal(self) -> None:
        heal, self._heal = self._heal, None
        if heal is not None:
            result = heal()
            if asyncio.iscoroutine(result):
                await result

    # ---- the nemeses ------------------------------------------------------------------------

    async def _kill(self) -> str:
        node = self.rng.choice(self.view.nodes())
        self.view.kill(node)
        self._heal = lambda: self.view.restart(node)
        return f"kill -9 {_name(node)}"

    async def _pause(self) -> str:
        node = self.rng.choice(self.view.nodes())
        self.view.signal(node, signal.SIGSTOP)
        self._heal = lambda: self.view.signal(node, signal.SIGCONT)
        return f"SIGSTOP {_name(node)}"

    async def _leader(self) -> str:
        group = self.rng.choice(self.view.groups())
        leader = await self.view.leader(group)
        if not leader:
            return f"group {group} had no leader to kill"
        node = (group, leader)
        self.view.kill(node)
        self._heal = lambda: self.view.restart(node)
        return f"kill -9 the leader {_name(node)}"

    async def _partition(self) -> str:
        group = self.rng.choice(self.view.groups())
        members = sorted(self.view.members(group))
        leader = await self.view.leader(group)
        victim = leader if leader and self.rng.random() < 0.5 else self.rng.choice(members)
        node = (group, victim)
        await self._isolate(node)
        role = " (the leader)" if victim == leader else ""
        return f"isolate {_name(node)}{role} from its peers"

    async def _isolate(self, node: Node) -> None:
        """Drop every Raft message to and from ``node`` until the fault is healed."""
        await self.view.inject(
            node, raft_api.FaultRule(direction=raft_api.FAULT_DIRECTION_BOTH, partition=True)
        )
        self._heal = lambda: self.view.clear(node)

    async def _isolate_leader(self) -> str:
        group = self.rng.choice(self.view.groups())
        leader = await self.view.leader(group)
        if not leader:
            return f"group {group} had no leader to isolate"
        node = (group, leader)
        await self._isolate(node)
        return f"isolate the leader {_name(node)} from its peers"

    async def _links(self) -> str:
        node = self.rng.choice(self.view.nodes())
        rule = raft_api.FaultRule(
            direction=raft_api.FAULT_DIRECTION_BOTH,
            drop_probability=0.1,
            duplicate_probability=0.1,
            delay_ms_min=5.0,
            delay_ms_max=50.0,
        )
        await self.view.inject(node, rule)
        self._heal = lambda: self.view.clear(node)
        return f"delay 5-50 ms, drop 10%, duplicate 10% on {_name(node)}'s links"


def _name(node: Node) -> str:
    group, node_id = node
    return f"coordinator {node_id}" if group == 0 else f"store {group}-{node_id}"


async def _wait(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds`` unless ``stop`` is set first; True if it was."""
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        return False
    return True
