"""The most a grpcio data plane can push through 3 replicas on this machine: no Raft, no disk.

The stream ceiling of ``../shared/peers`` (grpc_bench.py) moves each byte over one gRPC hop.
A replicated push moves it over three: client -> leader, leader -> follower 1, leader ->
follower 2, all on the same cores. This script measures that chain with nothing else in it,
so that paramstore's replicated push can be compared with what any Python grpcio design
that replicates 3 ways could do here:

* 4 processes on 127.0.0.1: a leader, two followers and one client (``--clients`` more);
* the client pushes a ``--push-mb`` MiB payload as 1 MiB chunks on one client-streaming
  call (the payload is allocated once and reused; each chunk is a fresh ``bytes``, as a
  client that slices an array must make);
* the leader forwards every chunk, as it arrives, on a long-lived stream to each follower;
  the followers answer every chunk with 8 bytes; the leader answers the push once
  ``--acks`` followers (default 2: all) have acknowledged all of its chunks;
* nothing is written to disk and nothing is parsed: identity serializers on every hop.

MB = 10^6 B of payload acknowledged to the client. Median [min-max] of ``--reps`` reps of
``--duration`` s each (at most ``--pushes-max`` pushes per rep), after one warm-up push.
Every process runs with ``MALLOC_MMAP_THRESHOLD_=1073741824 MALLOC_TRIM_THRESHOLD_=4294967296``
unless ``--malloc default`` (see ``../shared/peers/RESULTS.md`` on malloc); all are
stopped by PID at the end.

    .venv/bin/python benchmarks/replication_ceiling.py
    .venv/bin/python benchmarks/replication_ceiling.py --acks 1 --clients 4
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import grpc

_CHUNK = 1 << 20
_OPTIONS = [
    ("grpc.max_send_message_length", 4 * _CHUNK),
    ("grpc.max_receive_message_length", 4 * _CHUNK),
]
_READY_TIMEOUT_S = 30.0
_PUSH_TIMEOUT_S = 60.0
MALLOC_TUNED = {"MALLOC_MMAP_THRESHOLD_": "1073741824", "MALLOC_TRIM_THRESHOLD_": "4294967296"}


def _identity(data: bytes) -> bytes:
    return data


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


async def _serve(port: int, service: str, method: str, handler: grpc.RpcMethodHandler) -> None:
    """Serve one raw-bytes method on 127.0.0.1:``port`` until the process is stopped."""
    server = grpc.aio.server(options=_OPTIONS)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, {method: handler}),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


# ---- follower ---------------------------------------------------------------------------


async def _follower(port: int) -> None:
    async def take(request_iterator: object, context: grpc.aio.ServicerContext) -> None:
        while True:
            chunk = await context.read()
            if chunk is grpc.aio.EOF:
                return
            await context.write(b"ack-0000")

    await _serve(
        port, "ceiling.Follower", "Take", grpc.stream_stream_rpc_method_handler(take, _identity, _identity)
    )


# ---- leader -----------------------------------------------------------------------------


class _FollowerLink:
    """One long-lived stream to a follower; counts the chunks it has acknowledged."""

    def __init__(self, address: str) -> None:
        self.channel = grpc.aio.insecure_channel(address, options=_OPTIONS)
        self.call = self.channel.stream_stream("/ceiling.Follower/Take", _identity, _identity)()
        self.sent = 0
        self.acked = 0
        self.changed = asyncio.Event()
        self.lock = asyncio.Lock()
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while True:
            ack = await self.call.read()
            if ack is grpc.aio.EOF:
                return
            self.acked += 1
            self.changed.set()

    async def send(self, chunk: bytes) -> int:
        async with self.lock:
            await self.call.write(chunk)
            self.sent += 1
            return self.sent


async def _leader(port: int, followers: list[str], acks: int) -> None:
    links = [_FollowerLink(address) for address in followers]

    async def push(request_iterator: object, context: grpc.aio.ServicerContext) -> bytes:
        marks = [0] * len(links)
        while True:
            chunk = await context.read()
            if chunk is grpc.aio.EOF:
                break
            marks = list(await asyncio.gather(*(link.send(chunk) for link in links)))
        deadline = time.monotonic() + _PUSH_TIMEOUT_S
        while sum(link.acked >= mark for link, mark in zip(links, marks, strict=True)) < acks:
            if time.monotonic() > deadline:
                await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "followers did not acknowledge")
            for link in links:
                link.changed.clear()
            waits = [asyncio.create_task(link.changed.wait()) for link in links]
            try:
                await asyncio.wait(waits, timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for wait in waits:
                    wait.cancel()
        return b"ok"

    await _serve(
        port, "ceiling.Leader", "Push", grpc.stream_unary_rpc_method_handler(push, _identity, _identity)
    )


# ---- client -----------------------------------------------------------------------------


async def _client(address: str, push_mb: int, duration_s: float, pushes_max: int, start_at: float) -> None:
    payload = memoryview(bytearray(os.urandom(_CHUNK)) * push_mb)
    async with grpc.aio.insecure_channel(address, options=_OPTIONS) as channel:
        await asyncio.wait_for(channel.channel_ready(), _READY_TIMEOUT_S)
        push = channel.stream_unary("/ceiling.Leader/Push", _identity, _identity)

        async def one() -> None:
            call = push(timeout=_PUSH_TIMEOUT_S)
            for offset in range(0, len(payload), _CHUNK):
                await call.write(bytes(payload[offset : offset + _CHUNK]))
            await call.done_writing()
            await call

        await one()  # warm-up, unreported
        await asyncio.sleep(max(0.0, start_at - time.time()))
        began = time.perf_counter()
        cpu_began = time.process_time()
        pushes = 0
        while pushes < pushes_max and time.perf_counter() - began < duration_s:
            await one()
            pushes += 1
        elapsed = time.perf_counter() - began
        cpu_s = time.process_time() - cpu_began
    acked = pushes * len(payload)
    print(f"RESULT {acked / elapsed / 1e6:.1f} {acked} {cpu_s:.4f}", flush=True)


# ---- parent -----------------------------------------------------------------------------


def _spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), *args], env=env, stdout=subprocess.PIPE, text=True
    )


def _stop(processes: list[subprocess.Popen[str]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _wait_listening(port: int) -> None:
    deadline = time.monotonic() + _READY_TIMEOUT_S
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {_READY_TIMEOUT_S:.0f} s")


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a live child, from ``/proc`` (0 where there is none)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class RepResult:
    """One rep: MB/s acknowledged to the clients, and the CPU of every process per MB."""

    mb_per_s: float
    cpu_ms_per_mb: float


def measure_rep(args: argparse.Namespace, env: dict[str, str]) -> RepResult:
    leader_port, *follower_ports = _free_ports(3)
    servers: list[subprocess.Popen[str]] = []
    clients: list[subprocess.Popen[str]] = []
    try:
        for port in follower_ports:
            servers.append(_spawn(["--role", "follower", "--port", str(port)], env))
        for port in follower_ports:
            _wait_listening(port)
        followers = ",".join(f"127.0.0.1:{port}" for port in follower_ports)
        servers.append(
            _spawn(
                [
                    "--role",
                    "leader",
                    "--port",
                    str(leader_port),
                    "--followers",
                    followers,
                    "--acks",
                    str(args.acks),
                ],
                env,
            )
        )
        _wait_listening(leader_port)
        start_at = time.time() + 2.0 + 0.5 * args.clients
        for _ in range(args.clients):
            clients.append(
                _spawn(
                    [
                        "--role", "client", "--port", str(leader_port), "--push-mb", str(args.push_mb),
                        "--duration", str(args.duration), "--pushes-max", str(args.pushes_max),
                        "--start-at", str(start_at),
                    ],
                    env,
                )
            )  # fmt: skip
        # The servers' CPU over the clients' timed window: from its start to the last answer
        # (the window starts at start_at; the clients measure their own CPU over it).
        time.sleep(max(0.0, start_at - time.time()))
        servers_before = sum(_cpu_s(server.pid) for server in servers)
        total = 0.0
        acked = 0
        cpu = 0.0
        for client in clients:
            out, _ = client.communicate(timeout=args.duration + _PUSH_TIMEOUT_S * 2)
            results = [line.split()[1:] for line in out.splitlines() if line.startswith("RESULT ")]
            if client.returncode != 0 or not results:
                raise RuntimeError(f"a client failed (exit {client.returncode})")
            total += float(results[0][0])
            acked += int(results[0][1])
            cpu += float(results[0][2])
        cpu += sum(_cpu_s(server.pid) for server in servers) - servers_before
        return RepResult(total, cpu * 1000.0 / (acked / 1e6) if acked else 0.0)
    finally:
        _stop(clients + servers)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--role", choices=("parent", "leader", "follower", "client"), default="parent")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--followers", default="")
    parser.add_argument("--acks", type=int, default=2, help="followers a push waits for (1 or 2; default 2)")
    parser.add_argument("--clients", type=int, default=1, help="client processes (default 1)")
    parser.add_argument("--push-mb", type=int, default=64, help="MiB per push (default 64)")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per rep (default 3)")
    parser.add_argument(
        "--pushes-max", type=int, default=1000, help="pushes per client and rep (default 1000)"
    )
    parser.add_argument("--reps", type=int, default=3, help="repetitions (default 3)")
    parser.add_argument("--malloc", choices=("tuned", "default"), default="tuned")
    parser.add_argument("--start-at", type=float, default=0.0)
    args = parser.parse_args()
    if args.role == "follower":
        asyncio.run(_follower(args.port))
        return 0
    if args.role == "leader":
        asyncio.run(_leader(args.port, args.followers.split(","), args.acks))
        return 0
    if args.role == "client":
        asyncio.run(
            _client(f"127.0.0.1:{args.port}", args.push_mb, args.duration, args.pushes_max, args.start_at)
        )
        return 0
    if args.acks not in (1, 2) or args.clients < 1 or args.push_mb < 1 or args.reps < 1 or args.duration <= 0:
        parser.error("--acks must be 1 or 2; --clients, --push-mb and --reps >= 1; --duration > 0")
    env = dict(os.environ)
    if args.malloc == "tuned":
        env.update(MALLOC_TUNED)
    reps = [measure_rep(args, env) for _ in range(args.reps)]
    figures = [rep.mb_per_s for rep in reps]
    print(
        f"replicated push ceiling (raw grpcio, 3 replicas, acks={args.acks}, {args.clients} client(s), "
        f"{args.push_mb} MiB pushes, malloc {args.malloc}): "
        f"{statistics.median(figures):,.0f} [{min(figures):,.0f}-{max(figures):,.0f}] MB/s, "
        f"CPU {statistics.median(rep.cpu_ms_per_mb for rep in reps):.2f} ms per MB (all processes)"
    )
    print(
        f"Machine: nproc {os.cpu_count()}, {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}, grpcio {grpc.__version__}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
