"""The coordinator state machine under the real Raft runtime: three ``RaftNode``s in one event
loop, real on-disk storage, messages handed over by the loop. Replicas must end up with
byte-identical state, a command retried after a failover must apply once, and a replica
that missed entries must catch up through an installed snapshot."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from consensus import ConfState, Message, RaftConfig, Role
from consensus.runtime import RaftNode, RuntimeConfig
from consensus.storage import FsyncPolicy, NodeStorage, StorageConfig
from paramstore.coordinator import (
    AddGroup,
    AssignShards,
    CommandResult,
    CompareAndSet,
    CoordinatorStateMachine,
    ErrorCode,
    GroupMember,
    LeafSpec,
    ModelSpec,
    Operation,
    Put,
    RegisterModel,
    RegisterWorker,
    decode_result,
    encode_command,
)

DEADLINE_S = 10.0
T = TypeVar("T")


class Cluster:
    """Three coordinator replicas wired through the event loop."""

    def __init__(self, data_dir: Path, snapshot_every_entries: int = 10_000) -> None:
        self.data_dir = data_dir
        self.conf = ConfState((1, 2, 3))
        self.runtime_config = RuntimeConfig(tick_interval_ms=5, snapshot_every_entries=snapshot_every_entries)
        self.nodes: dict[int, RaftNode] = {}
        self.clock_ms = 1_000  # the leaders' proposal clock (any increasing number will do)

    def _send(self, message: Message) -> None:
        recipient = self.nodes.get(message.recipient)
        if recipient is not None:
            asyncio.get_running_loop().call_soon(recipient.deliver, message)

    def start(self, node_id: int) -> RaftNode:
        storage = NodeStorage.open(
            self.data_dir / f"node-{node_id}",
            cluster_id="coordinator-test",
            node_id=node_id,
            config=StorageConfig(fsync=FsyncPolicy.NEVER),
        )
        node = RaftNode(
            RaftConfig(node_id, self.conf),
            storage,
            self._send,
            CoordinatorStateMachine(),
            self.runtime_config,
            random.Random(node_id),
        )
        self.nodes[node_id] = node
        node.start()
        return node

    async def stop(self, node_id: int) -> None:
        node = self.nodes.pop(node_id)
        await node.stop()
        node.storage.close()

    async def stop_all(self) -> None:
        for node_id in list(self.nodes):
            await self.stop(node_id)

    async def leader(self) -> RaftNode:
        def single_leader() -> RaftNode | None:
            leaders = [node for node in self.nodes.values() if node.core.role == Role.LEADER]
            return leaders[0] if len(leaders) == 1 else None

        return await wait_for(single_leader)

    async def propose(self, node: RaftNode, op: Operation, client_id: str, sequence: int) -> bytes:
        """Propose as the leader does: the command stamped with the leader's clock."""
        self.clock_ms += 10
        data = encode_command(op, client_id=client_id, sequence=sequence, now_ms=self.clock_ms)
        raw = await node.propose(data, timeout_s=DEADLINE_S)
        assert isinstance(raw, bytes)
        return raw

    async def converged(self) -> bytes:
        """Wait until every running replica applied the same entries; returns their snapshot."""

        def same_state() -> bytes | None:
            nodes = list(self.nodes.values())
            if len({node.core.applied_index for node in nodes}) != 1:
                return None
            images = {coordinator(node).snapshot() for node in nodes}
            return images.pop() if len(images) == 1 else None

        return await wait_for(same_state)


def coordinator(node: RaftNode) -> CoordinatorStateMachine:
    machine = node.state_machine
    assert isinstance(machine, CoordinatorStateMachine)
    return machine


async def wait_for(probe: Callable[[], T | None]) -> T:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE_S
    while loop.time() < deadline:
        value = probe()
        if value is not None:
            return value
        await asyncio.sleep(0.005)
    raise AssertionError(f"condition not met within {DEADLINE_S} s")


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    async def bounded() -> None:
        await asyncio.wait_for(scenario(), 60)

    asyncio.run(bounded())


