"""Helpers for tests that run real coordinator processes (``LocalCluster``) on 127.0.0.1.

Every wait here is a poll loop with a deadline that fails with what it was waiting for and
what it last saw; nothing sleeps to "let things settle".
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from consensus.storage.records import RecordType, scan_records
from consensus.storage.segments import decode_segment_header, parse_segment_name, record_seed_of
from paramstore.client import ClientError, CoordinatorClient
from paramstore.commands._up import LocalCluster
from proto import coordinator_service_pb2 as api

REPO_ROOT = Path(__file__).resolve().parent.parent
# Generous against a loaded 2-core machine; a healthy cluster meets each in well under 5 s.
WAIT_S = 30.0
POLL_S = 0.05

T = TypeVar("T")


async def wait_for(probe: Callable[[], Awaitable[T | None]], what: str, timeout_s: float = WAIT_S) -> T:
    """Poll ``probe`` until it returns something other than None (or False); returns it."""
    deadline = time.monotonic() + timeout_s
    last: object = None
    while True:
        try:
            value = await probe()
        except ClientError as exc:  # a node restarting or an election under way: poll again
            value, last = None, exc
        if value is not None and value is not False:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what} (last: {last})")
        await asyncio.sleep(POLL_S)


def wait_exit(process: subprocess.Popen[bytes], what: str, timeout_s: float = WAIT_S) -> int:
    """The return code of ``process`` once it has exited (fails after ``timeout_s``)."""
    try:
        return process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}") from None


def run_cli(*args: str, timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
    """``python -m paramstore.cli ARGS`` to completion, output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "paramstore.cli", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def paramstore_lines(stderr: str) -> list[str]:
    """The lines a paramstore command printed itself: without the timestamped lines of the
    logging module and without gRPC core's own log lines (``E1201 21:00:56.45 ...``)."""
    lines = []
    for line in stderr.splitlines():
        if not line.strip():
            continue
        if line[:4].isdigit() and line[4:5] == "-":  # 2026-12-01 21:00:56,450 coordinator-1 ...
            continue
        if line[:1] in "EWID" and line[1:5].isdigit() and line[5:6] == " ":  # gRPC core (absl)
            continue
        lines.append(line)
    return lines


class Cluster:
    """A ``LocalCluster`` plus the questions tests ask it."""

    def __init__(self, local: LocalCluster) -> None:
        self.local = local
        # Nodes started outside LocalCluster's own set (one joining at run time, say).
        self.extra_addresses: dict[int, str] = {}

    @property
    def addresses(self) -> list[str]:
        return [*self.local.client_addresses, *self.extra_addresses.values()]

    def address(self, node_id: int) -> str:
        return self.extra_addresses.get(node_id) or self.local.addresses[node_id]

    def client(self, client_id: str | None = None, deadline_s: float = 15.0) -> CoordinatorClient:
        return CoordinatorClient(self.addresses, client_id=client_id, deadline_s=deadline_s)

    def log_text(self, node_id: int, since: int = 0) -> str:
        path = self.local.log_path(node_id)
        if not path.exists():
            return ""
        with path.open("rb") as file:
            file.seek(since)
            return file.read().decode("utf-8", "replace")

    def log_size(self, node_id: int) -> int:
        path = self.local.log_path(node_id)
        return path.stat().st_size if path.exists() else 0

    async def statuses(self, timeout_s: float = 1.0) -> dict[int, api.StatusResponse]:
        """node id -> its own Status, for every node that answered."""
        async with CoordinatorClient(self.addresses) as client:
            answers = await client.status_all(timeout_s)
        return {int(s.response.node_id): s.response for s in answers if s.response is not None}

    async def leader(self, exclude: frozenset[int] = frozenset(), timeout_s: float = WAIT_S) -> int:
        """The id of the one node that says it leads (not one of ``exclude``), once the
        others that answer agree on it."""

        seen: list[dict[int, api.StatusResponse]] = [{}]

        async def probe() -> int | None:
            statuses = seen[0] = await self.statuses()
            leaders = [i for i, s in statuses.items() if s.role == "leader" and i not in exclude]
            if len(leaders) != 1:
                return None
            # The voters in the leader's term follow it (a removed node may not know of it).
            leader = statuses[leaders[0]]
            agreed = all(
                s.leader_id == leaders[0]
                for i, s in statuses.items()
                if s.term == leader.term and i != leaders[0] and i in leader.voters
            )
            return leaders[0] if agreed else None

        try:
            return await wait_for(probe, f"a leader other than {sorted(exclude)}", timeout_s)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; last statuses: {describe(seen[0])}") from None

    async def wait_caught_up(self, node_id: int, timeout_s: float = WAIT_S) -> api.StatusResponse:
        """Until ``node_id`` has applied everything the leader had committed when this was
        called; returns the node's status then."""
        leader = await self.leader()
        target = (await self.statuses())[leader].commit_index

        async def probe() -> api.StatusResponse | None:
            status = (await self.statuses()).get(node_id)
            return status if status is not None and status.applied_index >= target else None

        return await wait_for(probe, f"node {node_id} to apply up to the leader's commit {target}", timeout_s)


