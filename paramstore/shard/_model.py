"""One model's state on a store group: its optimizer, policy and, per key, weights and slots."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from paramstore.coordinator import SyncMode
from paramstore.optim import Optimizer
from paramstore.optim._base import F32Array
from paramstore.shard._keys import shard_of
from paramstore.shard._sync import Barrier, SyncState
from paramstore.shard._types import NonFinitePolicy

__all__ = ["KeyState", "ModelState", "ShardMoves", "initial_digest"]


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
class ShardMoves:
    """One virtual shard's part in moves between store groups (see ``_moves``).

    ``released_move`` != 0: the shard was released by that move and is not served here
    (pushes and pulls of its keys get WRONG_GROUP); its frozen keys wait in
    ``released_keys`` until the move's DropShard. ``staging_move`` != 0: AcceptShard parts
    of that move are staged in ``staged_keys``, not served yet. ``accepted_move``: the move
    whose last AcceptShard made the shard served here (repeats of it are no-ops).
    ``last_move``: the newest move id seen; steps of older moves are refused.
    """

    released_move: int = 0
    released_dropped: bool = False
    released_keys: dict[str, KeyState] = field(default_factory=dict)
    accepted_move: int = 0
    staging_move: int = 0
    staged_keys: dict[str, KeyState] = field(default_factory=dict)
    # BSP: the shard's barrier while it is away (released) or arriving (its gathered sums).
    released_barrier: Barrier | None = None
    staged_gathered: dict[str, F32Array] = field(default_factory=dict)
    # The newest move id applied here (move ids only grow): a step of an older move is a
    # mover's late retry after the shard moved on, and is refused.
    last_move: int = 0

    @property
    def empty(self) -> bool:
        return not (self.released_move or self.accepted_move or self.staging_move)


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
    moves: dict[int, ShardMoves] = field(default_factory=dict)  # only shards that moved
    _shards: dict[str, int] = field(default_factory=dict)  # key -> shard (a hash each: cached)

    def shard_of(self, key: str) -> int:
        shard = self._shards.get(key)
        if shard is None:
            shard = self._shards[key] = shard_of(key, self.num_shards)
        return shard

    def barrier(self, key: str) -> Barrier:
        """BSP: the barrier of ``key``'s shard (created at the model's step if new)."""
        shard = self.shard_of(key)
        barrier = self.sync.barriers.get(shard)
        if barrier is None:
            barrier = self.sync.barriers[shard] = Barrier(step=self.step)
        return barrier

    def refresh_step(self) -> None:
        """BSP: the model's step is its slowest shard's (kept when it holds no shard)."""
        if self.sync.mode == SyncMode.BSP:
            self.step = self.sync.bsp_step(self.step)

    def released(self, shard: int) -> bool:
        """Whether ``shard`` was moved away (or is being moved away) from this group."""
        moves = self.moves.get(shard)
        return moves is not None and moves.released_move != 0

    def add_key(self, key: str, values: F32Array, digest: bytes) -> None:
        weights = np.array(values, dtype=np.float32, copy=True).reshape(-1)
        self.keys[key] = KeyState(weights, self.optimizer.init_slots(weights.shape), 0, digest)
        if self.sync.mode == SyncMode.BSP:
            self.barrier(key).keys.add(key)
