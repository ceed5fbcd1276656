"""The coordinator's key/value commands and reads: revisions, versions, errors, watch history."""

from __future__ import annotations

import pytest

from paramstore.coordinator import (
    ChangeKind,
    CommandResult,
    CompareAndSet,
    CoordinatorError,
    CoordinatorLimits,
    CoordinatorStateMachine,
    Delete,
    DeletePrefix,
    DeleteRange,
    ErrorCode,
    Operation,
    Put,
    decode_result,
    encode_command,
)
from proto import coordinator_pb2 as pb


class Driver:
    """Applies operations as one client with increasing sequence numbers."""

    def __init__(self, limits: CoordinatorLimits | None = None) -> None:
        self.machine = CoordinatorStateMachine(limits)
        self.sequence = 0
        self.now_ms = 1_000

    def do(self, op: Operation) -> CommandResult:
        self.sequence += 1
        data = encode_command(op, client_id="client", sequence=self.sequence, now_ms=self.now_ms)
        return decode_result(self.machine.apply_bytes(data))


def state_without_sessions(machine: CoordinatorStateMachine) -> bytes:
    """The snapshot minus the session table (which records every command's outcome)."""
    state = pb.CoordinatorState()
    state.ParseFromString(machine.snapshot()[12:])
    del state.sessions[:]
    return state.SerializeToString(deterministic=True)


def test_put_sets_version_to_the_new_revision_and_keeps_create_revision() -> None:
    driver = Driver()
    first = driver.do(Put("jobs/a", b"1"))
    assert (first.code, first.revision, first.key_version) == (ErrorCode.OK, 1, 1)
    driver.do(Put("jobs/b", b"x"))
    third = driver.do(Put("jobs/a", b"2"))
    assert (third.revision, third.key_version) == (3, 3)
    kv = driver.machine.get("jobs/a")
    assert kv is not None
    assert (kv.value, kv.version, kv.create_revision, kv.lease) == (b"2", 3, 1, "")
    assert driver.machine.revision == 3


def test_delete_bumps_the_revision_only_when_the_key_existed() -> None:
    driver = Driver()
    driver.do(Put("k", b"v"))
    gone = driver.do(Delete("k"))
    assert (gone.code, gone.deleted, gone.revision) == (ErrorCode.OK, 1, 2)
    again = driver.do(Delete("k"))
    assert (again.code, again.deleted, again.revision) == (ErrorCode.OK, 0, 2)
    assert driver.machine.get("k") is None


def test_compare_and_set_on_version_value_and_absence() -> None:
    driver = Driver()
    created = driver.do(CompareAndSet("lock", b"owner-1", expect_absent=True))
    assert (created.code, created.key_version) == (ErrorCode.OK, 1)
    taken = driver.do(CompareAndSet("lock", b"owner-2", expect_absent=True))
    assert (taken.code, taken.key_version, taken.revision) == (ErrorCode.CAS_MISMATCH, 1, 1)
    assert "expected no key, found version 1" in taken.message
    stale = driver.do(CompareAndSet("lock", b"owner-2", expected_version=7))
    assert (stale.code, stale.key_version) == (ErrorCode.CAS_MISMATCH, 1)
    by_version = driver.do(CompareAndSet("lock", b"owner-2", expected_version=1))
    assert (by_version.code, by_version.key_version) == (ErrorCode.OK, 2)
    wrong_value = driver.do(CompareAndSet("lock", b"owner-3", expected_value=b"owner-1"))
    assert wrong_value.code == ErrorCode.CAS_MISMATCH
    by_value = driver.do(CompareAndSet("lock", b"owner-3", expected_value=b"owner-2"))
    assert (by_value.code, by_value.key_version) == (ErrorCode.OK, 3)
    missing = driver.do(CompareAndSet("other", b"v", expected_version=1))
    assert (missing.code, missing.key_version) == (ErrorCode.CAS_MISMATCH, 0)
    zero = driver.do(CompareAndSet("lock", b"v", expected_version=0))
    assert zero.code == ErrorCode.INVALID_ARGUMENT
    kv = driver.machine.get("lock")
    assert kv is not None and kv.value == b"owner-3"


def test_compare_and_set_needs_exactly_one_expectation() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        CompareAndSet("k", b"v")
    with pytest.raises(ValueError, match="exactly one"):
        CompareAndSet("k", b"v", expected_version=1, expect_absent=True)


