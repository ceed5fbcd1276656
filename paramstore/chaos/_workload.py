"""The chaos run's clients: pushes and pulls of a model whose weights reveal every push, and
read / write / compare-and-set on a few coordinator keys.

**Revealing gradients.** The model has ``LEAVES`` leaves of ``elements`` float32 each, SGD
with learning rate 1, async. Push number k of push client c is the one-hot gradient at
element ``push_id = c * pushes_per_client + k`` in every leaf, so a leaf's weight at that
element is 0 (not applied), -1 (applied once) or anything else (applied twice, or partly).
A pull therefore says exactly which pushes it contains, leaf by leaf (leaves sit on
different store groups, so a push may be visible in one leaf before another).

A run against a cluster that outlives it (``--cluster``) sets ``run_id``, which goes into
the model's name, the keys' prefix and the client ids, so that what earlier runs left
there (weights, values, sessions) is never taken for this run's.

Every client records each operation in the ``History`` (invoke, then ok / fail / info).
Client deadlines are short (``op_deadline_s``), so an operation cut off by a fault ends as
``info`` instead of hanging the run.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from paramstore.chaos._history import History
from paramstore.client import ClientError, CoordinatorClient, PushFailedError, StoreClient, StoreRefusedError
from paramstore.coordinator import LeafSpec, ModelSpec, SyncMode

__all__ = [
    "LEAVES",
    "MODEL",
    "WorkloadConfig",
    "applied_ranges",
    "model_spec",
    "run_kv_client",
    "run_pull_client",
    "run_push_client",
]

MODEL = "chaos-params"
LEAVES = ("leaf0", "leaf1", "leaf2", "leaf3")
KV_PREFIX = "chaos/"


@dataclass(frozen=True)
class WorkloadConfig:
    push_clients: int = 3
    pull_clients: int = 1
    kv_clients: int = 2
    kv_keys: int = 3
    pushes_per_client: int = 4000  # the most one push client can issue (its id range)
    op_deadline_s: float = 3.0
    pull_interval_s: float = 0.1
    kv_interval_s: float = 0.02
    run_id: str = ""  # set for an attached run: this run's own model and keys

    @property
    def elements(self) -> int:
        return self.push_clients * self.pushes_per_client

    @property
    def model(self) -> str:
        return f"{MODEL}-{self.run_id}" if self.run_id else MODEL

    @property
    def kv_prefix(self) -> str:
        return f"{KV_PREFIX}{self.run_id}/" if self.run_id else KV_PREFIX

    def client_id(self, name: str) -> str:
        """A session id of this run's own (sessions outlive a run on an attached cluster)."""
        return f"{name}-{self.run_id}" if self.run_id else name


def model_spec(config: WorkloadConfig) -> ModelSpec:
    return ModelSpec.create(
        config.model,
        [LeafSpec(leaf, (config.elements,), "float32") for leaf in LEAVES],
        num_shards=8,
        optimizer={"name": "sgd", "learning_rate": 1.0},
        sync_mode=SyncMode.ASYNC,
    )


def applied_ranges(weights: npt.NDArray[np.float32]) -> tuple[list[list[int]], int]:
    """The push ids one leaf contains as [start, stop) ranges, and how many elements hold a
    value other than 0 or -1 (a push applied twice, or something worse)."""
    applied = weights == -1.0
    anomalies = int(np.count_nonzero((weights != 0.0) & ~applied))
    padded = np.concatenate(([False], applied, [False]))
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return [[int(a), int(b)] for a, b in zip(edges[::2], edges[1::2], strict=True)], anomalies


