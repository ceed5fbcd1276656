"""The committed proto/*_pb2.py(i) modules are exactly what `python -m proto.generate` makes."""

from __future__ import annotations

import tomllib
from pathlib import Path

from proto import generate


def test_committed_modules_are_byte_identical_to_a_fresh_generation(tmp_path: Path) -> None:
    fresh = {path.name: path.read_bytes() for path in generate.generate(tmp_path)}
    committed = {path.name: path.read_bytes() for path in generate.generated_files(generate.PROTO_DIR)}
    hint = "regenerate with `python -m proto.generate` and commit the result"
    assert sorted(committed) == sorted(fresh), hint
    stale = [name for name in sorted(fresh) if fresh[name] != committed[name]]
    assert stale == [], hint


def test_every_schema_has_its_modules() -> None:
    names = {path.name for path in generate.generated_files(generate.PROTO_DIR)}
    for proto_path in generate.proto_files():
        assert f"{proto_path.stem}_pb2.py" in names
        assert f"{proto_path.stem}_pb2.pyi" in names


def test_check_mode_reports_up_to_date() -> None:
    assert generate.main(["--check"]) == 0


def test_generated_modules_import_from_the_proto_package() -> None:
    from proto import raft_pb2

    assert raft_pb2.DESCRIPTOR.name == "proto/raft.proto"
    assert raft_pb2.DESCRIPTOR.package == "paramstore.raft"


def test_mypy_skips_every_generated_module() -> None:
    # Generated modules are not held to our typing rules; each must be listed in pyproject.
    config = tomllib.loads((generate.REPO_ROOT / "pyproject.toml").read_text())
    ignored = {
        module
        for override in config["tool"]["mypy"]["overrides"]
        if override.get("ignore_errors")
        for module in override["module"]
    }
    generated = {
        f"proto.{path.name.removesuffix('.py')}"
        for path in generate.generated_files(generate.PROTO_DIR)
        if path.suffix == ".py"
    }
    assert generated <= ignored, "add the generated modules to the ignore_errors override in pyproject.toml"
