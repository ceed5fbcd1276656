"""The store's tensor streams framed by hand (``paramstore._piece_wire``) against protobuf:
the same bytes written, the same messages read back (pieces as slices of the message), and
anything else left to protobuf."""

from __future__ import annotations

from typing import cast

import grpc
import numpy as np
import pytest
from google.protobuf.message import DecodeError
from hypothesis import given
from hypothesis import strategies as st

from paramstore._piece_wire import (
    Piece,
    PushMessage,
    encode_pull_responses,
    encode_push_pieces,
    parse_pull_response,
    parse_push_request,
)
from paramstore.server._service_handlers import add_servicer
from proto import shard_pb2 as shard_pb
from proto import store_service_pb2 as api

names = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)
weights = st.dictionaries(
    names,
    st.lists(st.floats(-1e6, 1e6, width=32), max_size=40).map(lambda values: np.array(values, np.float32)),
    max_size=5,
)
uint64 = st.integers(0, 2**64 - 1)


def protobuf_messages(step: int, pieces: list[tuple[str, bytes]], piece_bytes: int) -> list[bytes]:
    """What the store sent before hand framing: pieces gathered into messages of
    ``piece_bytes`` or more, the step in the first, through the generated classes."""
    out: list[bytes] = []
    message = api.PullResponse(step=step)
    held = 0
    for key, data in pieces:
        message.weights.append(api.TensorPiece(key=key, dtype=shard_pb.D_TYPE_FLOAT32, data=data))
        held += len(data)
        if held >= piece_bytes:
            out.append(message.SerializeToString(deterministic=True))
            message, held = api.PullResponse(), 0
    if message.weights or not out:
        out.append(message.SerializeToString(deterministic=True))
    return out


def split(
    arrays: dict[str, np.ndarray], step_bytes: int, dtype: int = shard_pb.D_TYPE_FLOAT32
) -> list[Piece]:
    pieces = []
    for key, array in arrays.items():
        data = array.view(np.uint8).data
        for start in range(0, data.nbytes, step_bytes) if data.nbytes else range(1):
            pieces.append(Piece(key, dtype, data[start : start + step_bytes]))
    return pieces


@given(step=uint64, arrays=weights, step_elements=st.integers(1, 12), piece_bytes=st.integers(1, 200))
def test_hand_framed_responses_are_protobufs_deterministic_serialization(
    step: int, arrays: dict[str, np.ndarray], step_elements: int, piece_bytes: int
) -> None:
    pieces = split(arrays, 4 * step_elements)
    messages = encode_pull_responses(step, pieces, piece_bytes)
    assert messages == protobuf_messages(step, [(p.key, bytes(p.data)) for p in pieces], piece_bytes)
    read = [parse_pull_response(message) for message in messages]
    assert [s for s, _ in read] == [step] + [0] * (len(messages) - 1)
    got = [(p.key, p.dtype, bytes(p.data)) for _, message_pieces in read for p in message_pieces]
    assert got == [(p.key, p.dtype, bytes(p.data)) for p in pieces]
    for message, (_, message_pieces) in zip(messages, read, strict=True):
        for piece in message_pieces:  # slices of the response, not copies
            if piece.data:
                assert isinstance(piece.data, memoryview)
                assert piece.data.obj is message


def test_no_pieces_is_one_message_with_the_step() -> None:
    assert encode_pull_responses(7, [], 1 << 20) == [api.PullResponse(step=7).SerializeToString()]
    assert encode_pull_responses(0, [], 1 << 20) == [b""]
    assert parse_pull_response(b"") == (0, [])


def test_other_forms_are_read_by_protobuf() -> None:
    piece = api.TensorPiece(key="w", dtype=shard_pb.D_TYPE_FLOAT32, data=b"\x00\x00\x80?")
    canonical = api.PullResponse(step=3, weights=[piece]).SerializeToString()
    # The step twice (protobuf keeps the last), and a field this parser does not know.
    step_twice = canonical + b"\x08\x05"
    unknown_field = canonical + b"\x18\x01"
    for data in (step_twice, unknown_field):
        message = api.PullResponse.FromString(data)
        step, pieces = parse_pull_response(data)
        assert step == message.step
        assert pieces == [Piece("w", shard_pb.D_TYPE_FLOAT32, b"\x00\x00\x80?")]
    assert parse_pull_response(step_twice)[0] == 5


@given(
    arrays=weights,
    dtype=st.sampled_from([shard_pb.D_TYPE_FLOAT32, shard_pb.D_TYPE_BFLOAT16, 0]),
    step_elements=st.integers(1, 12),
    piece_bytes=st.integers(1, 200),
)
def test_hand_framed_push_pieces_are_protobufs_deterministic_serialization(
    arrays: dict[str, np.ndarray], dtype: int, step_elements: int, piece_bytes: int
) -> None:
    pieces = split(arrays, 4 * step_elements, dtype)
    messages = encode_push_pieces(pieces, piece_bytes)
    expected: list[api.PushRequest] = []
    held = 0
    for piece in pieces:  # the client's rule before hand framing: a new message past piece_bytes
        if not expected or (held and held + len(piece.data) > piece_bytes):
            expected.append(api.PushRequest())
            held = 0
        expected[-1].gradients.append(
            api.TensorPiece(key=piece.key, dtype=piece.dtype, data=bytes(piece.data))
        )
        held += len(piece.data)
    assert messages == [m.SerializeToString(deterministic=True) for m in expected]
    read = [parse_push_request(message) for message in messages]
    assert [(p.key, p.dtype, bytes(p.data)) for m in read for p in m.pieces] == [
        (p.key, p.dtype, bytes(p.data)) for p in pieces
    ]
    assert not any(m.has_header_fields for m in read)
    for message, parsed in zip(messages, read, strict=True):
        assert all(p.data.obj is message for p in parsed.pieces if isinstance(p.data, memoryview))


@given(model=names, client_id=names, sequence=uint64, config=uint64, step=uint64)
def test_push_header_is_read_as_protobuf_reads_it(
    model: str, client_id: str, sequence: int, config: int, step: int
) -> None:
    data = api.PushRequest(
        model=model, client_id=client_id, sequence=sequence, config_number=config, step=step
    ).SerializeToString()
    assert parse_push_request(data) == PushMessage(model, client_id, sequence, config, step)
    # Protobuf's parse of another form: the sequence twice (the last one counts).
    twice = parse_push_request(data + b"\x18\x07")
    assert (twice.model, twice.sequence, twice.step) == (model, 7, step)


def test_garbage_is_a_decode_error() -> None:
    with pytest.raises(DecodeError):
        parse_pull_response(b"\x12\x05ab")  # a weights field cut short
    with pytest.raises(DecodeError):
        parse_push_request(b"\x2a\x05ab")  # a gradients field cut short


def test_a_raw_response_method_must_exist() -> None:
    server = cast(grpc.aio.Server, object())  # refused before the server is used
    with pytest.raises(ValueError, match=r"no method\(s\) \['Pul'\]"):
        add_servicer(server, object(), api.DESCRIPTOR.services_by_name["Store"], raw_responses={"Pul"})
