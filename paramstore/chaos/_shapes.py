"""Partition shapes beyond "one node cut off": which links of a group to cut.

Both shapes leave every node able to reach a majority, so no node is simply out of the
game; what they test is whether Raft copes with nodes that disagree about who is reachable.

* **bridge**: the group minus one node B is split into two sides that cannot reach each
  other; B reaches everyone. With 5 nodes: {1, 2} - 3 - {4, 5}; with 3: X - B - Y, the X-Y
  link cut. B is the only node both sides hear from, so only B can win an election that
  both sides' votes would be needed for, and a leader on one side cannot reach the other.
* **majorities-ring**: the nodes are placed on a ring (in an order drawn from the seed) and
  each keeps only its links to the nodes nearest to it on the ring, just enough of them to
  see a majority (itself included); all longer links are cut. Every node then sees a
  majority, and no two nodes see the same one. With 5 nodes each keeps its two ring
  neighbours. With 3 nodes every node is a neighbour of every other, so the ring is opened
  at one link instead (a line X - Y - Z: X sees {X, Y}, Z sees {Y, Z}, Y sees all three).

A shape is a ``Cuts`` mapping: node id -> the peers it must not exchange messages with
(symmetric: if b is in cuts[a], a is in cuts[b]).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

__all__ = ["Cuts", "bridge", "cut_links", "majorities_ring", "reachable"]

Cuts = dict[int, frozenset[int]]


def bridge(members: Sequence[int], bridge_node: int, rng: random.Random) -> Cuts:
    """Split ``members`` but ``bridge_node`` into two sides (drawn from ``rng``, sizes as
    equal as can be) and cut every link between the sides."""
    if len(members) < 3:
        raise ValueError(f"a bridge needs at least 3 nodes, the group has {len(members)}")
    if bridge_node not in members:
        raise ValueError(f"bridge node {bridge_node} is not one of {list(members)}")
    others = [m for m in sorted(members) if m != bridge_node]
    rng.shuffle(others)
    half = len(others) // 2
    left, right = frozenset(others[:half]), frozenset(others[half:])
    cuts: Cuts = {m: frozenset() for m in members}
    for node in left:
        cuts[node] = right
    for node in right:
        cuts[node] = left
    return cuts


def majorities_ring(members: Sequence[int], rng: random.Random) -> tuple[list[int], Cuts]:
    """The ring order drawn from ``rng`` and the cuts that leave each node its nearest ring
    neighbours only (see the module docstring)."""
    n = len(members)
    if n < 3:
        raise ValueError(f"a majorities ring needs at least 3 nodes, the group has {n}")
    ring = sorted(members)
    rng.shuffle(ring)
    majority = n // 2 + 1
    reach = -(-(majority - 1) // 2)  # ring distance each node keeps: 2 * reach + 1 >= majority
    position = {node: i for i, node in enumerate(ring)}

    def distance(a: int, b: int) -> int:
        d = abs(position[a] - position[b])
        return min(d, n - d)

    cuts: Cuts = {a: frozenset(b for b in ring if b != a and distance(a, b) > reach) for a in ring}
    if not any(cuts.values()):
        # Every node is within reach of every other (3 nodes): open the ring at one link.
        a, b = ring[-1], ring[0]
        cuts[a], cuts[b] = frozenset({b}), frozenset({a})
    return ring, cuts


def reachable(members: Sequence[int], cuts: Mapping[int, frozenset[int]]) -> dict[int, frozenset[int]]:
    """What each node can still exchange messages with, itself included."""
    return {m: frozenset(members) - cuts.get(m, frozenset()) for m in members}


def cut_links(cuts: Mapping[int, frozenset[int]]) -> list[tuple[int, int]]:
    """The cut links as sorted (low, high) pairs, each once."""
    return sorted({(min(a, b), max(a, b)) for a, peers in cuts.items() for b in peers})