SPEC = ModelSpec.create("mlp", [LeafSpec("w", (16, 16), "float32")], num_shards=2, optimizer={"name": "sgd"})


def result(raw: bytes) -> CommandResult:
    return decode_result(raw)


def test_replicas_converge_and_a_retry_after_failover_applies_once(tmp_path: Path) -> None:
    async def scenario() -> None:
        cluster = Cluster(tmp_path)
        for node_id in (1, 2, 3):
            cluster.start(node_id)
        try:
            leader = await cluster.leader()
            setup: list[Operation] = [
                RegisterModel(SPEC),
                AddGroup(1, (GroupMember(1, "s1:1"),)),
                AssignShards("mlp", ((0, 1), (1, 1))),
                RegisterWorker("w0", "mlp", 60_000),
            ]
            for sequence, op in enumerate(setup, start=1):
                assert result(await cluster.propose(leader, op, "admin", sequence)).ok
            # Concurrent clients, one command in flight each; the runtime batches them.
            writes = [
                cluster.propose(leader, Put(f"jobs/{client}/step", b"1"), f"client-{client}", 1)
                for client in range(8)
            ]
            assert all(result(raw).ok for raw in await asyncio.gather(*writes))
            create = CompareAndSet("counter", b"1", expect_absent=True)
            assert result(await cluster.propose(leader, create, "c", 1)).ok
            increment = CompareAndSet("counter", b"2", expected_value=b"1")
            first = await cluster.propose(leader, increment, "c", 2)
            assert result(first).ok
            image = await cluster.converged()
            revision = coordinator(leader).revision

            old_leader = leader.node_id
            await cluster.stop(old_leader)
            leader = await cluster.leader()
            assert leader.node_id != old_leader
            # The client never heard back (say) and retries the increment at the new leader.
            retried = await cluster.propose(leader, increment, "c", 2)
            assert retried == first
            assert coordinator(leader).revision == revision
            kv = coordinator(leader).get("counter")
            assert kv is not None and kv.value == b"2"
            stale = await cluster.propose(leader, Put("counter", b"0"), "c", 1)
            assert result(stale).code == ErrorCode.STALE_SEQUENCE
            after = await cluster.converged()
            assert after != image  # the clock and the session moved on; the keys did not
            machine = coordinator(leader)
            assert machine.revision == revision
            assert [kv.key for kv in machine.prefix("jobs/").kvs] == [f"jobs/{c}/step" for c in range(8)]
            assert machine.config().shard_maps["mlp"] == (1, 1)
        finally:
            await cluster.stop_all()

    run(scenario)


def test_a_lagging_replica_catches_up_through_a_snapshot_of_the_coordinator(tmp_path: Path) -> None:
    async def scenario() -> None:
        cluster = Cluster(tmp_path, snapshot_every_entries=20)
        for node_id in (1, 2, 3):
            cluster.start(node_id)
        try:
            leader = await cluster.leader()
            follower = next(node_id for node_id in cluster.nodes if node_id != leader.node_id)
            await cluster.stop(follower)
            for sequence in range(1, 61):
                put = Put(f"k/{sequence % 7}", b"v%d" % sequence)
                assert result(await cluster.propose(leader, put, "writer", sequence)).ok
            assert leader.counters["snapshots_taken"] >= 1
            restarted = cluster.start(follower)
            image = await cluster.converged()
            assert restarted.counters["snapshots_installed"] >= 1
            assert coordinator(restarted).snapshot() == image
            assert coordinator(restarted).last_sequence("writer") == 60
            # The restored replica kept the session: as leader, it deduplicates a retry.
            leader.transfer_leadership(follower)
            await wait_for(lambda: True if cluster.nodes[follower].core.role == Role.LEADER else None)
            new_leader = cluster.nodes[follower]
            duplicate = await cluster.propose(new_leader, Put("k/4", b"v60"), "writer", 60)
            assert result(duplicate).revision == 60
            await cluster.converged()
            assert all(coordinator(node).revision == 60 for node in cluster.nodes.values())
        finally:
            await cluster.stop_all()

    run(scenario)
