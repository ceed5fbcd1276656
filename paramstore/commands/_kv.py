"""``paramstore kv put|get|delete|cas|list|watch``: the coordinator's key/value API.

Values are UTF-8 text on the command line; ``get`` prints the raw value, ``list`` prints
``key<TAB>value`` lines (``--json`` for versions and revisions too).
"""

from __future__ import annotations

import argparse
from typing import Any

from paramstore.client import CoordinatorClient
from paramstore.commands._common import add_coordinators_flag, fail, print_json, run_with_client

__all__ = ["add_parser", "run"]


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("kv", help="read and write training-job metadata in the coordinator")
    actions = parser.add_subparsers(dest="kv_action", metavar="ACTION", required=True)
    put = actions.add_parser("put", help="set KEY to VALUE")
    put.add_argument("key")
    put.add_argument("value")
    get = actions.add_parser("get", help="print KEY's value (exit 1 if absent)")
    get.add_argument("key")
    get.add_argument("--serializable", action="store_true", help="answer from any node, maybe stale")
    delete = actions.add_parser("delete", help="delete KEY (or every key under --prefix)")
    delete.add_argument("key")
    delete.add_argument("--prefix", action="store_true", help="treat KEY as a prefix")
    cas = actions.add_parser("cas", help="set KEY to VALUE only if the expectation holds (exit 1 if not)")
    cas.add_argument("key")
    cas.add_argument("value")
    expect = cas.add_mutually_exclusive_group(required=True)
    expect.add_argument("--expect", help="the current value must be this")
    expect.add_argument("--expect-version", type=int, help="the current version must be this")
    expect.add_argument("--expect-absent", action="store_true", help="the key must not exist")
    listing = actions.add_parser("list", help="keys under PREFIX")
    listing.add_argument("prefix", nargs="?", default="")
    listing.add_argument("--limit", type=int, default=1000)
    listing.add_argument("--serializable", action="store_true")
    watch = actions.add_parser("watch", help="print changes under PREFIX as they happen")
    watch.add_argument("prefix", nargs="?", default="")
    watch.add_argument("--from-revision", type=int, default=0, help="first revision (default: now)")
    watch.add_argument("--duration", type=float, default=60.0, help="stop after this many seconds")
    for sub in (put, get, delete, cas, listing, watch):
        add_coordinators_flag(sub)
        sub.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace) -> int:
    action = args.kv_action
    command = f"kv {action}"
    if action == "list" and not 1 <= args.limit <= 10_000:
        return fail(command, f"--limit must be in [1, 10000], got {args.limit}", 2)
    if action == "watch" and args.duration <= 0:
        return fail(command, f"--duration must be > 0, got {args.duration}", 2)
    if action in ("put", "cas", "get", "delete") and not args.key:
        return fail(command, "KEY must not be empty", 2)

    async def body(client: CoordinatorClient) -> int:
        if action == "put":
            result = await client.put(args.key, args.value.encode())
            _report(args, {"revision": result.revision, "version": result.key_version}, "OK")
            return 0
        if action == "get":
            kv = await client.get(args.key, serializable=args.serializable)
            if kv is None:
                return fail(command, f"key {args.key!r} not found")
            if args.json:
                print_json({"key": kv.key, "value": kv.value.decode(errors="replace"), "version": kv.version})
            else:
                print(kv.value.decode(errors="replace"))
            return 0
        if action == "delete":
            if args.prefix:
                result = await client.delete_prefix(args.key)
            else:
                result = await client.delete(args.key)
            _report(
                args, {"deleted": result.deleted, "revision": result.revision}, f"deleted {result.deleted}"
            )
            return 0
        if action == "cas":
            ok, result = await client.compare_and_set(
                args.key,
                args.value.encode(),
                expected_value=None if args.expect is None else args.expect.encode(),
                expected_version=args.expect_version,
                expect_absent=args.expect_absent,
            )
            if not ok:
                return fail(command, f"not set: {result.message} (current version {result.key_version})")
            _report(args, {"revision": result.revision, "version": result.key_version}, "OK")
            return 0
        if action == "list":
            kvs, more, revision = await client.range(
                prefix=args.prefix, limit=args.limit, serializable=args.serializable
            )
            if args.json:
                rows = [
                    {"key": kv.key, "value": kv.value.decode(errors="replace"), "version": kv.version}
                    for kv in kvs
                ]
                print_json({"kvs": rows, "more": more, "revision": revision})
            else:
                for kv in kvs:
                    print(f"{kv.key}\t{kv.value.decode(errors='replace')}")
            return 0
        async for change in client.watch(args.prefix, args.from_revision, duration_s=args.duration):
            value = change.value.decode(errors="replace")
            print(f"{change.revision}\t{change.kind.name}\t{change.key}\t{value}", flush=True)
        return 0

    return run_with_client(command, args, body)


def _report(args: argparse.Namespace, fields: dict[str, Any], text: str) -> None:
    if args.json:
        print_json(fields)
    else:
        print(text)
