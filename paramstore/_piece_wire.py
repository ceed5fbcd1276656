"""The tensor streams of the store service, ``PullResponse`` and ``PushRequest``, framed by
hand on both ends.

Both are almost all tensor bytes (``TensorPiece.data``), and through the generated classes
each byte was copied three times by the sender (``tobytes``, into the message, into its
serialization) before grpcio's own copy, and twice by the receiver (into the parsed message,
out of it again as ``piece.data``). Here the sender writes each message with one join
straight from views of its arrays (``encode_pull_responses``, ``encode_push_pieces``; the
bytes are those of protobuf's deterministic serialization, tests compare), and the receiver
reads the pieces as slices of the bytes grpcio handed over (``parse_pull_response``,
``parse_push_request``).

The methods are registered with no (de)serializer for these messages, on the server
(``paramstore.server._service_handlers``) and in the client's stub, so these bytes are what
grpcio sends and hands over. A message in another form (a field repeated, an unknown field)
is parsed by protobuf instead, and means the same either way; other senders and receivers,
with the generated classes, interoperate unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from consensus.protowire import LEN, VARINT, NotCanonicalError, enum_value, scan_fields, tag, text, varint
from proto import store_service_pb2 as api

__all__ = [
    "Piece",
    "PushMessage",
    "encode_pull_responses",
    "encode_push_pieces",
    "parse_pull_response",
    "parse_push_request",
]

_PULL_STEP, _PULL_WEIGHTS = 1, 2
_PUSH_MODEL, _PUSH_CLIENT, _PUSH_SEQUENCE, _PUSH_CONFIG, _PUSH_GRADIENTS, _PUSH_STEP = 1, 2, 3, 4, 5, 6
_PIECE_KEY, _PIECE_DTYPE, _PIECE_DATA = 1, 2, 3


def _check_schema() -> None:
    """The numbers above are the schema's (``proto/store_service.proto``)."""

    def numbers(message: Any, *names: str) -> tuple[int, ...]:
        return tuple(message.DESCRIPTOR.fields_by_name[name].number for name in names)

    expected = {
        numbers(api.PullResponse, "step", "weights"): (_PULL_STEP, _PULL_WEIGHTS),
        numbers(api.PushRequest, "model", "client_id", "sequence", "config_number", "gradients", "step"): (
            _PUSH_MODEL,
            _PUSH_CLIENT,
            _PUSH_SEQUENCE,
            _PUSH_CONFIG,
            _PUSH_GRADIENTS,
            _PUSH_STEP,
        ),
        numbers(api.TensorPiece, "key", "dtype", "data"): (_PIECE_KEY, _PIECE_DTYPE, _PIECE_DATA),
    }
    for found, wanted in expected.items():
        if found != wanted:
            raise AssertionError(f"paramstore._piece_wire assumes field numbers {wanted}, found {found}")


_check_schema()


@dataclass(frozen=True, slots=True)
class Piece:
    """One ``TensorPiece``: its data a slice of the message it came in (or of the array it
    is sent from)."""

    key: str
    dtype: int
    data: bytes | memoryview


@dataclass(frozen=True, slots=True)
class PushMessage:
    """One ``PushRequest`` of a push stream as plain values."""

    model: str = ""
    client_id: str = ""
    sequence: int = 0
    config_number: int = 0
    step: int = 0
    pieces: tuple[Piece, ...] = ()

    @property
    def has_header_fields(self) -> bool:
        return any((self.model, self.client_id, self.sequence, self.config_number, self.step))


# ---- writing ------------------------------------------------------------------------------------


def _framed_piece(field_number: int, key: str, dtype: int, data_bytes: int) -> bytes:
    """A ``TensorPiece`` as field ``field_number`` of its message, up to its data's length:
    the data itself follows."""
    body = b""
    key_bytes = key.encode()
    if key_bytes:
        body += tag(_PIECE_KEY, LEN) + varint(len(key_bytes)) + key_bytes
    if dtype:
        body += tag(_PIECE_DTYPE, VARINT) + varint(dtype)
    if data_bytes:
        body += tag(_PIECE_DATA, LEN) + varint(data_bytes)
    return tag(field_number, LEN) + varint(len(body) + data_bytes) + body


def _nbytes(data: bytes | memoryview) -> int:
    return data.nbytes if isinstance(data, memoryview) else len(data)


def _append_piece(parts: list[bytes | memoryview], field_number: int, piece: Piece) -> int:
    """Append ``piece``'s framing and data to ``parts``; returns its data bytes."""
    size = _nbytes(piece.data)
    parts.append(_framed_piece(field_number, piece.key, piece.dtype, size))
    if size:
        parts.append(piece.data)
    return size


