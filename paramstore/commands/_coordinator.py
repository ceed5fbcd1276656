"""``paramstore coordinator``: run one coordinator daemon.

Settings come from flags, or from a TOML file (``--config FILE``) whose keys are the long
flag names with dashes or underscores (``id``, ``listen``, ``peers``, ``data-dir``,
``cluster-id``, ``fsync``, ``join``, ``tick-ms``, ``election-ticks``, ``heartbeat-ticks``,
``snapshot-entries``);
a flag given on the command line wins over the file. ``peers`` is ``ID=HOST:PORT,...`` in
a flag and either that string or a table ``{1 = "HOST:PORT", ...}`` in the file.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import socket
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from consensus.storage import FsyncPolicy, StorageError
from consensus.transport import TransportError
from paramstore.server import HEARTBEAT_TICKS_DEFAULT, CoordinatorDaemon, ReplicaOptions

__all__ = ["add_parser", "parse_peers", "run"]

_KEYS = {
    "id",
    "listen",
    "peers",
    "data_dir",
    "cluster_id",
    "fsync",
    "join",
    "tick_ms",
    "election_ticks",
    "heartbeat_ticks",
    "snapshot_entries",
    "log_level",
    "fault_injection",
}
_DEFAULTS: dict[str, Any] = {
    "cluster_id": "paramstore",
    "fsync": "batch",
    "join": False,
    "tick_ms": 25.0,
    "election_ticks": 10,
    "heartbeat_ticks": HEARTBEAT_TICKS_DEFAULT,
    "snapshot_entries": 10_000,
    "log_level": "info",
    "fault_injection": False,
}


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names it and what was expected."""


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "coordinator",
        help="run a coordinator daemon (one node of the coordinator Raft group)",
        description="Run one coordinator node until SIGTERM/SIGINT. Flags override --config.",
    )
    parser.add_argument("--config", type=Path, help="TOML file with the settings below")
    parser.add_argument("--id", type=int, help="this node's id (a positive integer)")
    parser.add_argument("--listen", help="HOST:PORT to serve Raft and clients on")
    parser.add_argument("--peers", help="every member, this one included: ID=HOST:PORT,...")
    parser.add_argument("--data-dir", type=Path, help="directory for the log and snapshots")
    parser.add_argument("--cluster-id", help="name of the cluster (checked against the data dir)")
    parser.add_argument(
        "--fsync", choices=[p.value for p in FsyncPolicy], help="WAL sync policy (default batch)"
    )
    parser.add_argument(
        "--join",
        action="store_true",
        default=None,
        help="join a running group as a learner (then: paramstore cluster add-node)",
    )
    parser.add_argument("--tick-ms", type=float, help="Raft tick interval in ms (default 25)")
    parser.add_argument("--election-ticks", type=int, help="election timeout in ticks (default 10)")
    parser.add_argument(
        "--heartbeat-ticks",
        type=int,
        help=f"leader heartbeat every N ticks, below --election-ticks (default {HEARTBEAT_TICKS_DEFAULT})",
    )
    parser.add_argument(
        "--snapshot-entries", type=int, help="snapshot every N applied entries (default 10000)"
    )
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"], help="default info")
    parser.add_argument(
        "--fault-injection",
        action="store_true",
        default=None,
        help="serve the RaftAdmin fault service (for chaos runs; off by default)",
    )


