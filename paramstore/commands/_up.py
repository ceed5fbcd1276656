"""``paramstore up``: a local cluster of daemon processes on 127.0.0.1, until interrupted.

It starts the coordinators (``--coordinators N``, default 3) and the store groups
(``--groups G`` of ``--replicas R`` store nodes each, default 2 of 3) with data directories
and logs under ``--dir``, waits until the coordinators have elected a leader, registers each
store group in the coordinator (``AddGroup``), waits until every group has a leader, writes
``DIR/cluster.json`` (every process: role, id, group of a store, address, pid, data dir, log
file), and then waits. On SIGINT or
SIGTERM it stops every process it started (SIGTERM, then SIGKILL after a grace period)
and removes nothing: running ``up`` again on the same directory resumes the same cluster.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import grpc

from paramstore.client import ClientError, CoordinatorClient
from paramstore.commands._common import fail
from paramstore.coordinator import AddGroup, GroupMember
from proto import store_service_pb2 as store_api
from proto import store_service_pb2_grpc as store_grpc

__all__ = ["LocalCluster", "add_parser", "free_ports", "run"]

CLUSTER_FILE = "cluster.json"
_STOP_GRACE_S = 10.0
_READY_TIMEOUT_S = 60.0


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("up", help="run a local cluster on 127.0.0.1 until interrupted")
    parser.add_argument("--dir", type=Path, required=True, help="directory for data, logs and cluster.json")
    parser.add_argument("--coordinators", type=int, default=3, help="coordinator nodes (default 3)")
    parser.add_argument("--groups", type=int, default=2, help="store groups (default 2)")
    parser.add_argument("--replicas", type=int, default=3, help="store nodes per group (default 3)")
    parser.add_argument("--base-port", type=int, default=0, help="first port (default: free ports)")
    parser.add_argument("--fsync", choices=["always", "batch", "never"], default="batch")
    parser.add_argument("--cluster-id", default="paramstore-local")


def free_ports(count: int, exclude: Iterable[int] = ()) -> list[int]:
    """``count`` distinct ports free on 127.0.0.1 right now, below the kernel's ephemeral
    range, none of them in ``exclude``. Why below: a port from the ephemeral range (what
    binding port 0 gives) can be taken as the local port of some outgoing connection while
    its daemon is down (killed by a test, say), and the restarted daemon then cannot listen
    on it; outgoing connections never use ports outside that range. Why ``exclude``: a port
    already handed to a daemon that is not listening yet (or is down) still looks free, and
    two daemons given one port make the second fail to start."""
    low, high = _PORTS_LOW, _ephemeral_start() - 1
    taken = set(exclude)
    rng = random.Random()
    ports: list[int] = []
    for _ in range(_PORT_TRIES_MAX):
        if len(ports) == count:
            return ports
        port = rng.randint(low, high)
        if port in ports or port in taken:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports.append(port)
    raise RuntimeError(f"found only {len(ports)} of {count} free ports in {low}-{high}")


_PORTS_LOW = 20_000
_PORT_TRIES_MAX = 10_000


def _ephemeral_start() -> int:
    try:
        start = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        start = 32_768
    return max(start, _PORTS_LOW + 1_000)


class LocalCluster:
    """The processes of one local cluster; used by ``up`` and by tests and benchmarks."""

    def __init__(
        self,
        directory: Path,
        *,
        coordinators: int = 3,
        ports: list[int] | None = None,
        fsync: str = "batch",
        cluster_id: str = "paramstore-local",
        extra_env: dict[str, str] | None = None,
        extra_args: list[str] | None = None,
        groups: int = 0,
        replicas: int = 3,
        store_ports: list[int] | None = None,
    ) -> None:
        if coordinators < 1:
            raise ValueError(f"coordinators must be >= 1, got {coordinators}")
        if groups < 0 or replicas < 1:
            raise ValueError(f"groups must be >= 0 and replicas >= 1, got {groups} and {replicas}")
        self.directory = directory
        self.fsync = fsync
        self.cluster_id = cluster_id
        self.extra_env = extra_env or {}
        # Flags appended to every coordinator's command line (``--snapshot-entries 50``, say).
        self.extra_args = list(extra_args or [])
        # Ports are picked in one go, each call excluding those already handed out: none of
        # these daemons listens yet, so a second pick could return a port of the first.
        if not ports:
            ports = free_ports(coordinators, exclude=store_ports or ())
        self.addresses = {
            node_id: f"127.0.0.1:{ports[node_id - 1]}" for node_id in range(1, coordinators + 1)
        }
        self.processes: dict[int, subprocess.Popen[bytes]] = {}
        # Store groups: group id -> node id -> address (node ids are per group).
        if not store_ports:
            store_ports = free_ports(groups * replicas, exclude=ports) if groups else []
        if len(store_ports) != groups * replicas:
            raise ValueError(f"{len(store_ports)} store ports for {groups} groups of {replicas}")
        self.store_addresses: dict[int, dict[int, str]] = {
            group: {
                node_id: f"127.0.0.1:{store_ports[(group - 1) * replicas + node_id - 1]}"
                for node_id in range(1, replicas + 1)
            }
            for group in range(1, groups + 1)
        }
        self.store_processes: dict[tuple[int, int], subprocess.Popen[bytes]] = {}

    def _assigned_ports(self) -> set[int]:
        """Every port handed to one of this cluster's daemons, whether it listens now or not."""
        addresses = [*self.addresses.values()]
        addresses += [a for members in self.store_addresses.values() for a in members.values()]
        return {int(address.rpartition(":")[2]) for address in addresses}

    @property
    def peers_flag(self) -> str:
        return ",".join(f"{node_id}={address}" for node_id, address in self.addresses.items())

    @property
    def client_addresses(self) -> list[str]:
        return list(self.addresses.values())

    def data_dir(self, node_id: int) -> Path:
        return self.directory / f"coordinator-{node_id}"

    def log_path(self, node_id: int) -> Path:
        return self.directory / "logs" / f"coordinator-{node_id}.log"

    def command(self, node_id: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "paramstore.cli",
            "coordinator",
            "--id",
            str(node_id),
            "--listen",
            self.addresses[node_id],
            "--peers",
            self.peers_flag,
            "--data-dir",
            str(self.data_dir(node_id)),
            "--cluster-id",
            self.cluster_id,
            "--fsync",
            self.fsync,
            "--fault-injection",  # a local cluster is there to be attacked (paramstore chaos)
            *self.extra_args,
        ]

    def start_node(self, node_id: int, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start (or restart) one coordinator process; its output goes to its log file."""
        old = self.processes.get(node_id)
        if old is not None and old.poll() is None:
            raise RuntimeError(f"coordinator {node_id} is still running (pid {old.pid})")
        process = self._spawn(self.command(node_id), self.log_path(node_id), env)
        self.processes[node_id] = process
        return process

    def _spawn(
        self, command: list[str], log_path: Path, env: dict[str, str] | None
    ) -> subprocess.Popen[bytes]:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        full_env = {**os.environ, **self.extra_env, **(env or {})}
        with open(log_path, "ab") as log_file:
            return subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env=full_env)

    # ---- store groups ---------------------------------------------------------------------------

    def store_data_dir(self, group: int, node_id: int) -> Path:
        return self.directory / f"store-{group}-{node_id}"

    def store_log_path(self, group: int, node_id: int) -> Path:
        return self.directory / "logs" / f"store-{group}-{node_id}.log"

    def store_command(self, group: int, node_id: int) -> list[str]:
        members = self.store_addresses[group]
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
            members[node_id],
            "--peers",
            ",".join(f"{i}={address}" for i, address in members.items()),
            "--data-dir",
            str(self.store_data_dir(group, node_id)),
            "--cluster-id",
            self.cluster_id,
            "--fsync",
            self.fsync,
            "--fault-injection",
            "--coordinators",
            ",".join(self.client_addresses),
        ]

    def start_store(
        self, group: int, node_id: int, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start (or restart) one store process; its output goes to its log file."""
        old = self.store_processes.get((group, node_id))
        if old is not None and old.poll() is None:
            raise RuntimeError(f"store {group}-{node_id} is still running (pid {old.pid})")
        process = self._spawn(self.store_command(group, node_id), self.store_log_path(group, node_id), env)
        self.store_processes[(group, node_id)] = process
        return process

    def add_store_group(self, replicas: int = 3) -> int:
        """Start the processes of one more store group (next free id) on fresh ports; returns
        its id. It serves nothing until listed (``paramstore cluster add-group``)."""
        if replicas < 1:
            raise ValueError(f"replicas must be >= 1, got {replicas}")
        group = max(self.store_addresses, default=0) + 1
        ports = free_ports(replicas, exclude=self._assigned_ports())
        self.store_addresses[group] = {i: f"127.0.0.1:{ports[i - 1]}" for i in range(1, replicas + 1)}
        for node_id in self.store_addresses[group]:
            self.start_store(group, node_id)
        return group

    async def register_groups(self, timeout_s: float = _READY_TIMEOUT_S) -> None:
        """Add every store group to the coordinator's config (those not there yet)."""
        async with CoordinatorClient(self.client_addresses, deadline_s=timeout_s) as client:
            known = {group.group_id for group in (await client.config()).groups}
            for group, members in self.store_addresses.items():
                if group in known:
                    continue
                result = await client.execute(
                    AddGroup(group, tuple(GroupMember(i, address) for i, address in members.items()))
                )
                if not result.ok:
                    raise RuntimeError(f"store group {group} not registered: {result.message}")

    async def wait_for_store_leaders(self, timeout_s: float = _READY_TIMEOUT_S) -> dict[int, int]:
        """Until every store group has a leader; group -> leader id (raises TimeoutError)."""
        deadline = time.monotonic() + timeout_s
        leaders: dict[int, int] = {}
        while time.monotonic() < deadline:
            for group, members in self.store_addresses.items():
                if group not in leaders:
                    leader = await _store_leader(list(members.values()))
                    if leader:
                        leaders[group] = leader
            if len(leaders) == len(self.store_addresses):
                return leaders
            for (group, node_id), process in self.store_processes.items():
                if process.poll() is not None and process.returncode not in (0, -signal.SIGKILL):
                    log_text = self.store_log_path(group, node_id).read_text(errors="replace")
                    text = log_text.strip().splitlines()
                    last = text[-1] if text else "(no output)"
                    raise RuntimeError(f"store {group}-{node_id} exited with {process.returncode}: {last}")
            await asyncio.sleep(0.05)
        missing = sorted(set(self.store_addresses) - set(leaders))
        raise TimeoutError(f"store groups {missing} elected no leader within {timeout_s:.0f} s")

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        for node_id in self.addresses:
            self.start_node(node_id)
        for group, members in self.store_addresses.items():
            for node_id in members:
                self.start_store(group, node_id)

    def kill(self, node_id: int, sig: int = signal.SIGKILL) -> None:
        """Signal one of our processes (by its pid) and reap it if it was a kill."""
        process = self.processes[node_id]
        if process.poll() is None:
            process.send_signal(sig)
            if sig in (signal.SIGKILL, signal.SIGTERM):
                process.wait(timeout=_STOP_GRACE_S)

    def stop(self) -> None:
        """SIGTERM every live process, then SIGKILL those still there after the grace period."""
        every = [*self.processes.values(), *self.store_processes.values()]
        live = [p for p in every if p.poll() is None]
        for process in live:
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + _STOP_GRACE_S
        for process in live:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=_STOP_GRACE_S)

    async def wait_for_leader(self, timeout_s: float = _READY_TIMEOUT_S) -> int:
        """Until some node says it leads; returns its id (raises TimeoutError)."""
        deadline = time.monotonic() + timeout_s
        async with CoordinatorClient(self.client_addresses) as client:
            while time.monotonic() < deadline:
                for status in await client.status_all(1.0):
                    if status.response is not None and status.response.role == "leader":
                        return int(status.response.node_id)
                for node_id, process in self.processes.items():
                    if process.poll() is not None and process.returncode not in (0, -signal.SIGKILL):
                        text = self.log_path(node_id).read_text(errors="replace").strip().splitlines()
                        last = text[-1] if text else "(no output)"
                        raise RuntimeError(f"coordinator {node_id} exited with {process.returncode}: {last}")
                await asyncio.sleep(0.05)
        raise TimeoutError(f"no coordinator leader elected within {timeout_s:.0f} s")

    def describe(self) -> dict[str, Any]:
        return {
            "cluster_id": self.cluster_id,
            "processes": [
                {
                    "role": "coordinator",
                    "id": node_id,
                    "address": address,
                    "pid": self.processes[node_id].pid if node_id in self.processes else None,
                    "data_dir": str(self.data_dir(node_id)),
                    "log": str(self.log_path(node_id)),
                }
                for node_id, address in self.addresses.items()
            ]
            + [
                {
                    "role": "store",
                    "group": group,
                    "id": node_id,
                    "address": address,
                    "pid": process.pid if (process := self.store_processes.get((group, node_id))) else None,
                    "data_dir": str(self.store_data_dir(group, node_id)),
                    "log": str(self.store_log_path(group, node_id)),
                }
                for group, members in self.store_addresses.items()
                for node_id, address in members.items()
            ],
        }

    def write_cluster_file(self) -> Path:
        path = self.directory / CLUSTER_FILE
        temporary = path.with_suffix(".json.tmp")
        temporary.write_text(json.dumps(self.describe(), indent=2) + "\n")
        os.replace(temporary, path)
        return path


