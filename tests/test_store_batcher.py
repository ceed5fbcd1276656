"""The leader's push batcher on its own: entries in flight, merging behind them, log order.

Its ``propose`` here applies each entry to a real ``ShardStateMachine`` once the test opens
a gate, so the test decides when an entry "commits" (the Raft path is tested with real
groups in test_store_service.py)."""

from __future__ import annotations

import asyncio

import numpy as np

from paramstore.server._store_batcher import BatcherLimits, PendingPush, PushBatcher
from paramstore.shard import ClientSequence, ShardStateMachine, decode_result, encode_install
from paramstore.shard._push_wire import parse_push_command

ELEMENTS = 8


class GatedLog:
    """Entries are appended in the order proposed and applied when ``commit_next`` says."""

    def __init__(self) -> None:
        self.machine = ShardStateMachine()
        self.machine.apply_bytes(
            encode_install(
                "m", {"name": "sgd", "learning_rate": 1.0}, {"a": np.zeros(ELEMENTS, np.float32)}, 1
            )
        )
        self.proposed: list[bytes] = []
        self._gates: list[asyncio.Event] = []

    async def propose(self, data: bytes) -> object:
        self.proposed.append(data)
        gate = asyncio.Event()
        self._gates.append(gate)
        await gate.wait()
        return self.machine.apply_bytes(data)

    def in_flight(self) -> int:
        return sum(1 for gate in self._gates if not gate.is_set())

    def commit_next(self) -> None:
        next(gate for gate in self._gates if not gate.is_set()).set()


def one_hot(slot: int) -> np.ndarray:
    grads = np.zeros(ELEMENTS, np.float32)
    grads[slot] = -1.0  # SGD with rate 1: the weight at ``slot`` goes up by one
    return grads


def pending(client: str, slot: int) -> PendingPush:
    return PendingPush("m", ClientSequence(client, 1), 0, {"a": one_hot(slot)}, 4 * ELEMENTS, True)


async def settle(condition: object, rounds: int = 100) -> None:
    """Run the loop until ``condition()`` holds (bounded: a few hundred passes, no timer)."""
    for _ in range(rounds):
        if condition():  # type: ignore[operator]
            return
        await asyncio.sleep(0)
    raise AssertionError("condition not reached")


def covers_of(data: bytes) -> list[str]:
    op = parse_push_command(data)
    assert op is not None
    return [c.client_id for c in op.covers]


def test_two_entries_fly_at_once_and_the_pushes_behind_them_merge_in_order() -> None:
    async def scenario() -> None:
        log = GatedLog()
        batcher = PushBatcher(log.propose, BatcherLimits(entries_in_flight_max=2))
        waiters = [batcher.submit(pending("c0", 0))]
        await settle(lambda: log.in_flight() == 1)
        waiters.append(batcher.submit(pending("c1", 1)))
        await settle(lambda: log.in_flight() == 2)  # the second did not wait for the first
        waiters += [batcher.submit(pending(f"c{i}", i)) for i in range(2, 6)]
        for _ in range(20):
            await asyncio.sleep(0)
        assert log.in_flight() == 2  # never a third
        log.commit_next()
        await settle(lambda: len(log.proposed) == 3)
        # Everything that queued behind the two went as one merged entry, in queue order.
        assert [covers_of(data) for data in log.proposed] == [["c0"], ["c1"], ["c2", "c3", "c4", "c5"]]
        while log.in_flight():
            log.commit_next()
            await asyncio.sleep(0)
        results = await asyncio.wait_for(asyncio.gather(*waiters), 10)
        assert [merged for _, merged in results] == [1, 1, 4, 4, 4, 4]
        assert all(result.ok for result, _ in results)
        weights = log.machine.pull("m", ["a"])["a"]
        np.testing.assert_array_equal(weights[:6], np.ones(6, np.float32))
        assert decode_result(log.machine.apply_bytes(log.proposed[0])).duplicate  # applied once
        await batcher.close()
        # Once idle, nothing is left behind: a later push starts a fresh queue.
        later = batcher.submit(pending("c7", 7))
        await settle(lambda: log.in_flight() == 1)
        log.commit_next()
        (result, merged) = await asyncio.wait_for(later, 10)
        assert result.ok and merged == 1

    asyncio.run(scenario())


def test_one_entry_in_flight_when_so_limited() -> None:
    async def scenario() -> None:
        log = GatedLog()
        batcher = PushBatcher(log.propose, BatcherLimits(entries_in_flight_max=1))
        waiters = [batcher.submit(pending("c0", 0))]
        await settle(lambda: log.in_flight() == 1)
        waiters += [batcher.submit(pending(f"c{i}", i)) for i in (1, 2)]
        for _ in range(20):
            await asyncio.sleep(0)
        assert log.in_flight() == 1 and len(log.proposed) == 1
        log.commit_next()
        await settle(lambda: len(log.proposed) == 2)
        assert covers_of(log.proposed[1]) == ["c1", "c2"]
        log.commit_next()
        await asyncio.wait_for(asyncio.gather(*waiters), 10)
        await batcher.close()

    asyncio.run(scenario())