def describe(statuses: dict[int, api.StatusResponse]) -> str:
    """One line per node: what a failed wait last saw."""
    return (
        "; ".join(
            f"node {i}: {s.role} term {s.term} leader {s.leader_id} commit {s.commit_index} "
            f"applied {s.applied_index} last {s.last_index} snapshot {s.snapshot_index} "
            f"voters {list(s.voters)} learners {list(s.learners)}"
            for i, s in sorted(statuses.items())
        )
        or "no node answered"
    )


@dataclass
class Writer:
    """Puts distinct keys ``PREFIX/NNNNN`` one after another until stopped; remembers which
    puts were acknowledged (and with what value) and which had an unknown outcome."""

    cluster: Cluster
    prefix: str
    client_id: str
    acked: dict[str, bytes] = field(default_factory=dict)
    unknown: set[str] = field(default_factory=set)
    attempted: int = 0
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, limit: int | None = None) -> None:
        async with self.cluster.client(self.client_id, deadline_s=15.0) as client:
            while not self.stop.is_set() and (limit is None or self.attempted < limit):
                key = f"{self.prefix}/{self.attempted:05d}"
                value = f"{self.client_id}:{self.attempted}".encode()
                self.attempted += 1
                try:
                    await client.put(key, value)
                except ClientError:
                    self.unknown.add(key)
                else:
                    self.acked[key] = value

    async def wait_acked(self, count: int, timeout_s: float = WAIT_S) -> None:
        """Until ``count`` more puts than now have been acknowledged."""
        target = len(self.acked) + count

        async def probe() -> bool:
            return len(self.acked) >= target

        await wait_for(
            probe, f"{target} acknowledged puts under {self.prefix} (have {len(self.acked)})", timeout_s
        )


async def read_prefix(addresses: list[str], prefix: str, *, serializable: bool = False) -> dict[str, bytes]:
    """Every key under ``prefix`` (linearizable unless ``serializable``: then from the first
    address, whatever its role)."""
    async with CoordinatorClient(addresses, deadline_s=15.0) as client:
        kvs, more, _ = await client.range(prefix=prefix + "/", limit=10_000, serializable=serializable)
    assert not more, f"more than 10000 keys under {prefix}"
    return {kv.key: kv.value for kv in kvs}


def assert_all_acked_present(acked: dict[str, bytes], stored: dict[str, bytes], where: str) -> None:
    missing = sorted(key for key in acked if key not in stored)
    wrong = sorted(key for key in acked if key in stored and stored[key] != acked[key])
    assert not missing and not wrong, (
        f"{where}: {len(missing)} acknowledged puts missing (first {missing[:5]}), "
        f"{len(wrong)} with the wrong value (first {wrong[:5]}), of {len(acked)} acknowledged"
    )


def reset_segments(data_dir: Path) -> list[Path]:
    """The WAL segments of a data dir that were opened to install a leader's snapshot."""
    found = []
    for path in sorted((data_dir / "wal").glob("*.wal")):
        if parse_segment_name(path.name) is None:
            continue  # a recycled segment file (recycled-*.wal) is not a segment
        data = path.read_bytes()
        scan = scan_records(data, path, tail_may_be_torn=True, records_max=1, seed=record_seed_of(path))
        if scan.records and scan.records[0].type == RecordType.SEGMENT_HEADER:
            record = scan.records[0]
            header = decode_segment_header(data[record.payload_start : record.payload_end], path)
            if header.reset is not None:
                found.append(path)
    return found


def pid_gone(pid: int) -> bool:
    """True when no process has ``pid`` any more (exited and reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False
