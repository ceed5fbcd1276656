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
  with its last few bytes zeroed or overwritten with garbage: a torn write. Unsynced bytes
  are those the node wrote: a reused segment's zeros past its last record were synced
  before the segment took its name, so they are durable and never torn. The damage stays
  inside the last record it reaches, the shape of an interrupted append that recovery
  truncates away (``consensus.storage.records``); damage with whole records after it is
  bit rot, which recovery refuses by design and which no fsync policy can protect against.
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from consensus.storage.errors import StorageCorruptionError
from consensus.storage.records import RECORD_HEADER_BYTES, scan_records
from consensus.storage.segments import parse_segment_name

__all__ = ["SegmentCut", "describe_cuts", "lose_unsynced_writes"]

# More than a segment's header and hard state records take.
_PREAMBLE_READ_BYTES = 256
_TORN_BYTES_MAX = 8


@dataclass(frozen=True)
class SegmentCut:
    """What a simulated power loss did to one segment file."""

    name: str
    size: int  # bytes before
    kept: int  # bytes after (0 when removed)
    removed: bool = False
    damage: str = ""  # how the kept bytes end, for a torn write

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
        if size > durable:
            cuts.append(_cut(path, size, durable, rng))
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
            parts.append(f"segment {seq} {cut.size} -> {cut.kept} bytes{torn}")
    return f"truncated {sum(c.lost for c in cuts)} unsynced bytes ({'; '.join(parts)})"


def _preamble_bytes(path: Path) -> int | None:
    """Where the segment's second record ends; None if the file does not start as a segment."""
    with path.open("rb") as file:
        data = file.read(_PREAMBLE_READ_BYTES)
    try:
        scan = scan_records(data, path, tail_may_be_torn=True, records_max=2)
    except StorageCorruptionError:
        return None
    if len(scan.records) < 2:
        return None
    return scan.records[1].payload_end


def _cut(path: Path, size: int, durable: int, rng: random.Random) -> SegmentCut:
    with path.open("rb") as file:
        file.seek(durable)
        unsynced = file.read(size - durable)
    # Only bytes the node wrote after its last sync can be torn. A reused segment was zeroed
    # to its end, and synced, before its first record: past the last record it holds those
    # zeros, durable ones, which no power loss turns into anything else.
    unsynced = unsynced.rstrip(b"\0")
    if len(unsynced) < 2 or rng.random() < 0.5:
        os.truncate(path, durable)
        return SegmentCut(path.name, size, durable)
    with path.open("r+b") as file:
        keep = rng.randrange(1, len(unsynced))
        at, garbled, how = _tear(unsynced[:keep], path, rng)
        file.truncate(durable + keep)
        if garbled:
            file.seek(durable + at)
            file.write(garbled)
    damage = f"kept {keep} of {len(unsynced)} unsynced bytes{how}"
    return SegmentCut(path.name, size, durable + keep, damage=damage)


def _tear(kept: bytes, path: Path, rng: random.Random) -> tuple[int, bytes, str]:
    """Damage for the end of ``kept`` (unsynced bytes that start at a record boundary) that
    stays inside its last record: (offset in ``kept``, the bytes, a description)."""
    try:
        scan = scan_records(kept, path, tail_may_be_torn=True)
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
