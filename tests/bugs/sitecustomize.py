"""Test-only bugs for the chaos harness's self-test (tests/test_chaos.py).

This file is not part of the paramstore package: a cluster process runs with it only when a
test puts this directory on its PYTHONPATH (Python imports ``sitecustomize`` at start-up)
and names a bug in ``PARAMSTORE_TEST_BUG``. Production processes can never load it. Each bug
breaks one promise in a known way, so that the tests can show the checkers catch it:

* ``skip-dedup``: the shard state machine forgets which pushes it applied, so a retried push
  is applied again;
* ``ack-before-commit``: a store leader acknowledges a push as soon as it is queued, before
  its log entry is committed and applied;
* ``stale-pulls``: a store node serves pulls from its own state without checking that it
  leads and without a ReadIndex barrier, so a follower (or a deposed leader) cut off from its
  group answers with weights that miss pushes acknowledged since;
* ``drop-fsync``: the WAL's fsync does nothing (so the sync journal records nothing either):
  acknowledged writes sit in the page cache only, which a process crash does not show and a
  power loss (the chaos ``power-loss`` nemesis) does.
"""

from __future__ import annotations

import os

_BUG = os.environ.get("PARAMSTORE_TEST_BUG", "")

if _BUG == "skip-dedup":
    from paramstore.shard import _dedup

    _dedup.DedupTable.last_sequence = lambda self, client_id: 0  # type: ignore[method-assign]
    _dedup.DedupTable.get = lambda self, client_id: None  # type: ignore[method-assign]
    _original_record = _dedup.DedupTable.record

    def _record(self, client_id, sequence, result, now_ms=0):  # type: ignore[no-untyped-def]
        self._clients.pop(client_id, None)
        _original_record(self, client_id, sequence, result, now_ms)

    _dedup.DedupTable.record = _record  # type: ignore[method-assign]

elif _BUG == "ack-before-commit":
    import asyncio

    from paramstore.server import _store_batcher
    from paramstore.shard import ErrorCode, ShardResult

    _original_submit = _store_batcher.PushBatcher.submit

    def _submit(self, push):  # type: ignore[no-untyped-def]
        _original_submit(self, push)
        early: asyncio.Future[tuple[ShardResult, int]] = asyncio.get_running_loop().create_future()
        early.set_result((ShardResult(ErrorCode.OK), 1))
        return early

    _store_batcher.PushBatcher.submit = _submit  # type: ignore[method-assign]

elif _BUG == "stale-pulls":
    from paramstore.server import _store_service

    async def _no_barrier(self, context):  # type: ignore[no-untyped-def]
        return None

    _store_service.StoreService._barrier = _no_barrier  # type: ignore[method-assign]

elif _BUG == "drop-fsync":
    from consensus.storage import wal, wal_recovery

    wal._sync_segment = lambda fd, path, size: None  # type: ignore[attr-defined]
    wal_recovery.sync_file = lambda fd: None  # type: ignore[attr-defined]

elif _BUG:
    raise SystemExit(f"PARAMSTORE_TEST_BUG={_BUG!r}: unknown bug")
