"""The coordinator's gRPC service and its client, end to end over real gRPC on 127.0.0.1:
three daemons in one event loop (real transport, real storage, fsync off for speed)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from consensus.storage import FsyncPolicy
from paramstore.client import CommandRejectedError, CoordinatorClient, RequestInvalidError
from paramstore.client._command_stream import PENDING_MAX, CommandStream
from paramstore.commands._up import free_ports
from paramstore.coordinator import (
    AddGroup,
    ErrorCode,
    GroupMember,
    LeafSpec,
    ModelSpec,
    Put,
    RegisterModel,
    encode_command,
)
from paramstore.server import CoordinatorDaemon, ReplicaOptions
from paramstore.server._session_stream import REQUESTS_PER_MESSAGE_MAX
from proto import coordinator_pb2 as pb
from proto import coordinator_service_pb2 as api
from proto import coordinator_service_pb2_grpc as api_grpc
from tests.daemon_group import DaemonGroup

DEADLINE_S = 20.0


Group = DaemonGroup[CoordinatorDaemon]


@pytest.fixture
async def group(tmp_path: Path) -> AsyncIterator[Group]:
    ports = free_ports(3)
    peers = {node_id: f"127.0.0.1:{ports[node_id - 1]}" for node_id in (1, 2, 3)}
    daemons = [
        CoordinatorDaemon(
            ReplicaOptions(
                cluster_id="test",
                node_id=node_id,
                listen=peers[node_id],
                peers=peers,
                data_dir=tmp_path / f"n{node_id}",
                fsync=FsyncPolicy.NEVER,
            ),
            tick_command_interval_s=0.1,
        )
        for node_id in peers
    ]
    try:
        for daemon in daemons:
            await daemon.start()
        yield Group(daemons)
    finally:
        for daemon in daemons:
            await daemon.stop()


async def test_put_get_cas_delete_and_list_through_the_leader(group: Group) -> None:
    async with CoordinatorClient(group.addresses) as client:
        first = await client.put("jobs/a", b"1")
        assert first.ok and first.key_version == first.revision
        await client.put("jobs/b", b"2")
        await client.put("other", b"3")
        kv = await client.get("jobs/a")
        assert kv is not None and kv.value == b"1"
        assert await client.get("missing") is None

        ok, result = await client.compare_and_set("jobs/a", b"10", expected_value=b"nope")
        assert not ok and result.code == ErrorCode.CAS_MISMATCH
        ok, _ = await client.compare_and_set("jobs/a", b"10", expected_value=b"1")
        assert ok
        ok, _ = await client.compare_and_set("jobs/new", b"x", expect_absent=True)
        assert ok

        kvs, more, _ = await client.range(prefix="jobs/")
        assert [(kv.key, kv.value) for kv in kvs] == [("jobs/a", b"10"), ("jobs/b", b"2"), ("jobs/new", b"x")]
        assert not more
        deleted = await client.delete_prefix("jobs/")
        assert deleted.deleted == 3
        kvs, _, _ = await client.range(prefix="")
        assert [kv.key for kv in kvs] == ["other"]


async def test_a_client_sent_to_a_follower_follows_the_redirect(group: Group) -> None:
    follower = (await group.followers())[0]
    leader = await group.leader()
    async with CoordinatorClient([follower.replica.address, leader.replica.address]) as client:
        await client.put("k", b"v")
        assert client.retries >= 1  # the follower answered UNAVAILABLE with the leader's address
        kv = await client.get("k")
        assert kv is not None and kv.value == b"v"


async def test_follower_redirect_names_the_leader_in_trailing_metadata(group: Group) -> None:
    follower = (await group.followers())[0]
    leader = await group.leader()
    async with grpc.aio.insecure_channel(follower.replica.address) as channel:
        stub = api_grpc.CoordinatorStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.Get(api.GetRequest(key="k"), timeout=5)
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    metadata = dict(raised.value.trailing_metadata() or ())
    assert metadata["paramstore-leader-address"] == leader.replica.address
    assert metadata["paramstore-leader-id"] == str(leader.options.node_id)


async def test_serializable_reads_are_served_by_followers(group: Group) -> None:
    async with CoordinatorClient(group.addresses) as client:
        result = await client.put("k", b"v")
    follower = (await group.followers())[0]
    deadline = time.monotonic() + DEADLINE_S
    async with CoordinatorClient([follower.replica.address]) as client:
        while True:
            kv = await client.get("k", serializable=True)
            if kv is not None:
                break
            assert time.monotonic() < deadline, "the follower never applied the put"
            await follower.machine.wait_changed(0.1)
        assert kv.version == result.key_version


async def test_a_malformed_command_is_refused_without_taking_a_log_slot(group: Group) -> None:
    leader = await group.leader()
    before = leader.replica.node.core.log.last_index
    async with grpc.aio.insecure_channel(leader.replica.address) as channel:
        stub = api_grpc.CoordinatorStub(channel)
        no_session = pb.Command.FromString(encode_command(Put("k", b"v")))
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.Execute(api.ExecuteRequest(command=no_session), timeout=5)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "client_id" in (raised.value.details() or "")
        empty = pb.Command(client_id="c", sequence=1)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.Execute(api.ExecuteRequest(command=empty), timeout=5)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # Ticks may have been proposed meanwhile, but no Put.
    async with CoordinatorClient(group.addresses) as client:
        assert await client.get("k") is None
    assert leader.replica.node.core.log.last_index >= before


async def test_bad_requests_raise_typed_errors(group: Group) -> None:
    async with CoordinatorClient(group.addresses) as client:
        with pytest.raises(RequestInvalidError, match="key must not be empty"):
            await client.get("")
        with pytest.raises(RequestInvalidError, match="prefix or start/end"):
            await client.range(prefix="a", start="b")
        with pytest.raises(CommandRejectedError) as rejected:
            await client.put("", b"v")
        assert rejected.value.code == ErrorCode.INVALID_ARGUMENT


async def test_a_retried_command_is_applied_once(group: Group) -> None:
    leader = await group.leader()
    command = pb.Command.FromString(encode_command(Put("counter", b"x"), client_id="retrier", sequence=1))
    async with grpc.aio.insecure_channel(leader.replica.address) as channel:
        stub = api_grpc.CoordinatorStub(channel)
        first = await stub.Execute(api.ExecuteRequest(command=command), timeout=5)
        again = await stub.Execute(api.ExecuteRequest(command=command), timeout=5)
    assert first.result == again.result
    async with CoordinatorClient(group.addresses) as client:
        kv = await client.get("counter")
    assert kv is not None and kv.version == first.result.key_version  # one application only


async def test_watch_reports_changes_in_revision_order(group: Group) -> None:
    async with CoordinatorClient(group.addresses) as writer, CoordinatorClient(group.addresses) as reader:
        start = (await writer.put("w/0", b"0")).revision

        async def collect() -> list[tuple[int, str, bytes]]:
            seen = []
            async for change in reader.watch("w/", start, duration_s=DEADLINE_S):
                seen.append((change.revision, change.key, change.value))
                if len(seen) == 4:
                    break
            return seen

        watching = asyncio.create_task(collect())
        for i in range(1, 4):
            await writer.put(f"w/{i}", str(i).encode())
        await writer.put("elsewhere", b"-")
        seen = await asyncio.wait_for(watching, DEADLINE_S)
    assert [key for _, key, _ in seen] == ["w/0", "w/1", "w/2", "w/3"]
    revisions = [revision for revision, _, _ in seen]
    assert revisions == sorted(revisions) and revisions[0] == start


async def test_cluster_config_reflects_groups_and_models(group: Group) -> None:
    spec = ModelSpec.create(
        "mlp", [LeafSpec("w", (4, 4), "float32")], num_shards=2, optimizer={"name": "sgd"}
    )
    async with CoordinatorClient(group.addresses) as client:
        added = await client.execute(AddGroup(1, (GroupMember(1, "127.0.0.1:9"),)))
        assert added.ok
        registered = await client.execute(RegisterModel(spec))
        assert registered.ok, registered.message
        config = await client.config()
    assert config.config_number == registered.config_number
    assert [g.group_id for g in config.groups] == [1]
    assert [m.spec.name for m in config.models] == ["mlp"]
    assert len(config.models[0].shard_groups) == 2


async def test_status_of_every_node_and_leader_transfer(group: Group) -> None:
    async with CoordinatorClient(group.addresses) as client:
        await client.put("k", b"v")
        statuses = await client.status_all()
        roles = sorted(s.response.role for s in statuses if s.response is not None)
        assert roles == ["follower", "follower", "leader"]
        leader_id = next(s.response.node_id for s in statuses if s.response and s.response.role == "leader")
        target = next(s.response.node_id for s in statuses if s.response and s.response.node_id != leader_id)
        assert all(s.response is not None and s.response.cluster_id == "test" for s in statuses)
        await client.transfer_leader(target)
        new_leader = await group.leader()
        assert new_leader.options.node_id == target
        await client.put("k", b"after transfer")
        kv = await client.get("k")
        assert kv is not None and kv.value == b"after transfer"


async def test_sessions_and_leases_expire_on_the_log_clock_while_idle(group: Group) -> None:
    """The leader's ticks move the log clock, so a worker lease expires with no other writes."""
    from paramstore.coordinator import RegisterWorker

    spec = ModelSpec.create("m", [LeafSpec("w", (2,), "float32")], num_shards=1, optimizer={"name": "sgd"})
    async with CoordinatorClient(group.addresses) as client:
        assert (await client.execute(RegisterModel(spec))).ok
        registered = await client.execute(RegisterWorker("worker-1", "m", 300))
        assert registered.ok, registered.message
        deadline = time.monotonic() + DEADLINE_S
        while True:
            config = await client.config()
            if not config.workers:
                break
            assert time.monotonic() < deadline, "the lease never expired"
            await asyncio.sleep(0.05)


