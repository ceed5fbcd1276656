"""One model's state on a store group: its optimizer, policy and, per key, weights and slots."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from paramstore.optim import Optimizer
from paramstore.optim._base import F32Array
from paramstore.shard._sync import SyncState
from paramstore.shard._types import NonFinitePolicy

__all__ = ["KeyState", "ModelState", "initial_digest"]


def initial_digest(values: bytes) -> bytes:
    """What an install of a key is compared by (its initial values may have been trained since)."""
    return hashlib.blake2b(values, digest_size=16).digest()


@dataclass(slots=True)
class KeyState:
    weights: F32Array  # flat, float32, C-contiguous, written in place
    slots: dict[str, F32Array]  # the optimizer's slots, same shape
    step: int  # optimizer updates applied to this key (the optimizer's count)
    digest: bytes  # initial_digest of the installed values

    @property
    def elements(self) -> int:
        return int(self.weights.size)


@dataclass(slots=True)
class ModelState:
    name: str
    optimizer: Optimizer
    optimizer_json: str  # canonical: equal specs, equal text
    policy: NonFinitePolicy
    num_shards: int
    step: int = 0  # push entries applied (BSP: steps completed)
    skipped_pushes: int = 0  # push entries dropped under the "skip" policy
    applied_pushes: int = 0  # pushes applied (each push of a merged entry counted)
    keys: dict[str, KeyState] = field(default_factory=dict)
    sync: SyncState = field(default_factory=SyncState)

    def add_key(self, key: str, values: F32Array, digest: bytes) -> None:
        weights = np.array(values, dtype=np.float32, copy=True).reshape(-1)
        self.keys[key] = KeyState(weights, self.optimizer.init_slots(weights.shape), 0, digest)
