"""The simulated application: an append-only register of applied client payloads.

It is the smallest state machine that still lets every safety property be checked: its
state after applying log index ``i`` is a (count, running digest) pair that must be the
same on every node, a read returns a set of payloads whose contents can be compared with
what clients were told, and a snapshot is its full image (so InstallSnapshot carries real,
verifiable bytes). The digest is a keyed-free BLAKE2b chain, which (unlike ``hash()``)
does not depend on the interpreter's hash seed.
"""

from __future__ import annotations

import hashlib
import struct

from consensus.messages import Entry, EntryKind

_MAGIC = b"REG1"
_HEADER = struct.Struct(">4sQI16s")  # magic, applied index, payload count, digest
_LENGTH = struct.Struct(">I")
_DIGEST_BYTES = 16
_EMPTY_DIGEST = bytes(_DIGEST_BYTES)


class SnapshotFormatError(ValueError):
    """Snapshot bytes that do not decode to a register image (or whose digest is wrong)."""


def chain_digest(digest: bytes, payload: bytes) -> bytes:
    """The register's digest after appending ``payload`` to a state whose digest was ``digest``."""
    return hashlib.blake2b(digest + _LENGTH.pack(len(payload)) + payload, digest_size=_DIGEST_BYTES).digest()


class RegisterStateMachine:
    """Applied payloads in order, their count and a running digest, and the applied index."""

    __slots__ = ("applied_index", "digest", "members", "payloads")

    def __init__(self) -> None:
        self.applied_index = 0
        self.payloads: list[bytes] = []
        self.members: set[bytes] = set()
        self.digest = _EMPTY_DIGEST

    @property
    def fingerprint(self) -> tuple[int, bytes]:
        """What must agree between any two nodes that applied up to the same index."""
        return len(self.payloads), self.digest

    def apply(self, entry: Entry) -> None:
        """Apply the next committed entry. NOOP and CONFIG entries only move the index."""
        if entry.index != self.applied_index + 1:
            raise ValueError(
                f"apply out of order: entry {entry.index} after applied index {self.applied_index}"
            )
        self.applied_index = entry.index
        if entry.kind == EntryKind.NORMAL:
            self.payloads.append(entry.data)
            self.members.add(entry.data)
            self.digest = chain_digest(self.digest, entry.data)

    def snapshot_bytes(self) -> bytes:
        parts = [_HEADER.pack(_MAGIC, self.applied_index, len(self.payloads), self.digest)]
        for payload in self.payloads:
            parts.append(_LENGTH.pack(len(payload)))
            parts.append(payload)
        return b"".join(parts)

    @classmethod
    def restore(cls, data: bytes) -> RegisterStateMachine:
        """Rebuild from ``snapshot_bytes`` output, re-deriving (and so verifying) the digest."""
        if len(data) < _HEADER.size:
            raise SnapshotFormatError(f"snapshot of {len(data)} bytes is shorter than its header")
        magic, applied_index, count, digest = _HEADER.unpack_from(data, 0)
        if magic != _MAGIC:
            raise SnapshotFormatError(f"snapshot magic {magic!r}, expected {_MAGIC!r}")
        machine = cls()
        machine.applied_index = applied_index
        offset = _HEADER.size
        running = _EMPTY_DIGEST
        for _ in range(count):
            if offset + _LENGTH.size > len(data):
                raise SnapshotFormatError("snapshot ends inside a payload length")
            (length,) = _LENGTH.unpack_from(data, offset)
            offset += _LENGTH.size
            payload = data[offset : offset + length]
            if len(payload) != length:
                raise SnapshotFormatError("snapshot ends inside a payload")
            offset += length
            machine.payloads.append(payload)
            running = chain_digest(running, payload)
        if offset != len(data):
            raise SnapshotFormatError(f"{len(data) - offset} stray bytes after the last payload")
        if running != digest:
            raise SnapshotFormatError("snapshot digest does not match its payloads")
        machine.members = set(machine.payloads)
        machine.digest = running
        return machine
