"""What a power failure does to a killed node's write-ahead log, simulated on its files.

A kill -9 keeps the kernel's page cache, so a killed node's files still hold every byte it
wrote. A power failure keeps only what reached the disk: of a WAL segment, the bytes its last
successful fsync covered, which the node's sync journal records
(``consensus.storage.sync_journal``). ``lose_unsynced_writes`` turns the first state into
the second, for one node whose processes are dead:

* Each segment is durable up to the journal's last size for it, and never less than its
  preamble (the header and hard state records): the WAL writes and syncs those under a
  temporary name before the file gets its segment name, and journals them only after, so
  a segment without a journal line still has them. (Recovery needs them to open the log.)
* The log is cut at its first byte not known to be durable, and the segments after that
  one are removed: a WAL syncs a full segment before it starts the next, so a correct one
  only ever loses the tail of its last segment, and a broken one (the planted ``drop-fsync``
  bug) still leaves a log prefix the node can open, which is what makes its loss visible
  as lost acknowledged writes rather than as a node that cannot start.
* Half the time (seeded) the cut segment keeps a random part of its unsynced bytes instead,
  with its last few bytes zeroed or overwritten with garbage: a torn write. The damage stays
  inside the last record it reaches, the shape of an interrupted append that recovery
  truncates away (``consensus.storage.records``); damage with whole records after it is
  bit rot, which recovery refuses by design and which no fsync policy can protect against.
* Unsynced bytes are those the node wrote, up to the end of the segment's whole records.
  A reused segment (``consensus.storage.recycling``) goes on past them with records of its
  previous life, durable from then: a power loss keeps its length, and the unsynced bytes
  it loses revert to what the disk held before. The page cache no longer shows those, so
  random bytes stand in for them (as a recycled file's old records do, they are never
  whole in the new segment). A segment that grew is cut back instead.
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from consensus.storage.errors import StorageCorruptionError
from consensus.storage.records import RECORD_HEADER_BYTES, scan_records
from consensus.storage.segments import parse_segment_name, record_seed_of

__all__ = ["SegmentCut", "describe_cuts", "lose_unsynced_writes"]

# More than a segment's header and hard state records take.
_PREAMBLE_READ_BYTES = 256
_TORN_BYTES_MAX = 8


@dataclass(frozen=True)
class SegmentCut:
    """What a simulated power loss did to one segment file."""

    name: str
    size: int  # bytes the node wrote (the file's length, unless reused)
    kept: int  # of those, bytes left (0 when removed)
    removed: bool = False
    damage: str = ""  # how the kept bytes end, for a torn write
    reverted: bool = False  # a reused segment: the lost bytes hold stand-ins of old ones

    @property
    def lost(self) -> int:
        return self.size - self.kept


def lose_unsynced_writes(wal_dir: Path, synced: Mapping[str, int], rng: random.Random) -> list[SegmentCut]:
    """Cut the segments of ``wal_dir`` back to what was durable (``synced``: absolute path ->
    synced size, from the sync journal); returns what was done, oldest segment first."""
    named = sorted((parsed, path) for path in wal_dir.iterdir() if (parsed := parse_segment_name(path.name)))
    cuts: list[SegmentCut] = []
    for _, path in named:
        size = path.stat().st_size
        if cuts:  # the log was cut in an earlier segment: nothing after it survives
            path.unlink()
            cuts.append(SegmentCut(path.name, size, 0, removed=True))
            continue
        preamble = _preamble_bytes(path)
        durable = max(synced.get(os.path.abspath(path), 0), preamble if preamble is not None else size)
        if size > durable and (cut := _cut(path, durable, rng)) is not None:
            cuts.append(cut)
    return cuts


def describe_cuts(cuts: list[SegmentCut]) -> str:
    """One line: how many unsynced bytes a node lost, and how."""
    if not cuts:
        return "truncated 0 unsynced bytes (everything was synced)"
    parts = []
    for cut in cuts:
        seq = int(cut.name.split("-", 1)[0])
        if cut.removed:
            parts.append(f"segment {seq} removed")
        else:
            torn = f", torn: {cut.damage}" if cut.damage else ""
            reverted = ", reused: older bytes after them" if cut.reverted else ""
            parts.append(f"segment {seq} {cut.size} -> {cut.kept} bytes{torn}{reverted}")
    return f"truncated {sum(c.lost for c in cuts)} unsynced bytes ({'; '.join(parts)})"


def _preamble_bytes(path: Path) -> int | None:
    """Where the segment's second record ends; None if the file does not start as a segment."""
    with path.open("rb") as file:
        data = file.read(_PREAMBLE_READ_BYTES)
    try:
        scan = scan_records(data, path, tail_may_be_torn=True, records_max=2, seed=record_seed_of(path))
    except StorageCorruptionError:
        return None
    if len(scan.records) < 2:
        return None
    return scan.records[1].payload_end


def _cut(path: Path, durable: int, rng: random.Random) -> SegmentCut | None:
    data = path.read_bytes()
    size = len(data)
    try:
        written = scan_records(data, path, tail_may_be_torn=True, seed=record_seed_of(path)).end_offset
    except StorageCorruptionError:
        written = size
    if written <= durable:
        return None  # nothing written since the last sync (a reused segment's old bytes follow)
    reused = written < size
    unsynced = data[durable:written]
    keep, at, garbled, how = 0, 0, b"", ""
    if len(unsynced) >= 2 and rng.random() >= 0.5:
        keep = rng.randrange(1, len(unsynced))
        at, garbled, how = _tear(unsynced[:keep], path, rng)
    with path.open("r+b") as file:
        if reused:
            file.seek(durable + keep)
            file.write(rng.randbytes(written - durable - keep))
        else:
            file.truncate(durable + keep)
        if garbled:
            file.seek(durable + at)
            file.write(garbled)
    damage = f"kept {keep} of {len(unsynced)} unsynced bytes{how}" if keep else ""
    return SegmentCut(path.name, written, durable + keep, damage=damage, reverted=reused)


def _tear(kept: bytes, path: Path, rng: random.Random) -> tuple[int, bytes, str]:
    """Damage for the end of ``kept`` (unsynced bytes that start at a record boundary) that
    stays inside its last record: (offset in ``kept``, the bytes, a description)."""
    try:
        scan = scan_records(kept, path, tail_may_be_torn=True, seed=record_seed_of(path))
    except StorageCorruptionError:  # not at a record boundary after all: the cut alone tears it
        return len(kept), b"", ""
    # Where the last record the cut reaches starts: an incomplete one, or the last whole one.
    last = scan.torn.offset if scan.torn is not None else scan.records[-1].offset if scan.records else 0
    count = rng.randint(1, _TORN_BYTES_MAX)
    zeros = rng.random() < 0.5
    payload = last + RECORD_HEADER_BYTES
    # Garbage in a complete record header would read as a damaged record with data after it.
    low = last if zeros or len(kept) < payload else payload
    start = max(low, len(kept) - count)
    length = len(kept) - start
    if length == 0:
        return len(kept), b"", ""
    if zeros:
        return start, bytes(length), f", the last {length} zeroed"
    return start, rng.randbytes(length), f", the last {length} garbage"
