"""NotifyingStateMachine's wake-ups: a waiter on a key prefix sleeps through other puts."""

from __future__ import annotations

import asyncio

from consensus.messages import Entry
from paramstore.coordinator import CoordinatorStateMachine, Put, encode_command
from paramstore.server import NotifyingStateMachine


class Applier:
    def __init__(self) -> None:
        self.machine = NotifyingStateMachine(CoordinatorStateMachine())
        self.index = 0

    def put(self, key: str) -> None:
        self.index += 1
        data = encode_command(Put(key, b"v"), client_id="c", sequence=self.index, now_ms=1_000)
        self.machine.apply(Entry(term=1, index=self.index, data=data))


async def _loop_passes(count: int = 3) -> None:
    for _ in range(count):
        await asyncio.sleep(0)


async def test_a_prefix_waiter_wakes_only_for_a_change_under_its_prefix() -> None:
    applier = Applier()
    waiter = asyncio.create_task(applier.machine.wait_changed(30.0, "/peers/"))
    any_change = asyncio.create_task(applier.machine.wait_changed(30.0))
    await _loop_passes()
    applier.put("/jobs/a")
    await _loop_passes()
    assert any_change.done(), "a waiter without a prefix wakes for every apply"
    assert not waiter.done(), "a put outside the prefix must not wake its waiter"
    applier.put("/peers/1")
    async with asyncio.timeout(5.0):
        await waiter


async def test_a_restore_wakes_every_prefix_waiter() -> None:
    applier = Applier()
    applier.put("/jobs/a")
    snapshot = applier.machine.snapshot()
    waiter = asyncio.create_task(applier.machine.wait_changed(30.0, "/peers/"))
    await _loop_passes()
    applier.machine.restore(snapshot)
    async with asyncio.timeout(5.0):
        await waiter


async def test_a_prefix_waiter_still_returns_at_its_timeout() -> None:
    applier = Applier()
    async with asyncio.timeout(5.0):
        await applier.machine.wait_changed(0.01, "/peers/")
