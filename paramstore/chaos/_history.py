"""The history of a chaos run: every operation's invocation and completion, in time order.

Format (one JSON object per line in ``history.jsonl``), the same for every workload:

* ``index``: position in the history (0, 1, ...);
* ``process``: the client that issued the operation (an int; one operation at a time each);
* ``type``: ``invoke``, then the same process's ``ok`` (it happened), ``fail`` (it certainly
  did not happen) or ``info`` (unknown: it may have happened, at most once);
* ``f``: the operation: ``push`` / ``pull`` (parameters), ``read`` / ``write`` / ``cas``
  (coordinator key/value);
* ``time``: seconds since the run started (monotonic clock);
* operation fields: ``push``: ``push_id`` (the element its one-hot gradient marks); ``pull``
  (completion): ``applied`` (the push ids the pulled weights contain) and ``step``;
  ``read``/``write``/``cas``: ``key`` and ``value`` (a cas value is ``[expected, new]``);
  a failure's ``error``.

Why this shape: it is the shape linearizability checkers read (Jepsen's histories have it),
and an operation's real-time interval is ``[invoke time, completion time]``.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["History"]


class History:
    """Append-only, thread-safe; bounded by ``records_max`` (a full history stops the run)."""

    def __init__(self, records_max: int = 2_000_000) -> None:
        self.records: list[dict[str, Any]] = []
        self._records_max = records_max
        self._lock = threading.Lock()
        self._started = time.monotonic()

    def now(self) -> float:
        return time.monotonic() - self._started

    @property
    def full(self) -> bool:
        return len(self.records) >= self._records_max

    def add(self, process: int, kind: str, f: str, **fields: Any) -> dict[str, Any]:
        with self._lock:
            record = {
                "index": len(self.records),
                "process": process,
                "type": kind,
                "f": f,
                "time": self.now(),
            }
            record.update(fields)
            if len(self.records) < self._records_max:
                self.records.append(record)
            return record

    def write(self, path: Path) -> None:
        with path.open("w") as out:
            for record in self.records:
                out.write(json.dumps(record, separators=(",", ":")) + "\n")
