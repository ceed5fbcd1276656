"""Push commands framed by hand (``paramstore.shard._push_wire``) against protobuf: the same
bytes written, the same command read back, and anything else left to protobuf."""

from __future__ import annotations

import ml_dtypes
import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from consensus.protowire import varint
from paramstore.shard import (
    ClientSequence,
    PushOp,
    ShardStateMachine,
    decode_result,
    encode_install,
    encode_push,
)
from paramstore.shard._push_wire import parse_push_command
from paramstore.shard._tensors import encode_tensor
from proto import shard_pb2 as pb

DTYPES = [np.dtype("<f4"), np.dtype("<f2"), np.dtype(ml_dtypes.bfloat16)]

names = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)
covers = st.lists(st.builds(ClientSequence, client_id=names, sequence=st.integers(0, 2**64 - 1)), max_size=3)
gradients = st.dictionaries(
    names,
    st.tuples(st.sampled_from(DTYPES), st.lists(st.floats(-1e3, 1e3, width=16), max_size=40)).map(
        lambda item: np.array(item[1], dtype=item[0])
    ),
    max_size=4,
)
uint64 = st.integers(0, 2**64 - 1)


def frame_push(push_bytes: bytes) -> bytes:
    """A ShardCommand whose push field holds ``push_bytes`` as they are."""
    return b"\x12" + varint(len(push_bytes)) + push_bytes


def protobuf_bytes(
    model: str, pairs: list[ClientSequence], grads: dict[str, np.ndarray], config: int, step: int, now_ms: int
) -> bytes:
    return pb.ShardCommand(
        push=pb.Push(
            model=model,
            covers=[pb.ClientSequence(client_id=c.client_id, sequence=c.sequence) for c in pairs],
            config_number=config,
            gradients=[pb.KeyTensor(key=key, tensor=encode_tensor(g)) for key, g in grads.items()],
            step=step,
            now_ms=now_ms,
        )
    ).SerializeToString(deterministic=True)


@given(model=names, pairs=covers, grads=gradients, config=uint64, step=uint64, now_ms=uint64)
def test_hand_framed_push_is_protobufs_deterministic_serialization(
    model: str, pairs: list[ClientSequence], grads: dict[str, np.ndarray], config: int, step: int, now_ms: int
) -> None:
    data = encode_push(model, pairs, grads, config_number=config, step=step, now_ms=now_ms)
    assert data == protobuf_bytes(model, pairs, grads, config, step, now_ms)
    parsed = parse_push_command(data)
    assert parsed is not None
    assert parsed == PushOp.from_proto(pb.ShardCommand.FromString(data).push)
    for item in parsed.gradients:  # views into the entry, not copies
        if not item.tensor.data:
            continue
        assert isinstance(item.tensor.data, memoryview)
        assert item.tensor.data.obj is data


@given(
    model=names,
    pairs=covers,
    grads=gradients,
    step=uint64,
    edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=3),
)
def test_a_mangled_push_reads_as_protobuf_reads_it_or_is_left_to_protobuf(
    model: str,
    pairs: list[ClientSequence],
    grads: dict[str, np.ndarray],
    step: int,
    edits: list[tuple[int, int]],
) -> None:
    data = bytearray(encode_push(model, pairs, grads, config_number=3, step=step, now_ms=1_700_000_000_000))
    for position, value in edits:
        data[position % len(data)] = value
    mangled = bytes(data)
    parsed = parse_push_command(mangled)
    if parsed is None:
        return
    command = pb.ShardCommand.FromString(mangled)  # must parse, and mean the same
    assert command.WhichOneof("op") == "push"
    assert parsed == PushOp.from_proto(command.push)


def test_non_canonical_and_other_commands_are_left_to_protobuf() -> None:
    grads = {"w": np.ones(3, np.float32)}
    data = encode_push("m", [("c", 1)], grads, config_number=2)
    assert parse_push_command(data) is not None
    # protobuf's last-one-wins for a repeated singular field: not the canonical form
    model_again = pb.Push(model="other").SerializeToString()
    inner = pb.ShardCommand.FromString(data).push.SerializeToString() + model_again
    twice = pb.ShardCommand(push=pb.Push.FromString(inner)).SerializeToString()
    assert parse_push_command(frame_push(inner)) is None
    assert parse_push_command(twice) is not None  # protobuf re-serialized it canonically
    assert (
        parse_push_command(pb.ShardCommand(set_workers=pb.SetWorkers(model="m")).SerializeToString()) is None
    )
    assert parse_push_command(b"") is None
    assert parse_push_command(data[:-1]) is None  # cut short
    unknown = frame_push(pb.ShardCommand.FromString(data).push.SerializeToString() + b"\x38\x01")  # field 7
    assert parse_push_command(unknown) is None


def test_both_paths_apply_a_push_the_same_way() -> None:
    values = {"w": np.zeros(4, np.float32)}
    install = encode_install("m", {"name": "sgd", "learning_rate": 1.0}, values, num_shards=1)
    grads = {"w": np.array([1, 2, 3, 4], np.float32)}
    fast, slow = ShardStateMachine(), ShardStateMachine()
    for machine in (fast, slow):
        machine.apply_bytes(install)
    canonical = encode_push("m", [("c", 1)], grads)
    reordered = frame_push(
        pb.Push(gradients=pb.ShardCommand.FromString(canonical).push.gradients).SerializeToString()
        + pb.Push(model="m", covers=[pb.ClientSequence(client_id="c", sequence=1)]).SerializeToString()
    )
    assert parse_push_command(reordered) == parse_push_command(canonical)  # fields in any order
    # The model named twice (protobuf: the last one counts) is not canonical: protobuf reads it.
    twice = frame_push(
        pb.Push(model="x").SerializeToString()
        + pb.ShardCommand.FromString(canonical).push.SerializeToString()
    )
    assert parse_push_command(twice) is None
    assert decode_result(fast.apply_bytes(canonical)).ok
    assert decode_result(slow.apply_bytes(twice)).ok
    np.testing.assert_array_equal(fast.pull("m", ["w"])["w"], slow.pull("m", ["w"])["w"])
    np.testing.assert_array_equal(fast.pull("m", ["w"])["w"], -grads["w"])