@pytest.mark.parametrize(
    ("op", "code"),
    [
        (Put("", b"v"), ErrorCode.INVALID_ARGUMENT),
        (Put("é" * 513, b"v"), ErrorCode.TOO_LARGE),  # 1026 UTF-8 bytes
        (Put("k", bytes((1 << 20) + 1)), ErrorCode.TOO_LARGE),
        (Put("k", b"v", lease="nobody"), ErrorCode.UNKNOWN_WORKER),
        (Delete(""), ErrorCode.INVALID_ARGUMENT),
        (CompareAndSet("", b"v", expect_absent=True), ErrorCode.INVALID_ARGUMENT),
        (CompareAndSet("k", bytes((1 << 20) + 1), expect_absent=True), ErrorCode.TOO_LARGE),
        (DeleteRange("b", "a"), ErrorCode.INVALID_ARGUMENT),
        (DeletePrefix(""), ErrorCode.INVALID_ARGUMENT),
    ],
)
def test_bad_commands_get_an_error_and_change_nothing(op: Operation, code: ErrorCode) -> None:
    driver = Driver()
    driver.do(Put("k", b"before"))
    before = state_without_sessions(driver.machine)
    result = driver.do(op)
    assert result.code == code, result.message
    assert result.message
    assert result.revision == 1
    assert state_without_sessions(driver.machine) == before


def test_largest_key_and_value_are_accepted() -> None:
    driver = Driver()
    result = driver.do(Put("k" * 1024, bytes(1 << 20)))
    assert result.code == ErrorCode.OK


def test_malformed_and_oversize_entries_are_refused_without_a_session() -> None:
    machine = CoordinatorStateMachine(CoordinatorLimits(command_bytes_max=1 << 20))
    garbage = decode_result(machine.apply_bytes(b"\xff\xff\xff"))
    assert garbage.code == ErrorCode.INVALID_ARGUMENT
    no_op = decode_result(machine.apply_bytes(pb.Command(client_id="c", sequence=1).SerializeToString()))
    assert (no_op.code, no_op.message) == (ErrorCode.INVALID_ARGUMENT, "command has no operation")
    big = encode_command(Put("k", bytes(1 << 20)), client_id="c", sequence=1)
    assert decode_result(machine.apply_bytes(big)).code == ErrorCode.TOO_LARGE
    assert machine.last_sequence("c") is None
    assert machine.revision == 0


def test_the_store_refuses_keys_past_its_bound() -> None:
    driver = Driver(CoordinatorLimits(keys_max=2))
    assert driver.do(Put("a", b"x")).ok
    assert driver.do(Put("b", b"x")).ok
    full = driver.do(Put("c", b""))
    assert full.code == ErrorCode.RESOURCE_EXHAUSTED and "2 keys" in full.message
    assert driver.do(Put("a", b"y")).ok  # replacing a key needs no new slot
    assert driver.do(Delete("b")).ok
    assert driver.do(Put("c", b"x")).ok


def test_the_store_refuses_bytes_past_its_bound() -> None:
    driver = Driver(CoordinatorLimits(key_bytes_max=8, value_bytes_max=16, kv_bytes_max=30))
    assert driver.do(Put("a", bytes(16))).ok  # 17 bytes
    over = driver.do(Put("b", bytes(16)))  # 34 > 30
    assert over.code == ErrorCode.RESOURCE_EXHAUSTED and "bytes" in over.message
    assert driver.do(Put("b", bytes(12))).ok  # 30
    assert driver.do(Put("a", bytes(10))).ok  # shrinking frees room
    assert driver.do(Put("b", bytes(16))).ok


def test_delete_range_and_prefix_delete_a_bounded_batch_and_say_more() -> None:
    driver = Driver(CoordinatorLimits(delete_range_keys_max=3))
    for name in ["a", "b/1", "b/2", "b/3", "b/4", "c"]:
        driver.do(Put(name, b"v"))
    first = driver.do(DeletePrefix("b/"))
    assert (first.deleted, first.more) == (3, True)
    second = driver.do(DeletePrefix("b/"))
    assert (second.deleted, second.more) == (1, False)
    assert [kv.key for kv in driver.machine.range("", None).kvs] == ["a", "c"]
    ranged = driver.do(DeleteRange("a", "c"))
    assert (ranged.deleted, ranged.more) == (1, False)
    everything = driver.do(DeleteRange(""))
    assert (everything.deleted, everything.more) == (1, False)
    assert driver.machine.range("", None).kvs == ()


