"""Throughput of the gRPC transport: APPENDs of 256-byte entries between two processes.

What it measures: node 1 (this process) sends APPEND messages of E entries of S bytes to
node 2 (a child process) over 127.0.0.1, keeping at most ``--window`` messages unacknowledged;
node 2 answers every ``--window // 8``-th message (and the last) with an APPEND_RESPONSE
through its own transport, as a Raft follower would. A repetition ends when every message
it sent is acknowledged. Figures: messages/s, entries/s and MB/s of entry payload
(MB = 10^6 B), plus wire MB/s (encoded batches as written).

Each repetition is bounded by ``--entries`` and by ``--seconds``; one unreported warm-up
repetition comes first. Every figure is the median [min-max] of ``--reps`` repetitions.

    python benchmarks/transport_bench.py
    python benchmarks/transport_bench.py --entries-per-append 64 --reps 5
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from consensus.messages import Entry, Message, MessageType
from consensus.transport import Transport

SENDER, RECEIVER = 1, 2
ACK_REQUESTED = 1  # in Message.context
CHILD_LIFETIME_S = 600.0


# ---- node 2: the child process -----------------------------------------------------------------


async def serve(sender_address: str) -> None:
    def on_message(msg: Message) -> None:
        if msg.type is MessageType.APPEND and msg.context == ACK_REQUESTED:
            transport.send(Message(MessageType.APPEND_RESPONSE, RECEIVER, SENDER, term=1, index=msg.index))

    transport = Transport(RECEIVER, "127.0.0.1:0", peers={SENDER: sender_address}, on_message=on_message)
    await transport.start()
    print(transport.address, flush=True)
    loop = asyncio.get_running_loop()
    # Runs until the parent closes our stdin (or the lifetime bound).
    try:
        await asyncio.wait_for(loop.run_in_executor(None, sys.stdin.read), CHILD_LIFETIME_S)
    finally:
        await transport.close()


# ---- node 1: this process ----------------------------------------------------------------------


class Sender:
    def __init__(self) -> None:
        self.acked_index = 0
        self.progress = asyncio.Event()
        self.transport = Transport(SENDER, "127.0.0.1:0", on_message=self.on_message)

    def on_message(self, msg: Message) -> None:
        if msg.type is MessageType.APPEND_RESPONSE and msg.index > self.acked_index:
            self.acked_index = msg.index
            self.progress.set()

    async def run_once(
        self,
        first_index: int,
        messages_max: int,
        entries_per_append: int,
        entry_bytes: int,
        window: int,
        seconds: float,
    ) -> tuple[int, float, int]:
        """Returns (messages acknowledged, seconds, wire bytes)."""
        payload = os.urandom(entry_bytes)
        ack_every = max(1, window // 8)
        index = first_index
        last_index = first_index + messages_max - 1
        bytes_before = self.transport.peer_counters(RECEIVER)["bytes_sent"]
        started = time.perf_counter()
        deadline = started + seconds
        while index <= last_index and time.perf_counter() < deadline:
            while index <= last_index and index - self.acked_index <= window:
                entries = tuple(
                    Entry(1, index * entries_per_append + i, data=payload) for i in range(entries_per_append)
                )
                wants_ack = index % ack_every == 0 or index == last_index
                self.transport.send(
                    Message(
                        MessageType.APPEND,
                        SENDER,
                        RECEIVER,
                        term=1,
                        index=index,
                        entries=entries,
                        context=ACK_REQUESTED if wants_ack else 0,
                    )
                )
                index += 1
            await self.wait_for_progress(deadline + 5.0)
        sent_last = index - 1
        if self.acked_index < sent_last:
            # The repetition ran out of time: ask for one ack of everything sent so far.
            self.transport.send(
                Message(MessageType.APPEND, SENDER, RECEIVER, term=1, index=index, context=ACK_REQUESTED)
            )
            sent_last = index
            while self.acked_index < sent_last:
                await self.wait_for_progress(time.perf_counter() + 10.0)
        elapsed = time.perf_counter() - started
        wire_bytes = self.transport.peer_counters(RECEIVER)["bytes_sent"] - bytes_before
        return sent_last - first_index + 1, elapsed, wire_bytes

    async def wait_for_progress(self, deadline: float) -> None:
        self.progress.clear()
        timeout_s = deadline - time.perf_counter()
        if timeout_s <= 0:
            raise RuntimeError("no acknowledgement before the deadline (is node 2 alive?)")
        try:
            await asyncio.wait_for(self.progress.wait(), timeout_s)
        except TimeoutError:
            raise RuntimeError(
                f"no acknowledgement in {timeout_s:.1f} s: {self.transport.counters()}"
            ) from None


def describe(values: list[float], fmt: str) -> str:
    return f"{statistics.median(values):{fmt}} [{min(values):{fmt}}-{max(values):{fmt}}]"


def machine_description() -> str:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{os.cpu_count()} cpu {model}, python {platform.python_version()}"


async def bench(args: argparse.Namespace) -> None:
    sender = Sender()
    await sender.transport.start()
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve", sender.transport.address],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        if child.stdout is None:
            raise RuntimeError("no pipe to node 2")
        line = await asyncio.wait_for(
            asyncio.get_running_loop().run_in_executor(None, child.stdout.readline), 30.0
        )
        if not line.strip():
            raise RuntimeError("node 2 did not start")
        sender.transport.add_peer(RECEIVER, line.strip())
        print(f"machine: {machine_description()}")
        print(
            f"transport: APPENDs of {args.entry_bytes}-byte entries, node 1 -> node 2 in another process, "
            f"window {args.window} messages; median [min-max] of {args.reps} reps"
        )
        header = ("entries/append", "messages/s", "entries/s", "payload MB/s", "wire MB/s")
        print(f"{header[0]:>14} {header[1]:>24} {header[2]:>26} {header[3]:>20} {header[4]:>20}")
        index = 1
        for entries_per_append in args.entries_per_append:
            messages_max = max(1, args.entries // entries_per_append)
            results: list[tuple[float, float, float, float]] = []
            for rep in range(args.reps + 1):
                count, elapsed, wire_bytes = await sender.run_once(
                    index, messages_max, entries_per_append, args.entry_bytes, args.window, args.seconds
                )
                index += count + 1
                if rep == 0:
                    continue  # warm-up
                entries = count * entries_per_append
                results.append(
                    (
                        count / elapsed,
                        entries / elapsed,
                        entries * args.entry_bytes / elapsed / 1e6,
                        wire_bytes / elapsed / 1e6,
                    )
                )
            columns = list(zip(*results, strict=True))
            print(
                f"{entries_per_append:>14} {describe(list(columns[0]), ',.0f'):>24} "
                f"{describe(list(columns[1]), ',.0f'):>26} {describe(list(columns[2]), '.1f'):>20} "
                f"{describe(list(columns[3]), '.1f'):>20}"
            )
        dropped = sender.transport.peer_counters(RECEIVER)["messages_dropped"]
        print(f"messages dropped by node 1: {dropped}")
    finally:
        if child.stdin is not None:
            child.stdin.close()
        try:
            child.wait(timeout=10.0)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(timeout=10.0)
        await sender.transport.close()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--serve", metavar="SENDER_ADDRESS", help=argparse.SUPPRESS)
    parser.add_argument("--entries-per-append", type=int, nargs="*", default=[1, 64, 1024])
    parser.add_argument("--entry-bytes", type=int, default=256)
    parser.add_argument("--entries", type=int, default=300_000, help="entries per repetition (upper bound)")
    parser.add_argument("--seconds", type=float, default=3.0, help="time per repetition (upper bound)")
    parser.add_argument("--window", type=int, default=512, help="unacknowledged messages at most")
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve))
        return 0
    if args.reps < 1 or args.entries < 1 or args.window < 8 or any(e < 1 for e in args.entries_per_append):
        parser.error("--reps and --entries must be >= 1, --window >= 8, --entries-per-append values >= 1")
    asyncio.run(bench(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