def parse_peers(value: str | Mapping[Any, Any]) -> dict[int, str]:
    """``"1=h:p,2=h:p"`` or a mapping -> {1: "h:p", ...}; raises ConfigError."""
    items: list[tuple[str, str]]
    if isinstance(value, Mapping):
        items = [(str(k), str(v)) for k, v in value.items()]
    else:
        items = []
        for part in value.split(","):
            part = part.strip()
            if not part:
                continue
            node, sep, address = part.partition("=")
            if not sep:
                raise ConfigError(f"peers: {part!r} is not ID=HOST:PORT")
            items.append((node.strip(), address.strip()))
    peers: dict[int, str] = {}
    for node, address in items:
        if not node.isdigit() or int(node) < 1:
            raise ConfigError(f"peers: node id {node!r} is not a positive integer")
        host, sep, port = address.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"peers: address {address!r} of node {node} is not HOST:PORT")
        if int(node) in peers:
            raise ConfigError(f"peers: node {node} is listed twice")
        peers[int(node)] = address
    if not peers:
        raise ConfigError("peers: no member given (expected ID=HOST:PORT,...)")
    return peers


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    settings = dict(_DEFAULTS)
    if args.config is not None:
        try:
            with open(args.config, "rb") as file:
                loaded = tomllib.load(file)
        except OSError as exc:
            raise ConfigError(f"--config {args.config}: cannot read: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"--config {args.config}: not valid TOML: {exc}") from None
        for key, value in loaded.items():
            name = key.replace("-", "_")
            if name not in _KEYS:
                raise ConfigError(f"--config {args.config}: unknown setting {key!r} (known: {sorted(_KEYS)})")
            settings[name] = value
    for name in _KEYS:
        value = getattr(args, name, None)
        if value is not None:
            settings[name] = value
    return settings


def options_from(args: argparse.Namespace) -> tuple[ReplicaOptions, str]:
    """The daemon's options (and log level) from flags and file; raises ConfigError."""
    settings = _settings(args)
    for required in ("id", "listen", "peers", "data_dir"):
        if settings.get(required) in (None, ""):
            raise ConfigError(f"--{required.replace('_', '-')} is required (or set it in --config)")
    node_id = settings["id"]
    if not isinstance(node_id, int) or isinstance(node_id, bool) or node_id < 1:
        raise ConfigError(f"--id must be a positive integer, got {node_id!r}")
    peers = parse_peers(settings["peers"])
    listen = str(settings["listen"])
    if node_id not in peers:
        peers[node_id] = listen
    try:
        fsync = FsyncPolicy(settings["fsync"])
    except ValueError:
        raise ConfigError(f"--fsync must be one of always, batch, never; got {settings['fsync']!r}") from None
    numbers = {
        "tick_ms": (float, 1.0),
        "election_ticks": (int, 2),
        "heartbeat_ticks": (int, 1),
        "snapshot_entries": (int, 1),
    }
    for name, (kind, minimum) in numbers.items():
        value = settings[name]
        if not isinstance(value, int | float) or isinstance(value, bool) or value < minimum:
            raise ConfigError(f"--{name.replace('_', '-')} must be a number >= {minimum}, got {value!r}")
        settings[name] = kind(value)
    if settings["heartbeat_ticks"] >= settings["election_ticks"]:
        raise ConfigError(
            f"--heartbeat-ticks ({settings['heartbeat_ticks']}) must be below --election-ticks "
            f"({settings['election_ticks']})"
        )
    cluster_id = str(settings["cluster_id"])
    if not cluster_id:
        raise ConfigError("--cluster-id must not be empty")
    options = ReplicaOptions(
        cluster_id=cluster_id,
        node_id=node_id,
        listen=listen,
        peers=peers,
        data_dir=Path(settings["data_dir"]),
        fsync=fsync,
        join=_flag(settings, "join"),
        tick_interval_ms=settings["tick_ms"],
        election_timeout_ticks=settings["election_ticks"],
        heartbeat_interval_ticks=settings["heartbeat_ticks"],
        snapshot_every_entries=settings["snapshot_entries"],
        fault_injection=_flag(settings, "fault_injection"),
        broadcast_commit=False,
        proposal_batches_in_flight_max=1,
    )
    return options, str(settings["log_level"])


def _flag(settings: dict[str, Any], name: str) -> bool:
    value = settings[name]
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be true or false, got {value!r}")
    return value


def run(args: argparse.Namespace) -> int:
    try:
        options, log_level = options_from(args)
    except (ConfigError, ValueError) as exc:
        print(f"paramstore coordinator: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=log_level.upper(),
        format=f"%(asctime)s coordinator-{options.node_id} %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    return asyncio.run(_serve(options))


def _check_listen_address(listen: str) -> None:
    """Fail early, with our own one line, when the port is taken (gRPC would also print
    its own log line for it)."""
    host, _, port = listen.rpartition(":")
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As gRPC binds: connections of a killed predecessor lingering in TIME_WAIT must not
        # count as "in use", only a live listener.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host.strip("[]"), int(port)))
        except OSError as exc:
            raise TransportError(f"cannot listen on {listen}: {exc.strerror}") from None


async def _serve(options: ReplicaOptions) -> int:
    try:
        _check_listen_address(options.listen)
    except (TransportError, ValueError) as exc:
        print(f"paramstore coordinator: {exc}", file=sys.stderr)
        return 1
    daemon = CoordinatorDaemon(options)
    # From here on a SIGTERM stops the node gracefully, even one that arrives while it starts
    # (``run_until_stopped`` installs the same handlers again; that is harmless).
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, daemon.request_stop)
    try:
        await daemon.start()
    except (TransportError, StorageError) as exc:
        print(f"paramstore coordinator: {exc}", file=sys.stderr)
        return 1
    logging.getLogger("paramstore.coordinator").info(
        "node %d serving on %s (cluster %r, data dir %s, fsync %s)",
        options.node_id,
        daemon.replica.address,
        options.cluster_id,
        options.data_dir,
        options.fsync,
    )
    return await daemon.run_until_stopped()
