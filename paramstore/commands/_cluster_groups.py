"""``paramstore cluster add-group|remove-group|rebalance|moves``: store groups and shard moves.

``add-group`` lists a new store group in the coordinator (start its store nodes first,
``paramstore store --group G ...``), then records the moves that give it its share of every
model's shards. ``remove-group`` records moves that take every shard off the group, waits
for them, then unlists it. ``rebalance`` spreads shards evenly over the listed groups.
The moves themselves are carried out by the coordinator leader's shard mover; these
commands record them and wait (``--wait-timeout``) until they are done, printing progress.
Interrupted, the moves still finish: they are recorded in the coordinator.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

from paramstore.client import (
    CommandRejectedError,
    CoordinatorClient,
    DeadlineExceededError,
    parse_addresses,
    pending_moves,
    plan_balance,
    plan_drain,
    record_moves,
)
from paramstore.commands._common import print_json
from paramstore.coordinator import AddGroup, GroupMember, RemoveGroup

__all__ = ["GROUP_ACTIONS", "add_group_parsers", "check_group_args", "run_group_action"]

GROUP_ACTIONS = ("add-group", "remove-group", "rebalance", "moves")
_POLL_S = 0.2


def add_group_parsers(actions: Any) -> list[argparse.ArgumentParser]:
    add = actions.add_parser("add-group", help="list a new store group and move shards onto it")
    add.add_argument("--group", type=int, required=True, help="the new group's id (>= 1)")
    add.add_argument(
        "--members", required=True, help="ID=HOST:PORT,... of the group's store nodes (started already)"
    )
    add.add_argument("--no-rebalance", action="store_true", help="list the group but move no shard to it")
    remove = actions.add_parser("remove-group", help="move every shard off a store group, then unlist it")
    remove.add_argument("--group", type=int, required=True)
    rebalance = actions.add_parser("rebalance", help="spread every model's shards evenly over the groups")
    moves = actions.add_parser("moves", help="list the pending shard moves")
    moves.add_argument("--json", action="store_true")
    for sub in (add, remove, rebalance):
        sub.add_argument(
            "--wait-timeout", type=float, default=300.0, help="seconds to wait for the moves (default 300)"
        )
    return [add, remove, rebalance, moves]


def check_group_args(args: argparse.Namespace) -> str | None:
    """The first bad flag, or None."""
    if getattr(args, "group", 1) < 1:
        return f"--group must be a positive integer, got {args.group}"
    if getattr(args, "wait_timeout", 1.0) <= 0:
        return f"--wait-timeout must be > 0, got {args.wait_timeout}"
    if args.cluster_action == "add-group":
        try:
            _members(args.members)
        except ValueError as exc:
            return f"--members: {exc}"
    return None


def _members(text: str) -> tuple[GroupMember, ...]:
    members = []
    for item in text.split(","):
        node, sep, address = item.strip().partition("=")
        if not sep or not node.strip().isdigit() or int(node) < 1:
            raise ValueError(f"{item.strip()!r}: expected ID=HOST:PORT with ID >= 1")
        members.append(GroupMember(int(node), parse_addresses(address.strip())[0]))
    if len({m.node_id for m in members}) != len(members):
        raise ValueError("a node id is listed twice")
    return tuple(members)


async def run_group_action(client: CoordinatorClient, args: argparse.Namespace) -> int:
    action = args.cluster_action
    if action == "moves":
        return await _list_moves(client, args.json)
    if action == "add-group":
        result = await client.execute(AddGroup(args.group, _members(args.members)))
        if not result.ok:
            raise CommandRejectedError(result)
        print(f"group {args.group} listed (config {result.config_number})")
        if args.no_rebalance:
            return 0
    config = await client.config()
    groups = sorted(g.group_id for g in config.groups)
    if action == "remove-group" and args.group not in groups:
        print(f"paramstore cluster remove-group: no group {args.group} (groups: {groups})", file=sys.stderr)
        return 1
    busy = {move.model for move in await pending_moves(client)}
    try:
        plan = (
            plan_drain(config, args.group, busy=busy)
            if action == "remove-group"
            else plan_balance(config, groups, busy=busy)
        )
    except ValueError as exc:
        print(f"paramstore cluster {action}: {exc}", file=sys.stderr)
        return 1
    recorded = await record_moves(client, plan)
    print(
        f"{recorded} shard move(s) recorded"
        + (f"; models with moves pending left alone: {sorted(busy)}" if busy else "")
    )
    await _wait_for_moves(client, args.wait_timeout)
    if action == "remove-group":
        config = await client.config()
        still = sum(1 for model in config.models for group in model.shard_groups if group == args.group)
        if still:
            print(
                f"paramstore cluster remove-group: group {args.group} still owns {still} shard(s)",
                file=sys.stderr,
            )
            return 1
        result = await client.execute(RemoveGroup(args.group))
        if not result.ok:
            raise CommandRejectedError(result)
        print(f"group {args.group} unlisted (config {result.config_number})")
    return 0


async def _wait_for_moves(client: CoordinatorClient, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    total = len(await pending_moves(client))
    shown = -1
    while True:
        left = len(await pending_moves(client))
        if left != shown:
            print(f"moves: {total - left}/{total} done", flush=True)
            shown = left
        if not left:
            return
        if time.monotonic() >= deadline:
            raise DeadlineExceededError(
                f"{left} shard move(s) still pending after {timeout_s:.0f} s; they go on in the background "
                "(`paramstore cluster moves` lists them; a BSP model's shards wait until no worker trains it)"
            )
        await asyncio.sleep(_POLL_S)


async def _list_moves(client: CoordinatorClient, as_json: bool) -> int:
    moves = await pending_moves(client)
    if as_json:
        print_json(
            [
                {"model": m.model, "shard": m.shard, "from": m.source, "to": m.target, "move_id": m.move_id}
                for m in moves
            ]
        )
        return 0
    for m in moves:
        print(f"move {m.move_id}: model {m.model!r} shard {m.shard}: group {m.source} -> {m.target}")
    print(f"{len(moves)} pending")
    return 0
