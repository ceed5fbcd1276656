"""A model's synchronisation state on a store group: its workers, their clocks, and (BSP) the
gradients gathered for the step in progress.

Why it lives in the replicated state machine: who the barrier waits for must be the same on
every replica, or replicas would complete steps at different entries and diverge. The
workers therefore change only through ``SetWorkers`` entries (the store leader proposes one
when the coordinator's worker leases change), and each replica decides from its own log when
a step is complete.

* **BSP.** ``step`` (the model's) counts completed steps. A worker's clock is the number of
  steps it pushed for, so it is ``step`` (not pushed yet) or ``step + 1`` (pushed). Pushes
  for the step are summed; when every worker has pushed, the mean is applied as one
  optimizer step to every key. A worker that leaves (its lease expired) is not waited for;
  what it pushed for the step stays in the mean. A worker that joins starts at ``step``.
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

__all__ = ["SyncState"]


@dataclass(slots=True)
class SyncState:
    mode: SyncMode = SyncMode.ASYNC
    staleness_bound: int = 0
    workers_config: int = 0  # config number of the last SetWorkers applied
    clocks: dict[str, int] = field(default_factory=dict)  # worker id -> clock
    # BSP: pushes summed into ``gathered`` for the step in progress (key -> gradient sum).
    gathered_pushes: int = 0
    gathered: dict[str, F32Array] = field(default_factory=dict)

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

    def bsp_complete(self, step: int) -> bool:
        """BSP: whether the step in progress is complete: every worker pushed for it (a push
        skipped as non-finite counts as pushed), or the workers that pushed all left."""
        if not self.clocks:
            return self.gathered_pushes > 0
        return all(clock > step for clock in self.clocks.values())

    def gather(self, key: str, grads: F32Array, elements: int) -> None:
        total = self.gathered.get(key)
        if total is None:
            total = self.gathered[key] = np.zeros(elements, dtype=np.float32)
        np.add(total, grads.astype(np.float32, copy=False), out=total)

    def set_workers(self, workers: list[str], step: int) -> None:
        """Replace the workers; joiners start at the step (BSP) or the slowest clock (SSP)."""
        start = step if self.mode == SyncMode.BSP else self.slowest_clock()
        self.clocks = {worker: self.clocks.get(worker, start) for worker in workers}
