"""Encoding and decoding of coordinator commands and results (proto/coordinator.proto)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paramstore.coordinator import (
    AddGroup,
    AssignShards,
    Command,
    CommandDecodeError,
    CommandResult,
    CompareAndSet,
    Delete,
    DeletePrefix,
    DeleteRange,
    ErrorCode,
    GroupMember,
    KeepAlive,
    LeafSpec,
    ModelSpec,
    Operation,
    Put,
    RegisterModel,
    RegisterWorker,
    RemoveGroup,
    SyncMode,
    Tick,
    UnregisterWorker,
    decode_command,
    decode_result,
    encode_command,
    encode_result,
)
from proto import coordinator_pb2 as pb

texts = st.text(max_size=12)
ids = st.integers(0, 2**64 - 1)
specs = st.builds(
    ModelSpec,
    name=texts,
    leaves=st.lists(
        st.builds(LeafSpec, texts, st.lists(st.integers(0, 2**20), max_size=4).map(tuple), texts), max_size=3
    ).map(tuple),
    num_shards=st.integers(0, 2**32 - 1),
    optimizer_json=texts,
    sync_mode=st.sampled_from(SyncMode),
    staleness_bound=st.integers(0, 2**32 - 1),
)
operations: st.SearchStrategy[Operation] = st.one_of(
    st.builds(Put, texts, st.binary(max_size=16), texts),
    st.builds(Delete, texts),
    st.builds(DeleteRange, texts, texts),
    st.builds(DeletePrefix, texts),
    st.builds(CompareAndSet, texts, st.binary(max_size=8), expected_value=st.binary(max_size=8), lease=texts),
    st.builds(CompareAndSet, texts, st.binary(max_size=8), expected_version=ids),
    st.builds(CompareAndSet, texts, st.binary(max_size=8), expect_absent=st.just(True)),
    st.builds(AddGroup, ids, st.lists(st.builds(GroupMember, ids, texts), max_size=3).map(tuple)),
    st.builds(RemoveGroup, ids),
    st.builds(
        AssignShards, texts, st.lists(st.tuples(st.integers(0, 2**32 - 1), ids), max_size=4).map(tuple)
    ),
    st.builds(RegisterWorker, texts, texts, ids),
    st.builds(KeepAlive, texts),
    st.builds(UnregisterWorker, texts),
    st.builds(RegisterModel, specs),
    st.just(Tick()),
)


@given(op=operations, client_id=texts, sequence=ids, now_ms=ids)
def test_every_command_round_trips(op: Operation, client_id: str, sequence: int, now_ms: int) -> None:
    data = encode_command(op, client_id=client_id, sequence=sequence, now_ms=now_ms)
    assert decode_command(data) == Command(op, client_id, sequence, now_ms)
    assert encode_command(op, client_id=client_id, sequence=sequence, now_ms=now_ms) == data


@given(
    code=st.sampled_from(ErrorCode),
    message=texts,
    numbers=st.tuples(ids, ids, ids, ids, ids),
    more=st.booleans(),
)
def test_every_result_round_trips(
    code: ErrorCode, message: str, numbers: tuple[int, int, int, int, int], more: bool
) -> None:
    revision, config_number, key_version, deleted, deadline = numbers
    result = CommandResult(code, message, revision, config_number, key_version, deleted, more, deadline)
    assert decode_result(encode_result(result)) == result


@pytest.mark.parametrize(
    "command",
    [
        pb.Command(client_id="c", sequence=1),  # no operation
        pb.Command(compare_and_set=pb.CompareAndSet(key="k")),  # no expectation
        pb.Command(compare_and_set=pb.CompareAndSet(key="k", expect_absent=False)),
        pb.Command(register_model=pb.RegisterModel(spec=pb.ModelSpec(name="m", sync_mode=9))),  # type: ignore[arg-type]
        pb.Command(register_model=pb.RegisterModel(spec=pb.ModelSpec(name="m"))),  # sync mode unspecified
    ],
)
def test_structurally_broken_commands_do_not_decode(command: pb.Command) -> None:
    with pytest.raises(CommandDecodeError):
        decode_command(command.SerializeToString())


def test_garbage_and_unknown_codes_do_not_decode() -> None:
    with pytest.raises(CommandDecodeError):
        decode_command(b"\x0a\x05ab")  # a truncated string field
    with pytest.raises(CommandDecodeError):
        decode_command(b"\x0a\x02\xff\xfe")  # client_id that is not UTF-8
    with pytest.raises(CommandDecodeError):
        decode_result(pb.CommandResult(code=0).SerializeToString())  # type: ignore[arg-type]
    with pytest.raises(CommandDecodeError):
        decode_result(b"\xff")


def test_the_schema_is_the_coordinator_package() -> None:
    assert pb.DESCRIPTOR.name == "proto/coordinator.proto"
    assert pb.DESCRIPTOR.package == "paramstore.coordinator"
    assert {code.name for code in ErrorCode} == {
        value.name.removeprefix("ERROR_CODE_")
        for value in pb.ErrorCode.DESCRIPTOR.values
        if value.name != "ERROR_CODE_UNSPECIFIED"
    }
    assert all(pb.ErrorCode.Value(f"ERROR_CODE_{code.name}") == code for code in ErrorCode)
    assert all(pb.SyncMode.Value(f"SYNC_MODE_{mode.name}") == mode for mode in SyncMode)
