"""The main wait of a daemon process: serve until asked to stop, or until the Raft driver
fails, then stop the daemon's parts. Shared by the coordinator and the store daemons."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable

from paramstore.server._replica import Replica

__all__ = ["serve_until_stopped"]


async def serve_until_stopped(
    stop: asyncio.Event,
    replica: Replica,
    shutdown: Callable[[], Awaitable[None]],
    log: logging.Logger,
    what: str,
) -> int:
    """Wait for ``stop`` (set by SIGTERM/SIGINT, whose handlers this installs, or by the
    caller) or for ``replica``'s driver to fail, then ``shutdown()``. Returns the exit
    status: 0 after a graceful stop, 1 if the driver failed (a storage fault, say)."""
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    stop_wait = asyncio.create_task(stop.wait())
    failed = asyncio.create_task(replica.wait_failed())
    done, _ = await asyncio.wait({stop_wait, failed}, return_when=asyncio.FIRST_COMPLETED)
    status = 0
    if failed in done and failed.result() is not None:
        log.error("%s: the Raft driver failed: %s", what, failed.result())
        status = 1
    stop_wait.cancel()
    failed.cancel()
    await shutdown()
    return status
