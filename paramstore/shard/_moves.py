"""Shard moves inside one store group's state machine: ReleaseShard, AcceptShard, DropShard.

A move takes one virtual shard of a model (its keys' weights, optimizer slots and update
counts) from group A to group B:

1. ``ReleaseShard`` in A's log: A stops serving the shard; its keys are set aside, frozen.
   From that log position on, a push or pull touching one of them is refused with
   WRONG_GROUP and changes nothing. The dedup check comes first, so a retry of a push that
   A applied *before* the release is still acknowledged as a duplicate (its gradient is in
   the frozen state that moves). A push refused with WRONG_GROUP was not applied, and no
   copy of it can be applied later (every copy after the release touches the same keys), so
   the client may send its keys to the new group as a new push.
2. The frozen state is read from A and proposed in B's log as ``AcceptShard`` parts: staged,
   then served from the part marked ``last``.
3. ``DropShard`` in A's log forgets the frozen copy once the coordinator routes to B.

Each step is idempotent per ``move_id``, so the mover can repeat any of them after a crash.

A BSP shard moves with its barrier (its step, who pushed for it, the gathered sums), so a
move mid-step neither loses nor doubles a step: a worker whose push was refused as moved
pushes those keys, for the same step, to the new group, whose barrier for the shard is
still waiting for it. (SSP clocks are per group: a push rerouted after a move counts once
more there, which can only make that worker wait a little sooner.)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from paramstore.coordinator import SyncMode
from paramstore.shard._keys import shard_of
from paramstore.shard._model import KeyState, ModelState, ShardMoves
from paramstore.shard._sync import Barrier
from paramstore.shard._tensors import decode_tensor
from paramstore.shard._types import ErrorCode, Rejected, ShardResult
from proto import shard_pb2 as pb

__all__ = ["accept", "check_move_target", "drop", "release", "wrong_group"]


def _show(name: str, limit: int = 80) -> str:
    return repr(name if len(name) <= limit else name[:limit] + "...")


def check_move_target(model: ModelState, shard: int, move_id: int) -> None:
    if shard >= model.num_shards:
        raise Rejected(
            ErrorCode.INVALID_ARGUMENT,
            f"shard {shard} of model {_show(model.name)}: the model has {model.num_shards} shards",
        )
    if move_id < 1:
        raise Rejected(ErrorCode.INVALID_ARGUMENT, "move_id must be >= 1")


def wrong_group(model: ModelState, key: str) -> tuple[ErrorCode, str] | None:
    """For a key this group does not serve: WRONG_GROUP when its shard moved away or is
    still arriving (the client should ask the coordinator where it is); None otherwise."""
    shard = shard_of(key, model.num_shards)
    moves = model.moves.get(shard)
    if moves is None:
        return None
    if moves.released_move:
        return (
            ErrorCode.WRONG_GROUP,
            f"shard {shard} of model {_show(model.name)} (key {_show(key)}) moved to another group "
            f"(move {moves.released_move}); refresh the config and send it there",
        )
    if moves.staging_move:
        return (
            ErrorCode.WRONG_GROUP,
            f"shard {shard} of model {_show(model.name)} (key {_show(key)}) is still arriving here "
            f"(move {moves.staging_move}); retry after the move",
        )
    return None


# ---- ReleaseShard ---------------------------------------------------------------------------


def release(model: ModelState, op: pb.ReleaseShard) -> ShardResult:
    check_move_target(model, op.shard, op.move_id)
    moves = model.moves.get(op.shard)
    if moves is not None and moves.released_move == op.move_id:
        return ShardResult(ErrorCode.OK, f"shard {op.shard} was released by move {op.move_id} already")
    _check_not_stale(model, op.shard, op.move_id, moves)
    if moves is not None and moves.released_move:
        raise Rejected(
            ErrorCode.WRONG_GROUP,
            f"shard {op.shard} of model {_show(model.name)} was released by move {moves.released_move}",
        )
    if moves is not None and moves.staging_move:
        raise Rejected(
            ErrorCode.WRONG_GROUP,
            f"shard {op.shard} of model {_show(model.name)} is still arriving (move {moves.staging_move})",
        )
    # ---- checked: change state
    frozen = {key: state for key, state in model.keys.items() if shard_of(key, model.num_shards) == op.shard}
    for key in frozen:
        del model.keys[key]
    if moves is None:
        moves = model.moves[op.shard] = ShardMoves()
    moves.released_move = op.move_id
    moves.last_move = op.move_id
    moves.released_dropped = False
    moves.released_keys = frozen
    moves.released_barrier = model.sync.barriers.pop(op.shard, None)
    moves.accepted_move = 0
    model.refresh_step()
    return ShardResult(ErrorCode.OK, f"released {len(frozen)} key(s)", installed=len(frozen))


def _check_not_stale(model: ModelState, shard: int, move_id: int, moves: ShardMoves | None) -> None:
    if moves is not None and move_id < moves.last_move:
        raise Rejected(
            ErrorCode.WRONG_GROUP,
            f"move {move_id} of shard {shard} of model {_show(model.name)} is stale: move "
            f"{moves.last_move} came after it here",
        )


# ---- AcceptShard ----------------------------------------------------------------------------


def accept(
    model: ModelState, op: pb.AcceptShard, elements_room: int, key_elements_max: int
) -> tuple[ShardResult, int]:
    """Stage (or, the last part, serve) the part's keys; returns the result and the change in
    elements held. ``elements_room``: how many more elements the group may hold."""
    check_move_target(model, op.shard, op.move_id)
    moves = model.moves.get(op.shard)
    if moves is not None and moves.accepted_move == op.move_id:
        return ShardResult(ErrorCode.OK, f"shard {op.shard} was accepted by move {op.move_id} already"), 0
    _check_not_stale(model, op.shard, op.move_id, moves)
    if moves is None or not moves.released_move:
        served = next((key for key in model.keys if shard_of(key, model.num_shards) == op.shard), None)
        if served is not None:
            raise Rejected(
                ErrorCode.SPEC_CONFLICT,
                f"shard {op.shard} of model {_show(model.name)} is served here already (key {_show(served)})",
            )
    restaging = moves is not None and moves.staging_move not in (0, op.move_id)
    staged_before = {} if moves is None or restaging else moves.staged_keys
    slot_names = model.optimizer.slot_names
    incoming: dict[str, KeyState] = {}
    gathered: dict[str, npt.NDArray[np.float32]] = {}
    for item in op.keys:
        if shard_of(item.key, model.num_shards) != op.shard:
            raise Rejected(ErrorCode.INVALID_ARGUMENT, f"key {_show(item.key)} is not on shard {op.shard}")
        if item.key in incoming or item.key in model.keys:
            raise Rejected(ErrorCode.INVALID_ARGUMENT, f"key {_show(item.key)} is repeated or served here")
        weights = _f32(item.key, item.weights)
        if weights.size > key_elements_max:
            raise Rejected(
                ErrorCode.TOO_LARGE, f"key {_show(item.key)}: {weights.size} elements, over the maximum"
            )
        if len(item.slots) != len(slot_names):
            raise Rejected(
                ErrorCode.INVALID_ARGUMENT,
                f"key {_show(item.key)} carries {len(item.slots)} optimizer slots, the optimizer has "
                f"{len(slot_names)}",
            )
        slots = {name: _f32(item.key, tensor) for name, tensor in zip(slot_names, item.slots, strict=True)}
        if any(slot.size != weights.size for slot in slots.values()):
            raise Rejected(
                ErrorCode.SHAPE_MISMATCH, f"key {_show(item.key)}: slots and weights differ in size"
            )
        incoming[item.key] = KeyState(weights, slots, item.step, bytes(item.initial_digest))
        if item.HasField("gathered"):
            gathered[item.key] = _f32(item.key, item.gathered)
            if gathered[item.key].size != weights.size:
                raise Rejected(
                    ErrorCode.SHAPE_MISMATCH, f"key {_show(item.key)}: gathered and weights differ in size"
                )
    delta = sum(state.elements for state in incoming.values())
    delta -= sum(staged_before[key].elements for key in incoming if key in staged_before)  # a repeated part
    if restaging and moves is not None:  # parts of an older move of the shard are given up
        delta -= sum(state.elements for state in moves.staged_keys.values())
    if delta > elements_room:
        raise Rejected(ErrorCode.RESOURCE_EXHAUSTED, f"{delta} more elements do not fit on this group")
    # ---- checked: change state
    if moves is None:
        moves = model.moves[op.shard] = ShardMoves()
    if restaging or moves.staging_move == 0:
        moves.staged_keys = {}
        moves.staged_gathered = {}
    moves.staging_move = op.move_id
    moves.last_move = op.move_id
    moves.staged_keys.update(incoming)
    moves.staged_gathered.update(gathered)
    if not op.last:
        return ShardResult(ErrorCode.OK, f"staged {len(incoming)} key(s)", installed=len(incoming)), delta
    now_served = moves.staged_keys
    model.keys.update(now_served)
    if model.sync.mode == SyncMode.BSP and now_served:  # (a shard without keys has no barrier)
        model.sync.barriers[op.shard] = Barrier(
            keys=set(now_served),
            step=op.barrier_step,
            pushed=set(op.barrier_pushed),
            gathered_pushes=op.barrier_gathered_pushes,
            gathered=moves.staged_gathered,
        )
        model.refresh_step()
    if moves.released_move and not moves.released_dropped:  # it came back: the frozen copy is stale
        delta -= sum(state.elements for state in moves.released_keys.values())
    moves.released_move = 0
    moves.released_dropped = False
    moves.released_keys = {}
    moves.released_barrier = None
    moves.staging_move = 0
    moves.staged_keys = {}
    moves.staged_gathered = {}
    moves.accepted_move = op.move_id
    return ShardResult(
        ErrorCode.OK, f"serving {len(now_served)} key(s)", installed=len(now_served), step=model.step
    ), delta


def _f32(key: str, tensor: pb.Tensor) -> npt.NDArray[np.float32]:
    if tensor.dtype != pb.D_TYPE_FLOAT32:
        raise Rejected(ErrorCode.DTYPE_MISMATCH, f"moved state of {_show(key)} must be float32")
    try:
        values: npt.NDArray[Any] = decode_tensor(tensor)
    except ValueError as exc:
        raise Rejected(ErrorCode.INVALID_ARGUMENT, f"tensor of {_show(key)}: {exc}") from None
    return np.array(values, dtype=np.float32, copy=True)


# ---- DropShard ------------------------------------------------------------------------------


def drop(model: ModelState, op: pb.DropShard) -> tuple[ShardResult, int]:
    """Forget the frozen keys of the shard released by ``op.move_id``; returns the result and
    the (negative) change in elements held."""
    check_move_target(model, op.shard, op.move_id)
    moves = model.moves.get(op.shard)
    if moves is None or moves.released_move != op.move_id:
        return ShardResult(ErrorCode.OK, f"shard {op.shard} holds nothing of move {op.move_id}"), 0
    if moves.released_dropped:
        return ShardResult(ErrorCode.OK, f"shard {op.shard} of move {op.move_id} was dropped already"), 0
    freed = sum(state.elements for state in moves.released_keys.values())
    moves.released_keys = {}
    moves.released_dropped = True
    return ShardResult(ErrorCode.OK, f"dropped {freed} element(s)"), -freed
