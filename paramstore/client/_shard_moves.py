"""Shard moves as the coordinator records them, and the plans that create them.

A pending move is a key ``/paramstore/moves/<model>/<shard>`` in the coordinator's
linearizable key/value store, its value ``{"model", "shard", "from", "to"}`` as JSON. The
key's create revision is the move's id: unique, and what every step of the move at the
store groups is made idempotent by. Keeping the intent in the coordinator's log (rather
than in the process that asked for it) is what lets the coordinator leader's mover
(``paramstore.server.ShardMover``) finish a move after any crash: the CLI that asked may be
gone, the leader may change; the key stays until the move is done.

Plans (``plan_balance``, ``plan_drain``) are pure functions of a config: which shards go
where so that every model's shards are spread evenly over the target groups, moving as few
as possible.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from paramstore.client._coordinator_client import CoordinatorClient
from paramstore.coordinator import KeyValue
from proto import coordinator_service_pb2 as coordinator_api

__all__ = [
    "MOVES_PREFIX",
    "PlannedMove",
    "ShardMove",
    "move_key",
    "pending_moves",
    "plan_balance",
    "plan_drain",
    "record_moves",
]

MOVES_PREFIX = "/paramstore/moves/"


@dataclass(frozen=True, slots=True)
class PlannedMove:
    model: str
    shard: int
    source: int
    target: int


@dataclass(frozen=True, slots=True)
class ShardMove:
    """A pending move as recorded; ``move_id``: the record's create revision."""

    model: str
    shard: int
    source: int
    target: int
    move_id: int
    key: str


def move_key(model: str, shard: int) -> str:
    return f"{MOVES_PREFIX}{model}/{shard}"


def move_from_kv(kv: KeyValue) -> ShardMove:
    """The move a record holds; ``ValueError`` for a record that is not one."""
    try:
        value = json.loads(kv.value)
        move = ShardMove(
            str(value["model"]),
            int(value["shard"]),
            int(value["from"]),
            int(value["to"]),
            kv.create_revision,
            kv.key,
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{kv.key}: not a shard move record ({exc})") from None
    if kv.key != move_key(move.model, move.shard):
        raise ValueError(f"{kv.key}: the record names model {move.model!r} shard {move.shard}")
    return move


async def pending_moves(client: CoordinatorClient, *, limit: int = 100_000) -> list[ShardMove]:
    """Every pending move, in key order (paged; at most ``limit``)."""
    moves: list[ShardMove] = []
    start = ""
    while len(moves) < limit:
        kvs, more, _ = await client.range(prefix=MOVES_PREFIX, start=start, limit=1000)
        moves.extend(move_from_kv(kv) for kv in kvs)
        if not more or not kvs:
            break
        start = kvs[-1].key + "\0"
    return moves[:limit]


async def record_moves(client: CoordinatorClient, moves: Iterable[PlannedMove]) -> int:
    """Record ``moves`` (compare-and-set on absence: a shard already moving keeps its move);
    returns how many were recorded."""
    recorded = 0
    for move in moves:
        value = json.dumps(
            {"model": move.model, "shard": move.shard, "from": move.source, "to": move.target}, sort_keys=True
        ).encode()
        done, _ = await client.compare_and_set(move_key(move.model, move.shard), value, expect_absent=True)
        recorded += int(done)
    return recorded


def _shard_maps(config: coordinator_api.GetConfigResponse) -> dict[str, list[int]]:
    return {model.spec.name: list(model.shard_groups) for model in config.models}


def plan_balance(
    config: coordinator_api.GetConfigResponse, groups: Sequence[int], *, busy: Iterable[str] = ()
) -> list[PlannedMove]:
    """Moves that spread every model's shards evenly over ``groups``: shards on a group not
    listed all move; a group over its share gives shards to the groups under theirs. The
    groups holding the most keep the larger shares, so as few shards move as possible.
    ``busy``: models with moves pending, left alone (plan them again once those are done)."""
    targets = sorted(set(groups))
    if not targets:
        raise ValueError("no store group to spread shards over")
    skip = set(busy)
    plan: list[PlannedMove] = []
    for name, shard_map in sorted(_shard_maps(config).items()):
        if name in skip:
            continue
        held: dict[int, list[int]] = {g: [] for g in targets}
        spare: list[tuple[int, int]] = []  # (shard, its group) that must move
        for shard, group in enumerate(shard_map):
            if group in held:
                held[group].append(shard)
            elif group != 0:
                spare.append((shard, group))
        assigned = sum(len(shards) for shards in held.values()) + len(spare)
        order = sorted(targets, key=lambda g: (-len(held[g]), g))
        share = {g: assigned // len(order) + int(i < assigned % len(order)) for i, g in enumerate(order)}
        for group in targets:
            while len(held[group]) > share[group]:
                spare.append((held[group].pop(), group))
        for group in targets:
            while len(held[group]) < share[group]:
                shard, source = spare.pop(0)
                plan.append(PlannedMove(name, shard, source, group))
                held[group].append(shard)
    return plan


def plan_drain(
    config: coordinator_api.GetConfigResponse, group: int, *, busy: Iterable[str] = ()
) -> list[PlannedMove]:
    """Moves that take every shard off ``group``, spreading them over the other groups."""
    others = sorted(g.group_id for g in config.groups if g.group_id != group)
    if not others:
        raise ValueError(f"group {group} is the only store group: its shards have nowhere to go")
    return plan_balance(config, others, busy=busy)
