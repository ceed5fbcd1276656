"""Picks grpc's I/O engine for the process, before grpc is first imported.

grpc 1.85 reads ``GRPC_EXPERIMENTS`` once, when its core loads. Its default EventEngine
streams large messages faster, which the store daemons need (their gradient pushes run to
many MiB), but costs more CPU per small message than the older poll-based engine. A
coordinator only ever carries small messages (puts, leases, Raft appends of a few hundred
bytes), and on 2 cores its per-put latency is CPU-bound: measured on an Intel Xeon 2-core,
the older engine took about 7% off a 1-client put's p50 (and a 4-client 64 MiB store push
fell from 228 to 156 MB/s with it, hence stores keep the default).

So a ``paramstore coordinator`` process turns the EventEngine experiments off unless the
user set ``GRPC_EXPERIMENTS`` themselves. Importing this module does the choosing; the CLI
imports it before anything that imports grpc.
"""

from __future__ import annotations

import os
import sys

COORDINATOR_EXPERIMENTS = "-event_engine_client,-event_engine_listener"


def choose(argv: list[str]) -> None:
    """Set the engine for a process started as ``paramstore ARGV...`` (user setting kept)."""
    if len(argv) > 1 and argv[1] == "coordinator" and "grpc" not in sys.modules:
        os.environ.setdefault("GRPC_EXPERIMENTS", COORDINATOR_EXPERIMENTS)


choose(sys.argv)
