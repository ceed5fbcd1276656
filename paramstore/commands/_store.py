"""``paramstore store``: run one store daemon (one replica of a store group).

Every replica of a group gets the same ``--group`` and ``--peers`` (the group's members,
``ID=HOST:PORT,...``); node ids are per group. ``--coordinators`` is accepted for what
comes next (learning the shard map); this version serves whatever is installed on it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from consensus.storage import FsyncPolicy, StorageError
from consensus.transport import TransportError
from paramstore._malloc_tuning import keep_freed_buffers_for_reuse
from paramstore.commands._common import coordinator_addresses
from paramstore.commands._coordinator import ConfigError, _check_listen_address, parse_peers
from paramstore.server import HEARTBEAT_TICKS_DEFAULT, ReplicaOptions, StoreDaemon

__all__ = ["add_parser", "options_from", "run"]


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "store",
        help="run a store daemon (one replica of a store group)",
        description="Run one store node until SIGTERM/SIGINT.",
    )
    parser.add_argument("--group", type=int, required=True, help="the store group's id (>= 1)")
    parser.add_argument("--id", type=int, required=True, help="this node's id within its group (>= 1)")
    parser.add_argument("--listen", required=True, help="HOST:PORT to serve Raft and clients on")
    parser.add_argument("--peers", required=True, help="every group member (this one too): ID=HOST:PORT,...")
    parser.add_argument("--data-dir", type=Path, required=True, help="directory for the log and snapshots")
    parser.add_argument("--coordinators", help="HOST:PORT,... or a cluster.json (not used yet)")
    parser.add_argument("--cluster-id", default="paramstore", help="name of the cluster (default paramstore)")
    parser.add_argument(
        "--fsync",
        choices=[p.value for p in FsyncPolicy],
        default="batch",
        help="WAL sync policy (default batch); a bare --fsync means always",
        nargs="?",
        const="always",
    )
    parser.add_argument(
        "--wal-writes",
        choices=["direct", "buffered"],
        default="direct",
        help="append to the WAL with O_DIRECT (default; buffered where the file system refuses it) "
        "or through the page cache",
    )
    parser.add_argument("--tick-ms", type=float, default=25.0, help="Raft tick interval in ms (default 25)")
    parser.add_argument("--election-ticks", type=int, default=10, help="election timeout, ticks (default 10)")
    parser.add_argument(
        "--heartbeat-ticks",
        type=int,
        default=HEARTBEAT_TICKS_DEFAULT,
        help=f"leader heartbeat every N ticks, below --election-ticks (default {HEARTBEAT_TICKS_DEFAULT})",
    )
    parser.add_argument(
        "--snapshot-entries", type=int, default=10_000, help="snapshot every N entries (default 10000)"
    )
    parser.add_argument(
        "--snapshot-mib",
        type=int,
        default=256,
        help="snapshot once the entries since the last snapshot hold N MiB, and at least that "
        "snapshot's size (default 256): bounds the log of big pushes",
    )
    parser.add_argument(
        "--log-level", choices=["debug", "info", "warning", "error"], default="info", help="default info"
    )
    parser.add_argument(
        "--fault-injection", action="store_true", help="serve the RaftAdmin fault service (for chaos runs)"
    )


def options_from(args: argparse.Namespace) -> tuple[ReplicaOptions, list[str]]:
    """The replica's options and the coordinator addresses; raises ConfigError."""
    if args.group < 1:
        raise ConfigError(f"--group must be >= 1, got {args.group}")
    if args.id < 1:
        raise ConfigError(f"--id must be >= 1, got {args.id}")
    peers = parse_peers(args.peers)
    if args.id not in peers:
        peers[args.id] = args.listen
    if args.tick_ms < 1.0 or args.election_ticks < 2 or args.snapshot_entries < 1 or args.snapshot_mib < 1:
        raise ConfigError(
            "--tick-ms must be >= 1, --election-ticks >= 2, --snapshot-entries >= 1, --snapshot-mib >= 1"
        )
    if not 1 <= args.heartbeat_ticks < args.election_ticks:
        raise ConfigError(
            f"--heartbeat-ticks must be >= 1 and below --election-ticks ({args.election_ticks}), "
            f"got {args.heartbeat_ticks}"
        )
    if not args.cluster_id:
        raise ConfigError("--cluster-id must not be empty")
    coordinators = coordinator_addresses(args.coordinators) if args.coordinators else []
    options = ReplicaOptions(
        # One data directory and log per group: the group is part of the cluster id it checks.
        cluster_id=f"{args.cluster_id}/store-{args.group}",
        node_id=args.id,
        listen=args.listen,
        peers=peers,
        data_dir=args.data_dir,
        fsync=FsyncPolicy(args.fsync),
        tick_interval_ms=args.tick_ms,
        election_timeout_ticks=args.election_ticks,
        heartbeat_interval_ticks=args.heartbeat_ticks,
        snapshot_every_entries=args.snapshot_entries,
        snapshot_every_bytes=args.snapshot_mib << 20,
        fault_injection=args.fault_injection,
        direct_writes=args.wal_writes == "direct",
    )
    return options, coordinators


def run(args: argparse.Namespace) -> int:
    try:
        options, coordinators = options_from(args)
    except (ConfigError, ValueError) as exc:
        print(f"paramstore store: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=args.log_level.upper(),
        format=f"%(asctime)s store-{args.group}-{options.node_id} %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    keep_freed_buffers_for_reuse()
    return asyncio.run(_serve(options, args.group, coordinators))


async def _serve(options: ReplicaOptions, group_id: int, coordinators: list[str]) -> int:
    try:
        _check_listen_address(options.listen)
    except (TransportError, ValueError) as exc:
        print(f"paramstore store: {exc}", file=sys.stderr)
        return 1
    daemon = StoreDaemon(options, group_id=group_id, coordinators=coordinators)
    # From here on a SIGTERM stops the node gracefully, even one that arrives while it starts.
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, daemon.request_stop)
    try:
        await daemon.start()
    except (TransportError, StorageError) as exc:
        print(f"paramstore store: {exc}", file=sys.stderr)
        return 1
    logging.getLogger("paramstore.store").info(
        "group %d node %d serving on %s (cluster %r, data dir %s, fsync %s)",
        group_id,
        options.node_id,
        daemon.replica.address,
        options.cluster_id,
        options.data_dir,
        options.fsync,
    )
    return await daemon.run_until_stopped()