async def run_push_client(
    history: History,
    process: int,
    client_index: int,
    addresses: Sequence[str],
    config: WorkloadConfig,
    stop: asyncio.Event,
) -> None:
    """Sequential pushes; each one's outcome goes into the history."""
    async with StoreClient(
        addresses,
        client_id=config.client_id(f"chaos-push-{client_index}"),
        deadline_s=config.op_deadline_s,
        attempt_timeout_s=1.0,
    ) as client:
        for k in range(config.pushes_per_client):
            if stop.is_set() or history.full:
                return
            push_id = client_index * config.pushes_per_client + k
            gradient = np.zeros(config.elements, np.float32)
            gradient[push_id] = 1.0
            history.add(process, "invoke", "push", push_id=push_id)
            try:
                await client.push(config.model, dict.fromkeys(LEAVES, gradient))
            except PushFailedError as exc:
                refused = all(isinstance(e, StoreRefusedError) for e in exc.errors.values())
                kind = "fail" if refused and not exc.acknowledged else "info"
                history.add(process, kind, "push", push_id=push_id, error=str(exc)[:300])
                continue
            except ClientError as exc:
                history.add(process, "info", "push", push_id=push_id, error=str(exc)[:300])
                continue
            history.add(process, "ok", "push", push_id=push_id)


async def run_pull_client(
    history: History, process: int, addresses: Sequence[str], config: WorkloadConfig, stop: asyncio.Event
) -> None:
    async with StoreClient(
        addresses,
        client_id=config.client_id(f"chaos-pull-{process}"),
        deadline_s=config.op_deadline_s,
        attempt_timeout_s=1.0,
    ) as client:
        while not stop.is_set() and not history.full:
            history.add(process, "invoke", "pull")
            try:
                leaves, step = await client.pull_step(config.model)
            except ClientError as exc:
                history.add(process, "fail", "pull", error=str(exc)[:300])  # a read changes nothing
            else:
                applied: dict[str, list[list[int]]] = {}
                anomalies = 0
                for leaf in LEAVES:
                    applied[leaf], bad = applied_ranges(leaves[leaf])
                    anomalies += bad
                history.add(process, "ok", "pull", step=step, applied=applied, anomalies=anomalies)
            await asyncio.sleep(config.pull_interval_s)


async def run_kv_client(
    history: History,
    process: int,
    addresses: Sequence[str],
    config: WorkloadConfig,
    seed: int,
    stop: asyncio.Event,
) -> None:
    """Random reads, writes (unique values) and compare-and-sets on ``kv_keys`` keys."""
    rng = random.Random(seed * 1000 + process)
    counter = 0
    last_seen: dict[str, int | None] = {}  # key -> the value this client last read or wrote
    async with CoordinatorClient(
        addresses, client_id=config.client_id(f"chaos-kv-{seed}-{process}"), deadline_s=config.op_deadline_s
    ) as client:
        while not stop.is_set() and not history.full:
            key = f"{config.kv_prefix}{rng.randrange(config.kv_keys)}"
            f = rng.choice(("read", "read", "write", "cas"))
            counter += 1
            value: Any = None
            if f == "write":
                value = process * 1_000_000 + counter
            elif f == "cas":
                # Read-modify-write: expect what this client last saw in the key, so that a
                # CAS succeeds unless someone wrote in between (a guess would nearly always fail
                # and leave CAS untested).
                value = [last_seen.get(key), process * 1_000_000 + counter]
            history.add(process, "invoke", f, key=key, value=value)
            try:
                outcome, result_value = await _kv_op(client, f, key, value)
            except ClientError as exc:
                kind = "fail" if f == "read" else "info"
                history.add(process, kind, f, key=key, value=value, error=str(exc)[:300])
            else:
                history.add(process, outcome, f, key=key, value=result_value)
                if outcome == "ok":
                    last_seen[key] = result_value[1] if f == "cas" else result_value
            await asyncio.sleep(config.kv_interval_s)


async def _kv_op(client: CoordinatorClient, f: str, key: str, value: Any) -> tuple[str, Any]:
    if f == "read":
        kv = await client.get(key)
        return "ok", None if kv is None else int(kv.value.decode())
    if f == "write":
        await client.put(key, str(value).encode())
        return "ok", value
    expected, new = value
    if expected is None:
        done, _ = await client.compare_and_set(key, str(new).encode(), expect_absent=True)
    else:
        done, _ = await client.compare_and_set(key, str(new).encode(), expected_value=str(expected).encode())
    return ("ok" if done else "fail"), value