async def _store_leader(addresses: list[str]) -> int:
    """The id of the node that says it leads this group, 0 if none does (yet)."""
    for address in addresses:
        try:
            async with grpc.aio.insecure_channel(address) as channel:
                status = await store_grpc.StoreStub(channel).Status(store_api.StatusRequest(), timeout=1.0)
        except grpc.aio.AioRpcError:
            continue
        if status.role == "leader":
            return int(status.node_id)
    return 0


def _ports_from(args: argparse.Namespace, count: int) -> list[int] | None:
    if args.base_port == 0:
        return None
    if not 1024 <= args.base_port <= 65535 - count:
        raise ValueError(f"--base-port must be in [1024, {65535 - count}], got {args.base_port}")
    return list(range(args.base_port, args.base_port + count))


def _previous_ports(directory: Path, role: str = "coordinator") -> list[int] | None:
    """The ports of an earlier run in this directory, so that its data dirs keep their peers
    (stores in group, then node order)."""
    path = directory / CLUSTER_FILE
    if not path.exists():
        return None
    try:
        described = json.loads(path.read_text())
        entries = [p for p in described["processes"] if p["role"] == role]
        entries.sort(key=lambda p: (int(p.get("group", 0)), int(p["id"])))
        return [int(p["address"].rsplit(":", 1)[1]) for p in entries]
    except (ValueError, KeyError, TypeError):
        return None


