"""The main job end to end: ``paramstore demo`` starts its cluster, trains with real worker
processes while a store leader is killed with -9, checks the result and stops everything."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.cluster_util import REPO_ROOT


def _demo(*args: str, timeout_s: float = 300.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "paramstore.cli", "demo", "--no-progress", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        cwd=REPO_ROOT,
        check=False,
    )


def _fields(last_line: str) -> dict[str, str]:
    return dict(re.findall(r"(\w+)=(\S+)", last_line))


def test_demo_trains_through_a_store_leader_kill_and_loses_nothing(tmp_path) -> None:
    run = _demo(
        "--steps", "120", "--fault", "kill-store-leader", "--fault-step", "40", "--dir", str(tmp_path)
    )
    assert run.returncode == 0, run.stdout + run.stderr
    fields = _fields(run.stdout.strip().splitlines()[-1])
    assert fields["result"] == "OK"
    assert fields["lost_updates"] == "0" and fields["duplicate_updates"] == "0"
    assert fields["faults"] == "1" and fields["workers"] == "2" and fields["sync"] == "bsp"
    assert float(fields["max_weight_diff"]) == 0.0  # the BSP replay matches bit for bit
    assert float(fields["accuracy"]) >= 0.93
    assert "kill -9 store group 1's leader" in run.stderr and "restarted store" in run.stderr
    # Every process it started is gone: the cluster file's pids no longer run.
    cluster = (tmp_path / "cluster.json").read_text()
    for pid in re.findall(r'"pid": (\d+)', cluster):
        assert not _alive(int(pid)), f"process {pid} of the demo's cluster still runs"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_demo_refuses_bad_options_before_starting_anything() -> None:
    run = _demo("--workers", "3", "--batch-size", "64", timeout_s=60)
    assert run.returncode == 2
    assert "--batch-size must be a multiple of --workers (3)" in run.stderr
    assert "starting a local cluster" not in run.stderr
