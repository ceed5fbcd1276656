"""Exactly-once commands through client sessions, and the log clock that ends them."""

from __future__ import annotations

from paramstore.coordinator import (
    CommandResult,
    CompareAndSet,
    CoordinatorLimits,
    CoordinatorStateMachine,
    Delete,
    ErrorCode,
    Operation,
    Put,
    Tick,
    decode_result,
    encode_command,
)


def send(
    machine: CoordinatorStateMachine, op: Operation, client: str, sequence: int, now_ms: int = 0
) -> tuple[bytes, CommandResult]:
    raw = machine.apply_bytes(encode_command(op, client_id=client, sequence=sequence, now_ms=now_ms))
    return raw, decode_result(raw)


def test_a_retried_command_returns_the_stored_result_without_applying_again() -> None:
    machine = CoordinatorStateMachine()
    raw, first = send(machine, Put("k", b"1"), "c", 1)
    assert first.ok
    send(machine, Put("other", b"x"), "d", 1)  # another client moves the revision on
    raw_again, again = send(machine, Put("k", b"1"), "c", 1)
    assert raw_again == raw
    assert (again.revision, again.key_version) == (1, 1)
    assert machine.revision == 2
    kv = machine.get("k")
    assert kv is not None and kv.version == 1
    assert [c.key for c in machine.changes_since(0).changes] == ["k", "other"]


def test_a_retried_failure_stays_a_failure_even_when_it_would_now_succeed() -> None:
    machine = CoordinatorStateMachine()
    _, refused = send(machine, CompareAndSet("lock", b"me", expected_version=1), "c", 1)
    assert refused.code == ErrorCode.CAS_MISMATCH
    send(machine, Put("lock", b"someone"), "d", 1)  # now version 1 exists
    _, retried = send(machine, CompareAndSet("lock", b"me", expected_version=1), "c", 1)
    assert retried == refused
    kv = machine.get("lock")
    assert kv is not None and kv.value == b"someone"


def test_an_older_sequence_is_stale_and_applies_nothing() -> None:
    machine = CoordinatorStateMachine()
    send(machine, Put("k", b"1"), "c", 1)
    send(machine, Put("k", b"2"), "c", 2)
    _, stale = send(machine, Delete("k"), "c", 1)
    assert stale.code == ErrorCode.STALE_SEQUENCE
    assert "older than its last applied sequence 2" in stale.message
    assert machine.get("k") is not None and machine.revision == 2
    assert machine.last_sequence("c") == 2


def test_sequences_may_skip_numbers_but_a_new_session_starts_at_one() -> None:
    machine = CoordinatorStateMachine()
    _, unknown = send(machine, Put("k", b"1"), "new", 5)
    assert unknown.code == ErrorCode.SESSION_EXPIRED
    assert machine.last_sequence("new") is None and machine.revision == 0
    assert send(machine, Put("k", b"1"), "new", 1)[1].ok
    assert send(machine, Put("k", b"2"), "new", 7)[1].ok
    assert machine.last_sequence("new") == 7


def test_session_fields_are_checked_before_anything_is_recorded() -> None:
    machine = CoordinatorStateMachine()
    for client, sequence in [("", 1), ("c", 0), ("x" * 129, 1)]:
        _, result = send(machine, Put("k", b"v"), client, sequence)
        assert result.code in (ErrorCode.INVALID_ARGUMENT, ErrorCode.TOO_LARGE), result
    assert machine.revision == 0 and machine.stats()["sessions"] == 0
    _, tick_with_session = send(machine, Tick(), "c", 1)
    assert tick_with_session.code == ErrorCode.INVALID_ARGUMENT
    _, tick = send(machine, Tick(), "", 0, now_ms=50)
    assert tick.ok and machine.clock_ms == 50


def test_an_idle_session_expires_on_the_log_clock_and_its_retry_is_refused() -> None:
    machine = CoordinatorStateMachine(CoordinatorLimits(session_ttl_ms=1_000))
    send(machine, Put("k", b"1"), "c", 1, now_ms=10_000)
    send(machine, Put("x", b"1"), "d", 1, now_ms=10_999)  # c idle for 999 ms: still there
    assert machine.last_sequence("c") == 1
    send(machine, Tick(), "", 0, now_ms=11_000)  # c idle for ttl: gone
    assert machine.last_sequence("c") is None
    assert machine.last_sequence("d") == 1
    _, next_command = send(machine, Put("k", b"2"), "c", 2, now_ms=11_000)
    assert next_command.code == ErrorCode.SESSION_EXPIRED
    assert "new client id" in next_command.message
    kv = machine.get("k")
    assert kv is not None and kv.value == b"1"


def test_activity_keeps_a_session_alive_and_the_clock_never_goes_back() -> None:
    machine = CoordinatorStateMachine(CoordinatorLimits(session_ttl_ms=1_000))
    for sequence, now_ms in enumerate([1_000, 1_900, 2_800, 2_000, 3_700], start=1):
        _, result = send(machine, Put("k", b"%d" % sequence), "c", sequence, now_ms=now_ms)
        assert result.ok
    assert machine.clock_ms == 3_700
    send(machine, Tick(), "", 0, now_ms=100)  # a leader whose clock is behind
    assert machine.clock_ms == 3_700
    assert machine.last_sequence("c") == 5


def test_a_duplicate_counts_as_activity() -> None:
    machine = CoordinatorStateMachine(CoordinatorLimits(session_ttl_ms=1_000))
    send(machine, Put("k", b"1"), "c", 1, now_ms=1_000)
    send(machine, Put("k", b"1"), "c", 1, now_ms=1_900)
    send(machine, Tick(), "", 0, now_ms=2_500)
    assert machine.last_sequence("c") == 1


def test_a_full_session_table_evicts_the_least_recently_active_client() -> None:
    machine = CoordinatorStateMachine(CoordinatorLimits(sessions_max=2))
    send(machine, Put("a", b"1"), "a", 1, now_ms=1)
    send(machine, Put("b", b"1"), "b", 1, now_ms=2)
    send(machine, Put("a", b"2"), "a", 2, now_ms=3)  # a is now more recent than b
    send(machine, Put("c", b"1"), "c", 1, now_ms=3)
    assert machine.last_sequence("b") is None
    assert (machine.last_sequence("a"), machine.last_sequence("c")) == (2, 1)
    _, evicted = send(machine, Put("b", b"2"), "b", 2, now_ms=4)
    assert evicted.code == ErrorCode.SESSION_EXPIRED
