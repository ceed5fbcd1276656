"""Push commands between the leader's batcher, the log and the state machine, without
protobuf copies of the gradients.

A Push entry is almost all gradient bytes. Through the generated classes the leader would
copy every gradient three times to build one (``tobytes``, into the message, into its
serialization), and every replica twice more to apply it (into the parsed message, out
of it again). Here:

* ``PushOp`` is the push as the state machine checks and applies it: plain values and
  tensors whose ``data`` is any bytes-like buffer (``decode_tensor`` views it in place);
* ``encode_push_command`` writes the ``ShardCommand`` bytes protobuf would write
  (deterministic serialization, byte for byte: tests compare) with one join, straight from
  the gradient arrays;
* ``parse_push_command`` reads such bytes back with the tensors as slices of the entry's
  own buffer. It takes only the canonical form (each field once, known fields, in any order);
  anything else is ``None`` and the caller parses with protobuf, so a command means the same
  whichever way it was read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from consensus.protowire import LEN, VARINT, NotCanonicalError, enum_value, scan_fields, tag, text, varint
from paramstore.shard._tensors import wire_array
from paramstore.shard._types import ClientSequence
from proto import shard_pb2 as pb

__all__ = ["PushOp", "WireTensor", "encode_push_command", "parse_push_command"]


@dataclass(frozen=True, slots=True)
class WireTensor:
    """A tensor on the wire (as ``pb.Tensor``): element type and raw little-endian bytes."""

    dtype: int
    data: bytes | memoryview


@dataclass(frozen=True, slots=True)
class KeyGradient:
    key: str
    tensor: WireTensor


@dataclass(frozen=True, slots=True)
class PushOp:
    """A Push command (``pb.Push``) as plain values."""

    model: str
    covers: tuple[ClientSequence, ...]
    config_number: int
    gradients: tuple[KeyGradient, ...]
    step: int = 0
    now_ms: int = 0  # the leader's clock when proposed (see proto/shard.proto)

    @classmethod
    def from_proto(cls, op: pb.Push) -> PushOp:
        return cls(
            model=op.model,
            covers=tuple(ClientSequence(c.client_id, c.sequence) for c in op.covers),
            config_number=op.config_number,
            gradients=tuple(
                KeyGradient(item.key, WireTensor(item.tensor.dtype, item.tensor.data))
                for item in op.gradients
            ),
            step=op.step,
            now_ms=op.now_ms,
        )


# ShardCommand.push, and Push / KeyTensor / Tensor / ClientSequence field numbers.
_COMMAND_PUSH = 2
_PUSH_MODEL, _PUSH_COVERS, _PUSH_CONFIG, _PUSH_GRADIENTS, _PUSH_STEP, _PUSH_NOW = 1, 2, 3, 4, 5, 6
_KEY_KEY, _KEY_TENSOR = 1, 2
_TENSOR_DTYPE, _TENSOR_DATA = 1, 2
_COVER_CLIENT, _COVER_SEQUENCE = 1, 2


def _check_schema() -> None:
    """The numbers above are the schema's (``proto/shard.proto``)."""

    def numbers(message: Any, *names: str) -> tuple[int, ...]:
        return tuple(message.DESCRIPTOR.fields_by_name[name].number for name in names)

    expected = {
        numbers(pb.ShardCommand, "push"): (_COMMAND_PUSH,),
        numbers(pb.Push, "model", "covers", "config_number", "gradients", "step", "now_ms"): (
            _PUSH_MODEL,
            _PUSH_COVERS,
            _PUSH_CONFIG,
            _PUSH_GRADIENTS,
            _PUSH_STEP,
            _PUSH_NOW,
        ),
        numbers(pb.KeyTensor, "key", "tensor"): (_KEY_KEY, _KEY_TENSOR),
        numbers(pb.Tensor, "dtype", "data"): (_TENSOR_DTYPE, _TENSOR_DATA),
        numbers(pb.ClientSequence, "client_id", "sequence"): (_COVER_CLIENT, _COVER_SEQUENCE),
    }
    for found, wanted in expected.items():
        if found != wanted:
            raise AssertionError(f"paramstore.shard._push_wire assumes field numbers {wanted}, found {found}")


_check_schema()


def _length_delimited(field_number: int, length: int) -> bytes:
    return tag(field_number, LEN) + varint(length)


