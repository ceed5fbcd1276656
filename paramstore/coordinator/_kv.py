"""The coordinator's key/value store: sorted keys, revisions, and a bounded change history.

Every modification of one key is one revision (the global counter goes up by one), and the
key's ``version`` becomes that revision. The last changes are kept in a ring bounded in
count and bytes; ``changes_since`` serves watchers from it and says ``COMPACTED`` when the
changes they ask for have been dropped (the watcher then re-reads and watches from the
revision of its read).

The store checks nothing about who may write; callers validate first, so that every method
here that changes state succeeds.
"""

from __future__ import annotations

import bisect
import itertools
from collections import deque
from collections.abc import Iterable, Iterator

from paramstore.coordinator._limits import CoordinatorLimits
from paramstore.coordinator._types import (
    Change,
    ChangeKind,
    CoordinatorError,
    ErrorCode,
    KeyValue,
    RangeResult,
    SnapshotFormatError,
    WatchBatch,
)
from proto import coordinator_pb2 as pb

__all__ = ["KeyValueStore"]


def _kv_bytes(key: str, value: bytes) -> int:
    return len(key.encode()) + len(value)


class KeyValueStore:
    def __init__(self, limits: CoordinatorLimits) -> None:
        self.limits = limits
        self.revision = 0
        # Every change with a revision <= compacted_revision has left the history ring.
        self.compacted_revision = 0
        self._kvs: dict[str, KeyValue] = {}
        self._sorted_keys: list[str] = []
        self._kv_bytes = 0
        self._history: deque[Change] = deque()
        self._history_bytes = 0
        self._keys_by_lease: dict[str, set[str]] = {}

    # ---- reads ------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._kvs)

    @property
    def kv_bytes(self) -> int:
        return self._kv_bytes

    def get(self, key: str) -> KeyValue | None:
        return self._kvs.get(key)

    def _keys_from(self, start: str, end: str | None) -> Iterator[str]:
        """Keys in [start, end) in order; ``end`` None means no upper bound."""
        position = bisect.bisect_left(self._sorted_keys, start)
        for key in itertools.islice(self._sorted_keys, position, None):
            if end is not None and key >= end:
                return
            yield key

    def _check_limit(self, limit: int) -> None:
        if not 1 <= limit <= self.limits.range_limit_max:
            raise CoordinatorError(
                ErrorCode.INVALID_ARGUMENT,
                f"limit must be in [1, {self.limits.range_limit_max}], got {limit}",
            )

    def range(self, start: str, end: str | None, limit: int) -> RangeResult:
        self._check_limit(limit)
        kvs: list[KeyValue] = []
        more = False
        for key in self._keys_from(start, end):
            if len(kvs) == limit:
                more = True
                break
            kvs.append(self._kvs[key])
        return RangeResult(tuple(kvs), more, self.revision)

    def prefix(self, prefix: str, limit: int) -> RangeResult:
        self._check_limit(limit)
        kvs: list[KeyValue] = []
        more = False
        for key in self._keys_from(prefix, None):
            if not key.startswith(prefix):
                break
            if len(kvs) == limit:
                more = True
                break
            kvs.append(self._kvs[key])
        return RangeResult(tuple(kvs), more, self.revision)

    def changes_since(self, revision: int, prefix: str, limit: int) -> WatchBatch:
        """The changes after ``revision`` (exclusive) to keys starting with ``prefix``."""
        self._check_limit(limit)
        if revision > self.revision:
            raise CoordinatorError(
                ErrorCode.FUTURE_REVISION,
                f"revision {revision} is newer than the store's current revision {self.revision}",
            )
        if revision < self.compacted_revision:
            raise CoordinatorError(
                ErrorCode.COMPACTED,
                f"changes up to revision {self.compacted_revision} were compacted (asked for changes "
                f"after {revision}); re-read the keys and watch from the revision of that read",
            )
        changes: list[Change] = []
        next_revision = revision
        # The ring holds contiguous revisions compacted_revision + 1 .. revision. A watcher
        # is mostly near the end: walk in from the nearer side (a deque indexes in O(n)).
        skip = revision - self.compacted_revision
        newer = len(self._history) - skip
        if newer < skip:
            recent = list(itertools.islice(reversed(self._history), newer))
            recent.reverse()
            scan: Iterable[Change] = recent
        else:
            scan = itertools.islice(self._history, skip, None)
        for change in scan:
            next_revision = change.revision
            if change.key.startswith(prefix):
                changes.append(change)
                if len(changes) == limit:
                    break
        return WatchBatch(tuple(changes), next_revision, next_revision < self.revision, self.revision)

    def leased_keys(self, worker_id: str) -> list[str]:
        """The keys owned by ``worker_id``'s lease, sorted."""
        return sorted(self._keys_by_lease.get(worker_id, ()))

    def keys_in(self, start: str, end: str | None, count_max: int) -> tuple[list[str], bool]:
        """Up to ``count_max`` keys in [start, end), and whether more are left."""
        keys = list(itertools.islice(self._keys_from(start, end), count_max + 1))
        return keys[:count_max], len(keys) > count_max

    def keys_with_prefix(self, prefix: str, count_max: int) -> tuple[list[str], bool]:
        matching = itertools.takewhile(lambda key: key.startswith(prefix), self._keys_from(prefix, None))
        keys = list(itertools.islice(matching, count_max + 1))
        return keys[:count_max], len(keys) > count_max

    def room_for(self, key: str, value: bytes) -> str | None:
        """Why putting ``key`` = ``value`` would overflow the store, or None if it fits."""
        old = self._kvs.get(key)
        if old is None and len(self._kvs) >= self.limits.keys_max:
            return f"the store holds its maximum of {self.limits.keys_max} keys"
        grown = self._kv_bytes + _kv_bytes(key, value) - (0 if old is None else _kv_bytes(key, old.value))
        if grown > self.limits.kv_bytes_max:
            return f"the store would hold {grown} key and value bytes (maximum {self.limits.kv_bytes_max})"
        return None

    # ---- changes ----------------------------------------------------------------------------

    def put(self, key: str, value: bytes, lease: str) -> KeyValue:
        assert self.room_for(key, value) is None, "callers check room_for first"
        self.revision += 1
        old = self._kvs.get(key)
        if old is None:
            bisect.insort(self._sorted_keys, key)
            create_revision = self.revision
        else:
            self._kv_bytes -= _kv_bytes(key, old.value)
            self._unlease(old)
            create_revision = old.create_revision
        kv = KeyValue(key, value, self.revision, create_revision, lease)
        self._kvs[key] = kv
        self._kv_bytes += _kv_bytes(key, value)
        if lease:
            self._keys_by_lease.setdefault(lease, set()).add(key)
        self._record(Change(self.revision, ChangeKind.PUT, key, value))
        return kv

    def delete(self, key: str) -> bool:
        old = self._kvs.pop(key, None)
        if old is None:
            return False
        self.revision += 1
        position = bisect.bisect_left(self._sorted_keys, key)
        assert self._sorted_keys[position] == key, "sorted keys and the key table disagree"
        del self._sorted_keys[position]
        self._kv_bytes -= _kv_bytes(key, old.value)
        self._unlease(old)
        self._record(Change(self.revision, ChangeKind.DELETE, key))
        return True

    def _unlease(self, kv: KeyValue) -> None:
        if not kv.lease:
            return
        keys = self._keys_by_lease[kv.lease]
        keys.discard(kv.key)
        if not keys:
            del self._keys_by_lease[kv.lease]

    def _record(self, change: Change) -> None:
        assert change.revision == self.revision
        self._history.append(change)
        self._history_bytes += _kv_bytes(change.key, change.value)
        while (
            len(self._history) > self.limits.history_changes_max
            or self._history_bytes > self.limits.history_bytes_max
        ):
            dropped = self._history.popleft()
            self._history_bytes -= _kv_bytes(dropped.key, dropped.value)
            self.compacted_revision = dropped.revision
        assert self._history, "one change always fits the history (checked by the limits)"

    # ---- snapshot ---------------------------------------------------------------------------

    def to_proto(self, state: pb.CoordinatorState) -> None:
        state.revision = self.revision
        state.compacted_revision = self.compacted_revision
        for key in self._sorted_keys:
            kv = self._kvs[key]
            state.keys.add(
                key=key,
                value=kv.value,
                version=kv.version,
                create_revision=kv.create_revision,
                lease=kv.lease,
            )
        for change in self._history:
            state.history.add(
                revision=change.revision, kind=int(change.kind), key=change.key, value=change.value
            )

    @classmethod
    def from_proto(cls, state: pb.CoordinatorState, limits: CoordinatorLimits) -> KeyValueStore:
        store = cls(limits)
        store.revision = state.revision
        store.compacted_revision = state.compacted_revision
        if store.compacted_revision > store.revision:
            raise SnapshotFormatError(
                f"compacted revision {store.compacted_revision} is past the revision {store.revision}"
            )
        previous = None
        for stored in state.keys:
            if previous is not None and stored.key <= previous:
                raise SnapshotFormatError(f"keys are not strictly sorted at {stored.key!r}")
            if not 1 <= stored.create_revision <= stored.version <= store.revision:
                raise SnapshotFormatError(f"key {stored.key!r} has impossible revisions")
            previous = stored.key
            kv = KeyValue(stored.key, stored.value, stored.version, stored.create_revision, stored.lease)
            store._kvs[kv.key] = kv
            store._sorted_keys.append(kv.key)
            store._kv_bytes += _kv_bytes(kv.key, kv.value)
            if kv.lease:
                store._keys_by_lease.setdefault(kv.lease, set()).add(kv.key)
        expected_revision = store.compacted_revision + 1
        for stored_change in state.history:
            if stored_change.revision != expected_revision:
                raise SnapshotFormatError(
                    f"history revision {stored_change.revision} where {expected_revision} was expected"
                )
            try:
                kind = ChangeKind(stored_change.kind)
            except ValueError:
                raise SnapshotFormatError(f"unknown change kind {stored_change.kind}") from None
            change = Change(stored_change.revision, kind, stored_change.key, stored_change.value)
            store._history.append(change)
            store._history_bytes += _kv_bytes(change.key, change.value)
            expected_revision += 1
        if expected_revision != store.revision + 1:
            raise SnapshotFormatError(
                f"history ends at {expected_revision - 1}, not at revision {store.revision}"
            )
        return store
