"""Run a storage test module with buffered and with direct WAL writes (``append_file.py``).

A module imports ``both_write_modes`` (an autouse fixture, so every test runs twice) and
opens its storage with ``write_mode()`` among the config's settings."""

from __future__ import annotations

import pytest

_DIRECT = {"direct_writes": False}


@pytest.fixture(autouse=True, params=[False, True], ids=["buffered", "direct"])
def both_write_modes(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(_DIRECT, "direct_writes", request.param)


def write_mode() -> dict[str, bool]:
    """The ``StorageConfig`` setting of the running test's write mode."""
    return dict(_DIRECT)


def writes_directly() -> bool:
    return _DIRECT["direct_writes"]