def encode_push_command(
    model: str,
    covers: Iterable[ClientSequence],
    gradients: Mapping[str, npt.NDArray[Any]],
    config_number: int,
    step: int,
    now_ms: int = 0,
) -> bytes:
    """``pb.ShardCommand(push=...)`` serialized deterministically, with each gradient's bytes
    copied once (into the result)."""
    head = pb.Push(
        model=model,
        covers=[pb.ClientSequence(client_id=c.client_id, sequence=c.sequence) for c in covers],
        config_number=config_number,
    ).SerializeToString(deterministic=True)
    parts: list[bytes | memoryview] = [b"", head]
    size = len(head)
    for key, gradient in gradients.items():
        wire, flat = wire_array(gradient)
        data = flat.view(np.uint8).data  # a memoryview of the array: nothing copied yet
        tensor_head = tag(_TENSOR_DTYPE, VARINT) + varint(wire)
        if data.nbytes:
            tensor_head += _length_delimited(_TENSOR_DATA, data.nbytes)
        key_bytes = key.encode()
        key_head = _length_delimited(_KEY_KEY, len(key_bytes)) + key_bytes if key_bytes else b""
        key_head += _length_delimited(_KEY_TENSOR, len(tensor_head) + data.nbytes) + tensor_head
        framed = _length_delimited(_PUSH_GRADIENTS, len(key_head) + data.nbytes) + key_head
        parts.append(framed)
        parts.append(data)
        size += len(framed) + data.nbytes
    for number, value in ((_PUSH_STEP, step), (_PUSH_NOW, now_ms)):
        if value:
            tail = tag(number, VARINT) + varint(value)
            parts.append(tail)
            size += len(tail)
    parts[0] = _length_delimited(_COMMAND_PUSH, size)
    return b"".join(parts)


def parse_push_command(data: bytes) -> PushOp | None:
    """The Push command in ``data`` (a whole ``ShardCommand``), its tensors' data slices of
    ``data``; ``None`` when ``data`` is anything else or not in the canonical form."""
    view = memoryview(data)
    try:
        command = scan_fields(view, 0, len(view))
        if len(command) != 1:
            return None
        number, wire_type, start, end = command[0]
        if (number, wire_type) != (_COMMAND_PUSH, LEN):
            return None
        return _parse_push(view, start, end)
    except ValueError:  # NotCanonicalError too
        return None


def _parse_push(view: memoryview, start: int, end: int) -> PushOp:
    model = ""
    config_number = step = now_ms = 0
    covers: list[ClientSequence] = []
    gradients: list[KeyGradient] = []
    for number, wire_type, first, second in scan_fields(
        view, start, end, repeated=frozenset({_PUSH_COVERS, _PUSH_GRADIENTS})
    ):
        if (number, wire_type) == (_PUSH_MODEL, LEN):
            model = text(view, first, second)
        elif (number, wire_type) == (_PUSH_COVERS, LEN):
            covers.append(_parse_cover(view, first, second))
        elif (number, wire_type) == (_PUSH_CONFIG, VARINT):
            config_number = first
        elif (number, wire_type) == (_PUSH_GRADIENTS, LEN):
            gradients.append(_parse_gradient(view, first, second))
        elif (number, wire_type) == (_PUSH_STEP, VARINT):
            step = first
        elif (number, wire_type) == (_PUSH_NOW, VARINT):
            now_ms = first
        else:
            raise NotCanonicalError(f"unexpected field {number}")
    return PushOp(model, tuple(covers), config_number, tuple(gradients), step, now_ms)


def _parse_cover(view: memoryview, start: int, end: int) -> ClientSequence:
    client_id, sequence = "", 0
    for number, wire_type, first, second in scan_fields(view, start, end):
        if (number, wire_type) == (_COVER_CLIENT, LEN):
            client_id = text(view, first, second)
        elif (number, wire_type) == (_COVER_SEQUENCE, VARINT):
            sequence = first
        else:
            raise NotCanonicalError(f"unexpected field {number}")
    return ClientSequence(client_id, sequence)


def _parse_gradient(view: memoryview, start: int, end: int) -> KeyGradient:
    key = ""
    tensor = WireTensor(0, b"")
    for number, wire_type, first, second in scan_fields(view, start, end):
        if (number, wire_type) == (_KEY_KEY, LEN):
            key = text(view, first, second)
        elif (number, wire_type) == (_KEY_TENSOR, LEN):
            tensor = _parse_tensor(view, first, second)
        else:
            raise NotCanonicalError(f"unexpected field {number}")
    return KeyGradient(key, tensor)


def _parse_tensor(view: memoryview, start: int, end: int) -> WireTensor:
    dtype = 0
    data: bytes | memoryview = b""
    for number, wire_type, first, second in scan_fields(view, start, end):
        if (number, wire_type) == (_TENSOR_DTYPE, VARINT):
            dtype = enum_value(first)
        elif (number, wire_type) == (_TENSOR_DATA, LEN):
            data = view[first:second]
        else:
            raise NotCanonicalError(f"unexpected field {number}")
    return WireTensor(dtype, data)
