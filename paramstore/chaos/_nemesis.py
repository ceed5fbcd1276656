"""Nemeses: the faults a chaos run injects into a cluster's real processes.

* ``kill``: kill -9 a node (coordinator or store), restart it when the fault ends;
* ``pause``: SIGSTOP a node, SIGCONT it when the fault ends;
* ``leader``: kill -9 the current leader of a group (the coordinator group or a store
  group), restart it when the fault ends;
* ``partition``: cut one node of a group off from its peers (every Raft message in and out
  dropped, through the node's ``RaftAdmin`` fault rules); half the time the leader;
* ``isolate-leader``: cut the current leader of a group off from its peers (it may keep
  believing it leads for a while: the case ReadIndex exists for);
* ``links``: delay (5-50 ms), drop (10%) and duplicate (10%) the messages of a node;
* ``bridge``: split a group in two sides that reach each other only through one node;
* ``majorities-ring``: cut a group's links so that every node sees a majority and no two
  see the same one (the shapes are described in ``_shapes.py``);
* ``skew``: one node's Raft tick timer runs fast or slow (``RaftAdmin.SetTickRate``; a
  factor of 0.25x..4x drawn from the seed unless given), as a skewed clock would make it;
* ``membership``: remove a coordinator follower from the coordinator group (a Raft
  membership change through the log); when the fault ends it is added back as a learner,
  caught up and promoted to voter again;
* ``move``: move about a third of one model's shards off a store group to the others (shard
  move records in the coordinator, carried out by its leader's shard mover while the load
  goes on); the fault ends when the moves are done (or after a bound, with a warning);
* ``power-loss``: kill -9 a majority of one group's nodes at the same moment (its size
  drawn from the seed, up to the whole group: with 3 nodes, all of them half the time) and
  lose what they had not synced (``_power_loss.py``: each WAL segment cut back to its
  synced size from the sync journal, or a torn tail); restart them when the fault ends. A
  fault only under fsync=always, which syncs before acknowledging;
* ``fsync-fail``: kill -9 a node and restart it with its WAL's fsync failing (EIO, the
  ``wal.fsync_error`` failpoint); the fault's record says whether it fail-stopped (exited
  non-zero; it is given a bounded time to start up and stop); restarted normally after.

Without a target a nemesis draws its group and node from the seed; a scripted fault may
pin them (``_targets.py``). Every fault records how to undo it, and ``heal`` does that:
restart, SIGCONT, clear the fault rules, tick at the normal rate. What a fault turned out
to do, seen only when it is healed, is in ``take_notes``.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import math
import random
import signal
import time
from collections.abc import Awaitable, Callable

from consensus.storage import failpoints
from paramstore.chaos._catalogue import CATALOGUE
from paramstore.chaos._power_loss import describe_cuts
from paramstore.chaos._shapes import Cuts, bridge, cut_links, majorities_ring
from paramstore.chaos._targets import Target
from paramstore.chaos._views import ClusterView, Node, node_name
from paramstore.client import (
    ClientError,
    CoordinatorClient,
    PlannedMove,
    move_key,
    pending_moves,
    record_moves,
)
from paramstore.commands._cluster import wait_caught_up
from proto import coordinator_service_pb2 as coordinator_api
from proto import raft_service_pb2 as raft_api

__all__ = ["Nemeses", "draw_skew_factor"]

log = logging.getLogger("paramstore.chaos")

# How to undo one step of a fault: a plain call or a coroutine function.
Heal = Callable[[], object]


def draw_skew_factor(rng: random.Random) -> float:
    """Fast or slow with equal chance, by 1.5x to 4x: never so close to 1 that it is no fault."""
    magnitude = 2 ** rng.uniform(math.log2(1.5), 2.0)
    return round(magnitude if rng.random() < 0.5 else 1 / magnitude, 2)


class Nemeses:
    """Strikes one fault at a time on ``view`` and remembers how to heal it."""

    def __init__(self, view: ClusterView, rng: random.Random) -> None:
        self.view = view
        self.rng = rng
        self._heal: list[Heal] = []
        self._notes: list[str] = []

    async def strike(self, name: str, target: Target | None = None, factor: float | None = None) -> str:
        """Inject fault ``name`` (healing the previous one first); returns what was done."""
        if name not in CATALOGUE:
            raise ValueError(f"unknown nemesis {name!r}; expected one of {', '.join(CATALOGUE)}")
        await self.heal()
        if name == "skew":
            return await self._skew(target, factor)
        method: Callable[[Target | None], Awaitable[str]] = getattr(self, f"_{name.replace('-', '_')}")
        return await method(target)

    async def heal(self) -> None:
        """Undo the current fault (every step of it, even if one fails)."""
        heals, self._heal = self._heal, []
        for heal in heals:
            try:
                result = heal()
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:  # one failed step must not leave the others undone
                log.warning("healing a fault: %s", exc)

    def take_notes(self) -> list[str]:
        """What the healed fault was seen to do while it lasted (for its record); then none."""
        notes, self._notes = self._notes, []
        return notes

    # ---- choosing where ------------------------------------------------------------------------

    def _group(self, target: Target | None) -> int:
        return self.rng.choice(self.view.groups()) if target is None else target.group

    async def _node(self, target: Target | None) -> Node | None:
        """The node a one-node nemesis acts on; None when the target's leader is not known."""
        if target is None:
            return self.rng.choice(self.view.nodes())
        if target.kind == "node":
            return (target.group, target.node)
        if target.kind == "leader":
            leader = await self.view.leader(target.group)
            return (target.group, leader) if leader else None
        return (target.group, self.rng.choice(sorted(self.view.members(target.group))))

    # ---- process faults --------------------------------------------------------------------------

    async def _kill(self, target: Target | None) -> str:
        node = await self._node(target)
        if node is None:
            return f"{target} had no leader to kill"
        self.view.kill(node)
        self._heal.append(functools.partial(self.view.restart, node))
        return f"kill -9 {node_name(node)}"

    async def _pause(self, target: Target | None) -> str:
        node = await self._node(target)
        if node is None:
            return f"{target} had no leader to pause"
        if not self.view.signal(node, signal.SIGSTOP):
            return f"{node_name(node)} was not running: not paused"
        self._heal.append(functools.partial(self.view.signal, node, signal.SIGCONT))
        return f"SIGSTOP {node_name(node)}"

    async def _leader(self, target: Target | None) -> str:
        group = self._group(target)
        leader = await self.view.leader(group)
        if not leader:
            return f"group {group} had no leader to kill"
        node = (group, leader)
        self.view.kill(node)
        self._heal.append(functools.partial(self.view.restart, node))
        return f"kill -9 the leader {node_name(node)}"

    # ---- network faults --------------------------------------------------------------------------

    async def _partition(self, target: Target | None) -> str:
        if target is not None and target.kind != "group":
            node = await self._node(target)
            if node is None:
                return f"{target} had no leader to isolate"
            await self._isolate(node)
            return f"isolate {node_name(node)} from its peers"
        group = self._group(target)
        members = sorted(self.view.members(group))
        leader = await self.view.leader(group)
        victim = leader if leader and self.rng.random() < 0.5 else self.rng.choice(members)
        node = (group, victim)
        await self._isolate(node)
        role = " (the leader)" if victim == leader else ""
        return f"isolate {node_name(node)}{role} from its peers"

    async def _isolate(self, node: Node) -> None:
        """Drop every Raft message to and from ``node`` until the fault is healed."""
        self._heal.append(functools.partial(self.view.clear, node))
        await self.view.inject(
            node, raft_api.FaultRule(direction=raft_api.FAULT_DIRECTION_BOTH, partition=True)
        )

    async def _isolate_leader(self, target: Target | None) -> str:
        group = self._group(target)
        leader = await self.view.leader(group)
        if not leader:
            return f"group {group} had no leader to isolate"
        node = (group, leader)
        await self._isolate(node)
        return f"isolate the leader {node_name(node)} from its peers"

    async def _links(self, target: Target | None) -> str:
        node = await self._node(target)
        if node is None:
            return f"{target} had no leader to slow down"
        rule = raft_api.FaultRule(
            direction=raft_api.FAULT_DIRECTION_BOTH,
            drop_probability=0.1,
            duplicate_probability=0.1,
            delay_ms_min=5.0,
            delay_ms_max=50.0,
        )
        self._heal.append(functools.partial(self.view.clear, node))
        await self.view.inject(node, rule)
        return f"delay 5-50 ms, drop 10%, duplicate 10% on {node_name(node)}'s links"

    async def _bridge(self, target: Target | None) -> str:
        group = self._group(target)
        members = sorted(self.view.members(group))
        if len(members) < 3:
            return f"group {group} has {len(members)} nodes: no bridge possible"
        if target is not None and target.kind != "group":
            node = await self._node(target)
            if node is None:
                return f"{target} had no leader to bridge through"
            middle = node[1]
        else:
            middle = self.rng.choice(members)
        cuts = bridge(members, middle, self.rng)
        await self._cut(group, cuts)
        return f"bridge {group_name(group)} through node {middle}: cut {_links_text(cuts)}"

    async def _majorities_ring(self, target: Target | None) -> str:
        group = self._group(target)
        members = sorted(self.view.members(group))
        if len(members) < 3:
            return f"group {group} has {len(members)} nodes: no majorities ring possible"
        ring, cuts = majorities_ring(members, self.rng)
        await self._cut(group, cuts)
        order = "-".join(map(str, ring))
        return f"majorities ring {order} in {group_name(group)}: cut {_links_text(cuts)}"

    async def _cut(self, group: int, cuts: Cuts) -> None:
        """Drop the messages of every cut link, on both of its ends, until healed."""
        for node_id, peers in sorted(cuts.items()):
            if not peers:
                continue
            node = (group, node_id)
            self._heal.append(functools.partial(self.view.clear, node))
            rule = raft_api.FaultRule(
                peers=sorted(peers), direction=raft_api.FAULT_DIRECTION_BOTH, partition=True
            )
            await self.view.inject(node, rule)

    # ---- disk faults -----------------------------------------------------------------------------

    async def _power_loss(self, target: Target | None) -> str:
        group = self._group(target)
        members = sorted(self.view.members(group))
        # A bare majority, or the whole group: with one node left up, its log usually wins
        # the next election and hides what the others lost; with none, nothing can.
        count = self.rng.randint(len(members) // 2 + 1, len(members))
        victims = sorted(self.rng.sample(members, count))
        # One generator per node, drawn now: how its files are cut depends on their sizes,
        # which differ from run to run, and must not shift the schedule's later draws.
        disks = [random.Random(self.rng.getrandbits(64)) for _ in victims]
        if target is not None and target.kind == "leader":
            leader = await self.view.leader(group)
            if not leader:
                return f"{target} had no leader to cut the power of"
            if leader not in victims:
                victims = sorted([leader, *victims[1:]])
        nodes = [(group, victim) for victim in victims]
        self._heal.extend(functools.partial(self.view.restart, node) for node in nodes)
        cuts = await asyncio.to_thread(self.view.cut_power, dict(zip(nodes, disks, strict=True)))
        names = ", ".join(node_name(node) for node in nodes)
        lost = "; ".join(f"{node_name(node)} {describe_cuts(cuts[node])}" for node in nodes)
        return f"power loss in {group_name(group)}: kill -9 {names} at once; {lost}"

    async def _fsync_fail(self, target: Target | None) -> str:
        node = await self._node(target)
        if node is None:
            return f"{target} had no leader to fail the fsync of"
        self.view.kill(node)
        self._heal.append(functools.partial(self._end_fsync_fail, node, time.monotonic()))
        self.view.restart(node, {failpoints.ENV_VARIABLE: failpoints.WAL_FSYNC_ERROR})
        return f"kill -9 {node_name(node)}, restarted with its WAL fsync failing (EIO)"

    async def _end_fsync_fail(self, node: Node, struck: float) -> None:
        """Note whether the node fail-stopped, then restart it with a working fsync. A node
        still starting up (a loaded machine can take seconds to import it) is given until
        ``_FAIL_STOP_WAIT_S`` after the strike to reach its first fsync and stop."""
        status = self.view.exit_status(node)
        while status is None and time.monotonic() - struck < _FAIL_STOP_WAIT_S:
            await asyncio.sleep(0.1)
            status = self.view.exit_status(node)
        name = node_name(node)
        if status is None:
            waited = time.monotonic() - struck
            self._notes.append(f"{name} was still running {waited:.1f} s later: no fail-stop seen")
            self.view.kill(node)
        elif status != 0:
            self._notes.append(f"{name} fail-stopped (exit status {status})")
        else:
            self._notes.append(f"{name} exited with status 0, not a fail-stop")
        self.view.restart(node)

    # ---- clock faults ----------------------------------------------------------------------------

    # ---- membership -----------------------------------------------------------------------------

    async def _membership(self, target: Target | None) -> str:
        leader = await self.view.leader(0)
        if not leader:
            return "the coordinator group had no leader: no membership change"
        followers = sorted(n for n in self.view.members(0) if n != leader)
        wanted = target.node if target is not None and target.kind == "node" else None
        node = wanted if wanted in followers else self.rng.choice(followers)
        async with CoordinatorClient(self.view.client_addresses, deadline_s=10.0) as client:
            response = await client.change_membership(coordinator_api.MEMBERSHIP_CHANGE_REMOVE_NODE, node)
        self._heal.append(functools.partial(self._add_back, node))
        return f"removed coordinator {node} from the group (voters now {list(response.voters)})"

    async def _add_back(self, node: int) -> None:
        """Re-add a removed coordinator: as a learner, then, once caught up, as a voter."""
        async with CoordinatorClient(self.view.client_addresses, deadline_s=_CATCH_UP_S) as client:
            await client.change_membership(coordinator_api.MEMBERSHIP_CHANGE_ADD_LEARNER, node)
            await wait_caught_up(client, node, _CATCH_UP_S)
            response = await client.change_membership(coordinator_api.MEMBERSHIP_CHANGE_PROMOTE_LEARNER, node)
        self._notes.append(f"coordinator {node} added back and promoted (voters {list(response.voters)})")

    # ---- shard moves ----------------------------------------------------------------------------

    async def _move(self, target: Target | None) -> str:
        async with CoordinatorClient(self.view.client_addresses, deadline_s=10.0) as client:
            config = await client.config()
            groups = sorted(g.group_id for g in config.groups)
            busy = {move.model for move in await pending_moves(client)}
            models = [m for m in config.models if m.spec.name not in busy]
            if len(groups) < 2 or not models:
                return "no shard moved (fewer than two store groups, or no model without pending moves)"
            model = self.rng.choice(models)
            owners = sorted({int(g) for g in model.shard_groups})
            source = self.rng.choice(owners) if target is None else target.group
            shards = [s for s, g in enumerate(model.shard_groups) if g == source]
            if not shards:
                return f"store group {source} holds no shard of {model.spec.name!r}: none moved"
            picked = sorted(self.rng.sample(shards, max(1, len(shards) // 3)))
            others = [g for g in groups if g != source]
            plan = [PlannedMove(model.spec.name, s, source, self.rng.choice(others)) for s in picked]
            recorded = await record_moves(client, plan)
        keys = {move_key(move.model, move.shard) for move in plan}
        self._heal.append(functools.partial(_wait_for_moves, self.view.client_addresses, keys))
        return f"moving {recorded} shard(s) of {model.spec.name!r} off store group {source}"

    async def _skew(self, target: Target | None, factor: float | None) -> str:
        node = await self._node(target)
        if node is None:
            return f"{target} had no leader to skew"
        factor = draw_skew_factor(self.rng) if factor is None else factor
        self._heal.append(functools.partial(self.view.reset_tick_rate, node))
        response = await self.view.set_tick_rate(node, factor)
        pace = "fast" if factor > 1 else "slow"
        unheeded = "" if response.driven else " (but no tick timer follows that node's rate)"
        return f"{node_name(node)} ticks {pace}, at {factor:g}x the normal rate{unheeded}"


_MOVES_WAIT_S = 30.0
_FAIL_STOP_WAIT_S = 30.0
_CATCH_UP_S = 30.0


async def _wait_for_moves(addresses: list[str], keys: set[str]) -> None:
    """Until none of the move records ``keys`` is pending (bounded: ``_MOVES_WAIT_S``)."""
    deadline = time.monotonic() + _MOVES_WAIT_S
    async with CoordinatorClient(addresses, deadline_s=_MOVES_WAIT_S) as client:
        while time.monotonic() < deadline:
            try:
                if not keys & {move.key for move in await pending_moves(client)}:
                    return
            except ClientError as exc:
                log.info("waiting for shard moves: %s", exc)
            await asyncio.sleep(0.1)
    log.warning("shard moves %s still pending after %.0f s", sorted(keys), _MOVES_WAIT_S)


def group_name(group: int) -> str:
    return "the coordinator group" if group == 0 else f"store group {group}"


def _links_text(cuts: Cuts) -> str:
    return ", ".join(f"{a}-{b}" for a, b in cut_links(cuts)) or "nothing"
