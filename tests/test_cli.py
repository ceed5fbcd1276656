"""The `paramstore` command line: its own commands and its errors."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import pytest

import paramstore
from paramstore import cli

REPO_ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "paramstore.cli", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_version_prints_the_package_version() -> None:
    result = run_cli("version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"paramstore {paramstore.__version__}\n"
    assert paramstore.__version__ == "0.1.0"


def test_unknown_command_fails_with_a_clear_error() -> None:
    result = run_cli("frobnicate")
    assert result.returncode == 2
    assert result.stdout == ""
    assert "invalid choice: 'frobnicate'" in result.stderr
    assert "version" in result.stderr and "sim" in result.stderr  # says what would be valid


def test_missing_command_fails() -> None:
    result = run_cli()
    assert result.returncode == 2
    assert "required: COMMAND" in result.stderr


def test_stray_argument_to_version_fails(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["version", "--verbose"])
    assert exit_info.value.code == 2
    assert "unrecognized arguments: --verbose" in capsys.readouterr().err


def test_main_returns_the_exit_status(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["version"]) == 0
    assert capsys.readouterr().out == f"paramstore {paramstore.__version__}\n"


def test_sim_forwards_every_argument_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    # A stand-in simulator: this checks the forwarding, not the simulator.
    received: list[list[str]] = []

    def fake_sim_main(argv: list[str]) -> int:
        received.append(argv)
        return 3

    monkeypatch.setitem(sys.modules, "consensus.sim", types.SimpleNamespace(main=fake_sim_main))
    assert cli.main(["sim", "--seeds", "1000", "--help", "-x", "--", "tail"]) == 3
    assert cli.main(["sim"]) == 3
    assert received == [["--seeds", "1000", "--help", "-x", "--", "tail"], []]
