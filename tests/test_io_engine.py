"""Which grpc I/O engine a paramstore process picks (``paramstore/_io_engine.py``)."""

from __future__ import annotations

import os
import subprocess
import sys

from paramstore._io_engine import COORDINATOR_EXPERIMENTS


def _engine_choice(argv: list[str], environ: dict[str, str]) -> str:
    """GRPC_EXPERIMENTS as a fresh interpreter started as ``argv`` leaves it."""
    code = (
        f"import sys; sys.argv = {argv!r}; import paramstore._io_engine, os; "
        "print(os.environ.get('GRPC_EXPERIMENTS', '<unset>'))"
    )
    env = {k: v for k, v in os.environ.items() if k != "GRPC_EXPERIMENTS"} | environ
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_coordinator_process_takes_the_poll_engine_and_a_store_the_default() -> None:
    assert _engine_choice(["paramstore", "coordinator"], {}) == COORDINATOR_EXPERIMENTS
    assert _engine_choice(["paramstore", "store"], {}) == "<unset>"


def test_a_users_own_setting_is_kept() -> None:
    assert _engine_choice(["paramstore", "coordinator"], {"GRPC_EXPERIMENTS": "mine"}) == "mine"