def test_range_and_prefix_reads_are_ordered_and_bounded() -> None:
    driver = Driver()
    for name in ["m/b", "m/a", "m/c", "n", "l"]:
        driver.do(Put(name, name.encode()))
    page = driver.machine.range("m/", "n", limit=2)
    assert [kv.key for kv in page.kvs] == ["m/a", "m/b"]
    assert page.more and page.revision == 5
    rest = driver.machine.range("m/b\x00", "n", limit=2)
    assert [kv.key for kv in rest.kvs] == ["m/c"] and not rest.more
    assert [kv.key for kv in driver.machine.prefix("m/", limit=10).kvs] == ["m/a", "m/b", "m/c"]
    assert [kv.key for kv in driver.machine.range("m", None, limit=10).kvs] == ["m/a", "m/b", "m/c", "n"]
    exact = driver.machine.prefix("m/", limit=3)
    assert len(exact.kvs) == 3 and not exact.more
    for bad_limit in (0, 10_001):
        with pytest.raises(CoordinatorError) as info:
            driver.machine.range("", None, limit=bad_limit)
        assert info.value.code == ErrorCode.INVALID_ARGUMENT


def test_watch_reads_changes_after_a_revision_under_a_prefix_in_pages() -> None:
    driver = Driver()
    driver.do(Put("w/a", b"1"))  # 1
    driver.do(Put("x", b"1"))  # 2
    driver.do(Put("w/b", b"2"))  # 3
    driver.do(Delete("w/a"))  # 4
    driver.do(Put("x", b"2"))  # 5
    batch = driver.machine.changes_since(0, prefix="w/", limit=2)
    assert [(c.revision, c.kind, c.key, c.value) for c in batch.changes] == [
        (1, ChangeKind.PUT, "w/a", b"1"),
        (3, ChangeKind.PUT, "w/b", b"2"),
    ]
    assert (batch.next_revision, batch.more, batch.revision) == (3, True, 5)
    rest = driver.machine.changes_since(batch.next_revision, prefix="w/", limit=2)
    assert [(c.revision, c.kind, c.key) for c in rest.changes] == [(4, ChangeKind.DELETE, "w/a")]
    assert (rest.next_revision, rest.more) == (5, False)
    caught_up = driver.machine.changes_since(5, prefix="w/")
    assert (caught_up.changes, caught_up.next_revision, caught_up.more) == ((), 5, False)


def test_watch_from_a_compacted_revision_is_a_clear_error() -> None:
    limits = CoordinatorLimits(
        history_changes_max=4, key_bytes_max=8, value_bytes_max=8, history_bytes_max=64
    )
    driver = Driver(limits)
    for k in range(10):
        driver.do(Put(f"k{k}", b"v"))
    assert driver.machine.compacted_revision == 6
    with pytest.raises(CoordinatorError) as info:
        driver.machine.changes_since(5)
    assert info.value.code == ErrorCode.COMPACTED
    assert "re-read" in info.value.message
    batch = driver.machine.changes_since(6)
    assert [c.revision for c in batch.changes] == [7, 8, 9, 10]
    with pytest.raises(CoordinatorError) as future:
        driver.machine.changes_since(11)
    assert future.value.code == ErrorCode.FUTURE_REVISION


def test_changes_since_any_revision_in_the_history_is_the_same_from_either_end() -> None:
    """changes_since walks the ring from its nearer end; every start gives the same answer."""
    limits = CoordinatorLimits(history_changes_max=20)
    driver = Driver(limits)
    for k in range(30):
        driver.do(Put(f"{'ab'[k % 2]}/{k}", b"v"))
    assert driver.machine.compacted_revision == 10
    for start in range(10, 31):
        everything = driver.machine.changes_since(start)
        assert [c.revision for c in everything.changes] == list(range(start + 1, 31))
        under_b = driver.machine.changes_since(start, prefix="b/")
        assert [c.revision for c in under_b.changes] == [r for r in range(start + 1, 31) if r % 2 == 0]
        assert under_b.next_revision == 30


def test_history_is_bounded_in_bytes_too() -> None:
    limits = CoordinatorLimits(key_bytes_max=8, value_bytes_max=32, history_bytes_max=80)
    driver = Driver(limits)
    for k in range(5):
        driver.do(Put(f"k{k}", bytes(30)))  # 32 bytes a change: two fit in 80
    assert driver.machine.compacted_revision == 3
    assert [c.revision for c in driver.machine.changes_since(3).changes] == [4, 5]
