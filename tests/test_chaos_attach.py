"""``paramstore chaos --cluster``: a scripted timeline of the newer nemeses (bridge,
majorities-ring, skew, and pause) run against a cluster that ``paramstore up`` runs, over
real processes on 127.0.0.1. Every process the test starts is stopped by its pid and reaped."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc

from paramstore.chaos import load_cluster_file
from proto import raft_service_pb2 as raft_api
from proto import raft_service_pb2_grpc as raft_grpc
from tests.cluster_util import REPO_ROOT

RESULT = re.compile(r"operations=(\d+) faults=(\d+) violations=0 result=OK report=(\S+)")
_UP_READY_S = 90.0
_STOP_S = 30.0


def chaos(*args: str, timeout_s: float = 180.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "paramstore.cli", "chaos", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
        cwd=REPO_ROOT,
    )


def passed(run: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    """Assert the run's verdict is OK; the fault windows it recorded."""
    lines = run.stdout.strip().splitlines()
    assert run.returncode == 0 and lines, run.stderr[-3000:]
    match = RESULT.fullmatch(lines[-1])
    assert match, lines[-1]
    faults: list[dict[str, Any]] = json.loads((Path(match.group(3)).parent / "faults.json").read_text())
    for fault in faults:
        assert not fault["detail"].startswith("could not inject"), fault
        assert "no tick timer" not in fault["detail"], fault
    return faults


@contextmanager
def paramstore_up(directory: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`paramstore up --groups 1` until its cluster.json is written; always stopped after."""
    output = directory.parent / "up.out"
    with open(output, "wb") as out:
        up = subprocess.Popen(
            [sys.executable, "-m", "paramstore.cli", "up", "--dir", str(directory), "--groups", "1"],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
        )
    try:
        deadline = time.monotonic() + _UP_READY_S
        while b"Ctrl-C stops the cluster" not in output.read_bytes():
            assert up.poll() is None, output.read_text(errors="replace")[-2000:]
            assert time.monotonic() < deadline, "paramstore up did not come up"
            time.sleep(0.1)
        yield up
    finally:
        _stop(up, directory)


def _stop(up: subprocess.Popen[bytes], directory: Path) -> None:
    """SIGTERM `up` (it stops its nodes); if it hangs, SIGKILL it and the nodes it started."""
    if up.poll() is None:
        up.send_signal(signal.SIGTERM)
    try:
        up.wait(timeout=_STOP_S)
        return
    except subprocess.TimeoutExpired:
        up.kill()
        up.wait(timeout=_STOP_S)
    if (directory / "cluster.json").exists():
        for process in load_cluster_file(directory).processes:
            if process.pid is not None and process.is_running():
                os.kill(process.pid, signal.SIGKILL)


TIMELINE = """
[[fault]]
at_s = 0.5
duration_s = 1.5
nemesis = "bridge"
target = "coordinator"

[[fault]]
at_s = 2.5
duration_s = 1.5
nemesis = "majorities-ring"
target = "store:1"

[[fault]]
at_s = 4.5
duration_s = 1.5
nemesis = "skew"
target = "leader:1"
factor = 0.25

[[fault]]
at_s = 6.5
duration_s = 1
nemesis = "pause"
target = "store:1:2"

[[fault]]
at_s = 8
duration_s = 1.5
nemesis = "skew"
target = "leader:coordinator"
factor = 4
"""


async def _healed(addresses: list[str]) -> list[tuple[str, int, float]]:
    """Each node's (address, fault rules left, tick rate it had before we set 1)."""
    found = []
    for address in addresses:
        async with grpc.aio.insecure_channel(address) as channel:
            admin = raft_grpc.RaftAdminStub(channel)
            rules = await admin.ListFaults(raft_api.ListFaultsRequest(), timeout=5.0)
            rate = await admin.SetTickRate(raft_api.SetTickRateRequest(factor=1.0), timeout=5.0)
            found.append((address, len(rules.rules), rate.previous_factor))
    return found


def test_a_timeline_run_attached_to_paramstore_up_passes_and_leaves_the_cluster_healed(
    tmp_path: Path,
) -> None:
    up_dir = tmp_path / "up"
    timeline = tmp_path / "timeline.toml"
    timeline.write_text(TIMELINE)
    with paramstore_up(up_dir) as up:
        out = tmp_path / "chaos"
        run = chaos(
            "--cluster", str(up_dir), "--timeline", str(timeline), "--duration", "10.5", "--dir", str(out)
        )
        faults = passed(run)
        assert [f["name"] for f in faults] == ["bridge", "majorities-ring", "skew", "pause", "skew"]
        assert "bridge the coordinator group" in faults[0]["detail"]
        assert "in store group 1" in faults[1]["detail"]
        assert "ticks slow, at 0.25x" in faults[2]["detail"]
        assert faults[3]["detail"] == "SIGSTOP store 1-2"
        assert "coordinator" in faults[4]["detail"] and "ticks fast, at 4x" in faults[4]["detail"]
        # The cluster is still up and as it was found: running, no rules, normal tick rates.
        assert up.poll() is None
        cluster = load_cluster_file(up_dir)
        assert cluster.not_running() == []
        for process in cluster.processes:
            state = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            assert state != "T", f"{process.name} is still stopped"
        healed = asyncio.run(_healed([p.address for p in cluster.processes]))
        assert all(rules == 0 and rate == 1.0 for _, rules, rate in healed), healed
