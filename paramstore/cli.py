"""The ``paramstore`` command line.

paramstore version            print the installed version
paramstore sim [ARGS...]      run the deterministic Raft simulator; every argument after
                              ``sim`` (``--help`` included) goes to ``consensus.sim``
paramstore coordinator ...    run one coordinator daemon
paramstore store ...          run one store daemon (a replica of a store group)
paramstore up --dir DIR       run a local cluster until interrupted
paramstore kv ACTION ...      the coordinator's key/value API (put, get, delete, cas, list, watch)
paramstore status             every coordinator node's role, term, indexes and lag
paramstore cluster ACTION     add-node, remove-node, transfer-leader, add-group, remove-group,
                              rebalance, moves
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import paramstore
from paramstore import _io_engine  # noqa: F401  (must run before grpc loads; see its docstring)
from paramstore.commands import _chaos, _cluster, _coordinator, _demo, _kv, _status, _store, _up

_COMMANDS = {
    "coordinator": _coordinator,
    "store": _store,
    "up": _up,
    "kv": _kv,
    "status": _status,
    "cluster": _cluster,
    "demo": _demo,
    "chaos": _chaos,
}


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="paramstore",
        description="A Raft-replicated, hash-sharded parameter server for JAX training.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    commands.add_parser("version", help="print the paramstore version and exit")
    # add_help=False: ``paramstore sim --help`` must reach the simulator's own parser.
    commands.add_parser(
        "sim",
        help="run the deterministic Raft simulator (arguments go to `python -m consensus.sim`)",
        add_help=False,
    )
    for module in _COMMANDS.values():
        module.add_parser(commands)
    return parser


def _run_version() -> int:
    print(f"paramstore {paramstore.__version__}")
    return 0


def _run_sim(sim_argv: list[str]) -> int:
    # Imported here so that other commands do not pay for (or depend on) the simulator.
    from consensus.sim import main as sim_main

    return sim_main(sim_argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``paramstore`` command; returns the process exit status.

    Usage errors (an unknown command, a stray argument) exit with status 2 via argparse.
    """
    parser = _build_parser()
    args, extra = parser.parse_known_args(sys.argv[1:] if argv is None else list(argv))
    if args.command == "sim":
        return _run_sim(extra)
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command == "version":
        return _run_version()
    if args.command in _COMMANDS:
        status: int = _COMMANDS[args.command].run(args)
        return status
    raise AssertionError(f"command {args.command!r} has a parser but no handler")


if __name__ == "__main__":
    raise SystemExit(main())
