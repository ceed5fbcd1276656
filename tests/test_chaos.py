"""The chaos harness end to end: a short seeded run over real processes passes, so does one
of only the partition-shape and clock-skew nemeses, and one of power losses under fsync
always, and runs against clusters with planted bugs (tests/bugs/sitecustomize.py) are
caught, the dropped fsync by the power losses."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from paramstore.chaos import ChaosConfig, ChaosOutcome, ScriptedFault, run_chaos
from paramstore.chaos._targets import Target
from tests.cluster_util import REPO_ROOT

BUGS_DIR = REPO_ROOT / "tests" / "bugs"


def test_a_short_seeded_chaos_run_passes_and_writes_its_report(tmp_path: Path) -> None:
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "paramstore.cli",
            "chaos",
            "--duration",
            "20",
            "--seed",
            "1",
            "--dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        cwd=REPO_ROOT,
    )
    last = run.stdout.strip().splitlines()[-1]
    assert run.returncode == 0, run.stderr[-3000:]
    match = re.fullmatch(r"operations=(\d+) faults=(\d+) violations=0 result=OK report=(\S+)", last)
    assert match, last
    assert int(match.group(1)) > 500 and int(match.group(2)) >= 3
    report = Path(match.group(3))
    for name in (
        "report.html",
        "history.jsonl",
        "latency.png",
        "throughput.png",
        "verdicts.json",
        "faults.json",
    ):
        assert (report.parent / name).is_file(), name
    assert (report.parent / "logs").is_dir()
    assert "PASS" in run.stderr and "FAIL " not in run.stderr


def test_bridge_majorities_ring_and_skew_strike_a_local_cluster_and_it_passes(tmp_path: Path) -> None:
    # Seed 3 draws bridge, skew, majorities-ring for the first three faults.
    run = _chaos_cli(
        "--nemeses", "bridge,majorities-ring,skew", "--seed", "3", "--groups", "1",
        "--duration", "6.5", "--fault-s", "1.5", "--gap-s", "0.5", "--dir", str(tmp_path),
    )  # fmt: skip
    faults = _passing_faults(run)
    assert not any(f["detail"].startswith("could not inject") for f in faults), faults
    assert not any("no tick timer" in f["detail"] for f in faults), faults
    assert {"bridge", "majorities-ring", "skew"} <= {f["name"] for f in faults}, faults
    details = " | ".join(f["detail"] for f in faults)
    assert re.search(r"bridge .* through node \d: cut \d-\d", details), details
    assert re.search(r"majorities ring \d-\d-\d in .*: cut \d-\d", details), details
    assert re.search(r"ticks (fast|slow), at [\d.]+x the normal rate", details), details


def _passing_faults(run: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    """The fault records of a chaos CLI run that must have passed (exit 0, violations=0)."""
    assert run.returncode == 0, run.stderr[-3000:]
    last = run.stdout.strip().splitlines()[-1]
    match = re.fullmatch(r"operations=\d+ faults=\d+ violations=0 result=OK report=(\S+)", last)
    assert match, last
    faults: list[dict[str, Any]] = json.loads((Path(match.group(1)).parent / "faults.json").read_text())
    return faults


def _chaos_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "paramstore.cli", "chaos", *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        cwd=REPO_ROOT,
    )


def _run_with_bug(tmp_path: Path, bug: str, nemeses: tuple[str, ...], duration_s: float) -> ChaosOutcome:
    env = {"PYTHONPATH": str(BUGS_DIR), "PARAMSTORE_TEST_BUG": bug}
    config = ChaosConfig(tmp_path, duration_s=duration_s, seed=1, nemeses=nemeses, gap_s=1.0, cluster_env=env)
    return asyncio.run(run_chaos(config))


@pytest.mark.parametrize(
    ("bug", "nemeses", "expected"),
    [
        # Acknowledged before committed: pulls right after the ack miss it, a leader kill loses
        # it. Which of the two a run shows first depends on timing; either convicts the bug.
        ("ack-before-commit", ("leader",), ("acked before it began", "is lost")),
        # Retries after a paused or killed leader are applied again.
        ("skip-dedup", ("leader", "pause"), ("applied twice",)),
    ],
)
def test_the_checkers_catch_a_planted_bug(
    tmp_path: Path, bug: str, nemeses: tuple[str, ...], expected: tuple[str, ...]
) -> None:
    outcome = _run_with_bug(tmp_path, bug, nemeses, 16.0)
    assert not outcome.ok
    params = outcome.verdicts[0]
    assert params.ok is False and params.violations
    assert any(e in v.description for v in params.violations for e in expected), [
        v.description for v in params.violations[:5]
    ]
    assert all(v.op_indexes for v in params.violations if "final" not in v.description)


# Seed 41 draws, for both power losses, the whole group with a torn tail on every node: with
# the planted bug each log keeps a random part of what it wrote (nothing was synced), so the
# longest of them, which the next leader has, still lacks acknowledged pushes. (A bare
# majority would leave one node untouched, whose full log usually wins the next election.)
_POWER_LOSSES = tuple(
    ScriptedFault(index, at_s, 2.0, "power-loss", Target("group", 1)) for index, at_s in ((1, 3.0), (2, 7.5))
)
_FSYNC_FAIL = ScriptedFault(3, 10.5, 3.0, "fsync-fail", Target("node", 1, 2))


@pytest.mark.parametrize("bug", ["drop-fsync", None])
def test_power_losses_keep_every_synced_write_and_catch_a_dropped_fsync(
    tmp_path: Path, bug: str | None
) -> None:
    env = {"PYTHONPATH": str(BUGS_DIR), "PARAMSTORE_TEST_BUG": bug} if bug else {}
    # Without the bug, a node whose fsync fails too (with the bug its fsync does nothing).
    timeline = _POWER_LOSSES if bug else (*_POWER_LOSSES, _FSYNC_FAIL)
    config = ChaosConfig(
        tmp_path, duration_s=timeline[-1].end_s + 3, seed=41, fsync="always", groups=1, timeline=timeline,
        cluster_env=env, settle_s=10.0 if bug else 60.0,  # with the bug a replica may never catch up
    )  # fmt: skip
    outcome = asyncio.run(run_chaos(config))
    faults = json.loads((outcome.report.parent / "faults.json").read_text())
    assert [f["name"] for f in faults] == [f.nemesis for f in timeline], faults
    struck = "power loss in store group 1: kill -9 store 1-1, store 1-2, store 1-3 at once; "
    assert all(f["detail"].startswith(struck) for f in faults[:2]), faults
    truncated = [int(n) for f in faults for n in re.findall(r"truncated (\d+) unsynced bytes", f["detail"])]
    assert len(truncated) == 6, faults
    if bug is None:
        assert outcome.ok and outcome.violations == 0, [v.summary for v in outcome.verdicts]
        assert faults[2]["detail"] == (
            "kill -9 store 1-2, restarted with its WAL fsync failing (EIO); "
            "store 1-2 fail-stopped (exit status 1)"
        ), faults[2]
        return
    assert not outcome.ok and outcome.violations > 0 and max(truncated) > 0
    params = outcome.verdicts[0]
    lost = [v.description for v in params.violations if "acknowledged push" in v.description]
    assert lost and all(re.search(r"acknowledged push \d+ is lost", d) for d in lost), params.summary


def test_shards_move_during_a_chaos_run_and_nothing_is_lost_or_doubled(tmp_path: Path) -> None:
    run = _chaos_cli(
        "--nemeses", "move,kill", "--seed", "2", "--groups", "2",
        "--duration", "9", "--fault-s", "2", "--gap-s", "0.5", "--dir", str(tmp_path),
    )  # fmt: skip
    faults = _passing_faults(run)
    moves = [f for f in faults if f["name"] == "move"]
    assert moves and all(re.match(r"moving [1-9]\d* shard\(s\) of ", f["detail"]) for f in moves), faults


# Store node 1 of group 1 is cut off from its peers for 5 s: under the bug it keeps answering
# pulls from its frozen state (a pull client asks node 1 first and sticks to a node that
# answers), while the others commit new pushes.
_CUT_OFF_NODE = (ScriptedFault(1, 2.0, 5.0, "partition", Target("node", 1, 1)),)


@pytest.mark.parametrize("bug", ["stale-pulls", None])
def test_pulls_without_read_index_are_caught_as_stale(tmp_path: Path, bug: str | None) -> None:
    env = {"PYTHONPATH": str(BUGS_DIR), "PARAMSTORE_TEST_BUG": bug} if bug else {}
    config = ChaosConfig(
        tmp_path, duration_s=9.0, seed=5, groups=1, timeline=_CUT_OFF_NODE, cluster_env=env
    )  # fmt: skip
    outcome = asyncio.run(run_chaos(config))
    faults = json.loads((outcome.report.parent / "faults.json").read_text())
    assert [f["name"] for f in faults] == ["partition"] and "store 1-1" in faults[0]["detail"], faults
    if bug is None:
        assert outcome.ok and outcome.violations == 0, [v.summary for v in outcome.verdicts]
        return
    params = outcome.verdicts[0]
    assert not outcome.ok and params.ok is False
    stale = [v.description for v in params.violations if "acked before it began" in v.description]
    assert stale, [v.description for v in params.violations[:5]]


def test_a_coordinator_removed_and_added_back_during_a_run_passes(tmp_path: Path) -> None:
    run = _chaos_cli(
        "--nemeses", "membership", "--seed", "4", "--groups", "1",
        "--duration", "8", "--fault-s", "2", "--gap-s", "1", "--dir", str(tmp_path),
    )  # fmt: skip
    faults = _passing_faults(run)
    removals = [f["detail"] for f in faults if f["name"] == "membership"]
    assert removals and all(re.match(r"removed coordinator \d from the group", d) for d in removals), faults
    back = [re.search(r"added back and promoted \(voters \[([\d, ]+)\]\)", d) for d in removals]
    assert all(m and sorted(map(int, m.group(1).split(", "))) == [1, 2, 3] for m in back), faults
