"""The disk nemeses on the command line: ``power-loss`` is refused (exit 2, one line, nothing
started) unless the local cluster runs with ``--fsync always``, and always when attached;
it is in the default set only under ``--fsync always``."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from paramstore.chaos import NEMESES, ChaosConfig, defaults_for, needing_fsync_always, run_chaos
from paramstore.cli import _build_parser, main
from paramstore.commands import _chaos


def chaos_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    status = main(["chaos", *args])
    return status, capsys.readouterr().err.strip()


def plan(*args: str) -> tuple[str, ...]:
    return _chaos._plan(_build_parser().parse_args(["chaos", *args])).nemeses


def test_power_loss_is_the_one_nemesis_that_needs_fsync_always() -> None:
    assert needing_fsync_always() == ("power-loss",)
    assert {"power-loss", "fsync-fail"} <= set(NEMESES)
    assert defaults_for("always") == NEMESES
    assert defaults_for("batch") == tuple(n for n in NEMESES if n != "power-loss")


def test_the_default_nemeses_have_power_loss_only_under_fsync_always() -> None:
    assert plan("--fsync", "always") == NEMESES
    assert "power-loss" not in plan() and "fsync-fail" in plan()
    assert plan("--fsync", "always", "--nemeses", "power-loss,fsync-fail") == ("power-loss", "fsync-fail")


@pytest.mark.parametrize("fsync", [None, "batch", "never"])
def test_power_loss_without_fsync_always_exits_2_with_one_line_and_starts_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fsync: str | None
) -> None:
    out = tmp_path / "run"
    policy = ["--fsync", fsync] if fsync else []
    status, err = chaos_cli(capsys, "--nemeses", "kill,power-loss", *policy, "--dir", str(out))
    shown = "batch (the default)" if fsync is None else fsync
    assert status == 2
    assert err == (
        "paramstore chaos: power-loss: loses what the nodes did not sync, a fault only with --fsync "
        f"always (with --fsync {shown} acknowledged writes may not be synced yet, by design); "
        "add --fsync always"
    )
    assert not out.exists()


def test_a_timeline_with_a_power_loss_needs_fsync_always_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    timeline = tmp_path / "t.toml"
    timeline.write_text('[[fault]]\nat_s = 1\nduration_s = 2\nnemesis = "power-loss"\ntarget = "leader:1"\n')
    status, err = chaos_cli(capsys, "--timeline", str(timeline), "--fsync", "batch")
    assert status == 2 and err.startswith("paramstore chaos: power-loss: loses what the nodes did not sync")
    with pytest.raises(
        ValueError, match="power-loss lose unsynced writes, a fault only under fsync 'always'"
    ):
        asyncio.run(run_chaos(ChaosConfig(tmp_path / "run", nemeses=("power-loss",), fsync="batch")))
    assert not (tmp_path / "run").exists()


def test_an_attached_run_refuses_the_disk_nemeses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    processes = [{"role": "coordinator", "id": 1, "address": "127.0.0.1:5001", "pid": None}]
    (tmp_path / "cluster.json").write_text(json.dumps({"cluster_id": "t", "processes": processes}))
    status, err = chaos_cli(capsys, "--cluster", str(tmp_path), "--nemesis", "pause,power-loss")
    assert status == 2
    assert err.startswith("paramstore chaos: --nemesis power-loss: not available with --cluster: it kills")
    status, err = chaos_cli(capsys, "--cluster", str(tmp_path), "--nemesis", "fsync-fail")
    assert status == 2 and err.startswith("paramstore chaos: --nemesis fsync-fail: kills processes")
