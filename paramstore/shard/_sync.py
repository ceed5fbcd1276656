"""A model's synchronisation state on a store group: its workers, their clocks, and (BSP) the
gradients gathered for the step in progress.

Why it lives in the replicated state machine: who the barrier waits for must be the same on
every replica, or replicas would complete steps at different entries and diverge. The
workers therefore change only through ``SetWorkers`` entries (the store leader proposes one
when the coordinator's worker leases change), and each replica decides from its own log when
a step is complete.

* **BSP.** Each virtual shard has its own ``Barrier``: the step it is gathering, the
  workers that pushed for it, and the sum of their gradients. When every worker has pushed
  to the shard (a push touching any of its keys), the mean is applied to every key of the
  shard as one optimizer step (a key of the shard nobody pushed gets a zero gradient). The
  model's step is its slowest shard's. Barriers are per shard, not per group, so that a
  shard can move to another group mid-step with its barrier (``_moves``); a client pushes
  every key each step (``StoreClient`` fills in zeros), so a group's shards complete
  together. A worker that leaves (its lease expired) is not waited for; what it pushed
  stays in the mean. A worker that joins waits to be pushed for the step in progress. For
  BSP, ``clocks`` only records who the workers are (every clock is 0).
* **SSP(s).** Every push is applied at once; a worker's clock counts its applied pushes. A
  pull by worker w waits while ``clock[w] - min(clocks) > s``. A joining worker starts at
  the slowest worker's clock, so a join never stalls the others.
* **async.** Nobody waits; workers are recorded but not needed to push.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from paramstore.coordinator import SyncMode
from paramstore.optim._base import F32Array

__all__ = ["Barrier", "SyncState"]


@dataclass(slots=True)
class Barrier:
    """BSP: one shard's step in progress."""

    keys: set[str] = field(default_factory=set)  # the shard's keys served here
    step: int = 0  # steps the shard completed
    pushed: set[str] = field(default_factory=set)  # workers that pushed for ``step``
    gathered_pushes: int = 0  # pushes summed into ``gathered`` (skipped ones not)
    gathered: dict[str, F32Array] = field(default_factory=dict)  # key -> gradient sum

    def complete(self, workers: dict[str, int]) -> bool:
        """Every worker pushed for the step (a push skipped as non-finite counts as pushed),
        or, with no worker left, somebody's gradient was gathered."""
        if workers:
            return all(worker in self.pushed for worker in workers)
        return self.gathered_pushes > 0

    def gather(self, key: str, grads: F32Array) -> None:
        total = self.gathered.get(key)
        if total is None:
            total = self.gathered[key] = np.zeros(grads.size, dtype=np.float32)
        np.add(total, grads.astype(np.float32, copy=False), out=total)


@dataclass(slots=True)
class SyncState:
    mode: SyncMode = SyncMode.ASYNC
    staleness_bound: int = 0
    workers_config: int = 0  # config number of the last SetWorkers applied
    clocks: dict[str, int] = field(default_factory=dict)  # worker id -> clock (SSP)
    barriers: dict[int, Barrier] = field(default_factory=dict)  # BSP: shard -> its barrier

    @property
    def needs_workers(self) -> bool:
        """Whether a push must come from a known worker (BSP and SSP keep clocks)."""
        return self.mode in (SyncMode.BSP, SyncMode.SSP)

    def slowest_clock(self) -> int:
        return min(self.clocks.values(), default=0)

    def ssp_may_read(self, worker_id: str) -> bool:
        """SSP: whether ``worker_id`` is within the staleness bound of the slowest worker (a
        non-worker never waits)."""
        clock = self.clocks.get(worker_id)
        return clock is None or clock - self.slowest_clock() <= self.staleness_bound

    def set_workers(self, workers: list[str]) -> None:
        """Replace the workers; SSP joiners start at the slowest clock."""
        start = 0 if self.mode == SyncMode.BSP else self.slowest_clock()
        self.clocks = {worker: self.clocks.get(worker, start) for worker in workers}

    def bsp_step(self, default: int) -> int:
        """BSP: the model's step here, its slowest shard's (``default`` without shards)."""
        return min((barrier.step for barrier in self.barriers.values()), default=default)
