"""Where a scripted fault strikes: a group, one node, or a group's current leader.

A timeline (``--timeline``) may pin a fault to part of the cluster instead of leaving the
choice to the seed. The spellings, checked against the cluster before anything starts:

* ``coordinator``, ``store:G``: the coordinator group, store group G (a node of it is drawn
  from the seed where the nemesis acts on one node);
* ``coordinator:N``, ``store:G:N``: that node;
* ``leader:coordinator``, ``leader:G``: whichever node leads that group when the fault starts.

Node ids count from 1 in every group, as ``paramstore up`` numbers them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["ClusterShape", "Target", "TargetError", "parse_target"]

TARGET_SPELLINGS = "coordinator, coordinator:N, store:G, store:G:N, leader:coordinator or leader:G"

Kind = Literal["group", "node", "leader"]

_PATTERNS: tuple[tuple[re.Pattern[str], Kind], ...] = (
    (re.compile(r"coordinator"), "group"),
    (re.compile(r"coordinator:(?P<node>\d+)"), "node"),
    (re.compile(r"store:(?P<group>\d+)"), "group"),
    (re.compile(r"store:(?P<group>\d+):(?P<node>\d+)"), "node"),
    (re.compile(r"leader:coordinator"), "leader"),
    (re.compile(r"leader:(?P<group>\d+)"), "leader"),
)


class TargetError(ValueError):
    """A target that is not spelled right or names no part of the cluster."""


@dataclass(frozen=True)
class Target:
    kind: Kind
    group: int  # 0: the coordinators
    node: int = 0  # only for kind "node"

    def __str__(self) -> str:
        group = "coordinator" if self.group == 0 else f"store:{self.group}"
        if self.kind == "leader":
            return f"leader:{'coordinator' if self.group == 0 else self.group}"
        if self.kind == "node":
            return f"coordinator:{self.node}" if self.group == 0 else f"{group}:{self.node}"
        return group


@dataclass(frozen=True)
class ClusterShape:
    """The node ids of every group (0: the coordinators), to check targets against."""

    groups: dict[int, tuple[int, ...]] = field(default_factory=dict)

    @classmethod
    def local(cls, coordinators: int, groups: int, replicas: int) -> ClusterShape:
        shape = {0: tuple(range(1, coordinators + 1))}
        shape.update({g: tuple(range(1, replicas + 1)) for g in range(1, groups + 1)})
        return cls(shape)

    def check(self, target: Target) -> None:
        """``TargetError`` if ``target`` names a group or a node this cluster does not have."""
        members = self.groups.get(target.group)
        if members is None:
            stores = sorted(g for g in self.groups if g)
            have = f"store groups {stores[0]}..{stores[-1]}" if stores else "no store groups"
            raise TargetError(f"{target}: the cluster has {have}")
        if target.kind == "node" and target.node not in members:
            raise TargetError(f"{target}: that group's nodes are {', '.join(map(str, members))}")


def parse_target(text: str) -> Target:
    """The ``Target`` a spelling names; ``TargetError`` saying what is expected otherwise."""
    for pattern, kind in _PATTERNS:
        match = pattern.fullmatch(text.strip())
        if match is None:
            continue
        parts = match.groupdict()
        group = int(parts.get("group") or 0)
        node = int(parts.get("node") or 0)
        if (parts.get("group") is not None and group < 1) or (parts.get("node") is not None and node < 1):
            break
        return Target(kind, group, node)
    raise TargetError(f"{text!r} is not a target; expected {TARGET_SPELLINGS} (G and N from 1)")
