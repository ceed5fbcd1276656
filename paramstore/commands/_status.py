"""``paramstore status``: every coordinator node's own view, side by side (with ``--stores``,
the store groups too: ``_status_stores``).

Lag is how far a node's applied index trails the leader's commit index (the leader's view
of the group, taken in the same round of questions).
"""

from __future__ import annotations

import argparse
from typing import Any

from paramstore.client import CoordinatorClient, NodeStatus
from paramstore.commands._common import add_coordinators_flag, print_json, run_with_client
from paramstore.commands._status_stores import print_store_rows, store_rows

__all__ = ["add_parser", "rows", "run"]

_COLUMNS = ("id", "address", "role", "term", "leader", "commit", "applied", "lag", "fsync")


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("status", help="show each coordinator node's role, term, indexes and lag")
    add_coordinators_flag(parser)
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument(
        "--stores",
        action="store_true",
        help="also each store group's members, owned shards and pending moves",
    )


def rows(statuses: list[NodeStatus]) -> list[dict[str, Any]]:
    """One dict per node: what it said, or the error that it did not answer with."""
    leader_commit = max(
        (s.response.commit_index for s in statuses if s.response is not None and s.response.role == "leader"),
        default=None,
    )
    out: list[dict[str, Any]] = []
    for status in statuses:
        r = status.response
        if r is None:
            out.append({"address": status.address, "error": status.error})
            continue
        out.append(
            {
                "id": r.node_id,
                "address": status.address,
                "cluster_id": r.cluster_id,
                "role": r.role,
                "term": r.term,
                "leader": r.leader_id,
                "leader_address": r.leader_address,
                "commit": r.commit_index,
                "applied": r.applied_index,
                "last_index": r.last_index,
                "snapshot_index": r.snapshot_index,
                "lag": None if leader_commit is None else max(0, leader_commit - r.applied_index),
                "voters": list(r.voters),
                "learners": list(r.learners),
                "fsync": r.fsync,
                "revision": r.revision,
                "config_number": r.config_number,
            }
        )
    return out


def run(args: argparse.Namespace) -> int:
    async def body(client: CoordinatorClient) -> int:
        table = rows(await client.status_all(min(args.timeout, 5.0)))
        stores = await store_rows(client, min(args.timeout, 5.0)) if args.stores else None
        if args.json:
            print_json(table if stores is None else {"coordinators": table, "stores": stores})
        else:
            print("  ".join(f"{c:<18}" if c == "address" else f"{c:<9}" for c in _COLUMNS).rstrip())
            for row in table:
                if "error" in row:
                    print(f"{'-':<9}  {row['address']:<18}  unreachable: {row['error']}")
                    continue
                cells = [f"{row[c]!s:<18}" if c == "address" else f"{row[c]!s:<9}" for c in _COLUMNS]
                print("  ".join(cells).rstrip())
            if stores is not None:
                print_store_rows(stores)
        # Non-zero when no node answered: a script can tell "down" from "up".
        return 0 if any("error" not in row for row in table) else 1

    return run_with_client("status", args, body)
