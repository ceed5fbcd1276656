"""The cluster configuration: store groups, models and their shard maps, worker leases.

Every change that a ``Config`` shows bumps ``config_number`` (one bump per change event:
one command, or one batch of lease expiries). Lease renewals change no config: the
deadlines are not part of it. Worker leases expire on the log clock: a min-heap of
(deadline, worker id) finds the expired ones without scanning every worker; entries made
stale by a renewal are skipped when they surface.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from types import MappingProxyType

from paramstore.coordinator._codec import (
    CommandDecodeError,
    member_from_proto,
    member_to_proto,
    spec_from_proto,
    spec_to_proto,
)
from paramstore.coordinator._limits import CoordinatorLimits
from paramstore.coordinator._types import Config, GroupMember, ModelSpec, SnapshotFormatError, WorkerLease
from proto import coordinator_pb2 as pb

__all__ = ["ClusterState"]


@dataclass(slots=True)
class _Worker:
    model: str
    ttl_ms: int
    deadline_ms: int


class ClusterState:
    def __init__(self, limits: CoordinatorLimits) -> None:
        self.limits = limits
        self.config_number = 0
        self.groups: dict[int, tuple[GroupMember, ...]] = {}
        self.models: dict[str, ModelSpec] = {}
        self.shard_maps: dict[str, list[int]] = {}
        self._workers: dict[str, _Worker] = {}
        self._deadlines: list[tuple[int, str]] = []
        self._config: Config | None = None

    def bump(self) -> None:
        self.config_number += 1
        self._config = None

    def config(self) -> Config:
        """The current config (built once per config number, then shared: it is read-only)."""
        if self._config is None or self._config.number != self.config_number:
            self._config = Config(
                number=self.config_number,
                groups=MappingProxyType({gid: self.groups[gid] for gid in sorted(self.groups)}),
                models=MappingProxyType({name: self.models[name] for name in sorted(self.models)}),
                shard_maps=MappingProxyType(
                    {name: tuple(self.shard_maps[name]) for name in sorted(self.models)}
                ),
                workers=MappingProxyType({wid: self._workers[wid].model for wid in sorted(self._workers)}),
            )
        return self._config

    # ---- groups and models ------------------------------------------------------------------

    def shards_owned_by(self, group_id: int) -> list[tuple[str, int]]:
        """(model, shard) pairs the group owns, in order."""
        return [
            (name, shard)
            for name in sorted(self.shard_maps)
            for shard, owner in enumerate(self.shard_maps[name])
            if owner == group_id
        ]

    def add_model(self, spec: ModelSpec) -> None:
        assert spec.name not in self.models
        self.models[spec.name] = spec
        self.shard_maps[spec.name] = [0] * spec.num_shards

    # ---- workers ----------------------------------------------------------------------------

    @property
    def worker_count(self) -> int:
        return len(self._workers)

    def worker(self, worker_id: str) -> WorkerLease | None:
        worker = self._workers.get(worker_id)
        if worker is None:
            return None
        return WorkerLease(worker_id, worker.model, worker.ttl_ms, worker.deadline_ms)

    def set_lease(self, worker_id: str, model: str, ttl_ms: int, clock_ms: int) -> int:
        """Register or renew ``worker_id``; returns its new deadline."""
        deadline_ms = clock_ms + ttl_ms
        self._workers[worker_id] = _Worker(model, ttl_ms, deadline_ms)
        heapq.heappush(self._deadlines, (deadline_ms, worker_id))
        if len(self._deadlines) > 2 * len(self._workers) + 64:
            self._rebuild_deadlines()  # drop the entries that renewals made stale
        return deadline_ms

    def remove_worker(self, worker_id: str) -> None:
        del self._workers[worker_id]

    def expire_workers(self, clock_ms: int) -> list[str]:
        """Remove every worker whose deadline is at or before ``clock_ms``; returns them in
        (deadline, id) order."""
        expired: list[str] = []
        while self._deadlines and self._deadlines[0][0] <= clock_ms:
            deadline_ms, worker_id = heapq.heappop(self._deadlines)
            worker = self._workers.get(worker_id)
            if worker is not None and worker.deadline_ms == deadline_ms:
                del self._workers[worker_id]
                expired.append(worker_id)
        return expired

    def _rebuild_deadlines(self) -> None:
        self._deadlines = sorted((worker.deadline_ms, wid) for wid, worker in self._workers.items())

    # ---- snapshot ---------------------------------------------------------------------------

    def to_proto(self, state: pb.CoordinatorState) -> None:
        state.config_number = self.config_number
        for group_id in sorted(self.groups):
            state.groups.add(group_id=group_id, members=[member_to_proto(m) for m in self.groups[group_id]])
        for name in sorted(self.models):
            state.models.add(spec=spec_to_proto(self.models[name]), shard_groups=self.shard_maps[name])
        for worker_id in sorted(self._workers):
            worker = self._workers[worker_id]
            state.workers.add(
                worker_id=worker_id, model=worker.model, ttl_ms=worker.ttl_ms, deadline_ms=worker.deadline_ms
            )

    @classmethod
    def from_proto(cls, state: pb.CoordinatorState, limits: CoordinatorLimits) -> ClusterState:
        cluster = cls(limits)
        cluster.config_number = state.config_number
        for group in state.groups:
            if group.group_id < 1 or group.group_id in cluster.groups or not group.members:
                raise SnapshotFormatError(f"group {group.group_id} is repeated, numbered 0 or empty")
            cluster.groups[group.group_id] = tuple(member_from_proto(m) for m in group.members)
        for model in state.models:
            try:
                spec = spec_from_proto(model.spec)
            except CommandDecodeError as exc:
                raise SnapshotFormatError(str(exc)) from None
            if spec.name in cluster.models or len(model.shard_groups) != spec.num_shards:
                raise SnapshotFormatError(
                    f"model {spec.name!r} is repeated or its shard map has the wrong size"
                )
            unknown = {g for g in model.shard_groups if g != 0 and g not in cluster.groups}
            if unknown:
                raise SnapshotFormatError(
                    f"model {spec.name!r} maps shards to unknown groups {sorted(unknown)}"
                )
            cluster.models[spec.name] = spec
            cluster.shard_maps[spec.name] = list(model.shard_groups)
        for stored in state.workers:
            if stored.worker_id in cluster._workers or stored.model not in cluster.models:
                raise SnapshotFormatError(f"worker {stored.worker_id!r} is repeated or of an unknown model")
            if stored.deadline_ms <= state.clock_ms:
                raise SnapshotFormatError(f"worker {stored.worker_id!r} should have expired already")
            cluster._workers[stored.worker_id] = _Worker(stored.model, stored.ttl_ms, stored.deadline_ms)
        cluster._rebuild_deadlines()
        return cluster
