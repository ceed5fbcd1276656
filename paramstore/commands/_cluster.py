"""``paramstore cluster ACTION``: change the coordinator group (add-node, remove-node,
transfer-leader) or the store groups and where shards live (add-group, remove-group,
rebalance, moves: ``_cluster_groups``).

``add-node`` is three steps, each through the log: record the new node's address under
``/paramstore/coordinators/ID`` (every member dials it from then on), add it as a learner,
wait until it has caught up, then promote it to voter. Start the new node first with
``paramstore coordinator --join --peers <current members + itself>``.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from paramstore.client import ClusterUnavailableError, CoordinatorClient, parse_addresses
from paramstore.commands._cluster_groups import (
    GROUP_ACTIONS,
    add_group_parsers,
    check_group_args,
    run_group_action,
)
from paramstore.commands._common import add_coordinators_flag, fail, run_with_client
from paramstore.server import peer_address_key
from proto import coordinator_service_pb2 as api

__all__ = ["add_parser", "run", "wait_caught_up"]

_CATCHUP_POLL_S = 0.1


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "cluster", help="change the coordinator group, the store groups, or where shards live"
    )
    actions = parser.add_subparsers(dest="cluster_action", metavar="ACTION", required=True)
    add = actions.add_parser("add-node", help="add a coordinator node (started with --join)")
    add.add_argument("--id", type=int, required=True, help="the new node's id")
    add.add_argument("--address", required=True, help="the new node's HOST:PORT")
    add.add_argument("--catchup-timeout", type=float, default=30.0, help="seconds to wait for it to catch up")
    remove = actions.add_parser("remove-node", help="remove a coordinator node from the group")
    remove.add_argument("--id", type=int, required=True)
    transfer = actions.add_parser("transfer-leader", help="hand leadership to a voter")
    transfer.add_argument("--id", type=int, required=True)
    for sub in (add, remove, transfer, *add_group_parsers(actions)):
        add_coordinators_flag(sub)


def run(args: argparse.Namespace) -> int:
    action = args.cluster_action
    command = f"cluster {action}"
    if action in GROUP_ACTIONS:
        problem = check_group_args(args)
        if problem:
            return fail(command, problem, 2)
        return run_with_client(command, args, lambda client: run_group_action(client, args))
    if args.id < 1:
        return fail(command, f"--id must be a positive integer, got {args.id}", 2)
    if action == "add-node":
        try:
            parse_addresses(args.address)
        except ValueError as exc:
            return fail(command, f"--address: {exc}", 2)

    async def body(client: CoordinatorClient) -> int:
        if action == "add-node":
            await client.put(peer_address_key(args.id), args.address.encode())
            await client.change_membership(api.MEMBERSHIP_CHANGE_ADD_LEARNER, args.id)
            await wait_caught_up(client, args.id, args.catchup_timeout)
            response = await client.change_membership(api.MEMBERSHIP_CHANGE_PROMOTE_LEARNER, args.id)
        elif action == "remove-node":
            response = await client.change_membership(api.MEMBERSHIP_CHANGE_REMOVE_NODE, args.id)
        else:
            await client.transfer_leader(args.id)
            print(f"node {args.id} leads")
            return 0
        print(f"voters {list(response.voters)} learners {list(response.learners)}")
        return 0

    return run_with_client(command, args, body)


async def wait_caught_up(client: CoordinatorClient, node_id: int, timeout_s: float) -> None:
    """Until the leader has replicated its whole log to ``node_id`` (its match index)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for status in await client.status_all():
            r = status.response
            if r is None or r.role != "leader":
                continue
            match = next((p.match_index for p in r.peers if p.node_id == node_id), 0)
            if match >= r.commit_index:
                return
        await asyncio.sleep(_CATCHUP_POLL_S)
    raise ClusterUnavailableError(f"node {node_id} did not catch up within {timeout_s:.0f} s")
