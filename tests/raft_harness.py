"""A tiny, fully controlled in-memory cluster for scenario tests of the Raft core.

Unlike the simulator (random schedules), a test here decides exactly which messages are
delivered, dropped or held, so the classic scenarios of the Raft paper can be written
step by step. Each node's "disk" keeps exactly what ``Ready`` asked to persist, so a
``crash`` + ``restart`` loses everything that was not persisted.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from consensus.config import RaftConfig
from consensus.core import RaftCore
from consensus.messages import (
    ConfState,
    Entry,
    EntryKind,
    HardState,
    Message,
    ReadState,
    RestoredState,
    Role,
    Snapshot,
)

DeliveryFilter = Callable[[Message], bool]


@dataclass
class MemoryDisk:
    hard_state: HardState = HardState()
    snapshot: Snapshot | None = None
    entries: list[Entry] = field(default_factory=list)

    def restored(self) -> RestoredState:
        return RestoredState(self.hard_state, self.snapshot, tuple(self.entries))


@dataclass
class NodeRecord:
    disk: MemoryDisk = field(default_factory=MemoryDisk)
    applied: list[Entry] = field(default_factory=list)
    read_states: list[ReadState] = field(default_factory=list)
    snapshots_installed: int = 0


class Cluster:
    """Nodes 1..n over a message queue the test controls."""

    def __init__(
        self, n: int = 3, *, seed: int = 0, learners: tuple[int, ...] = (), **config: object
    ) -> None:
        self.conf = ConfState(tuple(range(1, n + 1)), learners)
        self.seed = seed
        self.config_overrides = config
        self.cores: dict[int, RaftCore] = {}
        self.records: dict[int, NodeRecord] = {}
        self.down: set[int] = set()
        self.queue: list[Message] = []
        self.sent: list[Message] = []
        # Links that drop everything: (sender, recipient) pairs.
        self.cut: set[tuple[int, int]] = set()
        self.drop_filter: DeliveryFilter | None = None
        for node_id in self.conf.voters + learners:
            self.add_node(node_id, self.conf)

    # ---- membership of the harness ----------------------------------------------------

    def make_config(self, node_id: int, conf: ConfState) -> RaftConfig:
        return RaftConfig(node_id=node_id, initial_conf=conf, **self.config_overrides)  # type: ignore[arg-type]

    def add_node(self, node_id: int, conf: ConfState) -> RaftCore:
        record = self.records.setdefault(node_id, NodeRecord())
        core = RaftCore(
            self.make_config(node_id, conf), record.disk.restored(), random.Random(self.seed * 1000 + node_id)
        )
        self.cores[node_id] = core
        return core

    def crash(self, node_id: int) -> None:
        """Kill the node: only its disk survives; messages to it are lost."""
        self.down.add(node_id)
        self.queue = [m for m in self.queue if m.recipient != node_id and m.sender != node_id]

    def restart(self, node_id: int) -> RaftCore:
        self.down.discard(node_id)
        conf = self.cores[node_id].config.initial_conf
        return self.add_node(node_id, conf)

    def isolate(self, node_id: int) -> None:
        for other in self.cores:
            if other != node_id:
                self.cut.add((node_id, other))
                self.cut.add((other, node_id))

    def partition(self, *groups: set[int]) -> None:
        for a in groups:
            for b in groups:
                if a is not b:
                    for x in a:
                        for y in b:
                            self.cut.add((x, y))

    def heal(self) -> None:
        self.cut.clear()

    # ---- driving ------------------------------------------------------------------------

    def process_ready(self, node_id: int) -> None:
        core = self.cores[node_id]
        record = self.records[node_id]
        while core.has_ready():
            rd = core.ready()
            disk = record.disk
            if rd.snapshot is not None:
                disk.snapshot = rd.snapshot
                disk.entries = []
                record.applied = [
                    Entry(rd.snapshot.meta.term, rd.snapshot.meta.index, EntryKind.NOOP, b"<snap>")
                ]
                record.snapshots_installed += 1
            if rd.entries:
                first = rd.entries[0].index
                disk.entries = [e for e in disk.entries if e.index < first] + list(rd.entries)
            if rd.hard_state is not None:
                disk.hard_state = rd.hard_state
            for msg in rd.messages:
                self.sent.append(msg)
                self.queue.append(msg)
            record.applied.extend(rd.committed_entries)
            record.read_states.extend(rd.read_states)
            core.advance(rd)

    def process_all_ready(self) -> None:
        for node_id in sorted(self.cores):
            if node_id not in self.down:
                self.process_ready(node_id)

    def deliver_one(self, msg: Message) -> bool:
        if msg.recipient in self.down or msg.sender in self.down:
            return False
        if (msg.sender, msg.recipient) in self.cut:
            return False
        if self.drop_filter is not None and self.drop_filter(msg):
            return False
        self.cores[msg.recipient].step(msg)
        return True

    def deliver_all(self, max_rounds: int = 1000) -> None:
        """Deliver queued messages (and the ones they cause) until the network is quiet."""
        for _ in range(max_rounds):
            self.process_all_ready()
            if not self.queue:
                return
            batch, self.queue = self.queue, []
            for msg in batch:
                self.deliver_one(msg)
        raise AssertionError(f"network did not go quiet within {max_rounds} rounds")

    def tick(self, count: int = 1, nodes: set[int] | None = None) -> None:
        for _ in range(count):
            for node_id in sorted(self.cores):
                if node_id in self.down or (nodes is not None and node_id not in nodes):
                    continue
                self.cores[node_id].tick()
            self.deliver_all()

    def tick_until(self, predicate: Callable[[], bool], max_ticks: int = 500) -> None:
        for _ in range(max_ticks):
            if predicate():
                return
            self.tick()
        if not predicate():
            raise AssertionError(f"condition not reached within {max_ticks} ticks: {self.cores}")

    # ---- queries ------------------------------------------------------------------------

    def leaders(self) -> list[int]:
        return [i for i, c in self.cores.items() if i not in self.down and c.role == Role.LEADER]

    def elect(self, max_ticks: int = 500) -> int:
        self.tick_until(lambda: len(self.leaders()) == 1, max_ticks)
        return self.leaders()[0]

    def propose(self, node_id: int, data: bytes) -> int:
        index = self.cores[node_id].propose(data)
        self.deliver_all()
        return index

    def applied_data(self, node_id: int) -> list[bytes]:
        return [e.data for e in self.records[node_id].applied if e.kind == EntryKind.NORMAL]

    def live(self) -> list[int]:
        return [i for i in sorted(self.cores) if i not in self.down]
