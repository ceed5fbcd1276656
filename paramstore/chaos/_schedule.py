"""When the nemeses strike: a seeded random schedule, or a scripted timeline.

* Random (the default): from one seed, which nemesis strikes when and where: faults of
  ``fault_s`` seconds separated by quiet gaps of ``gap_s``. The same seed gives the same
  schedule (the cluster's answers, such as who leads, can still differ between runs).
* Timeline (``--timeline``): the faults of the file at their offsets from the start of the
  run, targets and factors as written (what the file leaves open is drawn from the seed).

Either way every fault is healed before the next one starts and when the run stops, so a
run always ends on a healthy cluster, and every fault becomes a ``FaultRecord`` (name,
start, end, what was done) for the report.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import grpc

from paramstore.chaos._catalogue import CATALOGUE, NEMESES
from paramstore.chaos._nemesis import Nemeses
from paramstore.chaos._targets import Target
from paramstore.chaos._timeline import ScriptedFault
from paramstore.chaos._views import ClusterView

__all__ = ["FaultRecord", "Schedule"]

log = logging.getLogger("paramstore.chaos")


@dataclass
class FaultRecord:
    name: str
    start: float
    end: float | None
    detail: str


class Schedule:
    """Runs the fault schedule until ``stop``; ``faults`` is the record of it."""

    def __init__(
        self,
        view: ClusterView,
        nemeses: Sequence[str],
        seed: int,
        now: Callable[[], float],
        *,
        fault_s: float = 3.0,
        gap_s: float = 2.0,
        timeline: Sequence[ScriptedFault] | None = None,
    ) -> None:
        named = [f.nemesis for f in timeline] if timeline is not None else list(nemeses)
        unknown = sorted(set(named) - set(NEMESES))
        if unknown:
            raise ValueError(f"unknown nemesis {unknown}; expected some of {', '.join(NEMESES)}")
        restarting = sorted(n for n in set(named) if CATALOGUE[n].restarts)
        if restarting and not view.can_restart:
            raise ValueError(f"nemeses {', '.join(restarting)} need restarts, which this cluster cannot do")
        self.view = view
        self.nemeses = list(nemeses)
        self.timeline = list(timeline) if timeline is not None else None
        self.rng = random.Random(seed)
        self.strikes = Nemeses(view, self.rng)
        self.now = now
        self.fault_s = fault_s
        self.gap_s = gap_s
        self.faults: list[FaultRecord] = []

    async def run(self, stop: asyncio.Event) -> None:
        try:
            if self.timeline is not None:
                await self._run_timeline(stop)
            elif self.nemeses:
                await self._run_random(stop)
            await stop.wait()
        finally:
            await self.heal()

    async def heal(self) -> None:
        await self.strikes.heal()
        notes = self.strikes.take_notes()
        for record in self.faults:
            if record.end is None:
                record.end = self.now()
                record.detail = "; ".join([record.detail, *notes]) if notes else record.detail

    async def _run_random(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if await _wait(stop, self.gap_s):
                return
            await self._fault(self.rng.choice(self.nemeses), None, None, stop, self.fault_s)

    async def _run_timeline(self, stop: asyncio.Event) -> None:
        assert self.timeline is not None
        started = time.monotonic()
        for fault in self.timeline:
            if await _wait(stop, started + fault.at_s - time.monotonic()):
                return
            until = started + fault.end_s
            await self._fault(fault.nemesis, fault.target, fault.factor, stop, until - time.monotonic())

    async def _fault(
        self, name: str, target: Target | None, factor: float | None, stop: asyncio.Event, lasting_s: float
    ) -> None:
        record = FaultRecord(name, self.now(), None, "")
        self.faults.append(record)
        try:
            record.detail = await self.strikes.strike(name, target, factor)
        except (grpc.aio.AioRpcError, OSError, RuntimeError) as exc:
            record.detail = f"could not inject: {_short(exc)}"
        log.info("fault %s: %s", name, record.detail)
        await _wait(stop, lasting_s)
        await self.heal()


def _short(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    return str(exc)


async def _wait(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds`` unless ``stop`` is set first; True if it was."""
    if stop.is_set():
        return True
    try:
        await asyncio.wait_for(stop.wait(), max(0.0, seconds))
    except TimeoutError:
        return False
    return True
