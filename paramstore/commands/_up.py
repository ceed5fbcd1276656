"""``paramstore up``: a local cluster of daemon processes on 127.0.0.1, until interrupted.

It starts the coordinators (``--coordinators N``, default 3) with data directories and
logs under ``--dir``, waits until they have elected a leader, writes ``DIR/cluster.json``
(every process: role, id, address, pid, data dir, log file), and then waits. On SIGINT or
SIGTERM it stops every process it started (SIGTERM, then SIGKILL after a grace period)
and removes nothing: running ``up`` again on the same directory resumes the same cluster.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from paramstore.client import CoordinatorClient
from paramstore.commands._common import fail

__all__ = ["LocalCluster", "add_parser", "free_ports", "run"]

CLUSTER_FILE = "cluster.json"
_STOP_GRACE_S = 10.0
_READY_TIMEOUT_S = 60.0


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("up", help="run a local cluster on 127.0.0.1 until interrupted")
    parser.add_argument("--dir", type=Path, required=True, help="directory for data, logs and cluster.json")
    parser.add_argument("--coordinators", type=int, default=3, help="coordinator nodes (default 3)")
    parser.add_argument("--base-port", type=int, default=0, help="first port (default: free ports)")
    parser.add_argument("--fsync", choices=["always", "batch", "never"], default="batch")
    parser.add_argument("--cluster-id", default="paramstore-local")


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports free on 127.0.0.1 right now (bound once, then released)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


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
    ) -> None:
        if coordinators < 1:
            raise ValueError(f"coordinators must be >= 1, got {coordinators}")
        self.directory = directory
        self.fsync = fsync
        self.cluster_id = cluster_id
        self.extra_env = extra_env or {}
        # Flags appended to every coordinator's command line (``--snapshot-entries 50``, say).
        self.extra_args = list(extra_args or [])
        ports = ports or free_ports(coordinators)
        self.addresses = {
            node_id: f"127.0.0.1:{ports[node_id - 1]}" for node_id in range(1, coordinators + 1)
        }
        self.processes: dict[int, subprocess.Popen[bytes]] = {}

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
            *self.extra_args,
        ]

    def start_node(self, node_id: int, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start (or restart) one coordinator process; its output goes to its log file."""
        old = self.processes.get(node_id)
        if old is not None and old.poll() is None:
            raise RuntimeError(f"coordinator {node_id} is still running (pid {old.pid})")
        self.log_path(node_id).parent.mkdir(parents=True, exist_ok=True)
        full_env = {**os.environ, **self.extra_env, **(env or {})}
        with open(self.log_path(node_id), "ab") as log_file:
            process = subprocess.Popen(
                self.command(node_id), stdout=log_file, stderr=subprocess.STDOUT, env=full_env
            )
        self.processes[node_id] = process
        return process

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        for node_id in self.addresses:
            self.start_node(node_id)

    def kill(self, node_id: int, sig: int = signal.SIGKILL) -> None:
        """Signal one of our processes (by its pid) and reap it if it was a kill."""
        process = self.processes[node_id]
        if process.poll() is None:
            process.send_signal(sig)
            if sig in (signal.SIGKILL, signal.SIGTERM):
                process.wait(timeout=_STOP_GRACE_S)

    def stop(self) -> None:
        """SIGTERM every live process, then SIGKILL those still there after the grace period."""
        live = [p for p in self.processes.values() if p.poll() is None]
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
            ],
        }

    def write_cluster_file(self) -> Path:
        path = self.directory / CLUSTER_FILE
        temporary = path.with_suffix(".json.tmp")
        temporary.write_text(json.dumps(self.describe(), indent=2) + "\n")
        os.replace(temporary, path)
        return path


def _ports_from(args: argparse.Namespace, count: int) -> list[int] | None:
    if args.base_port == 0:
        return None
    if not 1024 <= args.base_port <= 65535 - count:
        raise ValueError(f"--base-port must be in [1024, {65535 - count}], got {args.base_port}")
    return list(range(args.base_port, args.base_port + count))


def _previous_ports(directory: Path) -> list[int] | None:
    """The ports of an earlier run in this directory, so that its data dirs keep their peers."""
    path = directory / CLUSTER_FILE
    if not path.exists():
        return None
    try:
        described = json.loads(path.read_text())
        return [
            int(p["address"].rsplit(":", 1)[1]) for p in described["processes"] if p["role"] == "coordinator"
        ]
    except (ValueError, KeyError, TypeError):
        return None


def run(args: argparse.Namespace) -> int:
    if args.coordinators not in (1, 3, 5, 7):
        return fail("up", f"--coordinators must be 1, 3, 5 or 7, got {args.coordinators}", 2)
    try:
        ports = _ports_from(args, args.coordinators)
    except ValueError as exc:
        return fail("up", str(exc), 2)
    if ports is None:
        previous = _previous_ports(args.dir)
        if previous is not None and len(previous) == args.coordinators:
            ports = previous
    cluster = LocalCluster(
        args.dir, coordinators=args.coordinators, ports=ports, fsync=args.fsync, cluster_id=args.cluster_id
    )
    stop = asyncio.Event()

    async def main() -> int:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        cluster.start()
        try:
            leader = await cluster.wait_for_leader()
        except (TimeoutError, RuntimeError) as exc:
            return fail("up", str(exc))
        path = cluster.write_cluster_file()
        print(f"cluster {cluster.cluster_id!r} up: {len(cluster.addresses)} coordinators, leader {leader}")
        for node_id, address in cluster.addresses.items():
            print(f"  coordinator {node_id}  {address}  pid {cluster.processes[node_id].pid}")
        print(f"wrote {path}; Ctrl-C stops the cluster", flush=True)
        await stop.wait()
        return 0

    try:
        return asyncio.run(main())
    finally:
        cluster.stop()
        print("cluster stopped", flush=True)
