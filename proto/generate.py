"""Regenerate the Python modules of every ``proto/*.proto`` schema.

    python -m proto.generate           # rewrite proto/*_pb2.py, *_pb2.pyi (and *_pb2_grpc.py)
    python -m proto.generate --check   # exit 1 if the files in proto/ are not what protoc makes

The ``.proto`` files are the one source of truth; the generated modules are committed so
that a runtime install needs no compiler. protoc runs with the repository root as its
include path, so a schema is named ``proto/x.proto``, imports another one as
``import "proto/y.proto";``, and the generated code imports ``from proto import y_pb2``.
gRPC stubs (``*_pb2_grpc.py``) are generated only for schemas that declare a ``service``.

The output depends on the protoc bundled with ``grpcio-tools``, which is pinned in
``pyproject.toml``: a different version gives different (but equivalent) files.
"""

from __future__ import annotations

import argparse
import filecmp
import re
import sys
import tempfile
from importlib import resources
from pathlib import Path

PROTO_DIR = Path(__file__).resolve().parent
REPO_ROOT = PROTO_DIR.parent
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")

_SERVICE_PATTERN = re.compile(rb"^\s*service\s+\w+", re.MULTILINE)


def proto_files() -> list[Path]:
    """Every schema in ``proto/``, in a fixed order."""
    return sorted(PROTO_DIR.glob("*.proto"))


def generated_files(directory: Path) -> list[Path]:
    """The generated modules present in ``directory`` (not recursive), in a fixed order."""
    return sorted(p for p in directory.iterdir() if p.is_file() and p.name.endswith(GENERATED_SUFFIXES))


def _declares_service(proto_path: Path) -> bool:
    return _SERVICE_PATTERN.search(proto_path.read_bytes()) is not None


def generate(out_root: Path) -> list[Path]:
    """Run protoc over every schema, writing into ``out_root / "proto"``.

    Returns the generated files. Raises ``RuntimeError`` if protoc fails.
    """
    from grpc_tools import protoc  # a dev dependency: only needed to regenerate

    out_dir = out_root / PROTO_DIR.name
    out_dir.mkdir(parents=True, exist_ok=True)
    well_known_types = resources.files("grpc_tools") / "_proto"
    base_args = [
        "grpc_tools.protoc",
        f"--proto_path={REPO_ROOT}",
        f"--proto_path={well_known_types}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
    ]
    for proto_path in proto_files():
        args = list(base_args)
        if _declares_service(proto_path):
            args.append(f"--grpc_python_out={out_root}")
        args.append(str(proto_path))
        exit_code = protoc.main(args)
        if exit_code != 0:
            raise RuntimeError(f"protoc failed with exit code {exit_code} on {proto_path}")
    return generated_files(out_dir)


def stale_files() -> list[str]:
    """Differences between the committed generated modules and a fresh generation.

    An empty list means ``proto/`` is up to date.
    """
    with tempfile.TemporaryDirectory(prefix="paramstore-proto-") as tmp:
        fresh = {p.name: p for p in generate(Path(tmp))}
        committed = {p.name: p for p in generated_files(PROTO_DIR)}
        problems = [f"missing: proto/{name}" for name in sorted(fresh.keys() - committed.keys())]
        problems += [
            f"no .proto generates it: proto/{name}" for name in sorted(committed.keys() - fresh.keys())
        ]
        problems += [
            f"out of date: proto/{name}"
            for name in sorted(fresh.keys() & committed.keys())
            if not filecmp.cmp(fresh[name], committed[name], shallow=False)
        ]
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m proto.generate", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--check",
        action="store_true",
        help="do not write; exit 1 if the generated modules in proto/ are stale",
    )
    args = parser.parse_args(argv)
    if args.check:
        problems = stale_files()
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            print("run `python -m proto.generate` to regenerate", file=sys.stderr)
            return 1
        return 0
    for stale in generated_files(PROTO_DIR):
        stale.unlink()
    for path in generate(REPO_ROOT):
        print(f"wrote {path.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
