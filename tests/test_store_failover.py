"""Exactly-once pushes through a store leader's crash: several ``StoreClient``s push at once
while the leader of store group 1 is killed with SIGKILL; afterwards every acknowledged push
is in the weights exactly once, every push of unknown outcome at most once, and none that
was never sent. Then the killed node restarts and converges to the same weights.

Push ``p`` of client ``c`` is one-hot at element ``c * PUSHES_MAX + p`` of every leaf (SGD,
learning rate 1), so ``-weights`` of a leaf counts how many times its group applied each push.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from paramstore.client import PushFailedError, StoreClient, StoreRefusedError
from paramstore.commands._up import LocalCluster
from proto import store_service_pb2 as api
from proto import store_service_pb2_grpc as api_grpc
from tests.test_store_client import LEAVES, model_spec, start_cluster

CLIENTS = 4
PUSHES_MAX = 80
ELEMENTS = CLIENTS * PUSHES_MAX
PUSHES_BEFORE_KILL = 5  # per client
PUSHES_AFTER_KILL = 10  # per client, acknowledged by the killed node's group
CONVERGE_S = 20.0


def one_hot(slot: int) -> dict[str, np.ndarray]:
    grads = np.zeros(ELEMENTS, np.float32)
    grads[slot] = 1.0
    return {path: grads for path in LEAVES}


async def status(address: str) -> api.StatusResponse | None:
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            response: api.StatusResponse = await api_grpc.StoreStub(channel).Status(
                api.StatusRequest(), timeout=1.0
            )
            return response
    except grpc.aio.AioRpcError:
        return None


async def leader_of(cluster: LocalCluster, group: int) -> tuple[int, api.StatusResponse]:
    deadline = time.monotonic() + CONVERGE_S
    while time.monotonic() < deadline:
        for node_id, address in cluster.store_addresses[group].items():
            answer = await status(address)
            if answer is not None and answer.role == "leader":
                return node_id, answer
        await asyncio.sleep(0.05)
    raise AssertionError(f"store group {group} has no leader")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    cluster = start_cluster(tmp_path / "cluster")
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.mark.slow
async def test_pushes_survive_a_killed_store_leader_exactly_once(cluster: LocalCluster) -> None:
    group = 1
    clients = [
        StoreClient(cluster.client_addresses, client_id=f"w{c}", deadline_s=8.0, attempt_timeout_s=2.0)
        for c in range(CLIENTS)
    ]
    # (client, push) -> groups that acknowledged it / whose outcome is unknown.
    acked: dict[tuple[int, int], set[int]] = {}
    unknown: dict[tuple[int, int], set[int]] = {}
    killed = asyncio.Event()
    before_kill = [0] * CLIENTS
    after_kill = [0] * CLIENTS
    try:
        await clients[0].register_model(
            model_spec("f", ELEMENTS), {p: np.zeros(ELEMENTS, np.float32) for p in LEAVES}
        )
        route = await clients[0]._route("f")
        assert sorted(route.keys_by_group) == [1, 2]

        async def work(c: int) -> None:
            for p in range(PUSHES_MAX):
                if after_kill[c] >= PUSHES_AFTER_KILL:
                    return
                try:
                    results = await clients[c].push("f", one_hot(c * PUSHES_MAX + p))
                except PushFailedError as exc:
                    refused = [e for e in exc.errors.values() if isinstance(e, StoreRefusedError)]
                    assert not refused, refused
                    acked[(c, p)] = set(exc.acknowledged)
                    unknown[(c, p)] = exc.unknown_groups
                    continue
                acked[(c, p)] = set(results)
                if killed.is_set():
                    if group in results:
                        after_kill[c] += 1
                else:
                    before_kill[c] += 1

        async def kill() -> tuple[int, int]:
            deadline = time.monotonic() + CONVERGE_S
            while min(before_kill) < PUSHES_BEFORE_KILL:
                assert time.monotonic() < deadline, (
                    f"pushes before the kill never reached {PUSHES_BEFORE_KILL}"
                )
                await asyncio.sleep(0.01)
            node_id, answer = await leader_of(cluster, group)
            process = cluster.store_processes[(group, node_id)]
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=CONVERGE_S)
            killed.set()
            return node_id, int(answer.term)

        started = time.monotonic()
        (killed_node, old_term), *_ = await asyncio.gather(kill(), *(work(c) for c in range(CLIENTS)))
        workload_s = time.monotonic() - started
        assert min(after_kill) >= PUSHES_AFTER_KILL, (after_kill, workload_s)
        new_leader, answer = await leader_of(cluster, group)
        assert new_leader != killed_node and answer.term > old_term
        # Every client's next push to the group went to the dead leader first, then failed over.
        assert all(client.retries > 0 for client in clients), [client.retries for client in clients]
        weights = await clients[0].pull("f")
    finally:
        for client in clients:
            await client.close()

    group_of = {key: g for g, keys in route.keys_by_group.items() for key in keys}
    for path, values in weights.items():
        counts = -values
        g = group_of[path]  # one key per leaf: the key is the path
        for c in range(CLIENTS):
            for p in range(PUSHES_MAX):
                count = counts[c * PUSHES_MAX + p]
                if g in acked.get((c, p), set()):
                    assert count == 1.0, (path, c, p, count)
                elif g in unknown.get((c, p), set()):
                    assert count in (0.0, 1.0), (path, c, p, count)
                else:
                    assert count == 0.0, (path, c, p, count)  # never sent

    # The killed node comes back and converges to the same weights (and step).
    cluster.start_store(group, killed_node)
    address = cluster.store_addresses[group][killed_node]
    _, leader_status = await leader_of(cluster, group)
    step = next(m.step for m in leader_status.models if m.name == "f")
    deadline = time.monotonic() + CONVERGE_S
    while True:
        answer = await status(address)
        steps = {m.name: m.step for m in answer.models} if answer is not None else {}
        if steps.get("f") == step:
            break
        assert time.monotonic() < deadline, f"node {killed_node} did not catch up: {steps} vs {step}"
        await asyncio.sleep(0.05)
    keys = list(route.keys_by_group[group])
    async with grpc.aio.insecure_channel(address) as channel:
        pieces: dict[str, list[bytes]] = {}
        request = api.PullRequest(model="f", keys=keys, serializable=True)
        async for message in api_grpc.StoreStub(channel).Pull(request, timeout=CONVERGE_S):
            for piece in message.weights:
                pieces.setdefault(piece.key, []).append(piece.data)
    for key in keys:
        replica = np.frombuffer(b"".join(pieces[key]), "<f4")
        assert np.array_equal(replica, weights[key]), key
