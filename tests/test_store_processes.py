"""``paramstore store`` as real processes: three replicas of one group elect a leader, serve
install / push / pull through it, and stop cleanly on SIGTERM; bad flags exit 2."""

from __future__ import annotations

import asyncio
import functools
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import numpy as np

from paramstore.commands._up import free_ports
from paramstore.shard import encode_tensor
from proto import shard_pb2 as shard_pb
from proto import store_service_pb2 as api
from proto import store_service_pb2_grpc as api_grpc
from tests.cluster_util import wait_for

REPO_ROOT = Path(__file__).resolve().parent.parent
DEADLINE_S = 60.0


def store_command(group: int, node_id: int, peers: dict[int, str], data_dir: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "paramstore.cli",
        "store",
        "--group",
        str(group),
        "--id",
        str(node_id),
        "--listen",
        peers[node_id],
        "--peers",
        ",".join(f"{i}={a}" for i, a in peers.items()),
        "--data-dir",
        str(data_dir),
        "--fsync",
        "never",
    ]


async def leader_address(addresses: list[str], processes: list[subprocess.Popen[bytes]]) -> str:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        for address in addresses:
            try:
                async with grpc.aio.insecure_channel(address) as channel:
                    status = await api_grpc.StoreStub(channel).Status(api.StatusRequest(), timeout=1.0)
            except grpc.aio.AioRpcError:
                continue
            if status.role == "leader":
                return address
        assert all(p.poll() is None for p in processes), "a store process exited"
        await asyncio.sleep(0.05)
    raise AssertionError("no store leader elected in time")


async def wait_all_serving(addresses: list[str], processes: list[subprocess.Popen[bytes]]) -> None:
    """Until every node answers Status: a leader needs only two, and a SIGTERM that reaches a
    process still starting up (no handler yet) kills it instead of stopping it."""

    async def serving(address: str) -> bool:
        assert all(p.poll() is None for p in processes), "a store process exited"
        try:
            async with grpc.aio.insecure_channel(address) as channel:
                await api_grpc.StoreStub(channel).Status(api.StatusRequest(), timeout=1.0)
        except grpc.aio.AioRpcError:
            return False
        return True

    for address in addresses:
        await wait_for(functools.partial(serving, address), f"{address} serving", timeout_s=DEADLINE_S)


async def test_three_store_processes_serve_push_and_pull(tmp_path: Path) -> None:
    ports = free_ports(3)
    peers = {i: f"127.0.0.1:{ports[i - 1]}" for i in (1, 2, 3)}
    logs = [open(tmp_path / f"store-{i}.log", "wb") for i in peers]  # noqa: SIM115
    processes = [
        subprocess.Popen(
            store_command(1, i, peers, tmp_path / f"s{i}"),
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        for i, log in zip(peers, logs, strict=True)
    ]
    try:
        address = await leader_address(list(peers.values()), processes)
        async with grpc.aio.insecure_channel(address) as channel:
            stub = api_grpc.StoreStub(channel)
            install = shard_pb.InstallKeys(
                model="m",
                optimizer_json='{"name": "sgd", "learning_rate": 1.0}',
                non_finite_policy=shard_pb.NON_FINITE_POLICY_REJECT,
                num_shards=1,
                keys=[shard_pb.KeyTensor(key="w", tensor=encode_tensor(np.zeros(4, np.float32)))],
            )
            await stub.Install(api.InstallRequest(install=install), timeout=10)
            grads = encode_tensor(np.array([1, 2, 3, 4], np.float32))
            piece = api.TensorPiece(key="w", dtype=grads.dtype, data=grads.data)

            async def stream():  # type: ignore[no-untyped-def]
                yield api.PushRequest(model="m", client_id="c", sequence=1, gradients=[piece])

            response = await stub.Push(stream(), timeout=10)
            assert response.result.step == 1
            pulled = [m async for m in stub.Pull(api.PullRequest(model="m"), timeout=10)]
        weights = np.frombuffer(b"".join(p.data for m in pulled for p in m.weights), "<f4")
        assert weights.tolist() == [-1.0, -2.0, -3.0, -4.0]
        await wait_all_serving(list(peers.values()), processes)
        for process in processes:
            process.send_signal(signal.SIGTERM)
        assert [p.wait(timeout=DEADLINE_S) for p in processes] == [0, 0, 0]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=DEADLINE_S)
        for log in logs:
            log.close()


def test_bad_store_flags_exit_2(tmp_path: Path) -> None:
    command = store_command(0, 1, {1: "127.0.0.1:1"}, tmp_path / "s")
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert "--group must be >= 1" in result.stderr
    assert not (tmp_path / "s").exists()


async def test_local_cluster_runs_store_groups_registered_in_the_coordinator(tmp_path: Path) -> None:
    from paramstore.client import CoordinatorClient
    from paramstore.commands._up import LocalCluster

    cluster = LocalCluster(tmp_path / "c", coordinators=1, groups=2, replicas=3, fsync="never")
    try:
        cluster.start()
        await cluster.wait_for_leader(DEADLINE_S)
        await cluster.register_groups()
        await cluster.register_groups()  # again (a resumed cluster): nothing to add
        leaders = await cluster.wait_for_store_leaders(DEADLINE_S)
        assert sorted(leaders) == [1, 2]
        async with CoordinatorClient(cluster.client_addresses) as client:
            config = await client.config()
        assert {g.group_id: [m.address for m in g.members] for g in config.groups} == {
            group: list(members.values()) for group, members in cluster.store_addresses.items()
        }
        described = cluster.describe()["processes"]
        stores = [p for p in described if p["role"] == "store"]
        assert sorted((p["group"], p["id"]) for p in stores) == [(g, i) for g in (1, 2) for i in (1, 2, 3)]
        assert len({p["pid"] for p in stores}) == 6
        assert [p["id"] for p in described if p["role"] == "coordinator"] == [1]
    finally:
        cluster.stop()
    every = [*cluster.processes.values(), *cluster.store_processes.values()]
    assert all(p.returncode == 0 for p in every), [p.returncode for p in every]