def encode_pull_responses(step: int, pieces: Iterable[Piece], piece_bytes: int) -> list[bytes]:
    """The ``PullResponse`` messages of a pull: each holds pieces until it has
    ``piece_bytes`` of data or more (the last may have less), the first holds ``step``. Each
    message is one join, the only copy of the data made here; at least one message."""
    messages: list[bytes] = []
    parts: list[bytes | memoryview] = [tag(_PULL_STEP, VARINT) + varint(step)] if step else []
    held = 0
    for piece in pieces:
        held += _append_piece(parts, _PULL_WEIGHTS, piece)
        if held >= piece_bytes:
            messages.append(b"".join(parts))
            parts, held = [], 0
    if parts or not messages:
        messages.append(b"".join(parts))
    return messages


def encode_push_pieces(pieces: Iterable[Piece], piece_bytes: int) -> list[bytes]:
    """``PushRequest`` messages holding only ``pieces`` (the stream's header, a message of
    its own, goes before them): each at most ``piece_bytes`` of data unless one piece alone
    is more. Each message is one join, the only copy of the data made here."""
    messages: list[bytes] = []
    parts: list[bytes | memoryview] = []
    held = 0
    for piece in pieces:
        size = _nbytes(piece.data)
        if held and held + size > piece_bytes:
            messages.append(b"".join(parts))
            parts, held = [], 0
        held += _append_piece(parts, _PUSH_GRADIENTS, piece)
    if parts:
        messages.append(b"".join(parts))
    return messages


# ---- reading ------------------------------------------------------------------------------------


def parse_pull_response(data: bytes) -> tuple[int, list[Piece]]:
    """The step and the pieces of one ``PullResponse``, the pieces' data slices of ``data``
    when it is in protobuf's form, else as protobuf parses it. ``DecodeError``
    (``google.protobuf.message``) when it is no ``PullResponse``."""
    view = memoryview(data)
    try:
        step = 0
        pieces: list[Piece] = []
        for number, wire_type, first, second in scan_fields(
            view, 0, len(view), repeated=frozenset({_PULL_WEIGHTS})
        ):
            if (number, wire_type) == (_PULL_STEP, VARINT):
                step = first
            elif (number, wire_type) == (_PULL_WEIGHTS, LEN):
                pieces.append(_parse_piece(view, first, second))
            else:
                raise NotCanonicalError(f"unexpected field {number}")
        return step, pieces
    except ValueError:  # NotCanonicalError too
        message = api.PullResponse.FromString(data)
        return message.step, [Piece(p.key, p.dtype, p.data) for p in message.weights]


def parse_push_request(data: bytes) -> PushMessage:
    """One ``PushRequest``, the pieces' data slices of ``data`` when it is in protobuf's
    form, else as protobuf parses it. ``DecodeError`` when it is no ``PushRequest``."""
    view = memoryview(data)
    try:
        fields: dict[str, Any] = {}
        pieces: list[Piece] = []
        for number, wire_type, first, second in scan_fields(
            view, 0, len(view), repeated=frozenset({_PUSH_GRADIENTS})
        ):
            if wire_type == LEN and number in _PUSH_TEXT_FIELDS:
                fields[_PUSH_TEXT_FIELDS[number]] = text(view, first, second)
            elif wire_type == VARINT and number in _PUSH_NUMBER_FIELDS:
                fields[_PUSH_NUMBER_FIELDS[number]] = first
            elif (number, wire_type) == (_PUSH_GRADIENTS, LEN):
                pieces.append(_parse_piece(view, first, second))
            else:
                raise NotCanonicalError(f"unexpected field {number}")
        return PushMessage(**fields, pieces=tuple(pieces))
    except ValueError:  # NotCanonicalError too
        message = api.PushRequest.FromString(data)
        return PushMessage(
            model=message.model,
            client_id=message.client_id,
            sequence=message.sequence,
            config_number=message.config_number,
            step=message.step,
            pieces=tuple(Piece(p.key, p.dtype, p.data) for p in message.gradients),
        )


_PUSH_TEXT_FIELDS = {_PUSH_MODEL: "model", _PUSH_CLIENT: "client_id"}
_PUSH_NUMBER_FIELDS = {_PUSH_SEQUENCE: "sequence", _PUSH_CONFIG: "config_number", _PUSH_STEP: "step"}


def _parse_piece(view: memoryview, start: int, end: int) -> Piece:
    key = ""
    dtype = 0
    data: bytes | memoryview = b""
    for number, wire_type, first, second in scan_fields(view, start, end):
        if (number, wire_type) == (_PIECE_KEY, LEN):
            key = text(view, first, second)
        elif (number, wire_type) == (_PIECE_DTYPE, VARINT):
            dtype = enum_value(first)
        elif (number, wire_type) == (_PIECE_DATA, LEN):
            data = view[first:second]
        else:
            raise NotCanonicalError(f"unexpected field {number}")
    return Piece(key, dtype, data)
