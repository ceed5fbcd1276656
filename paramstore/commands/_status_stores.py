"""``paramstore status --stores``: every store group the coordinator lists, each member's own
view (role, term, indexes, its models' steps), how many of each model's shards the group
owns, and the shard moves still pending."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc

from paramstore.client import CoordinatorClient, pending_moves
from proto import store_service_pb2 as api
from proto import store_service_pb2_grpc as api_grpc

__all__ = ["print_store_rows", "store_rows"]

_COLUMNS = ("group", "id", "address", "role", "term", "leader", "commit", "applied", "models")


async def _member(address: str, timeout_s: float) -> dict[str, Any]:
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            r = await api_grpc.StoreStub(channel).Status(api.StatusRequest(), timeout=timeout_s)
    except grpc.aio.AioRpcError as exc:
        return {"address": address, "error": f"{exc.code().name}: {exc.details()}"}
    return {
        "id": r.node_id,
        "address": address,
        "role": r.role,
        "term": r.term,
        "leader": r.leader_id,
        "commit": r.commit_index,
        "applied": r.applied_index,
        "models": {m.name: {"step": m.step, "keys": m.keys, "workers": len(m.workers)} for m in r.models},
    }


async def store_rows(client: CoordinatorClient, timeout_s: float) -> dict[str, Any]:
    """The groups (with their members' answers and owned shards) and the pending moves."""
    config = await client.config()
    groups: list[dict[str, Any]] = []
    for group in sorted(config.groups, key=lambda g: g.group_id):
        owned = {
            model.spec.name: sum(1 for owner in model.shard_groups if owner == group.group_id)
            for model in config.models
        }
        members = await asyncio.gather(*(_member(m.address, timeout_s) for m in group.members))
        groups.append({"group": group.group_id, "shards": owned, "members": members})
    moves = [
        {"model": m.model, "shard": m.shard, "from": m.source, "to": m.target, "move_id": m.move_id}
        for m in await pending_moves(client)
    ]
    return {"config_number": config.config_number, "groups": groups, "pending_moves": moves}


def print_store_rows(view: dict[str, Any]) -> None:
    print()
    print("  ".join(f"{c:<18}" if c == "address" else f"{c:<7}" for c in _COLUMNS).rstrip())
    for group in view["groups"]:
        for member in group["members"]:
            if "error" in member:
                where = f"{group['group']!s:<7}  {'-':<7}  {member['address']:<18}"
                print(f"{where}  unreachable: {member['error']}")
                continue
            models = ", ".join(f"{name}@{m['step']}" for name, m in sorted(member["models"].items())) or "-"
            cells = [
                f"{value!s:<18}" if column == "address" else f"{value!s:<7}"
                for column, value in (
                    ("group", group["group"]),
                    *((c, member[c]) for c in _COLUMNS[1:-1]),
                    ("models", models),
                )
            ]
            print("  ".join(cells).rstrip())
        shards = ", ".join(f"{name}: {count}" for name, count in sorted(group["shards"].items())) or "none"
        print(f"        shards owned: {shards}")
    print(f"pending shard moves: {len(view['pending_moves'])} (config {view['config_number']})")
