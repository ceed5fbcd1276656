"""Fences: shards released by a move while this group held nothing of their model.

A model is registered in the coordinator first; each group learns it only when a client
installs its keys there. A shard move that starts in between finds the giving group
without the model: there is no state to hand over, yet a client that read the shard map
before the move may still install the shard's keys on the giving group, get them served
there and push to them. Those pushes would be acknowledged by a group that no longer owns
the shard, and lost when the coordinator routes it elsewhere.

So ``ReleaseShard`` of a model not held here leaves a fence (model, shard, move id) in the
group's log. Once the model is created here (by an install of other shards' keys, or by an
``AcceptShard``), each fence becomes an ordinary released shard of that move with no keys:
its keys are refused with WRONG_GROUP, and ``FetchShard`` hands over its empty state. A
move called off before the model was created takes its fence back with an ``AcceptShard``
that carries no definition and no keys.

Fences are bounded by the limits: at most ``models_max`` fenced models, each at most
``num_shards_max`` shards.
"""

from __future__ import annotations

from paramstore.shard._limits import ShardLimits
from paramstore.shard._model import ModelState, ShardMoves
from paramstore.shard._types import ErrorCode, Rejected, ShardResult, SnapshotFormatError
from proto import shard_pb2 as pb

__all__ = ["Fences"]


def _show(name: str, limit: int = 80) -> str:
    return repr(name if len(name) <= limit else name[:limit] + "...")


class Fences:
    """Model name -> shard -> the move id that fenced it."""

    def __init__(self, limits: ShardLimits) -> None:
        self._limits = limits
        self._by_model: dict[str, dict[int, int]] = {}

    def fence(self, op: pb.ReleaseShard) -> ShardResult:
        """``ReleaseShard`` of a model this group does not hold."""
        self._check(op.shard, op.move_id)
        shards = self._by_model.get(op.model, {})
        current = shards.get(op.shard, 0)
        if current == op.move_id:
            return ShardResult(ErrorCode.OK, f"shard {op.shard} was fenced by move {op.move_id} already")
        if op.move_id < current:
            raise Rejected(
                ErrorCode.WRONG_GROUP,
                f"move {op.move_id} of shard {op.shard} of model {_show(op.model)} is stale: move "
                f"{current} came after it here",
            )
        if op.model not in self._by_model and len(self._by_model) >= self._limits.models_max:
            raise Rejected(
                ErrorCode.RESOURCE_EXHAUSTED,
                f"{len(self._by_model)} models have fenced shards here, the maximum",
            )
        # ---- checked: change state
        self._by_model.setdefault(op.model, {})[op.shard] = op.move_id
        return ShardResult(
            ErrorCode.OK,
            f"no model {_show(op.model)} here: shard {op.shard} fenced for move {op.move_id}, "
            "nothing to hand over",
        )

    def lift(self, op: pb.AcceptShard) -> ShardResult:
        """A called-off move gives a fenced shard of a model not held here back."""
        self._check(op.shard, op.move_id)
        shards = self._by_model.get(op.model, {})
        current = shards.get(op.shard, 0)
        if current != op.move_id:
            return ShardResult(ErrorCode.OK, f"shard {op.shard} is not fenced by move {op.move_id} here")
        # ---- checked: change state
        del shards[op.shard]
        if not shards:
            del self._by_model[op.model]
        return ShardResult(ErrorCode.OK, f"shard {op.shard} served here again (fence of move {op.move_id})")

    def attach(self, model: ModelState) -> None:
        """Turn the fences of ``model`` (being created here) into released shards without keys.
        The caller forgets them (``forget``) once the model is really added."""
        for shard, move_id in self._by_model.get(model.name, {}).items():
            if shard < model.num_shards and shard not in model.moves:
                moves = model.moves[shard] = ShardMoves()
                moves.released_move = move_id
                moves.last_move = move_id

    def forget(self, model: str) -> None:
        self._by_model.pop(model, None)

    def _check(self, shard: int, move_id: int) -> None:
        if shard >= self._limits.num_shards_max:
            raise Rejected(ErrorCode.INVALID_ARGUMENT, f"shard {shard} is over {self._limits.num_shards_max}")
        if move_id < 1:
            raise Rejected(ErrorCode.INVALID_ARGUMENT, "move_id must be >= 1")

    # ---- snapshot ---------------------------------------------------------------------------

    def encode(self, into: pb.ShardStateHeader) -> None:
        for model in sorted(self._by_model):
            for shard, move_id in sorted(self._by_model[model].items()):
                into.fences.add(model=model, shard=shard, move_id=move_id)

    @classmethod
    def decode(cls, header: pb.ShardStateHeader, limits: ShardLimits, held: set[str]) -> Fences:
        fences = cls(limits)
        previous: tuple[str, int] | None = None
        for stored in header.fences:
            at = (stored.model, stored.shard)
            if previous is not None and at <= previous:
                raise SnapshotFormatError(f"fence {at} is out of order")
            previous = at
            if stored.model in held:
                raise SnapshotFormatError(f"fence on model {stored.model!r}, which is held here")
            if stored.shard >= limits.num_shards_max or stored.move_id < 1:
                raise SnapshotFormatError(f"fence {at}: shard or move id out of range")
            fences._by_model.setdefault(stored.model, {})[stored.shard] = stored.move_id
        if len(fences._by_model) > limits.models_max:
            raise SnapshotFormatError(f"{len(fences._by_model)} fenced models, over {limits.models_max}")
        return fences