async def test_a_node_without_a_leader_names_the_peers_it_cannot_reach(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    own, missing_a, missing_b = free_ports(3)
    peers = {1: f"127.0.0.1:{own}", 2: f"127.0.0.1:{missing_a}", 3: f"127.0.0.1:{missing_b}"}
    options = ReplicaOptions(
        cluster_id="lonely",
        node_id=1,
        listen=peers[1],
        peers=peers,
        data_dir=tmp_path,
        fsync=FsyncPolicy.NEVER,
    )
    daemon = CoordinatorDaemon(options, leaderless_check_s=0.05)
    caplog.set_level("WARNING", logger="paramstore.coordinator")
    await daemon.start()
    try:
        deadline = time.monotonic() + DEADLINE_S
        while not any("no leader for" in r.getMessage() for r in caplog.records):
            assert time.monotonic() < deadline, "no warning about the missing leader"
            await asyncio.sleep(0.05)
    finally:
        await daemon.stop()
    warning = next(r.getMessage() for r in caplog.records if "no leader for" in r.getMessage())
    assert f"2={peers[2]}" in warning and f"3={peers[3]}" in warning


# ---- the Session stream -------------------------------------------------------------------


def _session_request(
    request_id: int, key: str, sequence: int, client_id: str = "streamer"
) -> api.SessionRequest:
    command = pb.Command.FromString(
        encode_command(Put(key, key.encode()), client_id=client_id, sequence=sequence)
    )
    return api.SessionRequest(request_id=request_id, command=command, timeout_ms=5000)


def _message(*requests: api.SessionRequest) -> api.SessionRequests:
    return api.SessionRequests(requests=requests)


async def _answers(call: grpc.aio.StreamStreamCall, count: int) -> dict[int, api.SessionResponse]:
    answers: dict[int, api.SessionResponse] = {}
    async with asyncio.timeout(DEADLINE_S):
        while len(answers) < count:
            message = await call.read()
            assert message is not grpc.aio.EOF, f"the stream ended after {len(answers)} of {count} answers"
            answers.update((response.request_id, response) for response in message.responses)
    return answers


def _streams_of(client: CoordinatorClient) -> dict[str, CommandStream]:
    """The usable streams of ``client``'s event loop, by address."""
    assert client._command_streams is not None
    return client._command_streams._streams


async def test_session_answers_pipelined_commands_by_request_id(group: Group) -> None:
    leader = await group.leader()
    async with grpc.aio.insecure_channel(leader.replica.address) as channel:
        call = api_grpc.CoordinatorStub(channel).Session(timeout=DEADLINE_S)
        # Distinct clients: one session table entry each, so all may be in flight at once.
        for i in range(1, 9):
            await call.write(_message(_session_request(100 + i, f"s/{i}", 1, client_id=f"streamer-{i}")))
        answers = await _answers(call, 8)
        await call.done_writing()
        assert await call.read() is grpc.aio.EOF  # the server ends the stream once all are answered
        assert await call.code() == grpc.StatusCode.OK
    assert sorted(answers) == list(range(101, 109))
    assert all(a.status == 0 and a.result.code == pb.ERROR_CODE_OK for a in answers.values())
    assert len({a.result.revision for a in answers.values()}) == 8  # eight separate applies
    async with CoordinatorClient(group.addresses) as client:
        kvs, _, _ = await client.range(prefix="s/")
    assert [(kv.key, kv.value) for kv in kvs] == [(f"s/{i}", f"s/{i}".encode()) for i in range(1, 9)]


async def test_session_applies_every_command_of_one_message(group: Group) -> None:
    leader = await group.leader()
    async with grpc.aio.insecure_channel(leader.replica.address) as channel:
        call = api_grpc.CoordinatorStub(channel).Session(timeout=DEADLINE_S)
        await call.write(
            _message(*(_session_request(i, f"m/{i:02d}", 1, client_id=f"batcher-{i}") for i in range(1, 41)))
        )
        answers = await _answers(call, 40)
        await call.done_writing()
        assert await call.read() is grpc.aio.EOF
    assert sorted(answers) == list(range(1, 41))
    assert all(a.status == 0 and a.result.code == pb.ERROR_CODE_OK for a in answers.values())
    async with CoordinatorClient(group.addresses) as client:
        kvs, _, _ = await client.range(prefix="m/")
    assert [kv.key for kv in kvs] == [f"m/{i:02d}" for i in range(1, 41)]


async def test_session_ends_the_call_on_a_message_of_too_many_requests(group: Group) -> None:
    leader = await group.leader()
    before = leader.machine.machine.revision
    too_many = REQUESTS_PER_MESSAGE_MAX + 1
    async with grpc.aio.insecure_channel(leader.replica.address) as channel:
        call = api_grpc.CoordinatorStub(channel).Session(timeout=DEADLINE_S)
        await call.write(
            _message(
                *(_session_request(i, f"big/{i}", 1, client_id=f"many-{i}") for i in range(1, too_many + 1))
            )
        )
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call.read()
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"at most {REQUESTS_PER_MESSAGE_MAX} requests; got {too_many}" in (refused.value.details() or "")
    assert leader.machine.machine.revision == before


async def test_the_clients_of_one_loop_share_one_stream_and_outlive_each_other(group: Group) -> None:
    leader = await group.leader()
    first = CoordinatorClient(group.addresses)
    async with CoordinatorClient(group.addresses) as second:
        await first.put("shared/1", b"1")
        await second.put("shared/2", b"2")
        assert _streams_of(first) is _streams_of(second)
        (stream,) = _streams_of(second).values()
        assert stream.address == leader.replica.address
        await first.close()
        # The stream stays while a client uses it.
        assert stream.usable
        assert (await second.put("shared/3", b"3")).ok
        kvs, _, _ = await second.range(prefix="shared/")
    assert [kv.value for kv in kvs] == [b"1", b"2", b"3"]
    assert not stream.usable  # the last client's close closed it


async def test_many_concurrent_clients_on_one_stream_are_each_applied_once(group: Group) -> None:
    # More clients than a request message carries and than a stream keeps pending.
    clients = [CoordinatorClient(group.addresses, client_id=f"crowd-{i}") for i in range(PENDING_MAX + 44)]
    try:
        results = await asyncio.gather(
            *(client.put(f"crowd/{i:03d}", str(i).encode()) for i, client in enumerate(clients))
        )
        assert all(result.ok for result in results)
        assert len({result.revision for result in results}) == len(clients)
        kvs, _, _ = await clients[0].range(prefix="crowd/")
    finally:
        for client in clients:
            await client.close()
    assert [kv.value for kv in kvs] == [str(i).encode() for i in range(len(clients))]
    assert all(kv.version == kv.create_revision for kv in kvs)  # each written once


async def test_session_refuses_bad_requests_in_their_answers_and_keeps_serving(group: Group) -> None:
    leader = await group.leader()
    before = leader.machine.machine.revision
    async with grpc.aio.insecure_channel(leader.replica.address) as channel:
        call = api_grpc.CoordinatorStub(channel).Session(timeout=DEADLINE_S)
        no_session = pb.Command.FromString(encode_command(Put("bad/1", b"v")))
        await call.write(
            _message(
                api.SessionRequest(request_id=0, command=_session_request(1, "bad/0", 1).command),
                api.SessionRequest(request_id=2, command=no_session),
            )
        )
        await call.write(
            _message(api.SessionRequest(request_id=3, command=pb.Command(client_id="c", sequence=1)))
        )
        await call.write(_message(_session_request(4, "good", 1)))
        answers = await _answers(call, 4)
        await call.done_writing()
    assert answers[0].status == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "request_id" in answers[0].details
    assert (
        answers[2].status == grpc.StatusCode.INVALID_ARGUMENT.value[0] and "client_id" in answers[2].details
    )
    assert answers[3].status == grpc.StatusCode.INVALID_ARGUMENT.value[0] and "op" in answers[3].details
    assert answers[4].status == 0 and answers[4].result.code == pb.ERROR_CODE_OK
    # Only the good command changed anything.
    assert answers[4].result.revision == before + 1
    async with CoordinatorClient(group.addresses) as client:
        kvs, _, _ = await client.range(prefix="bad/")
    assert kvs == []


async def test_session_applies_a_resent_command_once(group: Group) -> None:
    leader = await group.leader()
    async with grpc.aio.insecure_channel(leader.replica.address) as channel:
        stub = api_grpc.CoordinatorStub(channel)
        call = stub.Session(timeout=DEADLINE_S)
        await call.write(_message(_session_request(1, "once", 1, client_id="resender")))
        first = (await _answers(call, 1))[1]
        await call.done_writing()
        # As after a broken stream: the same (client id, sequence) on a new one.
        call = stub.Session(timeout=DEADLINE_S)
        await call.write(_message(_session_request(1, "once", 1, client_id="resender")))
        again = (await _answers(call, 1))[1]
        await call.done_writing()
    assert first.status == again.status == 0
    assert first.result == again.result
    async with CoordinatorClient(group.addresses) as client:
        kv = await client.get("once")
    assert kv is not None and kv.version == kv.create_revision == first.result.key_version  # applied once


async def test_a_followers_session_names_the_leader(group: Group) -> None:
    follower = (await group.followers())[0]
    leader = await group.leader()
    async with grpc.aio.insecure_channel(follower.replica.address) as channel:
        call = api_grpc.CoordinatorStub(channel).Session(timeout=DEADLINE_S)
        await call.write(_message(_session_request(7, "k", 1)))
        answer = (await _answers(call, 1))[7]
        await call.done_writing()
    assert answer.status == grpc.StatusCode.UNAVAILABLE.value[0]
    assert answer.leader_address == leader.replica.address
    assert answer.leader_id == leader.options.node_id
    assert "not the leader" in answer.details


async def test_the_client_moves_its_stream_to_the_new_leader(group: Group) -> None:
    async with CoordinatorClient(group.addresses) as client:
        await client.put("before", b"1")
        old = await group.leader()
        assert list(_streams_of(client)) == [old.replica.address]
        target = (await group.followers())[0]
        await client.transfer_leader(target.options.node_id)
        # The old leader's stream answers "not the leader, go to ...": the client follows.
        result = await client.put("after", b"2")
        assert result.ok
        assert list(_streams_of(client)) == [target.replica.address]
        kv = await client.get("after")
    assert kv is not None and kv.version == kv.create_revision == result.revision  # applied once


async def test_the_client_renews_an_old_stream_between_commands(
    group: Group, monkeypatch: pytest.MonkeyPatch
) -> None:
    from paramstore.client import _command_stream

    async with CoordinatorClient(group.addresses) as client:
        await client.put("r/0", b"0")
        first = next(iter(_streams_of(client).values()))
        monkeypatch.setattr(_command_stream, "_STREAM_RENEW_AFTER_S", 0.0)
        assert not first.usable
        await client.put("r/1", b"1")
        second = next(iter(_streams_of(client).values()))
        assert second is not first and first._broken is not None  # closed, replaced
        kvs, _, _ = await client.range(prefix="r/")
    assert [kv.value for kv in kvs] == [b"0", b"1"]
