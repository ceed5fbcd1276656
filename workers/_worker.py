"""``Worker``: one training process's handle on one model in a paramstore cluster.

It hides the cluster from the training loop. Joining registers the model (idempotent: the
first worker creates it from its params and optimizer, the others get the same one; a
different definition is ``ModelSpecConflictError``), takes a worker lease in the coordinator
(renewed in the background, given back on ``close``), and for BSP/SSP waits until every store
group counts the worker in. After that:

* ``pull()`` returns the weights as a pytree of jax arrays shaped like the params. Under BSP
  it returns the weights of the worker's next step (waiting for the others' pushes of the
  previous step); under SSP it waits while this worker is more than ``staleness`` pushes
  ahead of the slowest one; under async it never waits.
* ``push(grads)`` sends a gradient pytree (jax or numpy arrays). Each push carries this
  worker's id and a sequence number per store group, so a retry after a timeout or a leader
  change is applied once. Under BSP it is the gradient for the step of the last pull.
* ``pull_async()`` / ``push_async()`` return futures, so the next weights can be prefetched
  and pushes overlap computation; at most ``max_outstanding_pushes`` pushes are in flight
  (``push_async`` blocks beyond that), and a pull waits for the pushes before it.

Leader changes, retries with capped exponential back-off and per-call deadlines are the
underlying ``StoreClient``'s; this class adds the pytree view, the step clock and the lease.
Use one ``Worker`` per process; it may be shared by threads (calls go to one private event
loop, in order).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Generic, TypeVar

from paramstore.client import (
    ClientError,
    CommandRejectedError,
    CoordinatorClient,
    PushFailedError,
    StoreClient,
    StoreRefusedError,
)
from paramstore.coordinator import ErrorCode as CoordinatorCode
from paramstore.coordinator import KeepAlive, ModelSpec, RegisterWorker, SyncMode, UnregisterWorker
from paramstore.optim import Optimizer, optimizer_from_spec
from paramstore.shard import ErrorCode as ShardCode
from paramstore.shard import NonFinitePolicy
from workers._errors import DeadlineExceededError, ModelSpecConflictError, WorkerClosedError, WorkerError
from workers._loop import LoopThread
from workers._pytree import TreeLayout

__all__ = ["Pending", "PushAck", "Worker", "WorkerStats", "resolve_coordinators"]

log = logging.getLogger("paramstore.worker")

_T = TypeVar("_T")
_SYNC_NAMES = {"bsp": SyncMode.BSP, "ssp": SyncMode.SSP, "async": SyncMode.ASYNC}


def resolve_coordinators(where: str | Path | Sequence[str]) -> list[str]:
    """Coordinator addresses from ``HOST:PORT,...``, a list of them, or the ``cluster.json``
    (or its directory) that ``paramstore up`` writes."""
    from paramstore.commands._common import coordinator_addresses

    if isinstance(where, Path):
        where = str(where)
    if isinstance(where, str):
        return coordinator_addresses(where)
    return coordinator_addresses(",".join(where))


def _sync_mode(sync: str | SyncMode) -> SyncMode:
    if isinstance(sync, SyncMode):
        return sync
    mode = _SYNC_NAMES.get(str(sync).lower())
    if mode is None:
        raise ValueError(f"sync must be one of {sorted(_SYNC_NAMES)}, got {sync!r}")
    return mode


def _optimizer_spec(optimizer: Optimizer | Mapping[str, Any]) -> dict[str, Any]:
    """An optax-style optimizer (``workers.adam(1e-3)``) or its spec dict, validated."""
    if isinstance(optimizer, Optimizer):
        return dict(optimizer.spec())
    if isinstance(optimizer, Mapping):
        return dict(optimizer_from_spec(dict(optimizer)).spec())
    raise TypeError(
        f"optimizer must be e.g. workers.adam(1e-3) or a spec dict, got {type(optimizer).__name__}"
    )


@dataclass(frozen=True, slots=True)
class PushAck:
    """One push's outcome. ``applied`` is False only under BSP when the push came after its
    step had completed without this worker (it was dropped, not applied): the next pull
    catches the worker up."""

    step: int
    applied: bool
    duplicate: bool  # a retry found it applied already (counted once)
    merged_pushes: int  # pushes covered by the log entry that applied it (largest over groups)


@dataclass(slots=True)
class WorkerStats:
    pulls: int = 0
    pushes: int = 0
    dropped_pushes: int = 0
    pull_wait_s: float = 0.0  # time the caller spent blocked in pull / on pull futures
    push_wait_s: float = 0.0  # time the caller spent blocked in push / on the outstanding bound
    lease_renewals: int = 0
    lease_rejoins: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def blocked_s(self) -> float:
        return self.pull_wait_s + self.push_wait_s

    def add(self, name: str, value: float | int) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + value)


class Pending(Generic[_T]):
    """A pull or push in flight. ``result()`` waits for it (the wait counts as time blocked
    on the parameter server in ``Worker.stats``) and returns it or raises its error."""

    def __init__(self, future: concurrent.futures.Future[_T], stats: WorkerStats, counter: str) -> None:
        self.future = future
        self._stats = stats
        self._counter = counter

    def done(self) -> bool:
        return self.future.done()

    def result(self, timeout: float | None = None) -> _T:
        started = time.monotonic()
        try:
            return self.future.result(timeout)
        finally:
            self._stats.add(self._counter, time.monotonic() - started)


class Worker:
    """Join ``model`` on the cluster at ``coordinators`` and train it. Use as ``with``.

    ``params``: the initial params pytree (registers the model if new; must match if not).
    ``optimizer``: ``workers.adam(1e-3)`` & co. (optax names and defaults) or a spec dict.
    ``sync``: ``"bsp"``, ``"ssp"`` (with ``staleness``) or ``"async"``.
    ``worker_id``: a name for this worker; the id used is the name plus a random suffix.
    ``wait_for_workers``: join only once the model has that many workers (a start barrier,
    so that BSP's first step already waits for all of a fixed set of workers).
    ``follower_reads``: pull from any replica of a store group, not only its leader (spreads
    pull bandwidth; a pull may miss the latest pushes, this worker's own included, but a BSP
    pull still waits for its step).
    ``gradient_dtype``: ``"bfloat16"`` or ``"float16"`` sends gradients in half the bytes
    (rounded; the store applies them in float32).
    """

    def __init__(
        self,
        coordinators: str | Path | Sequence[str],
        model: str,
        params: Any,
        *,
        optimizer: Optimizer | Mapping[str, Any],
        sync: str | SyncMode = "bsp",
        staleness: int = 0,
        num_shards: int = 64,
        non_finite: str = "reject",
        worker_id: str | None = None,
        lease_ttl_s: float = 5.0,
        deadline_s: float = 60.0,
        max_outstanding_pushes: int = 2,
        wait_for_workers: int = 0,
        follower_reads: bool = False,
        gradient_dtype: str = "float32",
    ) -> None:
        mode = _sync_mode(sync)
        if staleness < 0 or (staleness and mode != SyncMode.SSP):
            raise ValueError(f"staleness must be >= 0 and is for sync='ssp' only, got {staleness}")
        if not 0.1 <= lease_ttl_s <= 3600:
            raise ValueError(f"lease_ttl_s must be in [0.1, 3600], got {lease_ttl_s}")
        if deadline_s <= 0 or max_outstanding_pushes < 1 or num_shards < 1:
            raise ValueError("deadline_s must be > 0, max_outstanding_pushes and num_shards >= 1")
        if non_finite not in ("reject", "skip"):
            raise ValueError(f"non_finite must be 'reject' or 'skip', got {non_finite!r}")
        self.addresses = resolve_coordinators(coordinators)
        self._follower_reads = follower_reads
        if gradient_dtype not in ("float32", "bfloat16", "float16"):
            raise ValueError(f"gradient_dtype must be float32, bfloat16 or float16, got {gradient_dtype!r}")
        self._gradient_dtype = gradient_dtype
        self.layout = TreeLayout.of(params)
        self.spec = ModelSpec.create(
            model,
            self.layout.leaf_specs(),
            num_shards=num_shards,
            optimizer=_optimizer_spec(optimizer),
            sync_mode=mode,
            staleness_bound=staleness,
        )
        # Unique per Worker, even with a name given: this incarnation's sequence numbers (of
        # pushes and coordinator commands) start at 1, so a restarted process must not reuse
        # the id of its predecessor, whose last sequences the cluster remembers. A restarted
        # worker is a new worker: it joins at the current step; the old lease expires.
        self.worker_id = f"{worker_id or 'worker'}-{uuid.uuid4().hex[:12]}"
        self.lease_ttl_s = lease_ttl_s
        self.deadline_s = deadline_s
        self.stats = WorkerStats()
        self._policy = NonFinitePolicy.SKIP if non_finite == "skip" else NonFinitePolicy.REJECT
        self._initial = self.layout.flatten(params, "params")
        self._wait_for_workers = wait_for_workers
        self._push_slots = threading.BoundedSemaphore(max_outstanding_pushes)
        self._state_lock = threading.Lock()
        self._outstanding: list[concurrent.futures.Future[PushAck]] = []
        self._weights_step = 0  # the step of the weights last pulled
        self._next_step = 0  # BSP: the step the next pull must reach
        self._pushed_since_pull = False
        self._closed = False
        self._loop = LoopThread(f"paramstore-{self.worker_id}")
        self._store: StoreClient | None = None
        self._coordinator: CoordinatorClient | None = None
        self._lease_task: asyncio.Task[None] | None = None
        try:
            # Joining makes several calls, each within deadline_s: the whole gets a bound too.
            self._loop.run(self._join(), 3 * deadline_s + 5.0)
        except TimeoutError:
            self._loop.run(self._close_clients(), 10.0)
            self._loop.stop()
            raise DeadlineExceededError(
                f"worker {self.worker_id} did not join model {model!r} within {3 * deadline_s + 5.0:.0f} s"
            ) from None
        except BaseException:
            self._loop.run(self._close_clients(), 10.0)
            self._loop.stop()
            raise

    # ---- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> Worker:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close(leave=True, wait_pushes=exc_type is None)

    @property
    def sync_mode(self) -> SyncMode:
        return self.spec.sync_mode

    @property
    def step(self) -> int:
        """The step of the weights last pulled (BSP: completed steps of the model)."""
        return self._weights_step

    async def _join(self) -> None:
        self._store = StoreClient(
            self.addresses,
            client_id=self.worker_id,
            deadline_s=self.deadline_s,
            follower_reads=self._follower_reads,
        )
        self._coordinator = CoordinatorClient(
            self.addresses, client_id=f"{self.worker_id}-lease", deadline_s=self.deadline_s
        )
        try:
            await self._store.register_model(self.spec, self._initial, non_finite_policy=self._policy)
        except CommandRejectedError as exc:
            if exc.code == CoordinatorCode.SPEC_CONFLICT:
                raise ModelSpecConflictError(
                    f"model {self.spec.name!r} exists with another definition: {exc.result.message}"
                ) from None
            raise
        except StoreRefusedError as exc:
            if exc.code == ShardCode.SPEC_CONFLICT:
                raise ModelSpecConflictError(f"model {self.spec.name!r}: {exc.details}") from None
            raise
        await self._register_lease()
        if self.sync_mode != SyncMode.ASYNC or self._wait_for_workers:
            await self._store.wait_for_worker(
                self.spec.name, self.worker_id, min_workers=self._wait_for_workers
            )
        self._lease_task = asyncio.create_task(self._keep_lease(), name="lease")

    async def _register_lease(self) -> None:
        assert self._coordinator is not None
        op = RegisterWorker(self.worker_id, self.spec.name, int(self.lease_ttl_s * 1000))
        result = await self._coordinator.execute(op)
        if not result.ok:
            raise CommandRejectedError(result)

    async def _keep_lease(self) -> None:
        """Renew the lease every third of its ttl; re-join if it expired meanwhile (a long
        pause): the store groups then add this worker again at the current step."""
        assert self._coordinator is not None
        while True:
            await asyncio.sleep(self.lease_ttl_s / 3)
            try:
                result = await self._coordinator.execute(
                    KeepAlive(self.worker_id), deadline_s=self.lease_ttl_s
                )
                if result.ok:
                    self.stats.add("lease_renewals", 1)
                    continue
                if result.code == CoordinatorCode.UNKNOWN_WORKER:
                    log.warning("worker %s: lease expired; joining again", self.worker_id)
                    await self._register_lease()
                    self.stats.add("lease_rejoins", 1)
            except ClientError as exc:
                log.warning("worker %s: lease renewal failed: %s", self.worker_id, exc)

    def close(self, *, leave: bool = True, wait_pushes: bool = True) -> None:
        """Wait for outstanding pushes (``wait_pushes``), give the lease back (``leave``: the
        others stop waiting for this worker at once instead of when the lease expires) and
        close the connections. Idempotent."""
        with self._state_lock:
            if self._closed:
                return
            self._closed = True
        try:
            if wait_pushes:
                self._wait_outstanding()
        finally:
            with contextlib.suppress(Exception):
                self._loop.run(self._leave_and_close(leave), 15.0)
            self._loop.stop()

    async def _leave_and_close(self, leave: bool) -> None:
        if self._lease_task is not None:
            self._lease_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._lease_task
        if leave and self._coordinator is not None:
            with contextlib.suppress(ClientError, TimeoutError):
                await self._coordinator.execute(UnregisterWorker(self.worker_id), deadline_s=5.0)
        await self._close_clients()

    async def _close_clients(self) -> None:
        for client in (self._store, self._coordinator):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.close()

    def _check_open(self) -> None:
        if self._closed:
            raise WorkerClosedError(f"worker {self.worker_id} is closed")

    # ---- pull ------------------------------------------------------------------------------

    def pull(self) -> Any:
        """The current weights as a pytree of jax arrays (see the class docstring for waits)."""
        return self.pull_async().result()

    def pull_async(self) -> Pending[Any]:
        """Start a pull (after the pushes already submitted); ``.result()`` is ``pull()``'s."""
        self._check_open()
        with self._state_lock:
            min_step = self._next_step if self.sync_mode == SyncMode.BSP else 0
            before = list(self._outstanding)
        worker_id = self.worker_id if self.sync_mode == SyncMode.SSP else ""
        return Pending(self._loop.submit(self._pull(min_step, worker_id, before)), self.stats, "pull_wait_s")

    async def _pull(
        self, min_step: int, worker_id: str, before: list[concurrent.futures.Future[PushAck]]
    ) -> Any:
        for push in before:  # the weights must include this worker's own earlier pushes
            with contextlib.suppress(Exception):
                await asyncio.wrap_future(push)
        assert self._store is not None
        leaves, step = await self._store.pull_step(self.spec.name, min_step=min_step, worker_id=worker_id)
        with self._state_lock:
            self._weights_step = step
            self._next_step = max(self._next_step, step)
            self._pushed_since_pull = False
        self.stats.add("pulls", 1)
        return self.layout.unflatten(leaves)

    # ---- push ------------------------------------------------------------------------------

    def push(self, grads: Any) -> PushAck:
        """Push a gradient pytree shaped like the params; returns when it is applied (BSP:
        gathered for its step). Raises ``PushFailedError`` if a store group did not take it
        within the deadline (its ``unknown_groups`` may still apply it, at most once)."""
        return self.push_async(grads).result()

    def push_async(self, grads: Any) -> Pending[PushAck]:
        """Submit a push and return at once, unless ``max_outstanding_pushes`` are in flight
        (then wait for a slot). Pushes are applied in the order submitted."""
        self._check_open()
        flat = self.layout.flatten(grads, "gradient")
        started = time.monotonic()
        self._push_slots.acquire()
        self.stats.add("push_wait_s", time.monotonic() - started)
        with self._state_lock:
            if self.sync_mode == SyncMode.BSP and self._pushed_since_pull:
                self._push_slots.release()
                raise WorkerError(
                    f"BSP: step {self._weights_step} was pushed already; pull the next step's weights "
                    "before pushing again"
                )
            step = self._weights_step
            self._pushed_since_pull = True
            self._next_step = step + 1
            future = self._loop.submit(self._push(flat, step))
            self._outstanding.append(future)
        future.add_done_callback(self._push_done)
        return Pending(future, self.stats, "push_wait_s")

    def _push_done(self, future: concurrent.futures.Future[PushAck]) -> None:
        with self._state_lock, contextlib.suppress(ValueError):
            self._outstanding.remove(future)
        self._push_slots.release()

    async def _push(self, flat: dict[str, Any], step: int) -> PushAck:
        assert self._store is not None
        bsp = self.sync_mode == SyncMode.BSP
        try:
            results = await self._store.push(self.spec.name, flat, step=step if bsp else 0)
        except PushFailedError as exc:
            refused = [e for e in exc.errors.values() if isinstance(e, StoreRefusedError)]
            if (
                bsp
                and refused
                and all(e.code == ShardCode.WRONG_STEP for e in refused)
                and not exc.unknown_groups
            ):
                self.stats.add("dropped_pushes", 1)
                return PushAck(step, applied=False, duplicate=False, merged_pushes=0)
            raise
        self.stats.add("pushes", 1)
        return PushAck(
            step,
            applied=True,
            duplicate=any(r.result.duplicate for r in results.values()),
            merged_pushes=max((r.merged_pushes for r in results.values()), default=1),
        )

    def wait_pushes(self) -> None:
        """Block until every submitted push is acknowledged (raises the first failure)."""
        self._wait_outstanding()

    def _wait_outstanding(self) -> None:
        with self._state_lock:
            pending = list(self._outstanding)
        started = time.monotonic()
        try:
            for future in pending:
                future.result()
        finally:
            self.stats.add("push_wait_s", time.monotonic() - started)
