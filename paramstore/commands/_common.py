"""What the client commands share: the ``--coordinators`` flag and turning every client
failure into one clear line and a non-zero exit."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from paramstore.client import ClientError, CoordinatorClient, parse_addresses

__all__ = ["add_coordinators_flag", "coordinator_addresses", "fail", "run_with_client"]

ENV_COORDINATORS = "PARAMSTORE_COORDINATORS"


def add_coordinators_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--coordinators",
        help=f"HOST:PORT,... of the coordinator group, or a cluster.json that `paramstore up` wrote "
        f"(default: ${ENV_COORDINATORS})",
    )
    parser.add_argument(
        "--timeout", type=float, default=10.0, help="deadline of each request in s (default 10)"
    )


def coordinator_addresses(value: str | None) -> list[str]:
    """The addresses from the flag, a cluster.json path, or the environment; ValueError if none."""
    value = value or os.environ.get(ENV_COORDINATORS)
    if not value:
        raise ValueError(f"--coordinators is required (or set ${ENV_COORDINATORS})")
    path = Path(value)
    if value.endswith(".json") or path.is_dir():
        if path.is_dir():
            path = path / "cluster.json"
        try:
            cluster = json.loads(path.read_text())
            return parse_addresses(
                [p["address"] for p in cluster["processes"] if p.get("role") == "coordinator"]
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"--coordinators {value}: not a readable cluster.json ({exc})") from None
    return parse_addresses(value)


def fail(command: str, message: str, status: int = 1) -> int:
    print(f"paramstore {command}: {message}", file=sys.stderr)
    return status


def run_with_client(
    command: str, args: argparse.Namespace, body: Callable[[CoordinatorClient], Awaitable[int]]
) -> int:
    """Run ``body`` with a connected client; client errors become one line and status 1."""
    try:
        addresses = coordinator_addresses(args.coordinators)
        if args.timeout <= 0:
            raise ValueError(f"--timeout must be > 0, got {args.timeout}")
    except ValueError as exc:
        return fail(command, str(exc), 2)

    async def main() -> int:
        async with CoordinatorClient(addresses, deadline_s=args.timeout) as client:
            return await body(client)

    try:
        return asyncio.run(main())
    except ClientError as exc:
        return fail(command, str(exc))


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True))