def run(args: argparse.Namespace) -> int:
    if args.coordinators not in (1, 3, 5, 7):
        return fail("up", f"--coordinators must be 1, 3, 5 or 7, got {args.coordinators}", 2)
    if not 0 <= args.groups <= 64 or args.replicas not in (1, 3, 5, 7):
        return fail("up", "--groups must be 0 to 64 and --replicas 1, 3, 5 or 7", 2)
    stores = args.groups * args.replicas
    try:
        all_ports = _ports_from(args, args.coordinators + stores)
    except ValueError as exc:
        return fail("up", str(exc), 2)
    ports = None if all_ports is None else all_ports[: args.coordinators]
    store_ports = None if all_ports is None else all_ports[args.coordinators :]
    if ports is None:
        previous = _previous_ports(args.dir)
        if previous is not None and len(previous) == args.coordinators:
            ports = previous
        previous = _previous_ports(args.dir, "store")
        if previous is not None and len(previous) == stores:
            store_ports = previous
    cluster = LocalCluster(
        args.dir,
        coordinators=args.coordinators,
        ports=ports,
        fsync=args.fsync,
        cluster_id=args.cluster_id,
        groups=args.groups,
        replicas=args.replicas,
        store_ports=store_ports,
    )
    stop = asyncio.Event()

    async def main() -> int:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        cluster.start()
        try:
            leader = await cluster.wait_for_leader()
            await cluster.register_groups()
            store_leaders = await cluster.wait_for_store_leaders()
        except (TimeoutError, RuntimeError, ClientError) as exc:
            return fail("up", str(exc))
        path = cluster.write_cluster_file()
        print(f"cluster {cluster.cluster_id!r} up: {len(cluster.addresses)} coordinators, leader {leader}")
        for node_id, address in cluster.addresses.items():
            print(f"  coordinator {node_id}  {address}  pid {cluster.processes[node_id].pid}")
        for group, members in cluster.store_addresses.items():
            print(f"  store group {group}: {len(members)} nodes, leader {store_leaders[group]}")
            for node_id, address in members.items():
                pid = cluster.store_processes[(group, node_id)].pid
                print(f"    store {group}-{node_id}  {address}  pid {pid}")
        print(f"wrote {path}; Ctrl-C stops the cluster", flush=True)
        await stop.wait()
        return 0

    try:
        return asyncio.run(main())
    finally:
        cluster.stop()
        print("cluster stopped", flush=True)
