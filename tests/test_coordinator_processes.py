"""Coordinator daemons as real processes on 127.0.0.1: crashes (kill -9 and the storage
failpoints), restarts and catch-up, WAL damage, retried commands, membership changes, and the
command line's error paths.

Every test reaps what it starts (the ``clusters`` fixture stops every cluster it made, and
the tests that start other processes kill them in ``finally``). Waits are poll loops with
deadlines (``cluster_util.wait_for``), never sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from consensus.storage.failpoints import (
    SNAPSHOT_AFTER_RENAME_BEFORE_DIR_FSYNC,
    SNAPSHOT_BEFORE_RENAME,
    SNAPSHOT_MID_WRITE,
    WAL_AFTER_APPEND_BEFORE_FSYNC,
    WAL_AFTER_FSYNC,
)
from consensus.storage.records import RecordType, encode_record, scan_records
from consensus.storage.segments import record_seed_of
from paramstore.commands._up import LocalCluster, free_ports
from paramstore.coordinator import (
    CommandResult,
    CompareAndSet,
    ErrorCode,
    Operation,
    Put,
    decode_result,
    encode_command,
)
from proto import coordinator_pb2 as pb
from proto import coordinator_service_pb2 as api
from proto import coordinator_service_pb2_grpc as api_grpc
from tests.cluster_util import (
    REPO_ROOT,
    Cluster,
    Writer,
    assert_all_acked_present,
    describe,
    paramstore_lines,
    pid_gone,
    read_prefix,
    reset_segments,
    run_cli,
    wait_exit,
    wait_for,
)

pytestmark = pytest.mark.slow

MakeCluster = Callable[..., Cluster]


@pytest.fixture
def clusters(tmp_path: Path) -> Iterator[MakeCluster]:
    """``clusters(**LocalCluster options)`` -> a Cluster (not started); all are stopped after."""
    made: list[LocalCluster] = []

    def make(name: str = "cluster", **options: Any) -> Cluster:
        local = LocalCluster(tmp_path / name, **options)
        made.append(local)
        return Cluster(local)

    try:
        yield make
    finally:
        with contextlib.ExitStack() as stack:  # every cluster is stopped, even if one stop fails
            for local in made:
                stack.callback(local.stop)


def started(make: MakeCluster, **options: Any) -> Cluster:
    cluster = make(**options)
    cluster.local.start()
    return cluster


def other_than(cluster: Cluster, *node_ids: int) -> int:
    return next(i for i in sorted(cluster.local.addresses) if i not in node_ids)


async def verify_node(cluster: Cluster, node_id: int, acked: dict[str, bytes], prefix: str) -> None:
    """``node_id`` has applied what the leader committed, every acknowledged put included
    (read from the node itself, not through the leader)."""
    await cluster.wait_caught_up(node_id)
    on_node = await read_prefix([cluster.address(node_id)], prefix, serializable=True)
    assert_all_acked_present(acked, on_node, f"node {node_id}'s own state")


# ---- 1. kill -9 the leader while a client writes ----------------------------------------------


def test_leader_killed_during_writes_keeps_every_acknowledged_put(clusters: MakeCluster) -> None:
    cluster = started(clusters, fsync="never")

    async def scenario() -> None:
        old_leader = await cluster.leader()
        writer = Writer(cluster, "w", "writer")
        task = asyncio.create_task(writer.run())
        try:
            await writer.wait_acked(40)
            cluster.local.kill(old_leader)
            acked_at_kill = len(writer.acked)
            new_leader = await cluster.leader(exclude=frozenset({old_leader}))
            await writer.wait_acked(40)  # writes go on under the new leader
        finally:
            writer.stop.set()
            await task
        assert new_leader != old_leader
        assert len(writer.acked) >= acked_at_kill + 40
        assert len(writer.unknown) <= 1, writer.unknown  # at most the put in flight at the kill
        stored = await read_prefix(cluster.addresses, "w")
        assert_all_acked_present(writer.acked, stored, "after the leader's kill")
        assert set(stored) <= set(writer.acked) | writer.unknown  # nothing invented

        cluster.local.start_node(old_leader)
        await verify_node(cluster, old_leader, writer.acked, "w")
        assert (await cluster.statuses())[old_leader].role == "follower"

    asyncio.run(scenario())


def test_restarted_node_catches_up_through_a_snapshot(clusters: MakeCluster) -> None:
    cluster = started(clusters, fsync="never", extra_args=["--snapshot-entries", "50"])

    async def scenario() -> None:
        old_leader = await cluster.leader()
        writer = Writer(cluster, "s", "writer")
        task = asyncio.create_task(writer.run())
        try:
            await writer.wait_acked(30)
            last_before = max(s.last_index for s in (await cluster.statuses()).values())
            cluster.local.kill(old_leader)
            await cluster.leader(exclude=frozenset({old_leader}))
            survivors = [i for i in cluster.local.addresses if i != old_leader]

            async def compacted_past_the_dead_node() -> bool:
                # The dead node's log ends near last_before (a put in flight, a tick at most);
                # once both survivors' logs start well after it, only a snapshot can bring
                # it up to date.
                statuses = await cluster.statuses()
                return all(i in statuses and statuses[i].snapshot_index > last_before + 10 for i in survivors)

            await wait_for(compacted_past_the_dead_node, "the survivors to snapshot past the dead node's log")
        finally:
            writer.stop.set()
            await task
        assert not reset_segments(cluster.local.data_dir(old_leader))

        cluster.local.start_node(old_leader)
        await verify_node(cluster, old_leader, writer.acked, "s")
        status = (await cluster.statuses())[old_leader]
        assert status.snapshot_index > last_before
        # A reset segment is what installing a leader's snapshot writes.
        assert reset_segments(cluster.local.data_dir(old_leader))
        stored = await read_prefix(cluster.addresses, "s")
        assert_all_acked_present(writer.acked, stored, "through the leader")

    asyncio.run(scenario())


# ---- 2. every node killed at once ---------------------------------------------------------------


def test_all_nodes_killed_at_once_with_fsync_always_lose_nothing_acknowledged(clusters: MakeCluster) -> None:
    cluster = started(clusters, fsync="always")

    async def scenario() -> None:
        await cluster.leader()
        writer = Writer(cluster, "a", "writer")
        task = asyncio.create_task(writer.run())
        try:
            await writer.wait_acked(60)
            processes = list(cluster.local.processes.values())
            for process in processes:  # all signalled before any is reaped
                process.send_signal(signal.SIGKILL)
            for process in processes:
                assert wait_exit(process, "a SIGKILLed coordinator") == -signal.SIGKILL
            acked_at_kill = dict(writer.acked)
            for node_id in cluster.local.addresses:
                cluster.local.start_node(node_id)
            await cluster.leader()
            await writer.wait_acked(20)  # the writer's retries reach the restarted cluster
        finally:
            writer.stop.set()
            await task
        stored = await read_prefix(cluster.addresses, "a")
        assert_all_acked_present(acked_at_kill, stored, "acknowledged before the kill")
        assert_all_acked_present(writer.acked, stored, "acknowledged in all")
        for node_id in cluster.local.addresses:
            await verify_node(cluster, node_id, writer.acked, "a")

    asyncio.run(scenario())


# ---- 3. crashes at the storage failpoints ----------------------------------------------------------

# (failpoint, the hit to crash on): WAL points are hit on every write, snapshot points once per
# snapshot (every 50 applied entries here, so @2 crashes while taking the one at index ~100).
FAILPOINTS = [
    (WAL_AFTER_APPEND_BEFORE_FSYNC, 40),
    (WAL_AFTER_FSYNC, 40),
    (SNAPSHOT_MID_WRITE, 2),
    (SNAPSHOT_BEFORE_RENAME, 2),
    (SNAPSHOT_AFTER_RENAME_BEFORE_DIR_FSYNC, 2),
]


def _snapshot_indexes(data_dir: Path) -> list[int]:
    """The indexes of the complete snapshot files (``INDEX-TERM.snap``) in a data dir."""
    return sorted(int(path.name.split("-", 1)[0]) for path in (data_dir / "snap").glob("*.snap"))


@pytest.mark.parametrize(("failpoint", "on_hit"), FAILPOINTS, ids=[name for name, _ in FAILPOINTS])
def test_a_crash_at_a_failpoint_loses_nothing_and_the_node_catches_up(
    clusters: MakeCluster, failpoint: str, on_hit: int
) -> None:
    cluster = clusters(fsync="always", extra_args=["--snapshot-entries", "50"])
    victim = 3
    for node_id in cluster.local.addresses:
        env = {"PARAMSTORE_FAILPOINTS": f"{failpoint}@{on_hit}" if node_id == victim else ""}
        cluster.local.start_node(node_id, env=env)
    process = cluster.local.processes[victim]
    data_dir = cluster.local.data_dir(victim)

    async def scenario() -> None:
        await cluster.leader()
        writer = Writer(cluster, "f", "writer")
        task = asyncio.create_task(writer.run())
        try:

            async def died() -> bool:
                return process.poll() is not None

            await wait_for(died, f"node {victim} to crash at {failpoint}@{on_hit}")
            assert process.returncode == -signal.SIGKILL
            assert f"failpoint {failpoint} hit" in cluster.log_text(victim)
            temp_snapshots = sorted((data_dir / "snap").glob("*.tmp"))
            snapshots_at_crash = _snapshot_indexes(data_dir)
            if failpoint in (SNAPSHOT_MID_WRITE, SNAPSHOT_BEFORE_RENAME):
                assert len(temp_snapshots) == 1, temp_snapshots  # the one being written
            else:
                assert not temp_snapshots
            if failpoint.startswith("snapshot."):  # the first snapshot, and the second if renamed
                expected = 2 if failpoint == SNAPSHOT_AFTER_RENAME_BEFORE_DIR_FSYNC else 1
                assert len(snapshots_at_crash) == expected, snapshots_at_crash
            await writer.wait_acked(20)  # the other two go on (under a new leader if it led)
            log_offset = cluster.log_size(victim)
            cluster.local.start_node(victim, env={"PARAMSTORE_FAILPOINTS": ""})
            await writer.wait_acked(20)
        finally:
            writer.stop.set()
            await task
        stored = await read_prefix(cluster.addresses, "f")
        assert_all_acked_present(writer.acked, stored, f"after the crash at {failpoint}")
        status = await cluster.wait_caught_up(victim)
        on_node = await read_prefix([cluster.address(victim)], "f", serializable=True)
        assert_all_acked_present(writer.acked, on_node, f"node {victim} after its crash at {failpoint}")
        restart_log = cluster.log_text(victim, log_offset)
        assert "Traceback" not in restart_log and "ERROR" not in restart_log, restart_log[-2000:]
        for temp in temp_snapshots:  # removed at the restart, and said so
            assert not temp.exists()
            assert f"recovery: removed unfinished snapshot file {temp}" in restart_log, restart_log
        if snapshots_at_crash:  # the newest complete snapshot was used (or a later one)
            assert status.snapshot_index >= snapshots_at_crash[-1]
        assert cluster.local.processes[victim].poll() is None

    asyncio.run(scenario())


# ---- 4. a damaged WAL ---------------------------------------------------------------------------------


def _last_segment(cluster: Cluster, node_id: int) -> Path:
    segments = sorted((cluster.local.data_dir(node_id) / "wal").glob("*.wal"))
    assert segments, f"node {node_id} has no WAL segment"
    return segments[-1]


async def _write_then_stop(cluster: Cluster, node_id: int, count: int) -> Writer:
    await cluster.leader()
    writer = Writer(cluster, "t", "writer")
    await writer.run(limit=count)
    assert len(writer.acked) == count
    await cluster.wait_caught_up(node_id)
    cluster.local.kill(node_id, signal.SIGTERM)
    assert cluster.local.processes[node_id].returncode == 0
    return writer


def test_a_torn_wal_tail_is_repaired_on_start(clusters: MakeCluster) -> None:
    cluster = started(clusters, fsync="always")
    node = 3

    async def scenario() -> None:
        writer = await _write_then_stop(cluster, node, 30)
        segment = _last_segment(cluster, node)
        size = segment.stat().st_size
        record = encode_record(RecordType.ENTRIES, bytes(range(256)) * 4, seed=record_seed_of(segment))
        torn = record[:300]  # an append cut short
        with segment.open("ab") as file:
            file.write(torn)
        log_offset = cluster.log_size(node)
        cluster.local.start_node(node)
        await verify_node(cluster, node, writer.acked, "t")
        log = cluster.log_text(node, log_offset)
        assert f"recovery: truncated {segment.name} from {size + len(torn)} to {size} bytes" in log, log
        async with cluster.client() as client:
            await client.put("t/after", b"x")
        await verify_node(cluster, node, {**writer.acked, "t/after": b"x"}, "t")
        # New records follow the last whole one: the segment scans clean, garbage-free.
        scan = scan_records(
            segment.read_bytes(), segment, tail_may_be_torn=False, seed=record_seed_of(segment)
        )
        assert scan.torn is None and scan.end_offset == segment.stat().st_size > size

    asyncio.run(scenario())


def test_a_corrupted_wal_record_in_the_middle_stops_the_node_with_a_clear_error(
    clusters: MakeCluster,
) -> None:
    cluster = started(clusters, fsync="always")
    node = 3

    async def scenario() -> None:
        writer = await _write_then_stop(cluster, node, 30)
        segment = _last_segment(cluster, node)
        data = bytearray(segment.read_bytes())
        entries = [
            r
            for r in scan_records(
                bytes(data), segment, tail_may_be_torn=False, seed=record_seed_of(segment)
            ).records
        ]
        entries = [r for r in entries if r.type == RecordType.ENTRIES]
        # (How many records depends on how the leader batched its appends to this node.)
        assert len(entries) >= 2, entries
        damaged = entries[(len(entries) - 1) // 2]  # whole records follow it
        data[damaged.payload_start] ^= 0xFF
        segment.write_bytes(bytes(data))
        log_offset = cluster.log_size(node)
        process = cluster.local.start_node(node)
        returncode = wait_exit(process, "the node with a corrupted WAL to exit")
        assert returncode not in (0, -signal.SIGKILL), returncode
        log = cluster.log_text(node, log_offset)
        lines = paramstore_lines(log)
        assert lines == [
            f"paramstore coordinator: storage corruption in {segment} at byte offset {damaged.offset}: "
            + lines[0].split(f"byte offset {damaged.offset}: ", 1)[-1]
        ], log
        assert "valid data follows" in lines[0]
        assert "serving on" not in log and "Traceback" not in log
        assert segment.read_bytes() == bytes(data)  # refused, not "repaired"
        # The other two still serve, and the damaged node is not among the answers.
        statuses = await cluster.statuses()
        assert node not in statuses and len(statuses) == 2
        async with cluster.client() as client:
            await client.put("t/after", b"x")
        stored = await read_prefix(cluster.addresses, "t")
        assert_all_acked_present({**writer.acked, "t/after": b"x"}, stored, "the surviving pair")

    asyncio.run(scenario())


# ---- 5. a retried command after a leader kill is applied once -----------------------------------------


async def _execute_raw(address: str, op: Operation, client_id: str, sequence: int) -> CommandResult:
    """One Execute of exactly (client_id, sequence) at ``address``, repeated while the node is
    not (yet) able to take it; the client library is bypassed so nothing is renumbered."""
    data = encode_command(op, client_id=client_id, sequence=sequence)
    request = api.ExecuteRequest(command=pb.Command.FromString(data))
    async with grpc.aio.insecure_channel(address) as channel:
        stub = api_grpc.CoordinatorStub(channel)

        async def attempt() -> CommandResult | None:
            try:
                response = await stub.Execute(request, timeout=2.0)
            except grpc.aio.AioRpcError as exc:
                if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    return None
                raise
            return decode_result(response.result.SerializeToString())

        return await wait_for(attempt, f"{address} to apply ({client_id}, {sequence})")


def test_a_retried_command_after_a_leader_kill_is_applied_once(clusters: MakeCluster) -> None:
    cluster = started(clusters, fsync="never")

    async def scenario() -> None:
        old_leader = await cluster.leader()
        put = Put("retry/key", b"v1")
        cas = CompareAndSet("retry/cas", b"first", expect_absent=True)
        put_first = await _execute_raw(cluster.address(old_leader), put, "client-p", 1)
        cas_first = await _execute_raw(cluster.address(old_leader), cas, "client-c", 1)
        # A key's version is the revision of its last modification.
        assert put_first.ok and put_first.key_version == put_first.revision
        assert cas_first.ok and cas_first.key_version == cas_first.revision

        cluster.local.kill(old_leader)
        new_leader = await cluster.leader(exclude=frozenset({old_leader}))
        async with cluster.client() as client:
            _, _, revision_before = await client.range(prefix="retry/")
        assert revision_before == cas_first.revision
        put_again = await _execute_raw(cluster.address(new_leader), put, "client-p", 1)
        cas_again = await _execute_raw(cluster.address(new_leader), cas, "client-c", 1)
        # The session's remembered results, not a second application: a second Put would
        # move the key's version and the store's revision on, a second
        # CompareAndSet(expect_absent) would be a CAS_MISMATCH.
        assert put_again == put_first
        assert cas_again == cas_first

        async with cluster.client() as client:
            kv = await client.get("retry/key")
            assert kv is not None and kv.value == b"v1"
            assert kv.version == kv.create_revision == put_first.revision
            kv = await client.get("retry/cas")
            assert kv is not None and kv.value == b"first"
            assert kv.version == kv.create_revision == cas_first.revision
            _, _, revision_after = await client.range(prefix="retry/")
        assert revision_after == revision_before  # the retries changed nothing
        # The session goes on from there; an older sequence is refused, not re-applied.
        put_2 = await _execute_raw(cluster.address(new_leader), Put("retry/key", b"v2"), "client-p", 2)
        assert put_2.ok and put_2.key_version == put_2.revision == revision_before + 1
        stale = await _execute_raw(cluster.address(new_leader), put, "client-p", 1)
        assert stale.code == ErrorCode.STALE_SEQUENCE
        async with cluster.client() as client:
            kv = await client.get("retry/key")
            assert kv is not None and kv.value == b"v2" and kv.version == put_2.revision
            _, _, revision_last = await client.range(prefix="retry/")
        assert revision_last == put_2.revision

        # The killed leader, restarted, replays the same log to the same state.
        cluster.local.start_node(old_leader)
        await cluster.wait_caught_up(old_leader)
        on_node = await read_prefix([cluster.address(old_leader)], "retry", serializable=True)
        assert on_node == {"retry/key": b"v2", "retry/cas": b"first"}

    asyncio.run(scenario())


# ---- 6. the command line -------------------------------------------------------------------------------


def test_coordinator_flag_errors_exit_2_with_one_line(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    data_dir = tmp_path / "data"
    base = ["coordinator", "--listen", f"127.0.0.1:{port}", "--data-dir", str(data_dir)]
    cases = {
        "--id is required (or set it in --config)": [*base, "--peers", f"1=127.0.0.1:{port}"],
        "peers: 'garbage' is not ID=HOST:PORT": [*base, "--id", "1", "--peers", "garbage"],
        "peers: address 'localhost' of node 2 is not HOST:PORT": [
            *base,
            "--id",
            "1",
            "--peers",
            f"1=127.0.0.1:{port},2=localhost",
        ],
        "peers: node 1 is listed twice": [*base, "--id", "1", "--peers", f"1=127.0.0.1:{port},1=127.0.0.1:1"],
    }
    for message, args in cases.items():
        result = run_cli(*args)
        assert result.returncode == 2, (args, result)
        assert result.stdout == ""
        assert result.stderr.splitlines() == [f"paramstore coordinator: {message}"], result.stderr
    assert not data_dir.exists()


def _tree(path: Path) -> dict[str, tuple[int, int, bytes]]:
    return {
        str(p.relative_to(path)): (
            p.stat().st_size,
            p.stat().st_mtime_ns,
            p.read_bytes() if p.is_file() else b"",
        )
        for p in sorted(path.rglob("*"))
    }


def test_a_data_dir_of_another_cluster_is_refused_and_left_alone(clusters: MakeCluster) -> None:
    cluster = started(clusters, coordinators=1, cluster_id="cluster-a", fsync="always")

    async def write() -> None:
        await cluster.leader()
        async with cluster.client() as client:
            await client.put("k", b"v")

    asyncio.run(write())
    cluster.local.stop()
    assert cluster.local.processes[1].returncode == 0
    data_dir = cluster.local.data_dir(1)
    before = _tree(data_dir)
    cluster.local.cluster_id = "cluster-b"
    result = subprocess.run(cluster.local.command(1), capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1, result
    assert paramstore_lines(result.stderr) == [
        f"paramstore coordinator: {data_dir} belongs to cluster 'cluster-a' node 1, "
        "not to cluster 'cluster-b' node 1: refusing to use another node's data"
    ], result.stderr
    assert result.stderr.splitlines()[-1].startswith("paramstore coordinator: ")
    assert "Traceback" not in result.stderr
    assert _tree(data_dir) == before


def test_a_port_in_use_is_refused_before_the_data_dir_is_created(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        local = LocalCluster(tmp_path / "c", coordinators=1, ports=[port])
        result = subprocess.run(local.command(1), capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1, result
    # The port is probed before gRPC binds it, so gRPC logs nothing of its own: one line.
    assert result.stderr.splitlines() == [
        f"paramstore coordinator: cannot listen on 127.0.0.1:{port}: Address already in use"
    ], result.stderr
    assert not local.data_dir(1).exists()


def test_kv_get_against_unreachable_coordinators_fails_with_one_line() -> None:
    addresses = ",".join(f"127.0.0.1:{port}" for port in free_ports(2))
    started_at = time.monotonic()
    result = run_cli("kv", "get", "some/key", "--coordinators", addresses, "--timeout", "1")
    assert time.monotonic() - started_at < 20
    assert result.returncode == 1, result
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith(
        f"paramstore kv get: cannot reach a coordinator leader at {addresses} (last error: "
    )
    assert "Connection refused" in line


def test_status_json_and_kv_commands_on_a_running_cluster(clusters: MakeCluster) -> None:
    cluster = started(clusters, fsync="never")
    leader = asyncio.run(cluster.leader())
    flag = ["--coordinators", ",".join(cluster.addresses)]
    result = run_cli("status", "--json", *flag)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert sorted(row["id"] for row in rows) == [1, 2, 3]
    assert [row["id"] for row in rows if row["role"] == "leader"] == [leader]
    for row in rows:
        assert row["cluster_id"] == cluster.local.cluster_id
        assert row["address"] == cluster.address(row["id"])
        assert row["voters"] == [1, 2, 3] and row["learners"] == []
        assert row["fsync"] == "never"
        assert isinstance(row["lag"], int) and row["commit"] >= 1

    put = run_cli("kv", "put", "cli/key", "hello", *flag)
    assert (put.returncode, put.stdout) == (0, "OK\n"), put.stderr
    get = run_cli("kv", "get", "cli/key", "--json", *flag)
    assert get.returncode == 0, get.stderr
    assert json.loads(get.stdout) == {"key": "cli/key", "value": "hello", "version": 1}
    missing = run_cli("kv", "get", "cli/absent", *flag)
    assert missing.returncode == 1
    assert missing.stderr.splitlines() == ["paramstore kv get: key 'cli/absent' not found"]


def test_up_runs_a_cluster_until_sigint_and_reaps_every_child(tmp_path: Path) -> None:
    directory = tmp_path / "up"
    output = tmp_path / "up.out"
    with output.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "paramstore.cli", "up", "--dir", str(directory), "--fsync", "never"],
            cwd=REPO_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    child_pids: list[int] = []
    try:

        async def described() -> dict[str, Any] | None:
            if process.poll() is not None:
                raise AssertionError(f"up exited with {process.returncode}: {output.read_text()}")
            path = directory / "cluster.json"
            return json.loads(path.read_text()) if path.exists() else None

        cluster_file = asyncio.run(wait_for(described, "up to write cluster.json", 60.0))
        coordinators = [p for p in cluster_file["processes"] if p["role"] == "coordinator"]
        child_pids = [p["pid"] for p in coordinators]
        assert sorted(p["id"] for p in coordinators) == [1, 2, 3]
        assert len(set(child_pids)) == 3 and process.pid not in child_pids
        for entry in coordinators:
            assert not pid_gone(entry["pid"])
            assert Path(entry["data_dir"]).is_dir() and Path(entry["log"]).is_file()
        status = run_cli("status", "--json", "--coordinators", str(directory / "cluster.json"))
        assert status.returncode == 0, status.stderr
        assert {row["address"] for row in json.loads(status.stdout) if "error" not in row} == {
            p["address"] for p in coordinators
        }

        process.send_signal(signal.SIGINT)
        assert wait_exit(process, "up to exit after SIGINT") == 0, output.read_text()
        assert all(pid_gone(pid) for pid in child_pids), [pid for pid in child_pids if not pid_gone(pid)]
        text = output.read_text()
        assert "cluster 'paramstore-local' up: 3 coordinators" in text and "cluster stopped" in text
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        for pid in child_pids:  # only if up failed to stop them (it waits for its children)
            if not pid_gone(pid):
                os.kill(pid, signal.SIGKILL)


# ---- 7. membership and leadership through the command line ------------------------------------------------


def test_add_and_remove_a_node_and_transfer_leadership(clusters: MakeCluster) -> None:
    cluster = started(clusters, fsync="never")
    local = cluster.local
    (port,) = free_ports(1)
    address = f"127.0.0.1:{port}"
    flag = ["--coordinators", ",".join(local.client_addresses)]
    command = [
        sys.executable,
        "-m",
        "paramstore.cli",
        "coordinator",
        "--id",
        "4",
        "--listen",
        address,
        "--peers",
        f"{local.peers_flag},4={address}",
        "--data-dir",
        str(local.data_dir(4)),
        "--cluster-id",
        local.cluster_id,
        "--fsync",
        "never",
        "--join",
    ]
    with open(local.log_path(4), "ab") as log:
        local.processes[4] = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT
        )  # stop() reaps it
    cluster.extra_addresses[4] = address

    async def scenario() -> None:
        await cluster.leader()
        async with cluster.client() as client:
            for k in range(20):
                await client.put(f"m/{k:02d}", b"before")

        async def learner_answers() -> api.StatusResponse | None:
            return (await cluster.statuses()).get(4)

        joined = await wait_for(learner_answers, "node 4 to answer Status")
        assert list(joined.learners) == [4] and list(joined.voters) == [1, 2, 3]

        added = await asyncio.to_thread(
            run_cli, "cluster", "add-node", "--id", "4", "--address", address, *flag
        )
        assert added.returncode == 0, added.stderr
        assert added.stdout == "voters [1, 2, 3, 4] learners []\n"

        async def four_voters_everywhere() -> bool:
            statuses = await cluster.statuses()
            return len(statuses) == 4 and all(list(s.voters) == [1, 2, 3, 4] for s in statuses.values())

        await wait_for(four_voters_everywhere, "every node to see voters [1, 2, 3, 4]")
        acked = {f"m/{k:02d}": b"before" for k in range(20)}
        async with cluster.client() as client:
            for k in range(20, 40):
                await client.put(f"m/{k:02d}", b"with-4")
                acked[f"m/{k:02d}"] = b"with-4"
        await verify_node(cluster, 4, acked, "m")

        leader = await cluster.leader()
        if leader == 4:  # (unlikely) hand leadership back before removing the leader itself
            moved = await asyncio.to_thread(run_cli, "cluster", "transfer-leader", "--id", "1", *flag)
            assert moved.returncode == 0, moved.stderr
        removed = await asyncio.to_thread(run_cli, "cluster", "remove-node", "--id", "4", *flag)
        assert removed.returncode == 0, removed.stderr
        assert removed.stdout == "voters [1, 2, 3] learners []\n"

        async def three_voters() -> bool:
            statuses = await cluster.statuses()
            return all(list(statuses[i].voters) == [1, 2, 3] for i in (1, 2, 3) if i in statuses)

        await wait_for(three_voters, "nodes 1-3 to see voters [1, 2, 3]")
        async with cluster.client() as client:
            await client.put("m/after-remove", b"x")

        leader = await cluster.leader()
        target = other_than(cluster, leader, 4)
        before = describe(await cluster.statuses())
        moved = await asyncio.to_thread(run_cli, "cluster", "transfer-leader", "--id", str(target), *flag)
        assert moved.returncode == 0, moved.stderr
        assert moved.stdout == f"node {target} leads\n"
        after = describe(await cluster.statuses())
        assert await cluster.leader(exclude=frozenset({4})) == target, (leader, before, after)
        async with cluster.client() as client:
            await client.put("m/after-transfer", b"y")
            kv = await client.get("m/after-transfer")
            assert kv is not None and kv.value == b"y"

    asyncio.run(scenario())
