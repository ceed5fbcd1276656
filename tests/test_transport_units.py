"""consensus.transport without a network: fault decisions, batch framing, config and rule checks."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consensus.codec import decode_message, encode_message, message_to_proto
from consensus.errors import InvalidMessageError
from consensus.messages import Entry, EntryKind, Message, MessageType
from consensus.transport import (
    FaultDirection,
    FaultInjector,
    FaultRule,
    FaultRuleError,
    TransportConfig,
    batch_header,
    encode_batch,
    fault_rule_from_proto,
    fault_rule_to_proto,
)
from consensus.transport._framing import HAND_FRAMED_ENTRY_BYTES, encode_message_parts, varint
from proto import raft_service_pb2

OUT = FaultDirection.OUTBOUND
IN = FaultDirection.INBOUND


def injector(seed: int = 7, node_id: int = 1) -> FaultInjector:
    return FaultInjector(node_id, seed, rules_max=8, delay_ms_max=10_000.0)


def fates(
    faults: FaultInjector, peer_id: int, count: int, direction: FaultDirection = OUT
) -> list[tuple[float, ...]]:
    return [faults.fate(direction, peer_id) for _ in range(count)]


# ---- fault decisions ---------------------------------------------------------------------------


def test_no_rule_leaves_every_message_untouched() -> None:
    assert set(fates(injector(), 2, 100)) == {(0.0,)}


def test_partition_drops_everything_on_the_named_links_only() -> None:
    faults = injector()
    faults.add(FaultRule(peers=frozenset({2, 3}), direction=FaultDirection.BOTH, partition=True))
    assert set(fates(faults, 2, 20)) == {()}
    assert set(fates(faults, 3, 20, IN)) == {()}
    assert set(fates(faults, 4, 20)) == {(0.0,)}


def test_direction_limits_where_a_rule_acts() -> None:
    faults = injector()
    faults.add(FaultRule(direction=FaultDirection.INBOUND, drop_probability=1.0))
    assert set(fates(faults, 2, 10, OUT)) == {(0.0,)}
    assert set(fates(faults, 2, 10, IN)) == {()}
    with pytest.raises(ValueError, match="one way"):
        faults.fate(FaultDirection.BOTH, 2)


def test_drop_probability_drops_about_that_share() -> None:
    faults = injector()
    faults.add(FaultRule(drop_probability=0.3))
    dropped = sum(1 for fate in fates(faults, 2, 2000) if not fate)
    assert 500 <= dropped <= 700


def test_duplicate_probability_one_doubles_every_message() -> None:
    faults = injector()
    faults.add(FaultRule(duplicate_probability=1.0))
    assert set(fates(faults, 2, 50)) == {(0.0, 0.0)}


def test_delay_is_drawn_within_the_range_for_each_copy() -> None:
    faults = injector()
    faults.add(FaultRule(duplicate_probability=1.0, delay_ms_min=100.0, delay_ms_max=200.0))
    for fate in fates(faults, 2, 200):
        assert len(fate) == 2
        assert all(0.1 <= delay_s <= 0.2 for delay_s in fate)
    # Each copy has its own delay, so copies can swap places.
    assert any(fate[0] != fate[1] for fate in fates(faults, 2, 20))


def test_rules_apply_in_order_and_delays_add_up() -> None:
    faults = injector()
    faults.add(FaultRule(delay_ms_min=50.0, delay_ms_max=50.0))
    faults.add(FaultRule(peers=frozenset({2}), delay_ms_min=25.0, delay_ms_max=25.0))
    assert faults.fate(OUT, 2) == pytest.approx((0.075,))
    assert faults.fate(OUT, 3) == pytest.approx((0.05,))


def test_decisions_depend_only_on_seed_node_link_and_position() -> None:
    rule = FaultRule(drop_probability=0.5, duplicate_probability=0.3, delay_ms_min=1.0, delay_ms_max=9.0)
    first, second, other_seed = injector(seed=11), injector(seed=11), injector(seed=12)
    for faults in (first, second, other_seed):
        faults.add(rule)
    # Traffic on another link, interleaved, does not shift this link's decisions.
    expected = fates(first, 2, 300)
    observed = []
    for _ in range(300):
        second.fate(OUT, 3)
        observed.append(second.fate(OUT, 2))
    assert observed == expected
    assert fates(other_seed, 2, 300) != expected


def test_rules_are_listed_cleared_by_id_and_bounded() -> None:
    faults = FaultInjector(1, 0, rules_max=2, delay_ms_max=1000.0)
    first = faults.add(FaultRule(drop_probability=0.1))
    second = faults.add(FaultRule(partition=True))
    assert [rule_id for rule_id, _ in faults.rules()] == [first, second]
    with pytest.raises(FaultRuleError, match="fault_rules_max"):
        faults.add(FaultRule())
    assert faults.clear([first, 999]) == 1
    assert faults.clear([first]) == 0
    third = faults.add(FaultRule())
    assert third not in (first, second)
    assert faults.clear() == 2
    assert not faults.active


@pytest.mark.parametrize(
    ("rule", "problem"),
    [
        (FaultRule(drop_probability=1.5), "drop_probability"),
        (FaultRule(duplicate_probability=-0.1), "duplicate_probability"),
        (FaultRule(drop_probability=float("nan")), "drop_probability"),
        (FaultRule(delay_ms_min=5.0, delay_ms_max=1.0), "delay_ms_min"),
        (FaultRule(delay_ms_max=float("inf")), "delay_ms_max"),
        (FaultRule(delay_ms_max=20_000.0), "fault_delay_ms_max"),
        (FaultRule(peers=frozenset({0})), "peers"),
    ],
)
def test_impossible_rules_are_refused_naming_the_field(rule: FaultRule, problem: str) -> None:
    with pytest.raises(FaultRuleError, match=problem):
        injector().add(rule)


def test_fault_rules_round_trip_through_the_admin_schema() -> None:
    rule = FaultRule(
        peers=frozenset({3, 2}),
        direction=FaultDirection.BOTH,
        drop_probability=0.25,
        duplicate_probability=0.5,
        delay_ms_min=1.5,
        delay_ms_max=20.0,
        partition=True,
    )
    proto = fault_rule_to_proto(9, rule)
    assert proto.id == 9
    assert list(proto.peers) == [2, 3]
    assert proto.direction == raft_service_pb2.FAULT_DIRECTION_BOTH
    assert fault_rule_from_proto(raft_service_pb2.FaultRule.FromString(proto.SerializeToString())) == rule
    with pytest.raises(FaultRuleError, match="direction"):
        fault_rule_from_proto(raft_service_pb2.FaultRule(drop_probability=0.5))


# ---- framing -----------------------------------------------------------------------------------

small_messages = st.builds(
    Message,
    type=st.sampled_from(MessageType),
    sender=st.integers(1, 2**64 - 1),
    recipient=st.integers(1, 2**64 - 1),
    term=st.integers(0, 2**64 - 1),
    entries=st.lists(
        st.builds(Entry, term=st.integers(0, 9), index=st.integers(0, 9), data=st.binary(max_size=300)),
        max_size=3,
    ).map(tuple),
    chunk_data=st.binary(max_size=200),
)


@given(
    from_node=st.integers(0, 2**64 - 1),
    to_node=st.integers(0, 2**64 - 1),
    messages=st.lists(small_messages, max_size=5),
)
def test_hand_framed_batches_are_what_protobuf_writes(
    from_node: int, to_node: int, messages: list[Message]
) -> None:
    framed = encode_batch(batch_header(from_node, to_node), [encode_message(msg) for msg in messages])
    reference = raft_service_pb2.RaftBatch(
        from_node=from_node, to_node=to_node, messages=[message_to_proto(msg) for msg in messages]
    )
    assert framed == reference.SerializeToString()
    parsed = raft_service_pb2.RaftBatch.FromString(framed)
    assert (parsed.from_node, parsed.to_node, len(parsed.messages)) == (from_node, to_node, len(messages))


big_entries = st.builds(
    Entry,
    term=st.integers(0, 2**64 - 1),
    index=st.integers(0, 2**64 - 1),
    kind=st.sampled_from(EntryKind),
    data=st.one_of(
        st.binary(max_size=40),
        st.tuples(st.integers(0, 255), st.integers(0, 3000)).map(
            lambda fill: bytes([fill[0]]) * (HAND_FRAMED_ENTRY_BYTES + fill[1])
        ),
    ),
)


@given(
    message=st.builds(
        Message,
        type=st.just(MessageType.APPEND),
        sender=st.integers(1, 2**64 - 1),
        recipient=st.integers(1, 2**64 - 1),
        term=st.integers(0, 2**64 - 1),
        log_term=st.integers(0, 2**64 - 1),
        index=st.integers(0, 2**64 - 1),
        commit=st.integers(0, 2**64 - 1),
        entries=st.lists(big_entries, min_size=1, max_size=4).map(tuple),
    )
)
def test_appends_with_big_entries_framed_by_hand_parse_as_protobuf_would(message: Message) -> None:
    encoded = encode_message_parts(message)
    assert encoded.size == sum(len(part) for part in encoded.parts)
    assert decode_message(encoded.join()) == message
    big = any(len(entry.data) >= HAND_FRAMED_ENTRY_BYTES for entry in message.entries)
    # The big entries' data is passed on, not copied, until the batch is joined.
    assert big == (len(encoded.parts) > 1)
    for entry in message.entries:
        if len(entry.data) >= HAND_FRAMED_ENTRY_BYTES:
            assert any(part is entry.data for part in encoded.parts)
    framed = encode_batch(batch_header(3, 4), [encoded, encode_message(message)])
    parsed = raft_service_pb2.RaftBatch.FromString(framed)
    assert [decode_message(m.SerializeToString()) for m in parsed.messages] == [message, message]


def test_a_hand_framed_entry_that_cannot_be_encoded_is_named() -> None:
    bad = Message(
        MessageType.APPEND,
        1,
        2,
        1,
        entries=(Entry(1, 1, data=b"x" * HAND_FRAMED_ENTRY_BYTES), Entry(2**64, 2, data=b"y")),
    )
    with pytest.raises(InvalidMessageError, match=r"Message.entries\[1\]"):
        encode_message_parts(bad)


@given(st.integers(1, 2**64 - 1))
def test_varint_matches_protobuf(value: int) -> None:
    assert b"\x08" + varint(value) == raft_service_pb2.StreamAck(batches=value).SerializeToString()
    assert varint(0) == b"\x00"


def test_varint_refuses_values_outside_uint64() -> None:
    for value in (-1, 2**64):
        with pytest.raises(ValueError, match="varint"):
            varint(value)


# ---- config ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"message_bytes_max": 0}, "message_bytes_max"),
        ({"message_bytes_max": 2**31}, "32-bit"),
        ({"batch_bytes_max": 128 * 1024 * 1024}, "batch_bytes_max"),
        ({"outbound_queue_bytes_max": 1024}, "outbound_queue_bytes_max"),
        ({"backoff_initial_ms": 500.0, "backoff_max_ms": 100.0}, "backoff_max_ms"),
        ({"connect_timeout_ms": 0.0}, "connect_timeout_ms"),
    ],
)
def test_config_refuses_inconsistent_limits(overrides: dict[str, float], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        TransportConfig(**overrides)  # type: ignore[arg-type]
