"""Model-based test of shard moves: two groups' state machines that push, move shards back
and forth (every step of a move in any interleaving with pushes, steps repeated, snapshots
restored mid-move) against one reference machine that never moves anything.

After every step: each key is served by exactly the group the moves say (none while its
shard is between release and its last accepted part), and the served weights and update
counts are bit-identical to the reference's. A push refused as moved changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from paramstore.shard import (
    ErrorCode,
    ShardError,
    ShardStateMachine,
    accept_parts,
    decode_result,
    encode_drop,
    encode_install,
    encode_push,
    encode_release,
    shard_of,
)
from proto import shard_pb2 as pb

NUM_SHARDS = 4
KEYS = tuple(f"k{i}" for i in range(10))
ELEMENTS = 6
ADAM = {"name": "adam", "learning_rate": 0.05}
CLIENTS = ("c0", "c1")
SHARDS = sorted({shard_of(key, NUM_SHARDS) for key in KEYS})


@dataclass
class _Move:
    source: int
    target: int
    move_id: int
    parts: list[bytes]  # AcceptShard entries
    accepted: int = 0  # of them applied at the target


def _accept_bytes(part: pb.AcceptShard) -> bytes:
    return pb.ShardCommand(accept_shard=part).SerializeToString(deterministic=True)


class ShardMoves(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        initial = {
            key: np.linspace(-1, 1, ELEMENTS, dtype=np.float32) * (i + 1) for i, key in enumerate(KEYS)
        }
        self.groups = [ShardStateMachine(), ShardStateMachine()]
        self.reference = ShardStateMachine()
        install = encode_install("m", ADAM, initial, NUM_SHARDS)
        for machine in (self.groups[0], self.reference):
            assert decode_result(machine.apply_bytes(install)).ok
        self.owner = dict.fromkeys(range(NUM_SHARDS), 0)  # the coordinator's map
        self.sequences = {(c, g): 0 for c in CLIENTS for g in (0, 1)}
        self.reference_sequence = 0
        self.last_push: dict[tuple[str, int], bytes] = {}
        self.move_ids = 0
        self.moving: dict[int, _Move] = {}
        self.applied_steps: list[tuple[int, bytes]] = []  # (group, entry) of move steps, to repeat

    # ---- pushes -----------------------------------------------------------------------------

    @rule(
        client=st.sampled_from(CLIENTS),
        picks=st.sets(st.sampled_from(KEYS), min_size=1),
        seed=st.integers(0, 99),
    )
    def push(self, client: str, picks: set[str], seed: int) -> None:
        rng = np.random.default_rng(seed)
        grads = {key: rng.standard_normal(ELEMENTS).astype(np.float32) for key in sorted(picks)}
        for group in (0, 1):  # the client splits by the map it knows
            part = {k: g for k, g in grads.items() if self.owner[shard_of(k, NUM_SHARDS)] == group}
            if not part:
                continue
            self.sequences[(client, group)] += 1
            data = encode_push("m", [(client, self.sequences[(client, group)])], part)
            before = self.groups[group].snapshot()
            result = decode_result(self.groups[group].apply_bytes(data))
            if result.code == ErrorCode.WRONG_GROUP:
                assert any(shard_of(k, NUM_SHARDS) in self.moving for k in part), result
                assert self.groups[group].snapshot() == before
                continue
            assert result.ok and not result.duplicate, result
            self.last_push[(client, group)] = data
            self.reference_sequence += 1
            assert decode_result(
                self.reference.apply_bytes(encode_push("m", [("ref", self.reference_sequence)], part))
            ).ok

    @precondition(lambda self: self.last_push)
    @rule(data=st.data())
    def retry_last_push(self, data: st.DataObject) -> None:
        client, group = data.draw(st.sampled_from(sorted(self.last_push)))
        if self.sequences[(client, group)] != _sequence_of(self.last_push[(client, group)]):
            return  # a later push of the client to the group was refused: this one is stale
        before = self.groups[group].snapshot()
        result = decode_result(self.groups[group].apply_bytes(self.last_push[(client, group)]))
        assert result.ok and result.duplicate, result  # even when its shard moved away since
        assert self.groups[group].snapshot() == before

    # ---- moves ------------------------------------------------------------------------------

    @precondition(lambda self: len(self.moving) < len(SHARDS))
    @rule(shard=st.sampled_from(SHARDS))
    def release(self, shard: int) -> None:
        if shard in self.moving:
            return
        source = self.owner[shard]
        self.move_ids += 1
        entry = encode_release("m", shard, self.move_ids)
        assert decode_result(self.groups[source].apply_bytes(entry)).ok
        self.applied_steps.append((source, entry))
        model, keys = self.groups[source].released_shard("m", shard, self.move_ids)
        parts = [_accept_bytes(p) for p in accept_parts(model, shard, self.move_ids, keys, part_bytes_max=60)]
        self.moving[shard] = _Move(source, 1 - source, self.move_ids, parts)

    @precondition(lambda self: self.moving)
    @rule(data=st.data())
    def accept_next_part(self, data: st.DataObject) -> None:
        shard = data.draw(st.sampled_from(sorted(self.moving)))
        move = self.moving[shard]
        if move.accepted == len(move.parts):
            return
        entry = move.parts[move.accepted]
        result = decode_result(self.groups[move.target].apply_bytes(entry))
        assert result.ok, result
        self.applied_steps.append((move.target, entry))
        move.accepted += 1

    @precondition(lambda self: self.moving)
    @rule(data=st.data())
    def finish(self, data: st.DataObject) -> None:
        shard = data.draw(st.sampled_from(sorted(self.moving)))
        move = self.moving[shard]
        if move.accepted != len(move.parts):
            return
        self.owner[shard] = move.target  # the coordinator's AssignShards
        entry = encode_drop("m", shard, move.move_id)
        assert decode_result(self.groups[move.source].apply_bytes(entry)).ok
        self.applied_steps.append((move.source, entry))
        del self.moving[shard]

    @precondition(lambda self: self.applied_steps)
    @rule(data=st.data())
    def repeat_a_step(self, data: st.DataObject) -> None:
        """A mover that crashed re-runs a step it did already: no change."""
        group, entry = data.draw(st.sampled_from(self.applied_steps[-8:]))
        before = self.groups[group].snapshot()
        result = decode_result(self.groups[group].apply_bytes(entry))
        if result.ok:
            assert self.groups[group].snapshot() == before, result
        else:  # a stale step of an older move of a shard that moved again since
            assert result.code in (ErrorCode.WRONG_GROUP, ErrorCode.SPEC_CONFLICT), result
            assert self.groups[group].snapshot() == before

    @rule(group=st.sampled_from((0, 1)))
    def restart_from_snapshot(self, group: int) -> None:
        restored = ShardStateMachine()
        restored.restore(self.groups[group].snapshot())
        assert restored.snapshot() == self.groups[group].snapshot()
        self.groups[group] = restored

    # ---- invariants -------------------------------------------------------------------------

    @invariant()
    def served_where_the_moves_say_and_equal_to_the_reference(self) -> None:
        expected = self.reference.pull("m", KEYS)
        for key in KEYS:
            shard = shard_of(key, NUM_SHARDS)
            move = self.moving.get(shard)
            servers = []
            for group, machine in enumerate(self.groups):
                try:
                    weights = machine.pull("m", [key])[key]
                except ShardError as exc:
                    assert exc.code in (
                        ErrorCode.WRONG_GROUP,
                        ErrorCode.UNKNOWN_KEY,
                        ErrorCode.UNKNOWN_MODEL,
                    ), exc
                    continue
                servers.append(group)
                assert np.array_equal(weights, expected[key]), key
                assert machine.key_step("m", key) == self.reference.key_step("m", key), key
            if move is None:
                assert servers == [self.owner[shard]], (key, servers)
            elif move.accepted == len(move.parts):
                assert servers == [move.target], (key, servers)
            else:
                assert servers == [], (key, servers)


def _sequence_of(entry: bytes) -> int:
    command = pb.ShardCommand.FromString(entry)
    return int(command.push.covers[0].sequence)


TestShardMoves = ShardMoves.TestCase
TestShardMoves.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
